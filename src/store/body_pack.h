/* Manifest bodies as the metastore keeps them: deflated with a fixed dictionary of the
 * strings every OCI and Docker manifest repeats (media types, field names), so a small
 * manifest takes about a third of its bytes. The bytes served are always the pushed ones. */
#ifndef MERIDIAN_BODY_PACK_H
#define MERIDIAN_BODY_PACK_H

#include <stddef.h>

#include "err.h"

/* The stored form of body[0, len): *out (malloc'd, *out_len bytes) or, when packing does
 * not make it smaller and it cannot be mistaken for a packed body, NULL with the body to
 * be stored as it is. An empty body stays empty (NULL). */
void body_pack(const void *body, size_t len, unsigned char **out, size_t *out_len);

/* The body of a stored form: *out (malloc'd, NUL-terminated, *out_len bytes without the
 * NUL). A stored form written before packing existed is its own body. -1 with e set
 * (ERR_INTERNAL) if a packed form is damaged. */
int body_unpack(const void *stored, size_t len, char **out, size_t *out_len, struct err *e);

#endif
