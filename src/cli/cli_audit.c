/* `meridian audit list`: the audit log of writes and permission changes, newest first
 * (management API audit). Exit status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian audit list [--actor NAME] [--action PREFIX] [--top N] [--before ID]\n"
    "                           [--region R] [--since T] [--until T] [--repository R]\n"
    "                           [--registry URL] [--output table|json]\n\n"
    "--region: entries of changes decided in region R (a peer's, for changes applied\n"
    "from it). T: 2026-12-03T14:00:00Z, epoch milliseconds, or a duration back from now\n"
    "(15m, 24h); --since and --until are inclusive. --repository: entries whose target is\n"
    "the repository or one of its manifests, blobs or versions (REPO@..., REPO:...).\n"
    "Entries: who (actor), what (action, target, status), when (time) and from where\n"
    "(remote), newest first. Actions: manifest.put, manifest.delete, blob.push,\n"
    "blob.delete, upload.cancel, user.*, robot.*, role.assign, role.revoke, mgmt.write,\n"
    "login.failed, login.throttled, auth.failed, access.denied. Refusals (the last four) are\n"
    "one entry per address, actor and action and minute: count says how many.\n";

static const char *const audit_cols[] = {"id",     "time",   "actor",  "action", "target",
                                         "status", "remote", "region", "count",  NULL};

int cli_audit(struct cli *c)
{
    if (c->verb == NULL || strcmp(c->verb, "list") != 0 || c->n_args != 0) {
        fputs(usage_text, c->verb != NULL && strcmp(c->verb, "help") == 0 ? stdout : stderr);
        return c->verb != NULL && strcmp(c->verb, "help") == 0 ? 0 : 2;
    }
    struct buf q;
    buf_init(&q, 4096);
    buf_appends(&q, "audit?limit=");
    buf_appends(&q, cli_opt(c, "top") ? cli_opt(c, "top") : "50");
    static const char *const params[][2] = {{"actor", "actor"},   {"action", "action"},
                                            {"before", "before"}, {"region", "region"},
                                            {"since", "since"},   {"until", "until"},
                                            {"repository", "repository"}};
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        const char *v = cli_opt(c, params[i][0]);
        if (v == NULL)
            continue;
        char *esc = cli_escape(v, false);
        buf_printf(&q, "&%s=%s", params[i][1], esc);
        free(esc);
    }
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", q.data, NULL, &status, &e);
    buf_fini(&q);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    cli_print(c, r, audit_cols);
    json_decref(r);
    return 0;
}
