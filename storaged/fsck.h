/*
 * fsck.h - the offline check of a storaged directory, and its repair.
 *
 * The check replays the index without changing anything, reads every
 * indexed object and checks its bytes against its key, and walks the
 * framing of every data file. The repair rebuilds the index from the data
 * files: every object whose frame is intact and whose bytes match its key
 * is kept, unless the readable part of the index says it was removed;
 * corrupt objects are left out. Nothing else changes: data files are not
 * touched (their dead bytes go at the next compaction).
 */
#ifndef CAS_FSCK_H
#define CAS_FSCK_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fsck_report {
    uint64_t records;        /* index records read */
    uint64_t objects, bytes; /* indexed objects checked */
    uint64_t problems;       /* everything below that needs a repair */
    uint64_t corrupt;        /* indexed objects whose bytes do not match */
    uint64_t bad_records, torn_bytes, dropped;
    uint64_t bad_frames; /* framing errors in data files */
    uint64_t bad_sums;   /* intact objects whose block checksum table is damaged */
    uint64_t unindexed;  /* intact objects in data files the index lost */
    /* indexed objects a removal frame removes: the index lost the records
     * of their removal (--repair takes them out) */
    uint64_t lost_removals;
    uint64_t recovered;  /* --repair: objects put back in the index */
    /* --repair: unindexed frames a client delete's tombstone refuses (writes
     * the delete refused or overtook), marked removed in place */
    uint64_t refused_marked;
    bool bad_header;     /* the index's HEADER record is damaged */
    uint64_t relocated;  /* data files not at the generation the index names */
    bool new_identity;   /* FSCK_NEW_IDENTITY wrote a new node file */
    bool repaired;
};

/* One line of output: problem or information. */
typedef void (*fsck_say_fn)(void *cls, bool problem, const char *msg);
typedef void (*fsck_progress_fn)(void *cls, uint64_t done, uint64_t total);

/* flags for store_fsck */
enum {
    FSCK_REPAIR = 1, /* rebuild the index (true converts to this) */
    /* With FSCK_REPAIR: when the node file is missing, damaged or names
     * another hash than the index and data files hold, write a new node
     * identity (new id, new ring tokens) for the hash the data holds; an
     * existing node file is kept as node.replaced.<unix time>. Never done
     * without being asked: a new identity misplaces every object of the node
     * in its cluster's ring until a rebalance. */
    FSCK_NEW_IDENTITY = 2,
};

/*
 * Checks (and with FSCK_REPAIR, repairs) the store in dir. Refuses a
 * directory a running storaged holds. Opens only regular files (never a
 * symlink, FIFO or device). Returns 0 when the check ran (problems are in
 * the report), or -errno with a message when it could not run.
 */
int store_fsck(const char *dir, unsigned flags, fsck_say_fn say, fsck_progress_fn progress,
               void *cls, struct fsck_report *out, char *err, size_t errlen);

#endif
