/* Log lines are formatted into one buffer and written with a single write(2), so
 * lines from concurrent threads never interleave. One event is one line: control bytes
 * in a message (a decoded %0A or %1b in a path, say) are written escaped, never raw. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_current_level = LOG_LEVEL_INFO;
static char region_name[64] = "local";

static const char *level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_level level, const char *region)
{
    log_current_level = level;
    if (region)
        snprintf(region_name, sizeof(region_name), "%s", region);
}

int log_parse_level(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static const char hex_digits[] = "0123456789abcdef";

/* Writes the escape of byte c into esc[4]; returns its length. */
static size_t escape_byte(unsigned char c, char esc[4])
{
    if (c > 0x20 && c < 0x7f && c != '\\' && c != '"') {
        esc[0] = (char)c;
        return 1;
    }
    if (c == '\\' || c == '"') {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    esc[0] = '\\';
    esc[1] = 'x';
    esc[2] = hex_digits[c >> 4];
    esc[3] = hex_digits[c & 15];
    return 4;
}

const char *log_escape(char *out, size_t out_len, const char *s, size_t s_len)
{
    char esc[4];
    size_t total = 0;
    if (out_len == 0)
        return out;
    for (size_t i = 0; i < s_len; i++)
        total += escape_byte((unsigned char)s[i], esc);
    /* Cut: keep room for "..." and the NUL, and never split an escape. */
    size_t room = total < out_len ? out_len - 1 : (out_len > 4 ? out_len - 4 : 0);
    size_t n = 0;
    for (size_t i = 0; i < s_len; i++) {
        size_t esc_len = escape_byte((unsigned char)s[i], esc);
        if (n + esc_len > room)
            break;
        memcpy(out + n, esc, esc_len);
        n += esc_len;
    }
    if (total >= out_len && out_len > 4) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* Rewrites control bytes of line[0, *len) as \xNN, within line_max bytes. */
static void escape_controls(char *line, size_t line_max, size_t *len)
{
    size_t i = 0;
    while (i < *len && (unsigned char)line[i] >= 0x20 && line[i] != 0x7f)
        i++;
    if (i == *len)
        return;
    char tail[2048];
    size_t tail_len = *len - i;
    if (tail_len > sizeof(tail))
        tail_len = sizeof(tail);
    memcpy(tail, line + i, tail_len);
    size_t n = i;
    for (size_t j = 0; j < tail_len && n + 4 < line_max; j++) {
        unsigned char c = (unsigned char)tail[j];
        if (c >= 0x20 && c != 0x7f) {
            line[n++] = (char)c;
            continue;
        }
        line[n++] = '\\';
        line[n++] = 'x';
        line[n++] = hex_digits[c >> 4];
        line[n++] = hex_digits[c & 15];
    }
    *len = n;
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s region=%s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], region_name, module);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    escape_controls(line, sizeof(line) - 1, &len);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
