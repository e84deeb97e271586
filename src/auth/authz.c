/* Request-time access control. See authz.h for the model; the decision table is
 * decide() below. Nothing here logs or stores a secret: credentials live in the
 * request's struct auth_credentials (wiped after use) and only Argon2id hashes and
 * HMACs of them are kept.
 *
 *   header  -> identify() -> kind + name (+ token)  -> decide(need) -> allow | 401 | 403
 *   401: no or bad credentials, or a token lacking a scope the identity has (the
 *        client fetches a new token for the scope in the challenge);
 *   403: an identified requester whose roles do not allow the request. */
#include "authz.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_agg.h"
#include "log.h"
#include "login_limit.h"
#include "metrics.h"
#include "name.h"
#include "registry_ctx.h"
#include "residency.h"
#include "secret.h"
#include "util.h"

#define AUTHZ_MAGIC 0x415a5a41u     /* "AZZA" */
#define AUTHZ_REQ_MAGIC 0x41525131u /* "ARQ1" */
#define AUTHZ_POLL_MS 1000
/* A peer refused while the residency policies are unknown retries after this poll. */
_Static_assert(AUTHZ_POLL_MS <= RESIDENCY_UNKNOWN_RETRY_S * 1000, "Retry-After before a reload");
#define AUTHZ_CACHE_SLOTS 256
#define AUTHZ_CACHE_TTL_MS 60000
#define AUTHZ_TOKEN_SLOTS 128
#define AUTHZ_LIMIT_KEYS 8192 /* keys per failed-login budget (login_limit.h) */
#define AUTHZ_AGG_KEYS 4096   /* refusal keys aggregated at once (audit_agg.h) */
#define AUTHZ_KEY_FILE "token.key"
#define AUTHZ_MAX_KEYS 4 /* lines of the key file: the signing key and those still accepted */
#define AUTHZ_ADMIN_FILE "admin-password"

/* A snapshot of identities, bindings and residency policies, immutable once built. The
 * policies ride along because every peer /v2/ read checks them: listing and parsing them
 * per read cost more than the read; a policy write bumps the same generation. */
struct policy {
    struct meta_auth_state st;
    struct auth_binding *bindings;
    size_t n_bindings;
    json_t *residency; /* residency_policies() */
};

/* A Basic credential verified recently: HMAC of (name, secret, stored hash) under a
 * per-process key. Binding the stored hash in means a new secret (or a re-created
 * identity) misses the cache; a deleted identity never reaches it. */
struct cred_slot {
    uint8_t mac[SECRET_HMAC_BYTES];
    int64_t expires_ms;
    bool is_used;
};

/* A token verified recently and its claims: a client sends the same token with every
 * request of a push or pull, and checking the signature and parsing the claims is
 * most of what a check costs. A hit compares the whole token in constant time. */
struct token_slot {
    char *tok;
    size_t len;
    struct auth_token claims;
};

struct authz {
    unsigned magic;
    const struct config *cfg;
    struct metastore *ms;
    bool is_enabled;
    /* Token keys (guarded by lock): keys[0] signs, every one verifies. The key file holds
     * one secret per line, so that a rotation lists the old and the new key for a while;
     * it is re-read when it changes (key_stamp: size, mtime, inode). */
    struct auth_token_key keys[AUTHZ_MAX_KEYS];
    size_t n_keys;
    char key_stamp[96];
    char dummy_hash[SECRET_HASH_MAX]; /* verified against for unknown names: same timing */
    uint8_t cache_key[32];

    pthread_rwlock_t lock; /* guards policy */
    struct policy *policy;
    int64_t generation;
    _Atomic int64_t next_poll_ms;
    pthread_mutex_t reload_mu;
    /* The generation moved and the reload failed, or the generation could not be read:
     * the snapshot's residency policies may be out of date, so peer reads fail closed
     * (503) until a reload, or a read of the generation finding the snapshot's, succeeds. */
    _Atomic bool is_residency_unknown;

    pthread_mutex_t cache_mu;
    struct cred_slot cache[AUTHZ_CACHE_SLOTS];

    pthread_mutex_t token_mu;
    struct token_slot *tokens; /* AUTHZ_TOKEN_SLOTS of them */

    pthread_mutex_t limit_mu;
    struct login_limit *limit; /* NULL: failed logins are not limited */
    pthread_mutex_t agg_mu;
    struct audit_agg *agg;
};

/* Per-request state, in req->auth. */
struct auth_request {
    unsigned magic;
    enum authz_kind kind;
    char name[AUTH_NAME_MAX + 1];
    bool has_token;
    bool has_credentials; /* the request carried an Authorization header */
    bool is_denied;
    bool is_recorded; /* the audit entry is written */
    struct auth_token token;
    char remote[64];
    char source[LOGIN_LIMIT_SOURCE_MAX]; /* remote as the limits key it (login_limit.h) */
    int64_t retry_after_s;               /* set when a login was refused as throttled */
    char action[48];
    char detail[240];
    bool is_peer_cert_checked;    /* mutual TLS: peer_cert holds a verified certificate */
    struct tls_client_cert *peer_cert; /* read on the requests that need it, else NULL */
    char peer_region[64]; /* the registry region a verified certificate names, else "" */
    bool is_residency_unknown_seen; /* authz_can left a repository out for that reason */
};

/* What a request needs. */
enum need {
    NEED_NONE,          /* open: health, metrics, the token endpoint */
    NEED_IDENTITY,      /* anyone who went through the token flow: /v2/ */
    NEED_CATALOG,       /* /v2/_catalog: filtered by what the requester may pull */
    NEED_REPO,          /* perms on one repository */
    NEED_AUTHENTICATED, /* management reads: a user or robot */
    NEED_ADMIN,         /* management writes: admin on "*" */
    NEED_PEER,          /* the peer replication API */
};

static struct auth_request *areq(struct http_req *req)
{
    struct auth_request *ar = req->auth;
    if (ar != NULL)
        ASSERT(ar->magic == AUTHZ_REQ_MAGIC);
    return ar;
}

/* Snapshots ----------------------------------------------------------------- */

static void policy_free(struct policy *p)
{
    if (p == NULL)
        return;
    meta_auth_state_fini(&p->st);
    free(p->bindings);
    json_decref(p->residency);
    free(p);
}

static struct policy *policy_build(struct meta_auth_state *st)
{
    struct policy *p = xcalloc(1, sizeof(*p));
    p->st = *st;
    memset(st, 0, sizeof(*st));
    p->bindings = xcalloc(p->st.n_bindings, sizeof(*p->bindings));
    for (size_t i = 0; i < p->st.n_bindings; i++) {
        enum auth_role role;
        if (auth_role_parse(p->st.bindings[i].role, &role) != 0)
            continue; /* a role this build does not know grants nothing */
        p->bindings[p->n_bindings++] = (struct auth_binding){.subject = p->st.bindings[i].subject,
                                                             .role = role,
                                                             .pattern = p->st.bindings[i].pattern};
    }
    return p;
}

/* Identities are loaded in name order. */
static const struct meta_identity *policy_identity(const struct policy *p, const char *name)
{
    size_t lo = 0, hi = p->st.n_identities;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(p->st.identities[mid].name, name);
        if (c == 0)
            return &p->st.identities[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool identity_is_live(const struct meta_identity *id, int64_t now_s)
{
    return id != NULL && (id->expires_s == 0 || id->expires_s > now_s);
}

static void maybe_reload_keys(struct authz *az);

static int reload(struct authz *az, struct err *e)
{
    struct meta_auth_state st;
    if (az->ms->ops->auth_load(az->ms, &st, e) != 0)
        return -1;
    /* Read after the generation: a policy written in between moves it past this one. */
    json_t *residency = residency_policies(az->ms, e);
    if (residency == NULL) {
        meta_auth_state_fini(&st);
        return -1;
    }
    struct policy *p = policy_build(&st);
    p->residency = residency;
    AZ(pthread_rwlock_wrlock(&az->lock));
    struct policy *old = az->policy;
    az->policy = p;
    az->generation = p->st.generation;
    AZ(pthread_rwlock_unlock(&az->lock));
    policy_free(old);
    return 0;
}

/* Rebuilds the snapshot when the store's generation moved; at most one thread polls
 * per interval, the others use the snapshot they have. */
static void maybe_reload(struct authz *az)
{
    int64_t now = util_now_ms();
    int64_t due = atomic_load(&az->next_poll_ms);
    if (now < due || !atomic_compare_exchange_strong(&az->next_poll_ms, &due, now + AUTHZ_POLL_MS))
        return;
    struct err e = {0};
    int64_t gen = 0;
    if (az->is_enabled)
        maybe_reload_keys(az);
    if (az->ms->ops->auth_generation(az->ms, &gen, &e) != 0) {
        log_error("authz", "failed to read the auth generation: %s", err_message(&e));
        /* Whether the policies moved is unknown: peer reads fail closed until a read
         * tells (the snapshot is kept for the rest, as when a reload fails). */
        atomic_store(&az->is_residency_unknown, true);
        return;
    }
    AZ(pthread_rwlock_rdlock(&az->lock));
    bool is_stale = gen != az->generation;
    AZ(pthread_rwlock_unlock(&az->lock));
    if (!is_stale) {
        /* The snapshot is of this generation (a failed reload leaves it older). */
        atomic_store(&az->is_residency_unknown, false);
        return;
    }
    AZ(pthread_mutex_lock(&az->reload_mu));
    bool is_failed = reload(az, &e) != 0;
    if (is_failed)
        log_error("authz", "failed to reload identities and roles: %s", err_message(&e));
    atomic_store(&az->is_residency_unknown, is_failed);
    AZ(pthread_mutex_unlock(&az->reload_mu));
}

void authz_invalidate(struct authz *az)
{
    if (az != NULL)
        atomic_store(&az->next_poll_ms, 0);
}

/* Setup ------------------------------------------------------------------- */

static void key_path(const struct authz *az, char *path, size_t len)
{
    if (az->cfg->token_key_file != NULL)
        snprintf(path, len, "%s", az->cfg->token_key_file);
    else
        snprintf(path, len, "%s/%s", az->cfg->data_dir, AUTHZ_KEY_FILE);
}

/* What identifies a version of the key file, "" when it cannot be stat'ed. */
static void key_file_stamp(const char *path, char *out, size_t len)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        out[0] = '\0';
        return;
    }
    snprintf(out, len, "%lld:%lld.%09ld:%llu", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             sb.st_mtim.tv_nsec, (unsigned long long)sb.st_ino);
}

/* Parses the key file's text: one secret of 16+ bytes per line (blank lines and lines
 * starting with '#' skipped); each key is the HMAC of its line's text, so any secret
 * works. The first line signs. */
static int parse_keys(char *text, struct auth_token_key *keys, size_t *n_keys, struct err *e)
{
    *n_keys = 0;
    for (char *line = text, *next; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        if (n == 0 || line[0] == '#')
            continue;
        if (n < 16)
            return err_set(e, ERR_IO, "a token key is shorter than 16 bytes");
        if (*n_keys == AUTHZ_MAX_KEYS)
            return err_set(e, ERR_IO, "more than %d token keys", AUTHZ_MAX_KEYS);
        uint8_t mac[SECRET_HMAC_BYTES];
        secret_hmac_sha256((const uint8_t *)"meridian token key", 18, line, n, mac);
        memcpy(keys[*n_keys].bytes, mac, sizeof(keys[*n_keys].bytes));
        auth_token_key_id(&keys[*n_keys]);
        secret_wipe(mac, sizeof(mac));
        (*n_keys)++;
    }
    return *n_keys == 0 ? err_set(e, ERR_IO, "no token key") : 0;
}

/* Forgets the verified tokens (a key was withdrawn: they must be checked again). */
static void forget_tokens(struct authz *az)
{
    AZ(pthread_mutex_lock(&az->token_mu));
    for (size_t i = 0; i < AUTHZ_TOKEN_SLOTS; i++) {
        free(az->tokens[i].tok);
        memset(&az->tokens[i], 0, sizeof(az->tokens[i]));
    }
    AZ(pthread_mutex_unlock(&az->token_mu));
}

/* Reads the key file into az->keys, or creates it (mode 0600) with 32 random bytes
 * written as text, so that it can be copied to the other nodes and regions that must
 * accept this node's tokens. */
static int load_key(struct authz *az, struct err *e)
{
    char path[4096];
    key_path(az, path, sizeof(path));
    char text[4096];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && az->cfg->token_key_file == NULL) {
        char fresh[64];
        secret_random_token(32, fresh, sizeof(fresh));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        size_t len = strlen(fresh);
        if (fd < 0 || write(fd, fresh, len) != (ssize_t)len || fsync(fd) != 0) {
            log_error("authz", "failed to create token key %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            secret_wipe(fresh, sizeof(fresh));
            return err_set(e, ERR_IO, "cannot create the token key");
        }
        close(fd);
        secret_wipe(fresh, sizeof(fresh));
        log_info("authz", "created token signing key %s", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    char stamp[sizeof(az->key_stamp)];
    key_file_stamp(path, stamp, sizeof(stamp));
    if (fd >= 0) {
        n = read(fd, text, sizeof(text) - 1);
        close(fd);
    }
    if (n < 0) {
        log_error("authz", "failed to read token key %s: %s", path, strerror(errno));
        return err_set(e, ERR_IO, "cannot read the token key");
    }
    text[n] = '\0';
    struct auth_token_key keys[AUTHZ_MAX_KEYS];
    size_t n_keys = 0;
    int rc = parse_keys(text, keys, &n_keys, e);
    secret_wipe(text, sizeof(text));
    if (rc != 0) {
        log_error("authz", "failed to read token key %s: %s", path, err_message(e));
        return rc;
    }
    AZ(pthread_rwlock_wrlock(&az->lock));
    memcpy(az->keys, keys, sizeof(keys));
    az->n_keys = n_keys;
    snprintf(az->key_stamp, sizeof(az->key_stamp), "%s", stamp);
    AZ(pthread_rwlock_unlock(&az->lock));
    secret_wipe(keys, sizeof(keys));
    forget_tokens(az);
    return 0;
}

/* Re-reads the key file when it changed since it was read (a rotation step); a file
 * that does not parse leaves the keys as they were. */
static void maybe_reload_keys(struct authz *az)
{
    char path[4096], stamp[sizeof(az->key_stamp)];
    key_path(az, path, sizeof(path));
    key_file_stamp(path, stamp, sizeof(stamp));
    AZ(pthread_rwlock_rdlock(&az->lock));
    bool is_same = strcmp(stamp, az->key_stamp) == 0;
    AZ(pthread_rwlock_unlock(&az->lock));
    struct err e = {0};
    if (is_same || stamp[0] == '\0')
        return;
    if (load_key(az, &e) != 0) {
        log_error("authz", "kept the previous token keys: %s", err_message(&e));
        AZ(pthread_rwlock_wrlock(&az->lock));
        snprintf(az->key_stamp, sizeof(az->key_stamp), "%s", stamp); /* once per change */
        AZ(pthread_rwlock_unlock(&az->lock));
        return;
    }
    AZ(pthread_rwlock_rdlock(&az->lock));
    log_info("authz", "token keys reloaded: %zu accepted, signing with key id %s", az->n_keys,
             az->keys[0].kid);
    AZ(pthread_rwlock_unlock(&az->lock));
}

/* A store with no identity gets user "admin" with role admin on "*". Its password is
 * --admin-password (MERIDIAN_ADMIN_PASSWORD) or a random one written to
 * DATA/admin-password (0600); the log names the file, never the password. */
static int bootstrap(struct authz *az, struct err *e)
{
    if (az->policy->st.n_identities > 0)
        return 0;
    char generated[64];
    const char *pw = az->cfg->admin_password;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", az->cfg->data_dir, AUTHZ_ADMIN_FILE);
    if (pw == NULL || pw[0] == '\0') {
        secret_random_token(18, generated, sizeof(generated));
        pw = generated;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(generated);
        if (fd < 0 || write(fd, generated, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
            fsync(fd) != 0) {
            log_error("authz", "failed to write %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            secret_wipe(generated, sizeof(generated));
            return err_set(e, ERR_IO, "cannot write the bootstrap admin password");
        }
        close(fd);
    }
    char hash[SECRET_HASH_MAX];
    int rc = authz_hash_secret(pw, hash, sizeof(hash));
    secret_wipe(generated, sizeof(generated));
    if (rc != 0)
        return err_set(e, ERR_INTERNAL, "cannot hash the admin password");
    struct meta_identity id = {.name = "admin",
                               .kind = "user",
                               .secret_hash = hash,
                               .description = "bootstrap administrator",
                               .is_bootstrap = true};
    struct meta_binding b = {
        .subject = "admin", .role = "admin", .pattern = "*", .is_bootstrap = true};
    bool is_changed;
    if (az->ms->ops->identity_put(az->ms, &id, true, e) != 0 ||
        az->ms->ops->role_set(az->ms, &b, true, &is_changed, e) != 0)
        return -1;
    if (pw == az->cfg->admin_password)
        log_info("authz", "created user admin (role admin on *) with the password given by "
                          "admin-password");
    else
        log_info("authz", "created user admin (role admin on *); its password is in %s", path);
    return reload(az, e);
}

struct authz *authz_open(const struct config *cfg, struct metastore *ms, struct err *e)
{
    secret_init();
    struct authz *az = xcalloc(1, sizeof(*az));
    az->magic = AUTHZ_MAGIC;
    az->cfg = cfg;
    az->ms = ms;
    az->is_enabled = config_is_auth_on(cfg);
    AZ(pthread_rwlock_init(&az->lock, NULL));
    AZ(pthread_mutex_init(&az->reload_mu, NULL));
    AZ(pthread_mutex_init(&az->cache_mu, NULL));
    AZ(pthread_mutex_init(&az->token_mu, NULL));
    AZ(pthread_mutex_init(&az->limit_mu, NULL));
    AZ(pthread_mutex_init(&az->agg_mu, NULL));
    az->tokens = xcalloc(AUTHZ_TOKEN_SLOTS, sizeof(*az->tokens));
    secret_random(az->cache_key, sizeof(az->cache_key));
    uint64_t seeds[2];
    secret_random(seeds, sizeof(seeds));
    if (cfg->failed_login_burst > 0)
        az->limit = login_limit_new(cfg->failed_login_burst, cfg->failed_login_interval_ms,
                                    AUTHZ_LIMIT_KEYS, seeds[0]);
    az->agg = audit_agg_new(AUTHZ_AGG_KEYS, seeds[1]);
    if (reload(az, e) != 0)
        goto fail;
    if (!az->is_enabled)
        return az;
    char dummy[32];
    secret_random_token(16, dummy, sizeof(dummy));
    if (authz_hash_secret(dummy, az->dummy_hash, sizeof(az->dummy_hash)) != 0) {
        err_set(e, ERR_INTERNAL, "cannot hash");
        goto fail;
    }
    if (load_key(az, e) != 0 || bootstrap(az, e) != 0)
        goto fail;
    atomic_store(&az->next_poll_ms, util_now_ms() + AUTHZ_POLL_MS);
    log_info("authz", "access control on: tokens live %" PRId64 "s, key id %s (%zu accepted)",
             cfg->token_ttl_s, az->keys[0].kid, az->n_keys);
    return az;
fail:
    authz_close(az);
    return NULL;
}

void authz_close(struct authz *az)
{
    if (az == NULL)
        return;
    ASSERT(az->magic == AUTHZ_MAGIC);
    authz_audit_flush(az); /* counts of refusals not written yet */
    policy_free(az->policy);
    login_limit_free(az->limit);
    audit_agg_free(az->agg);
    pthread_mutex_destroy(&az->limit_mu);
    pthread_mutex_destroy(&az->agg_mu);
    pthread_rwlock_destroy(&az->lock);
    pthread_mutex_destroy(&az->reload_mu);
    pthread_mutex_destroy(&az->cache_mu);
    pthread_mutex_destroy(&az->token_mu);
    for (size_t i = 0; az->tokens != NULL && i < AUTHZ_TOKEN_SLOTS; i++)
        free(az->tokens[i].tok);
    free(az->tokens);
    secret_wipe(az, sizeof(*az));
    free(az);
}

bool authz_is_enabled(const struct authz *az)
{
    return az != NULL && az->is_enabled;
}

int authz_hash_secret(const char *secret, char *out, size_t out_len)
{
    ASSERT(out_len >= SECRET_HASH_MAX);
    return secret_hash_password(secret, strlen(secret), out);
}

/* Identification --------------------------------------------------------- */

static void cred_mac(struct authz *az, const char *name, const char *secret, size_t secret_len,
                     const char *hash, uint8_t mac[SECRET_HMAC_BYTES])
{
    /* Joined by NULs, which none of them may hold, so tuples do not collide. */
    size_t n = strlen(name);
    size_t h = strlen(hash);
    size_t len = n + 1 + secret_len + 1 + h;
    char *msg = xmalloc(len);
    memcpy(msg, name, n + 1);
    memcpy(msg + n + 1, secret, secret_len);
    msg[n + 1 + secret_len] = '\0';
    memcpy(msg + n + 2 + secret_len, hash, h);
    secret_hmac_sha256(az->cache_key, sizeof(az->cache_key), msg, len, mac);
    secret_wipe(msg, len);
    free(msg);
}

static bool cache_hit(struct authz *az, const uint8_t mac[SECRET_HMAC_BYTES])
{
    struct cred_slot *s = &az->cache[mac[0] % AUTHZ_CACHE_SLOTS];
    AZ(pthread_mutex_lock(&az->cache_mu));
    bool is_hit = s->is_used && s->expires_ms > util_now_ms() &&
                  secret_equal(s->mac, sizeof(s->mac), mac, SECRET_HMAC_BYTES);
    AZ(pthread_mutex_unlock(&az->cache_mu));
    return is_hit;
}

static void cache_put(struct authz *az, const uint8_t mac[SECRET_HMAC_BYTES])
{
    struct cred_slot *s = &az->cache[mac[0] % AUTHZ_CACHE_SLOTS];
    AZ(pthread_mutex_lock(&az->cache_mu));
    memcpy(s->mac, mac, SECRET_HMAC_BYTES);
    s->expires_ms = util_now_ms() + AUTHZ_CACHE_TTL_MS;
    s->is_used = true;
    AZ(pthread_mutex_unlock(&az->cache_mu));
}

/* Verifies a name and secret against the snapshot. 0 with *kind set, or -1. */
static int verify_secret(struct authz *az, const char *name, const char *secret, size_t secret_len,
                         enum authz_kind *kind)
{
    char hash[SECRET_HASH_MAX] = "";
    bool is_robot = false;
    bool is_live = false;
    AZ(pthread_rwlock_rdlock(&az->lock));
    const struct meta_identity *id = policy_identity(az->policy, name);
    if (id != NULL) {
        snprintf(hash, sizeof(hash), "%s", id->secret_hash);
        is_robot = strcmp(id->kind, "robot") == 0;
        is_live = identity_is_live(id, util_now_s());
    }
    AZ(pthread_rwlock_unlock(&az->lock));

    uint8_t mac[SECRET_HMAC_BYTES];
    cred_mac(az, name, secret, secret_len, hash, mac);
    bool is_ok = id != NULL && cache_hit(az, mac);
    if (!is_ok) {
        /* An unknown name costs one hash too, so timing does not tell names apart. */
        is_ok = secret_verify_password(id != NULL ? hash : az->dummy_hash, secret, secret_len) &&
                id != NULL;
        if (is_ok)
            cache_put(az, mac);
    }
    secret_wipe(hash, sizeof(hash));
    if (!is_ok || !is_live)
        return -1;
    *kind = is_robot ? AUTHZ_ROBOT : AUTHZ_USER;
    return 0;
}

/* auth_token_verify behind the cache of verified tokens. */
static int verify_token(struct authz *az, const char *tok, size_t len, struct auth_token *out,
                        struct err *e)
{
    /* The slot comes from the signature's last bytes (random to anyone without the key). */
    uint32_t h = 2166136261u;
    for (size_t i = len > 16 ? len - 16 : 0; i < len; i++)
        h = (h ^ (uint8_t)tok[i]) * 16777619u;
    struct token_slot *slot = &az->tokens[h % AUTHZ_TOKEN_SLOTS];
    int64_t now = util_now_s();
    AZ(pthread_mutex_lock(&az->token_mu));
    bool is_hit = slot->tok != NULL && secret_equal(slot->tok, slot->len, tok, len);
    if (is_hit)
        *out = slot->claims;
    AZ(pthread_mutex_unlock(&az->token_mu));
    if (is_hit) {
        if (now < out->exp_s)
            return 0;
        memset(out, 0, sizeof(*out));
        return err_set(e, ERR_UNAUTHORIZED, "token expired");
    }
    const char *aud = az->cfg->registry_name;
    /* Each accepted key in turn: the signature is checked first, so any other failure
     * means this key signed it and the token is refused for what it says. */
    struct auth_token_key keys[AUTHZ_MAX_KEYS];
    AZ(pthread_rwlock_rdlock(&az->lock));
    size_t n_keys = az->n_keys;
    memcpy(keys, az->keys, sizeof(keys));
    AZ(pthread_rwlock_unlock(&az->lock));
    int rc = -1;
    for (size_t i = 0; i < n_keys && rc != 0; i++) {
        *e = (struct err){0};
        rc = auth_token_verify(tok, len, &keys[i], aud, aud, now, out, e);
        if (rc != 0 && strcmp(err_message(e), "invalid token signature") != 0)
            break;
    }
    secret_wipe(keys, sizeof(keys));
    if (rc != 0)
        return -1;
    char *copy = xstrndup(tok, len);
    AZ(pthread_mutex_lock(&az->token_mu));
    char *old = slot->tok;
    slot->tok = copy;
    slot->len = len;
    slot->claims = *out;
    AZ(pthread_mutex_unlock(&az->token_mu));
    free(old);
    return 0;
}

static bool is_peer_secret(struct authz *az, const struct auth_credentials *cr)
{
    const char *ps = az->cfg->peer_secret;
    return ps != NULL && ps[0] != '\0' && strcmp(cr->user, AUTH_PEER_USER) == 0 &&
           secret_equal(cr->secret, cr->secret_len, ps, strlen(ps));
}

/* Failed-login limit (login_limit.h) ------------------------------------------ */

static int64_t mono_ms(void)
{
    return util_mono_ns() / 1000000;
}

/* Before a secret of user is checked: true when ar's source must wait (a 429; the
 * seconds are in ar->retry_after_s). The peer credential has no per-identity budget:
 * an attacker could spend it and cut replication off. */
static bool login_is_throttled(struct authz *az, struct auth_request *ar, const char *user)
{
    if (az->limit == NULL)
        return false;
    bool is_peer = strcmp(user, AUTH_PEER_USER) == 0;
    AZ(pthread_mutex_lock(&az->limit_mu));
    int64_t wait_ms = login_limit_check(az->limit, ar->source, user, !is_peer, mono_ms());
    AZ(pthread_mutex_unlock(&az->limit_mu));
    if (wait_ms <= 0)
        return false;
    ar->retry_after_s = (wait_ms + 999) / 1000;
    return true;
}

static bool peer_source_is_known(struct authz *az, const struct auth_request *ar)
{
    if (az->limit == NULL)
        return true;
    AZ(pthread_mutex_lock(&az->limit_mu));
    bool is_known = login_limit_is_known(az->limit, ar->source, AUTH_PEER_USER, mono_ms());
    AZ(pthread_mutex_unlock(&az->limit_mu));
    return is_known;
}

/* After it was checked. */
static void login_result(struct authz *az, const struct auth_request *ar, const char *user,
                         bool is_ok)
{
    if (az->limit == NULL)
        return;
    bool is_peer = strcmp(user, AUTH_PEER_USER) == 0;
    AZ(pthread_mutex_lock(&az->limit_mu));
    if (is_ok)
        login_limit_succeeded(az->limit, ar->source, user, mono_ms());
    else
        login_limit_failed(az->limit, ar->source, user, !is_peer, mono_ms());
    AZ(pthread_mutex_unlock(&az->limit_mu));
}

/* Fills ar from the credentials. 0, -1 with a client message in msg, or
 * IDENTIFY_THROTTLED (the failed-login limit; nothing was checked). */
#define IDENTIFY_THROTTLED (-2)
static int identify(struct authz *az, struct auth_request *ar, const struct auth_credentials *cr,
                    const char **msg)
{
    ar->kind = AUTHZ_ANONYMOUS;
    ar->name[0] = '\0';
    switch (cr->scheme) {
    case AUTH_SCHEME_NONE:
        return 0;
    case AUTH_SCHEME_INVALID:
        *msg = "malformed Authorization header";
        return -1;
    case AUTH_SCHEME_BASIC: {
        snprintf(ar->name, sizeof(ar->name), "%s", cr->user);
        /* From an address a region has authenticated from (within a day), the right
         * peer secret is taken even while the address's budget is spent: wrong guesses
         * sent from it (a host sharing the address) would otherwise cut that region's
         * replication off. Anywhere else the budget comes first, so a throttled guesser
         * learns nothing from the answer. */
        bool is_peer = strcmp(cr->user, AUTH_PEER_USER) == 0;
        if (is_peer && is_peer_secret(az, cr) && peer_source_is_known(az, ar)) {
            ar->kind = AUTHZ_PEER;
            login_result(az, ar, cr->user, true);
            return 0;
        }
        if (login_is_throttled(az, ar, cr->user)) {
            *msg = "too many failed logins";
            return IDENTIFY_THROTTLED;
        }
        bool is_ok;
        if (is_peer) {
            is_ok = is_peer_secret(az, cr);
            if (is_ok)
                ar->kind = AUTHZ_PEER;
            else
                *msg = "invalid peer credentials";
        } else {
            is_ok = verify_secret(az, cr->user, cr->secret, cr->secret_len, &ar->kind) == 0;
            if (!is_ok)
                *msg = "invalid username or password";
        }
        login_result(az, ar, cr->user, is_ok);
        return is_ok ? 0 : -1;
    }
    case AUTH_SCHEME_BEARER: {
        struct err e = {0};
        if (verify_token(az, cr->token, cr->token_len, &ar->token, &e) != 0) {
            *msg = "invalid or expired token";
            return -1;
        }
        ar->has_token = true;
        if (ar->token.sub[0] == '\0')
            return 0;
        /* The subject must still exist: deleting a robot ends its sessions at once. */
        AZ(pthread_rwlock_rdlock(&az->lock));
        const struct meta_identity *id = policy_identity(az->policy, ar->token.sub);
        bool is_live = identity_is_live(id, util_now_s());
        bool is_robot = id != NULL && strcmp(id->kind, "robot") == 0;
        /* ... with the secret it had when the token was issued: a reset secret, or the
         * name deleted and made again, ends the tokens issued before. */
        char mark[AUTH_SECRET_MARK_LEN + 1] = "";
        if (is_live && id->secret_hash != NULL)
            auth_secret_mark(id->secret_hash, mark);
        AZ(pthread_rwlock_unlock(&az->lock));
        if (!is_live) {
            *msg = "the token's identity no longer exists";
            return -1;
        }
        if (ar->token.sh[0] != '\0' && strcmp(ar->token.sh, mark) != 0) {
            *msg = "the token's identity has a new secret since it was issued";
            return -1;
        }
        snprintf(ar->name, sizeof(ar->name), "%s", ar->token.sub);
        ar->kind = is_robot ? AUTHZ_ROBOT : AUTHZ_USER;
        return 0;
    }
    }
    return -1;
}

/* Policy ---------------------------------------------------------------- */

/* Perms the requester's roles give on repo (NULL: on "*"). */
static unsigned role_perms(struct authz *az, const struct auth_request *ar, const char *repo)
{
    if (ar->kind == AUTHZ_OFF)
        return ~0u;
    if (ar->kind == AUTHZ_PEER)
        return AUTH_PERM_PULL;
    const char *subject = ar->kind == AUTHZ_ANONYMOUS ? AUTH_ANONYMOUS : ar->name;
    AZ(pthread_rwlock_rdlock(&az->lock));
    unsigned perms = auth_policy_perms(az->policy->bindings, az->policy->n_bindings, subject, repo);
    /* A user or robot may pull whatever anonymous clients may: clients send their
     * credentials to every repository of a registry they logged in to, so otherwise
     * `docker login` would turn a public pull into 403 DENIED. */
    if (ar->kind == AUTHZ_USER || ar->kind == AUTHZ_ROBOT)
        perms |=
            auth_policy_perms(az->policy->bindings, az->policy->n_bindings, AUTH_ANONYMOUS, repo) &
            AUTH_PERM_PULL;
    AZ(pthread_rwlock_unlock(&az->lock));
    /* Anonymous clients only ever pull, whatever role a binding names. */
    if (ar->kind == AUTHZ_ANONYMOUS)
        perms &= AUTH_PERM_PULL;
    return perms;
}

/* What the request needs -------------------------------------------------- */

struct requirement {
    enum need need;
    unsigned perms;
    const char *repo; /* NEED_REPO */
    const char *mgmt_path;
};

/* Management routes and what they need. {x} matches one path segment, {x...} the rest;
 * `repo` names where the repository of a repository-scoped rule is: "q:<param>" for a
 * query parameter. Rows are tried in order; a route with no row needs authentication
 * for GET and admin on "*" for anything else. A resource scoped to repositories adds
 * its row here. */
static const struct mgmt_rule {
    const char *method; /* NULL: any */
    const char *pattern;
    enum need need;
    unsigned perms;
    const char *repo;
} mgmt_rules[] = {
    {NULL, "token", NEED_NONE, 0, NULL},
    {NULL, "replication/{rest...}", NEED_PEER, 0, NULL},
    /* o: the repository is optional: without it, any identity lists what it may pull */
    {"GET", "image-definitions", NEED_REPO, AUTH_PERM_PULL, "o:repository"},
    {NULL, "image-definitions", NEED_REPO, AUTH_PERM_PUSH, "q:repository"},
    {"GET", "image-versions", NEED_REPO, AUTH_PERM_PULL, "q:repository"},
    {NULL, "image-versions", NEED_REPO, AUTH_PERM_PUSH, "q:repository"},
    /* locks (mgmt_repositories.c): admins and publishers of the repository change them */
    {"GET", "repositories", NEED_REPO, AUTH_PERM_PULL, "q:repository"},
    {NULL, "repositories", NEED_REPO, AUTH_PERM_PUSH, "q:repository"},
    {"GET", "image-versions/{rest...}", NEED_REPO, AUTH_PERM_PULL, "q:repository"},
    {NULL, "image-versions/{rest...}", NEED_REPO, AUTH_PERM_PUSH, "q:repository"},
    /* a read with a body (the matrix): any identity; it lists what the caller may pull */
    {"POST", "compliance/check", NEED_AUTHENTICATED, 0, NULL},
    {NULL, "users", NEED_ADMIN, 0, NULL},
    {NULL, "users/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "robots", NEED_ADMIN, 0, NULL},
    {NULL, "robots/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "roles", NEED_ADMIN, 0, NULL},
    {NULL, "roles/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "scrub", NEED_ADMIN, 0, NULL}, /* lists stored digests */
    {NULL, "gc", NEED_ADMIN, 0, NULL},        /* deletes stored blobs */
    {NULL, "gc/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "compaction", NEED_ADMIN, 0, NULL}, /* drops replication history */
    {NULL, "compaction/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "storage", NEED_ADMIN, 0, NULL},   /* every repository's size */
    {NULL, "quotas", NEED_ADMIN, 0, NULL},
    {NULL, "retention", NEED_ADMIN, 0, NULL}, /* rules that delete tags */
    {NULL, "retention/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "audit", NEED_ADMIN, 0, NULL},
    /* Replication topology (endpoints, lag, bytes) is the operator's: admin, reads too. */
    {NULL, "replications", NEED_ADMIN, 0, NULL},
    {NULL, "replications/{rest...}", NEED_ADMIN, 0, NULL},
    {NULL, "webhooks", NEED_ADMIN, 0, NULL},
    {NULL, "webhooks/{rest...}", NEED_ADMIN, 0, NULL},
};

static bool pattern_match(const char *pattern, const char *path)
{
    const char *a = pattern, *b = path;
    while (*a != '\0') {
        if (*a == '{') {
            const char *close = strchr(a, '}');
            AN(close);
            bool is_rest = close - a > 4 && strncmp(close - 3, "...", 3) == 0;
            const char *end = is_rest ? b + strlen(b) : strchr(b, '/');
            if (end == NULL)
                end = b + strlen(b);
            if (end == b)
                return false;
            a = close + 1;
            b = end;
            continue;
        }
        if (*a != *b)
            return false;
        a++;
        b++;
    }
    return *b == '\0';
}

static bool is_read(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static struct requirement required(struct http_req *req)
{
    struct requirement r = {.need = NEED_NONE};
    const char *m = req->method;
    switch ((enum route_id)req->route) {
    case ROUTE_BASE:
        r.need = NEED_IDENTITY;
        break;
    case ROUTE_CATALOG:
        r.need = NEED_CATALOG;
        break;
    case ROUTE_TAGS:
    case ROUTE_REFERRERS:
        r.need = NEED_REPO;
        r.perms = AUTH_PERM_PULL;
        break;
    case ROUTE_MANIFEST:
    case ROUTE_BLOB:
        r.need = NEED_REPO;
        r.perms = is_read(m)                 ? AUTH_PERM_PULL
                  : strcmp(m, "DELETE") == 0 ? AUTH_PERM_DELETE
                                             : AUTH_PERM_PUSH;
        break;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        /* A push needs pull too: clients read back what they push (distribution asks
         * for "pull,push" the same way). */
        r.need = NEED_REPO;
        r.perms = AUTH_PERM_PUSH | AUTH_PERM_PULL;
        break;
    case ROUTE_MGMT: {
        const char *path = req->path + strlen(MGMT_PREFIX);
        r.mgmt_path = path;
        r.need = is_read(m) ? NEED_AUTHENTICATED : NEED_ADMIN;
        for (size_t i = 0; i < sizeof(mgmt_rules) / sizeof(mgmt_rules[0]); i++) {
            const struct mgmt_rule *rule = &mgmt_rules[i];
            if (rule->method != NULL && strcmp(rule->method, m) != 0 &&
                !(strcmp(rule->method, "GET") == 0 && strcmp(m, "HEAD") == 0))
                continue;
            if (!pattern_match(rule->pattern, path))
                continue;
            r.need = rule->need;
            r.perms = rule->perms;
            if (rule->repo != NULL) {
                r.repo = http_req_query(req, rule->repo + 2);
                if (r.repo == NULL && rule->repo[0] == 'o')
                    r.need = NEED_AUTHENTICATED; /* the handler filters by pull rights */
                else if (r.repo == NULL || !name_is_valid_repo(r.repo, strlen(r.repo)))
                    r.need = NEED_ADMIN; /* no repository named: registry-wide */
            }
            break;
        }
        break;
    }
    case ROUTE_METRICS:
        /* Per-repository series name every repository, and the storage totals tell
         * whether a pushed blob was already stored anywhere: an administrator's
         * (a scraper sends the credentials of one, or of a robot with that role). */
        r.need = NEED_ADMIN;
        break;
    default:
        r.need = NEED_NONE; /* health, readiness, unknown (404 already) */
        break;
    }
    if (r.need == NEED_REPO && r.repo == NULL)
        r.repo = req->repo;
    return r;
}

/* Replies ---------------------------------------------------------------- */

/* The token endpoint's URL: configured, or this node's as the client reached it. */
static void realm_of(struct http_req *req, struct authz *az, char *out, size_t out_len)
{
    if (az->cfg->token_realm != NULL) {
        snprintf(out, out_len, "%s", az->cfg->token_realm);
        return;
    }
    const char *host = http_req_header(req, "Host");
    char safe[256];
    size_t n = 0;
    /* Only host characters: the value goes into a quoted header parameter. */
    for (const char *p = host != NULL ? host : ""; *p && n + 1 < sizeof(safe); p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == ':' || c == '[' || c == ']')
            safe[n++] = c;
    }
    safe[n] = '\0';
    if (n == 0)
        snprintf(safe, sizeof(safe), "%s:%u", az->cfg->listen_host, az->cfg->listen_port);
    snprintf(out, out_len, "%s://%s%stoken", az->cfg->tls_cert_file != NULL ? "https" : "http",
             safe, MGMT_PREFIX);
}

static void reply_unauthorized(struct http_req *req, struct authz *az, const struct requirement *r,
                               const char *msg, const char *error)
{
    if (req->route == ROUTE_MGMT) {
        struct err e = {.code = ERR_UNAUTHORIZED};
        snprintf(e.msg, sizeof(e.msg), "%s", msg);
        http_reply_mgmt_err(req, &e);
        http_reply_header(req, "WWW-Authenticate", "Basic realm=\"%s\"", az->cfg->registry_name);
        return;
    }
    char realm[512];
    realm_of(req, az, realm, sizeof(realm));
    struct buf ch;
    buf_init(&ch, 2048);
    buf_printf(&ch, "Bearer realm=\"%s\",service=\"%s\"", realm, az->cfg->registry_name);
    struct auth_access a = {.type = AUTH_RES_REPOSITORY, .perms = r->perms};
    bool has_scope = false;
    if (r->need == NEED_CATALOG) {
        a.type = AUTH_RES_CATALOG;
        has_scope = true;
    } else if (r->need == NEED_REPO && r->repo != NULL &&
               name_is_valid_repo(r->repo, strlen(r->repo))) {
        snprintf(a.name, sizeof(a.name), "%s", r->repo);
        has_scope = true;
    }
    if (has_scope) {
        buf_appends(&ch, ",scope=\"");
        auth_format_scope(&a, &ch);
        buf_appends(&ch, "\"");
    }
    if (error != NULL)
        buf_printf(&ch, ",error=\"%s\"", error);
    http_reply_error(req, ERR_UNAUTHORIZED, "%s", msg);
    http_reply_header(req, "WWW-Authenticate", "%s", ch.data);
    buf_fini(&ch);
}

/* A management API error body ({"error":{...}}); mgmt_api.c sits above this layer. */
static void reply_mgmt_error(struct http_req *req, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_mgmt_error(struct http_req *req, enum err_code code, const char *fmt, ...)
{
    struct err e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    http_reply_mgmt_err(req, &e);
}

static void reply_denied(struct http_req *req)
{
    struct auth_request *ar = areq(req);
    ar->is_denied = true;
    /* The same answer whether or not the repository exists: nothing is revealed. */
    if (req->route == ROUTE_MGMT)
        reply_mgmt_error(req, ERR_DENIED, "requested access to the resource is denied");
    else
        http_reply_error(req, ERR_DENIED, "requested access to the resource is denied");
}

/* 429 TOOMANYREQUESTS with Retry-After: the failed-login limit. is_oci: an OCI error
 * body (/v2/ and the token endpoint) rather than the management API's. */
static void reply_throttled(struct http_req *req, struct auth_request *ar, bool is_oci)
{
    ar->is_denied = true;
    snprintf(ar->action, sizeof(ar->action), "login.throttled");
    const char *msg = "too many failed logins from this address; retry after %" PRId64 " s";
    if (is_oci)
        http_reply_error(req, ERR_TOOMANYREQUESTS, msg, ar->retry_after_s);
    else
        reply_mgmt_error(req, ERR_TOOMANYREQUESTS, msg, ar->retry_after_s);
    http_reply_header(req, "Retry-After", "%" PRId64, ar->retry_after_s);
}

/* Mutual TLS between regions ------------------------------------------------------ */

/* Does a region of this registry go by name? A replication object exists for every
 * region the registry has (this one included), replicated like any object. */
static bool is_registry_region(struct authz *az, const char *name)
{
    if (!config_is_valid_region(name))
        return false;
    char *value = NULL;
    struct err e = {0};
    if (az->ms->ops->object_get(az->ms, "replication", name, &value, &e) != 0)
        return false;
    free(value);
    return true;
}

/* A region that is not part of the registry yet introduces itself: its certificate
 * must name a region, and mgmt_repl_introduce checks that it names the one it says it
 * is (authz_peer_cert_names). */
static bool is_introduction(const struct http_req *req)
{
    return strcmp(req->path, MGMT_PREFIX "replication/introduce") == 0;
}

/* Is the client certificate of req a region's? 0 when it chains to the peer CA, is in
 * its validity period and names (CN or DNS SAN) a region of this registry; else -1
 * with the reason in why and its class in *reason. */
static int peer_cert_check(struct authz *az, struct http_req *req, struct auth_request *ar,
                           char *why, size_t why_len, enum metrics_peer_cert *reason)
{
    if (ar->peer_cert == NULL)
        ar->peer_cert = xmalloc(sizeof(*ar->peer_cert));
    struct tls_client_cert *c = ar->peer_cert;
    http_req_client_cert(req, c);
    switch (c->verdict) {
    case TLS_CLIENT_NONE:
        *reason = METRICS_PEER_CERT_MISSING;
        snprintf(why, why_len, "no client certificate (peers need one from the peer CA)");
        return -1;
    case TLS_CLIENT_REFUSED:
        *reason = c->fault == TLS_FAULT_UNTRUSTED ? METRICS_PEER_CERT_UNTRUSTED
                  : c->fault == TLS_FAULT_EXPIRED ? METRICS_PEER_CERT_EXPIRED
                                                  : METRICS_PEER_CERT_INVALID;
        snprintf(why, why_len, "%s", c->why);
        return -1;
    case TLS_CLIENT_TRUSTED:
        break;
    }
    bool is_intro = is_introduction(req);
    for (size_t i = 0; i < c->n_names; i++) {
        if (is_intro ? config_is_valid_region(c->names[i])
                     : is_registry_region(az, c->names[i])) {
            ar->is_peer_cert_checked = true;
            snprintf(ar->peer_region, sizeof(ar->peer_region), "%s", c->names[i]);
            return 0;
        }
    }
    *reason = METRICS_PEER_CERT_WRONG_REGION;
    snprintf(why, why_len, "the certificate names no region of this registry (%.63s%s%.63s)",
             c->n_names > 0 ? c->names[0] : "no name", c->n_names > 1 ? ", " : "",
             c->n_names > 1 ? c->names[1] : "");
    return -1;
}

/* With a peer CA (--peer-ca), a peer's request needs a region certificate: with the
 * peer secret as well (--peer-auth both), or instead of it (cert). In the second
 * case a request with no other credentials and a region certificate is a peer's on any
 * route (blob and manifest fetches too). A client's own certificate on a client route
 * is not judged: docker and the rest are served as before. 0 to go on; -1 after a
 * refusal (401), which is logged and counted. */
static int peer_cert_gate(struct authz *az, struct http_req *req, struct auth_request *ar,
                          const struct requirement *r)
{
    bool is_secret_too = config_peer_auth(az->cfg) == CONFIG_PEER_AUTH_BOTH;
    bool is_peer_call = ar->kind == AUTHZ_PEER || r->need == NEED_PEER;
    bool may_be_peer = !is_secret_too && ar->kind == AUTHZ_ANONYMOUS && !ar->has_credentials;
    if (!is_peer_call && !may_be_peer)
        return 0;
    char why[200];
    enum metrics_peer_cert reason = METRICS_PEER_CERT_INVALID;
    if (peer_cert_check(az, req, ar, why, sizeof(why), &reason) == 0) {
        if (may_be_peer) {
            ar->kind = AUTHZ_PEER;
            snprintf(ar->name, sizeof(ar->name), "%s", AUTH_PEER_USER);
        }
        metrics_count_peer_cert_accepted();
        return 0;
    }
    if (!is_peer_call)
        return 0;
    metrics_count_peer_cert_refused(reason);
    log_warn("authz", "peer request refused: %s %s from %s: %s%s%s", req->method, req->path,
             ar->remote, why, ar->peer_cert->subject[0] ? "; subject " : "",
             ar->peer_cert->subject);
    ar->is_denied = true;
    snprintf(ar->detail, sizeof(ar->detail), "peer certificate: %s", why);
    char msg[256];
    snprintf(msg, sizeof(msg), "peer certificate refused: %s", why);
    reply_unauthorized(req, az, r, msg, NULL);
    return -1;
}

bool authz_peer_cert_names(struct http_req *req, const char *region)
{
    struct auth_request *ar = areq(req);
    if (!tls_peer_ca_is_loaded() || ar == NULL)
        return true;
    return ar->is_peer_cert_checked && region != NULL &&
           tls_client_names(ar->peer_cert, region);
}

/* The check ----------------------------------------------------------------- */

/* The region a peer reads for: the one its certificate names, else the one its fetch
 * header names (with the shared secret, the caller's word); NULL when neither names one
 * (a peer of a release that sent no name: those sent "1", which names no region). */
static const char *peer_region(struct http_req *req, struct auth_request *ar)
{
    if (ar->peer_region[0] != '\0')
        return ar->peer_region;
    const char *named = http_req_header(req, AUTHZ_PEER_FETCH_HEADER);
    return named != NULL && strcmp(named, "1") != 0 && config_is_valid_region(named) ? named
                                                                                     : NULL;
}

/* 503 UNAVAILABLE on /v2/ while the snapshot's residency policies are unknown: a peer is
 * told to come back (the reload is tried again every AUTHZ_POLL_MS), never given a filtered
 * answer built without them. */
static void reply_residency_unknown(struct http_req *req)
{
    http_reply_error(req, ERR_UNAVAILABLE, RESIDENCY_UNKNOWN_MSG);
    http_reply_header(req, "Retry-After", "%d", RESIDENCY_UNKNOWN_RETRY_S);
}

/* A peer reads a repository's content only if its region may hold it (residency.h): a
 * region certificate must not open what a policy keeps from its region. The policies are
 * the snapshot's (maybe_reload: a policy written through this node counts from the next
 * request, one written through another node of a shared store within AUTHZ_POLL_MS).
 * The catalog (no repository) is filtered per repository by authz_can; while the policies
 * are unknown it is refused here like the rest, rather than listed as empty.
 * true to go on, false after replying 403 DENIED or 503 UNAVAILABLE. */
static bool peer_residency_allows(struct http_req *req, struct authz *az, struct auth_request *ar,
                                  const struct requirement *r)
{
    const char *region = peer_region(req, ar);
    const char *repo = r->repo;
    bool is_filtered = repo != NULL || r->need == NEED_CATALOG;
    if (!is_filtered || region == NULL)
        return true;
    if (atomic_load(&az->is_residency_unknown)) {
        reply_residency_unknown(req);
        return false;
    }
    if (repo == NULL)
        return true;
    AZ(pthread_rwlock_rdlock(&az->lock));
    const json_t *forbidding = residency_forbidding(az->policy->residency, repo, region);
    if (forbidding != NULL) {
        const char *policy = json_string_value(json_object_get(forbidding, "name"));
        snprintf(ar->detail, sizeof(ar->detail), "residency policy %s keeps %s from %s",
                 policy != NULL ? policy : "?", repo, region);
    }
    AZ(pthread_rwlock_unlock(&az->lock));
    if (forbidding != NULL)
        reply_denied(req);
    return forbidding == NULL;
}

/* Decides; true to go on, false after replying. */
static bool decide(struct http_req *req, struct authz *az, const struct requirement *r)
{
    struct auth_request *ar = areq(req);
    bool is_anonymous = ar->kind == AUTHZ_ANONYMOUS;
    bool is_basic = (ar->kind == AUTHZ_USER || ar->kind == AUTHZ_ROBOT) && !ar->has_token;
    switch (r->need) {
    case NEED_NONE:
        return true;
    case NEED_PEER:
        if (ar->kind == AUTHZ_PEER)
            return true;
        reply_unauthorized(req, az, r, "replication needs the peer credential", NULL);
        return false;
    default:
        break;
    }
    if (ar->kind == AUTHZ_PEER) {
        /* A peer reads what its region may hold, and nothing else. */
        if (req->route != ROUTE_MGMT && is_read(req->method))
            return peer_residency_allows(req, az, ar, r);
        reply_denied(req);
        return false;
    }
    switch (r->need) {
    case NEED_IDENTITY:
        if (is_anonymous && !ar->has_token) {
            reply_unauthorized(req, az, r, "authentication required", NULL);
            return false;
        }
        return true;
    case NEED_CATALOG:
        if (is_anonymous && !ar->has_token) {
            reply_unauthorized(req, az, r, "authentication required", NULL);
            return false;
        }
        if (ar->has_token &&
            !(auth_token_perms(&ar->token, AUTH_RES_CATALOG, "catalog") & AUTH_PERM_PULL)) {
            reply_unauthorized(req, az, r, "the token does not grant the catalog",
                               "insufficient_scope");
            return false;
        }
        return true;
    case NEED_REPO: {
        unsigned have = role_perms(az, ar, r->repo);
        if ((have & r->perms) != r->perms) {
            if (is_anonymous) {
                reply_unauthorized(req, az, r, "authentication required", NULL);
                return false;
            }
            reply_denied(req);
            return false;
        }
        if (ar->has_token &&
            (auth_token_perms(&ar->token, AUTH_RES_REPOSITORY, r->repo) & r->perms) != r->perms) {
            reply_unauthorized(req, az, r, "the token does not grant this access",
                               "insufficient_scope");
            return false;
        }
        return true;
    }
    case NEED_AUTHENTICATED:
        if (!is_basic) {
            reply_unauthorized(req, az, r, "authentication required", NULL);
            return false;
        }
        return true;
    case NEED_ADMIN:
        if (!is_basic) {
            reply_unauthorized(req, az, r, "authentication required", NULL);
            return false;
        }
        if (!(role_perms(az, ar, NULL) & AUTH_PERM_ADMIN)) {
            reply_denied(req);
            return false;
        }
        return true;
    default:
        break;
    }
    reply_denied(req);
    return false;
}

bool authz_check(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct authz *az = reg->authz;
    AN(az);
    /* Off, nothing is checked; only management requests keep state (permission changes
     * are audited even then). */
    if (!az->is_enabled && az->cfg->peer_secret == NULL && req->route != ROUTE_MGMT)
        return true;
    struct auth_request *ar = xcalloc(1, sizeof(*ar));
    ar->magic = AUTHZ_REQ_MAGIC;
    ar->kind = AUTHZ_OFF;
    req->auth = ar;
    http_req_remote_addr(req, ar->remote, sizeof(ar->remote));
    login_limit_source(ar->remote, ar->source);

    struct requirement r = required(req);
    bool is_mtls = tls_peer_ca_is_loaded();
    /* With access control off everything is open, except that a configured peer
     * credential (secret, certificate) still guards the replication API. */
    if (!az->is_enabled &&
        !(r.need == NEED_PEER && (az->cfg->peer_secret != NULL || is_mtls)))
        return true;
    if (r.need == NEED_NONE)
        return true; /* the token endpoint authenticates by itself */
    maybe_reload(az); /* with access control off: a peer's residency policies */

    const char *hv = http_req_header(req, "Authorization");
    struct auth_credentials cr;
    auth_parse_authorization(hv, hv != NULL ? strlen(hv) : 0, &cr);
    ar->has_credentials = cr.scheme != AUTH_SCHEME_NONE;
    const char *msg = NULL;
    int rc = identify(az, ar, &cr, &msg);
    auth_credentials_wipe(&cr);
    if (rc == IDENTIFY_THROTTLED) {
        reply_throttled(req, ar, req->route != ROUTE_MGMT);
        return false;
    }
    if (rc != 0) {
        ar->is_denied = true;
        reply_unauthorized(req, az, &r, msg,
                           cr.scheme == AUTH_SCHEME_BEARER ? "invalid_token" : NULL);
        return false;
    }
    if (is_mtls && peer_cert_gate(az, req, ar, &r) != 0)
        return false;
    if (!az->is_enabled && ar->kind != AUTHZ_PEER) {
        reply_unauthorized(req, az, &r, "replication needs the peer credential", NULL);
        return false;
    }
    return decide(req, az, &r);
}

bool authz_can(struct http_req *req, const char *repo, unsigned perms, bool is_token_checked)
{
    struct authz *az = req->reg->authz;
    struct auth_request *ar = areq(req);
    if (az == NULL || ar == NULL || ar->kind == AUTHZ_OFF)
        return true;
    if ((role_perms(az, ar, repo) & perms) != perms)
        return false;
    /* A peer is shown (the catalog) only what its region may hold. */
    const char *region = ar->kind == AUTHZ_PEER && repo != NULL ? peer_region(req, ar) : NULL;
    if (region != NULL) {
        if (atomic_load(&az->is_residency_unknown)) {
            ar->is_residency_unknown_seen = true; /* authz_reply_if_residency_unknown */
            return false;
        }
        AZ(pthread_rwlock_rdlock(&az->lock));
        bool may_hold = residency_allows(az->policy->residency, repo, region);
        AZ(pthread_rwlock_unlock(&az->lock));
        if (!may_hold)
            return false;
    }
    if (is_token_checked && ar->has_token &&
        (auth_token_perms(&ar->token, AUTH_RES_REPOSITORY, repo) & perms) != perms)
        return false;
    return true;
}

bool authz_reply_if_residency_unknown(struct http_req *req)
{
    struct auth_request *ar = areq(req);
    if (ar == NULL || !ar->is_residency_unknown_seen)
        return false;
    reply_residency_unknown(req);
    return true;
}

enum authz_kind authz_who(struct http_req *req, const char **name)
{
    struct auth_request *ar = areq(req);
    *name = ar != NULL ? ar->name : "";
    return ar != NULL ? ar->kind : AUTHZ_OFF;
}

/* Upload cap -------------------------------------------------------------- */

void authz_upload_owner(struct http_req *req, const char **owner, int64_t *max_owned)
{
    struct authz *az = req->reg->authz;
    struct auth_request *ar = areq(req);
    *owner = NULL;
    *max_owned = 0;
    if (az == NULL || ar == NULL || (ar->kind != AUTHZ_USER && ar->kind != AUTHZ_ROBOT))
        return;
    *owner = ar->name;
    *max_owned = az->cfg->upload_sessions_per_identity;
}

/* Token endpoint ---------------------------------------------------------------- */

int authz_login(struct http_req *req, const struct auth_credentials *cr, enum authz_kind *kind,
                char name[AUTH_NAME_MAX + 1])
{
    struct authz *az = req->reg->authz;
    struct auth_request *ar = areq(req);
    name[0] = '\0';
    *kind = AUTHZ_ANONYMOUS;
    if (!az->is_enabled) {
        *kind = AUTHZ_OFF;
        return 0;
    }
    maybe_reload(az);
    if (cr->scheme == AUTH_SCHEME_NONE)
        return 0;
    if (ar != NULL && cr->scheme == AUTH_SCHEME_BASIC) {
        snprintf(ar->name, sizeof(ar->name), "%s", cr->user);
        if (login_is_throttled(az, ar, cr->user)) {
            reply_throttled(req, ar, true);
            return AUTHZ_LOGIN_THROTTLED;
        }
    }
    bool is_ok = cr->scheme == AUTH_SCHEME_BASIC && strcmp(cr->user, AUTH_PEER_USER) != 0 &&
                 verify_secret(az, cr->user, cr->secret, cr->secret_len, kind) == 0;
    if (ar != NULL && cr->scheme == AUTH_SCHEME_BASIC)
        login_result(az, ar, cr->user, is_ok);
    if (!is_ok) {
        if (ar != NULL) {
            ar->is_denied = true;
            snprintf(ar->name, sizeof(ar->name), "%s",
                     cr->scheme == AUTH_SCHEME_BASIC ? cr->user : "");
            snprintf(ar->action, sizeof(ar->action), "login.failed");
        }
        return -1;
    }
    snprintf(name, AUTH_NAME_MAX + 1, "%s", cr->user);
    if (ar != NULL) {
        ar->kind = *kind;
        snprintf(ar->name, sizeof(ar->name), "%s", name);
    }
    return 0;
}

int authz_issue(struct http_req *req, enum authz_kind kind, const char *name,
                const struct auth_access *want, size_t n_want, struct buf *out, int64_t *ttl_s,
                struct auth_access granted[AUTH_TOKEN_MAX_ACCESS], size_t *n_granted)
{
    struct authz *az = req->reg->authz;
    struct auth_request who = {.magic = AUTHZ_REQ_MAGIC, .kind = kind};
    snprintf(who.name, sizeof(who.name), "%s", name);
    struct auth_token t = {0};
    snprintf(t.sub, sizeof(t.sub), "%s", kind == AUTHZ_ANONYMOUS ? "" : name);
    int64_t now = util_now_s();
    *ttl_s = az->cfg->token_ttl_s;
    t.iat_s = now;
    t.exp_s = now + *ttl_s;
    secret_random_token(16, t.jti, sizeof(t.jti));
    if (t.sub[0] != '\0') {
        AZ(pthread_rwlock_rdlock(&az->lock));
        const struct meta_identity *id = policy_identity(az->policy, t.sub);
        if (id != NULL && id->secret_hash != NULL)
            auth_secret_mark(id->secret_hash, t.sh);
        AZ(pthread_rwlock_unlock(&az->lock));
    }
    /* distribution-spec auth/token.md: grant the intersection of what was asked and
     * what the identity may do; a smaller grant is not an error. */
    for (size_t i = 0; i < n_want && t.n_access < AUTH_TOKEN_MAX_ACCESS; i++) {
        struct auth_access a = want[i];
        if (a.type == AUTH_RES_CATALOG)
            a.perms = kind != AUTHZ_ANONYMOUS || az->is_enabled ? AUTH_PERM_PULL : 0;
        else
            a.perms &= role_perms(az, &who, a.name);
        if (a.perms != 0)
            t.access[t.n_access++] = a;
    }
    struct auth_token_key signing;
    AZ(pthread_rwlock_rdlock(&az->lock));
    signing = az->keys[0];
    AZ(pthread_rwlock_unlock(&az->lock));
    int rc = auth_token_sign(&t, az->cfg->registry_name, az->cfg->registry_name, &signing, out);
    secret_wipe(&signing, sizeof(signing));
    if (rc != 0)
        return -1;
    memcpy(granted, t.access, t.n_access * sizeof(t.access[0]));
    *n_granted = t.n_access;
    return 0;
}

/* Audit ---------------------------------------------------------------------- */

void authz_audit_as(struct http_req *req, const char *action, const char *fmt, ...)
{
    struct auth_request *ar = areq(req);
    if (ar == NULL)
        return;
    snprintf(ar->action, sizeof(ar->action), "%s", action);
    ar->detail[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ar->detail, sizeof(ar->detail), fmt, ap);
        va_end(ap);
    }
}

/* The action a /v2/ write is recorded as; NULL when the request is not recorded. */
static const char *route_action(struct http_req *req, int status)
{
    const char *m = req->method;
    switch ((enum route_id)req->route) {
    case ROUTE_MANIFEST:
        if (strcmp(m, "PUT") == 0)
            return "manifest.put";
        if (strcmp(m, "DELETE") == 0)
            return "manifest.delete";
        return NULL;
    case ROUTE_BLOB:
        return strcmp(m, "DELETE") == 0 ? "blob.delete" : NULL;
    case ROUTE_UPLOAD_START:
        /* Starting a session changes nothing visible; its finishing PUT is recorded. */
        return status == 201 ? "blob.push" : NULL;
    case ROUTE_UPLOAD:
        if (strcmp(m, "PUT") == 0)
            return "blob.push";
        if (strcmp(m, "DELETE") == 0)
            return "upload.cancel";
        return NULL; /* PATCH chunks and GET progress are part of the upload */
    case ROUTE_MGMT:
        if (is_read(m) || strncmp(req->path + strlen(MGMT_PREFIX), "token", 5) == 0 ||
            strncmp(req->path + strlen(MGMT_PREFIX), "replication/", 12) == 0)
            return NULL;
        return "mgmt.write";
    default:
        return NULL;
    }
}

static int append(struct authz *az, const struct meta_audit *a, int64_t *id)
{
    struct err e = {0};
    if (az->ms->ops->audit_append(az->ms, a, az->cfg->audit_max_rows, id, &e) == 0)
        return 0;
    log_error("authz", "failed to record audit entry %s: %s", a->action, err_message(&e));
    return -1;
}

/* Refusals are aggregated (audit_agg.h): anyone can send them by the thousand. */
static bool is_refusal(const char *action)
{
    return strcmp(action, "auth.failed") == 0 || strcmp(action, "login.failed") == 0 ||
           strcmp(action, "login.throttled") == 0 || strcmp(action, "access.denied") == 0;
}

static void record_refusal(struct authz *az, const struct auth_request *ar, struct meta_audit *a)
{
    struct audit_agg_note note;
    AZ(pthread_mutex_lock(&az->agg_mu));
    audit_agg_note(az->agg, ar->source, a->actor, a->action, a->time_ms, &note);
    AZ(pthread_mutex_unlock(&az->agg_mu));
    if (!note.is_new_row)
        return;
    a->actor = note.actor;
    if (note.is_any_source)
        a->remote = AUDIT_AGG_ANY;
    int64_t id = -1;
    if (append(az, a, &id) != 0)
        id = -1;
    AZ(pthread_mutex_lock(&az->agg_mu));
    audit_agg_inserted(az->agg, note.ticket, id);
    AZ(pthread_mutex_unlock(&az->agg_mu));
}

/* Writes the aggregated counts that are due (all of them with is_all). */
static void flush_due(struct authz *az, bool is_all)
{
    struct audit_agg_flush due[32];
    size_t n;
    do {
        AZ(pthread_mutex_lock(&az->agg_mu));
        n = audit_agg_due(az->agg, util_now_ms(), is_all, due, 32);
        AZ(pthread_mutex_unlock(&az->agg_mu));
        for (size_t i = 0; i < n; i++) {
            struct err e = {0};
            if (az->ms->ops->audit_set_count(az->ms, due[i].row_id, due[i].count, due[i].last_ms,
                                             &e) != 0)
                log_error("authz", "failed to update audit entry %" PRId64 ": %s", due[i].row_id,
                          err_message(&e));
        }
    } while (n == 32);
}

void authz_audit_flush(struct authz *az)
{
    if (az != NULL && az->agg != NULL)
        flush_due(az, true);
}

void authz_record(struct http_req *req, int status)
{
    struct auth_request *ar = areq(req);
    struct authz *az = req->reg->authz;
    if (ar == NULL || ar->is_recorded || status == 0)
        return;
    ar->is_recorded = true;
    const char *action = ar->action[0] != '\0' ? ar->action : NULL;
    if (action == NULL && ar->is_denied)
        action = status == 401 ? "auth.failed" : "access.denied";
    if (action == NULL)
        action = route_action(req, status);
    /* With access control off only permission changes are recorded: writes have no
     * author to record, and each entry costs an fsync. */
    bool is_recorded = az != NULL && (az->is_enabled || ar->action[0] != '\0');
    if (action != NULL && is_recorded && status != 0) {
        char target[600];
        if (req->route == ROUTE_MGMT)
            snprintf(target, sizeof(target), "%s", req->path + strlen(MGMT_PREFIX));
        else if (req->repo != NULL &&
                 (req->route == ROUTE_UPLOAD || req->route == ROUTE_UPLOAD_START))
            /* The blob, not the session id; a mount names the blob too. */
            snprintf(target, sizeof(target), "%s@%s", req->repo,
                     http_req_query(req, "digest")  ? http_req_query(req, "digest")
                     : http_req_query(req, "mount") ? http_req_query(req, "mount")
                                                    : "upload");
        else if (req->repo != NULL)
            snprintf(target, sizeof(target), "%s%s%s", req->repo, req->ref != NULL ? "@" : "",
                     req->ref != NULL ? req->ref : "");
        else
            snprintf(target, sizeof(target), "%s", req->path);
        char detail[300];
        snprintf(detail, sizeof(detail), "%s%s%s", req->method, ar->detail[0] ? " " : "",
                 ar->detail);
        const char *actor = ar->kind == AUTHZ_OFF && ar->name[0] == '\0' ? "-"
                            : ar->kind == AUTHZ_PEER                     ? AUTH_PEER_USER
                            : ar->name[0] != '\0'                        ? ar->name
                                                                         : AUTH_ANONYMOUS;
        struct meta_audit a = {.time_ms = util_now_ms(),
                               .actor = (char *)actor,
                               .action = (char *)action,
                               .target = target,
                               .status = status,
                               .remote = ar->remote,
                               .detail = detail};
        if (is_refusal(action))
            record_refusal(az, ar, &a);
        else
            append(az, &a, NULL);
        flush_due(az, false);
    }
}

void authz_finish(struct http_req *req, int status)
{
    struct auth_request *ar = areq(req);
    if (ar == NULL)
        return;
    authz_record(req, status);
    ar->magic = 0;
    free(ar->peer_cert);
    free(ar); /* it holds no secret: names, claims and the client's address */
    req->auth = NULL;
}
