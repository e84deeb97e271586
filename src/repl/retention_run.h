/* The pass that applies retention rules (store/retention.h): every region evaluates every
 * rule over the same replicated state (tags and the clocks of their last writes) and so
 * selects the same tags; each deletes only the tags whose last write it made (the origin
 * of the tag's register; none recorded: any region), so one region deletes each tag and
 * two never race on one. A delete is an ordinary replicated tag delete, made only if the
 * tag was not written since it was listed. Protected tags are left: locks (deleteEnabled
 * false on the repository, tag or manifest) and image versions that may not be deleted
 * before their end of life (image_catalog_check_delete), the checks a DELETE on /v2/
 * makes. Each repository's batch of deletions is one audit entry. */
#ifndef MERIDIAN_RETENTION_RUN_H
#define MERIDIAN_RETENTION_RUN_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"

struct registry;

/* Applies every rule now (is_dry_run: decides and lists, deletes nothing). Returns a new
 * JSON object {"dry_run", "tags":[{"repository","tag","digest","rule","region",
 * "deleted", "refused" (a reason, when protected), "pulledMs"}], "kept":[{"repository",
 * "tag","digest","rule","pulledMs"}], "deleted"}: every tag the rules select, with the
 * region that deletes it, and every tag a rule keeps only because it was pulled within
 * its pulledWithinS (in any region); NULL with e set when the store fails. Flushes this
 * node's pending pull times first. */
json_t *retention_run(struct registry *reg, bool is_dry_run, struct err *e);

#endif
