/* GET /_meridian/v1/image-versions?repository=R&reference=TAG|DIGEST: an image
 * version and its replication status in every target region. Any region answers:
 * its own state is live, the others' come from their replicated status events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt_api.h"
#include "name.h"
#include "registry_ctx.h"
#include "repl.h"
#include "util.h"

static json_t *iso_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char out[64];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(out);
}

/* Failed if any failed, else Completed if all completed, else InProgress if any
 * region has started or finished, else Pending. */
static const char *aggregate(json_t *summary)
{
    size_t n = json_array_size(summary), completed = 0, started = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_object_get(json_array_get(summary, i), "state"));
        if (strcmp(s, "Failed") == 0)
            return "Failed";
        completed += strcmp(s, "Completed") == 0;
        started += strcmp(s, "InProgress") == 0;
    }
    if (n > 0 && completed == n)
        return "Completed";
    return started + completed > 0 ? "InProgress" : "Pending";
}

void mgmt_image_versions_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *repo = http_req_query(req, "repository");
    const char *ref = http_req_query(req, "reference");
    if (repo == NULL || !name_is_valid_repo(repo, strlen(repo)) || ref == NULL || !*ref) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "repository and reference are required");
        return;
    }
    struct digest d;
    char *media_type = NULL;
    int64_t size = 0;
    bool is_visible = false;
    int64_t recorded_ms = 0;
    if (reg->ms->ops->manifest_lookup(reg->ms, repo, ref, &d, &media_type, &size, &is_visible,
                                      &recorded_ms, &e) != 0) {
        if (e.code == ERR_NAME_UNKNOWN || e.code == ERR_MANIFEST_UNKNOWN)
            e.code = ERR_NOT_FOUND;
        http_reply_mgmt_err(req, &e);
        return;
    }
    struct meta_status *rows = NULL;
    size_t n_rows = 0;
    if (reg->ms->ops->status_list(reg->ms, repo, &d, &rows, &n_rows, &e) != 0) {
        free(media_type);
        http_reply_mgmt_err(req, &e);
        return;
    }
    /* Every region needs the same bytes: a region with nothing to report yet shows the
     * total that others report. */
    int64_t needed = 0;
    for (size_t j = 0; j < n_rows; j++)
        needed = rows[j].bytes_total > needed ? rows[j].bytes_total : needed;
    char **targets = repl_target_regions(reg->repl);
    json_t *summary = json_array();
    for (size_t i = 0; targets[i]; i++) {
        const struct meta_status *row = NULL;
        for (size_t j = 0; j < n_rows; j++) {
            if (strcmp(rows[j].region, targets[i]) == 0)
                row = &rows[j];
        }
        const char *state = row ? row->state : "Pending";
        int64_t done = row ? row->bytes_done : 0;
        int64_t total = row && row->bytes_total > 0 ? row->bytes_total : needed;
        bool is_self = strcmp(targets[i], reg->cfg->region) == 0;
        if (is_self && is_visible) {
            state = "Completed"; /* visible here means pullable here */
        } else if (is_self) {
            int64_t live_done, live_total;
            if (repl_progress(reg->repl, repo, &d, &live_done, &live_total)) {
                state = "InProgress";
                done = live_done;
                total = live_total;
            } else if (row == NULL) {
                state = "Pending";
            }
        }
        json_array_append_new(
            summary, json_pack("{s:s, s:s, s:I, s:I, s:o, s:s}", "region", targets[i], "state",
                               state, "bytesCopied", (json_int_t)done, "bytesTotal",
                               (json_int_t)total, "updatedAt",
                               iso_time(row ? row->updated_ms : recorded_ms), "details",
                               row && row->details ? row->details : ""));
    }
    repl_free_names(targets);
    meta_status_free(rows, n_rows);
    json_t *status = json_pack("{s:s, s:o}", "aggregatedState", aggregate(summary), "summary",
                               summary);
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "repository", repo, "reference",
                            ref, "digest", d.str, "mediaType", media_type, "size",
                            (json_int_t)size, "replicationStatus", status);
    free(media_type);
    mgmt_reply_json_polled(req, out); /* ETag; ?wait=S long polls (the console's live bars) */
}
