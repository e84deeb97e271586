/* The web console's static files under /console/ (HTML, JavaScript, CSS, map data):
 * served from one directory (--console-dir, default console/ beside the binary), GET and
 * HEAD only. The console itself talks to the management API like any client. */
#ifndef MERIDIAN_CONSOLE_H
#define MERIDIAN_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

#define CONSOLE_PREFIX "/console"

/* Serves req->path (under CONSOLE_PREFIX) from the console directory: 301 from
 * "/console" to "/console/", index.html for "/console/", 304 on a matching
 * If-None-Match, 404 for anything missing, hidden, outside the directory or of a type
 * not in the table. */
void console_serve(struct http_req *req);

/* Is rel (the path below /console/, "" for the directory) a name the console may
 * serve: letters, digits, '.', '_', '-' and '/' between segments, no segment empty or
 * starting with '.', at most 200 bytes? Pure, for tests. */
bool console_is_safe_path(const char *rel, size_t rel_len);

/* The Content-Type for a file name by its extension, or NULL when the console serves
 * no such type. Pure, for tests. */
const char *console_content_type(const char *name);

#endif
