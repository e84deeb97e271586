/* Residency policies (docs/governance.md, "Residency"): which regions may hold the content of
 * the repositories a pattern matches. Replicated objects of kind RESIDENCY_KIND keyed by the
 * policy's name, valued
 *   {"name","repositories":PATTERN,"allowedRegions":[R...],"deniedRegions":[R...],
 *    "updatedMs"}
 * A region may hold repository X when every policy matching X allows it: it is listed in
 * the policy's allowedRegions (an empty list allows every region) and not in its
 * deniedRegions. The rules here do no I/O beyond reading the policies through the metastore
 * seam; the places that enforce them (pushes, replication, pull-through, image-version
 * targets, enforcement over existing content) call residency_check / residency_forbids. */
#ifndef MERIDIAN_RESIDENCY_H
#define MERIDIAN_RESIDENCY_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "metastore.h"

#define RESIDENCY_KIND "residency_policy"
/* The event kind that stands in for an event a region may not see (its origin, origin
 * sequence and clock only): the version vector advances, nothing is merged. */
#define RESIDENCY_REDACTED_KIND "redacted"
#define RESIDENCY_MAX_REGIONS 32
/* While the policies cannot be read, what they would filter for a peer region is not
 * answered at all (fail closed): 503 UNAVAILABLE with this message and Retry-After (s), the
 * interval at which the access-control snapshot tries to reload them (authz.c). */
#define RESIDENCY_UNKNOWN_MSG "residency policies cannot be read; try again"
#define RESIDENCY_UNKNOWN_RETRY_S 1
#define RESIDENCY_NAME_MAX 63

/* Every policy value (a JSON array, by name), or NULL with e set on a store failure. */
json_t *residency_policies(struct metastore *ms, struct err *e);

/* Pure: the first policy of policies (an array as above) that forbids region to hold repo,
 * or NULL when they all allow it. The policy belongs to policies. */
const json_t *residency_forbidding(const json_t *policies, const char *repo, const char *region);

/* Pure: may region hold repo under policies (no policy matching repo: yes)? The regions it
 * may be held in, when some policy restricts them, are not listed here: see
 * residency_allowed_json. */
/* The first policy that forbids repo in region and asks for existing copies to be removed
 * ("enforce": true, or a policy written before the flag existed); NULL when none. */
const json_t *residency_forbidding_enforced(const json_t *policies, const char *repo,
                                           const char *region);
bool residency_allows(const json_t *policies, const char *repo, const char *region);

/* Pure: the regions of world (a NULL-terminated list of names) repo may be held in under
 * policies, as a JSON array of names; caller decrefs. */
json_t *residency_allowed_json(const json_t *policies, const char *repo, const char *const *world);

/* 0 if region may hold repo; -1 with ERR_DENIED naming the policy and the regions it allows
 * (or another code when the policies cannot be read: a store that cannot answer refuses). */
int residency_check(struct metastore *ms, const char *repo, const char *region, struct err *e);

/* The same for every target region of an image version record or, for a definition
 * record, its defaultTargetRegions (ERR_DENIED naming the first forbidden target). */
int residency_check_targets(struct metastore *ms, const char *repo, const json_t *record,
                            struct err *e);

/* A policy name: 1 to RESIDENCY_NAME_MAX of a-z, 0-9, '-', '_' and '.', not first '.'. */
bool residency_name_is_valid(const char *s);

/* Validates a policy as the management API receives it ({"repositories","allowedRegions",
 * "deniedRegions"}) for name: the stored value (caller decrefs), or NULL with
 * ERR_BAD_REQUEST saying what is wrong. is_valid_pattern and is_valid_region are the
 * callers' checks (auth and config own those grammars). */
json_t *residency_policy_new(const char *name, const json_t *body,
                             bool (*is_valid_pattern)(const char *),
                             bool (*is_valid_region)(const char *), int64_t now_ms, struct err *e);

/* The repository an event is about (its repo, or for an object event of a kind bound to a
 * repository, the repository in its key), copied into out (size out_len); false when it is
 * about none (identities, webhooks, regions, policies, ...). */
bool residency_event_repo(const struct meta_event *ev, char *out, size_t out_len);

/* Turns ev into the redacted stand-in of itself in place (kind RESIDENCY_REDACTED_KIND, no
 * repository, name, digest or payload; origin, origin_seq, seq and hlc kept). */
void residency_redact(struct meta_event *ev);

#endif
