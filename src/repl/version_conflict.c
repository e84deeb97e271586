#include "version_conflict.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image_catalog.h"
#include "log.h"
#include "placement.h"
#include "registry_ctx.h"
#include "util.h"
#include "webhook.h"

/* The record as compact text ("" when there is none), to compare before and after; NULL
 * with *e set when it cannot be read (not the same as none: in a merge's unit of work that
 * must roll the merge back, or its delivery would be lost or queued twice). */
static char *record_read(struct registry *reg, const char *repo, const char *version,
                         struct err *e)
{
    struct err re = {0};
    json_t *rec = image_catalog_conflict(reg->ms, repo, version, &re);
    if (rec == NULL && re.code != ERR_NOT_FOUND) {
        *e = re;
        return NULL;
    }
    char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("");
    json_decref(rec);
    return text;
}

/* Outside a unit of work: a record that cannot be read counts as none (nothing reported). */
static char *record_text(struct registry *reg, const char *repo, const char *version)
{
    struct err e = {0};
    char *text = record_read(reg, repo, version, &e);
    return text != NULL ? text : xstrdup("");
}

/* Held from begin to end: the record read before one merge must not be read again
 * before another path's merge of the same tag has been compared (two reports). Taken only
 * for tags of versioned repositories, after the writer's lock is released. */
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;

void version_conflict_begin(struct registry *reg, const struct meta_event *ev,
                            struct version_conflict *vc)
{
    *vc = (struct version_conflict){0};
    if (strcmp(ev->kind, "tag_set") != 0 || ev->repo == NULL || ev->name == NULL ||
        !image_catalog_is_definition(reg->ms, ev->repo))
        return;
    AZ(pthread_mutex_lock(&report_mu));
    vc->before = record_text(reg, ev->repo, ev->name);
}

static bool is_changed(const char *before, const char *after)
{
    return after != NULL && after[0] != '\0' && strcmp(after, before) != 0;
}

int version_conflict_probe(struct registry *reg, struct webhook_tx *tx,
                           const struct meta_event *ev, struct version_conflict *vc,
                           struct err *e)
{
    if (vc->before == NULL || !tx->is_open)
        return 0;
    char *before = record_read(reg, ev->repo, ev->name, e); /* in tx: the writer's lock held */
    if (before == NULL)
        return -1;
    free(vc->before);
    vc->before = before;
    return 0;
}

int version_conflict_queue(struct registry *reg, struct webhook_tx *tx,
                           const struct meta_event *ev, bool is_new,
                           struct version_conflict *vc, struct err *e)
{
    if (vc->before == NULL || !is_new || !tx->is_open)
        return 0;
    free(vc->after);
    vc->after = record_read(reg, ev->repo, ev->name, e); /* read in tx: the merge is in it */
    if (vc->after == NULL)
        return -1;
    if (!is_changed(vc->before, vc->after))
        return 0;
    json_error_t je;
    json_t *rec = json_loads(vc->after, 0, &je);
    const char *winner =
        json_string_value(json_object_get(json_object_get(rec, "winner"), "digest"));
    struct webhook_effect wev = {.action = "version.conflict", .repo = ev->repo,
                                 .tag = ev->name, .digest = winner, .size = -1,
                                 .request_id = "replication", .method = "REPLICATE",
                                 .host = reg->cfg->region};
    int rc = webhook_tx_queue(tx, &wev, e);
    json_decref(rec);
    return rc;
}

/* Logs and audits the record (its deliveries went with the merge: version_conflict_queue). */
static void report(struct registry *reg, const char *repo, const char *version, const char *text)
{
    json_error_t je;
    json_t *rec = json_loads(text, 0, &je);
    const json_t *w = json_object_get(rec, "winner");
    const char *winner = json_string_value(json_object_get(w, "digest"));
    char target[600], detail[400];
    snprintf(target, sizeof(target), "%s:%s", repo, version);
    int len = snprintf(detail, sizeof(detail), "Conflicted: kept %s (%s)", winner,
                       json_string_value(json_object_get(w, "region")));
    const json_t *l;
    size_t i;
    json_array_foreach(json_object_get(rec, "losers"), i, l)
    {
        if (len > 0 && (size_t)len < sizeof(detail))
            len += snprintf(detail + len, sizeof(detail) - (size_t)len, ", not %s (%s)",
                            json_string_value(json_object_get(l, "digest")),
                            json_string_value(json_object_get(l, "region")));
    }
    log_warn("versions", "%s %s", target, detail);
    struct meta_audit a = {.time_ms = util_now_ms(),
                           .actor = "replication",
                           .action = "image-version.conflict",
                           .target = target,
                           .status = 409,
                           .remote = "-",
                           .detail = detail};
    int64_t id;
    struct err e = {0};
    if (reg->ms->ops->audit_append(reg->ms, &a, reg->cfg->audit_max_rows, &id, &e) != 0)
        log_warn("versions", "failed to audit the conflict of %s: %s", target, err_message(&e));
    json_decref(rec);
}

/* A loser is kept addressable by digest where its version is held: placed again now that
 * the conflict record names it (it had no tag, so it was recorded as not held). */
static void place_losers(struct registry *reg, const char *repo, const char *text)
{
    json_error_t je;
    json_t *rec = json_loads(text, 0, &je);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(rec, "losers"), i, l)
    {
        const char *ld = json_string_value(json_object_get(l, "digest"));
        struct digest d;
        struct err e = {0};
        if (ld != NULL && digest_parse(ld, strlen(ld), &d, &e) == 0)
            placement_place_digest(reg, repo, &d);
    }
    json_decref(rec);
}

void version_conflict_end(struct registry *reg, const struct meta_event *ev, bool is_new,
                          struct version_conflict *vc)
{
    if (vc->before == NULL)
        return;
    /* Read again when no unit read it (no webhook): a merge that stored ev committed. */
    char *after = NULL;
    if (is_new)
        after = vc->after ? vc->after : record_text(reg, ev->repo, ev->name);
    else
        free(vc->after); /* a unit rolled back: what it read did not stay */
    vc->after = NULL;
    bool is_new_record = is_changed(vc->before, after);
    AZ(pthread_mutex_unlock(&report_mu));
    if (is_new_record) {
        report(reg, ev->repo, ev->name, after);
        place_losers(reg, ev->repo, after);
    }
    free(after);
    FREE_AND_NULL(vc->before);
}
