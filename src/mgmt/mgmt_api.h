/* The management API under /_meridian/v1/ (JSON in, JSON out). Resources register
 * their handlers in one table (mgmt_api.c); each resource lives in its own file
 * (mgmt_<resource>.c). Errors are {"error":{"code","message"}}. */
#ifndef MERIDIAN_MGMT_API_H
#define MERIDIAN_MGMT_API_H

#include <jansson.h>
#include <stdbool.h>

#include "http.h"

#define MGMT_BODY_MAX (1024 * 1024)

/* Path parameters captured from a route pattern such as "replications/{name}". */
struct mgmt_params {
    const char *names[4];
    char *values[4];
    size_t n;
};

/* Value of a captured parameter, or NULL. */
const char *mgmt_param(const struct mgmt_params *p, const char *name);

typedef void mgmt_handler_f(struct http_req *req, const struct mgmt_params *p);

/* Called by the router for paths under MGMT_PREFIX once the body is in. */
void mgmt_api_handle(struct http_req *req);

/* Replies with a JSON value (takes ownership of v, also on failure). */
void mgmt_reply_json(struct http_req *req, int status, json_t *v);
/* Replies with a JSON value and its ETag (takes ownership of v): 304 when it matches the
 * request's If-None-Match, and with ?wait=S holds the request (parked, no thread) until
 * the value differs or S seconds pass (mgmt_longpoll.c). The handler runs again on
 * every recheck, so it must be safe to repeat (a read). */
void mgmt_reply_json_polled(struct http_req *req, json_t *v);
/* Replies with an error. */
void mgmt_reply_error(struct http_req *req, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parses the request body as a JSON object; replies 400 and returns NULL if it is not one.
 * An empty body gives an empty object. Caller decrefs. */
json_t *mgmt_body_object(struct http_req *req);

#endif
