/* Configuration of `meridian serve`: defaults, then a config file, then environment
 * variables, then command-line flags, each overriding the one before. Pure apart
 * from reading the config file and the environment. */
#ifndef MERIDIAN_CONFIG_H
#define MERIDIAN_CONFIG_H

/* The most tags or repositories one listing page holds: 100 000 names of at most 255 bytes
 * stay well inside the 64 MiB a reply body is built in. */
#define LIST_PAGE_MAX 100000u

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "log.h"

/* TLS 1.2 and 1.3 only, and only suites with forward secrecy (ECDHE key exchange in
 * 1.2; 1.3 has no other) and AEAD ciphers: no static RSA, no CBC. GnuTLS syntax.
 * X25519 comes first among the groups because it is the key share clients send
 * (OpenSSL, Go, curl): with NORMAL's order and server precedence GnuTLS asked for a
 * P-256 share instead (HelloRetryRequest), a whole extra round trip per handshake. */
#define CONFIG_TLS_PRIORITIES_DEFAULT                                                      \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"        \
    "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:"           \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"       \
    "%SERVER_PRECEDENCE"

struct config {
    char *listen_host;             /* default 127.0.0.1 */
    uint16_t listen_port;          /* default 5000 */
    char *data_dir;                /* default ./data */
    char *blobstore;               /* blobstore_open's spec; NULL: the store under data_dir */
    char *metastore;               /* metastore_open's spec; NULL: SQLite in data_dir/meta.db */
    char **volumes;                /* --volume specs NAME=PATH[,class=C][,zone=Z], in order */
    size_t n_volumes;              /* 0: one volume, the blobstore above */
    char *s3_endpoint, *s3_region; /* an s3:// blobstore's server; NULL: from the env */
    char *s3_access_key, *s3_secret_key; /* its credentials; NULL: from the env */
    bool is_blob_redirect;         /* blob GETs answered 307 to a presigned URL (s3) */
    char *region;                  /* default "local" */
    unsigned threads;              /* HTTP worker threads, default 16 */
    int64_t upload_ttl_s;          /* upload sessions expire after this, default 86400 */
    int64_t upload_sweep_interval_s; /* how often expired sessions are reclaimed, default 300 */
    enum log_level log_level;      /* default info */
    bool is_access_log;            /* one line per request, default on */
    bool is_delete_enabled;        /* DELETE on /v2/, default on */
    unsigned conn_timeout_s;       /* idle connection timeout, default 120 */
    unsigned conn_limit;           /* max concurrent connections, default 4096 */
    int shutdown_grace_ms;         /* how long SIGTERM waits for in-flight requests, default 30000 */
    /* geo-replication (docs/replication.md) */
    char *advertise;               /* URL peers use to reach this node; NULL = http://listen */
    char *registry_name;           /* the registry this region belongs to, default "meridian" */
    char *peer_secret;             /* shared secret of replication traffic; NULL = none */
    char *peer_ca_file;            /* CA of region certificates: peers need one; NULL = none */
    char *peer_tls_cert_file;      /* this region's client certificate for peer calls */
    char *peer_tls_key_file;
    char *peer_auth;               /* "secret", "cert", "both"; NULL: config_peer_auth */
    int64_t sync_interval_s;       /* anti-entropy comparison period, default 60 */
    int64_t fetch_backoff_max_s;   /* longest wait between blob fetch retries, default 60 */
    /* blob integrity (scrub.c) */
    int64_t scrub_interval_s;      /* time between scrub passes, 0 = none; default 7 days */
    uint64_t scrub_rate_bytes;     /* bytes per second a scrub reads at most, 0 = no limit */
    /* garbage collection (gc.c) */
    int64_t gc_grace_s;            /* age of an unreferenced blob before it goes, 0 = keep */
    int64_t gc_interval_s;         /* time between collector ticks */
    /* event-log compaction (compact.c) */
    int64_t compact_interval_s;    /* time between compaction passes, 0 = none */
    int64_t compact_horizon_s;     /* a peer silent this long no longer holds it back */
    int64_t tombstone_retention_s; /* age of an applied tombstone before it goes, 0 = keep */
    int64_t gc_untagged_after_s;   /* age of an untagged manifest before it goes, 0 = keep */
    int64_t retention_interval_s;  /* time between retention passes (retention_run.c) */
    int64_t pull_record_interval_s; /* time between flushes of last-pull times (pull_record.c) */
    /* webhooks (docs/webhooks.md) */
    int64_t webhook_backoff_max_ms; /* longest wait between delivery retries, default 5 min */
    unsigned webhook_max_attempts;  /* attempts before a delivery is given up, default 10 */
    unsigned list_page_max;         /* most names in one listing page, LIST_PAGE_MAX */
    /* the web console (src/console) */
    bool has_location;             /* --region-location given */
    double latitude, longitude;    /* where this region is, degrees */
    char *console_dir;             /* the console's files; NULL = console/ beside the binary */
    /* access control and hardening (authz.c, README "Access control") */
    int auth_mode;                 /* 1 on, 0 off, -1 (default) on unless listening on loopback */
    char *admin_password;          /* bootstrap admin's password; NULL = generate */
    int64_t token_ttl_s;           /* lifetime of issued tokens, default 300 */
    char *token_key_file;          /* token signing secret; NULL = DATA/token.key */
    char *token_realm;             /* token endpoint URL in challenges; NULL = from Host */
    char *tls_cert_file;           /* PEM chain: serve HTTPS when set (with tls_key_file) */
    char *tls_key_file;
    char *tls_priorities;          /* GnuTLS priority string, CONFIG_TLS_PRIORITIES_DEFAULT */
    char *tls_min_version;         /* "1.2" (default) or "1.3": older versions taken out */
    char *tls_ticket_key_file;     /* session ticket secret shared by nodes; NULL = random */
    int64_t header_timeout_s;      /* request headers must arrive within this, default 30 */
    int64_t body_timeout_s;        /* a request body's initial allowance, default 30; 0 off */
    unsigned body_min_rate;        /* bytes/s that extend it by a second, default 1024 */
    unsigned conn_limit_per_ip;    /* 0 = no limit; default 128 */
    unsigned upload_sessions_per_identity; /* concurrent upload sessions per identity, 64 */
    unsigned failed_login_burst;   /* wrong secrets per (address, identity) before 429, 5; 0 off */
    int64_t failed_login_interval_ms; /* then one more per interval, default 30 s */
    uint64_t audit_max_rows;       /* audit log entries kept, default 1 000 000; 0 = all */
    unsigned upload_sessions_per_ip; /* concurrent upload sessions per client address, 0: none */
    /* data endpoint (docs/front.md): blob GETs answered with 307 to a signed URL */
    char *data_listen_host;        /* second listener for signed blob downloads; NULL = none */
    uint16_t data_listen_port;
    char *data_endpoint;           /* base URL of the redirects; NULL = none (or the listener's) */
    int64_t data_url_ttl_s;        /* lifetime of a signed URL, default 60 */
};

/* Fills cfg with defaults. */
void config_defaults(struct config *cfg);
/* Applies the config file named by --config / MERIDIAN_CONFIG (if any), the
 * environment and then argv (the arguments after "serve"). ERR_BAD_REQUEST with a
 * message naming the bad option or value. Sets *is_help when --help was given. */
int config_load(struct config *cfg, int argc, char **argv, bool *is_help, struct err *e);
/* Applies one option by its key (flag name without dashes, e.g. "listen"). */
int config_set(struct config *cfg, const char *key, const char *value, struct err *e);
/* Parses sizes such as "1048576", "512K", "64M", "2G" (powers of 1024) into bytes. */
int config_parse_bytes(const char *s, uint64_t *out);
/* Parses durations such as "90", "90s", "15m", "24h", "2d" into seconds. */
int config_parse_duration(const char *s, int64_t *out_s);
void config_usage(FILE *out);
/* Region names: 1-63 of [a-z0-9-], not starting with '-'. */
bool config_is_valid_region(const char *s);
/* What a peer proves on the replication API (docs/governance.md): the peer secret, a
 * region certificate (mutual TLS), or both. --peer-auth, or when not set: both with a
 * peer CA and a peer secret, cert with a peer CA alone, else secret. */
enum config_peer_auth {
    CONFIG_PEER_AUTH_SECRET,
    CONFIG_PEER_AUTH_CERT,
    CONFIG_PEER_AUTH_BOTH,
};
enum config_peer_auth config_peer_auth(const struct config *cfg);
/* Is access control on: auth_mode, or when not set, unless listening on loopback? */
bool config_is_auth_on(const struct config *cfg);
void config_fini(struct config *cfg);

#endif
