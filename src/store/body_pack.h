/* Manifest bodies as the metastore keeps them: deflated with a fixed dictionary of the
 * strings every OCI and Docker manifest repeats (media types, field names), so a small
 * manifest takes about a third of its bytes. The bytes served are always the pushed ones. */
#ifndef MERIDIAN_BODY_PACK_H
#define MERIDIAN_BODY_PACK_H

#include <stddef.h>

#include "err.h"

/* The stored form of body[0, len), *stored_len bytes: body itself when packing does not
 * make it smaller and it cannot be mistaken for a packed body (an empty body stays empty),
 * else a packed copy, also left in *packed (malloc'd: free it once stored; NULL when body
 * itself is returned). */
const void *body_stored(const void *body, size_t len, unsigned char **packed, size_t *stored_len);

/* The body of a stored form: *out (malloc'd, NUL-terminated, *out_len bytes without the
 * NUL). A stored form written before packing existed is its own body. -1 with e set
 * (ERR_INTERNAL) if a packed form is damaged. */
int body_unpack(const void *stored, size_t len, char **out, size_t *out_len, struct err *e);

#endif
