/* libFuzzer target for the Authorization header and scope parsers of auth.c. The input
 * is read both as a header value and as a scope list. Checks: Basic credentials have a
 * non-empty user without ':' within the caps and survive a round trip through
 * auth_basic_value; a Bearer token lies inside the input and holds only token68
 * characters; every parsed scope entry formats to a scope that parses back to the
 * same entry. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fuzz.h"
#include "util.h"

static void check_header(const char *s, size_t n)
{
    struct auth_credentials c;
    enum auth_scheme sch = auth_parse_authorization(s, n, &c);
    ASSERT(sch == c.scheme);
    switch (sch) {
    case AUTH_SCHEME_BASIC: {
        size_t ulen = strlen(c.user);
        ASSERT(ulen > 0 && ulen <= AUTH_NAME_MAX);
        ASSERT(strchr(c.user, ':') == NULL);
        ASSERT(c.secret_len <= AUTH_SECRET_MAX && c.secret_len == strlen(c.secret));
        char *again = auth_basic_value(c.user, c.secret);
        struct auth_credentials c2;
        ASSERT(auth_parse_authorization(again, strlen(again), &c2) == AUTH_SCHEME_BASIC);
        ASSERT(strcmp(c.user, c2.user) == 0 && strcmp(c.secret, c2.secret) == 0);
        free(again);
        break;
    }
    case AUTH_SCHEME_BEARER:
        ASSERT(c.token >= s && c.token + c.token_len <= s + n);
        ASSERT(c.token_len > 0 && c.token_len <= AUTH_TOKEN_MAX);
        for (size_t i = 0; i < c.token_len; i++)
            ASSERT(isalnum((unsigned char)c.token[i]) || strchr("-._~+/=", c.token[i]) != NULL);
        break;
    case AUTH_SCHEME_NONE:
        ASSERT(s == NULL);
        break;
    case AUTH_SCHEME_INVALID:
        break;
    }
    auth_credentials_wipe(&c);
}

static void check_scope(const char *s, size_t n)
{
    struct auth_access out[AUTH_TOKEN_MAX_ACCESS];
    size_t count = 0;
    if (auth_parse_scope(s, n, out, AUTH_TOKEN_MAX_ACCESS, &count) != 0)
        ASSERT(count <= AUTH_TOKEN_MAX_ACCESS);
    for (size_t i = 0; i < count; i++) {
        ASSERT(strlen(out[i].name) > 0 && strlen(out[i].name) <= AUTH_RESOURCE_MAX);
        ASSERT((out[i].perms & ~(unsigned)(AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE)) ==
               0);
        struct buf b;
        buf_init(&b, 4096);
        auth_format_scope(&out[i], &b);
        struct auth_access back[1];
        size_t m = 0;
        ASSERT(auth_parse_scope(b.data, b.len, back, 1, &m) == 0);
        ASSERT(m == 1 && back[0].type == out[i].type && strcmp(back[0].name, out[i].name) == 0);
        ASSERT(back[0].perms == out[i].perms);
        buf_fini(&b);
    }
}

int fuzz_auth_header_one(const uint8_t *data, size_t size)
{
    /* A private copy without a terminator, so over-reads are caught. */
    char *s = xmalloc(size ? size : 1);
    memcpy(s, data, size);
    check_header(s, size);
    check_scope(s, size);
    free(s);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_auth_header_one(data, size);
}
#endif
