/* SQL that turns a database made by the current schema back into the shape schema version
 * 2 gave it (the last version before issue 9), for migration tests: they make data with
 * today's code, step it back, add rows the way version 2 wrote them, and open it again.
 * Each later schema step must add its undo here. */
#ifndef MERIDIAN_TEST_SCHEMA_BACK_TO_V2_H
#define MERIDIAN_TEST_SCHEMA_BACK_TO_V2_H

#define SQL_SCHEMA_BACK_TO_V2                                                                  \
    /* version 9: untagged manifests' stamps */                                               \
    "DROP TRIGGER untagged_on_manifest;"                                                       \
    "DROP TRIGGER untagged_on_manifest_gone;"                                                  \
    "DROP TRIGGER untagged_on_tag;"                                                            \
    "DROP TRIGGER untagged_on_tag_move;"                                                       \
    "DROP TRIGGER untagged_on_tag_gone;"                                                       \
    "DROP TABLE untagged;"                                                                     \
    "ALTER TABLE manifest_tombs DROP COLUMN is_gc;"                                            \
    /* version 8: event-log compaction */                                                     \
    "DROP INDEX tag_regs_deleted;"                                                             \
    "DROP INDEX manifest_tombs_hlc;"                                                           \
    "DROP TABLE log_horizon;"                                                                  \
    "DROP TABLE peer_acks;"                                                                    \
    /* version 7: the region of audit entries */                                              \
    "DROP INDEX audit_log_time;"                                                               \
    "ALTER TABLE audit_log DROP COLUMN region;"                                                \
    /* version 6: copies in the status rows */                                                 \
    "ALTER TABLE repl_status DROP COLUMN copies;"                                              \
    /* version 5: the garbage collector's review queue */                                      \
    "DROP TRIGGER gc_queue_on_unref;"                                                          \
    "DROP TRIGGER gc_queue_on_link;"                                                           \
    "DROP TABLE gc_queue;"                                                                     \
    /* version 3: aggregated audit entries */                                                  \
    "ALTER TABLE audit_log DROP COLUMN count;"                                                 \
    "ALTER TABLE audit_log DROP COLUMN last_ms;"                                               \
    /* version 4: upload sources and acknowledged sizes */                                     \
    "DROP INDEX uploads_source;"                                                               \
    "DROP INDEX uploads_single;"                                                               \
    "ALTER TABLE uploads DROP COLUMN acked_bytes;"                                             \
    "ALTER TABLE uploads DROP COLUMN is_single_request;"                                       \
    "ALTER TABLE uploads DROP COLUMN source;"                                                  \
    "PRAGMA user_version = 2;"

#endif
