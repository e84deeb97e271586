/* One line per event on stderr: time, level, region, request id, module, message.
 * Macros test the level before formatting. Never log tokens, passwords or
 * Authorization headers. */
#ifndef MERIDIAN_LOG_H
#define MERIDIAN_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern enum log_level log_current_level;

/* Sets the level and the region name printed on every line (copied). */
void log_setup(enum log_level level, const char *region);
/* Parses "error|warn|info|debug"; -1 if unknown. */
int log_parse_level(const char *s, enum log_level *out);
/* Writes s (s_len bytes, which may hold NUL) into out (out_len bytes) as one log field
 * value: printable ASCII passes, except that \\ and \" are escaped and space, like every
 * other byte, becomes \xNN; so a client cannot break a line, forge a key=value field or
 * send terminal escapes. Cut with "..." when out is too small; always NUL-terminated.
 * Returns out. */
const char *log_escape(char *out, size_t out_len, const char *s, size_t s_len);
/* Formats one line; control bytes in it are written as \xNN (see log_escape for fields). */
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_at(lvl, mod, ...)                  \
    do {                                       \
        if ((lvl) <= log_current_level)        \
            log_write((lvl), (mod), __VA_ARGS__); \
    } while (0)
#define log_error(mod, ...) log_at(LOG_LEVEL_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_at(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_at(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...) log_at(LOG_LEVEL_DEBUG, mod, __VA_ARGS__)

#endif
