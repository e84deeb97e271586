/* Secrets: memory-hard password hashes (Argon2id), HMAC-SHA256, random secrets and
 * constant-time comparison. The only file that includes <sodium.h>. Nothing here
 * logs, and nothing here keeps a copy of a secret it was given. */
#ifndef MERIDIAN_SECRET_H
#define MERIDIAN_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_HMAC_BYTES 32
#define SECRET_HASH_MAX 160 /* an encoded "$argon2id$v=19$m=...,t=...,p=1$salt$hash" */

/* Initialises libsodium; safe to call more than once and from several threads.
 * Aborts if the library cannot start (no usable randomness). */
void secret_init(void);

/* Hashes password (pw_len bytes) with Argon2id and writes the encoded string (salt and
 * parameters included, NUL-terminated) to out. 0, or -1 when out of memory. */
int secret_hash_password(const char *pw, size_t pw_len, char out[SECRET_HASH_MAX]);

/* Does password match an encoded hash from secret_hash_password? Takes as long as one
 * hash (tens of milliseconds): callers cache successes, never failures. */
bool secret_verify_password(const char *encoded, const char *pw, size_t pw_len);

/* HMAC-SHA256 of msg under key. */
void secret_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                        uint8_t out[SECRET_HMAC_BYTES]);

/* Fills p with n cryptographically random bytes. */
void secret_random(void *p, size_t n);

/* Writes a random secret of n_bytes of entropy as URL-safe base64 without padding
 * (NUL-terminated) to out, which must hold 4 * n_bytes / 3 + 2 chars. */
void secret_random_token(size_t n_bytes, char *out, size_t out_len);

/* Constant-time equality of two byte strings; unequal lengths compare unequal (the
 * length itself is not secret). */
bool secret_equal(const void *a, size_t a_len, const void *b, size_t b_len);

/* Secrets at rest: authenticated encryption (crypto_secretbox: XSalsa20-Poly1305) under a
 * 32-byte key, with a fresh random nonce per value. A sealed value is text:
 * SECRET_SEALED_PREFIX followed by URL-safe base64 of nonce || MAC || ciphertext. */
#define SECRET_BOX_KEY_BYTES 32
#define SECRET_SEALED_PREFIX "enc:v1:"

/* Seals NUL-terminated text under key: a heap string (caller frees). */
char *secret_seal(const uint8_t key[SECRET_BOX_KEY_BYTES], const char *text);
/* Does s look like the output of secret_seal (prefix only; says nothing of the key)? */
bool secret_is_sealed(const char *s);
/* Opens a sealed value: the heap plaintext (caller frees), or NULL when s is not a value
 * sealed under key (malformed, tampered with, or sealed under another key). */
char *secret_open(const uint8_t key[SECRET_BOX_KEY_BYTES], const char *s);

/* Overwrites n bytes at p in a way the compiler does not remove. */
void secret_wipe(void *p, size_t n);

#endif
