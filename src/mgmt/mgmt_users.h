/* Helpers shared by the access-control resources of the management API (users,
 * robots, roles, audit: mgmt_users.c, mgmt_robots.c, mgmt_roles.c, mgmt_audit.c). */
#ifndef MERIDIAN_MGMT_USERS_H
#define MERIDIAN_MGMT_USERS_H

#include <jansson.h>
#include <stdint.h>

#include "metastore.h"

/* RFC 3339 UTC time of ms since the epoch ("2024-05-01T12:00:00Z"). */
void mgmt_users_time(int64_t ms, char out[32]);
/* An identity as JSON: name, kind, created, roles, description and expires if set. */
json_t *mgmt_users_identity_json(const struct meta_auth_state *st, const struct meta_identity *id);
/* The identity called name (of kind, or any kind when NULL) in st, or NULL. */
const struct meta_identity *mgmt_users_find(const struct meta_auth_state *st, const char *name,
                                            const char *kind);

struct http_req;
/* The handlers users and robots share, for identities of `kind` ("user", "robot"):
 * list them; reply one (404 with `missing` if there is none); delete one, auditing
 * `action` ("user.delete"). */
void mgmt_users_list_kind(struct http_req *req, const char *kind);
void mgmt_users_get_kind(struct http_req *req, const char *name, const char *kind,
                         const char *missing);
void mgmt_users_delete_kind(struct http_req *req, const char *name, const char *kind,
                            const char *action);

#endif
