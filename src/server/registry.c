/* The registry context (storage opened under the data directory) and the router.
 *
 * Routes of the OCI Distribution API (distribution-spec "Endpoints"); <name> may
 * hold slashes, so each route is found by its rightmost marker whose remainder
 * has no slash:
 *   /v2/                              base            GET HEAD
 *   /v2/_catalog                      catalog         GET
 *   /v2/<name>/tags/list              tags            GET
 *   /v2/<name>/manifests/<ref>        manifest        GET HEAD PUT DELETE
 *   /v2/<name>/blobs/uploads/[<id>]   upload          POST | GET PATCH PUT DELETE
 *   /v2/<name>/blobs/<digest>         blob            GET HEAD DELETE
 *   /v2/<name>/referrers/<digest>     referrers       GET
 *   /healthz /readyz /metrics         operations      GET
 *   /_meridian/v1/...                 management API  (mgmt_api.c) */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authz.h"
#include "blobstore_s3.h"
#include "base64.h"
#include "console.h"
#include "log.h"
#include "manifest.h"
#include "mgmt_api.h"
#include "metrics.h"
#include "name.h"
#include "oci.h"
#include "readiness.h"
#include "repl.h"
#include "secret.h"
#include "upload_sessions.h"
#include "util.h"
#include "webhook.h"

/* /readyz probes the stores at most once a second, each probe bounded by 2 s. */
#define READY_CACHE_MS 1000
#define READY_TIMEOUT_MS 2000

static void count_upload(const char *id, void *arg)
{
    (void)id;
    (*(size_t *)arg)++;
}

/* The data directory holds password hashes, keys and every blob: it is 0700 and its
 * files 0600. A directory made by an older version (0755, files 0644) is fixed here:
 * the directory itself (which alone bars other users from everything below it) and the
 * files of secrets by name. On SQLite meta.db is created 0600 before SQLite opens it,
 * because SQLite gives its -wal and -shm files the mode of the database file (on
 * PostgreSQL there is no meta.db: an empty one would say the metadata is here). The
 * blobstore fixes its own directories; blob files keep their old mode behind them. */
static int make_private(const char *data_dir, bool is_sqlite)
{
    static const char *const secret_files[] = {"meta.db", "meta.db-wal", "meta.db-shm",
                                               "token.key", "admin-password", "secrets.key"};
    char path[4096];
    if (chmod(data_dir, 0700) != 0) {
        log_error("registry", "failed to make %s private: %s", data_dir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(secret_files) / sizeof(secret_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", data_dir, secret_files[i]);
        if (chmod(path, 0600) != 0 && errno != ENOENT)
            log_warn("registry", "failed to make %s private: %s", path, strerror(errno));
    }
    if (!is_sqlite)
        return 0;
    snprintf(path, sizeof(path), "%s/meta.db", data_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("registry", "failed to create %s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* DATA/secrets.key: the key that seals webhook secrets in the metastore, 32 random bytes
 * as URL-safe base64 text, created (0600) at first start. Each region has its own: peers
 * receive the secrets in clear over the authenticated peer API and seal them under theirs.
 * Nodes of one region sharing a metastore (scale-out) share this file, as they share
 * token.key (docs/scale-out.md). */
static int load_sealing_key(const char *data_dir, uint8_t key[SECRET_BOX_KEY_BYTES])
{
    char path[4096];
    char text[128];
    snprintf(path, sizeof(path), "%s/secrets.key", data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        uint8_t raw[SECRET_BOX_KEY_BYTES];
        secret_random(raw, sizeof(raw));
        char *b64 = base64_encode(raw, sizeof(raw));
        secret_wipe(raw, sizeof(raw));
        size_t len = strlen(b64);
        /* Written beside and renamed into place: a crash mid-write leaves no empty or
         * partial key that would stop every later start. */
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        bool is_ok = fd >= 0 && write(fd, b64, len) == (ssize_t)len && fsync(fd) == 0;
        secret_wipe(b64, len);
        free(b64);
        if (fd >= 0)
            close(fd);
        is_ok = is_ok && link(tmp, path) == 0; /* link: never replaces a key another made */
        unlink(tmp);
        if (!is_ok || util_fsync_dir(data_dir) != 0) {
            log_error("registry", "failed to create %s: %s", path, strerror(errno));
            return -1;
        }
        log_info("registry", "created the key that seals stored secrets: %s", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
    if (fd >= 0)
        close(fd);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    size_t raw_len = 0;
    uint8_t *raw = n > 0 ? base64_decode(text, (size_t)n, &raw_len) : NULL;
    secret_wipe(text, sizeof(text));
    if (raw == NULL || raw_len != SECRET_BOX_KEY_BYTES) {
        log_error("registry", "failed to read %s: %s", path,
                  n < 0 ? strerror(errno) : "not 32 bytes in base64");
        free(raw);
        return -1;
    }
    memcpy(key, raw, SECRET_BOX_KEY_BYTES);
    secret_wipe(raw, raw_len);
    free(raw);
    return 0;
}

struct registry *registry_open(struct config *cfg, struct err *e)
{
    if (util_mkdirs(cfg->data_dir) != 0) {
        err_set(e, ERR_IO, "cannot create data directory");
        return NULL;
    }
    struct blobstore *bs;
    if (cfg->blobstore != NULL && strncmp(cfg->blobstore, "s3://", 5) == 0) {
        struct blobstore_s3_options o = {
            .spec = cfg->blobstore,
            .endpoint = cfg->s3_endpoint,
            .region = cfg->s3_region,
            .access_key = cfg->s3_access_key,
            .secret_key = cfg->s3_secret_key,
            .is_redirect = cfg->is_blob_redirect,
        };
        bs = blobstore_s3_open(&o, e);
    } else if (cfg->n_volumes > 0) {
        bs = blobstore_volumes_open(cfg->volumes, cfg->n_volumes, e);
    } else {
        bs = blobstore_open(cfg->blobstore, cfg->data_dir, e);
    }
    if (bs == NULL)
        return NULL;
    return registry_open_with(cfg, bs, e);
}

struct registry *registry_open_with(struct config *cfg, struct blobstore *bs, struct err *e)
{
    char path[4096];
    struct registry *reg = xcalloc(1, sizeof(*reg));
    reg->cfg = cfg;
    AZ(pthread_rwlock_init(&reg->gc_lock, NULL));
    reg->bs = bs;
    atomic_init(&reg->is_owner, true); /* until a lease says otherwise (lease.c) */
    atomic_init(&reg->owner_until_ms, INT64_MAX);
    if (util_mkdirs(cfg->data_dir) != 0) {
        err_set(e, ERR_IO, "cannot create data directory");
        goto fail;
    }
    if (make_private(cfg->data_dir, cfg->metastore == NULL || cfg->metastore[0] == '\0') != 0) {
        err_set(e, ERR_IO, "cannot make the data directory private");
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/meta.db", cfg->data_dir);
    reg->ms = metastore_open(cfg->metastore, path, cfg->region, e);
    if (reg->ms == NULL)
        goto fail;
    uint8_t key[SECRET_BOX_KEY_BYTES];
    if (load_sealing_key(cfg->data_dir, key) != 0) {
        err_set(e, ERR_IO, "cannot read the key of stored secrets");
        goto fail;
    }
    int rc = metastore_sqlite_set_sealing_key(reg->ms, key, e);
    /* Data endpoint URLs are signed with a key derived from this one, so every node of a
     * region (which share secrets.key) accepts the URLs any of them signed. */
    static const char data_url_label[] = "meridian data-url key v1";
    secret_hmac_sha256(key, sizeof(key), data_url_label, sizeof(data_url_label) - 1,
                       reg->data_url_key);
    secret_wipe(key, sizeof(key));
    if (rc != 0)
        goto fail;
    reg->uploads = upload_sessions_new(reg->bs, reg->ms);
    reg->readiness = readiness_new(reg->ms, reg->bs, READY_CACHE_MS, READY_TIMEOUT_MS);
    reg->authz = authz_open(cfg, reg->ms, e);
    if (reg->authz == NULL)
        goto fail;
    /* Resumes deliveries left pending before a restart. */
    reg->webhooks = webhook_worker_start(reg);
    reg->repl = repl_new(reg);
    snprintf(path, sizeof(path), "%s/REMOVED", cfg->data_dir);
    atomic_store(&reg->is_removed, access(path, F_OK) == 0);
    /* Sessions left from before a restart are still open until they finish or expire,
     * except those of monolithic POSTs cut by a crash, which nobody can finish: they go
     * now rather than at expiry (their bytes, and their slots under the session caps). */
    size_t n_open = 0;
    reg->bs->ops->upload_each(reg->bs, count_upload, &n_open);
    metrics_uploads_in_progress_add((int)n_open);
    /* Not on a metastore shared with other nodes: theirs may be in flight. There the
     * sweep removes them once no request holds them (registry_sweep_uploads). */
    size_t n_orphans = cfg->metastore == NULL ? upload_sessions_remove_orphans(reg->uploads) : 0;
    if (n_orphans > 0)
        log_info("uploads", "removed %zu sessions of monolithic uploads cut by a restart",
                 n_orphans);
    return reg;
fail:
    registry_close(reg);
    return NULL;
}

void registry_close(struct registry *reg)
{
    if (reg == NULL)
        return;
    repl_stop(reg->repl);
    repl_free(reg->repl);
    /* After replication, which reports effects to webhooks; before the metastore. */
    webhook_worker_stop(reg->webhooks);
    upload_sessions_free(reg->uploads);
    authz_close(reg->authz);
    readiness_free(reg->readiness); /* its thread's database connection goes with it */
    if (reg->ms)
        reg->ms->ops->close(reg->ms);
    if (reg->bs)
        reg->bs->ops->close(reg->bs);
    pthread_rwlock_destroy(&reg->gc_lock);
    meta_name_list_fini(&reg->rowless_uploads);
    meta_name_list_fini(&reg->single_uploads);
    free(reg);
}

struct sweep_ctx {
    struct registry *reg;
    size_t n_removed;
    struct meta_name_list rowless; /* found without a row by this sweep */
};

static bool name_listed(const struct meta_name_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->names[i], name) == 0)
            return true;
    }
    return false;
}

/* Upload files with no session row (left by a crash between creating the file and
 * committing the row) are removed too. On a metastore shared with other nodes, such a
 * file may be a session another node is creating right now (file first, then row): it
 * goes only when the sweep before this one found it without a row too. */
static void on_upload_file(const char *id, void *arg)
{
    struct sweep_ctx *ctx = arg;
    struct registry *reg = ctx->reg;
    struct err e = {0};
    if (reg->ms->ops->upload_get(reg->ms, id, NULL, NULL, &e) == 0)
        return;
    if (e.code != ERR_BLOB_UPLOAD_UNKNOWN)
        return;
    if (upload_sessions_is_active(reg->uploads, id))
        return;
    if (reg->cfg->metastore != NULL && !name_listed(&reg->rowless_uploads, id)) {
        struct meta_name_list *l = &ctx->rowless;
        l->names = xrealloc(l->names, (l->n + 1) * sizeof(char *));
        l->names[l->n++] = xstrdup(id);
        return;
    }
    reg->bs->ops->upload_remove(reg->bs, id);
    metrics_uploads_in_progress_add(-1);
    ctx->n_removed++;
}

void registry_sweep_uploads(struct registry *reg)
{
    struct meta_name_list expired = {0};
    struct err e = {0};
    struct sweep_ctx ctx = {.reg = reg};
    if (reg->ms->ops->upload_list_expired(reg->ms, util_now_s(), &expired, &e) != 0) {
        log_error("uploads", "failed to list expired upload sessions: %s", err_message(&e));
        return;
    }
    for (size_t i = 0; i < expired.n; i++) {
        if (upload_sessions_expire(reg->uploads, expired.names[i]) == 0)
            ctx.n_removed++;
    }
    meta_name_list_fini(&expired);
    /* Monolithic POSTs cut by a crash (of any node: on a shared metastore they are not
     * removed at start) go once two sweeps found them and no request holds them. */
    struct meta_name_list singles = {0};
    ctx.n_removed += upload_sessions_sweep_singles(reg->uploads, &reg->single_uploads, &singles);
    meta_name_list_fini(&reg->single_uploads);
    reg->single_uploads = singles;
    reg->bs->ops->upload_each(reg->bs, on_upload_file, &ctx);
    meta_name_list_fini(&reg->rowless_uploads);
    reg->rowless_uploads = ctx.rowless;
    if (ctx.n_removed)
        log_info("uploads", "reclaimed %zu expired or orphaned upload sessions", ctx.n_removed);
}

/* Routing ------------------------------------------------------------------ */

/* Finds the rightmost occurrence of marker in s whose remainder has no '/'. */
static const char *find_marker(const char *s, const char *marker)
{
    size_t mlen = strlen(marker);
    const char *found = NULL;
    for (const char *p = strstr(s, marker); p; p = strstr(p + 1, marker)) {
        if (strchr(p + mlen, '/') == NULL)
            found = p;
    }
    return found;
}

static bool method_is(struct http_req *req, const char *m)
{
    return strcmp(req->method, m) == 0;
}

static bool allow(struct http_req *req, const char *const *methods)
{
    for (size_t i = 0; methods[i]; i++) {
        if (method_is(req, methods[i]))
            return true;
    }
    /* The Allow of a 405 names what the target takes here: with --no-delete a manifest or
     * blob takes no DELETE (its handler refuses one with the same list). */
    bool is_delete_off = !req->reg->cfg->is_delete_enabled &&
                         (req->route == ROUTE_MANIFEST || req->route == ROUTE_BLOB);
    const char *named[8];
    size_t n = 0;
    for (size_t i = 0; methods[i] && n < 7; i++) {
        if (!(is_delete_off && strcmp(methods[i], "DELETE") == 0))
            named[n++] = methods[i];
    }
    named[n] = NULL;
    http_reply_allow(req, named);
    http_reply_error(req, ERR_METHOD_NOT_ALLOWED, "method %s not allowed here", req->method);
    return false;
}

static void set_capture(struct http_req *req, const char *name, size_t name_len,
                        const char *ref)
{
    req->repo = xstrndup(name, name_len);
    req->ref = ref ? xstrdup(ref) : NULL;
}

/* Checks a manifest PUT's declared size before its body is read. */
static void manifest_headers(struct http_req *req)
{
    if (strcmp(req->method, "PUT") != 0)
        return;
    /* distribution-spec: manifests over the limit get 413. */
    const char *cl = http_req_header(req, "Content-Length");
    uint64_t n;
    if (cl && util_parse_u64(cl, strlen(cl), &n) == 0 && n > MANIFEST_MAX_BYTES) {
        http_reply_error(req, ERR_MANIFEST_TOO_LARGE, "manifest exceeds %d bytes",
                         MANIFEST_MAX_BYTES);
        return;
    }
    req->body.max_bytes = MANIFEST_MAX_BYTES;
    err_set(&req->err, ERR_MANIFEST_TOO_LARGE, "manifest exceeds %d bytes", MANIFEST_MAX_BYTES);
}

static void upload_headers(struct http_req *req)
{
    oci_upload_headers(req);
}

/* The headers-phase step of a route: runs once the request is authorized. */
typedef void route_step_f(struct http_req *req);

/* Classifies the request: sets route, repo and ref, replies at once to an unknown path
 * or a method the route does not take, and returns the step to run in the headers phase
 * (NULL: none; the handler runs when the body is in). */
static route_step_f *route(struct http_req *req)
{
    /* RFC 9110 9.1: what answers GET answers HEAD too (the same headers, no body). */
    static const char *const get_head[] = {"GET", "HEAD", NULL};
    static const char *const manifest_methods[] = {"GET", "HEAD", "PUT", "DELETE", NULL};
    static const char *const blob_methods[] = {"GET", "HEAD", "DELETE", NULL};
    static const char *const upload_methods[] = {"GET", "HEAD", "PATCH", "PUT", "DELETE",
                                                  NULL};
    static const char *const post_only[] = {"POST", NULL};
    const char *path = req->path;
    const char *m;

    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
        strcmp(path, "/metrics") == 0) {
        req->route = path[1] == 'h' ? ROUTE_HEALTHZ : path[1] == 'r' ? ROUTE_READYZ : ROUTE_METRICS;
        return allow(req, get_head) ? oci_health : NULL;
    }
    if (strncmp(path, MGMT_PREFIX, strlen(MGMT_PREFIX)) == 0) {
        /* Management requests are small JSON documents, handled once the body is in. */
        req->route = ROUTE_MGMT;
        req->body.max_bytes = MGMT_BODY_MAX;
        err_set(&req->err, ERR_BAD_REQUEST, "request body exceeds %d bytes", MGMT_BODY_MAX);
        return NULL;
    }
    if (strcmp(path, CONSOLE_PREFIX) == 0 || strncmp(path, CONSOLE_PREFIX "/", 9) == 0) {
        req->route = ROUTE_CONSOLE; /* static files: the API behind them checks access */
        return allow(req, get_head) ? console_serve : NULL;
    }
    if (atomic_load(&req->reg->is_removed) && strncmp(path, "/v2", 3) == 0) {
        http_reply_error(req, ERR_UNAVAILABLE, "this region was removed from the registry");
        return NULL;
    }
    if (strcmp(path, "/v2") == 0 || strcmp(path, "/v2/") == 0) {
        req->route = ROUTE_BASE;
        return allow(req, get_head) ? oci_base : NULL;
    }
    if (strncmp(path, "/v2/", 4) != 0) {
        http_reply_error(req, ERR_ROUTE_UNKNOWN, "no such endpoint");
        return NULL;
    }
    const char *rest = path + 4;
    size_t rest_len = strlen(rest);
    if (strcmp(rest, "_catalog") == 0) {
        req->route = ROUTE_CATALOG;
        return allow(req, get_head) ? oci_catalog : NULL;
    }
    if (rest_len > 10 && strcmp(rest + rest_len - 10, "/tags/list") == 0) {
        req->route = ROUTE_TAGS;
        set_capture(req, rest, rest_len - 10, NULL);
        return allow(req, get_head) ? oci_tags : NULL;
    }
    if ((m = find_marker(rest, "/blobs/uploads/")) != NULL ||
        (rest_len > 14 && strcmp(rest + rest_len - 14, "/blobs/uploads") == 0 &&
         (m = rest + rest_len - 14) != NULL)) {
        const char *id = m + 14;
        id += *id == '/';
        set_capture(req, rest, (size_t)(m - rest), *id ? id : NULL);
        req->route = *id == '\0' ? ROUTE_UPLOAD_START : ROUTE_UPLOAD;
        return allow(req, *id == '\0' ? post_only : upload_methods) ? upload_headers : NULL;
    }
    if ((m = find_marker(rest, "/manifests/")) != NULL) {
        req->route = ROUTE_MANIFEST;
        set_capture(req, rest, (size_t)(m - rest), m + 11);
        return allow(req, manifest_methods) ? manifest_headers : NULL;
    }
    if ((m = find_marker(rest, "/blobs/")) != NULL) {
        req->route = ROUTE_BLOB;
        set_capture(req, rest, (size_t)(m - rest), m + 7);
        return allow(req, blob_methods) ? oci_blob : NULL;
    }
    if ((m = find_marker(rest, "/referrers/")) != NULL) {
        req->route = ROUTE_REFERRERS;
        set_capture(req, rest, (size_t)(m - rest), m + 11);
        return allow(req, get_head) ? oci_referrers : NULL;
    }
    http_reply_error(req, ERR_ROUTE_UNKNOWN, "no such endpoint");
    return NULL;
}

static void on_headers(struct http_req *req)
{
    http_reply_header(req, "Docker-Distribution-API-Version", "registry/2.0");
    route_step_f *step = route(req);
    /* Access control runs for every request once its route, repository and method are
     * known, before any handler (authz.c replies 401/403 itself). */
    if (req->is_replied || !authz_check(req))
        return;
    if (step != NULL)
        step(req);
}

static void on_malformed(struct http_req *req, const char *why)
{
    struct err e = {.code = ERR_BAD_REQUEST};
    snprintf(e.msg, sizeof(e.msg), "malformed request: %s", why);
    if (strncmp(req->path, MGMT_PREFIX, strlen(MGMT_PREFIX)) == 0)
        http_reply_mgmt_err(req, &e);
    else
        http_reply_err(req, &e);
}

static void on_reply(struct http_req *req)
{
    authz_record(req, req->status);
}

static void on_finished(struct http_req *req, int status)
{
    authz_finish(req, status);
}

static void on_complete(struct http_req *req)
{
    switch (req->route) {
    case ROUTE_MANIFEST:
        oci_manifest(req);
        break;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        oci_upload(req);
        break;
    case ROUTE_MGMT:
        mgmt_api_handle(req);
        break;
    default:
        /* Every other route replied in the headers phase. */
        if (!req->is_replied)
            http_reply_error(req, ERR_INTERNAL, NULL);
        break;
    }
}

const struct http_handlers registry_http_handlers = {
    .on_headers = on_headers,
    .on_malformed = on_malformed,
    .on_complete = on_complete,
    .on_reply = on_reply,
    .on_finished = on_finished,
};
