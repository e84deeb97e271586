/* `meridian front` (front.h): options, the region table and its health, the prober, and
 * the process around the HTTP server. The front keeps no state of its own beyond health:
 * uploads carry their region in their Location (route.h), so fronts can be run side by
 * side and restarted freely. */
#include "front.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "util.h"

struct front_options {
    char *listen_host;
    uint16_t listen_port;
    long probe_interval_ms;
    enum log_level log_level;
    bool is_access_log;
    struct http_config hc;
};

int front_choose(struct front *f, const char *client_addr, const char *pinned,
                 const bool *tried)
{
    struct route_region regions[FRONT_MAX_REGIONS];
    AZ(pthread_mutex_lock(&f->mu));
    for (size_t i = 0; i < f->n_regions; i++) {
        regions[i] = (struct route_region){f->regions[i].name,
                                           f->regions[i].is_healthy && !(tried && tried[i]),
                                           f->regions[i].rtt_ms};
    }
    AZ(pthread_mutex_unlock(&f->mu));
    return route_choose(f->nets, f->n_nets, regions, f->n_regions, client_addr, pinned);
}

int front_choose_fallback(struct front *f, const char *client_addr, const bool *tried)
{
    struct route_region slow[FRONT_MAX_REGIONS], refused[FRONT_MAX_REGIONS];
    AZ(pthread_mutex_lock(&f->mu));
    for (size_t i = 0; i < f->n_regions; i++) {
        const struct front_region *r = &f->regions[i];
        bool is_left = !(tried && tried[i]);
        slow[i] = (struct route_region){r->name, is_left && !r->is_refused, r->rtt_ms};
        refused[i] = (struct route_region){r->name, is_left && r->is_refused, r->rtt_ms};
    }
    AZ(pthread_mutex_unlock(&f->mu));
    int i = route_choose(f->nets, f->n_nets, slow, f->n_regions, client_addr, NULL);
    if (i < 0)
        i = route_choose(f->nets, f->n_nets, refused, f->n_regions, client_addr, NULL);
    return i;
}

void front_mark_down(struct front *f, size_t i, const char *why, bool is_refused)
{
    AZ(pthread_mutex_lock(&f->mu));
    bool was = f->regions[i].is_healthy;
    f->regions[i].is_healthy = false;
    f->regions[i].is_refused = f->regions[i].is_refused || is_refused;
    AZ(pthread_mutex_unlock(&f->mu));
    if (f->regions[i].pool != NULL)
        upstream_pool_flush(f->regions[i].pool);
    if (was)
        log_warn("front", "region %s out of rotation: %s", f->regions[i].name, why);
}

bool front_region_connects(struct front *f, size_t i, long timeout_ms)
{
    int fd = upstream_connect(f->regions[i].host, f->regions[i].port, timeout_ms);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

int front_pinned_region(struct front *f, const char *pinned)
{
    for (size_t i = 0; pinned != NULL && i < f->n_regions; i++) {
        if (strcmp(f->regions[i].name, pinned) == 0)
            return (int)i;
    }
    return -1;
}

bool front_region_is_lost(struct front *f, size_t i)
{
    bool is_other_up = false;
    AZ(pthread_mutex_lock(&f->mu));
    for (size_t k = 0; k < f->n_regions; k++)
        is_other_up = is_other_up || (k != i && f->regions[k].is_healthy);
    bool is_lost = !f->regions[i].is_healthy && is_other_up;
    AZ(pthread_mutex_unlock(&f->mu));
    return is_lost;
}

bool front_is_ready(struct front *f)
{
    bool is_ready = false;
    AZ(pthread_mutex_lock(&f->mu));
    for (size_t i = 0; i < f->n_regions; i++)
        is_ready = is_ready || f->regions[i].is_healthy;
    AZ(pthread_mutex_unlock(&f->mu));
    return is_ready;
}

/* Probes ---------------------------------------------------------------------------- */

struct prober {
    struct front *f;
    long interval_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping;
};

/* GETs every region's /readyz at once: a 200 within the interval puts a region in rotation
 * and updates its round trip (smoothed), anything else takes it out. */
static void probe_once(struct front *f, long timeout_ms)
{
    char urls[FRONT_MAX_REGIONS][600];
    const char *list[FRONT_MAX_REGIONS];
    long statuses[FRONT_MAX_REGIONS];
    double times_ms[FRONT_MAX_REGIONS];
    for (size_t i = 0; i < f->n_regions; i++) {
        snprintf(urls[i], sizeof(urls[i]), "%s/readyz", f->regions[i].url);
        list[i] = urls[i];
    }
    httpc_get_many(list, f->n_regions, NULL, timeout_ms, NULL, false, statuses, times_ms);
    for (size_t i = 0; i < f->n_regions; i++) {
        struct front_region *r = &f->regions[i];
        bool is_ok = statuses[i] == 200;
        /* No answer well before the timeout: refused (dead), not slow. */
        bool is_refused = statuses[i] == 0 && times_ms[i] < 0.5 * (double)timeout_ms;
        AZ(pthread_mutex_lock(&f->mu));
        bool was = r->is_healthy;
        r->is_healthy = is_ok;
        r->is_refused = is_refused;
        if (is_ok)
            r->rtt_ms = r->rtt_ms < 0 ? times_ms[i] : 0.8 * r->rtt_ms + 0.2 * times_ms[i];
        AZ(pthread_mutex_unlock(&f->mu));
        if (!is_ok && r->pool != NULL)
            upstream_pool_flush(r->pool);
        if (is_ok && !was)
            log_info("front", "region %s in rotation rtt_ms=%.2f", r->name, times_ms[i]);
        else if (!is_ok && was)
            log_warn("front", "region %s out of rotation: readyz %s", r->name,
                     statuses[i] != 0 ? "answered not ready"
                                      : is_refused ? "refused" : "timed out");
    }
}

static void *probe_loop(void *arg)
{
    struct prober *p = arg;
    AZ(pthread_mutex_lock(&p->mu));
    while (!p->is_stopping) {
        AZ(pthread_mutex_unlock(&p->mu));
        int64_t started = util_mono_ns();
        /* A region that cannot answer /readyz within the interval is as good as down. */
        probe_once(p->f, p->interval_ms);
        int64_t until_ns = started + (int64_t)p->interval_ms * 1000000;
        AZ(pthread_mutex_lock(&p->mu));
        while (!p->is_stopping && util_mono_ns() < until_ns) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t left_ns = until_ns - util_mono_ns();
            if (left_ns <= 0)
                break;
            ts.tv_sec += left_ns / 1000000000;
            ts.tv_nsec += left_ns % 1000000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            ASSERT(rc == 0 || rc == ETIMEDOUT);
        }
    }
    AZ(pthread_mutex_unlock(&p->mu));
    return NULL;
}

/* Options --------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: meridian front --region NAME=URL [--region ...] [options]\n\n"
            "Forwards the registry API (/v2/, the token endpoint, /_meridian/v1/) and the web\n"
            "console (/console/) to the\n"
            "nearest healthy region. See docs/front.md.\n\n"
            "  --listen HOST:PORT        address to listen on (default 127.0.0.1:5000; 0 picks)\n"
            "  --region NAME=URL[,...]   a region and its base URL (repeatable)\n"
            "  --route CIDR=REGION[,...] clients in CIDR go to REGION while healthy "
            "(repeatable)\n"
            "  --probe-interval MS       /readyz probe period and timeout (default 1000)\n"
            "  --connect-timeout MS      connect timeout to a region (default 2000)\n"
            "  --conn-limit N            connections at once (default 4096)\n"
            "  --conn-limit-per-ip N     connections per client address (default 128, 0 = "
            "none)\n"
            "  --conn-timeout S          idle connection timeout (default 120)\n"
            "  --header-timeout S        a request's headers must arrive within S (default 30)\n"
            "  --body-timeout S          a body gets S to start, plus a second per ... "
            "(default 30)\n"
            "  --body-min-rate BYTES     ... BYTES received (default 1024)\n"
            "  --log-level LEVEL         error|warn|info|debug (default info)\n"
            "  --no-access-log           no line per request\n");
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
}

static int add_region(struct front *f, const char *spec, size_t spec_len, struct err *e)
{
    const char *eq = memchr(spec, '=', spec_len);
    if (eq == NULL || eq == spec)
        return err_set(e, ERR_BAD_REQUEST, "region: expected NAME=URL, got \"%.*s\"",
                       (int)spec_len, spec);
    size_t name_len = (size_t)(eq - spec);
    for (size_t i = 0; i < name_len; i++) {
        if (!is_name_char(spec[i]))
            return err_set(e, ERR_BAD_REQUEST, "region: bad name \"%.*s\"", (int)name_len,
                           spec);
    }
    const char *url = eq + 1;
    size_t url_len = spec_len - name_len - 1;
    if (url_len < 8 || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        url_len > 500)
        return err_set(e, ERR_BAD_REQUEST, "region: bad URL \"%.*s\"", (int)url_len, url);
    while (url_len > 0 && url[url_len - 1] == '/')
        url_len--;
    if (f->n_regions == FRONT_MAX_REGIONS)
        return err_set(e, ERR_BAD_REQUEST, "region: at most %d regions", FRONT_MAX_REGIONS);
    for (size_t i = 0; i < f->n_regions; i++) {
        if (strlen(f->regions[i].name) == name_len &&
            strncmp(f->regions[i].name, spec, name_len) == 0)
            return err_set(e, ERR_BAD_REQUEST, "region: %.*s given twice", (int)name_len, spec);
    }
    /* Host and port, for the connect check: "[v6]:port", "host:port" or "host". */
    bool is_https = url[4] == 's';
    const char *host = url + (is_https ? 8 : 7);
    const char *host_end = host;
    while (host_end < url + url_len && *host_end != '/')
        host_end++;
    const char *port = NULL;
    const char *name_end = host_end;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(host_end - host));
        if (close == NULL)
            return err_set(e, ERR_BAD_REQUEST, "region: bad URL \"%.*s\"", (int)url_len, url);
        if (close + 1 < host_end && close[1] == ':')
            port = close + 2;
        name_end = close;
        host++;
    } else {
        const char *colon = memchr(host, ':', (size_t)(host_end - host));
        if (colon != NULL) {
            port = colon + 1;
            name_end = colon;
        }
    }
    size_t port_len = port ? (size_t)(host_end - port) : 0;
    if (name_end == host || (port != NULL && (port_len == 0 || port_len > 5)))
        return err_set(e, ERR_BAD_REQUEST, "region: bad URL \"%.*s\"", (int)url_len, url);
    struct front_region *r = &f->regions[f->n_regions++];
    r->name = xstrndup(spec, name_len);
    r->url = xstrndup(url, url_len);
    r->host = xstrndup(host, (size_t)(name_end - host));
    snprintf(r->port, sizeof(r->port), "%.*s", (int)port_len, port ? port : "");
    if (port == NULL)
        snprintf(r->port, sizeof(r->port), "%s", is_https ? "443" : "80");
    if (!is_https && host_end == url + url_len)
        r->pool = upstream_pool_new(r->host, r->port);
    r->rtt_ms = -1;
    return 0;
}

/* Routes name regions, so they are parsed once every region is known. */
static int add_route(struct front *f, const char *spec, size_t spec_len, struct err *e)
{
    char buf[256];
    if (spec_len >= sizeof(buf))
        return err_set(e, ERR_BAD_REQUEST, "route: too long");
    memcpy(buf, spec, spec_len);
    buf[spec_len] = '\0';
    char *eq = strchr(buf, '=');
    if (eq == NULL)
        return err_set(e, ERR_BAD_REQUEST, "route: expected CIDR=REGION, got \"%s\"", buf);
    *eq = '\0';
    struct route_net net;
    if (route_parse_net(buf, &net, e) != 0)
        return -1;
    size_t i = 0;
    while (i < f->n_regions && strcmp(f->regions[i].name, eq + 1) != 0)
        i++;
    if (i == f->n_regions)
        return err_set(e, ERR_BAD_REQUEST, "route: unknown region \"%s\"", eq + 1);
    net.region = i;
    f->nets = xrealloc(f->nets, (f->n_nets + 1) * sizeof(*f->nets));
    f->nets[f->n_nets++] = net;
    return 0;
}

typedef int add_item_f(struct front *f, const char *spec, size_t spec_len, struct err *e);

/* A comma-separated list of items. */
static int add_list(struct front *f, const char *v, add_item_f *add, struct err *e)
{
    while (*v != '\0') {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        if (n > 0 && add(f, v, n, e) != 0)
            return -1;
        v += n;
        if (*v == ',')
            v++;
    }
    return 0;
}

static int parse_number(const char *opt, const char *v, uint64_t max, uint64_t *out,
                        struct err *e)
{
    if (v == NULL || util_parse_u64(v, strlen(v), out) != 0 || *out > max)
        return err_set(e, ERR_BAD_REQUEST, "%s: expected a number up to %llu", opt,
                       (unsigned long long)max);
    return 0;
}

static int parse_listen(struct front_options *o, const char *v, struct err *e)
{
    const char *colon = v ? strrchr(v, ':') : NULL;
    uint64_t port;
    if (colon == NULL || colon == v ||
        util_parse_u64(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535)
        return err_set(e, ERR_BAD_REQUEST, "listen: expected HOST:PORT");
    const char *host = v;
    size_t host_len = (size_t)(colon - v);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    free(o->listen_host);
    o->listen_host = xstrndup(host, host_len);
    o->listen_port = (uint16_t)port;
    return 0;
}

static int parse_options(struct front *f, struct front_options *o, int argc, char **argv,
                         bool *is_help, struct err *e)
{
    const char *routes[256];
    size_t n_routes = 0;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            *is_help = true;
            return 0;
        }
        if (strcmp(opt, "--no-access-log") == 0) {
            o->is_access_log = false;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            return err_set(e, ERR_BAD_REQUEST, "%s: missing value (or unknown option)", opt);
        i++;
        uint64_t n = 0;
        int rc = 0;
        if (strcmp(opt, "--listen") == 0) {
            rc = parse_listen(o, v, e);
        } else if (strcmp(opt, "--region") == 0) {
            rc = add_list(f, v, add_region, e);
        } else if (strcmp(opt, "--route") == 0) {
            if (n_routes == sizeof(routes) / sizeof(routes[0]))
                return err_set(e, ERR_BAD_REQUEST, "route: too many");
            routes[n_routes++] = v;
        } else if (strcmp(opt, "--probe-interval") == 0) {
            rc = parse_number(opt, v, 60000, &n, e);
            o->probe_interval_ms = n > 0 ? (long)n : 1000;
        } else if (strcmp(opt, "--connect-timeout") == 0) {
            rc = parse_number(opt, v, 60000, &n, e);
            f->connect_timeout_ms = n > 0 ? (long)n : 2000;
        } else if (strcmp(opt, "--conn-limit") == 0) {
            rc = parse_number(opt, v, 1000000, &n, e);
            o->hc.conn_limit = (size_t)n;
        } else if (strcmp(opt, "--conn-limit-per-ip") == 0) {
            rc = parse_number(opt, v, 1000000, &n, e);
            o->hc.conn_limit_per_ip = (unsigned)n;
        } else if (strcmp(opt, "--conn-timeout") == 0) {
            rc = parse_number(opt, v, 86400, &n, e);
            o->hc.conn_timeout_s = (unsigned)n;
        } else if (strcmp(opt, "--header-timeout") == 0) {
            rc = parse_number(opt, v, 86400, &n, e);
            o->hc.header_timeout_s = (unsigned)n;
        } else if (strcmp(opt, "--body-timeout") == 0) {
            rc = parse_number(opt, v, 86400, &n, e);
            o->hc.body_timeout_s = (unsigned)n;
        } else if (strcmp(opt, "--body-min-rate") == 0) {
            rc = parse_number(opt, v, UINT32_MAX, &n, e);
            o->hc.body_min_rate = (unsigned)n;
        } else if (strcmp(opt, "--log-level") == 0) {
            if (log_parse_level(v, &o->log_level) != 0)
                rc = err_set(e, ERR_BAD_REQUEST, "log-level: unknown level \"%s\"", v);
        } else {
            return err_set(e, ERR_BAD_REQUEST, "unknown option %s", opt);
        }
        if (rc != 0)
            return -1;
    }
    if (f->n_regions == 0)
        return err_set(e, ERR_BAD_REQUEST, "at least one --region NAME=URL is needed");
    for (size_t i = 0; i < n_routes; i++) {
        if (add_list(f, routes[i], add_route, e) != 0)
            return -1;
    }
    return 0;
}

static void front_fini(struct front *f, struct front_options *o)
{
    for (size_t i = 0; i < f->n_regions; i++) {
        free(f->regions[i].name);
        free(f->regions[i].url);
        free(f->regions[i].host);
    }
    free(f->nets);
    pthread_mutex_destroy(&f->mu);
    free(o->listen_host);
}

int front_main(int argc, char **argv)
{
    static struct front f; /* the handlers reach it through req->app */
    struct front_options o = {
        .probe_interval_ms = 1000,
        .log_level = LOG_LEVEL_INFO,
        .is_access_log = true,
        /* The same request limits as `meridian serve` (config.c's defaults). */
        .hc = {.conn_timeout_s = 120, .conn_limit = 4096, .conn_limit_per_ip = 128,
               .header_timeout_s = 30, .body_timeout_s = 30, .body_min_rate = 1024},
    };
    o.listen_host = xstrdup("127.0.0.1");
    o.listen_port = 5000;
    f.connect_timeout_ms = 2000;
    AZ(pthread_mutex_init(&f.mu, NULL));
    struct err e = {0};
    bool is_help = false;
    if (parse_options(&f, &o, argc, argv, &is_help, &e) != 0) {
        fprintf(stderr, "meridian front: %s\n(see meridian front --help)\n", err_message(&e));
        front_fini(&f, &o);
        return 2;
    }
    if (is_help) {
        usage(stdout);
        front_fini(&f, &o);
        return 0;
    }
    log_setup(o.log_level, "front");
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    AZ(pthread_sigmask(SIG_BLOCK, &sigs, NULL));
    signal(SIGPIPE, SIG_IGN);
    httpc_global_init();

    /* Know who is up before the first client asks. */
    probe_once(&f, o.probe_interval_ms);
    struct http_handlers handlers = proxy_handlers;
    handlers.arg = &f;
    o.hc.listen_host = o.listen_host;
    o.hc.listen_port = o.listen_port;
    o.hc.threads = 1;
    o.hc.is_access_log = o.is_access_log;
    o.hc.is_thread_per_connection = true;
    struct http_server *http = http_server_start(&o.hc, &handlers, NULL, &e);
    if (http == NULL) {
        log_error("front", "failed to start HTTP server: %s", err_message(&e));
        front_fini(&f, &o);
        return 1;
    }
    bool is_v6 = strchr(o.listen_host, ':') != NULL;
    log_info("front", "listening on http://%s%s%s:%u regions=%zu routes=%zu",
             is_v6 ? "[" : "", o.listen_host, is_v6 ? "]" : "", http_server_port(http),
             f.n_regions, f.n_nets);

    struct prober p = {.f = &f, .interval_ms = o.probe_interval_ms};
    AZ(pthread_mutex_init(&p.mu, NULL));
    AZ(pthread_cond_init(&p.cv, NULL));
    pthread_t probe_thread;
    AZ(pthread_create(&probe_thread, NULL, probe_loop, &p));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    log_info("front", "received signal %d: shutting down", sig);
    AZ(pthread_mutex_lock(&p.mu));
    p.is_stopping = true;
    AZ(pthread_cond_signal(&p.cv));
    AZ(pthread_mutex_unlock(&p.mu));
    AZ(pthread_join(probe_thread, NULL));
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    http_server_stop(http, 10000);
    log_info("front", "stopped");
    front_fini(&f, &o);
    return 0;
}
