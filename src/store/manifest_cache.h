/* A small cache of manifest lookups (repository, reference -> the stored row), for the
 * metadata store's hot path: a manifest GET. An entry is valid only for the commit count it
 * was filled at (sql_driver.h, commits): any commit to the database afterwards makes every
 * entry stale, so the cache can never answer with something a lookup would not. */
#ifndef MERIDIAN_MANIFEST_CACHE_H
#define MERIDIAN_MANIFEST_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "metastore.h"

struct manifest_cache;

struct manifest_cache *manifest_cache_new(void);
void manifest_cache_free(struct manifest_cache *mc);

/* Copies the entry for (repo, ref) into out (the caller owns it: meta_manifest_fini) when
 * it was filled at commit count gen; false, out untouched, otherwise. */
bool manifest_cache_get(struct manifest_cache *mc, const char *repo, const char *ref,
                        uint64_t gen, struct meta_manifest *out);

/* Keeps a copy of m as the answer for (repo, ref) at commit count gen, read before the
 * lookup that produced m. Bodies over MANIFEST_CACHE_MAX_BODY are not kept. */
void manifest_cache_put(struct manifest_cache *mc, const char *repo, const char *ref,
                        uint64_t gen, const struct meta_manifest *m);

#define MANIFEST_CACHE_SLOTS 512
#define MANIFEST_CACHE_MAX_BODY (8 * 1024)

#endif
