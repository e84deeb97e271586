/* Small shared helpers: aborting allocators, always-on assertions, clocks, ids.
 * xmalloc & co. abort on failure: safe only because sizes from clients and peers
 * are checked against caps before anything is allocated for them. */
#ifndef MERIDIAN_UTIL_H
#define MERIDIAN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#define FREE_AND_NULL(p) \
    do {                 \
        free(p);         \
        (p) = NULL;      \
    } while (0)

/* Assertions stay on in release builds; they are for invariants, never for input. */
void util_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define ASSERT(c) ((c) ? (void)0 : util_assert_fail(#c, __FILE__, __LINE__))
#define AN(p) ASSERT((p) != NULL)
#define AZ(x) ASSERT((x) == 0)

/* Wall clock in ms / s since the epoch; monotonic clock in ns. */
int64_t util_now_ms(void);
int64_t util_now_s(void);
int64_t util_mono_ns(void);
/* Sleeps ms milliseconds (none when ms <= 0); a signal may end it early. */
void util_sleep_ms(int64_t ms);

/* Writes 32 lowercase hex chars of cryptographic randomness plus NUL into out[33]. */
void util_random_id(char out[33]);

/* Parses a whole decimal unsigned number of s_len bytes; -1 on anything else
 * (empty, sign, overflow, trailing bytes). */
int util_parse_u64(const char *s, size_t s_len, uint64_t *out);

/* Length of the valid UTF-8 sequence at p (at most n bytes, n > 0), 0 if invalid (overlong
 * forms, surrogates and values past U+10FFFF included). */
size_t util_utf8_len(const unsigned char *p, size_t n);
/* Are the n bytes at s valid UTF-8? */
bool util_is_utf8(const char *s, size_t n);

/* fsync the directory at path; 0 or -1 with errno. */
int util_fsync_dir(const char *path);

/* rm -r of path's contents and path itself; returns the number of files removed. */
size_t util_remove_tree(const char *path);

/* mkdir -p with mode 0700 (the data directory is private); 0 or -1 with errno. */
int util_mkdirs(const char *path);

/* The key under which per-address limits count a client at textual address addr: an
 * IPv4 address as it is, an IPv6 address as its /64 ("2001:db8:1:2::/64": one host
 * commonly holds a whole /64), an IPv4-mapped IPv6 address as the IPv4 one. Anything
 * else is copied as it is. out_len of 64 is always enough. */
void util_addr_group(const char *addr, char *out, size_t out_len);

#endif
