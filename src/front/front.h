/* `meridian front`: the registry's single entry point. It holds the table of regions with
 * their health (active /readyz probes and passive errors) and measured round trip, and
 * the client-network map; proxy.c forwards each request to the region route.c picks. */
#ifndef MERIDIAN_FRONT_FRONT_H
#define MERIDIAN_FRONT_FRONT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "route.h"

#define FRONT_MAX_REGIONS 32

struct front_region {
    char *name;
    char *url;           /* base URL, no trailing slash */
    bool is_healthy;     /* under front.mu */
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

/* Takes region i out of rotation at once (a passive error); the next good probe brings
 * it back. */
void front_mark_down(struct front *f, size_t i, const char *why);

/* Is any region healthy (the front's own /readyz)? */
bool front_is_ready(struct front *f);

/* Runs `meridian front` with the arguments after "front"; returns the exit status. */
int front_main(int argc, char **argv);

#endif
