/* libsodium behind a narrow interface: Argon2id with parameters fixed here, HMAC-SHA256,
 * randomness, constant-time comparison and secretbox sealing of secrets at rest. Parameters: t=2 passes over 19 MiB (the
 * OWASP minimum for Argon2id), so one verification costs ~30 ms and 19 MiB; callers
 * keep it off the per-request path with a cache of verified credentials. */
#include "secret.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SECRET_OPSLIMIT 2
#define SECRET_MEMLIMIT ((size_t)19 * 1024 * 1024)

_Static_assert(SECRET_HASH_MAX >= crypto_pwhash_STRBYTES, "SECRET_HASH_MAX too small");
_Static_assert(SECRET_HMAC_BYTES == crypto_auth_hmacsha256_BYTES, "HMAC size");
_Static_assert(SECRET_BOX_KEY_BYTES == crypto_secretbox_KEYBYTES, "secretbox key size");

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void on_init(void)
{
    if (sodium_init() < 0)
        util_assert_fail("sodium_init() >= 0", __FILE__, __LINE__);
}

void secret_init(void)
{
    AZ(pthread_once(&init_once, on_init));
}

int secret_hash_password(const char *pw, size_t pw_len, char out[SECRET_HASH_MAX])
{
    secret_init();
    memset(out, 0, SECRET_HASH_MAX);
    if (crypto_pwhash_str_alg(out, pw, pw_len, SECRET_OPSLIMIT, SECRET_MEMLIMIT,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -1;
    return 0;
}

bool secret_verify_password(const char *encoded, const char *pw, size_t pw_len)
{
    secret_init();
    /* Only our own Argon2id strings are accepted: a row edited to a cheap hash must not
     * weaken the check. */
    if (strncmp(encoded, "$argon2id$", 10) != 0)
        return false;
    return crypto_pwhash_str_verify(encoded, pw, pw_len) == 0;
}

void secret_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                        uint8_t out[SECRET_HMAC_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, msg, msg_len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void secret_random(void *p, size_t n)
{
    secret_init();
    randombytes_buf(p, n);
}

void secret_random_token(size_t n_bytes, char *out, size_t out_len)
{
    uint8_t raw[64];
    ASSERT(n_bytes <= sizeof(raw));
    ASSERT(out_len >= sodium_base64_ENCODED_LEN(n_bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    secret_random(raw, n_bytes);
    sodium_bin2base64(out, out_len, raw, n_bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

bool secret_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    if (a_len == 0)
        return true;
    return sodium_memcmp(a, b, a_len) == 0;
}

void secret_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}

#define SEALED_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

char *secret_seal(const uint8_t key[SECRET_BOX_KEY_BYTES], const char *text)
{
    secret_init();
    size_t text_len = strlen(text);
    size_t raw_len = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + text_len;
    uint8_t *raw = xmalloc(raw_len);
    randombytes_buf(raw, crypto_secretbox_NONCEBYTES);
    AZ(crypto_secretbox_easy(raw + crypto_secretbox_NONCEBYTES, (const uint8_t *)text,
                             text_len, raw, key));
    size_t prefix_len = strlen(SECRET_SEALED_PREFIX);
    size_t b64_len = sodium_base64_ENCODED_LEN(raw_len, SEALED_VARIANT);
    char *out = xmalloc(prefix_len + b64_len);
    memcpy(out, SECRET_SEALED_PREFIX, prefix_len);
    sodium_bin2base64(out + prefix_len, b64_len, raw, raw_len, SEALED_VARIANT);
    free(raw);
    return out;
}

bool secret_is_sealed(const char *s)
{
    return s != NULL && strncmp(s, SECRET_SEALED_PREFIX, strlen(SECRET_SEALED_PREFIX)) == 0;
}

char *secret_open(const uint8_t key[SECRET_BOX_KEY_BYTES], const char *s)
{
    secret_init();
    if (!secret_is_sealed(s))
        return NULL;
    const char *b64 = s + strlen(SECRET_SEALED_PREFIX);
    size_t b64_len = strlen(b64);
    size_t raw_max = b64_len / 4 * 3 + 3;
    uint8_t *raw = xmalloc(raw_max);
    size_t raw_len = 0;
    char *out = NULL;
    if (sodium_base642bin(raw, raw_max, b64, b64_len, NULL, &raw_len, NULL, SEALED_VARIANT) ==
            0 &&
        raw_len >= crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        size_t text_len = raw_len - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
        out = xmalloc(text_len + 1);
        if (crypto_secretbox_open_easy((uint8_t *)out, raw + crypto_secretbox_NONCEBYTES,
                                       raw_len - crypto_secretbox_NONCEBYTES, raw, key) != 0) {
            FREE_AND_NULL(out);
        } else {
            out[text_len] = '\0';
            if (strlen(out) != text_len) /* a NUL inside: not something we sealed */
                FREE_AND_NULL(out);
        }
    }
    free(raw);
    return out;
}
