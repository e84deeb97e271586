/* Error values carried from where a failure happens to the HTTP layer, which alone
 * turns them into responses. Codes and their HTTP statuses live in err_codes.def.
 * A message is written for the client: never paths, SQL, errno text or secrets. */
#ifndef MERIDIAN_ERR_H
#define MERIDIAN_ERR_H

enum err_code {
    ERR_NONE = 0,
#define X(name, status, oci, msg) ERR_##name,
#include "err_codes.def"
#undef X
    ERR_COUNT_
};

struct err {
    enum err_code code;
    int sys_errno;  /* errno at the failure, 0 if none; for logs only */
    char msg[200];  /* client-facing detail; empty means the code's default */
};

/* Sets *e (if e is non-NULL) to code with a printf-style message; returns -1 so that
 * callers can write `return err_set(e, ERR_X, "...")`. fmt may be NULL. */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* HTTP status, OCI code string and default message of a code. */
int err_http_status(enum err_code code);
const char *err_oci_code(enum err_code code);
const char *err_default_message(enum err_code code);

/* The message to show: e->msg if set, else the code's default. */
const char *err_message(const struct err *e);

#endif
