/* A small S3 client for the blob store: path-style requests (http://endpoint/bucket/key,
 * as Ceph RGW and MinIO serve them) signed with SigV4, listing, presigned GETs, and a
 * pull-style reader of a byte range (the HTTP client pushes into a sink; a thread and a
 * pipe turn that into read calls). */
#ifndef MERIDIAN_S3_CLIENT_H
#define MERIDIAN_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "httpc.h"

struct s3_client;

/* endpoint: http(s)://host[:port]; NULL with e set when a field is missing. */
struct s3_client *s3_client_new(const char *endpoint, const char *region,
                                const char *access_key, const char *secret_key,
                                const char *bucket, struct err *e);
void s3_client_free(struct s3_client *c);

/* One request on key (NULL: the bucket itself). query: the canonical query string ("" for
 * none; names sorted, values encoded, "uploads=" for a bare name). extra: more headers
 * ("Name: value", NULL-terminated, unsigned) or NULL. body NULL: none. out is initialised
 * by the caller (its body cap). 0 when S3 answered (any status); -1 ERR_UNAVAILABLE. */
int s3_request(struct s3_client *c, const char *method, const char *key, const char *query,
               const char *const *extra, const void *body, size_t len,
               struct httpc_response *out, struct err *e);
/* The same with its own bound on the whole request (s3_request: 30 s and 1 s per MiB). */
int s3_request_timed(struct s3_client *c, const char *method, const char *key,
                     const char *query, const char *const *extra, const void *body,
                     size_t len, long timeout_ms, struct httpc_response *out, struct err *e);

/* Lists the keys under prefix (all pages): fn(key, size, arg) for each object, and with a
 * delimiter fn(common_prefix, -1, arg) for each group. fn returns nonzero to stop (0).
 * -1 ERR_UNAVAILABLE when a page did not come or did not parse, or a truncated page gave no
 * usable continuation token: fn has then seen only the pages before. */
typedef int s3_list_f(const char *key, int64_t size, void *arg);
int s3_list(struct s3_client *c, const char *prefix, const char *delimiter, s3_list_f *fn,
            void *arg, struct err *e);
/* The same without a delimiter, with each object's LastModified (ms since the epoch; 0
 * when the server sent none or one that does not parse). page_end(arg) (or NULL) is called
 * after the entries of each page that came (also the last, and one cut short by an entry
 * that does not parse), before the next page is asked for. */
typedef int s3_list_dated_f(const char *key, int64_t size, int64_t modified_ms, void *arg);
typedef void s3_page_end_f(void *arg);
int s3_list_dated(struct s3_client *c, const char *prefix, s3_list_dated_f *fn,
                  s3_page_end_f *page_end, void *arg, struct err *e);

/* The first <tag>...</tag> of xml (decoded &amp; etc. not needed for our keys) into out;
 * -1 when absent. from: where the search starts; *next (or NULL) where it ended. */
int s3_xml_value(const char *xml, const char *tag, char *out, size_t out_len,
                 const char **next);

/* A presigned GET URL of key valid for expires_s seconds (caller frees). */
char *s3_presign_get(struct s3_client *c, const char *key, int64_t expires_s);

/* Reads bytes [offset, offset + length) of key. read: how many bytes (> 0), 0 at the end
 * (when exactly length bytes came), -1 when the GET failed or broke. close always. */
struct s3_reader;
struct s3_reader *s3_reader_open(struct s3_client *c, const char *key, uint64_t offset,
                                 uint64_t length);
long s3_reader_read(struct s3_reader *r, char *p, size_t max);
/* The HTTP status of the GET (0 while unknown or when none came). */
long s3_reader_status(struct s3_reader *r);
void s3_reader_close(struct s3_reader *r);

#endif
