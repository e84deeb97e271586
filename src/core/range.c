/* Range (RFC 9110 section 14) for blob GET, and the upload Content-Range of the
 * distribution-spec chunked upload. Pure: no I/O, no allocation. On RANGE_OK the
 * returned interval always satisfies start <= end < size. */
#include "range.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims RFC 9110 OWS (SP / HTAB) from both ends of [*s, *s + *len). */
static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* A 1*DIGIT value; one too large for uint64 is still well-formed, and it is
 * beyond any representation we hold, so it saturates instead of failing. */
static uint64_t parse_saturating(const char *s, size_t len)
{
    uint64_t v;
    if (util_parse_u64(s, len, &v) != 0)
        return UINT64_MAX;
    return v;
}

enum range_result range_parse_request(const char *s, uint64_t size, uint64_t *start, uint64_t *end)
{
    if (s == NULL)
        return RANGE_IGNORE;
    size_t len = strlen(s);
    trim_ows(&s, &len);

    /* ranges-specifier = range-unit "=" range-set; range units are case-insensitive. */
    static const char unit[] = "bytes";
    size_t unit_len = sizeof(unit) - 1;
    if (len <= unit_len || strncasecmp(s, unit, unit_len) != 0 || s[unit_len] != '=')
        return RANGE_IGNORE;
    s += unit_len + 1;
    len -= unit_len + 1;

    /* We honour one range only; RFC 9110 14.2 lets a server ignore Range, which
     * is simpler and safer than multipart/byteranges. */
    if (memchr(s, ',', len) != NULL)
        return RANGE_IGNORE;
    trim_ows(&s, &len);

    const char *dash = memchr(s, '-', len);
    if (dash == NULL)
        return RANGE_IGNORE;
    const char *first = s;
    size_t first_len = (size_t)(dash - s);
    const char *last = dash + 1;
    size_t last_len = len - first_len - 1;

    uint64_t a;
    uint64_t b;
    if (first_len == 0) {
        /* suffix-range = "-" suffix-length */
        if (!all_digits(last, last_len))
            return RANGE_IGNORE;
        uint64_t n = parse_saturating(last, last_len);
        /* RFC 9110 14.1.1: a zero suffix-length is unsatisfiable. A zero-length
         * representation has no byte to send, so we answer 416 for it too. */
        if (n == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        a = n >= size ? 0 : size - n;
        b = size - 1;
    } else {
        /* int-range = first-pos "-" [ last-pos ] */
        if (!all_digits(first, first_len))
            return RANGE_IGNORE;
        a = parse_saturating(first, first_len);
        if (last_len == 0) {
            b = UINT64_MAX;
        } else {
            if (!all_digits(last, last_len))
                return RANGE_IGNORE;
            b = parse_saturating(last, last_len);
            /* RFC 9110 14.1.1: last-pos < first-pos makes the range-spec invalid; like
             * nginx and Go's net/http we answer 416 rather than send the whole blob,
             * so a client with a bad resume offset learns of it. */
            if (a > b)
                return RANGE_UNSATISFIABLE;
        }
        if (a >= size)
            return RANGE_UNSATISFIABLE;
        if (b >= size)
            b = size - 1;
    }
    *start = a;
    *end = b;
    return RANGE_OK;
}

int range_parse_content_range(const char *s, uint64_t *start, uint64_t *end)
{
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    trim_ows(&s, &len);
    /* distribution-spec chunked upload: Content-Range: <start>-<end>. Some clients
     * send the RFC 9110 form, "bytes <start>-<end>/<complete-length or *>": its unit and
     * its length (the blob's, which the upload's final PUT states) add nothing here. */
    uint64_t complete = 0;
    bool has_complete = false; /* "*" or absent: not known */
    if (len > 6 && strncasecmp(s, "bytes", 5) == 0 && (s[5] == ' ' || s[5] == '=')) {
        s += 6;
        len -= 6;
        const char *slash = memchr(s, '/', len);
        if (slash != NULL) {
            size_t tail = len - (size_t)(slash - s) - 1;
            has_complete = !(tail == 1 && slash[1] == '*');
            if (has_complete && util_parse_u64(slash + 1, tail, &complete) != 0)
                return -1;
            len = (size_t)(slash - s);
        }
    }
    const char *dash = memchr(s, '-', len);
    if (dash == NULL)
        return -1;
    size_t first_len = (size_t)(dash - s);
    uint64_t a;
    uint64_t b;
    if (util_parse_u64(s, first_len, &a) != 0)
        return -1;
    if (util_parse_u64(dash + 1, len - first_len - 1, &b) != 0)
        return -1;
    if (b < a || (has_complete && b >= complete)) /* RFC 9110 14.4: within the length */
        return -1;
    *start = a;
    *end = b;
    return 0;
}

bool range_none_match_fails(const char *inm, const char *etag)
{
    if (inm == NULL)
        return false;
    const char *want = etag;
    if (strncmp(want, "W/", 2) == 0)
        want += 2;
    size_t want_len = strlen(want);
    const char *p = inm;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        trim_ows(&s, &len);
        if (len == 1 && s[0] == '*')
            return true;
        if (len >= 2 && s[0] == 'W' && s[1] == '/') {
            s += 2;
            len -= 2;
        }
        if (len >= 2 && s[0] == '"' && s[len - 1] == '"' && len == want_len &&
            memcmp(s, want, len) == 0)
            return true;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return false;
}

bool range_if_range_matches(const char *if_range, const char *etag)
{
    if (if_range == NULL)
        return true;
    const char *s = if_range;
    size_t len = strlen(s);
    trim_ows(&s, &len);
    /* An entity-tag starts with DQUOTE (strong) or W/ (weak); anything else is an
     * HTTP-date, which cannot match (see the header). */
    size_t etag_len = strlen(etag);
    return len >= 2 && s[0] == '"' && len == etag_len && memcmp(s, etag, len) == 0;
}

bool range_if_match_holds(const char *if_match, const char *etag)
{
    if (if_match == NULL)
        return true;
    size_t want_len = etag ? strlen(etag) : 0;
    const char *p = if_match;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        trim_ows(&s, &len);
        /* "*": any current representation; otherwise the strong comparison (a weak
         * tag, W/"...", never matches). */
        if (etag != NULL && len == 1 && s[0] == '*')
            return true;
        if (etag != NULL && len >= 2 && s[0] == '"' && len == want_len &&
            memcmp(s, etag, len) == 0)
            return true;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return false;
}
