/* Growable byte buffer with a hard maximum (like curl's dynbuf). Once an append
 * would pass the maximum the buffer is marked too big and refuses further appends;
 * callers check buf_is_too_big once at the end. Contents are always NUL-terminated. */
#ifndef MERIDIAN_BUF_H
#define MERIDIAN_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max_bytes;
    bool is_too_big;
};

void buf_init(struct buf *b, size_t max_bytes);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b);
/* 0 on success, -1 (and is_too_big set) when the maximum would be passed. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int buf_append_json_string(struct buf *b, const char *s);
/* Moves the contents out (caller frees) and re-initialises b empty. */
char *buf_steal(struct buf *b, size_t *len);

#endif
