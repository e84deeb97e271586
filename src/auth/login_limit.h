/* Rate limit of failed logins (wrong passwords, robot secrets, peer secrets), so that
 * guessing is slow and a flood of wrong passwords costs no Argon2id hash per request.
 * Pure: no I/O, no locks, no clock (the caller passes now_ms and serialises calls).
 *
 * Three budgets, each a GCRA token bucket of failures (burst, then one more failure per
 * interval), all checked before a secret is verified and charged when it is wrong:
 *
 *   (source, identity)   burst B,      one per interval T    guessing one account
 *   source               burst 4B,     one per T/4           spraying many accounts
 *   identity             burst 10B,    one per T/10          guessing from many sources
 *
 * A source is an IPv4 address or an IPv6 /64 (one host can use a whole /64). The
 * per-identity budget is a denial-of-service lever (anyone can spend it by sending wrong
 * passwords for a name), so sources that logged in as the identity within the last day
 * ("known" sources) are exempt from it: an attacker hammering alice from elsewhere locks
 * out only his own sources and new, unknown sources of alice, never the addresses alice
 * already uses. A success also forgives the (source, identity) failures before it. */
#ifndef MERIDIAN_LOGIN_LIMIT_H
#define MERIDIAN_LOGIN_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOGIN_LIMIT_SOURCE_MAX 64       /* a source key: an address or "prefix::/64" */
#define LOGIN_LIMIT_KNOWN_MS 86400000LL /* a success makes its source known this long */

struct login_limit;

/* burst failures, then one per interval_ms, for one (source, identity); the other two
 * budgets derive from these (above). capacity: entries per budget (rounded up to a
 * power of two); when full, the entries that carry the least are forgotten first.
 * seed: randomises the hash so that clients cannot aim at one slot. */
struct login_limit *login_limit_new(unsigned burst, int64_t interval_ms, size_t capacity,
                                    uint64_t seed);
void login_limit_free(struct login_limit *l);

/* How long (ms) before source may try identity again; 0: it may now.
 * is_identity_limited false skips the per-identity budget (the peer credential, whose
 * budget an attacker must not be able to spend). */
int64_t login_limit_check(const struct login_limit *l, const char *source, const char *identity,
                          bool is_identity_limited, int64_t now_ms);
/* Did source log in as identity within LOGIN_LIMIT_KNOWN_MS (and is it still recorded)? */
bool login_limit_is_known(const struct login_limit *l, const char *source, const char *identity,
                          int64_t now_ms);
/* A wrong secret from source for identity: charges the three budgets. */
void login_limit_failed(struct login_limit *l, const char *source, const char *identity,
                        bool is_identity_limited, int64_t now_ms);
/* A right one: forgives the (source, identity) failures and makes source known for
 * identity. */
void login_limit_succeeded(struct login_limit *l, const char *source, const char *identity,
                           int64_t now_ms);

/* The source key of a client address (text form): IPv4 as is, IPv4-mapped IPv6 as the
 * IPv4 address, other IPv6 as its /64 ("2001:db8:1:2::/64"); anything else as is, cut. */
void login_limit_source(const char *addr, char out[LOGIN_LIMIT_SOURCE_MAX]);

#endif
