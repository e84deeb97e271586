/* Locks on repositories, tags and manifests (docs/image-versions.md, "Immutability, locks
 * and signatures"), with the cloud CLI's attributes: writeEnabled, deleteEnabled,
 * readEnabled, listEnabled (all true when nothing is set). Kept as replicated registry
 * objects merged last-writer-wins by (HLC, origin), so every region enforces the same:
 *   kind "repository_lock", key REPO | REPO:TAG | REPO@DIGEST
 *   -> {"writeEnabled","deleteEnabled","readEnabled","listEnabled"}
 * What a manifest operation may do is the AND of the repository's lock, the tag's (when it
 * names a tag) and the manifest's (by digest). Backend-neutral: only the metastore seam. */
#ifndef MERIDIAN_REPO_LOCKS_H
#define MERIDIAN_REPO_LOCKS_H

#include <jansson.h>
#include <stdbool.h>

#include "digest.h"
#include "err.h"
#include "metastore.h"

#define REPO_LOCK_KIND "repository_lock"

struct repo_lock {
    bool write_enabled, delete_enabled, read_enabled, list_enabled;
    bool is_unknown; /* repo_lock_effective: the store could not answer (see there) */
};

/* The attributes set on exactly one scope: repo alone (tag and d NULL), repo:tag or
 * repo@d. All true when none is set. -1 only when the store cannot answer. */
int repo_lock_get(struct metastore *ms, const char *repo, const char *tag,
                  const struct digest *d, struct repo_lock *out, struct err *e);
/* Stores the attributes of that scope (replicated). */
int repo_lock_put(struct metastore *ms, const char *repo, const char *tag,
                  const struct digest *d, const struct repo_lock *l, struct err *e);
/* What applies to a manifest reached through tag (NULL: by digest) and/or digest d (NULL:
 * unknown): the AND of the repository's, the tag's and the manifest's attributes. A store
 * failure counts as unlocked for reads and as locked for writes and deletes, and sets
 * is_unknown (a request refused for it is told to retry, not that the image is locked). */
void repo_lock_effective(struct metastore *ms, const char *repo, const char *tag,
                         const struct digest *d, struct repo_lock *out);

/* The scopes of repo locked with listEnabled false: tags (names) and manifests (digest
 * strings), to leave out of tag listings without a lookup per tag when there are none. */
int repo_lock_unlisted(struct metastore *ms, const char *repo, struct meta_name_list *tags,
                       struct meta_name_list *digests, struct err *e);

/* Applies a body {"writeEnabled","deleteEnabled","readEnabled","listEnabled"} (booleans,
 * any subset, nothing else) to *l: -1 with ERR_BAD_REQUEST and *l unchanged on bad input. */
int repo_lock_update(struct repo_lock *l, const json_t *body, struct err *e);
json_t *repo_lock_to_json(const struct repo_lock *l);

#endif
