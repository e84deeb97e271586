/* Retention rules per repository pattern (issue 15 item 2): replicated objects of kind
 * RETENTION_KIND, keyed by the repository pattern ("team/<star>", name_matches_pattern),
 * valued {"tags": tag glob (default "*"), "keepNewest": N, "olderThanS": D,
 * "untaggedAfterS": U, "pulledWithinS": P} (each optional, at least one set). Among the
 * tags of a matching repository that the glob matches, newest first by the tag's last
 * write (its register clock, the same in every region): the N newest are kept; so is a
 * tag whose manifest was pulled (by tag or digest, in any region: pulled_ms, a replicated
 * record) within P; of the others, those older than D go (without D: all of them, or with
 * only P, those pushed more than P ago; without N: every tag older than D). U sets the
 * untagged grace of the repositories the rule matches (0: keep untagged manifests there),
 * overriding --gc-untagged-after. Pure functions and the object's encoding; the pass that
 * applies the rules is repl/retention_run.c. */
#ifndef MERIDIAN_RETENTION_H
#define MERIDIAN_RETENTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "metastore.h"

#define RETENTION_KIND "retention_rule"
/* The longest duration a rule may give (100 years): more would overflow as milliseconds. */
#define RETENTION_DURATION_MAX_S ((int64_t)100 * 365 * 86400)
/* Last-pull records (repl/pull_record.c): key "<repo>@<digest>", value {"pulledMs": T}. */
#define PULL_RECORD_KIND "pull_time"
/* A recorded pull time lags the latest pull by less than this (writes are coarse), so
 * pulledWithinS counts a pull this much earlier than recorded: on the keeping side. */
#define PULL_RECORD_PRECISION_MS 3600000

struct retention_rule {
    char *pattern;            /* repositories */
    char *tags;               /* tag glob (fnmatch) */
    int64_t keep_newest;      /* -1: not set */
    int64_t older_than_s;     /* -1: not set */
    int64_t untagged_after_s; /* -1: not set; 0: keep untagged manifests */
    int64_t pulled_within_s;  /* -1: not set; keep tags pulled this recently */
};
struct retention_rules {
    struct retention_rule *items;
    size_t n;
};

/* Every rule, in pattern order. */
int retention_rules_load(struct metastore *ms, struct retention_rules *out, struct err *e);
void retention_rules_fini(struct retention_rules *r);
/* Checks a rule body {"pattern", "tags", "keepNewest", "olderThanS", "untaggedAfterS"}:
 * the stored value (a new string, without the pattern) and *pattern (borrowed from
 * body; its grammar is checked by the caller, auth_pattern_is_valid), or NULL with
 * ERR_BAD_REQUEST saying what is wrong. */
char *retention_rule_value(const json_t *body, const char **pattern, struct err *e);
/* Decodes a stored value (NULL if malformed: such a rule selects nothing). */
int retention_rule_parse(const char *pattern, const char *value, struct retention_rule *out);
json_t *retention_rule_to_json(const struct retention_rule *r);

/* The untagged grace of repo in seconds: the longest untaggedAfterS among the rules
 * matching it (0 counts as forever: the result is then 0, keep), else default_s. */
int64_t retention_untagged_after_s(const struct retention_rules *r, const char *repo,
                                   int64_t default_s);
/* The shortest positive untagged grace any repository may have (0: none collects). */
int64_t retention_untagged_min_s(const struct retention_rules *r, int64_t default_s);

/* A tag of a repository, with the clock of its last write. */
struct retention_tag {
    char *name;
    char *digest;
    int64_t hlc;
    char *origin;
    int64_t pulled_ms; /* latest pull of digest in any region (ms), 0: none recorded */
    bool is_selected;  /* out: rule selects it for deletion */
    bool is_kept_by_pull; /* out: rule would select it but for a recent pull */
};
/* Marks in tags[0..n) those rule selects at now_ms (sorts tags newest first). Pure. */
void retention_select(const struct retention_rule *rule, struct retention_tag *tags, size_t n,
                      int64_t now_ms);

#endif
