/* Image definitions and version records kept as replicated registry objects (metastore.h
 * object_put/get/list): each put is an event, merged last-writer-wins by (HLC, origin)
 * like a tag, so every region knows every definition and every version's profile.
 *   kind "image_definition", key REPO          -> definition record (image_version.h)
 *   kind "image_version",    key REPO:VERSION  -> version record
 * Backend-neutral: only the metastore seam is used. */
#ifndef MERIDIAN_IMAGE_CATALOG_H
#define MERIDIAN_IMAGE_CATALOG_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "image_version.h"
#include "metastore.h"

#define IMAGE_DEFINITION_KIND "image_definition"
#define IMAGE_VERSION_KIND "image_version"
/* key REPO:VERSION, {"repository","version","deletedMs"}: a deleted version (not reused
 * unless the definition has allowVersionReuse). */
#define IMAGE_VERSION_RETIRED_KIND "image_version_retired"
/* key REPO:VERSION: two regions pushed different digests as one version; written by the
 * merge rule in meta_merge.c, the same in every region (format there). */
#define IMAGE_VERSION_CONFLICT_KIND "image_version_conflict"
/* key REPO:VERSION: the writes a version's register is derived from (meta_merge.c). */
#define IMAGE_VERSION_WRITES_KIND "image_version_writes"

/* The regions of the registry (the replication objects; self_region alone when there are
 * none) with their volume counts, and the time: free with image_catalog_world_fini. */
int image_catalog_world(struct metastore *ms, const char *self_region, struct iv_world *w,
                        struct err *e);
void image_catalog_world_fini(struct iv_world *w);

/* The definition of repo, or NULL: ERR_NOT_FOUND when repo is not a definition. */
json_t *image_catalog_definition(struct metastore *ms, const char *repo, struct err *e);
/* Is repo an image definition? (false also when the store cannot answer) */
bool image_catalog_is_definition(struct metastore *ms, const char *repo);
/* Every definition record, by repository name. */
json_t *image_catalog_definitions(struct metastore *ms, struct err *e);
/* put: create or replace; create: ERR_CONFLICT when the record exists (checked as it is
 * written, so of two creates racing in a region one fails). Same for versions below. */
int image_catalog_put_definition(struct metastore *ms, const json_t *def, struct err *e);
int image_catalog_create_definition(struct metastore *ms, const json_t *def, struct err *e);
int image_catalog_delete_definition(struct metastore *ms, const char *repo, struct err *e);

/* The record of repo:version, or NULL (ERR_NOT_FOUND when there is none). */
json_t *image_catalog_version(struct metastore *ms, const char *repo, const char *version,
                              struct err *e);
/* The records of repo's versions, in version order. */
json_t *image_catalog_versions(struct metastore *ms, const char *repo, struct err *e);
int image_catalog_put_version(struct metastore *ms, const json_t *record, struct err *e);
int image_catalog_create_version(struct metastore *ms, const json_t *record, struct err *e);

/* Before the push of manifest d as tag in repo: refuses a tag that is not a version of a
 * definition (ERR_TAG_INVALID, `latest` included), a version that names another manifest
 * (ERR_DENIED: immutable) and a deleted version unless the definition has
 * allowVersionReuse (ERR_DENIED). *is_unchanged: the version already names d (the push
 * changes nothing). 0 for a plain repository. Writes nothing. */
int image_catalog_check_push(struct metastore *ms, const char *repo, const char *tag,
                             const struct digest *d, bool *is_unchanged, struct err *e);
/* May the pusher learn that repository exists? (its pull rights; arg is the caller's) */
typedef bool (*image_catalog_may_name_fn)(void *arg, const char *repository);
/* Before the push of a manifest with subject into repo: a definition's version and its
 * referrers travel together, so a subject that is a manifest of another repository and not
 * of repo is refused (ERR_MANIFEST_INVALID, naming that repository only when may_name, if
 * given, allows it: the pusher may not be allowed to read it). A subject known nowhere
 * passes (a referrer may come before its subject). The same for the subject a tag of the
 * older signature scheme (sha256-<hex>.sig/.att/.sbom) names. subject and tag may be NULL.
 * 0 for a plain repository. */
int image_catalog_check_subject(struct metastore *ms, const char *repo, const char *tag,
                                const struct digest *subject, image_catalog_may_name_fn may_name,
                                void *arg, struct err *e);
/* The conflict record of repo:version (see IMAGE_VERSION_CONFLICT_KIND), or NULL
 * (ERR_NOT_FOUND when there was none). */
json_t *image_catalog_conflict(struct metastore *ms, const char *repo, const char *version,
                               struct err *e);
/* Before that push is stored: records the version with its profile from the definition's
 * defaults (source: this region) when it has no record yet (*is_created then set; the
 * caller undoes it with image_catalog_unrecord_push if the push is refused). 0 for a
 * plain repository. */
int image_catalog_record_push(struct metastore *ms, const char *self_region, const char *repo,
                              const char *tag, bool *is_created, struct err *e);
/* Deletes the record image_catalog_record_push created for a push that was then refused. */
void image_catalog_unrecord_push(struct metastore *ms, const char *repo, const char *tag);

/* The region-local `latest` of definition repo as this region sees it (Completed here:
 * visible here). The version string (caller frees), or NULL with ERR_MANIFEST_UNKNOWN when
 * no version qualifies (or repo is no definition). */
char *image_catalog_latest(struct metastore *ms, const char *repo, const char *region,
                           struct err *e);
/* Before a delete of tag (NULL: of manifest d) in repo: ERR_DENIED when a version it
 * removes blocks deletion before its end of life and has not reached it. 0 otherwise. */
int image_catalog_check_delete(struct metastore *ms, const char *repo, const char *tag,
                               const struct digest *d, struct err *e);

/* The version tags a delete of tag (NULL: of manifest d) in definition repo removes, to
 * forget after it (caller frees the list); empty for a plain repository. */
int image_catalog_versions_of(struct metastore *ms, const char *repo, const char *tag,
                              const struct digest *d, struct meta_name_list *out, struct err *e);
/* Before that delete: remembers those versions as deleted (a replicated record each), so
 * that they may not come back with other content. Written first because events of one
 * origin apply in order: no region sees the tag gone without the record (a re-push there
 * in between would be accepted). Left in place if the delete then fails: the version
 * still exists, and an existing version is immutable anyway. */
int image_catalog_retire(struct metastore *ms, const char *repo, const struct meta_name_list *v,
                         struct err *e);
/* Deletes the records of those versions (a replicated delete each; absent ones skipped). */
void image_catalog_forget(struct metastore *ms, const char *repo, const struct meta_name_list *v);

#endif
