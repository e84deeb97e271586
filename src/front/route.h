/* The front's routing choice, pure: which region serves a request, from the client's
 * address, a configured map of client networks to regions, each region's health and
 * measured round trip, and an upload's pinned region. Also the upload pin itself: the
 * `_region` query parameter the front adds to upload Locations and strips before
 * forwarding. No I/O, no locks. */
#ifndef MERIDIAN_FRONT_ROUTE_H
#define MERIDIAN_FRONT_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define ROUTE_PIN_PARAM "_region"

/* A client network (CIDR) and the region its clients go to. */
struct route_net {
    int family;          /* AF_INET or AF_INET6 */
    uint8_t addr[16];    /* network address, host bits cleared */
    unsigned prefix_len;
    size_t region;       /* index into the region table */
};

/* What routing knows of a region. */
struct route_region {
    const char *name;
    bool is_healthy;
    double rtt_ms;       /* measured from the front; < 0: not measured yet */
};

/* Parses "10.1.0.0/16" or "fd00::/8" (a bare address is a /32 or /128) into out (region
 * is left to the caller). -1 with e set on bad input. */
int route_parse_net(const char *cidr, struct route_net *out, struct err *e);

/* Does net contain the address given as text ("10.1.2.3", "::1", "::ffff:10.1.2.3")? */
bool route_net_contains(const struct route_net *net, const char *addr);

/* The region for a request: the pinned region by name when pinned is set and names one
 * (an upload stays where it started, healthy or not: nowhere else knows it); else the
 * healthy region of the most specific network holding client_addr; else the healthy
 * region with the lowest measured round trip (unmeasured last, then table order); -1
 * when no region is healthy. */
int route_choose(const struct route_net *nets, size_t n_nets,
                 const struct route_region *regions, size_t n_regions,
                 const char *client_addr, const char *pinned);

/* Copies the request-target into out without any `_region=` query parameter. -1 when it
 * does not fit. */
int route_strip_pin(const char *target, char *out, size_t out_len);

/* Copies an upload Location into out with `_region=<region>` added to its query; -1 when
 * it does not fit. */
int route_pin_location(const char *location, const char *region, char *out, size_t out_len);

#endif
