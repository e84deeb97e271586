/* HTTP Range (blob GET), upload Content-Range parsing, and the entity-tag conditions
 * of a request (If-Range, If-None-Match, If-Match). Pure: no I/O. */
#ifndef MERIDIAN_RANGE_H
#define MERIDIAN_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum range_result {
    RANGE_OK = 0,            /* *start..*end (inclusive) is the one satisfiable range */
    RANGE_IGNORE = 1,        /* malformed or multi-range: serve the whole body (RFC 9110 14.2) */
    RANGE_UNSATISFIABLE = 2, /* outside the representation, or last < first: answer 416 */
};

/* Parses a Range header value such as "bytes=0-99", "bytes=100-", "bytes=-50"
 * against a representation of `size` bytes. Only single ranges are honoured. s may be
 * NULL (RANGE_IGNORE). last-pos beyond the end is clipped to size - 1; first-pos >= size,
 * last-pos < first-pos, "bytes=-0" and any range on a 0-byte representation are
 * RANGE_UNSATISFIABLE; other syntax errors, other units and lists are RANGE_IGNORE.
 * *start and *end are written only on RANGE_OK, and then start <= end < size. */
enum range_result range_parse_request(const char *s, uint64_t size, uint64_t *start, uint64_t *end);

/* Parses an upload Content-Range "<start>-<end>" (inclusive; a leading "bytes "
 * or "bytes=" is tolerated). 0 on success with end >= start, -1 otherwise (outputs
 * then untouched). */
int range_parse_content_range(const char *s, uint64_t *start, uint64_t *end);

/* RFC 9110 13.1.5: true when a Range may be honoured given the If-Range value
 * if_range (NULL: no If-Range, true) and the representation's strong entity tag etag
 * (quoted, e.g. "\"sha256:...\""). Entity tags compare strongly: a weak tag (W/)
 * never matches. A date never matches either: no Last-Modified is sent, so no date can
 * be a strong validator of this representation. false means: ignore Range, send 200
 * with the whole body. */
bool range_if_range_matches(const char *if_range, const char *etag);

/* RFC 9110 13.1.2: true when the If-None-Match value inm (NULL: none, false) names the
 * representation whose entity tag is etag (quoted): "*", or a comma-separated list with
 * one tag equal to it under the weak comparison (a W/ prefix on either side is ignored).
 * A GET or HEAD then answers 304 Not Modified, without a body. */
bool range_none_match_fails(const char *inm, const char *etag);

/* RFC 9110 13.1.1: true when the If-Match value if_match (NULL: none, true) holds for the
 * current representation whose strong entity tag is etag (quoted; NULL: there is none):
 * "*" when there is one, or a comma-separated list with one tag equal to it under the
 * strong comparison. A write whose If-Match does not hold answers 412 and changes
 * nothing. */
bool range_if_match_holds(const char *if_match, const char *etag);

#endif
