/* URLs as they may be shown: a URL given by a user (a webhook's receiver) may carry a
 * secret in its userinfo ("https://user:password@host/") or its query ("?token=..."). Pure:
 * no I/O, no locks. */
#ifndef MERIDIAN_URL_H
#define MERIDIAN_URL_H

/* url with its userinfo replaced by "***", each query value by "***" (the names kept:
 * "?token=***&team=***"; a part without '=' becomes "***") and a fragment by "***":
 * "ci:s3cret@hooks.example/h?token=abc&x#top" after the scheme becomes
 * "***@hooks.example/h?token=***&***#***" (tests/unit/test_url.c has more).
 * Scheme, host, port and path are kept. A heap string the caller frees; NULL for NULL. */
char *url_redact(const char *url);

#endif
