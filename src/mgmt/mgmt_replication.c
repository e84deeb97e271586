/* Management API of regions: /_meridian/v1/replications[/{location}], and the peer
 * API under /_meridian/v1/replication/ (events long poll, introduce, summary, state)
 * that regions use among themselves. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "compact.h"
#include "log.h"
#include "mgmt_api.h"
#include "registry_ctx.h"
#include "repl.h"
#include "repl_codec.h"
#include "residency.h"
#include "util.h"

#define EVENTS_WAIT_MAX_S 60
#define EVENTS_BATCH_MAX 2000
#define EVENTS_REPLY_MAX (48u << 20)
#define EVENTS_REPLY_TAIL_MAX (4u << 20) /* positions and relayed acknowledgements */

static void reply_err(struct http_req *req, const struct err *e)
{
    http_reply_mgmt_err(req, e);
}

/* The residency policies could not be read (cause): what they filter for the asking region
 * is not sent at all, 503 UNAVAILABLE with Retry-After, as a peer's /v2/ reads are refused
 * meanwhile (authz.c). */
static void reply_residency_unknown(struct http_req *req, const struct err *cause)
{
    log_warn("repl", "failed to read residency policies: %s", err_message(cause));
    mgmt_reply_error(req, ERR_UNAVAILABLE, RESIDENCY_UNKNOWN_MSG);
    http_reply_header(req, "Retry-After", "%d", RESIDENCY_UNKNOWN_RETRY_S);
}

/* GET replications */
void mgmt_replications_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    mgmt_reply_json(req, 200, repl_replications_json(req->reg->repl, NULL));
}

/* GET replications/{location} */
void mgmt_replications_show(struct http_req *req, const struct mgmt_params *p)
{
    json_t *list = repl_replications_json(req->reg->repl, mgmt_param(p, "location"));
    if (json_array_size(list) == 0) {
        json_decref(list);
        mgmt_reply_error(req, ERR_NOT_FOUND, "no replication named %s",
                         mgmt_param(p, "location"));
        return;
    }
    json_t *one = json_incref(json_array_get(list, 0));
    json_decref(list);
    mgmt_reply_json(req, 200, one);
}

/* POST replications {"location","endpoint"} */
void mgmt_replications_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    json_t *body = mgmt_body_object(req);
    struct err e = {0};
    if (body == NULL)
        return;
    const char *location = json_string_value(json_object_get(body, "location"));
    const char *endpoint = json_string_value(json_object_get(body, "endpoint"));
    if (repl_add(req->reg->repl, location, endpoint, &e) != 0) {
        json_decref(body);
        reply_err(req, &e);
        return;
    }
    json_t *list = repl_replications_json(req->reg->repl, location);
    json_t *one = json_incref(json_array_get(list, 0));
    json_decref(list);
    json_decref(body);
    mgmt_reply_json(req, 201, one ? one : json_object());
}

/* DELETE replications/{location} */
void mgmt_replications_delete(struct http_req *req, const struct mgmt_params *p)
{
    struct err e = {0};
    if (repl_remove(req->reg->repl, mgmt_param(p, "location"), &e) != 0) {
        reply_err(req, &e);
        return;
    }
    http_reply(req, 202, "application/json", "{}", 2);
}

/* Peer API ------------------------------------------------------------------------------ */

struct events_wait {
    unsigned magic;
    int64_t deadline_ms;
    int64_t seen_head;  /* the log head when the poll was parked */
    uint64_t seen_acks; /* compact_acks_changed when the poll came */
};
#define EVENTS_WAIT_MAGIC 0x45565754u

static void events_wait_cleanup(struct http_req *req)
{
    struct events_wait *w = req->handler_state;
    if (w)
        ASSERT(w->magic == EVENTS_WAIT_MAGIC);
    free(w);
    req->handler_state = NULL;
}

/* http_park_f: the worker is done with req; the replication manager owns it now. */
static void on_parked(struct http_req *req, void *arg)
{
    struct events_wait *w = req->handler_state;
    (void)arg;
    ASSERT(w->magic == EVENTS_WAIT_MAGIC);
    repl_wait_register(req->reg->repl, req, w->seen_head, w->seen_acks, w->deadline_ms);
}

/* A region name as a reply or the log may show it: what a caller sent is echoed only
 * when it is a valid region name (anything else could be bytes that are not UTF-8). */
static const char *shown(const char *name)
{
    if (name == NULL)
        return "(none)";
    return repl_codec_is_valid_region(name) ? name : "(not a region name)";
}

/* Only regions of this registry may read its log. true to go on; false after replying
 * 403 DENIED (not a region) or 503 UNAVAILABLE with Retry-After (the membership could not
 * be read: it sits beside the residency policies, and the caller should retry as it would
 * for them). */
static bool check_member(struct http_req *req, const char *location)
{
    struct registry *reg = req->reg;
    char *value = NULL;
    struct err e = {0};
    if (location != NULL && !repl_codec_is_valid_region(location)) {
        mgmt_reply_error(req, ERR_DENIED, "%s is not a region of this registry",
                         shown(location));
        return false; /* not looked up: no region has such a name */
    }
    if (location != NULL &&
        reg->ms->ops->object_get(reg->ms, "replication", location, &value, &e) == 0) {
        free(value);
        return true;
    }
    if (location != NULL && e.code != ERR_NOT_FOUND) {
        log_warn("repl", "failed to read the membership of %s: %s", location, err_message(&e));
        mgmt_reply_error(req, ERR_UNAVAILABLE,
                         "the regions of this registry cannot be read; try again");
        http_reply_header(req, "Retry-After", "%d", RESIDENCY_UNKNOWN_RETRY_S);
        return false;
    }
    mgmt_reply_error(req, ERR_DENIED, "%s is not a region of this registry",
                     location ? shown(location) : "the caller");
    return false;
}

/* The non-negative integer query parameter name into *out: dflt when absent, at most max.
 * false after replying 400 when it is something else (nothing is read or recorded). */
static bool query_i64(struct http_req *req, const char *name, int64_t dflt, int64_t max,
                      int64_t *out)
{
    const char *v = http_req_query(req, name);
    uint64_t n;
    *out = dflt;
    if (v == NULL)
        return true;
    if (util_parse_u64(v, strlen(v), &n) != 0 || n > (uint64_t)INT64_MAX) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "%s must be a non-negative integer", name);
        return false;
    }
    *out = (int64_t)n > max ? max : (int64_t)n;
    return true;
}

/* Said once per process: a peer holds an event of this region's name that its log does
 * not hold (restored from an older copy; the peer records it, and this region's reports
 * from before it opened its database count again once it has reported them anew). */
static void note_restored(const char *from, int64_t seq)
{
    static atomic_bool is_said;
    if (atomic_exchange(&is_said, true))
        return;
    log_error("repl",
              "%s holds event #%" PRId64 " of this region's name that this log does not: this "
              "region was restored from an older copy of its data (docs/replication.md, \"A "
              "region restored from an older copy\")",
              from, seq);
}

/* Residency (residency.h): of events read for region `from`, those about a repository it
 * may not hold are sent as redacted stand-ins (origin, sequence and clock: its version
 * vector advances past them), and redacted events this region relays for another origin
 * are left out (whoever asks may be allowed the original: it gets it from the origin or
 * another holder). A redacted event this region originated is sent as it is. */
static int withhold(struct registry *reg, const char *from, struct meta_event *events,
                    size_t *n, struct err *e)
{
    json_t *policies = residency_policies(reg->ms, e);
    if (policies == NULL) {
        for (size_t i = 0; i < *n; i++)
            meta_event_fini(&events[i]);
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        struct meta_event *ev = &events[i];
        char about[1100];
        bool is_redacted = strcmp(ev->kind, RESIDENCY_REDACTED_KIND) == 0;
        if (is_redacted && strcmp(ev->origin, reg->cfg->region) != 0) {
            meta_event_fini(ev);
            continue;
        }
        if (!is_redacted && residency_event_repo(ev, about, sizeof(about)) &&
            !residency_allows(policies, about, from))
            residency_redact(ev);
        events[kept++] = *ev;
    }
    *n = kept;
    json_decref(policies);
    return 0;
}

/* The log horizon as [{"origin","seq","hlc"}]. */
static json_t *horizon_json(const struct meta_horizon *h, size_t n)
{
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, json_pack("{s:s, s:I, s:I}", "origin", h[i].origin, "seq",
                                             (json_int_t)h[i].seq, "hlc", (json_int_t)h[i].hlc));
    return out;
}

/* ,"acks":{REGION:{"vv","age_ms"}}: what every other region last acknowledged to this one,
 * and this region's own version vector (age 0), for the caller's status of a tag
 * (compact.h, "Relayed acknowledgements"). */
static void append_relayed_acks(struct registry *reg, struct compact *compact, const char *from,
                                struct buf *b)
{
    json_t *acks = compact_relay_json(compact, from);
    struct meta_vv mine = {0};
    struct err e = {0};
    if (reg->ms->ops->vv_get(reg->ms, &mine, &e) == 0 && mine.n > 0) {
        struct buf text;
        buf_init(&text, 1u << 20);
        repl_codec_vv_to_string(&mine, &text);
        json_object_set_new(acks, reg->cfg->region,
                            json_pack("{s:s, s:i}", "vv", text.data, "age_ms", 0));
        buf_fini(&text);
    }
    meta_vv_fini(&mine);
    char *out = json_dumps(acks, JSON_COMPACT);
    json_decref(acks);
    if (out != NULL) {
        buf_appends(b, ",\"acks\":");
        buf_appends(b, out);
    }
    free(out);
}

/* GET replication/events?after=N&vv=...&wait=S&max=M&from=REGION: long poll. */
void mgmt_repl_events(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    struct meta_vv vv = {0};
    const char *from = http_req_query(req, "from");
    int64_t after, max, wait_s;
    if (!query_i64(req, "after", 0, INT64_MAX, &after) ||
        !query_i64(req, "max", 500, EVENTS_BATCH_MAX, &max) ||
        !query_i64(req, "wait", 0, EVENTS_WAIT_MAX_S, &wait_s))
        return;
    /* The newest event of this region's name the caller holds: when this log does not
     * hold that very event, the region was restored from an older copy of its data, and
     * the answer says so (restored_probe; the caller records it: repl.c). */
    int64_t held_seq, held_hlc, opened_hlc = 0;
    if (!query_i64(req, "held_seq", 0, INT64_MAX, &held_seq) ||
        !query_i64(req, "held_hlc", 0, INT64_MAX, &held_hlc))
        return;
    if (!check_member(req, from))
        return;
    /* With mutual TLS a region pulls as the region its certificate names, and no other:
     * what is sent depends on who asks (placement, residency). */
    if (!authz_peer_cert_names(req, from)) {
        log_warn("repl", "events refused: the peer certificate does not name region %s",
                 shown(from));
        mgmt_reply_error(req, ERR_DENIED, "the peer certificate does not name region %s",
                         shown(from));
        return;
    }
    if (repl_codec_vv_parse(http_req_query(req, "vv"), &vv, &e) != 0) {
        reply_err(req, &e);
        return;
    }
    /* What the caller has applied: compaction waits for it (compact.c). Below this log's
     * horizon it would miss events that are gone: it catches up from a snapshot. */
    struct meta_horizon *h = NULL;
    size_t nh = 0;
    if (reg->ms->ops->log_horizon(reg->ms, &h, &nh, &e) != 0) {
        meta_vv_fini(&vv);
        reply_err(req, &e);
        return;
    }
    if (held_seq > 0 &&
        reg->ms->ops->restored_probe(reg->ms, held_seq, held_hlc, &opened_hlc, &e) != 0) {
        meta_horizon_list_fini(h, nh);
        meta_vv_fini(&vv);
        reply_err(req, &e);
        return;
    }
    if (opened_hlc != 0)
        note_restored(from, held_seq);
    const char *below = NULL;
    bool is_below = compact_is_below(&vv, h, nh, &below);
    struct compact *compact = atomic_load(&reg->is_ready) ? reg->compact : NULL;
    compact_note_ack(compact, from, http_req_query(req, "vv"), is_below); /* set before is_ready */
    if (is_below) {
        json_t *out = json_pack("{s:{s:s, s:s}, s:o}", "error", "code", "COMPACTED", "message",
                                "events below this region's log horizon were compacted: "
                                "catch up from replication/snapshot",
                                "horizon", horizon_json(h, nh));
        log_info("repl",
                 "%s asked for events of %s this log no longer holds: it catches up "
                 "from a snapshot",
                 from, below);
        meta_horizon_list_fini(h, nh);
        meta_vv_fini(&vv);
        mgmt_reply_json(req, 410, out);
        return;
    }
    meta_horizon_list_fini(h, nh);
    struct events_wait *w = req->handler_state;
    if (w == NULL) {
        w = xcalloc(1, sizeof(*w));
        w->magic = EVENTS_WAIT_MAGIC;
        w->deadline_ms = util_now_ms() + wait_s * 1000;
        w->seen_acks = compact_acks_changed(compact);
        req->handler_state = w;
        req->handler_cleanup = events_wait_cleanup;
    }
    int64_t head = 0, last = after;
    struct meta_event *events = NULL;
    size_t n = 0;
    if (reg->ms->ops->log_head(reg->ms, &head, &e) != 0 ||
        reg->ms->ops->events_read(reg->ms, after, &vv, (size_t)(max > 0 ? max : 1), &events, &n,
                                  &last, &e) != 0) {
        meta_vv_fini(&vv);
        reply_err(req, &e);
        return;
    }
    meta_vv_fini(&vv);
    size_t n_read = n; /* all of them may be withheld: then answer at once, with `last` */
    if (withhold(reg, from, events, &n, &e) != 0) {
        free(events);
        reply_residency_unknown(req, &e);
        return;
    }
    /* Hold the poll open until there is news, unless this node is shutting down. Rows
     * read that the caller had already (its version vector) are news too: the answer moves
     * its position past them at once (held, a caller catching up through a log it mostly
     * has advanced one scan of rows per wait). */
    if (n_read == 0 && last == after && opened_hlc == 0 && util_now_ms() < w->deadline_ms &&
        atomic_load(&reg->is_ready) && compact_acks_changed(compact) == w->seen_acks) {
        free(events);
        w->seen_head = head;
        http_req_suspend(req, on_parked, NULL);
        return;
    }
    struct buf b;
    buf_init(&b, EVENTS_REPLY_MAX);
    buf_appends(&b, "{\"events\":[");
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        size_t before = b.len;
        if (i)
            buf_append(&b, ",", 1);
        repl_codec_event_to_json(&events[i], &b);
        if (b.is_too_big) {
            /* Send what fits; the caller resumes after the last event sent. */
            b.is_too_big = false;
            b.len = before;
            b.data[before] = '\0';
            last = i ? events[i - 1].seq : after;
            break;
        }
        written++;
        meta_event_fini(&events[i]);
    }
    for (size_t i = written; i < n; i++)
        meta_event_fini(&events[i]);
    free(events);
    b.max_bytes += EVENTS_REPLY_TAIL_MAX; /* the events filled at most EVENTS_REPLY_MAX */
    buf_printf(&b, "],\"last\":%" PRId64 ",\"head\":%" PRId64, last, head);
    if (opened_hlc != 0)
        buf_printf(&b, ",\"restored\":{\"opened\":%" PRId64 "}", opened_hlc);
    buf_appends(&b, ",\"region\":");
    buf_append_json_string(&b, reg->cfg->region);
    append_relayed_acks(reg, compact, from, &b);
    buf_appends(&b, "}");
    http_reply(req, 200, "application/json", b.data, b.len);
    buf_fini(&b);
}

/* POST replication/introduce {"registry","location","endpoint"} */
void mgmt_repl_introduce(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    /* With mutual TLS a region introduces itself only under the name its certificate
     * gives it: a certificate of one region cannot add another to the registry. */
    const char *location = json_string_value(json_object_get(body, "location"));
    if (!authz_peer_cert_names(req, location)) {
        err_set(&e, ERR_DENIED, "the peer certificate does not name region %s",
                shown(location));
        log_warn("repl", "introduction refused: %s", err_message(&e));
        json_decref(body);
        reply_err(req, &e);
        return;
    }
    int rc = repl_introduce(req->reg->repl,
                            json_string_value(json_object_get(body, "registry")),
                            json_string_value(json_object_get(body, "location")),
                            json_string_value(json_object_get(body, "endpoint")), body, &e);
    json_decref(body);
    if (rc != 0) {
        reply_err(req, &e);
        return;
    }
    /* With this region's coordinates, which the introducing region records. */
    json_t *out = repl_self_geo(req->reg->repl);
    json_object_set_new(out, "registry", json_string(req->reg->cfg->registry_name));
    json_object_set_new(out, "location", json_string(req->reg->cfg->region));
    mgmt_reply_json(req, 200, out);
}

/* GET replication/summary */
void mgmt_repl_summary(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    /* With mutual TLS the caller is the region its certificate names (residency filters
     * by it): `from` is required and must be that region. */
    if (!authz_peer_cert_names(req, http_req_query(req, "from"))) {
        mgmt_reply_error(req, ERR_DENIED, "the peer certificate does not name region %s",
                         shown(http_req_query(req, "from")));
        return;
    }
    const char *from = http_req_query(req, "from");
    if (from != NULL && !check_member(req, from))
        return; /* as for the events: only this registry's regions are filtered for */
    struct err e = {0};
    struct buf b;
    buf_init(&b, EVENTS_REPLY_MAX);
    if (req->reg->ms->ops->summary(req->reg->ms, &b, &e) != 0) {
        buf_fini(&b);
        reply_err(req, &e);
        return;
    }
    /* Residency: a region is not told of repositories it may not hold. */
    json_t *policies = from ? residency_policies(req->reg->ms, &e) : NULL;
    if (from != NULL && policies == NULL) {
        buf_fini(&b);
        reply_residency_unknown(req, &e);
        return;
    }
    if (json_array_size(policies) > 0) {
        json_error_t je;
        json_t *all = json_loadb(b.data, b.len, 0, &je);
        const char *repo;
        json_t *v, *tmp;
        json_object_foreach_safe(all, tmp, repo, v)
        {
            if (!residency_allows(policies, repo, from))
                json_object_del(all, repo);
        }
        json_decref(policies);
        buf_fini(&b);
        mgmt_reply_json(req, 200, all ? all : json_object());
        return;
    }
    json_decref(policies);
    http_reply(req, 200, "application/json", b.data, b.len);
    buf_fini(&b);
}

/* The definition of repo (key REPO) or the version record of ref (key REPO:REF). */
static bool is_record_of(const char *key, const char *repo, const char *ref)
{
    size_t len = strlen(repo);
    return strncmp(key, repo, len) == 0 &&
           (key[len] == '\0' || (key[len] == ':' && strcmp(key + len + 1, ref) == 0));
}

/* Keeps, of a repository's state, what a pull of reference (a tag or a digest) needs: the
 * tag's register, the image definition and the version record (the peer decides from
 * them whether it holds the version), the manifest the tag names and that manifest's
 * child manifests (an index), so a peer pulling one tag through gets a few records, not
 * the whole repository.
 * Returns the number kept (moved to the front; the others are freed). */
static size_t keep_reference(struct meta_event *items, size_t n, const char *repo,
                             const char *ref)
{
    const char *target = strchr(ref, ':') ? ref : NULL;
    for (size_t i = 0; i < n && target == NULL; i++) {
        if (strcmp(items[i].kind, "tag_set") == 0 && items[i].name &&
            strcmp(items[i].name, ref) == 0)
            target = items[i].digest;
    }
    json_t *children = json_array();
    for (size_t i = 0; i < n && target; i++) {
        if (strcmp(items[i].kind, "manifest_put") != 0 || items[i].digest == NULL ||
            strcmp(items[i].digest, target) != 0 || items[i].payload == NULL)
            continue;
        json_error_t je;
        json_t *pl = json_loads(items[i].payload, 0, &je);
        json_t *refs = json_object_get(pl, "refs");
        for (size_t k = 0; k < json_array_size(refs); k++) {
            json_t *r = json_array_get(refs, k);
            if (json_is_true(json_object_get(r, "isManifest")))
                json_array_append(children, json_object_get(r, "digest"));
        }
        json_decref(pl);
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_tag = items[i].name && (strcmp(items[i].kind, "tag_set") == 0 ||
                                        strcmp(items[i].kind, "tag_delete") == 0);
        bool is_object = strncmp(items[i].kind, "object_", 7) == 0 && items[i].name;
        bool keep = is_tag      ? strcmp(items[i].name, ref) == 0
                    : is_object ? is_record_of(items[i].name, repo, ref)
                                : items[i].digest && target && strcmp(items[i].digest, target) == 0;
        for (size_t k = 0; !keep && !is_tag && items[i].digest && k < json_array_size(children);
             k++)
            keep = strcmp(items[i].digest, json_string_value(json_array_get(children, k))) == 0;
        if (keep) {
            struct meta_event tmp = items[kept];
            items[kept++] = items[i];
            items[i] = tmp;
        }
    }
    for (size_t i = kept; i < n; i++)
        meta_event_fini(&items[i]);
    json_decref(children);
    return kept;
}

/* Sends b (JSON) and finishes it; an error naming what when it outgrew its cap. */
static void reply_buf(struct http_req *req, struct buf *b, const char *what)
{
    if (b->is_too_big)
        mgmt_reply_error(req, ERR_INTERNAL, "%s too large to send", what);
    else
        http_reply(req, 200, "application/json", b->data, b->len);
    buf_fini(b);
}

/* GET replication/state?repository=R[&reference=REF] */

void mgmt_repl_state(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    /* With mutual TLS the caller is the region its certificate names (residency filters
     * by it): `from` is required and must be that region. */
    if (!authz_peer_cert_names(req, http_req_query(req, "from"))) {
        mgmt_reply_error(req, ERR_DENIED, "the peer certificate does not name region %s",
                         shown(http_req_query(req, "from")));
        return;
    }
    struct err e = {0};
    const char *repo = http_req_query(req, "repository");
    if (repo == NULL) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "repository is required");
        return;
    }
    const char *from = http_req_query(req, "from");
    /* A region asking is one of this registry's (as for the events): the residency
     * filter below goes by its name. */
    if (from != NULL && !check_member(req, from))
        return;
    if (from != NULL) {
        json_t *policies = residency_policies(req->reg->ms, &e);
        if (policies == NULL) {
            reply_residency_unknown(req, &e);
            return;
        }
        bool is_allowed = residency_allows(policies, repo, from);
        json_decref(policies);
        if (!is_allowed) {
            mgmt_reply_error(req, ERR_DENIED, "region %s may not hold repository %s", from, repo);
            return;
        }
    }
    struct meta_event *items = NULL;
    size_t n = 0;
    if (req->reg->ms->ops->repo_state(req->reg->ms, repo, &items, &n, &e) != 0) {
        reply_err(req, &e);
        return;
    }
    const char *ref = http_req_query(req, "reference");
    /* status=1 (a snapshot, anti-entropy, a pull-through lookup) carries the replication
     * status rows too: of the reference's manifests, with a reference. */
    const char *with_status = http_req_query(req, "status");
    if (with_status != NULL && strcmp(with_status, "1") == 0) {
        struct meta_event *st = NULL;
        size_t n_st = 0;
        if (req->reg->ms->ops->repo_statuses(req->reg->ms, repo, &st, &n_st, &e) != 0) {
            for (size_t i = 0; i < n; i++)
                meta_event_fini(&items[i]);
            free(items);
            reply_err(req, &e);
            return;
        }
        items = xrealloc(items, (n + n_st + 1) * sizeof(*items));
        if (n_st > 0) /* st is NULL when there is none */
            memcpy(items + n, st, n_st * sizeof(*st));
        n += n_st;
        free(st);
    }
    if (ref != NULL)
        n = keep_reference(items, n, repo, ref);
    struct buf b;
    buf_init(&b, EVENTS_REPLY_MAX * 2);
    buf_appends(&b, "{\"state\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append(&b, ",", 1);
        repl_codec_event_to_json(&items[i], &b);
        meta_event_fini(&items[i]);
    }
    free(items);
    buf_appends(&b, "]}");
    reply_buf(req, &b, "repository state");
}

/* GET replication/snapshot?from=REGION: what a region below this log's horizon merges
 * instead of the events: the horizon (read first: the tables read after it hold the
 * effect of every event at or below it), every repository's name (their states follow
 * from replication/state?repository=R&status=1) and every replicated object. */
void mgmt_repl_snapshot(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    /* With mutual TLS the caller is the region its certificate names (residency filters
     * by it): `from` is required and must be that region. */
    if (!authz_peer_cert_names(req, http_req_query(req, "from"))) {
        mgmt_reply_error(req, ERR_DENIED, "the peer certificate does not name region %s",
                         shown(http_req_query(req, "from")));
        return;
    }
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *from = http_req_query(req, "from");
    if (!check_member(req, from))
        return;
    struct meta_horizon *h = NULL;
    size_t nh = 0;
    struct meta_name_list repos = {0};
    struct meta_event *objects = NULL;
    size_t n_objects = 0;
    json_t *policies = NULL;
    bool is_read = reg->ms->ops->log_horizon(reg->ms, &h, &nh, &e) == 0 &&
                   reg->ms->ops->repo_list(reg->ms, "", -1, &repos, &e) == 0 &&
                   reg->ms->ops->objects_state(reg->ms, &objects, &n_objects, &e) == 0;
    if (is_read)
        policies = residency_policies(reg->ms, &e);
    if (policies == NULL) {
        for (size_t i = 0; i < n_objects; i++)
            meta_event_fini(&objects[i]);
        free(objects);
        meta_horizon_list_fini(h, nh);
        meta_name_list_fini(&repos);
        if (is_read)
            reply_residency_unknown(req, &e);
        else
            reply_err(req, &e);
        return;
    }
    struct buf b;
    buf_init(&b, EVENTS_REPLY_MAX);
    json_t *hv = horizon_json(h, nh);
    char *hj = json_dumps(hv, JSON_COMPACT);
    json_decref(hv);
    buf_appends(&b, "{\"horizon\":");
    buf_appends(&b, hj ? hj : "[]");
    free(hj);
    buf_appends(&b, ",\"repositories\":[");
    /* Residency: what `from` may not hold is left out, names included. */
    bool is_first = true;
    for (size_t i = 0; i < repos.n; i++) {
        if (!residency_allows(policies, repos.names[i], from))
            continue;
        if (!is_first)
            buf_append(&b, ",", 1);
        is_first = false;
        buf_append_json_string(&b, repos.names[i]);
    }
    buf_appends(&b, "],\"objects\":[");
    is_first = true;
    for (size_t i = 0; i < n_objects; i++) {
        char about[1100];
        if (!(residency_event_repo(&objects[i], about, sizeof(about)) &&
              !residency_allows(policies, about, from))) {
            if (!is_first)
                buf_append(&b, ",", 1);
            is_first = false;
            repl_codec_event_to_json(&objects[i], &b);
        }
        meta_event_fini(&objects[i]);
    }
    free(objects);
    json_decref(policies);
    buf_appends(&b, "]}");
    meta_horizon_list_fini(h, nh);
    meta_name_list_fini(&repos);
    reply_buf(req, &b, "snapshot");
}

/* GET replication/membership?from=REGION: 200 {"member":true} while REGION is a region of
 * this registry here; 410 {"removed":true} once its removal was applied here; 404 when this
 * region never knew of it (it may not have applied its addition yet). A region told to
 * leave checks with this (repl.c, removal_check). */
void mgmt_repl_membership(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    const char *from = http_req_query(req, "from");
    if (from == NULL || !repl_codec_is_valid_region(from)) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "from must name a region");
        return;
    }
    bool is_live = false, is_deleted = false;
    struct err e = {0};
    if (reg->ms->ops->object_exists(reg->ms, "replication", from, &is_live, &is_deleted, &e) !=
        0) {
        mgmt_reply_error(req, ERR_UNAVAILABLE,
                         "the regions of this registry cannot be read; try again");
        http_reply_header(req, "Retry-After", "%d", RESIDENCY_UNKNOWN_RETRY_S);
        return;
    }
    if (is_live)
        mgmt_reply_json(req, 200, json_pack("{s:b}", "member", 1));
    else if (is_deleted)
        mgmt_reply_json(req, 410, json_pack("{s:b, s:{s:s, s:s}}", "removed", 1, "error", "code",
                                            "NOT_FOUND", "message",
                                            "that region was removed from this registry"));
    else
        mgmt_reply_error(req, ERR_NOT_FOUND, "no region of that name is known here");
}

/* POST replication/leave {"registry","location"}: this region was removed, says the
 * caller; 202, and it leaves once a region of the registry confirms it (repl_leave). */
void mgmt_repl_leave(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    int rc = repl_leave(req->reg->repl, json_string_value(json_object_get(body, "registry")),
                        json_string_value(json_object_get(body, "location")), &e);
    json_decref(body);
    if (rc != 0) {
        reply_err(req, &e);
        return;
    }
    http_reply(req, 202, "application/json", "{}", 2);
}
