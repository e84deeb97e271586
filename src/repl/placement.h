/* Filtered replication (docs/image-versions.md, "Placement"): whether this region holds a
 * manifest's content, decided from the replicated version records (image_version.h), and
 * what follows when that answer changes: a region added to a version's targets fetches the
 * content, a region removed from them deletes its copies once nothing else here needs them.
 * Plain repositories are held everywhere, as before. In an image definition, a manifest
 * that belongs with a version goes where the version goes: an index's child manifests,
 * and referrers (a manifest whose subject it is, or a cosign-scheme tag
 * sha256-<hex>.sig/.att/.sbom) follow their subject. */
#ifndef MERIDIAN_PLACEMENT_H
#define MERIDIAN_PLACEMENT_H

#include <stdbool.h>

#include "digest.h"
#include "registry_ctx.h"

/* Does this region hold repo@d? Always outside definitions; in one, when a version it is
 * tagged with, or a manifest it belongs with (its index, its subject), is held here. */
bool placement_is_held(struct registry *reg, const char *repo, const struct digest *d);

/* Is repo@d (or what it belongs with) a Shallow version in this target region (not its
 * source)? Then its blobs are fetched on first pull, not ahead. */
bool placement_is_shallow(struct registry *reg, const char *repo, const struct digest *d);

/* May a pull of blob d in repo fetch it from a peer (oci_blobs.c's pull-through)? Not in
 * an image definition unless a manifest this region holds needs it (a Shallow version's
 * first pull, a pull racing the fetch workers): a region never takes in the bytes of a
 * version it does not hold. */
bool placement_may_pull_blob(struct registry *reg, const char *repo, const struct digest *d);

/* Before a held manifest is shown and reported Completed: are the manifests that belong
 * with it and are held here (its children and referrers known now) visible? */
bool placement_dependents_ready(struct registry *reg, const char *repo, const struct digest *d);

/* For the fetch workers, before they fetch pending repo@d: true if this region holds it
 * (and what belongs with it, recorded before it and not held, joins the fetch queue);
 * otherwise it leaves the fetch queue (recorded, not held) and false is returned. */
bool placement_admit_pending(struct registry *reg, const char *repo, const struct digest *d);

/* The profile of repo:version changed (here or by a replicated event): fetch its content
 * (back to pending, status Pending) or stop holding it (not fetched, or released: its blobs'
 * links and, when nothing here needs them any more, their files go). No-op when the
 * version has no manifest here yet. */
void placement_reconsider(struct registry *reg, const char *repo, const char *version);

/* Places repo@d again by the rules above (e.g. the loser of a concurrent version push,
 * which stays addressable by digest wherever the version is held). */
void placement_place_digest(struct registry *reg, const char *repo, const struct digest *d);

/* A replicated object event (object_put/object_delete) was applied: when it is a version
 * record (key "REPO:VERSION"), the same as placement_reconsider. */
void placement_on_object_event(struct registry *reg, const char *key, const char *payload);

/* Applies the retention policy of every definition to the versions this region is the
 * source of (so each version is changed by one region only, the same way whichever region
 * it was pushed to): profile updates, each in the audit log as image-version.update by
 * "retention". Called periodically (every --sync-interval). */
void placement_retention_run(struct registry *reg);

#endif
