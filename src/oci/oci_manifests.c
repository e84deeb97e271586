/* /v2/<name>/manifests/<reference>: PUT, GET, HEAD, DELETE (distribution-spec
 * "Pulling manifests", "Pushing manifests", "Deleting manifests").
 * Manifests are stored byte for byte; their digest is the digest of those bytes.
 * A manifest is accepted only when everything it references is in the repository
 * (visible means pullable). */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "image_catalog.h"
#include "log.h"
#include "manifest.h"
#include "metrics.h"
#include "name.h"
#include "oci.h"
#include "pull_record.h"
#include "range.h"
#include "repl.h"
#include "residency.h"
#include "util.h"
#include "webhook.h"

/* Validates req->ref as a tag or a digest; replies and returns -1 when invalid. */
static int parse_reference(struct http_req *req, bool *is_digest, struct digest *d)
{
    struct err e = {0};
    size_t len = strlen(req->ref);
    *is_digest = name_reference_is_digest(req->ref, len);
    if (*is_digest) {
        if (digest_parse(req->ref, len, d, &e) != 0) {
            http_reply_err(req, &e);
            return -1;
        }
        return 0;
    }
    if (!name_is_valid_tag(req->ref, len)) {
        /* Only a push names a new tag; on reads and deletes a malformed tag is one
         * the registry cannot hold, so it is unknown (as distribution answers). */
        if (strcmp(req->method, "PUT") == 0)
            http_reply_error(req, ERR_TAG_INVALID, "invalid tag");
        else
            http_reply_error(req, ERR_MANIFEST_UNKNOWN, "no manifest with that reference");
        return -1;
    }
    return 0;
}

/* Whether ref (a tag or a digest) of repo names a manifest here now: true with its digest in
 * *d and, when is_visible is not NULL, whether it is pullable (pushed here, or replicated
 * whole) in *is_visible. */
static bool ref_lookup(struct registry *reg, const char *repo, const char *ref, struct digest *d,
                       bool *is_visible)
{
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool visible = false;
    struct err e = {0};
    bool is_found = reg->ms->ops->manifest_lookup(reg->ms, repo, ref, d, &media_type, &size,
                                                  &visible, &recorded_ms, &e) == 0;
    free(media_type);
    if (is_visible != NULL)
        *is_visible = is_found && visible;
    return is_found;
}

/* RFC 9110 13.1.1, 13.1.2 (in 13.2.2's order): a PUT or DELETE carrying If-Match or
 * If-None-Match is done only if it holds for what the reference names now, whose entity
 * tag is the manifest's digest (the ETag a GET answers). Clients keeping a referrers tag
 * schema index use it so that two writers do not lose each other's update
 * (distribution-spec "Pushing Manifests with Subject"). */
static bool is_conditional(struct http_req *req)
{
    return http_req_header_all(req, "If-Match") != NULL ||
           http_req_header_all(req, "If-None-Match") != NULL;
}

/* 0 when the request's condition holds (or it has none), else -1 with
 * ERR_PRECONDITION_FAILED. Run once before the work, to refuse early, and again inside
 * the write's transaction, where every writer of the store queues behind it: so two
 * writers that both sent If-Match with the same ETag cannot both succeed. */
static int precondition_check(struct http_req *req, struct err *e)
{
    const char *im = http_req_header_all(req, "If-Match");
    const char *inm = http_req_header_all(req, "If-None-Match");
    if (im == NULL && inm == NULL)
        return 0;
    struct digest cur;
    bool has_cur = ref_lookup(req->reg, req->repo, req->ref, &cur, NULL);
    char etag[DIGEST_STR_MAX + 3] = "";
    if (has_cur)
        snprintf(etag, sizeof(etag), "\"%s\"", cur.str);
    bool holds = im != NULL ? range_if_match_holds(im, has_cur ? etag : NULL)
                            : !(has_cur && range_none_match_fails(inm, etag));
    if (holds)
        return 0;
    return err_set(e, ERR_PRECONDITION_FAILED, "%s does not hold: %s names %s",
                   im != NULL ? "If-Match" : "If-None-Match", req->ref,
                   has_cur ? cur.str : "nothing");
}

/* Replies 412 and returns true when the request's condition does not hold now. */
static bool precondition_fails(struct http_req *req)
{
    struct err e = {0};
    if (precondition_check(req, &e) == 0)
        return false;
    http_reply_err(req, &e);
    return true;
}

/* The transaction of a write and its webhook deliveries; a conditional request's is opened
 * even without webhooks, and its condition checked again inside it. */
static int write_tx_begin(struct http_req *req, struct webhook_tx *tx, struct err *e)
{
    if (!is_conditional(req))
        return webhook_tx_begin(req->reg, tx, e);
    if (webhook_tx_begin_unit(req->reg, tx, e) != 0)
        return -1;
    if (precondition_check(req, e) == 0)
        return 0;
    struct err ignored = {0};
    (void)webhook_tx_end(tx, -1, &ignored);
    return -1;
}

/* A push or delete of m takes effect in this region, in tx: regional webhooks fire. */
static int notify(struct webhook_tx *tx, struct http_req *req, const char *action,
                  const char *tag, const struct meta_manifest *m, struct err *e)
{
    struct webhook_effect ev = {.action = action, .repo = req->repo, .tag = tag,
                                .digest = m->digest.str, .media_type = m->media_type,
                                .size = (int64_t)m->body_len, .request_id = req->request_id,
                                .method = req->method, .host = http_req_header(req, "Host")};
    return webhook_tx_queue(tx, &ev, e);
}

/* Pull never misses (issue 14): a manifest or tag this region does not show yet (its
 * event still on the way, its blobs still being copied) is brought from a peer now,
 * kept and then served like any other (repl_pull_manifest). Never for a peer's own
 * request, so lookups do not chain. true when the caller should look again. */
static bool is_pull_through(struct http_req *req, const struct err *e)
{
    struct registry *reg = req->reg;
    if ((e->code != ERR_MANIFEST_UNKNOWN && e->code != ERR_NAME_UNKNOWN) || reg->repl == NULL ||
        http_req_header(req, REPL_FETCH_HEADER) != NULL)
        return false;
    return repl_pull_manifest(reg->repl, req->repo, req->ref) == 0;
}

static void manifest_get(struct http_req *req, bool is_digest)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct meta_manifest m = {0};
    /* In an image definition, latest is resolved here: the highest version this region
     * holds, Completed, not excluded, not past end of life (docs/image-versions.md). */
    char *latest = NULL;
    if (!is_digest && strcmp(req->ref, IV_LATEST) == 0 &&
        image_catalog_is_definition(reg->ms, req->repo)) {
        if ((latest = image_catalog_latest(reg->ms, req->repo, reg->cfg->region, &e)) == NULL) {
            http_reply_err(req, &e);
            return;
        }
    }
    const char *ref = latest ? latest : req->ref;
    /* A miss is looked up in the peers (pull-through), then read again. */
    int rc = reg->ms->ops->manifest_get(reg->ms, req->repo, ref, &m, &e);
    if (rc != 0 && latest == NULL && is_pull_through(req, &e))
        rc = reg->ms->ops->manifest_get(reg->ms, req->repo, ref, &m, &e);
    if (rc != 0) {
        free(latest);
        if (e.code == ERR_NAME_UNKNOWN)
            e.code = ERR_MANIFEST_UNKNOWN;
        /* A repository this region may not hold: say so (and where it may be), rather than
         * a bare unknown the client would take for a missing image. */
        if (e.code == ERR_MANIFEST_UNKNOWN)
            oci_residency_explains(req, &e);
        http_reply_err(req, &e);
        return;
    }
    bool is_refused =
        oci_lock_refuses(req, is_digest ? NULL : (latest ? latest : req->ref), &m.digest,
                         OCI_LOCK_READ);
    free(latest);
    if (is_refused) {
        meta_manifest_fini(&m);
        return;
    }
    /* A tag is resolved to the stored type only if the client accepts it; a digest
     * names exact bytes, which are served whatever the Accept header says. */
    const char *accept = http_req_header_all(req, "Accept");
    if (!is_digest && accept && !manifest_accept_allows(accept, m.media_type)) {
        bool lists_manifest_types = manifest_accept_allows(accept, MT_OCI_MANIFEST) ||
                                    manifest_accept_allows(accept, MT_OCI_INDEX) ||
                                    manifest_accept_allows(accept, MT_DOCKER_MANIFEST) ||
                                    manifest_accept_allows(accept, MT_DOCKER_LIST);
        if (lists_manifest_types) {
            http_reply_error(req, ERR_MANIFEST_UNKNOWN,
                             "manifest is %s, which the Accept header does not allow",
                             m.media_type);
            meta_manifest_fini(&m);
            return;
        }
    }
    http_reply_header(req, "Docker-Content-Digest", "%s", m.digest.str);
    char etag[DIGEST_STR_MAX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", m.digest.str);
    http_reply_header(req, "ETag", "%s", etag);
    /* RFC 9110 13.1.2: a client (or a cache) that holds these bytes gets 304, no body. */
    if (range_none_match_fails(http_req_header_all(req, "If-None-Match"), etag))
        http_reply(req, 304, NULL, NULL, 0);
    else
        http_reply(req, 200, m.media_type, m.body, m.body_len);
    /* A peer's fetch is replication, not a pull; a HEAD only asks. */
    if (strcmp(req->method, "GET") == 0 && http_req_header(req, REPL_FETCH_HEADER) == NULL)
        pull_record_note(atomic_load(&reg->is_ready) ? reg->pulls : NULL, req->repo,
                         m.digest.str, util_now_ms()); /* reg->pulls is set before is_ready */
    meta_manifest_fini(&m);
}

/* image_catalog_may_name_fn: may the pusher (arg, the request) pull repository? */
static bool may_read(void *arg, const char *repository)
{
    return authz_can(arg, repository, AUTH_PERM_PULL, true);
}

static void manifest_put(struct http_req *req, bool is_digest, const struct digest *ref_digest)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct manifest mf;
    /* Residency (residency.h): nothing of a repository this region may not hold is stored. */
    if (residency_check(reg->ms, req->repo, reg->cfg->region, &e) != 0) {
        authz_audit_as(req, "residency.denied", "%s", err_message(&e));
        http_reply_err(req, &e);
        return;
    }
    const char *ct = http_req_header(req, "Content-Type");
    if (manifest_parse(req->body.data ? req->body.data : "", req->body.len, ct, &mf, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    struct meta_manifest m = {0};
    digest_of_buffer(is_digest ? ref_digest->alg : DIGEST_SHA256, req->body.data,
                     req->body.len, &m.digest);
    if (is_digest && !digest_equal(&m.digest, ref_digest)) {
        http_reply_error(req, ERR_DIGEST_INVALID, "manifest digest is %s, not %s", m.digest.str,
                         ref_digest->str);
        manifest_fini(&mf);
        return;
    }
    m.media_type = mf.media_type;
    m.artifact_type = mf.artifact_type;
    m.annotations_json = mf.annotations_json;
    m.body = req->body.data;
    m.body_len = req->body.len;

    /* An image definition's referrers stay with their subject's repository. */
    if (image_catalog_check_subject(reg->ms, req->repo, is_digest ? NULL : req->ref,
                                    mf.has_subject ? &mf.subject.digest : NULL, may_read, req,
                                    &e) != 0) {
        http_reply_err(req, &e);
        manifest_fini(&mf);
        return;
    }
    /* Locks: of the repository, of the tag and of the manifest the tag names now. */
    struct digest cur;
    bool has_cur = !is_digest && ref_lookup(reg, req->repo, req->ref, &cur, NULL);
    if (oci_lock_refuses(req, is_digest ? NULL : req->ref,
                         has_cur ? &cur : (is_digest ? &m.digest : NULL), OCI_LOCK_WRITE) ||
        precondition_fails(req)) {
        manifest_fini(&mf);
        return;
    }
    /* An image definition's tags are versions, immutable once pushed
     * (docs/image-versions.md): the same manifest again is a success that stores nothing. */
    bool is_unchanged = false;
    if (!is_digest &&
        image_catalog_check_push(reg->ms, req->repo, req->ref, &m.digest, &is_unchanged, &e) != 0) {
        http_reply_err(req, &e);
        manifest_fini(&mf);
        return;
    }
    if (is_unchanged) {
        http_reply_header(req, "Location", "/v2/%s/manifests/%s", req->repo, m.digest.str);
        http_reply_header(req, "Docker-Content-Digest", "%s", m.digest.str);
        if (mf.has_subject)
            http_reply_header(req, "OCI-Subject", "%s", mf.subject.digest.str);
        http_reply(req, 201, NULL, NULL, 0);
        manifest_fini(&mf);
        return;
    }
    size_t n_refs = mf.kind == MANIFEST_KIND_IMAGE ? 1 + mf.n_layers : mf.n_children;
    struct meta_ref *refs = xcalloc(n_refs, sizeof(*refs));
    bool *is_external = xcalloc(n_refs, sizeof(*is_external));
    if (mf.kind == MANIFEST_KIND_IMAGE) {
        refs[0].digest = mf.config.digest;
        refs[0].size = mf.config.size;
        for (size_t i = 0; i < mf.n_layers; i++) {
            refs[1 + i].digest = mf.layers[i].digest;
            refs[1 + i].size = mf.layers[i].size;
            is_external[1 + i] = manifest_desc_is_external(&mf.layers[i]);
        }
    } else {
        /* A child of a manifest type is a manifest; any other is a blob of this
         * repository (image-spec: an unknown mediaType MUST NOT be an error). BuildKit's
         * registry cache is an index of layers and a cache config. */
        for (size_t i = 0; i < mf.n_children; i++) {
            refs[i].digest = mf.children[i].digest;
            refs[i].size = mf.children[i].size;
            refs[i].is_manifest = manifest_is_known_media_type(mf.children[i].media_type);
        }
    }
    /* DESIGN invariant 6: a push never splits. Blobs pushed into this repository in
     * another region are fetched from it before the manifest is accepted here. Only
     * this repository's links count, here and at the peers (a copy held for another
     * repository is no proof: see manifest_put in metastore.h). */
    for (size_t i = 0; i < n_refs; i++) {
        uint64_t size;
        struct err fe = {0};
        /* An index's children pushed in another region come the way a pull brings them
         * (repl_pull_manifest: the manifest, then its blobs, then visible here). */
        if (refs[i].is_manifest) {
            struct digest child;
            bool is_here = false;
            if (reg->repl != NULL) {
                (void)ref_lookup(reg, req->repo, refs[i].digest.str, &child, &is_here);
                if (!is_here)
                    (void)repl_pull_manifest(reg->repl, req->repo, refs[i].digest.str);
            }
            continue;
        }
        if (reg->ms->ops->blob_get(reg->ms, req->repo, &refs[i].digest, &size, &fe) == 0)
            continue;
        if (repl_fetch_blob_now(reg->repl, req->repo, &refs[i].digest, &fe) != 0 &&
            fe.code != ERR_BLOB_UNKNOWN)
            log_warn("manifests", "failed to fetch %s from other regions: %s",
                     refs[i].digest.str, err_message(&fe));
    }
    /* An external layer whose bytes are in this repository in no region is the client's to
     * fetch from its urls: no reference this registry checks, holds, replicates or counts
     * copies of. Pushed (here, or in another region and fetched above), it is held like any
     * other layer. */
    size_t n_kept = 0;
    for (size_t i = 0; i < n_refs; i++) {
        uint64_t size;
        struct err fe = {0};
        if (is_external[i] &&
            reg->ms->ops->blob_get(reg->ms, req->repo, &refs[i].digest, &size, &fe) != 0)
            continue;
        refs[n_kept++] = refs[i];
    }
    n_refs = n_kept;
    free(is_external);
    /* The version's record is written before the manifest, so that every region
     * applies it (events of one origin apply in order) before it learns of the content:
     * placement is known from the first event on. Only once every blob is here: a push
     * refused for a missing blob records nothing. */
    bool has_blobs = true;
    for (size_t i = 0; i < n_refs && !is_digest; i++) {
        uint64_t size;
        struct err fe = {0};
        has_blobs &= refs[i].is_manifest || reg->ms->ops->blob_get(reg->ms, req->repo,
                                                                   &refs[i].digest, &size,
                                                                   &fe) == 0;
    }
    /* A version this push creates takes its definition's default targets: none of them may
     * be a region residency forbids (the definition may predate the policy). */
    json_t *def = NULL;
    json_t *have = NULL;
    if (!is_digest && has_blobs &&
        (def = image_catalog_definition(reg->ms, req->repo, &e)) != NULL &&
        (have = image_catalog_version(reg->ms, req->repo, req->ref, &e)) == NULL &&
        residency_check_targets(reg->ms, req->repo, def, &e) != 0) {
        json_decref(def);
        free(refs);
        authz_audit_as(req, "residency.denied", "%s", err_message(&e));
        http_reply_err(req, &e);
        manifest_fini(&mf);
        return;
    }
    json_decref(def);
    json_decref(have);
    e = (struct err){0};
    bool is_recorded = false;
    if (!is_digest && has_blobs &&
        image_catalog_record_push(reg->ms, reg->cfg->region, req->repo, req->ref, &is_recorded,
                                  &e) != 0) {
        free(refs);
        http_reply_err(req, &e);
        manifest_fini(&mf);
        return;
    }
    /* The push and its webhook deliveries commit together (webhook.h). */
    struct webhook_tx tx;
    int rc = write_tx_begin(req, &tx, &e);
    if (rc == 0) {
        rc = reg->ms->ops->manifest_put(reg->ms, req->repo, &m, refs, n_refs,
                                        mf.has_subject ? &mf.subject.digest : NULL,
                                        is_digest ? NULL : req->ref, &e);
        if (rc == 0)
            rc = notify(&tx, req, "push", is_digest ? NULL : req->ref, &m, &e);
        rc = webhook_tx_end(&tx, rc, &e);
    }
    free(refs);
    if (rc != 0) {
        /* Refused (a size, a child): the version it would create goes too, unless a
         * concurrent push of the version committed first and the record is its own now. */
        struct digest now;
        if (is_recorded && !ref_lookup(reg, req->repo, req->ref, &now, NULL))
            image_catalog_unrecord_push(reg->ms, req->repo, req->ref);
        http_reply_err(req, &e);
        manifest_fini(&mf);
        return;
    }
    metrics_count_manifest_put();
    repl_log_grew(reg->repl); /* peers' long polls get the event now, not at the next tick */
    http_reply_header(req, "Location", "/v2/%s/manifests/%s", req->repo, m.digest.str);
    http_reply_header(req, "Docker-Content-Digest", "%s", m.digest.str);
    /* distribution-spec: a registry that processes subject answers with OCI-Subject. */
    if (mf.has_subject)
        http_reply_header(req, "OCI-Subject", "%s", mf.subject.digest.str);
    http_reply(req, 201, NULL, NULL, 0);
    manifest_fini(&mf);
}

/* What a manifest takes when it may not be deleted (deletes disabled, or still referenced):
 * a 405 names them (RFC 9110 15.5.6). */
static const char *const without_delete[] = {"GET", "HEAD", "PUT", NULL};

static void manifest_delete(struct http_req *req, bool is_digest, const struct digest *d)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    if (!reg->cfg->is_delete_enabled) {
        http_reply_allow(req, without_delete);
        http_reply_error(req, ERR_UNSUPPORTED, "deletes are disabled on this registry");
        return;
    }
    /* Locks: of the repository, of the tag, of the manifest and of every tag naming it. */
    struct digest target;
    struct err le = {0};
    bool has_target = is_digest;
    if (is_digest)
        target = *d;
    else
        has_target = ref_lookup(reg, req->repo, req->ref, &target, NULL);
    if (oci_lock_refuses(req, is_digest ? NULL : req->ref, has_target ? &target : NULL,
                         OCI_LOCK_DELETE))
        return;
    if (is_digest) {
        struct meta_name_list naming = {0};
        bool is_refused = false;
        if (reg->ms->ops->manifest_tags(reg->ms, req->repo, d, &naming, &le) == 0) {
            for (size_t i = 0; i < naming.n && !is_refused; i++)
                is_refused = oci_lock_refuses(req, naming.names[i], d, OCI_LOCK_DELETE);
        }
        meta_name_list_fini(&naming);
        if (is_refused)
            return;
    }
    if (precondition_fails(req))
        return;
    /* A version may be protected until its end of life. */
    if (image_catalog_check_delete(reg->ms, req->repo, is_digest ? NULL : req->ref,
                                   is_digest ? d : NULL, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    /* The versions this delete removes: their records go with them. */
    struct meta_name_list versions = {0};
    if (image_catalog_versions_of(reg->ms, req->repo, is_digest ? NULL : req->ref,
                                  is_digest ? d : NULL, &versions, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    /* Only a version that exists is retired (a delete of an unknown tag changes nothing). */
    if (has_target && image_catalog_retire(reg->ms, req->repo, &versions, &e) != 0) {
        meta_name_list_fini(&versions);
        http_reply_err(req, &e);
        return;
    }
    /* What is deleted, for the webhook payload (a tag delete names its manifest). */
    struct meta_manifest gone = {0};
    struct err ignored = {0};
    bool is_known = reg->ms->ops->manifest_get(reg->ms, req->repo, req->ref, &gone, &ignored) == 0;
    struct webhook_tx tx;
    int rc = write_tx_begin(req, &tx, &e);
    if (rc == 0) {
        rc = is_digest ? reg->ms->ops->manifest_delete(reg->ms, req->repo, d, &e)
                       : reg->ms->ops->tag_delete(reg->ms, req->repo, req->ref, &e);
        if (rc == 0 && is_known)
            rc = notify(&tx, req, "delete", is_digest ? NULL : req->ref, &gone, &e);
        rc = webhook_tx_end(&tx, rc, &e);
    }
    if (rc != 0) {
        meta_name_list_fini(&versions);
        meta_manifest_fini(&gone);
        if (e.code == ERR_NAME_UNKNOWN)
            e.code = ERR_MANIFEST_UNKNOWN;
        if (e.code == ERR_IN_USE) /* an index's child */
            http_reply_allow(req, without_delete);
        http_reply_err(req, &e);
        return;
    }
    image_catalog_forget(reg->ms, req->repo, &versions);
    meta_name_list_fini(&versions);
    meta_manifest_fini(&gone);
    http_reply(req, 202, NULL, NULL, 0);
}

void oci_manifest(struct http_req *req)
{
    bool is_digest;
    struct digest d;
    if (!oci_check_repo(req) || parse_reference(req, &is_digest, &d) != 0)
        return;
    if (strcmp(req->method, "PUT") == 0)
        manifest_put(req, is_digest, &d);
    else if (strcmp(req->method, "DELETE") == 0)
        manifest_delete(req, is_digest, &d);
    else
        manifest_get(req, is_digest);
}
