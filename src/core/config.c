/* Option table shared by flags, environment variables and the config file, so the
 * three can never disagree on names. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum opt_kind { OPT_STRING, OPT_LISTEN, OPT_UINT, OPT_DURATION, OPT_BOOL_ON, OPT_BOOL_OFF,
                OPT_LEVEL, OPT_BYTES };

struct option_def {
    const char *key;  /* flag "--key", env "MERIDIAN_KEY" (dashes -> underscores), file "key" */
    enum opt_kind kind;
    const char *help;
    const char *default_text;
};

static const struct option_def options[] = {
    {"listen", OPT_LISTEN, "address and port to listen on (HOST:PORT, [V6]:PORT; port 0 picks one)",
     "127.0.0.1:5000"},
    {"data", OPT_STRING, "data directory: blobs/, uploads/, meta.db", "./data"},
    {"blobstore", OPT_STRING, "where blobs are kept: a directory, file://DIR or s3://BUCKET/PREFIX",
     "DATA"},
    {"metastore", OPT_STRING, "where metadata is kept: postgres://USER:PASS@HOST:PORT/DB",
     "SQLite in DATA/meta.db"},
    {"volume", OPT_STRING,
     "a volume blobs are kept on, NAME=PATH[,class=C][,zone=Z] (repeatable; replaces "
     "--blobstore)", "(DATA)"},
    {"s3-endpoint", OPT_STRING, "S3 endpoint of an s3:// blobstore (http(s)://host:port)",
     "env S3_ENDPOINT"},
    {"s3-region", OPT_STRING, "S3 region signed into requests", "env S3_REGION, us-east-1"},
    {"s3-access-key", OPT_STRING, "S3 access key", "env AWS_ACCESS_KEY_ID or S3_ACCESS_KEY"},
    {"s3-secret-key", OPT_STRING, "S3 secret key",
     "env AWS_SECRET_ACCESS_KEY or S3_SECRET_KEY"},
    {"blob-redirect", OPT_BOOL_ON,
     "answer blob GETs with 307 to a presigned S3 URL (valid 5 minutes) instead of streaming",
     "off"},
    {"region", OPT_STRING, "name of this region, stamped on log lines and events", "local"},
    {"threads", OPT_UINT, "HTTP worker threads", "16"},
    {"upload-ttl", OPT_DURATION, "upload sessions expire after this long (e.g. 90s, 15m, 24h)",
     "24h"},
    {"upload-sweep-interval", OPT_DURATION, "how often expired upload sessions are reclaimed",
     "5m"},
    {"log-level", OPT_LEVEL, "error, warn, info or debug", "info"},
    {"no-access-log", OPT_BOOL_OFF, "do not log one line per request", "(logged)"},
    {"access-log", OPT_BOOL_ON, "log one line per request", "on"},
    {"no-delete", OPT_BOOL_OFF, "refuse DELETE on /v2/ with 405 UNSUPPORTED", "(allowed)"},
    {"delete", OPT_BOOL_ON, "allow DELETE of manifests, tags and blobs", "on"},
    {"conn-timeout", OPT_DURATION, "close connections idle for this long", "120s"},
    {"conn-limit", OPT_UINT, "maximum concurrent connections", "4096"},
    {"shutdown-grace", OPT_DURATION, "on SIGTERM, wait this long for in-flight requests", "30s"},
    {"advertise", OPT_STRING, "URL other regions use to reach this node", "http://<listen>"},
    {"registry-name", OPT_STRING, "name of the registry this region belongs to", "meridian"},
    {"peer-secret", OPT_STRING, "shared secret authenticating replication traffic", "(none)"},
    {"peer-ca", OPT_STRING,
     "PEM CA(s) signing region certificates: peer calls need a client certificate from it "
     "naming a region (reloaded on SIGHUP)", "(none)"},
    {"peer-tls-cert", OPT_STRING,
     "PEM certificate this region presents on its calls to peers (reloaded on SIGHUP)", "(none)"},
    {"peer-tls-key", OPT_STRING, "PEM private key of peer-tls-cert", "(none)"},
    {"peer-auth", OPT_STRING,
     "what peers prove: secret, cert (a region certificate) or both",
     "both with peer-ca and peer-secret, cert with peer-ca, else secret"},
    {"sync-interval", OPT_DURATION, "how often regions compare what they hold", "60s"},
    {"fetch-backoff-max", OPT_DURATION, "longest wait between retries of a blob fetch", "60s"},
    {"scrub-interval", OPT_DURATION,
     "time between scrubs (every stored blob's size and digest checked), 0: none", "7d"},
    {"scrub-rate", OPT_BYTES, "bytes per second a scrub reads at most (K, M, G suffixes), 0: no limit",
     "32M"},
    {"gc-grace", OPT_DURATION,
     "age of an unreferenced blob before the garbage collector deletes it, 0: keep everything",
     "24h"},
    {"gc-interval", OPT_DURATION, "time between two garbage collector ticks", "10s"},
    {"compact-interval", OPT_DURATION,
     "time between two event-log compaction passes, 0: never compact", "10m"},
    {"compact-horizon", OPT_DURATION,
     "a peer region silent this long no longer holds compaction back (it rejoins from a "
     "snapshot)", "7d"},
    {"tombstone-retention", OPT_DURATION,
     "age of a tombstone every live region has applied before it is removed, 0: keep", "7d"},
    {"gc-untagged-after", OPT_DURATION,
     "age of an untagged manifest that nothing keeps before it is deleted (replicated), 0: keep",
     "0"},
    {"retention-interval", OPT_DURATION, "time between two passes applying retention rules",
     "1h"},
    {"pull-record-interval", OPT_DURATION,
     "time between two writes of the manifests' last-pull times (retention's pulledWithinS)",
     "1m"},
    {"webhook-backoff-max", OPT_DURATION, "longest wait between retries of a webhook delivery",
     "5m"},
    {"webhook-max-attempts", OPT_UINT, "attempts before a webhook delivery is given up", "10"},
    {"list-page-max", OPT_UINT,
     "most tags or repositories in one page of a listing (with or without n), 1 to 100000",
     "100000"},
    {"region-location", OPT_STRING,
     "where this region is, LAT,LON in degrees: places it on the console's map", "(none)"},
    {"console-dir", OPT_STRING, "directory of the web console's files, served at /console/",
     "console/ beside the binary"},
    /* access control and hardening (authz.c, tls.c) */
    {"auth", OPT_BOOL_ON, "require credentials: users, robots, tokens (README: access control)",
     "on unless listening on loopback"},
    {"no-auth", OPT_BOOL_OFF, "serve every client without credentials", "(see auth)"},
    {"admin-password", OPT_STRING, "password of user admin, created on first start with auth on",
     "(random, in DATA/admin-password)"},
    {"token-ttl", OPT_DURATION, "lifetime of the tokens the token endpoint issues", "5m"},
    {"token-key-file", OPT_STRING, "secret signing tokens; the same file on nodes that share them",
     "DATA/token.key"},
    {"token-realm", OPT_STRING, "token endpoint URL announced in 401 challenges",
     "(from the Host header)"},
    {"tls-cert", OPT_STRING, "PEM certificate chain: serve HTTPS (reloaded on SIGHUP)",
     "(plain HTTP)"},
    {"tls-key", OPT_STRING, "PEM private key of tls-cert", "(none)"},
    {"tls-priorities", OPT_STRING, "GnuTLS priority string: TLS versions and cipher suites",
     "TLS 1.2+, forward secrecy and AEAD only (README)"},
    {"tls-min-version", OPT_STRING, "oldest TLS version accepted: 1.2 or 1.3", "1.2"},
    {"tls-ticket-key-file", OPT_STRING,
     "secret sealing TLS session tickets; the same file on nodes that share clients",
     "(random per process)"},
    {"header-timeout", OPT_DURATION, "close connections that take longer to send request headers",
     "30s"},
    {"body-timeout", OPT_DURATION,
     "a request body must arrive within this, plus a second per body-min-rate bytes; 0: off",
     "30s"},
    {"body-min-rate", OPT_UINT, "bytes of request body that earn it another second", "1024"},
    {"conn-limit-per-ip", OPT_UINT, "maximum concurrent connections from one address, 0: none",
     "128"},
    {"upload-limit-per-identity", OPT_UINT, "concurrent upload sessions one user or robot may hold",
     "64"},
    {"failed-login-burst", OPT_UINT,
     "wrong passwords one address may send for one identity before 429, 0: no limit", "5"},
    {"failed-login-interval", OPT_DURATION, "then one more attempt per this long", "30s"},
    {"audit-max-rows", OPT_UINT, "audit log entries kept (the oldest are deleted), 0: all",
     "1000000"},
    {"upload-limit-per-ip", OPT_UINT,
     "concurrent upload sessions started from one client address, 0: none", "256"},
    /* data endpoint (docs/front.md, "Data endpoints") */
    {"data-listen", OPT_LISTEN,
     "also listen here for blob downloads by signed URL (HOST:PORT; port 0 picks one)",
     "(none)"},
    {"data-endpoint", OPT_STRING,
     "answer blob GETs with 307 to this base URL (the data listener as clients reach it)",
     "http://<data-listen> when data-listen is set"},
    {"data-url-ttl", OPT_DURATION, "lifetime of the signed URLs of data-endpoint redirects",
     "60s"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_host = xstrdup("127.0.0.1");
    cfg->listen_port = 5000;
    cfg->data_dir = xstrdup("./data");
    cfg->region = xstrdup("local");
    cfg->threads = 16;
    cfg->upload_ttl_s = 86400;
    cfg->upload_sweep_interval_s = 300;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->is_access_log = true;
    cfg->is_delete_enabled = true;
    cfg->conn_timeout_s = 120;
    cfg->conn_limit = 4096;
    cfg->shutdown_grace_ms = 30000;
    cfg->auth_mode = -1;
    cfg->token_ttl_s = 300;
    cfg->header_timeout_s = 30;
    cfg->body_timeout_s = 30;
    cfg->body_min_rate = 1024;
    cfg->conn_limit_per_ip = 128;
    cfg->tls_priorities = xstrdup(CONFIG_TLS_PRIORITIES_DEFAULT);
    cfg->upload_sessions_per_identity = 64;
    cfg->failed_login_burst = 5;
    cfg->failed_login_interval_ms = 30000;
    cfg->audit_max_rows = 1000000;
    cfg->upload_sessions_per_ip = 256;
    cfg->registry_name = xstrdup("meridian");
    cfg->sync_interval_s = 60;
    cfg->fetch_backoff_max_s = 60;
    cfg->scrub_interval_s = 7 * 86400;
    cfg->scrub_rate_bytes = 32u << 20;
    cfg->gc_grace_s = 86400;
    cfg->gc_interval_s = 10;
    cfg->compact_interval_s = 600;
    cfg->compact_horizon_s = 7 * 86400;
    cfg->tombstone_retention_s = 7 * 86400;
    cfg->retention_interval_s = 3600;
    cfg->pull_record_interval_s = 60;
    cfg->webhook_backoff_max_ms = 300000;
    cfg->webhook_max_attempts = 10;
    cfg->list_page_max = LIST_PAGE_MAX;
    cfg->data_url_ttl_s = 60;
}

void config_fini(struct config *cfg)
{
    FREE_AND_NULL(cfg->listen_host);
    FREE_AND_NULL(cfg->data_dir);
    FREE_AND_NULL(cfg->blobstore);
    FREE_AND_NULL(cfg->metastore);
    for (size_t i = 0; i < cfg->n_volumes; i++)
        free(cfg->volumes[i]);
    FREE_AND_NULL(cfg->volumes);
    cfg->n_volumes = 0;
    FREE_AND_NULL(cfg->s3_endpoint);
    FREE_AND_NULL(cfg->s3_region);
    FREE_AND_NULL(cfg->s3_access_key);
    FREE_AND_NULL(cfg->s3_secret_key);
    FREE_AND_NULL(cfg->region);
    FREE_AND_NULL(cfg->advertise);
    FREE_AND_NULL(cfg->registry_name);
    FREE_AND_NULL(cfg->peer_secret);
    FREE_AND_NULL(cfg->peer_ca_file);
    FREE_AND_NULL(cfg->peer_tls_cert_file);
    FREE_AND_NULL(cfg->peer_tls_key_file);
    FREE_AND_NULL(cfg->peer_auth);
    FREE_AND_NULL(cfg->admin_password);
    FREE_AND_NULL(cfg->token_key_file);
    FREE_AND_NULL(cfg->token_realm);
    FREE_AND_NULL(cfg->tls_cert_file);
    FREE_AND_NULL(cfg->tls_key_file);
    FREE_AND_NULL(cfg->tls_priorities);
    FREE_AND_NULL(cfg->data_listen_host);
    FREE_AND_NULL(cfg->data_endpoint);
    FREE_AND_NULL(cfg->tls_min_version);
    FREE_AND_NULL(cfg->tls_ticket_key_file);
    FREE_AND_NULL(cfg->console_dir);
}

int config_parse_duration(const char *s, int64_t *out_s)
{
    size_t len = strlen(s);
    uint64_t mult = 1;
    if (len == 0)
        return -1;
    switch (s[len - 1]) {
    case 's': mult = 1; len--; break;
    case 'm': mult = 60; len--; break;
    case 'h': mult = 3600; len--; break;
    case 'd': mult = 86400; len--; break;
    default: break;
    }
    uint64_t v;
    if (util_parse_u64(s, len, &v) != 0 || v > (uint64_t)INT64_MAX / mult / 1000)
        return -1;
    *out_s = (int64_t)(v * mult);
    return 0;
}

int config_parse_bytes(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    unsigned shift = 0;
    if (len == 0)
        return -1;
    switch (s[len - 1]) {
    case 'K': case 'k': shift = 10; len--; break;
    case 'M': case 'm': shift = 20; len--; break;
    case 'G': case 'g': shift = 30; len--; break;
    default: break;
    }
    uint64_t v;
    if (util_parse_u64(s, len, &v) != 0 || v > (UINT64_MAX >> 31))
        return -1;
    *out = v << shift;
    return 0;
}

static int parse_listen(struct config *cfg, const char *key, const char *v, struct err *e)
{
    bool is_data = strcmp(key, "data-listen") == 0;
    const char *colon = strrchr(v, ':');
    if (colon == NULL)
        return err_set(e, ERR_BAD_REQUEST, "listen: expected HOST:PORT, got \"%s\"", v);
    const char *host = v;
    size_t host_len = (size_t)(colon - v);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    uint64_t port;
    if (host_len == 0 || util_parse_u64(colon + 1, strlen(colon + 1), &port) != 0 ||
        port > 65535)
        return err_set(e, ERR_BAD_REQUEST, "listen: bad address or port in \"%s\"", v);
    char **slot = is_data ? &cfg->data_listen_host : &cfg->listen_host;
    free(*slot);
    *slot = xstrndup(host, host_len);
    *(is_data ? &cfg->data_listen_port : &cfg->listen_port) = (uint16_t)port;
    return 0;
}

/* "LAT,LON" in decimal degrees, latitude -90..90 and longitude -180..180. */
static int parse_location(struct config *cfg, const char *v, struct err *e)
{
    char *end = NULL;
    double lat = strtod(v, &end);
    bool is_ok = end != v && *end == ',';
    double lon = 0;
    if (is_ok) {
        const char *p = end + 1;
        lon = strtod(p, &end);
        is_ok = end != p && *end == '\0';
    }
    if (!is_ok || !(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180))
        return err_set(e, ERR_BAD_REQUEST,
                       "region-location: expected LAT,LON in degrees (-90..90,-180..180), got "
                       "\"%s\"", v);
    cfg->has_location = true;
    cfg->latitude = lat;
    cfg->longitude = lon;
    return 0;
}

/* Numeric options for which 0 means "no limit" or "off"; for the others 0 is a mistake. */
static bool uint_may_be_zero(const char *key)
{
    static const char *const keys[] = {"conn-limit-per-ip", "body-min-rate",
                                       "failed-login-burst", "audit-max-rows",
                                       "upload-limit-per-ip"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

int config_set(struct config *cfg, const char *key, const char *value, struct err *e)
{
    const struct option_def *o = NULL;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strcmp(options[i].key, key) == 0)
            o = &options[i];
    }
    if (o == NULL)
        return err_set(e, ERR_BAD_REQUEST, "unknown option \"%s\"", key);
    bool needs_value = o->kind != OPT_BOOL_ON && o->kind != OPT_BOOL_OFF;
    if (needs_value && (value == NULL || value[0] == '\0'))
        return err_set(e, ERR_BAD_REQUEST, "option \"%s\" needs a value", key);
    uint64_t u;
    int64_t d;
    switch (o->kind) {
    case OPT_LISTEN:
        return parse_listen(cfg, key, value, e);
    case OPT_STRING: {
        if (strcmp(key, "region-location") == 0)
            return parse_location(cfg, value, e);
        if (strcmp(key, "volume") == 0) { /* repeatable: each one adds a volume */
            if (strchr(value, '=') == NULL)
                return err_set(e, ERR_BAD_REQUEST,
                               "volume: expected NAME=PATH[,class=C][,zone=Z], got \"%s\"", value);
            cfg->volumes = xrealloc(cfg->volumes, (cfg->n_volumes + 1) * sizeof(char *));
            cfg->volumes[cfg->n_volumes++] = xstrdup(value);
            return 0;
        }
        char **slot = strcmp(key, "data") == 0            ? &cfg->data_dir
                      : strcmp(key, "blobstore") == 0     ? &cfg->blobstore
                      : strcmp(key, "metastore") == 0     ? &cfg->metastore
                      : strcmp(key, "region") == 0        ? &cfg->region
                      : strcmp(key, "advertise") == 0     ? &cfg->advertise
                      : strcmp(key, "registry-name") == 0 ? &cfg->registry_name
                      : strcmp(key, "admin-password") == 0 ? &cfg->admin_password
                      : strcmp(key, "token-key-file") == 0 ? &cfg->token_key_file
                      : strcmp(key, "token-realm") == 0 ? &cfg->token_realm
                      : strcmp(key, "tls-cert") == 0 ? &cfg->tls_cert_file
                      : strcmp(key, "tls-key") == 0 ? &cfg->tls_key_file
                      : strcmp(key, "tls-priorities") == 0 ? &cfg->tls_priorities
                      : strcmp(key, "tls-min-version") == 0 ? &cfg->tls_min_version
                      : strcmp(key, "tls-ticket-key-file") == 0 ? &cfg->tls_ticket_key_file
                      : strcmp(key, "peer-ca") == 0 ? &cfg->peer_ca_file
                      : strcmp(key, "peer-tls-cert") == 0 ? &cfg->peer_tls_cert_file
                      : strcmp(key, "peer-tls-key") == 0 ? &cfg->peer_tls_key_file
                      : strcmp(key, "peer-auth") == 0 ? &cfg->peer_auth
                      : strcmp(key, "console-dir") == 0 ? &cfg->console_dir
                      : strcmp(key, "data-endpoint") == 0 ? &cfg->data_endpoint
                      : strcmp(key, "s3-endpoint") == 0 ? &cfg->s3_endpoint
                      : strcmp(key, "s3-region") == 0 ? &cfg->s3_region
                      : strcmp(key, "s3-access-key") == 0 ? &cfg->s3_access_key
                      : strcmp(key, "s3-secret-key") == 0 ? &cfg->s3_secret_key
                                                          : &cfg->peer_secret;
        if (strcmp(key, "region") == 0 && !config_is_valid_region(value))
            return err_set(e, ERR_BAD_REQUEST,
                           "region: 1-63 characters of a-z, 0-9 and '-', got \"%s\"", value);
        if ((strcmp(key, "advertise") == 0 || strcmp(key, "data-endpoint") == 0) &&
            strncmp(value, "http://", 7) != 0 &&
            strncmp(value, "https://", 8) != 0)
            return err_set(e, ERR_BAD_REQUEST, "%s: expected an http(s):// URL", key);
        if (strcmp(key, "peer-auth") == 0 && strcmp(value, "secret") != 0 &&
            strcmp(value, "cert") != 0 && strcmp(value, "both") != 0)
            return err_set(e, ERR_BAD_REQUEST,
                           "peer-auth: expected secret, cert or both, got \"%s\"", value);
        if (strcmp(key, "tls-min-version") == 0 && strcmp(value, "1.2") != 0 &&
            strcmp(value, "1.3") != 0)
            return err_set(e, ERR_BAD_REQUEST, "tls-min-version: expected 1.2 or 1.3, got \"%s\"",
                           value);
        free(*slot);
        *slot = xstrdup(value);
        return 0;
    }
    case OPT_UINT:
        if (util_parse_u64(value, strlen(value), &u) != 0 ||
            u > (strcmp(key, "audit-max-rows") == 0   ? 1000000000u
                 : strcmp(key, "list-page-max") == 0 ? (uint64_t)LIST_PAGE_MAX
                                                     : 1000000u) ||
            (u == 0 && !uint_may_be_zero(key)))
            return err_set(e, ERR_BAD_REQUEST, "option \"%s\": bad number \"%s\"", key, value);
        if (strcmp(key, "threads") == 0)
            cfg->threads = (unsigned)u;
        else if (strcmp(key, "conn-limit-per-ip") == 0)
            cfg->conn_limit_per_ip = (unsigned)u;
        else if (strcmp(key, "body-min-rate") == 0)
            cfg->body_min_rate = (unsigned)u;
        else if (strcmp(key, "upload-limit-per-identity") == 0)
            cfg->upload_sessions_per_identity = (unsigned)u;
        else if (strcmp(key, "upload-limit-per-ip") == 0)
            cfg->upload_sessions_per_ip = (unsigned)u;
        else if (strcmp(key, "webhook-max-attempts") == 0)
            cfg->webhook_max_attempts = (unsigned)u;
        else if (strcmp(key, "list-page-max") == 0)
            cfg->list_page_max = (unsigned)u;
        else if (strcmp(key, "failed-login-burst") == 0)
            cfg->failed_login_burst = (unsigned)u;
        else if (strcmp(key, "audit-max-rows") == 0)
            cfg->audit_max_rows = u;
        else
            cfg->conn_limit = (unsigned)u;
        return 0;
    case OPT_DURATION:
        if (config_parse_duration(value, &d) != 0)
            return err_set(e, ERR_BAD_REQUEST, "option \"%s\": bad duration \"%s\"", key, value);
        if (strcmp(key, "upload-ttl") == 0)
            cfg->upload_ttl_s = d;
        else if (strcmp(key, "upload-sweep-interval") == 0)
            cfg->upload_sweep_interval_s = d > 0 ? d : 1;
        else if (strcmp(key, "conn-timeout") == 0)
            cfg->conn_timeout_s = (unsigned)(d > 0 ? d : 1);
        else if (strcmp(key, "token-ttl") == 0)
            cfg->token_ttl_s = d > 0 ? d : 1;
        else if (strcmp(key, "header-timeout") == 0)
            cfg->header_timeout_s = d; /* 0: no deadline */
        else if (strcmp(key, "body-timeout") == 0)
            cfg->body_timeout_s = d; /* 0: no deadline */
        else if (strcmp(key, "sync-interval") == 0)
            cfg->sync_interval_s = d > 0 ? d : 1;
        else if (strcmp(key, "fetch-backoff-max") == 0)
            cfg->fetch_backoff_max_s = d > 0 ? d : 1;
        else if (strcmp(key, "scrub-interval") == 0)
            cfg->scrub_interval_s = d; /* 0: no scheduled scrub */
        else if (strcmp(key, "gc-grace") == 0)
            cfg->gc_grace_s = d; /* 0: nothing is collected */
        else if (strcmp(key, "gc-untagged-after") == 0)
            cfg->gc_untagged_after_s = d; /* 0: untagged manifests are kept */
        else if (strcmp(key, "retention-interval") == 0)
            cfg->retention_interval_s = d > 0 ? d : 1;
        else if (strcmp(key, "pull-record-interval") == 0)
            cfg->pull_record_interval_s = d > 0 ? d : 1;
        else if (strcmp(key, "gc-interval") == 0)
            cfg->gc_interval_s = d > 0 ? d : 1;
        else if (strcmp(key, "compact-interval") == 0)
            cfg->compact_interval_s = d; /* 0: no scheduled compaction */
        else if (strcmp(key, "compact-horizon") == 0)
            cfg->compact_horizon_s = d > 0 ? d : 1;
        else if (strcmp(key, "tombstone-retention") == 0)
            cfg->tombstone_retention_s = d; /* 0: tombstones are kept */
        else if (strcmp(key, "webhook-backoff-max") == 0)
            cfg->webhook_backoff_max_ms = (d > 0 ? d : 1) * 1000;
        else if (strcmp(key, "failed-login-interval") == 0)
            cfg->failed_login_interval_ms = (d > 0 ? d : 1) * 1000;
        else if (strcmp(key, "data-url-ttl") == 0)
            cfg->data_url_ttl_s = d > 0 ? d : 1;
        else
            cfg->shutdown_grace_ms = (int)(d * 1000);
        return 0;
    case OPT_BYTES:
        if (config_parse_bytes(value, &u) != 0)
            return err_set(e, ERR_BAD_REQUEST, "option \"%s\": bad size \"%s\"", key, value);
        cfg->scrub_rate_bytes = u; /* the only size option */
        return 0;
    case OPT_LEVEL:
        if (log_parse_level(value, &cfg->log_level) != 0)
            return err_set(e, ERR_BAD_REQUEST, "log-level: expected error|warn|info|debug");
        return 0;
    case OPT_BOOL_ON:
    case OPT_BOOL_OFF: {
        bool on = o->kind == OPT_BOOL_ON;
        if (value != NULL && value[0] != '\0') {
            if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
                strcmp(value, "no") == 0)
                on = !on;
            else if (strcmp(value, "true") != 0 && strcmp(value, "1") != 0 &&
                     strcmp(value, "yes") != 0)
                return err_set(e, ERR_BAD_REQUEST, "option \"%s\": expected true or false",
                               key);
        }
        if (strstr(key, "access-log"))
            cfg->is_access_log = on;
        else if (strcmp(key, "auth") == 0 || strcmp(key, "no-auth") == 0)
            cfg->auth_mode = on ? 1 : 0;
        else if (strcmp(key, "blob-redirect") == 0)
            cfg->is_blob_redirect = on;
        else
            cfg->is_delete_enabled = on;
        return 0;
    }
    }
    return err_set(e, ERR_INTERNAL, "unhandled option kind");
}

bool config_is_valid_region(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

enum config_peer_auth config_peer_auth(const struct config *cfg)
{
    const char *m = cfg->peer_auth;
    if (m == NULL)
        return cfg->peer_ca_file == NULL ? CONFIG_PEER_AUTH_SECRET
               : cfg->peer_secret != NULL ? CONFIG_PEER_AUTH_BOTH
                                          : CONFIG_PEER_AUTH_CERT;
    return strcmp(m, "cert") == 0   ? CONFIG_PEER_AUTH_CERT
           : strcmp(m, "both") == 0 ? CONFIG_PEER_AUTH_BOTH
                                    : CONFIG_PEER_AUTH_SECRET;
}

bool config_is_auth_on(const struct config *cfg)
{
    if (cfg->auth_mode >= 0)
        return cfg->auth_mode == 1;
    /* A node only this machine can reach may stay open (the quick start, tests); one
     * that others can reach requires credentials unless told otherwise. */
    const char *h = cfg->listen_host;
    bool is_loopback = strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 ||
                       strcmp(h, "localhost") == 0;
    return !is_loopback;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(struct config *cfg, const char *path, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return err_set(e, ERR_BAD_REQUEST, "cannot open config file %s", path);
    char line[1024];
    int lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = err_set(e, ERR_BAD_REQUEST, "%s:%d: expected key = value", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        struct err sub = {0};
        if (config_set(cfg, key, value, &sub) != 0)
            rc = err_set(e, ERR_BAD_REQUEST, "%s:%d: %s", path, lineno, err_message(&sub));
    }
    fclose(f);
    return rc;
}

static void env_name(const char *key, char *out, size_t out_len)
{
    size_t n = (size_t)snprintf(out, out_len, "MERIDIAN_");
    for (const char *p = key; *p && n + 1 < out_len; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

int config_load(struct config *cfg, int argc, char **argv, bool *is_help, struct err *e)
{
    *is_help = false;
    /* The config file comes first, wherever --config stands on the command line. */
    const char *file = getenv("MERIDIAN_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file != NULL && load_file(cfg, file, e) != 0)
        return -1;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char name[64];
        env_name(options[i].key, name, sizeof(name));
        const char *v = getenv(name);
        if (v != NULL && config_set(cfg, options[i].key, v, e) != 0)
            return -1;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *is_help = true;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0)
            return err_set(e, ERR_BAD_REQUEST, "unexpected argument \"%s\"", a);
        char key[64];
        const char *value = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (klen >= sizeof(key))
            return err_set(e, ERR_BAD_REQUEST, "unknown option \"%s\"", a);
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        if (strcmp(key, "config") == 0) {
            i += eq ? 0 : 1;
            continue;
        }
        bool is_bool = false;
        for (size_t j = 0; j < N_OPTIONS; j++) {
            if (strcmp(options[j].key, key) == 0)
                is_bool = options[j].kind == OPT_BOOL_ON || options[j].kind == OPT_BOOL_OFF;
        }
        if (eq)
            value = eq + 1;
        else if (!is_bool && i + 1 < argc)
            value = argv[++i];
        if (config_set(cfg, key, value, e) != 0)
            return -1;
    }
    return 0;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: meridian serve [options]\n\n"
                 "Runs one node of a Meridian registry on the embedded default: blobs on the\n"
                 "local filesystem, metadata in SQLite, serving the OCI Distribution API on /v2/,\n"
                 "/healthz, /readyz and /metrics.\n\n"
                 "Each option can also be given as an environment variable MERIDIAN_<NAME>\n"
                 "(upper case, dashes as underscores) or as `name = value` in the file named by\n"
                 "--config FILE (or MERIDIAN_CONFIG). Flags override the environment, which\n"
                 "overrides the file.\n\noptions:\n");
    fprintf(out, "  %-28s %s\n", "--config FILE", "read options from FILE first");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char flag[64];
        bool is_bool = options[i].kind == OPT_BOOL_ON || options[i].kind == OPT_BOOL_OFF;
        snprintf(flag, sizeof(flag), "--%s%s", options[i].key, is_bool ? "" : " VALUE");
        fprintf(out, "  %-28s %s (default: %s)\n", flag, options[i].help,
                options[i].default_text);
    }
}
