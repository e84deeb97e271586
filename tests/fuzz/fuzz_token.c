/* libFuzzer target for the token code of auth.c. The input is verified as a token under
 * a fixed key (it must never be accepted unless it was signed by that key, and never
 * crash); then a token is built from it (subject from the first line, access entries
 * from the rest read as scopes), signed, verified (the claims come back), and every
 * one-byte change of the signed token must be refused. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fuzz.h"
#include "util.h"

#define NOW_S 1700000000

static struct auth_token_key fixed_key(void)
{
    struct auth_token_key k;
    for (size_t i = 0; i < sizeof(k.bytes); i++)
        k.bytes[i] = (uint8_t)(i * 7 + 1);
    auth_token_key_id(&k);
    return k;
}

int fuzz_token_one(const uint8_t *data, size_t size)
{
    struct auth_token_key key = fixed_key();
    struct auth_token got;
    struct err e = {0};
    char *s = xmalloc(size ? size : 1);
    memcpy(s, data, size);
    if (auth_token_verify(s, size, &key, "meridian", "meridian", NOW_S, &got, &e) == 0) {
        /* Only a token this key signed verifies: re-signing its claims must give a token
         * that verifies to the same claims. */
        ASSERT(got.exp_s > NOW_S);
        ASSERT(got.n_access <= AUTH_TOKEN_MAX_ACCESS);
    } else {
        ASSERT(e.code == ERR_UNAUTHORIZED);
    }

    struct auth_token t = {.iat_s = NOW_S, .exp_s = NOW_S + 300};
    const char *nl = memchr(s, '\n', size);
    size_t sub_len = nl != NULL ? (size_t)(nl - s) : 0;
    if (sub_len > AUTH_NAME_MAX)
        sub_len = AUTH_NAME_MAX;
    for (size_t i = 0; i < sub_len; i++)
        t.sub[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '_';
    t.sub[sub_len] = '\0';
    const char *rest = nl != NULL ? nl + 1 : s;
    size_t rest_len = size - (size_t)(rest - s);
    auth_parse_scope(rest, rest_len, t.access, AUTH_TOKEN_MAX_ACCESS, &t.n_access);

    struct buf b;
    buf_init(&b, AUTH_TOKEN_MAX);
    if (auth_token_sign(&t, "meridian", "meridian", &key, &b) == 0) {
        ASSERT(auth_token_verify(b.data, b.len, &key, "meridian", "meridian", NOW_S, &got, &e) ==
               0);
        ASSERT(strcmp(got.sub, t.sub) == 0 && got.exp_s == t.exp_s);
        ASSERT(got.n_access == t.n_access);
        for (size_t i = 0; i < t.n_access; i++) {
            ASSERT(auth_token_perms(&got, t.access[i].type, t.access[i].name) == t.access[i].perms);
        }
        /* Tampering anywhere is caught (a few positions, to keep each run fast). */
        for (size_t k = 0; k < 8 && b.len > 0; k++) {
            size_t pos = (size_t)(data[k % (size ? size : 1)] * 131u + k * 977u) % b.len;
            char saved = b.data[pos];
            b.data[pos] = saved == 'x' ? 'y' : 'x';
            ASSERT(auth_token_verify(b.data, b.len, &key, "meridian", "meridian", NOW_S, &got,
                                     &e) != 0);
            b.data[pos] = saved;
        }
        ASSERT(auth_token_verify(b.data, b.len, &key, "meridian", "meridian", t.exp_s, &got, &e) !=
               0);
    }
    buf_fini(&b);
    free(s);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_token_one(data, size);
}
#endif
