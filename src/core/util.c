/* Aborting allocators, assertion failure, clocks, random ids, number parsing and
 * the two filesystem helpers every durable write needs. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void util_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "fatal: assertion failed: %s at %s:%d\n", expr, file, line);
    abort();
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_now_s(void)
{
    return util_now_ms() / 1000;
}

int64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void util_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void util_random_id(char out[33])
{
    unsigned char raw[16];
    static const char hex[] = "0123456789abcdef";
    /* The kernel's CSPRNG: OpenSSL's RAND would load its provider machinery (2 MiB). */
    AZ(getrandom(raw, sizeof(raw), 0) == (ssize_t)sizeof(raw) ? 0 : 1);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
}

int util_parse_u64(const char *s, size_t s_len, uint64_t *out)
{
    uint64_t v = 0;
    if (s_len == 0 || s_len > 20)
        return -1;
    for (size_t i = 0; i < s_len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int util_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int util_mkdirs(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            tmp[i] = c;
        }
    }
    return 0;
}

static _Thread_local size_t removed_count;

static int on_remove(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (remove(path) == 0 && flag == FTW_F)
        removed_count++;
    return 0;
}

size_t util_remove_tree(const char *path)
{
    removed_count = 0;
    nftw(path, on_remove, 32, FTW_DEPTH | FTW_PHYS);
    return removed_count;
}

void util_addr_group(const char *addr, char *out, size_t out_len)
{
    struct in6_addr a6;
    char text[INET6_ADDRSTRLEN];
    snprintf(out, out_len, "%s", addr);
    if (strchr(addr, ':') == NULL || inet_pton(AF_INET6, addr, &a6) != 1)
        return;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        if (inet_ntop(AF_INET, &a6.s6_addr[12], text, sizeof(text)) != NULL)
            snprintf(out, out_len, "%s", text);
        return;
    }
    memset(&a6.s6_addr[8], 0, 8);
    if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) != NULL)
        snprintf(out, out_len, "%s/64", text);
}

size_t util_utf8_len(const unsigned char *p, size_t n)
{
    static const struct {
        unsigned char mask, lead, bits;
        unsigned min;
    } forms[] = {{0xe0, 0xc0, 0x1f, 0x80}, {0xf0, 0xe0, 0x0f, 0x800}, {0xf8, 0xf0, 0x07, 0x10000}};
    if (p[0] < 0x80)
        return 1;
    size_t len = 0;
    unsigned min = 0;
    unsigned cp = 0;
    for (size_t k = 0; k < 3 && len == 0; k++) {
        if ((p[0] & forms[k].mask) == forms[k].lead) {
            len = k + 2;
            min = forms[k].min;
            cp = p[0] & forms[k].bits;
        }
    }
    if (len == 0)
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8. */
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

bool util_is_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = util_utf8_len(u + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}
