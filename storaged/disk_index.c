/*
 * disk_index.c - the disk backend's index file as the engine sees it:
 * appending records through the journal (journal.c: one pwrite per batch,
 * group commit), waiting for them to be durable (a failure turns the store
 * read-only), and rewriting the index as a snapshot of the table when it has
 * grown far past it (disk_maybe_snapshot: compaction and fsck --repair call
 * it). Replay (reading the index back) is disk_replay.c.
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

uint64_t disk_index_spare(struct disk_store *d)
{
    return disk_room_now(d).index;
}

uint64_t disk_index_spare_unallocated(struct disk_store *d)
{
    uint64_t end = __atomic_load_n(&d->journal.end, __ATOMIC_RELAXED);
    uint64_t have = __atomic_load_n(&d->index_prealloc, __ATOMIC_RELAXED);
    uint64_t left = have > end ? have - end : 0, spare = disk_index_spare(d);
    return spare > left ? spare - left : 0;
}

void disk_index_reserve(struct disk_store *d)
{
    if (d->check_only || d->journal.fd < 0)
        return;
    uint64_t end = d->journal.end, spare = disk_index_spare(d);
    if (d->index_prealloc > end && d->index_prealloc - end >= spare / 4 * 3)
        return;
    if (fallocate(d->journal.fd, FALLOC_FL_KEEP_SIZE, (off_t)end, (off_t)spare) == 0) {
        __atomic_store_n(&d->index_prealloc, end + spare, __ATOMIC_RELAXED);
    } else if (errno != EOPNOTSUPP) {
        log_warn("cannot reserve %" PRIu64 " bytes for the index in %s: %s (%" PRIu64
                 " reserved bytes left)",
                 spare, d->dir, strerror(errno),
                 d->index_prealloc > end ? d->index_prealloc - end : 0);
    }
}

void disk_index_trim(struct disk_store *d)
{
    assert(disk_locked_write(d));
    if (d->check_only || d->journal.fd < 0)
        return;
    uint64_t end = d->journal.end, spare = disk_index_spare(d);
    uint64_t left = d->index_prealloc > end ? d->index_prealloc - end : 0;
    struct stat st;
    if (left <= 2 * spare || fstat(d->journal.fd, &st) < 0 || (uint64_t)st.st_size != end)
        return;
    /* Writes keep the whole reserve free while it is not preallocated
     * (disk_index_spare_unallocated), so the blocks freed here are there
     * to be taken again at once. */
    __atomic_store_n(&d->index_prealloc, end, __ATOMIC_RELAXED);
    if (ftruncate(d->journal.fd, (off_t)end) < 0) {
        log_warn("cannot give back the index's preallocation in %s: %s", d->dir, strerror(errno));
        __atomic_store_n(&d->index_prealloc, end + left, __ATOMIC_RELAXED);
        return;
    }
    disk_index_reserve(d);
    log_info("compact: the index's preallocation is %" PRIu64 " bytes again (was %" PRIu64
             "): objects were removed",
             __atomic_load_n(&d->index_prealloc, __ATOMIC_RELAXED) - end, left);
}

bool disk_index_room_short(struct disk_store *d)
{
    uint64_t end = __atomic_load_n(&d->journal.end, __ATOMIC_RELAXED);
    uint64_t have = __atomic_load_n(&d->index_prealloc, __ATOMIC_RELAXED);
    uint64_t left = have > end ? have - end : 0;
    uint64_t objects = __atomic_load_n(&d->objects, __ATOMIC_RELAXED);
    /* Three of the DISK_ROOM_INDEX_RECORDS per object, half the constant part. */
    uint64_t fixed = disk_room_for(0, d->fs_bytes, d->fs_block).index;
    uint64_t need = fixed / 2 + objects * 3 * FMT_RECORD_SIZE;
    if (left >= need)
        return false;
    struct statvfs vfs; /* room to grow the index: not short */
    return fstatvfs(d->journal.fd, &vfs) == 0 &&
           (uint64_t)vfs.f_bavail * vfs.f_frsize < disk_index_spare(d);
}

int disk_append(struct disk_store *d, const struct fmt_record *recs, size_t n,
                struct journal_pos *pos, char *err, size_t errlen)
{
    assert(disk_locked_write(d)); /* the index's order is the table's */
    disk_index_reserve(d);
    int rc = journal_append(&d->journal, recs, n, pos);
    if (rc < 0) /* the journal cut the file back: its preallocation may be gone */
        __atomic_store_n(&d->index_prealloc, 0, __ATOMIC_RELAXED);
    if (rc == -ENOSPC) {
        snprintf(err, errlen, "disk full: cannot append to the index in %s", d->dir);
    } else if (rc < 0) {
        disk_fault(d, "index append", rc);
        snprintf(err, errlen, "cannot append to the index: %s", strerror(-rc));
        rc = -EIO;
    } else {
        d->index_records += n;
    }
    return rc;
}

int disk_sync(struct disk_store *d, const struct journal_pos *pos, char *err, size_t errlen)
{
    int rc = journal_sync(&d->journal, pos);
    if (rc < 0) {
        disk_fault(d, "index fdatasync", rc);
        snprintf(err, errlen, "index not durable: %s", strerror(-rc));
        return -EIO;
    }
    return 0;
}

/* Writes n encoded records at *off of fd; -errno. */
static int write_records(int fd, const unsigned char *buf, size_t n, uint64_t *off)
{
    size_t len = n * FMT_RECORD_SIZE, done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(*off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -ENOSPC;
        done += (size_t)w;
    }
    *off += len;
    return 0;
}

/* Copies the index records in [from, to) of jfd to the end (*off) of fd,
 * through buf (batch records). */
static int carry_records(int jfd, uint64_t from, uint64_t to, int fd, uint64_t *off,
                         unsigned char *buf, size_t batch)
{
    while (from < to) {
        size_t want = to - from < (uint64_t)batch * FMT_RECORD_SIZE ? (size_t)(to - from)
                                                                    : batch * FMT_RECORD_SIZE;
        ssize_t n = pread(jfd, buf, want, (off_t)from);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || n % FMT_RECORD_SIZE)
            return n < 0 ? -errno : -EIO;
        int rc = write_records(fd, buf, (size_t)n / FMT_RECORD_SIZE, off);
        if (rc < 0)
            return rc;
        from += (uint64_t)n;
    }
    return 0;
}

/* The record a snapshot writes for one entry of a table, in *r; false when
 * the entry needs none. */
typedef bool (*snapshot_encode_fn)(struct disk_store *d, const struct objtab_entry *en,
                                   uint64_t now, struct fmt_record *r);

static bool snapshot_object(struct disk_store *d, const struct objtab_entry *en, uint64_t now,
                            struct fmt_record *r)
{
    (void)now;
    disk_record(d, r, REC_PUT, en->digest);
    r->file = (uint8_t)en->file;
    r->offset = en->offset;
    r->size = en->size;
    r->flags = (en->flags & OBJTAB_MARKED) ? PUT_MARKED : 0;
    return true;
}

static bool snapshot_tomb(struct disk_store *d, const struct objtab_entry *en, uint64_t now,
                          struct fmt_record *r)
{
    if (tomb_expired(d, en, now))
        return false;
    tomb_record_entry(d, r, en);
    return true;
}

/*
 * Writes one record per entry of tab (as encode says) at *off of fd, batch
 * entries at a time: each batch is encoded under the store's read lock and
 * written with no lock held, so traffic goes on. An entry is captured at
 * some moment after the snapshot began; the records carried over after it
 * bring it up to date on replay. Counts the records in *nrec. 0 or -errno.
 */
static int snapshot_table(struct disk_store *d, struct objtab *tab, snapshot_encode_fn encode,
                          uint64_t now, int fd, unsigned char *buf, uint32_t batch, uint64_t *off,
                          uint64_t *nrec)
{
    struct objtab_entry en;
    struct fmt_record r;
    for (uint32_t e0 = 0;; e0 += batch) {
        size_t nb = 0;
        pthread_rwlock_rdlock(&d->lock);
        bool more = e0 < tab->used;
        for (uint32_t e = e0; more && e < tab->used && e - e0 < batch; e++)
            if (objtab_get(tab, e, &en) && encode(d, &en, now, &r))
                fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
        pthread_rwlock_unlock(&d->lock);
        if (!more)
            return 0;
        int rc = write_records(fd, buf, nb, off);
        if (rc < 0)
            return rc;
        *nrec += nb;
    }
}

/*
 * Rewrites the index as a snapshot of the table: the header, the current
 * generation of each data file, the GC state, one record per object and one
 * per tombstone in force or quarantined key (disk_tomb.c),
 * then every record the old index gained while the snapshot was written.
 * Only when the index holds more than twice the records the table needs.
 *
 * Beside traffic: the state at the start (position S of the old index,
 * generations, GC state) is taken under the read lock; the objects are
 * written a batch at a time, each batch under the read lock only while it
 * is encoded. Records appended to the old index after S (writes, removals,
 * unmarks, GC records made meanwhile) are then copied after the objects,
 * most of them with no lock held, and the file is made durable; under the
 * write lock (a short stop: the few records appended since, one fdatasync,
 * the rename and a directory fsync) the new file replaces the old. Replaying it gives the table of
 * now: every record is a "set" of one object's state (or of the GC state), so applying the records
 * after S to objects captured at any moment after S ends where the old
 * index ends (docs/FORMAT.md, "Index snapshots").
 */
int disk_maybe_snapshot(struct disk_store *d, bool force)
{
    char err[256];
    int rc = 0;
    enum { BATCH = 16384 };
    struct fmt_record r;
    unsigned char *buf = NULL;
    size_t nb = 0;
    uint64_t off = 0, nrec = 0;
    struct journal_pos start;
    int fd = -1;

    pthread_rwlock_rdlock(&d->lock);
    uint64_t need = d->objects + tomb_count(d) + FMT_NFILES + 2;
    /* Also when what it gives back is over 1/64 of the file system: on a
     * small one, records of removed objects are much of the room. */
    bool worth = d->index_records > 2 * need + 4096 ||
                 (d->fs_bytes && d->index_records > need &&
                  (d->index_records - need) * FMT_RECORD_SIZE > d->fs_bytes / 64);
    if (!force && !worth) {
        pthread_rwlock_unlock(&d->lock);
        return 0;
    }
    uint64_t old_records = d->index_records;
    /* The new file, and its own reserve (preallocated before the switch,
     * while the old one still holds its own), must fit beside the room
     * kept for removals (disk_room.c): held as writes in flight meanwhile. */
    uint64_t spare = d->check_only ? 0 : disk_index_spare(d), writable, avail;
    uint64_t room = need * FMT_RECORD_SIZE + spare + (d->fs_block ? d->fs_block : 4096);
    int wrc = disk_room_writable(d, &writable, &avail);
    if (wrc == 0 && d->check_only)
        writable = avail; /* fsck --repair: no daemon, no reserve to keep */
    if (wrc == 0 && writable < room) {
        pthread_rwlock_unlock(&d->lock);
        log_warn("compact: index not rewritten: it needs %" PRIu64 " bytes free beside the room "
                 "kept for removing the stored objects, and %" PRIu64 " are (%" PRIu64
                 " free in the file system); the index is unchanged",
                 room, writable, avail);
        return -ENOSPC;
    }
    __atomic_add_fetch(&d->unwritten, room, __ATOMIC_RELAXED);
    journal_now(&d->journal, &start);
    buf = malloc((size_t)BATCH * FMT_RECORD_SIZE);
    if (!buf) {
        pthread_rwlock_unlock(&d->lock);
        rc = -ENOMEM;
        goto out;
    }
    disk_record(d, &r, REC_HEADER, NULL);
    memcpy(r.digest, FMT_INDEX_MAGIC, 8);
    r.aux = d->index_version;
    fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        if (!d->files[n].gen)
            continue;
        disk_record(d, &r, REC_GENERATION, NULL);
        r.file = (uint8_t)n;
        r.aux = d->files[n].gen;
        fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
    }
    if (d->gc_active) {
        disk_record(d, &r, REC_GC_STATE, NULL);
        r.aux = d->gc_id;
        fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
    } else {
        /* No cycle: the last cycle ended (its state, then an end, before
         * any object: nothing is removed), so GET /gc's ended_id survives,
         * and the last id begun as a cycle cancelled, so ids keep growing
         * after a restart (SPEC: a stale id never matches a new cycle). */
        if (d->gc_ended_id) {
            disk_record(d, &r, REC_GC_STATE, NULL);
            r.aux = d->gc_ended_id;
            fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
            disk_record(d, &r, REC_GC_END, NULL);
            r.aux = d->gc_ended_id;
            fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
        }
        if (d->last_gc_id > d->gc_ended_id) {
            disk_record(d, &r, REC_GC_STATE, NULL);
            r.aux = d->last_gc_id;
            fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
            disk_record(d, &r, REC_GC_CANCEL, NULL);
            r.aux = d->last_gc_id;
            fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);
        }
    }
    pthread_rwlock_unlock(&d->lock);
    nrec = nb;

    /* A new file (a leftover, or a FIFO or symlink put there, is unlinked,
     * never opened). */
    unlinkat(d->dirfd, "index.new", 0);
    fd = openat(d->dirfd, "index.new", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_records(fd, buf, nb, &off)) < 0)
        goto out;
    uint64_t tomb_now = disk_now_s();
    if ((rc = snapshot_table(d, &d->tab, snapshot_object, tomb_now, fd, buf, BATCH, &off, &nrec)) < 0)
        goto out;
    /* Tombstones still in force and quarantined keys (disk_tomb.c), the
     * same way; the DEL records and client PUTs carried over below set or
     * clear them again on replay. */
    if ((rc = snapshot_table(d, &d->tombs, snapshot_tomb, tomb_now, fd, buf, BATCH, &off, &nrec)) <
        0)
        goto out;
    /* Most of what the old index gained since S is copied before the
     * switch, with no lock held (those records are complete: appends finish
     * under the write lock before the end moves)... */
    struct journal_pos mid;
    pthread_rwlock_rdlock(&d->lock);
    journal_now(&d->journal, &mid);
    int jfd = d->journal.fd; /* only a snapshot replaces it, and this is the one */
    pthread_rwlock_unlock(&d->lock);
    if (mid.gen != start.gen) {
        rc = -ESTALE; /* replaced meanwhile: not ours to replace again */
        goto out;
    }
    if ((rc = carry_records(jfd, start.end, mid.end, fd, &off, buf, BATCH)) < 0)
        goto out;
    if (fdatasync(fd) < 0) {
        rc = -errno;
        goto out;
    }
    /* The new file's reserve, before the switch: from the switch on,
     * removals append to it, and the old file's blocks are freed only
     * after the lock is released. */
    uint64_t prealloc_end = 0;
    if (spare && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)spare) == 0) {
        prealloc_end = off + spare;
    } else if (spare && errno != EOPNOTSUPP) {
        rc = -errno;
        goto out;
    }

    /* ...and the switch carries over the rest, under the write lock. */
    struct timespec t0, t1;
    pthread_rwlock_wrlock(&d->lock);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct journal_pos now;
    journal_now(&d->journal, &now);
    uint64_t tail = now.end - start.end;
    rc = carry_records(d->journal.fd, mid.end, now.end, fd, &off, buf, BATCH);
    if (rc == 0 && (fdatasync(fd) < 0 || renameat(d->dirfd, "index.new", d->dirfd, "index") < 0))
        rc = -errno;
    if (rc < 0) {
        pthread_rwlock_unlock(&d->lock);
        goto out;
    }
    nrec += tail / FMT_RECORD_SIZE;
    int drc = disk_fsync_dir(d);
    if (drc < 0) /* the rename may or may not be durable; both files are complete */
        disk_fault(d, "directory fsync", drc);
    int oldfd = journal_swap(&d->journal, fd, off);
    fd = -1;
    __atomic_store_n(&d->index_prealloc, prealloc_end, __ATOMIC_RELAXED);
    /* The new file's own reserve, if the tail took much of it. */
    disk_index_reserve(d);
    tomb_prune(d, tomb_now); /* the new index no longer has them either */
    d->index_records = nrec;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_rwlock_unlock(&d->lock);
    close(oldfd); /* frees the old index's blocks: outside the lock */
    __atomic_sub_fetch(&d->unwritten, room, __ATOMIC_RELAXED);
    free(buf);
    log_info("compact: index rewritten: %" PRIu64 " records -> %" PRIu64 " (%" PRIu64
             " carried over from the snapshot's run; requests held for %.1f ms at the switch)",
             old_records, nrec, tail / FMT_RECORD_SIZE,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return drc;
out:
    free(buf);
    if (fd >= 0) {
        close(fd);
        unlinkat(d->dirfd, "index.new", 0);
    }
    if (room)
        __atomic_sub_fetch(&d->unwritten, room, __ATOMIC_RELAXED);
    snprintf(err, sizeof(err), "%s", strerror(-rc));
    log_warn("compact: index snapshot failed: %s (the index is unchanged)", err);
    return rc;
}

int disk_room_writable(struct disk_store *d, uint64_t *writable, uint64_t *avail)
{
    struct statvfs vfs;
    if (fstatvfs(d->dirfd, &vfs) < 0)
        return -errno;
    *avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    /* What writes in flight will still take (their bytes, and each one's
     * share of the room once stored), the part of the index reserve not
     * preallocated yet, and the room for removal frames. */
    uint64_t keep = __atomic_load_n(&d->unwritten, __ATOMIC_RELAXED) +
                    __atomic_load_n(&d->puts_pending, __ATOMIC_RELAXED) * disk_room_per_object() +
                    disk_index_spare_unallocated(d) + disk_room_now(d).frames;
    *writable = *avail > keep ? *avail - keep : 0;
    return 0;
}
