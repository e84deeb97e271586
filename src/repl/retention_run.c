/* Applies retention rules (retention_run.h). */
#include "retention_run.h"

#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "image_catalog.h"
#include "log.h"
#include "name.h"
#include "pull_record.h"
#include "registry_ctx.h"
#include "repo_locks.h"
#include "retention.h"
#include "util.h"
#include "webhook.h"

/* Why tag (of manifest d) may not be deleted, or NULL: the checks of a DELETE on /v2/. */
static const char *protection(struct registry *reg, const char *repo, const char *tag,
                              const struct digest *d, struct err *pe)
{
    struct repo_lock l;
    repo_lock_effective(reg->ms, repo, tag, d, &l);
    if (!l.delete_enabled)
        return "locked: deleteEnabled is false";
    if (image_catalog_check_delete(reg->ms, repo, tag, NULL, pe) != 0)
        return err_message(pe);
    return NULL;
}

/* Deletes one selected tag: the version records of a definition go with it, as on /v2/. */
static int delete_tag(struct registry *reg, const char *repo, const struct retention_tag *t,
                      struct err *e)
{
    struct meta_name_list versions = {0};
    if (image_catalog_versions_of(reg->ms, repo, t->name, NULL, &versions, e) != 0)
        return -1;
    /* The tag first: a tag written again since it was listed is kept (CONFLICT), and its
     * versions must then stay as they are. Deleted with the deliveries of this region's
     * webhooks, as a DELETE on /v2/ would be (webhook.h; the others' fire on the replicated
     * delete). */
    struct webhook_effect ev = {.action = "delete", .repo = repo, .tag = t->name,
                                .digest = t->digest, .size = -1, .request_id = "retention",
                                .method = "RETENTION", .host = reg->cfg->region};
    struct webhook_tx tx;
    int rc = webhook_tx_begin(reg, &tx, e);
    if (rc == 0)
        rc = reg->ms->ops->tag_delete_if(reg->ms, repo, t->name, t->digest, t->hlc, e);
    if (rc == 0)
        rc = webhook_tx_queue(&tx, &ev, e);
    if (webhook_tx_end(&tx, rc, e) != 0) {
        meta_name_list_fini(&versions);
        return -1;
    }
    struct err re = {0};
    if (image_catalog_retire(reg->ms, repo, &versions, &re) != 0)
        log_warn("retention", "deleted %s:%s but failed to retire its versions: %s", repo,
                 t->name, err_message(&re));
    image_catalog_forget(reg->ms, repo, &versions);
    meta_name_list_fini(&versions);
    return 0;
}

static void audit(struct registry *reg, const char *repo, const char *detail)
{
    struct meta_audit a = {.time_ms = util_now_ms(),
                           .actor = "retention",
                           .action = "retention.delete",
                           .target = (char *)repo,
                           .status = 200,
                           .remote = "-",
                           .detail = (char *)detail};
    int64_t id;
    struct err e = {0};
    if (reg->ms->ops->audit_append(reg->ms, &a, reg->cfg->audit_max_rows, &id, &e) != 0)
        log_warn("retention", "failed to audit deletions in %s: %s", repo, err_message(&e));
}

/* Applies the rules matching repo; appends to items. Returns the number deleted. */
static size_t apply_repo(struct registry *reg, const struct retention_rules *rules,
                         const char *repo, bool is_dry_run, int64_t now_ms, json_t *items,
                         json_t *kept)
{
    struct retention_tag *tags = NULL;
    size_t n = 0, n_deleted = 0;
    struct err e = {0};
    if (reg->ms->ops->tag_clocks(reg->ms, repo, &tags, &n, &e) != 0) {
        log_warn("retention", "failed to list the tags of %s: %s", repo, err_message(&e));
        return 0;
    }
    /* A tag any matching rule selects goes (rules are evaluated apart). retention_select
     * sorts by a total order, so the tags keep their places after the first rule. */
    bool needs_pulls = false;
    for (size_t r = 0; r < rules->n; r++)
        needs_pulls |= rules->items[r].pulled_within_s >= 0 &&
                       name_matches_pattern(rules->items[r].pattern, repo);
    for (size_t i = 0; needs_pulls && i < n; i++)
        tags[i].pulled_ms = pull_record_get(reg->ms, repo, tags[i].digest);
    const char **why = xcalloc(n + 1, sizeof(*why));
    const char **pulled_why = xcalloc(n + 1, sizeof(*pulled_why));
    for (size_t r = 0; r < rules->n; r++) {
        if (!name_matches_pattern(rules->items[r].pattern, repo))
            continue;
        retention_select(&rules->items[r], tags, n, now_ms);
        for (size_t i = 0; i < n; i++) {
            if (tags[i].is_selected && why[i] == NULL)
                why[i] = rules->items[r].pattern;
            if (tags[i].is_kept_by_pull && pulled_why[i] == NULL)
                pulled_why[i] = rules->items[r].pattern;
        }
    }
    /* Tags a rule keeps only for their recent pulls (and no other rule selects). */
    for (size_t i = 0; i < n; i++)
        if (pulled_why[i] != NULL && why[i] == NULL)
            json_array_append_new(
                kept, json_pack("{s:s,s:s,s:s,s:s,s:I}", "repository", repo, "tag", tags[i].name,
                                "digest", tags[i].digest, "rule", pulled_why[i], "pulledMs",
                                (json_int_t)tags[i].pulled_ms));
    free(pulled_why);
    char detail[400] = "";
    for (size_t i = 0; i < n; i++) {
        if (why[i] == NULL)
            continue;
        const char *owner = tags[i].origin[0] != '\0' ? tags[i].origin : reg->cfg->region;
        bool is_mine = strcmp(owner, reg->cfg->region) == 0;
        struct digest d;
        struct err pe = {0};
        bool has_digest = digest_parse(tags[i].digest, strlen(tags[i].digest), &d, &pe) == 0;
        const char *refused = protection(reg, repo, tags[i].name, has_digest ? &d : NULL, &pe);
        bool is_deleted = false;
        if (refused == NULL && is_mine && !is_dry_run) {
            struct err de = {0};
            if (delete_tag(reg, repo, &tags[i], &de) == 0) {
                is_deleted = true;
                n_deleted++;
                size_t len = strlen(detail);
                snprintf(detail + len, sizeof(detail) - len, "%s%s", len ? "," : "", tags[i].name);
            } else {
                log_warn("retention", "failed to delete %s:%s: %s", repo, tags[i].name,
                         err_message(&de));
            }
        }
        json_t *item = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "repository", repo, "tag",
                                 tags[i].name, "digest", tags[i].digest, "rule", why[i], "region",
                                 owner, "deleted", is_deleted);
        if (tags[i].pulled_ms > 0)
            json_object_set_new(item, "pulledMs", json_integer(tags[i].pulled_ms));
        if (refused != NULL)
            json_object_set_new(item, "refused", json_string(refused));
        json_array_append_new(items, item);
    }
    if (n_deleted > 0) {
        char text[480];
        snprintf(text, sizeof(text), "%zu tags: %s", n_deleted, detail);
        audit(reg, repo, text);
        log_info("retention", "deleted %zu tags of %s", n_deleted, repo);
    }
    free(why);
    retention_tags_free(tags, n);
    return n_deleted;
}

json_t *retention_run(struct registry *reg, bool is_dry_run, struct err *e)
{
    struct retention_rules rules;
    if (retention_rules_load(reg->ms, &rules, e) != 0)
        return NULL;
    json_t *items = json_array(), *kept = json_array();
    size_t n_deleted = 0;
    bool has_tag_rules = false;
    for (size_t r = 0; r < rules.n; r++)
        has_tag_rules |= rules.items[r].keep_newest >= 0 || rules.items[r].older_than_s >= 0 ||
                         rules.items[r].pulled_within_s >= 0;
    /* This node's own recent pulls count now, not at the next flush (other regions'
     * pulls count once replicated). */
    pull_record_flush(reg->pulls);
    struct meta_name_list repos = {0};
    if (has_tag_rules && reg->ms->ops->repo_list(reg->ms, "", -1, &repos, e) != 0) {
        retention_rules_fini(&rules);
        json_decref(items);
        json_decref(kept);
        return NULL;
    }
    int64_t now_ms = util_now_ms();
    for (size_t i = 0; i < repos.n; i++) {
        bool is_matched = false;
        for (size_t r = 0; r < rules.n && !is_matched; r++)
            is_matched = name_matches_pattern(rules.items[r].pattern, repos.names[i]);
        if (is_matched)
            n_deleted +=
                apply_repo(reg, &rules, repos.names[i], is_dry_run, now_ms, items, kept);
    }
    meta_name_list_fini(&repos);
    retention_rules_fini(&rules);
    return json_pack("{s:b,s:o,s:o,s:I}", "dry_run", is_dry_run, "tags", items, "kept", kept,
                     "deleted", (json_int_t)n_deleted);
}
