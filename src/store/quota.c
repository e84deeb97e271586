/* Quotas per repository pattern (quota.h). */
#include "quota.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>

#include "name.h"

int quota_check(struct metastore *ms, const char *repo, const struct digest *d, uint64_t size,
                struct err *e)
{
    struct meta_name_list keys = {0}, values = {0};
    uint64_t linked_size;
    struct err ignore = {0};
    if (ms->ops->blob_get(ms, repo, d, &linked_size, &ignore) == 0)
        return 0;
    if (ms->ops->object_list(ms, QUOTA_KIND, &keys, &values, e) != 0)
        return -1;
    int rc = 0;
    int64_t used = -1;
    for (size_t i = 0; rc == 0 && i < keys.n; i++) {
        if (!name_matches_pattern(keys.names[i], repo))
            continue;
        json_t *v = json_loads(values.names[i], 0, NULL);
        json_int_t limit = json_integer_value(json_object_get(v, "bytes"));
        json_decref(v);
        if (used < 0 && ms->ops->repo_bytes(ms, repo, &used, e) != 0) {
            rc = -1;
            break;
        }
        if ((uint64_t)used + size > (uint64_t)limit)
            rc = err_set(e, ERR_DENIED,
                         "repository %s is over its quota (%s: %" PRId64 " bytes): %" PRId64
                         " bytes held, this blob needs %" PRIu64,
                         repo, keys.names[i], (int64_t)limit, used, size);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return rc;
}
