/* Wire formats of the replication stream: events as JSON objects and version vectors
 * as "origin:seq,origin:seq" query values. Pure: no I/O, fuzzable. */
#ifndef MERIDIAN_REPL_CODEC_H
#define MERIDIAN_REPL_CODEC_H

#include <jansson.h>
#include <stdbool.h>

#include "buf.h"
#include "err.h"
#include "metastore.h"

/* Region names: 1-63 of [a-z0-9-], starting with a letter or digit. */
bool repl_codec_is_valid_region(const char *s);

/* Appends ev as one JSON object to out. */
void repl_codec_event_to_json(const struct meta_event *ev, struct buf *out);
/* Parses one event object; ERR_BAD_REQUEST naming the bad field. *out is filled with
 * heap copies (meta_event_fini frees them). */
int repl_codec_event_from_json(json_t *obj, struct meta_event *out, struct err *e);

/* "a:3,b:7" <-> vv. Parsing rejects bad names, bad numbers and duplicates. */
void repl_codec_vv_to_string(const struct meta_vv *vv, struct buf *out);
int repl_codec_vv_parse(const char *s, struct meta_vv *out, struct err *e);

#endif
