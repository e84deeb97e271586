/* Configuration of `meridian serve`: defaults, then a config file, then environment
 * variables, then command-line flags, each overriding the one before. Pure apart
 * from reading the config file and the environment. */
#ifndef MERIDIAN_CONFIG_H
#define MERIDIAN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "log.h"

struct config {
    char *listen_host;             /* default 127.0.0.1 */
    uint16_t listen_port;          /* default 5000 */
    char *data_dir;                /* default ./data */
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
};

/* Fills cfg with defaults. */
void config_defaults(struct config *cfg);
/* Applies the config file named by --config / MERIDIAN_CONFIG (if any), the
 * environment and then argv (the arguments after "serve"). ERR_BAD_REQUEST with a
 * message naming the bad option or value. Sets *is_help when --help was given. */
int config_load(struct config *cfg, int argc, char **argv, bool *is_help, struct err *e);
/* Applies one option by its key (flag name without dashes, e.g. "listen"). */
int config_set(struct config *cfg, const char *key, const char *value, struct err *e);
/* Parses durations such as "90", "90s", "15m", "24h", "2d" into seconds. */
int config_parse_duration(const char *s, int64_t *out_s);
void config_usage(FILE *out);
void config_fini(struct config *cfg);

#endif
