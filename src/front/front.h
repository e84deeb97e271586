/* `meridian front`: the registry's single entry point. It holds the table of regions with
 * their health (active /readyz probes and passive errors) and measured round trip, and
 * the client-network map; proxy.c forwards each request to the region route.c picks. */
#ifndef MERIDIAN_FRONT_FRONT_H
#define MERIDIAN_FRONT_FRONT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "route.h"
#include "upstream.h"

#define FRONT_MAX_REGIONS 32

struct front_region {
    char *name;
    char *url;           /* base URL, no trailing slash */
    char *host;          /* of url, for the connect check (front_region_connects) */
    char port[8];
    struct upstream_pool *pool; /* plain http, no path: GET and HEAD go raw (upstream.h) */
    bool is_healthy;     /* under front.mu */
    bool is_refused;     /* under front.mu: its last failure was a refused connection (dead),
                          * not a timeout (slow); cleared by a good probe */
    double rtt_ms;       /* under front.mu; < 0: not measured */
};

struct front {
    struct front_region regions[FRONT_MAX_REGIONS];
    size_t n_regions;
    struct route_net *nets;
    size_t n_nets;
    pthread_mutex_t mu;
    long connect_timeout_ms;
};

/* The region for a request (route_choose over a snapshot of the health table), skipping
 * regions whose tried[i] is set (tried may be NULL); -1 when none is healthy. */
int front_choose(struct front *f, const char *client_addr, const char *pinned,
                 const bool *tried);

/* When no region is in rotation (every probe failed, maybe only because they were slow):
 * the region to try anyway, skipping tried[i], in routing order (client network, then
 * round trip, unmeasured last) among regions whose last failure was not a refused
 * connection, then among those that refused; -1 when every one was tried. */
int front_choose_fallback(struct front *f, const char *client_addr, const bool *tried);

/* Takes region i out of rotation at once (a passive error); the next good probe brings
 * it back. is_refused: the region refused the connection (dead, not slow). */
void front_mark_down(struct front *f, size_t i, const char *why, bool is_refused);

/* Does a TCP connection to region i open within timeout_ms? (Before a request's body is
 * taken, when no region is in rotation: a refusal then costs the client nothing.) */
bool front_region_connects(struct front *f, size_t i, long timeout_ms);

/* The connect bound for regions tried out of rotation: short, so that a dead or
 * black-holed region costs the request little. */
#define FRONT_FALLBACK_CONNECT_MS 300L

/* The region an upload's pin names, or -1 (no pin, or a name no region has). */
int front_pinned_region(struct front *f, const char *pinned);

/* Is region i lost: out of rotation while another region is in? An upload pinned to it is
 * then gone, and a GET waiting on it goes elsewhere. (With nothing in rotation the probes
 * may only have been slow: the region is still tried and waited for.) */
bool front_region_is_lost(struct front *f, size_t i);

/* Is any region healthy (the front's own /readyz)? */
bool front_is_ready(struct front *f);

/* Runs `meridian front` with the arguments after "front"; returns the exit status. */
int front_main(int argc, char **argv);

#endif
