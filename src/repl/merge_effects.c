/* The webhooks of what merging a peer's writes does here: read before and after the merge,
 * in its unit of work (merge_effects.h). Before 6 December only the event stream fired
 * them, on every new delete event whether or not it removed anything, and a record merged
 * by anti-entropy, the snapshot or the pull-through lookup fired none: a delete a region
 * missed in the log (compacted, or repaired first) removed the manifest there silently. */
#include "merge_effects.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry_ctx.h"
#include "version_conflict.h"

/* Which manifest ref (a tag or a digest) names here, whether it is shown: *is_here false
 * when none (no record of it). 0, or -1 with e set. */
static int lookup(struct metastore *ms, const char *repo, const char *ref, bool *is_here,
                  struct digest *d, bool *is_shown, struct err *e)
{
    char *media_type = NULL;
    int64_t size = 0, recorded_ms = 0;
    struct err le = {0};
    *is_shown = false;
    *is_here = ms->ops->manifest_lookup(ms, repo, ref, d, &media_type, &size, is_shown,
                                        &recorded_ms, &le) == 0;
    free(media_type);
    if (*is_here || le.code == ERR_MANIFEST_UNKNOWN || le.code == ERR_NAME_UNKNOWN)
        return 0;
    *e = le;
    if (e->code != ERR_NO_SPACE && e->code != ERR_UNAVAILABLE)
        e->code = ERR_IO; /* not a verdict of the merge's caller (webhook.c, store_failure) */
    return -1;
}

static bool is_kind(const struct meta_event *ev, const char *kind)
{
    return strcmp(ev->kind, kind) == 0;
}

/* The reference a write changes: the tag, or the manifest's digest; NULL: none (also for
 * a digest that does not parse: a peer's malformed write announces nothing, as before). */
static const char *ref_of(const struct meta_event *ev)
{
    if (ev->repo == NULL)
        return NULL;
    if (is_kind(ev, "tag_delete") || is_kind(ev, "tag_set"))
        return ev->name;
    struct digest d;
    struct err ignore = {0};
    if (!is_kind(ev, "manifest_delete") || ev->digest == NULL ||
        digest_parse(ev->digest, strlen(ev->digest), &d, &ignore) != 0)
        return NULL;
    return ev->digest;
}

int merge_effect_probe(struct webhook_tx *tx, const struct meta_event *ev,
                       struct merge_effect *fx, struct err *e)
{
    *fx = (struct merge_effect){0};
    const char *ref = ref_of(ev);
    if (!tx->is_open || ref == NULL)
        return 0;
    bool is_shown;
    struct metastore *ms = tx->reg->ms;
    if (lookup(ms, ev->repo, ref, &fx->had, &fx->before, &is_shown, e) != 0)
        return -1;
    if (!fx->had || !is_kind(ev, "manifest_delete") ||
        ms->ops->manifest_tags(ms, ev->repo, &fx->before, &fx->tags, e) == 0)
        return 0;
    if (e->code != ERR_NO_SPACE && e->code != ERR_UNAVAILABLE)
        e->code = ERR_IO; /* as lookup: a store failure, not a verdict */
    return -1;
}

void merge_effect_fini(struct merge_effect *fx)
{
    meta_name_list_fini(&fx->tags);
}

int merge_effect_queue(struct webhook_tx *tx, const struct meta_event *ev,
                       const struct merge_effect *fx, bool with_push, struct err *e)
{
    const char *ref = ref_of(ev);
    if (!tx->is_open || ref == NULL)
        return 0;
    bool is_tag_set = is_kind(ev, "tag_set");
    if (!fx->had && !(is_tag_set && with_push))
        return 0;
    bool is_here, is_shown;
    struct digest now;
    if (lookup(tx->reg->ms, ev->repo, ref, &is_here, &now, &is_shown, e) != 0)
        return -1;
    if (is_tag_set) {
        /* A tag of a manifest shown here (one not shown yet fires with it when it is:
         * complete_pending reads its tags then). */
        struct digest d;
        struct err ignore = {0};
        bool was_named = fx->had && digest_equal(&fx->before, &now);
        if (!with_push || !is_here || !is_shown || was_named || ev->digest == NULL ||
            digest_parse(ev->digest, strlen(ev->digest), &d, &ignore) != 0 ||
            !digest_equal(&d, &now))
            return 0;
        const char *tag = ev->name;
        return webhook_tx_queue_replicated(tx, "push", ev->repo, &now, &tag, 1, e);
    }
    /* The tags a manifest's delete ended here (those older than it, meta_merge.c
     * dead_tags_drop), also when the manifest stays (put again here after the delete). */
    for (size_t i = 0; i < fx->tags.n; i++) {
        const char *tag = fx->tags.names[i];
        bool is_tagged, is_tag_shown;
        if (lookup(tx->reg->ms, ev->repo, tag, &is_tagged, &now, &is_tag_shown, e) != 0)
            return -1;
        if ((!is_tagged || !digest_equal(&now, &fx->before)) &&
            webhook_tx_queue_replicated(tx, "delete", ev->repo, &fx->before, &tag, 1, e) != 0)
            return -1;
    }
    /* A delete took effect when what it names is gone: a manifest kept (a later put, or a
     * collector's tombstone something here keeps) or a tag a later write moved stays. */
    if (is_here)
        return 0;
    const char *tag = is_kind(ev, "tag_delete") ? ev->name : NULL;
    return webhook_tx_queue_replicated(tx, "delete", ev->repo, &fx->before, &tag, tag ? 1 : 0,
                                       e);
}

int merge_effects_state(struct registry *reg, pthread_mutex_t *hook_mu,
                        const struct meta_event *rec, int64_t tombs_before, struct err *e)
{
    struct metastore *ms = reg->ms;
    struct version_conflict vc;
    version_conflict_begin(reg, rec, &vc);
    bool is_tag_set = is_kind(rec, "tag_set");
    if (is_tag_set)
        AZ(pthread_mutex_lock(hook_mu));
    struct webhook_tx tx = {0};
    struct merge_effect fx = {0};
    int rc = ref_of(rec) != NULL ? webhook_tx_begin(reg, &tx, e) : 0;
    if (rc == 0)
        rc = version_conflict_probe(reg, &tx, rec, &vc, e);
    if (rc == 0)
        rc = merge_effect_probe(&tx, rec, &fx, e);
    if (rc == 0)
        rc = ms->ops->state_merge(ms, rec, tombs_before, e);
    if (rc == 0)
        rc = merge_effect_queue(&tx, rec, &fx, true, e);
    if (rc == 0)
        rc = version_conflict_queue(reg, &tx, rec, true, &vc, e);
    rc = webhook_tx_end(&tx, rc, e);
    merge_effect_fini(&fx);
    if (is_tag_set)
        AZ(pthread_mutex_unlock(hook_mu));
    version_conflict_end(reg, rec, rc == 0, &vc);
    return rc;
}

int merge_effects_forget(struct registry *reg, const struct meta_event *rec, struct err *e)
{
    struct metastore *ms = reg->ms;
    /* Read as the delete it stands for: a manifest's record, a live tag register (a deleted
     * one removes nothing a client sees). Its tags go with the manifest (their registers,
     * forgotten after it, name nothing here then): one delivery each (merge_effect_queue). */
    struct meta_event as = *rec;
    bool is_manifest = is_kind(rec, "manifest_put");
    as.kind = is_manifest ? "manifest_delete" : is_kind(rec, "tag_set") ? "tag_delete" : NULL;
    struct webhook_tx tx = {0};
    struct merge_effect fx = {0};
    int rc = as.kind != NULL && ref_of(&as) != NULL ? webhook_tx_begin(reg, &tx, e) : 0;
    if (rc == 0 && tx.is_open)
        rc = merge_effect_probe(&tx, &as, &fx, e);
    if (rc == 0)
        rc = ms->ops->state_forget(ms, rec, e);
    if (rc == 0 && tx.is_open)
        rc = merge_effect_queue(&tx, &as, &fx, false, e);
    merge_effect_fini(&fx);
    return webhook_tx_end(&tx, rc, e);
}
