/* AWS Signature Version 4 for S3: the Authorization header of a request and presigned
 * URLs (query signing), computed with core's HMAC-SHA256. Pure: no clock, no network;
 * the caller gives the time, so a known vector checks it. */
#ifndef MERIDIAN_S3_SIGV4_H
#define MERIDIAN_S3_SIGV4_H

#include <stddef.h>
#include <stdint.h>

struct s3_creds {
    const char *access_key;
    const char *secret_key;
    const char *region;   /* e.g. us-east-1 */
};

/* One header to sign: name lower-case, value trimmed. Given sorted by name. */
struct s3_sig_header {
    const char *name;
    const char *value;
};

#define S3_AMZ_DATE_LEN 17    /* "YYYYMMDDTHHMMSSZ" + NUL */
#define S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* amz_date of unix time t (seconds). */
void s3_sigv4_date(int64_t t, char out[S3_AMZ_DATE_LEN]);

/* A signature is refused when its time is more than 15 minutes from the store's; a clock
 * this far from the store's own (its Date header) is corrected for (s3_client.c). */
#define S3_SKEW_CORRECT_S 300
/* Unix time of an HTTP Date header value ("Sun, 06 Dec 2026 02:47:55 GMT"); -1 if it does
 * not parse. */
int64_t s3_http_date(const char *value);

/* Appends s percent-encoded as SigV4 wants it (unreserved kept; '/' kept when keep_slash)
 * to out (NUL-terminated, truncated at out_len). Returns the length it needed. */
size_t s3_uri_encode(const char *s, int keep_slash, char *out, size_t out_len);

/* The value of the Authorization header of a request: path is the encoded URI path,
 * query the canonical query (names sorted, values encoded, "name=" for bare names),
 * headers the signed ones sorted by name (host and x-amz-date among them). Caller frees. */
char *s3_sigv4_authorization(const struct s3_creds *c, const char *method, const char *path,
                             const char *query, const struct s3_sig_header *headers,
                             size_t n_headers, const char *payload_hash,
                             const char *amz_date);

/* A presigned URL: base (scheme://host[:port]) + path, valid expires_s seconds from
 * amz_date, signing only the host header (host[:port] as the client sends it). Caller
 * frees. */
char *s3_sigv4_presign(const struct s3_creds *c, const char *method, const char *base,
                       const char *host, const char *path, const char *amz_date,
                       int64_t expires_s);

#endif
