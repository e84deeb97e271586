/* The error table expanded into lookups, and err_set. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const struct {
    int status;
    const char *oci;
    const char *msg;
} table[ERR_COUNT_] = {
    [ERR_NONE] = {200, "", ""},
#define X(name, status, oci, msg) [ERR_##name] = {status, oci, msg},
#include "err_codes.def"
#undef X
};

int err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
    if (e == NULL)
        return -1;
    e->code = code;
    e->sys_errno = errno;
    e->msg[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}

int err_http_status(enum err_code code)
{
    return (code >= 0 && code < ERR_COUNT_) ? table[code].status : 500;
}

const char *err_oci_code(enum err_code code)
{
    return (code >= 0 && code < ERR_COUNT_) ? table[code].oci : "INTERNAL_ERROR";
}

const char *err_default_message(enum err_code code)
{
    return (code >= 0 && code < ERR_COUNT_) ? table[code].msg : "internal error";
}

const char *err_message(const struct err *e)
{
    return e->msg[0] ? e->msg : err_default_message(e->code);
}
