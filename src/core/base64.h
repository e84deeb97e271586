/* Standard base64 (RFC 4648, with padding). Pure. */
#ifndef MERIDIAN_BASE64_H
#define MERIDIAN_BASE64_H

#include <stddef.h>

/* Encodes n bytes; returns a NUL-terminated heap string. */
char *base64_encode(const void *p, size_t n);
/* Decodes s (s_len chars); returns heap bytes and their length, or NULL when s is not
 * valid padded base64. */
void *base64_decode(const char *s, size_t s_len, size_t *out_len);

#endif
