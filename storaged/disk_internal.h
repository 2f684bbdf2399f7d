/*
 * disk_internal.h - state shared by the disk backend's files (disk_*.c; the
 * order they call each other in is disk_open.c's opening comment), and each
 * file's functions that the files above it use, by file, bottom first. Not
 * for anyone else (fsck.c and the unit tests excepted).
 *
 * Locking: `lock` (a rwlock) guards the object table, the GC state, the
 * per-file live byte counts and which generation of each data file is
 * current; every index append happens under it in write mode, so the index
 * records the changes in the order the table saw them. `files_lock` guards
 * the data files' reserved ends, their writers in flight (any number per
 * file, each in its own reserved range), whether the compactor owns one,
 * and which writes are not yet durable. Order: lock before files_lock.
 */
#ifndef CAS_DISK_INTERNAL_H
#define CAS_DISK_INTERNAL_H

#include "disk.h"
#include "format.h"
#include "journal.h"
#include "objtab.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

/* An open data file generation; readers keep it alive while compaction
 * replaces it. */
struct dfile_ref {
    int fd;
    int refs;
};

struct dfile {
    struct dfile_ref *ref; /* current generation (lock) */
    uint64_t gen;          /* (lock) */
    uint64_t live;         /* frame bytes of live objects (lock) */
    uint64_t length;       /* end of the file, reserved ranges included (files_lock) */
    uint64_t reserved;     /* bytes reserved by writers in flight (files_lock) */
    unsigned writers;      /* writers in flight in this file (files_lock) */
    bool busy;             /* the compactor owns the file (files_lock) */
    bool compacting;       /* writers keep away (files_lock) */
    /* Writes committed without fdatasync (?sync=0) count up dirty_seq; a
     * data file fdatasync moves clean_seq to the dirty_seq it started from
     * (files_lock). dirty_seq > clean_seq: some object here is not durable. */
    uint64_t dirty_seq, clean_seq;
};

struct disk_store {
    struct store base;
    char *dir;
    int dirfd;
    int lockfd;
    bool check_only;
    uint64_t capacity, max_object_size;

    pthread_rwlock_t lock;
    struct objtab tab;
    struct objtab tombs;       /* tombstones and quarantined keys (disk_tomb.c) (lock) */
    /* Replay only (start-up and fsck; disk_replay.c): keys whose last index
     * record removed them with a DEL of aux 0 (a client's DELETE or a
     * drop) and no TOMB or PUT after it, with the (file, offset) of the
     * frame it removed. A client DELETE's removal frame naming that frame
     * means the index lost the TOMB appended with the DEL. */
    struct objtab untombed;
    uint64_t tomb_ttl;         /* seconds */
    bool replay_reread;        /* disk_options.replay_reread_removals */
    uint64_t tomb_quarantined; /* entries of tombs that are quarantined keys (lock) */
    /* Client deletes since start (changed under the write lock, read with
     * __atomic_load_n): each tombstone keeps the count of its delete in its
     * entry's size field, and a write notes the count when it begins, so a
     * delete that lands while a write is in flight is told from one before
     * it (disk_tomb.c, tomb_deleted_since). */
    uint64_t delete_seq;
    struct dfile files[FMT_NFILES];
    bool gc_active;
    uint64_t gc_id, last_gc_id;
    uint64_t gc_ended_id; /* the cycle gc/end last ended (disk_gc.c; kept by replay and snapshots) */
    uint64_t objects, bytes, garbage_objects, garbage_bytes;
    uint64_t index_records; /* records in the index file, to decide on a snapshot */
    /* Where the index ends after the latest REC_UNMARK (lock): a use that
     * finds an object already unmarked waits for this to be durable, since
     * the unmark it relies on may still be in flight. */
    struct journal_pos unmark_pos;

    pthread_mutex_t files_lock;
    pthread_cond_t files_cond;
    /* Bytes reserved in data files by writes in flight and not yet written
     * (atomic): space the file system will still be asked for, which a new
     * reservation must leave (disk_write.c space_for). */
    uint64_t unwritten;
    /* Index headroom (disk_index.c): the index file is preallocated up to
     * index_prealloc (bytes, lock), so that recording uses, removals and GC
     * state never meets a full file system; data writes leave the rest of
     * disk_index_spare free (disk_write.c space_for). */
    uint64_t index_prealloc;
    uint64_t fs_bytes; /* size of the file system (statvfs at open) */
    uint64_t fs_block; /* its block size (statvfs f_frsize at open; 0 unknown) */
    /* Writes that hold a range in a data file and are not yet stored
     * (atomic): each will add an object, so its share of the removal room
     * (disk_room.c) is kept for it from the start. */
    uint64_t puts_pending;

    struct journal journal;

    int read_only; /* 1: by option; 2: after an I/O fault (atomic) */
    char read_only_reason[200];
    uint64_t corrupt_found;

    pthread_mutex_t compact_lock;
    pthread_cond_t compact_cond;
    pthread_t compact_thread;
    bool compact_running, compact_joinable;
    uint64_t compact_done, compact_total, compactions;
    char compact_left_out[440]; /* store_info's (compact_lock) */

    /* The index header's version (FMT_INDEX_VERSION_REMOVALS, or
     * FMT_INDEX_VERSION for a store from before removal frames, until a
     * compaction upgrades it: disk_compact.c). (lock) */
    uint64_t index_version;

    struct disk_replay_stats replay;
    /* True while no other thread can see the store: disk_open until it
     * returns, and a check_only store (fsck, one thread). The asserts that
     * a caller holds `lock` accept that (disk_locked). */
    bool unshared;

    /* The scrubber (disk_scrub.c). Position and counters are its own;
     * others read them loosely. */
    pthread_mutex_t scrub_lock;
    pthread_cond_t scrub_cond;
    pthread_t scrub_thread;
    bool scrub_running, scrub_stop;
    uint64_t scrub_rate; /* bytes per second */
    unsigned scrub_file;
    uint64_t scrub_offset, scrub_passes, scrub_last_pass;
    uint64_t scrub_bytes, scrub_objects, scrub_corrupt;
};

static inline struct disk_store *disk_of(struct store *s)
{
    return (struct disk_store *)s;
}

static inline uint64_t frame_bytes(uint64_t size)
{
    return fmt_frame_len(size);
}

/* ---- invariants (assert()s: on in every build; -DCAS_ASSERTS=OFF drops them) ----
 * A pthread rwlock does not say which thread holds it, so "the caller holds
 * lock" is asserted as "someone holds it (in write mode)": a try-lock that
 * must fail, one atomic operation. An unshared store needs no lock. */

/* True when lock is held in write mode, or d is unshared. */
static inline bool disk_locked_write(struct disk_store *d)
{
    if (d->unshared)
        return true;
    if (pthread_rwlock_tryrdlock(&d->lock) != 0)
        return true;
    pthread_rwlock_unlock(&d->lock);
    return false;
}

/* True when lock is held in any mode, or d is unshared. */
static inline bool disk_locked(struct disk_store *d)
{
    if (d->unshared)
        return true;
    if (pthread_rwlock_trywrlock(&d->lock) != 0)
        return true;
    pthread_rwlock_unlock(&d->lock);
    return false;
}

/* Takes one more reference to a data file generation that is referenced
 * already (by the table, whose lock the caller holds, or by the caller). */
static inline void dfile_ref_get(struct dfile_ref *r)
{
    int was = __atomic_fetch_add(&r->refs, 1, __ATOMIC_ACQ_REL);
    assert(was > 0); /* a reference to a closed file */
    (void)was;
}

/* ---- disk_base.c: helpers every file uses --------------------------- */

/* Records an I/O fault: the store turns read-only and says so loudly. */
void disk_fault(struct disk_store *d, const char *what, int err);
/* Fills a record for an object of this store. */
void disk_record(struct disk_store *d, struct fmt_record *r, int type, const unsigned char *digest);
/* fsync of the store's directory (after files were created, renamed or
 * removed); 0 or -errno. */
int disk_fsync_dir(struct disk_store *d);
/* A new reference (count 1) to the open data file fd, which it then owns;
 * NULL when out of memory. */
struct dfile_ref *dfile_ref_new(int fd);
/* Drops one reference; the last one closes the file. NULL is allowed. */
void dfile_ref_put(struct dfile_ref *r);
/* Removes entry e from the table and the counters. Caller holds lock (write). */
void disk_forget(struct disk_store *d, uint32_t e);
/* Makes data file n durable if a ?sync=0 write left bytes in it that are not;
 * fd is an open generation of it. 0 or -EIO (the store turns read-only). */
int disk_datafile_sync(struct disk_store *d, unsigned n, int fd, char *err, size_t errlen);
/* Checks that the table and the counters kept beside it add up: every entry
 * names a data file and ends within its length (except files fsck relocated),
 * d->objects, d->bytes, the garbage counters and each file's live bytes are
 * the sums of the entries, no entry is marked outside a GC cycle, and the
 * quarantined-key count matches the tombstone table. Caller holds lock (any
 * mode; it takes files_lock) or d is unshared. O(entries): for after replay,
 * after a compaction, and for the tests. True when all holds; else false
 * with the first discrepancy in why. */
bool disk_table_consistent(struct disk_store *d, char *why, size_t whylen);
/* assert(disk_table_consistent(d)), logging the discrepancy first. */
#ifdef NDEBUG
#define DISK_ASSERT_CONSISTENT(d) ((void)0)
#else
#define DISK_ASSERT_CONSISTENT(d) disk_assert_consistent(d, __FILE__, __LINE__)
#endif
void disk_assert_consistent(struct disk_store *d, const char *file, int line);
/* Copies len bytes at off of from to to_off of to: copy_file_range, or
 * through a 1 MiB buffer where the kernel cannot copy in place. 0 or
 * -errno (-EIO when from ends early). Compaction and spooled writes use it. */
int disk_copy_range(int from, uint64_t off, int to, uint64_t to_off, uint64_t len);

/* Writes all len bytes of buf at off of fd (retrying short writes and
 * EINTR): 0, -errno, or -ENOSPC when the file system takes no more. Inline:
 * it is on the write path. */
static inline int disk_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENOSPC;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* ---- disk_tomb.c: tombstones and quarantined keys ----------------------
 * Callers hold lock (write for changes, read at least for queries). */
uint64_t disk_now_s(void);
/* Records kind for digest at unix time when (in memory; its stamp is
 * when * 10^6); -ENOMEM. */
int tomb_set(struct disk_store *d, const unsigned char *digest, unsigned kind, uint64_t when);
/* The same with the event's stamp (unix microseconds) instead of seconds. */
int tomb_set_stamp(struct disk_store *d, const unsigned char *digest, unsigned kind,
                   uint64_t stamp);
/* Replays a REC_TOMB: its stamp is `size`, or aux seconds * 10^6 when 0 (a
 * record from before stamps). */
int tomb_replay(struct disk_store *d, const struct fmt_record *r);
/* True when a client delete's tombstone of digest, in force, is stamped at
 * or after stamp (unix microseconds): a client write sent at stamp is
 * refused, the delete was sent after it. */
bool tomb_outranks(struct disk_store *d, const unsigned char *digest, uint64_t stamp);
/* Forgets digest's entry: the key is stored again. */
void tomb_clear(struct disk_store *d, const unsigned char *digest);
/* True while a tombstone for digest refuses copies from other replicas. */
bool tomb_refuses_copy(struct disk_store *d, const unsigned char *digest, uint64_t now);
/* True when an unindexed object frame fr (its decoded header) must not be
 * indexed again (start-up, compaction, fsck --repair) because of an entry
 * for its key: a client delete's tombstone in force (now: unix seconds)
 * refuses a copy's frame (FMT_FRAME_COPY), an unstamped frame (written
 * before FMT_FRAME_STAMPED) and a frame whose write's stamp is at or before
 * the delete's (the commit refused that write: tomb_outranks); a
 * quarantine entry refuses an unstamped frame and one stamped at or before
 * the entry's time. A frame stamped after the entry was written by a write
 * that came after it (an acknowledged re-PUT whose record was lost). */
bool tomb_refuses_adoption(struct disk_store *d, const struct fmt_frame *fr, uint64_t now);
/* The same judgement, saying why: 0 when nothing refuses fr, TOMB_DELETED
 * when a client delete's tombstone does (a refusal for good: the caller
 * marks the frame removed, disk_frame_kill_at, so that it is not judged
 * again once the tombstone expires), TOMB_QUARANTINED when a quarantine
 * entry does (kept as it is: a later frame is judged by its bytes). */
unsigned tomb_adoption_refusal(struct disk_store *d, const struct fmt_frame *fr, uint64_t now);
/* After start-up's or fsck's adoption pass (which judges every unindexed
 * frame against the tombstones as they were before it): the entries of the
 * keys the table now holds are cleared (stored again). */
void tomb_clear_stored(struct disk_store *d);
/* True when a client deleted digest after d->delete_seq was seq (a write
 * that began then must not store it: disk_write.c). */
bool tomb_deleted_since(struct disk_store *d, const unsigned char *digest, uint64_t seq);
bool tomb_expired(const struct disk_store *d, const struct objtab_entry *en, uint64_t now);
/* Drops the tombstones that have expired. */
void tomb_prune(struct disk_store *d, uint64_t now);
size_t tomb_count(const struct disk_store *d);
/* Tombstones (including expired ones not yet pruned) and quarantined keys. */
void tomb_counts(const struct disk_store *d, uint64_t *tombstones, uint64_t *quarantined);
/* Fills a REC_TOMB record of kind at unix seconds when, with stamp (unix
 * microseconds; 0: when * 10^6). */
void tomb_record(struct disk_store *d, struct fmt_record *r, const unsigned char *digest,
                 unsigned kind, uint64_t when, uint64_t stamp);
/* The REC_TOMB of table entry en (an index snapshot). */
void tomb_record_entry(struct disk_store *d, struct fmt_record *r, const struct objtab_entry *en);

/* ---- disk_room.c: the room kept for removing every object ---------------
 * (docs/OPERATIONS.md, "A full file system"; the why is disk_room.c's
 * opening comment). */

/* Index records kept per stored object: DEL + TOMB (a DELETE) and UNMARK
 * (a use in a GC cycle), plus one for the top-up hysteresis. */
#define DISK_ROOM_INDEX_RECORDS 4
struct disk_room {
    uint64_t index;  /* bytes kept preallocated in the index file */
    uint64_t frames; /* bytes kept free in the file system for removal frames */
};
/* The room removing objects stored objects needs on a file system of
 * fs_bytes (0: unknown) with blocks of block bytes (0: 4096): index, 1 MiB
 * (at most 1/16 of the file system) plus DISK_ROOM_INDEX_RECORDS records
 * (256 bytes) per object; frames, a one-entry removal frame (104 bytes) per
 * object plus a block per data file. No cap. */
struct disk_room disk_room_for(uint64_t objects, uint64_t fs_bytes, uint64_t block);
/* Bytes one more object takes beyond its frame: its share of the room
 * (disk_room_for(n + 1) - disk_room_for(n)) and its PUT record: 424. */
uint64_t disk_room_per_object(void);
/* disk_room_for the store's objects now. */
struct disk_room disk_room_now(struct disk_store *d);
/* ---- disk_index.c: the index file ------------------------------------- */

/* Free bytes new data may take (a data write, a compaction's copy, an index
 * snapshot): the file system's available bytes (*avail, fstatvfs of the
 * store's directory) less what writes in flight will still take
 * (d->unwritten, d->puts_pending), the index reserve not yet preallocated
 * and the frames room (disk_room.c). 0, or -errno when fstatvfs fails. */
int disk_room_writable(struct disk_store *d, uint64_t *writable, uint64_t *avail);

/* Bytes the index keeps in reserve for records that must never meet a full
 * file system (a use during a GC cycle, a DELETE, GC end or cancel):
 * disk_room_now(d).index. Topped up whenever a quarter is used, so at least
 * three records per object are always left: a DELETE of every object (DEL +
 * TOMB) and a use of every object in a GC cycle (UNMARK) fit on a full file
 * system. */
uint64_t disk_index_spare(struct disk_store *d);
/* True when the file system is full and the index's preallocated room is
 * down to what removing and unmarking every stored object needs (three
 * records each, plus half the constant part): then a record that frees
 * nothing (a tombstone for a key not stored here) is refused, so that it
 * cannot eat the room removals need. */
bool disk_index_room_short(struct disk_store *d);
/* Of that reserve, the bytes not yet preallocated in the index file: what
 * a data write must leave free. */
uint64_t disk_index_spare_unallocated(struct disk_store *d);
/* Preallocates the index file (fallocate, FALLOC_FL_KEEP_SIZE) up to its end
 * plus disk_index_spare when less than 3/4 of that is left; a failure (a
 * full disk) is logged, the rest of the reserve still serves. Caller holds
 * lock (write), or d is unshared. */
void disk_index_reserve(struct disk_store *d);
/* Gives back the index file's preallocation beyond its reserve when it is
 * over twice what disk_index_spare asks now (removals shrank the reserve):
 * cuts it (ftruncate at the end, the only way ext4 frees blocks past it)
 * and preallocates the reserve again. Compaction calls it. Caller holds
 * lock (write). */
void disk_index_trim(struct disk_store *d);
/* Appends and, on failure, turns the error into a message. Caller holds lock (write). */
int disk_append(struct disk_store *d, const struct fmt_record *recs, size_t n,
                struct journal_pos *pos, char *err, size_t errlen);
/* Waits for durability of pos; a failure makes the store read-only. */
int disk_sync(struct disk_store *d, const struct journal_pos *pos, char *err, size_t errlen);
/* Rewrites the index as a snapshot of the table when it has grown much
 * larger than the table (always when force). Takes the locks itself. 0, or
 * -errno with the index unchanged. */
int disk_maybe_snapshot(struct disk_store *d, bool force);

/* ---- disk_mark.c: a use of an object in a GC cycle -------------------- */

/* Unmarks entry e if marked; true if it was. Caller holds lock (write). */
bool disk_unmark(struct disk_store *d, uint32_t e);
/* How a use (disk_use) is made durable before the caller answers. */
enum disk_use_flags {
    USE_SYNC = 1, /* the unmark (if a cycle is active) is durable on return */
    USE_COPY = 2, /* the stored copy itself (index record and bytes) is durable too */
};
/* Counts a use of the stored object digest for GC (a read, a repeated write):
 * under the write lock, unmarks it (REC_UNMARK) if the active cycle marked
 * it, so gc/end has either removed it already (-ENOENT, nothing to answer
 * success for) or will keep it. flags: enum disk_use_flags. Returns 0,
 * -ENOENT when the object is not stored, -EIO when it cannot be made durable. */
int disk_use(struct disk_store *d, const unsigned char *digest, unsigned flags, char *err,
             size_t errlen);
/* Waits until everything the index said about unmarks up to pos is durable
 * (pos as read from d->unmark_pos under the lock). */
int disk_sync_unmarks(struct disk_store *d, const struct journal_pos *pos, char *err,
                      size_t errlen);

/* ---- disk_check.c: a stored copy's integrity -------------------------- */

/* Checks the stored copy at (fd, offset) of an object of size bytes, whose
 * frame header has been checked: its block checksum table against the
 * header's CRC (sums_crc) and every block against the table. Reads the whole
 * object, no hashing (CRC-32C). 0 intact, -EBADMSG damaged (why says how),
 * -EIO unreadable. */
int disk_verify_copy(struct disk_store *d, int fd, uint64_t offset, uint64_t size,
                     uint32_t sums_crc, const char **why);
/* Takes the copy of digest at (file, offset) out of service (REC_DEL,
 * reason corrupt) if the table still points there. Takes the lock itself. */
void disk_take_out(struct disk_store *d, const unsigned char *digest, unsigned file,
                   uint64_t offset, const char *why);
/* True when the size bytes at off of fd (an object frame's payload) hash to
 * digest (buf: scratch of buflen bytes); false when they do not or cannot be
 * read. For indexing an unindexed frame again (start-up, compaction). */
bool disk_frame_bytes_match(struct disk_store *d, int fd, uint64_t off, uint64_t size,
                            const unsigned char *digest, unsigned char *buf, size_t buflen);

/* ---- disk_rmframe.c: removal frames (docs/FORMAT.md "Removal frames") ----
 * A removal is recorded in the index, and that record synced, before it is
 * written into the data file of the frames it removes and made durable
 * there, and only then answered (rule D8). */

/* The room a removal holds at the end of one data file: it counts as a
 * writer of that file, so no compaction takes the file until it is released. */
struct rm_slot {
    unsigned file;
    uint64_t off, len;
    int fd;
};
struct rm_held {
    unsigned n;
    struct rm_slot slots[FMT_NFILES];
};
/* A removal planned under the table lock: its entries (digest, offset of the
 * frame), grouped by data file (file f's at [start[f], start[f + 1])), and
 * its room held in each data file concerned. */
struct rm_plan {
    struct rm_held held;
    unsigned char *entries;
    uint64_t count;
    uint64_t start[FMT_NFILES + 1];
    unsigned char one[FMT_REMOVAL_ENTRY];
    /* The removal's stamp for its frames (unix microseconds): a client
     * delete's tombstone stamp, so that a tombstone rebuilt from the frame
     * orders writes as the delete did; 0 when none (gc/end, a drop). */
    uint64_t stamp;
};
/* For gc/end, caller holding lock (write): plans the removal of every
 * marked object. 0 (p->count may be 0); -EAGAIN with *wait_file set when the
 * compactor holds a file concerned (release lock, disk_removal_wait_file,
 * start again); -ENOMEM with err filled. Nothing is written yet. */
int disk_removal_plan_marked(struct disk_store *d, struct rm_plan *p, unsigned *wait_file,
                             char *err, size_t errlen);
/* For a client's DELETE or a balancer's drop, caller holding lock (write):
 * plans the removal of the frame en names. 0, or -EAGAIN when the compactor
 * holds en->file (release lock, disk_removal_wait_file, start again). */
int disk_removal_plan_one(struct disk_store *d, const struct objtab_entry *en, struct rm_plan *p);
/* Gives a plan up (its index record was not appended): nothing written. */
void disk_removal_plan_drop(struct disk_store *d, struct rm_plan *p);
/* Without the lock, once the index record of the removal is durable: writes
 * the plan's removal frames (kind RM_CLIENT, RM_GC or RM_DROP; written_at
 * now, unix seconds; stamp p->stamp, set by the caller after planning), or
 * with no room for them marks the removed frames in place, and fdatasyncs
 * each file; always gives the plan back. 0, or -EIO with err filled
 * (logged: the index holds the removal, the data files do not, so it must
 * not be answered as a success). */
int disk_removal_plan_write(struct disk_store *d, struct rm_plan *p, unsigned kind, uint64_t now,
                            char *err, size_t errlen);
/* Gives the slots back: the frames stay (keep) or are cut off / punched out. */
void disk_removal_release(struct disk_store *d, struct rm_held *held, bool keep);
/* Waits (no lock held) until the compactor no longer holds data file n. */
void disk_removal_wait_file(struct disk_store *d, unsigned n);

/* One entry of a removal frame found in a data file, and where that frame is. */
struct disk_removal {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t offset;     /* of the removed object frame */
    uint64_t at;         /* of the removal frame that names it */
    uint64_t written_at; /* the removal frame's */
    uint64_t stamp;      /* the removal frame's (fmt_removal_stamp: never 0) */
    uint8_t kind;
};
struct disk_removals {
    struct disk_removal *v;
    size_t n, cap;
    uint64_t damaged; /* removal frames whose entries fail their CRC */
};
/* Reads the entries of every removal frame of fd (a data file of fsize
 * bytes) at or after from, walking its frames (past damaged bytes); sorted
 * for disk_removal_covers. 0 or -errno (-ENOMEM, -EIO). */
int disk_removals_read(struct disk_store *d, int fd, uint64_t from, uint64_t fsize,
                       struct disk_removals *out);
/* The same for the frames that start at or after from and end by end (a
 * range of the file), added to out unsorted; disk_removals_sort once every
 * range is in. */
int disk_removals_add(struct disk_store *d, int fd, uint64_t from, uint64_t end,
                      struct disk_removals *out);
void disk_removals_sort(struct disk_removals *rs);
/* The entry removing the object frame of digest at offset (a removal frame
 * later in the same file names it), or NULL when none does. */
const struct disk_removal *disk_removal_covers(const struct disk_removals *rs,
                                               const unsigned char *digest, uint64_t offset);
void disk_removals_free(struct disk_removals *rs);
/* Marks the object frame of digest at off of data file fd removed in place
 * (fmt_frame_kill, "CASD": the header is rewritten, no new space), not
 * synced: the caller fdatasyncs fd before it relies on the mark. 1 marked,
 * 0 when no intact frame of digest starts there (left as it is), -errno
 * (-EIO: short read) when it cannot read or write the header. */
int disk_frame_kill_at(struct disk_store *d, int fd, uint64_t off, const unsigned char *digest);

/* ---- disk_replay.c: reading a store's contents back ------------------- */

/* Replays the index of d->dir into the table (d->dirfd open, LOCK held,
 * d->check_only set), reconciles the data file generations with it, opens
 * the data files, cuts torn tails (not when check_only) and rebuilds the
 * counters; d->journal then holds the index. 0, or -errno with a message
 * naming what to run (docs/FORMAT.md: what start-up refuses). */
int disk_replay(struct disk_store *d, char *err, size_t errlen);
/* After replay with check_only (fsck): true when digest's last index record
 * was a DEL of aux 0 that removed its frame at (file, offset), with no TOMB
 * or PUT after it, and no tombstone or quarantine entry holds the key (a
 * client DELETE's removal frame naming that frame: its TOMB was lost). */
bool disk_untombed_at(struct disk_store *d, const unsigned char *digest, unsigned file,
                      uint64_t offset);

/* ---- the ops (disk_open.c's table names them) -------------------------
 * Each does what store.h says of its store_ops member, and takes the locks
 * it needs itself. */

extern const struct store_ops disk_ops;

/* disk_write.c */
int disk_put_begin(struct store *s, const struct cas_key *expect, uint64_t hint,
                   struct store_put **out, char *err, size_t errlen);
int disk_put_write(struct store_put *p, const void *data, size_t len, char *err, size_t errlen);
int disk_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                    size_t errlen);
void disk_put_abort(struct store_put *p);
int disk_put_copy(struct store_put *p, char *err, size_t errlen);
int disk_put_stamp(struct store_put *p, uint64_t stamp, char *err, size_t errlen);
/* disk_read.c */
int disk_open_obj(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
                  uint64_t *size, char *err, size_t errlen);
ssize_t disk_pread(struct store_obj *o, void *buf, size_t len, uint64_t off);
void disk_close_obj(struct store_obj *o);
int disk_block_sums(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block);
void disk_quarantine(struct store_obj *o, const char *why);
int disk_confirm(struct store_obj *o, bool sync, char *err, size_t errlen);
int disk_stat(struct store *s, const struct cas_key *key, uint64_t *size);
/* Table entries scanned per hold of the lock while a listing looks for
 * its next page in key order (objtab_page_scan). */
#define DISK_LIST_STEP 65536
int disk_list(struct store *s, const unsigned char *after, enum store_list_state state,
              uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
              size_t errlen);
/* disk_remove.c */
int disk_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen);
int disk_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen);
/* disk_open.c: disk_remove with the client delete's stamp (store.h remove_at). */
int disk_remove_at(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                   size_t errlen);
/* disk_tomb.c */
int disk_quarantined(struct store *s, store_list_fn fn, void *cls);
/* disk_gc.c */
int disk_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                  uint64_t *bytes, char *err, size_t errlen);
int disk_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                 char *err, size_t errlen);
int disk_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                  size_t errlen);
int disk_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                size_t errlen);
bool disk_gc_active(struct store *s, uint64_t *id);
int disk_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen);
void disk_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id);
/* disk_compact.c */
int disk_compact_start(struct store *s, char *err, size_t errlen);
void disk_compact_wait(struct store *s);
/* disk_scrub.c */
int disk_scrub_start(struct store *s, uint64_t bytes_per_second);
void disk_scrub_stop(struct disk_store *d);
/* disk_open.c */
void disk_info(struct store *s, struct store_info *out);
void disk_metrics(struct store *s, struct cas_buf *out);
void disk_status_scrub(struct store *s, struct cas_json *j);
void disk_destroy(struct store *s);

#endif
