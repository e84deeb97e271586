/* libFuzzer target for range.c. Input: first byte picks the representation size
 * (small sizes are where the edge cases live; 255 takes the size from the next 8
 * bytes), the rest is the header value. Checks: a RANGE_OK interval lies inside
 * the representation, and re-parsing the canonical form of any accepted Range or
 * Content-Range gives the same answer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "range.h"
#include "util.h"

int fuzz_range_one(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint64_t rep_size = data[0];
    data++;
    size--;
    if (rep_size == 255 && size >= 8) {
        memcpy(&rep_size, data, 8);
        data += 8;
        size -= 8;
    }
    char *s = xstrndup((const char *)data, size);
    char canon[64];

    uint64_t start = 0;
    uint64_t end = 0;
    enum range_result r = range_parse_request(s, rep_size, &start, &end);
    ASSERT(r == RANGE_OK || r == RANGE_IGNORE || r == RANGE_UNSATISFIABLE);
    if (r == RANGE_OK) {
        ASSERT(rep_size > 0);
        ASSERT(start <= end);
        ASSERT(end < rep_size);
        uint64_t start2 = 0;
        uint64_t end2 = 0;
        snprintf(canon, sizeof(canon), "bytes=%" PRIu64 "-%" PRIu64, start, end);
        ASSERT(range_parse_request(canon, rep_size, &start2, &end2) == RANGE_OK);
        ASSERT(start2 == start && end2 == end);
    }

    if (range_parse_content_range(s, &start, &end) == 0) {
        ASSERT(start <= end);
        uint64_t start2 = 0;
        uint64_t end2 = 0;
        snprintf(canon, sizeof(canon), "%" PRIu64 "-%" PRIu64, start, end);
        ASSERT(range_parse_content_range(canon, &start2, &end2) == 0);
        ASSERT(start2 == start && end2 == end);
    }
    free(s);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_range_one(data, size);
}
#endif
