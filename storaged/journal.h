/*
 * journal.h - the append-only index file and its group commit.
 *
 * Records are appended with one pwrite per batch by a caller that holds the
 * store's table lock (so the file order is the order the table changed in);
 * journal_sync then waits until the file is durable up to that batch. The
 * first waiter becomes the leader and runs fdatasync for everyone who
 * appended meanwhile; the others wait for it: concurrent writers share
 * syncs. A failed fdatasync is sticky: the journal refuses to say anything
 * is durable again, and the store turns read-only.
 */
#ifndef CAS_JOURNAL_H
#define CAS_JOURNAL_H

#include "format.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct journal {
    int fd;
    uint64_t end;    /* bytes written (atomic) */
    uint64_t synced; /* bytes durable */
    uint64_t gen;    /* bumped when the file is replaced by a snapshot */
    int sync_err;    /* first fdatasync error, as -errno; sticky */
    int syncing;
    uint64_t syncs, records;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

struct journal_pos {
    uint64_t gen;
    uint64_t end;
};

void journal_init(struct journal *j, int fd, uint64_t end);
void journal_destroy(struct journal *j);
/* Appends n records. On failure (ENOSPC, EIO) nothing of the batch stays. */
int journal_append(struct journal *j, const struct fmt_record *recs, size_t n,
                   struct journal_pos *pos);
/* The position of the index's end now: syncing to it makes every record
 * appended so far durable. Caller holds the store's table lock (any mode),
 * so no append is half done. */
void journal_now(struct journal *j, struct journal_pos *pos);
/* Waits until everything up to pos is durable. */
int journal_sync(struct journal *j, const struct journal_pos *pos);
/* Swaps in a new, already durable, index file (the snapshot) of size end. */
void journal_replace(struct journal *j, int fd, uint64_t end);
/* The same, but hands back the old file's descriptor for the caller to close
 * later: closing the last descriptor of a large unlinked index frees its
 * blocks, which can take a while, and should not happen under a lock. */
int journal_swap(struct journal *j, int fd, uint64_t end);

#endif
