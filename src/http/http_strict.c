/* Strict request-head checks (RFC 9112, RFC 9110 field syntax). Each rule refuses
 * something a lenient parser and a strict one would frame differently, or that could
 * cut a string short (NUL) on its way to the router, the log or the metastore. */
#include "http_strict.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 section 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* RFC 9110 section 5.5: field-value is visible characters, SP and HTAB (obs-text too). */
static bool is_field_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* The value without the optional whitespace around it (RFC 9110 section 5.5). */
static void trim_ows(const struct http_field *f, const char **v, size_t *len)
{
    const char *p = f->value;
    size_t n = f->value_len;
    while (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    *v = p;
    *len = n;
}

static bool is_name(const struct http_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* RFC 9112 section 3.2: uri-host [ ":" port ]. Letters, digits and the characters of
 * names, IPv4 and bracketed IPv6 literals; no comma, space or userinfo. */
static bool is_host_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '[' ||
                  c == ']' || c == '%';
        if (!ok)
            return false;
    }
    return true;
}

static bool is_digits(const char *s, size_t len)
{
    if (len == 0 || len > 19) /* 19 digits always fit in 63 bits */
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static bool is_version(const struct http_head *h, const char *v)
{
    return h->version_len == strlen(v) && memcmp(h->version, v, h->version_len) == 0;
}

size_t http_query_args_count(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    if (q == NULL)
        return 0;
    size_t n = 1;
    for (const char *p = q + 1; p < target + len; p++)
        n += *p == '&';
    return n;
}

bool http_query_is_too_big(const char *target, size_t len)
{
    size_t n = http_query_args_count(target, len);
    return n > 0 && len + n * HTTP_QUERY_ARG_COST > HTTP_QUERY_BUDGET;
}

static const char *check_target(const char *s, size_t len)
{
    if (len == 0)
        return "empty request-target";
    if (http_query_is_too_big(s, len))
        return "too many query arguments for their length";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return "control byte or space in the request-target";
        /* Decoded, %00 would end the path early: /v2/a%00/b would be routed as /v2/a. */
        if (c == '%' && i + 2 < len && s[i + 1] == '0' && s[i + 2] == '0')
            return "encoded NUL (%00) in the request-target";
    }
    return NULL;
}

const char *http_strict_check(const struct http_head *h)
{
    if (!is_token(h->method, h->method_len))
        return "method is not a token";
    bool is_11 = is_version(h, "HTTP/1.1");
    if (!is_11 && !is_version(h, "HTTP/1.0"))
        return "HTTP version is neither 1.0 nor 1.1";
    const char *why = check_target(h->target, h->target_len);
    if (why != NULL)
        return why;

    size_t n_host = 0;
    size_t n_length = 0;
    size_t n_coding = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct http_field *f = &h->fields[i];
        /* "Transfer-Encoding : chunked" has a space in its name: one parser drops the
         * line, another trims it; refuse both readings. */
        if (!is_token(f->name, f->name_len))
            return "header field name is not a token";
        if (!is_field_value(f->value, f->value_len))
            return "control byte (NUL, CR, LF, ...) in a header field value";
        const char *v;
        size_t v_len;
        trim_ows(f, &v, &v_len);
        if (is_name(f, "Host")) {
            if (++n_host > 1)
                return "more than one Host";
            if (!is_host_value(v, v_len))
                return "Host is not host[:port]";
        } else if (is_name(f, "Content-Length")) {
            if (++n_length > 1)
                return "more than one Content-Length";
            if (!is_digits(v, v_len))
                return "Content-Length is not a number";
        } else if (is_name(f, "Transfer-Encoding")) {
            if (++n_coding > 1)
                return "more than one Transfer-Encoding";
            if (v_len != 7 || strncasecmp(v, "chunked", 7) != 0)
                return "transfer coding other than chunked";
        }
    }
    if (is_11 && n_host == 0)
        return "HTTP/1.1 request without Host";
    if (n_coding > 0 && n_length > 0)
        return "both Content-Length and Transfer-Encoding";
    /* RFC 9112 section 6.1: Transfer-Encoding in a 1.0 request is faulty framing. */
    if (n_coding > 0 && !is_11)
        return "Transfer-Encoding in an HTTP/1.0 request";
    return NULL;
}

bool http_strict_has_body(const struct http_head *h)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct http_field *f = &h->fields[i];
        if (is_name(f, "Transfer-Encoding"))
            return true;
        if (is_name(f, "Content-Length")) {
            for (size_t j = 0; j < f->value_len; j++) {
                if (f->value[j] >= '1' && f->value[j] <= '9')
                    return true;
            }
        }
    }
    return false;
}
