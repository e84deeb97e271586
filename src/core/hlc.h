/* Hybrid logical clock (Kulkarni et al.): 48 bits of wall-clock milliseconds and a
 * 16-bit logical counter in one uint64_t, so timestamps compare as integers, stay
 * close to real time, and never go backwards on one node even when its clock does.
 * Pure: the caller passes the wall clock and holds any lock. */
#ifndef MERIDIAN_HLC_H
#define MERIDIAN_HLC_H

#include <stdbool.h>
#include <stdint.h>

#define HLC_LOGICAL_BITS 16
#define HLC_LOGICAL_MASK ((UINT64_C(1) << HLC_LOGICAL_BITS) - 1)
/* Clocks at or above this (wall time past the year 4000) are refused from peers: one
 * near 2^63 would carry every region's clock past what a signed 64-bit column holds. */
#define HLC_MAX_VALID (UINT64_C(1) << 62)

/* Physical milliseconds of a timestamp. */
static inline int64_t hlc_wall_ms(uint64_t t)
{
    return (int64_t)(t >> HLC_LOGICAL_BITS);
}

/* Timestamp for a local event: > last, and >= wall_ms. Returns the new clock. */
uint64_t hlc_tick(uint64_t last, int64_t wall_ms);
/* Clock after receiving remote timestamp `remote`: > last and > remote. */
uint64_t hlc_observe(uint64_t last, uint64_t remote, int64_t wall_ms);

/* Last-writer-wins order of two writes: by HLC, ties broken by origin region name.
 * Returns true when (a_hlc, a_origin) wins over (b_hlc, b_origin). Total and
 * deterministic: every region picks the same winner whatever the arrival order. */
bool hlc_lww_wins(uint64_t a_hlc, const char *a_origin, uint64_t b_hlc, const char *b_origin);

#endif
