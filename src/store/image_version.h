/* Image definitions and image versions (docs/image-versions.md): the backend-neutral rules.
 * No I/O, no locks: version strings and their order, the publishing profile of a version
 * (validation, defaults from its definition, updates), placement (which regions hold a
 * version), the region-local `latest` and the aggregated replication state. The records
 * themselves are JSON objects kept as replicated registry objects (image_catalog.h).
 *
 * A definition record:
 *   {"repository","description","os","arch","defaultTargetRegions":[TR...],
 *    "defaultReplicaCount","defaultStorageClass","excludeFromLatest","createdAt",
 *    "retention":{"keepEverywhere","rollbackRegions":[names],"rollbackDays"} (optional)}
 * A version record:
 *   {"repository","version","sourceRegion",
 *    "publishingProfile":{"targetRegions":[TR...],"replicaCount","storageClass",
 *                         "excludeFromLatest","endOfLifeDate","replicationMode",
 *                         "publishedDate"},
 *    "safetyProfile":{"allowDeletionOfReplicatedLocations","blockDeletionBeforeEndOfLife"},
 *    "removingRegions":[{"name","sinceMs"}] (regions taken out of the targets, until each
 *                                           reports Removed; absent when none)}
 * TR = {"name","regionalReplicaCount","storageClass","excludeFromLatest"}. */
#ifndef MERIDIAN_IMAGE_VERSION_H
#define MERIDIAN_IMAGE_VERSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

#define IV_LATEST "latest"

/* MAJOR.MINOR.PATCH, each a decimal without leading zeros below 2^31. */
struct iv_version {
    uint32_t major, minor, patch;
};
/* 0 if s is a version string (out may be NULL), -1 otherwise. */
int iv_version_parse(const char *s, struct iv_version *out);
/* <0, 0, >0 as a orders before, with, after b. */
int iv_version_cmp(const struct iv_version *a, const struct iv_version *b);

/* "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SS[.fff]Z": 0 with *ms set (epoch
 * milliseconds), -1 when malformed or not a real date. */
int iv_date_parse(const char *s, int64_t *ms);

/* What the rules need to know of the registry: its regions and each one's volume count
 * (the most copies it can hold), and the time. */
struct iv_region {
    const char *name;
    int volumes;
    json_t *classes; /* {"class": volumes} the region advertises; NULL: `volumes` of any class */
};
struct iv_world {
    const struct iv_region *regions;
    size_t n_regions;
    int64_t now_ms;
};

/* A new definition record for repo from a request body (the fields above, all optional).
 * NULL with e set (ERR_BAD_REQUEST) on bad input. */
json_t *iv_definition_new(const char *repo, const json_t *body, const struct iv_world *w,
                          struct err *e);

/* A new version record: body (NULL: none) as for iv_profile_update but without
 * addRegions/removeRegions, the rest from the definition (NULL: none), then defaults.
 * With no target regions named anywhere, every region is a target. The source region
 * is always a target (added when missing). NULL with e set (ERR_BAD_REQUEST). */
json_t *iv_profile_new(const char *repo, const char *version, const char *source_region,
                       const json_t *definition, const json_t *body, const struct iv_world *w,
                       struct err *e);

/* The record after the update in body: targetRegions (replaces the list), addRegions,
 * removeRegions (names), replicaCount, storageClass, excludeFromLatest, endOfLifeDate
 * (null clears it), replicationMode, allowDeletionOfReplicatedLocations,
 * blockDeletionBeforeEndOfLife; a body may also nest them as ACG does, under
 * "publishingProfile" and "safetyProfile". Refused (NULL, e set; record untouched):
 * unknown fields or regions, bad counts, dates, modes (ERR_BAD_REQUEST); a target list
 * without the source region; removing a region while allowDeletionOfReplicatedLocations
 * is false (ERR_CONFLICT). */
json_t *iv_profile_update(const json_t *record, const json_t *body, const struct iv_world *w,
                          struct err *e);

/* Retention of a definition ({"retention":{"keepEverywhere":N,"rollbackRegions":[...],
 * "rollbackDays":D}}): records is the definition's version records in version order, i
 * one of them. A version below the newest N, which left them (when the version N places
 * above it was published) at least D days before now_ms, keeps only its targets among the
 * rollback regions and its source region. The new record, or NULL when nothing changes. */
json_t *iv_retention_apply(const json_t *definition, const json_t *records, size_t i,
                           int64_t now_ms);

/* Placement: does region hold the content of the version (is it a target)? */
bool iv_holds(const json_t *record, const char *region);
/* A Shallow version in a target region other than its source: the region holds its
 * metadata and fetches its blobs on first pull. */
bool iv_is_shallow_here(const json_t *record, const char *region);
/* The older signature scheme's tags, sha256-<hex>.sig / .att / .sbom: referrers that name
 * their subject (sha256:<hex>, into subject when not NULL), not versions. */
bool iv_referrer_tag(const char *tag, char subject[DIGEST_STR_MAX]);
/* The target region names of record, in profile order (NULL-terminated; free the array
 * only: the names belong to record). */
const char **iv_targets(const json_t *record);
/* Excluded from latest, globally or for region. */
bool iv_is_excluded(const json_t *record, const char *region);
/* Past its end of life at now_ms. */
bool iv_is_end_of_life(const json_t *record, int64_t now_ms);

/* One version as the latest resolution sees it in one region. */
struct iv_candidate {
    const char *version;
    const json_t *record;
    bool is_completed; /* Completed (visible) in the region */
};
/* The region-local `latest`: the highest version that targets region, is not excluded
 * (globally or for region), is not past end of life and is Completed there; the index
 * into c, or -1 if none. */
long iv_latest(const struct iv_candidate *c, size_t n, const char *region, int64_t now_ms);

/* Over the target regions' states: Failed if any failed, else Completed if all
 * completed, else InProgress if any started or finished, else Pending. */
const char *iv_aggregate(const char *const *states, size_t n);

/* ISO 8601 UTC text of ms ("2026-12-03T11:21:08.000Z"). */
void iv_iso_time(int64_t ms, char *out, size_t out_len);

#endif
