/* Webhook definitions and what they produce: validation of a definition (JSON in the
 * shape the management API and the replicated object store use), matching an effect
 * against it, the JSON payload sent to a receiver, and the retry schedule.
 * Pure: no I/O, no locks, no clock reads (callers pass the time and the randomness). */
#ifndef MERIDIAN_WEBHOOK_DEF_H
#define MERIDIAN_WEBHOOK_DEF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define WEBHOOK_NAME_MIN 5
#define WEBHOOK_NAME_MAX 50
#define WEBHOOK_LOCATION_MAX 63
#define WEBHOOK_URI_MAX 2048
#define WEBHOOK_SCOPE_MAX 512
#define WEBHOOK_HEADERS_MAX 16
#define WEBHOOK_HEADER_NAME_MAX 128
#define WEBHOOK_HEADER_VALUE_MAX 1024

/* Actions a webhook can subscribe to, as bits of webhook_def.actions. "ping" is not one
 * of them: a ping is sent on request whatever the actions are. */
#define WEBHOOK_ACTION_PUSH 1u
#define WEBHOOK_ACTION_DELETE 2u
#define WEBHOOK_ACTION_VERSION_CONFLICT 4u /* "version.conflict" (docs/image-versions.md) */

/* What took effect in this region (see webhook.h): the input of the payload. */
struct webhook_effect {
    const char *action;     /* "push" | "delete" (| "ping", internally) */
    const char *repo;       /* repository, or NULL (ping) */
    const char *tag;        /* tag pushed or deleted, or NULL */
    const char *digest;     /* manifest digest, or NULL if unknown */
    const char *media_type; /* manifest media type, or NULL if unknown */
    int64_t size;           /* manifest size in bytes, or < 0 if unknown */
    const char *request_id; /* request that caused it (in the origin region), or NULL */
    const char *method;     /* "PUT" | "DELETE" | ..., or NULL */
    const char *host;       /* Host the request named, or NULL (e.g. replicated) */
};

struct webhook_header {
    char *name;
    char *value;
};

struct webhook_def {
    char *name;       /* [a-zA-Z0-9]{5,50} */
    char *location;   /* region whose effects it watches */
    char *uri;        /* http:// or https:// receiver */
    unsigned actions; /* WEBHOOK_ACTION_* bits, at least one */
    char *scope;      /* repository pattern, '*' matches anything (also '/') */
    bool is_enabled;
    struct webhook_header headers[WEBHOOK_HEADERS_MAX]; /* sent with every delivery */
    size_t n_headers;
};

/* Validates a whole definition given as a JSON object with the members name,
 * location, uri, actions (array of "push"/"delete"), and optionally scope (default
 * "*"), enabled (default true) and customHeaders (object of string values). Unknown
 * members are refused. On success fills *out (release with webhook_def_fini); on
 * failure -1 with ERR_BAD_REQUEST and a message naming the member, *out zeroed. */
int webhook_def_parse(json_t *obj, struct webhook_def *out, struct err *e);

/* Whether name (any case) is a header every delivery carries from the registry itself:
 * User-Agent and X-Meridian-Event, -Delivery, -Webhook. */
bool webhook_def_is_delivery_header(const char *name);

/* Does uri name a path of Meridian's management API (/_meridian/...)? A webhook aimed
 * there runs that endpoint on every event (a compaction, a ping of itself: a loop that
 * never ends), with the answer kept in the delivery record. */
bool webhook_def_is_management_target(const char *uri);

/* The checks of a definition being created or changed that stored ones (written by older
 * versions) need not pass: the uri is not a management endpoint, and no custom header may
 * repeat a delivery header. 0, or -1 with e set (BAD_REQUEST saying which). */
int webhook_def_check_new(const struct webhook_def *d, struct err *e);

/* Applies a partial update (JSON object; any member of the definition except name,
 * which may only repeat the current one; customHeaders replaces the whole set, null
 * clears it) to *d. All or nothing: on failure -1 with ERR_BAD_REQUEST and *d unchanged. */
int webhook_def_patch(struct webhook_def *d, json_t *patch, struct err *e);

/* The definition as a JSON object (new reference). With is_redacted the values of
 * customHeaders are replaced by "***" (they often hold credentials), and so are the
 * userinfo and the query values of the uri (url_redact). */
json_t *webhook_def_to_json(const struct webhook_def *d, bool is_redacted);

/* Releases what webhook_def_parse filled; accepts NULL and zeroed structs. */
void webhook_def_fini(struct webhook_def *d);

/* Is name a valid webhook name? */
bool webhook_def_is_valid_name(const char *name);

/* Does effect `action` on `repo` in `region` fire webhook d? True when d is enabled,
 * its location is region, its actions include action and its scope matches repo. */
bool webhook_def_matches(const struct webhook_def *d, const char *region, const char *action,
                         const char *repo);

/* The JSON body of one delivery (caller frees), modeled on the event of the Docker
 * distribution notifications and the Azure Container Registry webhook payload:
 *   {"id","timestamp","action","region",
 *    "target":{"mediaType","size","digest","length","repository","tag"},
 *    "request":{"id","host","method"}}
 * Members whose value is unknown (NULL, size < 0) are left out; a ping has no target.
 * id is the delivery id, now_ms the event time. */
char *webhook_def_payload(const char *id, int64_t now_ms, const char *region,
                          const struct webhook_effect *ev);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds into out
 * ("2026-11-25T12:00:00.000Z"). */
void webhook_def_format_time(int64_t ms, char out[32]);

/* Formats a 32-hex-digit random id as a version 4 UUID (8-4-4-4-12; 6 of its bits are
 * set to the version and variant) into out. */
void webhook_def_format_uuid(const char hex32[33], char out[37]);

/* A printable excerpt of a receiver's answer (caller frees): at most max bytes of p
 * (n bytes), cut on a character boundary and marked "..." when cut; valid UTF-8,
 * tabs and newlines are kept, any other control or invalid byte becomes '?'. */
char *webhook_def_excerpt(const char *p, size_t n, size_t max);

/* Delay before retry number `attempt` (1 = the retry after the first failure):
 * exponential from base_ms, capped at cap_ms, with "equal jitter" (half fixed, half
 * random from rnd) so that retries of many deliveries spread out. Never below 1 ms
 * nor above cap_ms. */
int64_t webhook_def_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, uint32_t rnd);

#endif
