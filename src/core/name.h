/* Repository names and references by the distribution-spec grammar. Pure: no I/O. */
#ifndef MERIDIAN_NAME_H
#define MERIDIAN_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define NAME_MAX_BYTES 255 /* distribution-spec: name + hostname SHOULD fit in 255 */
#define TAG_MAX_BYTES 128

/* distribution-spec "Pulling manifests":
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * and at most NAME_MAX_BYTES long. */
bool name_is_valid_repo(const char *s, size_t s_len);

/* Tag of s_len bytes: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
bool name_is_valid_tag(const char *s, size_t s_len);

/* A manifest reference is a tag or a digest; this says which shape it has
 * (contains ':' -> digest) without validating it. */
bool name_reference_is_digest(const char *s, size_t s_len);

/* Repository pattern match for scopes such as "golden/<star>" or "<star>", where
 * <star> is '*': it matches any run of characters (also empty), including '/'. No
 * other character is special. NULL pattern or name never match. */
bool name_matches_pattern(const char *pattern, const char *name);

#endif
