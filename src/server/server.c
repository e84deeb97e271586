/* `meridian serve`: load config, open storage, listen, then wait for SIGTERM/SIGINT
 * while a background thread reclaims expired upload sessions. On a signal the
 * listener stops accepting, in-flight requests finish (bounded by shutdown-grace),
 * and storage is closed. Signals are taken synchronously with sigwait, so no code
 * runs in a signal handler. */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "registry.h"
#include "tls.h"
#include "repl.h"
#include "copies.h"
#include "oci.h"
#include "scrub.h"
#include "compact.h"
#include "pull_record.h"
#include "gc.h"
#include "lease.h"
#include "secret.h"
#include "util.h"

struct sweeper {
    struct registry *reg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping;
};

static void *sweep_loop(void *arg)
{
    struct sweeper *sw = arg;
    AZ(pthread_mutex_lock(&sw->mu));
    while (!sw->is_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += sw->reg->cfg->upload_sweep_interval_s;
        int rc = pthread_cond_timedwait(&sw->cv, &sw->mu, &until);
        if (sw->is_stopping)
            break;
        if (rc == ETIMEDOUT && registry_is_owner(sw->reg)) {
            AZ(pthread_mutex_unlock(&sw->mu));
            registry_sweep_uploads(sw->reg);
            AZ(pthread_mutex_lock(&sw->mu));
        }
    }
    AZ(pthread_mutex_unlock(&sw->mu));
    return NULL;
}

/* The data endpoint (oci_data.c): a second listener of this process for blob downloads
 * by signed URL, with the same limits and TLS as the main one. Without --data-endpoint
 * the redirects name the listener itself. */
static int start_data_listener(struct config *cfg, const struct http_config *hc,
                               struct registry *reg, struct http_server **out, struct err *e)
{
    struct http_config dc = *hc;
    dc.listen_host = cfg->data_listen_host;
    dc.listen_port = cfg->data_listen_port;
    *out = http_server_start(&dc, &oci_data_http_handlers, reg, e);
    if (*out == NULL)
        return -1;
    bool is_v6 = strchr(cfg->data_listen_host, ':') != NULL;
    char url[600];
    snprintf(url, sizeof(url), "%s://%s%s%s:%u", hc->is_tls ? "https" : "http", is_v6 ? "[" : "",
             cfg->data_listen_host, is_v6 ? "]" : "", http_server_port(*out));
    if (cfg->data_endpoint == NULL)
        cfg->data_endpoint = xstrdup(url);
    log_info("server", "data endpoint at %s (redirects name %s)", url,
             cfg->data_endpoint);
    return 0;
}

static bool has_peer_tls(const struct config *cfg)
{
    return cfg->peer_ca_file != NULL || cfg->peer_tls_cert_file != NULL ||
           cfg->peer_tls_key_file != NULL || cfg->peer_auth != NULL;
}

/* Mutual TLS between regions (docs/governance.md): the CA that signs region
 * certificates, checked on requests peers make, and this region's own certificate for
 * the calls it makes. At start and on SIGHUP; a file that does not load keeps the
 * previous one in use. */
static int load_peer_tls(const struct config *cfg, bool is_tls, struct err *e)
{
    enum config_peer_auth mode = config_peer_auth(cfg);
    if (mode != CONFIG_PEER_AUTH_SECRET) {
        if (cfg->peer_ca_file == NULL)
            return err_set(e, ERR_BAD_REQUEST, "peer-auth cert and both need peer-ca");
        if (!is_tls)
            return err_set(e, ERR_BAD_REQUEST,
                           "peer-ca needs tls-cert: client certificates come over HTTPS");
        if (tls_peer_ca_load(cfg->peer_ca_file, e) != 0)
            return -1;
    }
    if (mode != CONFIG_PEER_AUTH_CERT && cfg->peer_secret == NULL && cfg->peer_auth != NULL)
        return err_set(e, ERR_BAD_REQUEST, "peer-auth %s needs peer-secret", cfg->peer_auth);
    if (!has_peer_tls(cfg))
        return 0;
    if (mode != CONFIG_PEER_AUTH_SECRET && cfg->peer_tls_cert_file == NULL)
        log_warn("server", "peer-ca without peer-tls-cert: this region requires region "
                           "certificates but presents none, so peers that require them "
                           "refuse its calls");
    /* With peer-auth secret a peer CA only adds to the CAs our calls trust. */
    return httpc_peer_tls_load(cfg->peer_tls_cert_file, cfg->peer_tls_key_file,
                               cfg->peer_ca_file, e);
}

int server_main(int argc, char **argv)
{
    struct config cfg;
    struct err e = {0};
    bool is_help = false;
    int status = 1;
    struct registry *reg = NULL;
    struct lease *lease = NULL;
    struct http_server *http = NULL;
    struct http_server *data_http = NULL;

    config_defaults(&cfg);
    if (config_load(&cfg, argc, argv, &is_help, &e) != 0) {
        fprintf(stderr, "meridian serve: %s\n(see meridian serve --help)\n", err_message(&e));
        config_fini(&cfg);
        return 2;
    }
    if (is_help) {
        config_usage(stdout);
        config_fini(&cfg);
        return 0;
    }
    log_setup(cfg.log_level, cfg.region);
    /* Everything the server creates is private to it (meta.db and its -wal/-shm,
     * blobs, uploads, keys), whatever umask it was started with; the stores also
     * create with explicit modes, this covers files made by libraries (SQLite). */
    umask(077);

    /* Block the signals in every thread; this thread takes them with sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    AZ(pthread_sigmask(SIG_BLOCK, &sigs, NULL));
    signal(SIGPIPE, SIG_IGN);

    reg = registry_open(&cfg, &e);
    if (reg == NULL) {
        log_error("server", "failed to open storage in %s: %s", cfg.data_dir, err_message(&e));
        goto out;
    }
    /* Of the nodes sharing a metastore, one runs the region's background work. */
    lease = lease_start(reg);
    /* Sessions that expired while the process was down are reclaimed at once. */
    if (registry_is_owner(reg))
        registry_sweep_uploads(reg);

    struct http_config hc = {
        .listen_host = cfg.listen_host,
        .listen_port = cfg.listen_port,
        .threads = cfg.threads,
        .is_access_log = cfg.is_access_log,
        .conn_timeout_s = cfg.conn_timeout_s,
        .conn_limit = cfg.conn_limit,
        .conn_limit_per_ip = cfg.conn_limit_per_ip,
        .header_timeout_s = (unsigned)cfg.header_timeout_s,
        .body_timeout_s = (unsigned)cfg.body_timeout_s,
        .body_min_rate = cfg.body_min_rate,
        .is_tls = cfg.tls_cert_file != NULL,
        .tls_priorities = cfg.tls_priorities,
    };
    if ((cfg.tls_cert_file == NULL) != (cfg.tls_key_file == NULL)) {
        log_error("server", "failed to set up TLS: tls-cert and tls-key go together");
        goto out;
    }
    if (hc.is_tls && tls_load(cfg.tls_cert_file, cfg.tls_key_file, &e) != 0) {
        log_error("server", "failed to load the TLS certificate: %s", err_message(&e));
        goto out;
    }
    if (load_peer_tls(&cfg, hc.is_tls, &e) != 0) {
        log_error("server", "failed to set up mutual TLS between regions: %s", err_message(&e));
        goto out;
    }
    char *tls_priorities = NULL;
    if (hc.is_tls) {
        tls_priorities = tls_priorities_with_min(cfg.tls_priorities, cfg.tls_min_version, &e);
        hc.tls_priorities = tls_priorities;
        if (tls_priorities == NULL || tls_check_priorities(tls_priorities, &e) != 0 ||
            tls_tickets_load(cfg.tls_ticket_key_file, &e) != 0) {
            log_error("server", "failed to set up TLS: %s", err_message(&e));
            free(tls_priorities);
            goto out;
        }
    }
    http = http_server_start(&hc, &registry_http_handlers, reg, &e);
    if (http != NULL && cfg.data_listen_host != NULL &&
        start_data_listener(&cfg, &hc, reg, &data_http, &e) != 0) {
        log_error("server", "failed to start the data listener: %s", err_message(&e));
        free(tls_priorities);
        goto out;
    }
    free(tls_priorities); /* libmicrohttpd keeps its own copy */
    hc.tls_priorities = NULL;
    if (http == NULL) {
        log_error("server", "failed to start HTTP server: %s", err_message(&e));
        goto out;
    }
    bool is_v6 = strchr(cfg.listen_host, ':') != NULL;
    log_info("server", "listening on %s://%s%s%s:%u data=%s threads=%u",
             hc.is_tls ? "https" : "http", is_v6 ? "[" : "", cfg.listen_host, is_v6 ? "]" : "",
             http_server_port(http), cfg.data_dir, cfg.threads);
    if (repl_start(reg->repl, &e) != 0) {
        log_error("server", "failed to start replication: %s", err_message(&e));
        goto out;
    }
    /* Pull times and compaction first: the collector's retention pass uses reg->pulls.
     * Request handlers see these only once is_ready is published below. */
    reg->pulls = pull_record_start(reg);
    reg->compact = compact_start(reg);
    reg->scrub = scrub_start(reg);
    reg->copies = copies_start(reg);
    reg->gc = gc_start(reg);
    atomic_store(&reg->is_ready, true);

    struct sweeper sw = {.reg = reg};
    AZ(pthread_mutex_init(&sw.mu, NULL));
    AZ(pthread_cond_init(&sw.cv, NULL));
    pthread_t sweep_thread;
    AZ(pthread_create(&sweep_thread, NULL, sweep_loop, &sw));

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            /* New handshakes get the new pair; a bad pair keeps the old one. */
            if (hc.is_tls && tls_load(cfg.tls_cert_file, cfg.tls_key_file, &e) != 0)
                log_error("server", "failed to reload the TLS certificate: %s",
                          err_message(&e));
            else if (hc.is_tls)
                log_info("server", "SIGHUP: reloaded TLS certificate %s", cfg.tls_cert_file);
            else
                log_info("server", "SIGHUP: nothing to reload");
            /* A rotated ticket key: handshakes from now on seal and open tickets with it;
             * a file that does not load keeps the current key. */
            if (hc.is_tls && cfg.tls_ticket_key_file != NULL) {
                if (tls_tickets_load(cfg.tls_ticket_key_file, &e) != 0)
                    log_error("server", "failed to reload the TLS session ticket key: %s",
                              err_message(&e));
                else
                    log_info("server", "SIGHUP: new TLS session ticket key from %s",
                             cfg.tls_ticket_key_file);
            }
            /* Region certificates: the CA checks requests from the next one on, our
             * own certificate goes out on the next call to a peer. */
            if (has_peer_tls(&cfg)) {
                if (load_peer_tls(&cfg, hc.is_tls, &e) != 0)
                    log_error("server", "failed to reload the peer TLS files: %s",
                              err_message(&e));
                else
                    log_info("server", "SIGHUP: reloaded the peer TLS files");
            }
            continue;
        }
        log_info("server", "received signal %d: shutting down", sig);
        break;
    }
    atomic_store(&reg->is_ready, false);
    /* Replication first: it answers the long polls parked on the HTTP server. */
    repl_stop(reg->repl);
    http_server_stop(http, cfg.shutdown_grace_ms);
    http = NULL;
    if (data_http)
        http_server_stop(data_http, cfg.shutdown_grace_ms);
    data_http = NULL;
    scrub_stop(reg->scrub);
    reg->scrub = NULL;
    copies_stop(reg->copies);
    reg->copies = NULL;
    gc_stop(reg->gc);
    reg->gc = NULL;
    compact_stop(reg->compact);
    reg->compact = NULL;
    pull_record_stop(reg->pulls); /* after the HTTP server: no more notes */
    reg->pulls = NULL;

    AZ(pthread_mutex_lock(&sw.mu));
    sw.is_stopping = true;
    AZ(pthread_cond_signal(&sw.cv));
    AZ(pthread_mutex_unlock(&sw.mu));
    AZ(pthread_join(sweep_thread, NULL));
    pthread_mutex_destroy(&sw.mu);
    pthread_cond_destroy(&sw.cv);
    lease_stop(lease);
    lease = NULL;
    status = 0;
    log_info("server", "stopped");
out:
    lease_stop(lease);
    if (http)
        http_server_stop(http, 0);
    if (data_http)
        http_server_stop(data_http, 0);
    registry_close(reg);
    config_fini(&cfg);
    return status;
}
