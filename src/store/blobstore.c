/* What every blobstore backend shares: choosing one by name at start-up, and releasing a
 * read's answer. */
#include "blobstore.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct blobstore *blobstore_open(const char *spec, const char *data_dir, struct err *e)
{
    if (spec == NULL || spec[0] == '\0')
        return blobstore_fs_open(data_dir, e);
    if (strncmp(spec, "file://", 7) == 0)
        return blobstore_fs_open(spec + 7, e);
    if (strstr(spec, "://") == NULL)
        return blobstore_fs_open(spec, e);
    /* s3:// is opened by the server with blobstore_s3_open (src/s3 sits above store). */
    log_error("blobstore", "failed to open blobstore %s: no backend serves this scheme", spec);
    err_set(e, ERR_BAD_REQUEST, "blobstore: unsupported scheme (expected a directory or file://)");
    return NULL;
}

void blobstore_body_close(struct blobstore_body *body)
{
    switch (body->kind) {
    case BLOBSTORE_BODY_FD:
        if (body->fd >= 0)
            close(body->fd);
        body->fd = -1;
        break;
    case BLOBSTORE_BODY_STREAM:
        if (body->close != NULL)
            body->close(body->arg);
        body->close = NULL;
        break;
    case BLOBSTORE_BODY_REDIRECT:
        free(body->url);
        body->url = NULL;
        break;
    }
}
