/* URLs as they may be shown (url.h). */
#include "url.h"

#include <string.h>

#include "buf.h"
#include "util.h"

#define URL_REDACTED "***"

/* Appends the query s (n bytes, after '?') with every value replaced. */
static void append_query(struct buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t end = i;
        while (end < n && s[end] != '&')
            end++;
        const char *eq = memchr(s + i, '=', end - i);
        if (eq != NULL) {
            buf_append(b, s + i, (size_t)(eq - (s + i)) + 1);
            buf_appends(b, URL_REDACTED);
        } else if (end > i) {
            buf_appends(b, URL_REDACTED); /* "?secret": a bare token */
        }
        if (end < n)
            buf_append(b, "&", 1);
        i = end + 1;
    }
}

char *url_redact(const char *url)
{
    if (url == NULL)
        return NULL;
    size_t len = strlen(url);
    struct buf b;
    buf_init(&b, 2 * len + 64);
    const char *sep = strstr(url, "://");
    const char *auth = sep != NULL ? sep + 3 : url;
    buf_append(&b, url, (size_t)(auth - url));
    /* The authority ends at the first '/', '?' or '#'; its userinfo at its last '@'. */
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; sep != NULL && i < auth_len; i++) {
        if (auth[i] == '@')
            at = auth + i;
    }
    const char *rest = auth;
    if (at != NULL) {
        buf_appends(&b, URL_REDACTED);
        rest = at; /* from the '@' */
    }
    size_t path_len = strcspn(rest, "?#");
    buf_append(&b, rest, path_len);
    const char *p = rest + path_len;
    if (*p == '?') {
        size_t q_len = strcspn(p + 1, "#");
        buf_append(&b, "?", 1);
        append_query(&b, p + 1, q_len);
        p += 1 + q_len;
    }
    if (*p == '#')
        buf_appends(&b, p[1] != '\0' ? "#" URL_REDACTED : "#");
    char *out = buf_steal(&b, NULL);
    return out != NULL ? out : xstrdup("");
}
