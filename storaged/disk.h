/*
 * disk.h - the disk backend: one directory holding an append-only index and
 * 50 data files (layout in docs/FORMAT.md). Opening it takes a lock on the
 * directory, replays the index, checks it against the data files and cuts
 * off any torn tail.
 */
#ifndef CAS_DISK_H
#define CAS_DISK_H

#include "store.h"

struct disk_options {
    const char *dir;
    const struct cas_hash_algo
        *algo; /* the store's (from its node file): an index of another is refused */
    bool read_only;
    uint64_t capacity;        /* 0: measure the file system */
    uint64_t max_object_size; /* 0: no limit */
    bool check_only;          /* fsck: read-only, nothing cut or rewritten */
    uint64_t tombstone_ttl;   /* seconds a delete refuses copies; 0: DISK_TOMBSTONE_TTL */
    /* Tests: start-up keeps no removal entries between its two passes and
     * reads every file's removal frames again, as it does for the files
     * past its memory bound (disk_replay.c, REPLAY_KEPT_REMOVALS). */
    bool replay_reread_removals;
};

/* How long a tombstone refuses copies from other replicas: 7 days, far more
 * than any copy in flight takes (docs/FORMAT.md, "Tombstones"). */
#define DISK_TOMBSTONE_TTL (7u * 24 * 3600)

/* Opens (creating when absent) the store in opts->dir. */
int disk_open(const struct disk_options *opts, struct store **out, char *err, size_t errlen);

/* The registry's entry (store.h): "disk", opening through disk_open. */
extern const struct store_backend disk_backend;

/* The disk backend's internals, for its own metrics and status lines, and
 * for benchmarks (not part of the generic store_info). */
struct disk_internals {
    uint64_t index_syncs;   /* fdatasync calls on the index (group commits) */
    uint64_t index_records; /* records appended to the index file */
    size_t memory;          /* bytes held by the object table */
    unsigned scrub_file;    /* where the scrubber is: data file and offset */
    uint64_t scrub_offset;
};
void disk_internals(struct store *s, struct disk_internals *out);

/* Replay statistics of the last disk_open, for benchmarks and fsck. */
struct disk_replay_stats {
    uint64_t records, bad_records, torn_bytes, dropped_entries, truncated_bytes;
    double seconds;
    /* fsck only (check_only), where start-up would refuse: */
    bool bad_header;          /* the index's HEADER record is damaged */
    uint64_t relocated_files; /* bit n: data file n is not at the generation the index
                                 names (that file is missing); another was taken */
};
void disk_replay_stats(struct store *s, struct disk_replay_stats *out);

#endif
