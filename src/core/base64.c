/* base64 for manifest bodies in replication events and Basic credentials. */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>

#include "util.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *p, size_t n)
{
    const unsigned char *in = p;
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[j++] = alphabet[(v >> 18) & 63];
        out[j++] = alphabet[(v >> 12) & 63];
        out[j++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[j++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    out[j] = '\0';
    return out;
}

static int value_of(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void *base64_decode(const char *s, size_t s_len, size_t *out_len)
{
    if (s_len % 4 != 0)
        return NULL;
    unsigned char *out = xmalloc(s_len / 4 * 3 + 1);
    size_t j = 0;
    for (size_t i = 0; i < s_len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            /* Padding only in the last group's final one or two places. */
            if (c == '=' && i + 4 == s_len && k >= 2 && (k == 3 || s[i + 3] == '=')) {
                v[k] = 0;
                pad++;
                continue;
            }
            v[k] = value_of(c);
            if (v[k] < 0 || pad) {
                free(out);
                return NULL;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[j++] = (unsigned char)(x >> 16);
        if (pad < 2)
            out[j++] = (unsigned char)(x >> 8);
        if (pad < 1)
            out[j++] = (unsigned char)x;
    }
    *out_len = j;
    return out;
}
