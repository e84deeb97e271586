/* The log copier: a thread of the SQL store that copies the write-ahead log into the
 * database file while writes go on (log_copier.c). Only for a driver with copy_log (SQLite). */
#ifndef MERIDIAN_LOG_COPIER_H
#define MERIDIAN_LOG_COPIER_H
#include <stdbool.h>
#include <stdint.h>

struct sq_store;
struct sql_db;
struct sq_log_copier;

/* Starts the copier of st (opened, its migrations done); NULL when the driver has none,
 * or when its connections do not open (logged: the checkpoints under the writer mutex
 * then copy everything, as without it). */
struct sq_log_copier *sq_log_copier_start(struct sq_store *st);

/* After each commit on the writer connection wdb, under the store's writer mutex: wakes
 * the copier when the log has grown by a step, or when it waits for a commit. */
void sq_log_copier_note_commit(struct sq_log_copier *cp, struct sql_db *wdb);

/* Holds (is_on) the copier between passes, or lets it go: taken before the writer mutex by
 * a checkpoint that must find no other one running and no pin (sq_compact_log). NULL:
 * no-op. */
void sq_log_copier_hold(struct sq_log_copier *cp, bool is_on);

/* Passes that copied part of the log beside the writes, and checkpoints that ended it
 * after one (for tests). */
void sq_log_copier_counts(struct sq_log_copier *cp, uint64_t *n_passes, uint64_t *n_ends);

/* Stops the thread and closes its connections; NULL is a no-op. Before the store closes
 * its writer connection. */
void sq_log_copier_stop(struct sq_log_copier *cp);

#endif
