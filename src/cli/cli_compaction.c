/* `meridian compaction status|run` (management API compaction, compaction/run). Exit
 * status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char compaction_usage[] =
    "usage: meridian compaction status|run [--registry URL] [--output table|json]\n\n"
    "status: rows in the event log and tombstones held, the log horizon per origin, what\n"
    "each peer region last acknowledged (expired: silent past --compact-horizon), totals.\n"
    "run: drops the events every live peer has acknowledged and the tombstones past\n"
    "--tombstone-retention now, in batches, and prints what went.\n";

static const char *const status_cols[] = {"log_events",         "tombstones", "events_dropped",
                                          "tombstones_removed", "passes",     "errors",
                                          "last_run_ms",        NULL};
static const char *const peer_cols[] = {"region", "acked", "acked_ms", "expired", NULL};
static const char *const run_cols[] = {"events_dropped", "tombstones_removed", "errors", NULL};

static int usage(const struct cli *c, const char *text)
{
    bool is_help = c->verb != NULL && strcmp(c->verb, "help") == 0;
    fputs(text, is_help ? stdout : stderr);
    return is_help ? 0 : 2;
}

int cli_compaction(struct cli *c)
{
    bool is_status = c->verb != NULL && strcmp(c->verb, "status") == 0;
    bool is_run = c->verb != NULL && strcmp(c->verb, "run") == 0;
    if ((!is_status && !is_run) || c->n_args != 0)
        return usage(c, compaction_usage);
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, is_status ? "GET" : "POST", is_status ? "compaction" : "compaction/run",
                         NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (c->is_json || is_run) {
        cli_print(c, r, is_run ? run_cols : status_cols);
    } else {
        cli_print(c, r, status_cols);
        cli_print(c, json_object_get(r, "peers"), peer_cols);
    }
    json_decref(r);
    return 0;
}
