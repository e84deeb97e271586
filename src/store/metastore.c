/* The parts of the metadata seam that do not depend on the database below: the release
 * of what the metastore operations return, and the version-vector lookup (metastore.h).
 * Written once, whichever backend filled them. */
#include "metastore.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void meta_manifest_fini(struct meta_manifest *m)
{
    if (m == NULL)
        return;
    FREE_AND_NULL(m->media_type);
    FREE_AND_NULL(m->artifact_type);
    FREE_AND_NULL(m->annotations_json);
    FREE_AND_NULL(m->body);
    m->body_len = 0;
}

void meta_name_list_fini(struct meta_name_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    FREE_AND_NULL(l->names);
    l->n = 0;
    l->has_more = false;
}

void meta_referrer_list_fini(struct meta_referrer_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].media_type);
        free(l->items[i].artifact_type);
        free(l->items[i].annotations_json);
    }
    FREE_AND_NULL(l->items);
    l->n = 0;
}

void meta_event_fini(struct meta_event *ev)
{
    if (ev == NULL)
        return;
    FREE_AND_NULL(ev->origin);
    FREE_AND_NULL(ev->kind);
    FREE_AND_NULL(ev->repo);
    FREE_AND_NULL(ev->name);
    FREE_AND_NULL(ev->digest);
    FREE_AND_NULL(ev->payload);
}

void meta_vv_fini(struct meta_vv *vv)
{
    for (size_t i = 0; i < vv->n; i++)
        free(vv->origins[i]);
    FREE_AND_NULL(vv->origins);
    FREE_AND_NULL(vv->seqs);
    vv->n = 0;
}

int64_t meta_vv_get(const struct meta_vv *vv, const char *origin)
{
    for (size_t i = 0; vv != NULL && i < vv->n; i++) {
        if (strcmp(vv->origins[i], origin) == 0)
            return vv->seqs[i];
    }
    return 0;
}

void meta_pending_fini(struct meta_pending *p)
{
    FREE_AND_NULL(p->repo);
    FREE_AND_NULL(p->origin);
    FREE_AND_NULL(p->refs);
    FREE_AND_NULL(p->ref_sizes);
    p->n_refs = 0;
}

void meta_status_free(struct meta_status *list, size_t n)
{
    for (size_t i = 0; list != NULL && i < n; i++) {
        free(list[i].region);
        free(list[i].state);
        free(list[i].details);
    }
    free(list);
}

void meta_auth_state_fini(struct meta_auth_state *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n_identities; i++) {
        free(st->identities[i].name);
        free(st->identities[i].kind);
        free(st->identities[i].secret_hash);
        free(st->identities[i].description);
    }
    for (size_t i = 0; i < st->n_bindings; i++) {
        free(st->bindings[i].subject);
        free(st->bindings[i].role);
        free(st->bindings[i].pattern);
    }
    FREE_AND_NULL(st->identities);
    FREE_AND_NULL(st->bindings);
    st->n_identities = 0;
    st->n_bindings = 0;
}

void meta_audit_free(struct meta_audit *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].actor);
        free(list[i].action);
        free(list[i].target);
        free(list[i].remote);
        free(list[i].detail);
        free(list[i].region);
    }
    free(list);
}

void meta_delivery_fini(struct meta_delivery *d)
{
    if (d == NULL)
        return;
    FREE_AND_NULL(d->webhook);
    FREE_AND_NULL(d->action);
    FREE_AND_NULL(d->payload);
    FREE_AND_NULL(d->response);
}

void meta_delivery_list_fini(struct meta_delivery_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        meta_delivery_fini(&l->items[i]);
    FREE_AND_NULL(l->items);
    l->n = 0;
}

bool metastore_spec_is_pg(const char *spec)
{
    return spec != NULL &&
           (strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0);
}

struct metastore *metastore_open(const char *spec, const char *default_path, const char *region,
                                 struct err *e)
{
    if (spec == NULL || spec[0] == '\0')
        return metastore_sqlite_open(default_path, region, e);
    if (metastore_spec_is_pg(spec))
        return metastore_pg_open(spec, region, e);
    err_set(e, ERR_BAD_REQUEST, "metastore: unsupported scheme (expected postgres://...)");
    return NULL;
}
