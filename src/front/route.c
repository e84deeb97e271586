/* Routing for the front (route.h): longest-prefix match of the client's network, then
 * health, then round trip. Pure functions over tables the caller snapshots. */
#include "route.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

/* Parses an address as text; IPv4-mapped IPv6 addresses become IPv4. */
static int parse_addr(const char *s, int *family, uint8_t out[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) != 1)
        return -1;
    *family = AF_INET6;
    if (memcmp(out, mapped, sizeof(mapped)) == 0) {
        memmove(out, out + 12, 4);
        memset(out + 4, 0, 12);
        *family = AF_INET;
    }
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    unsigned rest = bits % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int route_parse_net(const char *cidr, struct route_net *out, struct err *e)
{
    char addr[64];
    const char *slash = strchr(cidr, '/');
    size_t addr_len = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (addr_len == 0 || addr_len >= sizeof(addr))
        return err_set(e, ERR_BAD_REQUEST, "route: bad network \"%s\"", cidr);
    memcpy(addr, cidr, addr_len);
    addr[addr_len] = '\0';
    memset(out, 0, sizeof(*out));
    if (parse_addr(addr, &out->family, out->addr) != 0)
        return err_set(e, ERR_BAD_REQUEST, "route: bad network \"%s\"", cidr);
    unsigned max = out->family == AF_INET ? 32 : 128;
    out->prefix_len = max;
    if (slash != NULL) {
        uint64_t v;
        if (util_parse_u64(slash + 1, strlen(slash + 1), &v) != 0 || v > max)
            return err_set(e, ERR_BAD_REQUEST, "route: bad prefix length in \"%s\"", cidr);
        out->prefix_len = (unsigned)v;
    }
    /* Clear host bits so "10.1.2.3/16" means 10.1.0.0/16. */
    for (unsigned bit = out->prefix_len; bit < 128; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
    return 0;
}

bool route_net_contains(const struct route_net *net, const char *addr)
{
    int family;
    uint8_t a[16];
    if (addr == NULL || parse_addr(addr, &family, a) != 0 || family != net->family)
        return false;
    return prefix_equal(a, net->addr, net->prefix_len);
}

int route_choose(const struct route_net *nets, size_t n_nets,
                 const struct route_region *regions, size_t n_regions,
                 const char *client_addr, const char *pinned)
{
    if (pinned != NULL) {
        for (size_t i = 0; i < n_regions; i++) {
            if (strcmp(regions[i].name, pinned) == 0)
                return (int)i;
        }
    }
    int best = -1;
    unsigned best_len = 0;
    for (size_t i = 0; i < n_nets; i++) {
        const struct route_net *n = &nets[i];
        if (n->region >= n_regions || !regions[n->region].is_healthy)
            continue;
        if (!route_net_contains(n, client_addr))
            continue;
        if (best < 0 || n->prefix_len > best_len) {
            best = (int)n->region;
            best_len = n->prefix_len;
        }
    }
    if (best >= 0)
        return best;
    for (size_t i = 0; i < n_regions; i++) {
        const struct route_region *r = &regions[i];
        if (!r->is_healthy)
            continue;
        if (best < 0) {
            best = (int)i;
            continue;
        }
        double b = regions[best].rtt_ms;
        if (r->rtt_ms >= 0 && (b < 0 || r->rtt_ms < b))
            best = (int)i;
    }
    return best;
}

/* Is the query parameter starting at p (up to the next '&' or the end) a pin? */
static bool is_pin(const char *p)
{
    size_t n = strlen(ROUTE_PIN_PARAM);
    return strncmp(p, ROUTE_PIN_PARAM, n) == 0 && (p[n] == '=' || p[n] == '&' || p[n] == '\0');
}

int route_strip_pin(const char *target, char *out, size_t out_len)
{
    const char *q = strchr(target, '?');
    size_t path_len = q ? (size_t)(q - target) : strlen(target);
    if (path_len >= out_len)
        return -1;
    memcpy(out, target, path_len);
    size_t len = path_len;
    out[len] = '\0';
    if (q == NULL)
        return 0;
    bool is_first = true;
    for (const char *p = q + 1; *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > 0 && !is_pin(p)) {
            if (len + 1 + n >= out_len)
                return -1;
            out[len++] = is_first ? '?' : '&';
            memcpy(out + len, p, n);
            len += n;
            out[len] = '\0';
            is_first = false;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return 0;
}

int route_pin_location(const char *location, const char *region, char *out, size_t out_len)
{
    char bare[4096];
    if (route_strip_pin(location, bare, sizeof(bare)) != 0)
        return -1;
    int n = snprintf(out, out_len, "%s%c%s=%s", bare, strchr(bare, '?') ? '&' : '?',
                     ROUTE_PIN_PARAM, region);
    return n < 0 || (size_t)n >= out_len ? -1 : 0;
}
