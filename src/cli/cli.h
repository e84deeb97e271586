/* The command-line client of the management API: `meridian <noun> <verb> ...` in the
 * manner of cloud CLIs, with --output table|json. Each noun lives in cli_<noun>.c and
 * registers in cli.c's table. Talks to the node named by --registry (or
 * MERIDIAN_REGISTRY, default http://127.0.0.1:5000). */
#ifndef MERIDIAN_CLI_H
#define MERIDIAN_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "err.h"

#define CLI_MAX_OPTS 32
#define CLI_MAX_ARGS 8

struct cli {
    const char *noun;
    const char *verb;
    const char *registry_url;
    bool is_json;                 /* --output json */
    const char *args[CLI_MAX_ARGS]; /* positional arguments after the verb */
    size_t n_args;
    char *opt_names[CLI_MAX_OPTS]; /* owned */
    const char *opt_values[CLI_MAX_OPTS];
    size_t n_opts;
    /* util_now_ms() time by which a call must have answered (0: none); a command with a
     * --timeout of its own sets it, so a region that stops answering cannot hold it past. */
    int64_t deadline_ms;
};

/* Lists the nouns, one line each. */
void cli_usage(FILE *out);
/* Entry from main: argv[0] is the noun. Returns the exit status. */
int cli_main(int argc, char **argv);

/* Value of --name, or NULL. Boolean flags have the value "true". */
const char *cli_opt(const struct cli *c, const char *name);
/* Calls the management API: path under /_meridian/v1/, optional JSON body (not
 * consumed). Returns the parsed JSON reply (caller decrefs) and the status; on a
 * transport failure NULL with e set. Error replies are returned as JSON too. */
json_t *cli_call(const struct cli *c, const char *method, const char *path, json_t *body,
                 long *status, struct err *e);
/* Prints an API error reply (or transport error) to stderr; returns exit status 1. */
int cli_fail(const struct cli *c, json_t *reply, long status, const struct err *e);
/* Prints rows (a JSON array of objects, or one object) as a table of the given
 * columns (NULL-terminated "key" or "key:Header"), or as JSON with --output json. */
void cli_print(const struct cli *c, json_t *rows, const char *const *columns);
/* Percent-encodes s for a path (keeps '/' when keep_slash). Caller frees. */
char *cli_escape(const char *s, bool keep_slash);

/* Image versions (cli_image_version.c): "eastus=2,westus=1=premium" (commas or spaces)
 * as the API's list of target-region strings. */
json_t *cli_target_regions(const char *s);
/* --name true|false as a JSON boolean into o[key]; -1 (message printed) when malformed. */
int cli_bool_field(const struct cli *c, const char *name, json_t *o, const char *key);

typedef int cli_noun_f(struct cli *c);

#endif
