/* libFuzzer target for http_strict.c. Input: a raw request head, split the way
 * libmicrohttpd splits one: lines end at LF (a CR before it is dropped), the first line
 * is "METHOD TARGET VERSION" (target up to the last space), each other line "name:value"
 * with the whitespace after the colon skipped; NULs stay in. Checks, independently of
 * the checker's code, that an accepted head frames its body one way only: one Host on
 * HTTP/1.1, at most one Content-Length of digits, never Content-Length with
 * Transfer-Encoding, no control byte in the target or any value, no %00, token names;
 * that has_body agrees with those fields; and that the answer is deterministic. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http_strict.h"
#include "util.h"

#define FUZZ_MAX_FIELDS 64

static bool named(const struct http_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static bool has_control(const char *s, size_t len, bool is_space_ok)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0x7f || (c < 0x20 && c != '\t') || (c == '\t' && !is_space_ok) ||
            (c == ' ' && !is_space_ok))
            return true;
    }
    return false;
}

/* The value without surrounding spaces and tabs. */
static void trimmed(const struct http_field *f, const char **v, size_t *len)
{
    *v = f->value;
    *len = f->value_len;
    while (*len > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

static void check_accepted(const struct http_head *h)
{
    bool is_11 = h->version_len == 8 && memcmp(h->version, "HTTP/1.1", 8) == 0;
    ASSERT(is_11 || (h->version_len == 8 && memcmp(h->version, "HTTP/1.0", 8) == 0));
    ASSERT(h->method_len > 0 && !has_control(h->method, h->method_len, false));
    ASSERT(h->target_len > 0 && !has_control(h->target, h->target_len, false));
    for (size_t i = 0; i + 2 < h->target_len; i++)
        ASSERT(!(h->target[i] == '%' && h->target[i + 1] == '0' && h->target[i + 2] == '0'));
    size_t n_host = 0;
    size_t n_length = 0;
    size_t n_coding = 0;
    bool is_nonzero_length = false;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct http_field *f = &h->fields[i];
        ASSERT(f->name_len > 0 && !has_control(f->name, f->name_len, false));
        ASSERT(memchr(f->name, ':', f->name_len) == NULL);
        ASSERT(!has_control(f->value, f->value_len, true));
        const char *v;
        size_t v_len;
        trimmed(f, &v, &v_len);
        if (named(f, "Host")) {
            n_host++;
            ASSERT(memchr(v, ',', v_len) == NULL && memchr(v, ' ', v_len) == NULL);
        } else if (named(f, "Content-Length")) {
            n_length++;
            ASSERT(v_len > 0);
            for (size_t j = 0; j < v_len; j++) {
                ASSERT(v[j] >= '0' && v[j] <= '9');
                is_nonzero_length |= v[j] != '0';
            }
        } else if (named(f, "Transfer-Encoding")) {
            n_coding++;
            ASSERT(v_len == 7 && strncasecmp(v, "chunked", 7) == 0);
        }
    }
    ASSERT(is_11 ? n_host == 1 : n_host <= 1);
    ASSERT(n_length <= 1 && n_coding <= 1);
    ASSERT(!(n_length == 1 && n_coding == 1));
    ASSERT(n_coding == 0 || is_11);
    ASSERT(http_strict_has_body(h) == (n_coding == 1 || is_nonzero_length));
}

int fuzz_request_head_one(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *end = s + size;
    struct http_field fields[FUZZ_MAX_FIELDS];
    struct http_head h = {.fields = fields};

    const char *nl = memchr(s, '\n', size);
    const char *line_end = nl != NULL ? nl : end;
    if (line_end > s && line_end[-1] == '\r')
        line_end--;
    const char *sp1 = memchr(s, ' ', (size_t)(line_end - s));
    if (sp1 == NULL)
        return 0;
    const char *last_sp = NULL;
    for (const char *p = sp1 + 1; p < line_end; p++) {
        if (*p == ' ')
            last_sp = p;
    }
    if (last_sp == NULL)
        return 0;
    h.method = s;
    h.method_len = (size_t)(sp1 - s);
    h.target = sp1 + 1;
    h.target_len = (size_t)(last_sp - sp1 - 1);
    h.version = last_sp + 1;
    h.version_len = (size_t)(line_end - last_sp - 1);

    const char *p = nl != NULL ? nl + 1 : end;
    while (p < end && h.n_fields < FUZZ_MAX_FIELDS) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        const char *next = e != NULL ? e + 1 : end;
        if (e == NULL)
            e = end;
        if (e > p && e[-1] == '\r')
            e--;
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon != NULL) {
            const char *v = colon + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            fields[h.n_fields++] = (struct http_field){p, (size_t)(colon - p), v, (size_t)(e - v)};
        }
        p = next;
    }

    const char *why = http_strict_check(&h);
    ASSERT(why == http_strict_check(&h));
    if (why == NULL)
        check_accepted(&h);
    else
        ASSERT(strlen(why) > 0);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_request_head_one(data, size);
}
#endif
