/* Hybrid logical clock arithmetic and the last-writer-wins order. */
#include "hlc.h"

#include <string.h>

static uint64_t from_wall(int64_t wall_ms)
{
    return wall_ms > 0 ? (uint64_t)wall_ms << HLC_LOGICAL_BITS : 0;
}

uint64_t hlc_tick(uint64_t last, int64_t wall_ms)
{
    uint64_t w = from_wall(wall_ms);
    return w > last ? w : last + 1;
}

uint64_t hlc_observe(uint64_t last, uint64_t remote, int64_t wall_ms)
{
    uint64_t m = last > remote ? last : remote;
    uint64_t w = from_wall(wall_ms);
    return w > m ? w : m + 1;
}

bool hlc_lww_wins(uint64_t a_hlc, const char *a_origin, uint64_t b_hlc, const char *b_origin)
{
    if (a_hlc != b_hlc)
        return a_hlc > b_hlc;
    return strcmp(a_origin, b_origin) > 0;
}
