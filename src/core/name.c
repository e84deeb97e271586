/* Repository names, tags, reference shapes and scope patterns. Pure: no I/O, no
 * allocation, no locale. Every function takes explicit lengths (or NUL-terminated
 * strings where the header says so) and never reads past them. */
#include "name.h"

#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* Length of the separator starting at s[i] (within one path component), or 0 if
 * s[i..] does not start a valid separator. Separators are (\.|_|__|-+); a separator
 * must be followed by an alnum, which the caller checks. */
static size_t separator_len(const char *s, size_t s_len, size_t i)
{
    if (s[i] == '.')
        return 1;
    if (s[i] == '_')
        return (i + 1 < s_len && s[i + 1] == '_') ? 2 : 1;
    if (s[i] == '-') {
        size_t n = 0;
        while (i + n < s_len && s[i + n] == '-')
            n++;
        return n;
    }
    return 0;
}

bool name_is_valid_repo(const char *s, size_t s_len)
{
    /* distribution-spec "Pulling manifests":
     * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
     * Walked as: component := alnum-run (separator alnum-run)*, components joined by
     * single '/'. A separator or '/' is only accepted right after an alnum run and
     * must be followed by one, which rules out leading, trailing and doubled ones. */
    if (s == NULL || s_len == 0 || s_len > NAME_MAX_BYTES)
        return false;
    size_t i = 0;
    for (;;) {
        if (i >= s_len || !is_lower_alnum(s[i]))
            return false;
        while (i < s_len && is_lower_alnum(s[i]))
            i++;
        if (i == s_len)
            return true;
        if (s[i] == '/') {
            i++;
            continue;
        }
        size_t n = separator_len(s, s_len, i);
        if (n == 0)
            return false;
        i += n;
    }
}

bool name_is_valid_tag(const char *s, size_t s_len)
{
    /* distribution-spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
    if (s == NULL || s_len == 0 || s_len > TAG_MAX_BYTES)
        return false;
    if (!is_alnum(s[0]) && s[0] != '_')
        return false;
    for (size_t i = 1; i < s_len; i++) {
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    }
    return true;
}

bool name_reference_is_digest(const char *s, size_t s_len)
{
    /* Tags cannot contain ':', digests always do; validation happens elsewhere. */
    return s != NULL && memchr(s, ':', s_len) != NULL;
}

bool name_matches_pattern(const char *pattern, const char *name)
{
    if (pattern == NULL || name == NULL)
        return false;
    /* Iterative glob with one backtrack point (the last '*' seen): on a mismatch,
     * let that star swallow one more character and retry. This is O(n*m) worst
     * case and has no recursion, so hostile patterns cannot blow the stack. */
    const char *p = pattern;
    const char *n = name;
    const char *star_p = NULL;
    const char *star_n = NULL;
    while (*n != '\0') {
        if (*p == '*') {
            star_p = p++;
            star_n = n;
        } else if (*p == *n) {
            p++;
            n++;
        } else if (star_p != NULL) {
            p = star_p + 1;
            n = ++star_n;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}
