/* Locks on /v2/ (docs/image-versions.md, "Immutability, locks and signatures"): the same
 * replicated attributes decide in every region. */
#include <string.h>

#include "oci.h"
#include "repo_locks.h"

bool oci_lock_refuses(struct http_req *req, const char *tag, const struct digest *d,
                      enum oci_lock_op op)
{
    struct repo_lock l;
    repo_lock_effective(req->reg->ms, req->repo, tag, d, &l);
    static const char *const what[] = {"write", "delete", "read"};
    bool allowed = op == OCI_LOCK_WRITE    ? l.write_enabled
                   : op == OCI_LOCK_DELETE ? l.delete_enabled
                                           : l.read_enabled;
    if (allowed)
        return false;
    if (l.is_unknown) { /* the store did not answer (it logged why): retryable, not locked */
        http_reply_error(req, ERR_UNAVAILABLE, "the repository's locks could not be read");
        return true;
    }
    http_reply_error(req, ERR_DENIED, "%s%s%s is locked: %s is disabled (meridian repository "
                     "update changes it)",
                     req->repo, tag ? ":" : (d ? "@" : ""), tag ? tag : (d ? d->str : ""),
                     what[op]);
    return true;
}
