/* The S3 blobstore: blobs and upload sessions in a bucket (docs/scale-out.md). */
#ifndef MERIDIAN_BLOBSTORE_S3_H
#define MERIDIAN_BLOBSTORE_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "blobstore.h"

struct blobstore_s3_options {
    const char *spec;          /* s3://BUCKET[/PREFIX] */
    const char *endpoint;      /* http(s)://host[:port]; NULL: env S3_ENDPOINT */
    const char *region;        /* NULL: env S3_REGION or AWS_REGION, else us-east-1 */
    const char *access_key;    /* NULL: env AWS_ACCESS_KEY_ID, else S3_ACCESS_KEY */
    const char *secret_key;    /* NULL: env AWS_SECRET_ACCESS_KEY, else S3_SECRET_KEY */
    bool is_redirect;          /* blob GETs answered 307 to a presigned URL */
    int64_t redirect_ttl_s;    /* how long a presigned URL is valid; 0: 300 */
};

/* Opens the store (the bucket is created if missing). NULL with e set on failure. */
struct blobstore *blobstore_s3_open(const struct blobstore_s3_options *o, struct err *e);

#endif
