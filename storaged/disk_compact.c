/*
 * disk_compact.c - giving back the space of removed objects, one data file
 * at a time; then the index is rewritten if it has grown far past the table
 * (disk_maybe_snapshot, disk_index.c).
 *
 * Compacting data file N at generation G: N is taken from the writers; its
 * live frames are copied (in-kernel, copy_file_range) to data-N.g(G+1),
 * which is made durable; then, under the table lock, one batch of REC_MOVE
 * records plus a REC_GENERATION record goes to the index and the table
 * switches to the new file; then the old file is unlinked. A crash before
 * the REC_GENERATION record is durable leaves generation G current (the new
 * file is a leftover, removed at start-up); a crash after it leaves G+1
 * current (the old file is the leftover). The free space needed is the live
 * bytes of one data file, about 2% of the data, beside the room kept for
 * removals (disk_room.c), which a compaction never takes: a file whose copy
 * does not fit is left for later, saying how many bytes it needs, and the
 * files with the fewest live bytes go first (one with none needs no room).
 * Readers holding the old file keep reading it through their reference.
 *
 * In a store of index format 2 a compaction drops only what the data files
 * themselves say is removed: an intact object frame that is not indexed and
 * that nothing removes is copied and indexed again (find_unindexed).
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
#include <unistd.h>

struct live_frame {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t offset, size, new_offset;
    bool adopt; /* not indexed: its record was lost (find_unindexed) */
    uint8_t frame_flags; /* when adopt: its header's flags and written_at */
    uint64_t written_at; /* (tomb_refuses_adoption) */
};

static int by_offset(const void *a, const void *b)
{
    const struct live_frame *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * Progress (GET /compact, cas_compaction_*_bytes) stays within its total:
 * compact_total is the sum, over the data files, of what is counted for
 * each (*counted): at the start the live bytes of the files that had dead
 * bytes then (the plan), replaced by the exact bytes to copy once a file's
 * live frames are listed (objects written or removed since the start move
 * it up or down), and by the bytes actually copied once the file is done
 * or given up (a file skipped: 0). compact_done only ever adds bytes
 * copied from a file after they were counted, so done <= total at every
 * read, whatever the load.
 */
struct compact_plan {
    struct disk_store *d;
    uint64_t planned[FMT_NFILES]; /* counted in the total at the start */
};

static void progress(struct disk_store *d, uint64_t n)
{
    pthread_mutex_lock(&d->compact_lock);
    d->compact_done += n;
    assert(d->compact_done <= d->compact_total);
    pthread_mutex_unlock(&d->compact_lock);
}

/* What the total counts for one file becomes now (see above). */
static void retotal(struct disk_store *d, uint64_t *counted, uint64_t now)
{
    pthread_mutex_lock(&d->compact_lock);
    assert(d->compact_total >= *counted);
    d->compact_total = d->compact_total - *counted + now;
    *counted = now;
    assert(d->compact_done <= d->compact_total);
    pthread_mutex_unlock(&d->compact_lock);
}

/* How long compaction waits for the writers in flight in a data file (new
 * ones go elsewhere) before it leaves that file for the next compaction: a
 * stalled upload must not hold compaction up for long. */
#define WRITERS_WAIT_SECONDS 5

static bool listed(const struct live_frame *lf, size_t n, uint64_t offset)
{
    struct live_frame key = {.offset = offset};
    return n && bsearch(&key, lf, n, sizeof(*lf), by_offset) != NULL;
}

/*
 * Store of index format 2 only (every removal is in the data files): adds to
 * *lf (nlf entries sorted by offset, capacity *cap) every whole intact object
 * frame of data file n (fd, fsize bytes) that the table does not name, that
 * no removal frame after it names and that is not marked removed in place,
 * whose key is not stored elsewhere and that no tombstone in force (nor the
 * quarantine list) refuses, and whose bytes hash to its key, with adopt set.
 * That is an object whose index record was lost (an index cut back: writers
 * commit out of file order, so such a frame can lie before indexed ones,
 * where start-up does not look), or a write or removal that stopped before
 * it was answered. Dropping it could lose an acknowledged object; keeping it
 * can only undo what was never answered. A file with a damaged removal frame
 * is left as it is (-EUCLEAN): what its entries removed cannot be told.
 * 0 or -errno with err filled.
 */
static int find_unindexed(struct disk_store *d, unsigned n, int fd, uint64_t fsize,
                          struct live_frame **lf, size_t *nlf, size_t *cap, char *err,
                          size_t errlen)
{
    struct disk_removals rs;
    memset(&rs, 0, sizeof(rs));
    size_t buflen = 1u << 20, indexed = *nlf;
    unsigned char *buf = malloc(buflen);
    int rc = buf ? disk_removals_read(d, fd, 0, fsize, &rs) : -ENOMEM;
    if (rc == 0 && rs.damaged) {
        snprintf(err, errlen,
                 "%" PRIu64 " damaged removal frames (what they removed cannot be told): run "
                 "ca-cas fsck %s --repair",
                 rs.damaged, d->dir);
        rc = -EUCLEAN;
    }
    uint64_t now = disk_now_s();
    struct fmt_walk w = {.fd = fd,
                         .fsize = fsize,
                         .algo = d->base.algo->id,
                         .next = 0,
                         .buf = buf,
                         .buflen = buflen};
    while (rc == 0 && (rc = fmt_walk_next(&w)) > 0) {
        rc = 0;
        if (w.what != FMT_AT_OBJECT || listed(*lf, indexed, w.at) ||
            disk_removal_covers(&rs, w.fr.digest, w.at))
            continue;
        pthread_rwlock_rdlock(&d->lock);
        bool skip = objtab_find(&d->tab, w.fr.digest) != OBJTAB_NONE ||
                    tomb_refuses_adoption(d, &w.fr, now);
        pthread_rwlock_unlock(&d->lock);
        if (skip)
            continue;
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(w.fr.digest, d->base.algo->digest_len, hex);
        if (!disk_frame_bytes_match(d, fd, w.at + FMT_FRAME_HEADER, w.fr.size, w.fr.digest, buf,
                                    buflen)) {
            log_warn("compact: data file %u: unindexed frame of %s at offset %" PRIu64
                     " does not match its key: dropped",
                     n, hex, w.at);
            continue;
        }
        if (*nlf == *cap) {
            size_t c = *cap ? *cap * 2 : 1024;
            struct live_frame *x = realloc(*lf, c * sizeof(*x));
            if (!x) {
                rc = -ENOMEM;
                break;
            }
            *lf = x;
            *cap = c;
        }
        struct live_frame *f = &(*lf)[(*nlf)++];
        memset(f, 0, sizeof(*f));
        memcpy(f->digest, w.fr.digest, d->tab.digest_len);
        f->offset = w.at;
        f->size = w.fr.size;
        f->adopt = true;
        f->frame_flags = w.fr.flags;
        f->written_at = w.fr.written_at;
    }
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    else if (rc == -EIO)
        snprintf(err, errlen, "cannot read it");
    disk_removals_free(&rs);
    free(buf);
    return rc;
}

/* Compacts data file n. The file must have dead bytes; *counted is what
 * the progress total counts for it (retotal), the bytes copied when this
 * returns. Returns 0 or -errno (-EBUSY: writers stayed in it; -ENOSPC: its
 * live bytes do not fit beside the room kept for removals, err says how
 * many bytes it needs). */
static int compact_file(struct disk_store *d, unsigned n, uint64_t *counted, char *err,
                        size_t errlen)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WRITERS_WAIT_SECONDS;
    pthread_mutex_lock(&d->files_lock);
    d->files[n].compacting = true;
    while (d->files[n].writers &&
           pthread_cond_timedwait(&d->files_cond, &d->files_lock, &until) != ETIMEDOUT)
        ;
    if (d->files[n].writers) {
        d->files[n].compacting = false;
        pthread_cond_broadcast(&d->files_cond);
        pthread_mutex_unlock(&d->files_lock);
        snprintf(err, errlen, "%u uploads still writing to it after %d s; left for later",
                 d->files[n].writers, WRITERS_WAIT_SECONDS);
        retotal(d, counted, 0);
        return -EBUSY;
    }
    assert(!d->files[n].busy); /* one compactor at a time */
    d->files[n].busy = true;
    uint64_t old_len = d->files[n].length;
    pthread_mutex_unlock(&d->files_lock);

    /* The live frames of the file, in file order. */
    struct live_frame *lf = NULL;
    size_t nlf = 0, cap = 0;
    uint64_t to_copy = 0, copied = 0; /* bytes of live frames; of them copied */
    uint64_t room = 0;                /* held in d->unwritten for the copy */
    int rc = 0;
    pthread_rwlock_rdlock(&d->lock);
    uint64_t gen = d->files[n].gen;
    struct dfile_ref *oldref = d->files[n].ref;
    dfile_ref_get(oldref);
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used && rc == 0; e++) {
        if (!objtab_get(&d->tab, e, &en) || en.file != n)
            continue;
        if (nlf == cap) {
            cap = cap ? cap * 2 : 1024;
            struct live_frame *x = realloc(lf, cap * sizeof(*x));
            if (!x) {
                rc = -ENOMEM;
                break;
            }
            lf = x;
        }
        memset(&lf[nlf], 0, sizeof(lf[nlf]));
        memcpy(lf[nlf].digest, en.digest, d->tab.digest_len);
        lf[nlf].offset = en.offset;
        lf[nlf].size = en.size;
        nlf++;
    }
    bool v2 = d->index_version == FMT_INDEX_VERSION_REMOVALS;
    pthread_rwlock_unlock(&d->lock);
    if (rc < 0)
        goto out;
    if (nlf)
        qsort(lf, nlf, sizeof(*lf), by_offset);
    if (v2) {
        size_t before = nlf;
        rc = find_unindexed(d, n, oldref->fd, old_len, &lf, &nlf, &cap, err, errlen);
        if (rc < 0)
            goto out;
        if (nlf > before)
            qsort(lf, nlf, sizeof(*lf), by_offset);
    }
    for (size_t i = 0; i < nlf; i++)
        to_copy += frame_bytes(lf[i].size);
    retotal(d, counted, to_copy);
    /* The copy and its MOVE records must fit beside the room kept for
     * removals (disk_room.c); they are held as writes in flight until the
     * old file is gone. A file with nothing live needs only its GENERATION
     * record, which the index reserve's constant part holds. */
    if (to_copy) {
        uint64_t writable, avail;
        room = to_copy + (d->fs_block ? d->fs_block : 4096) + nlf * FMT_RECORD_SIZE;
        if (disk_room_writable(d, &writable, &avail) == 0 && writable < room) {
            snprintf(err, errlen,
                     "no room: copying its %" PRIu64 " live bytes needs %" PRIu64 " bytes free "
                     "beside the room kept for removing the stored objects, and %" PRIu64
                     " are (%" PRIu64 " free in the file system): remove more objects (DELETE, "
                     "or a GC cycle), or free space on the file system",
                     to_copy, room, writable, avail);
            room = 0;
            rc = -ENOSPC;
            retotal(d, counted, 0);
            goto out;
        }
        __atomic_add_fetch(&d->unwritten, room, __ATOMIC_RELAXED);
    }

    char name[32], oldname[32];
    fmt_datafile_name(n, gen + 1, name, sizeof(name));
    fmt_datafile_name(n, gen, oldname, sizeof(oldname));
    /* A new file: whatever is there under that name (a leftover of a
     * failed compaction, or a FIFO or symlink) is unlinked, never opened. */
    unlinkat(d->dirfd, name, 0);
    int fd = openat(d->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", name, strerror(errno));
        goto out;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < nlf && rc == 0; i++) {
        uint64_t len = frame_bytes(lf[i].size);
        rc = disk_copy_range(oldref->fd, lf[i].offset, fd, pos, len);
        lf[i].new_offset = pos;
        pos += len;
        if (rc == 0) {
            copied += len;
            progress(d, len);
        }
    }
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    if (rc == 0)
        rc = disk_fsync_dir(d);
    if (rc < 0) {
        snprintf(err, errlen, "cannot write %s: %s", name, strerror(-rc));
        close(fd);
        unlinkat(d->dirfd, name, 0);
        goto out;
    }
    struct dfile_ref *newref = malloc(sizeof(*newref));
    struct fmt_record *recs = malloc((nlf + 1) * sizeof(*recs));
    if (!newref || !recs) {
        free(newref);
        free(recs);
        close(fd);
        unlinkat(d->dirfd, name, 0);
        rc = -ENOMEM;
        goto out;
    }
    newref->fd = fd;
    newref->refs = 1;

    /* Commit: moves for the frames still live where we copied them from. */
    struct journal_pos jpos;
    size_t nrec = 0;
    uint64_t live = 0;
    pthread_rwlock_wrlock(&d->lock);
    for (size_t i = 0; i < nlf; i++) {
        if (lf[i].adopt)
            continue;
        uint32_t e = objtab_find(&d->tab, lf[i].digest);
        if (e == OBJTAB_NONE || !objtab_get(&d->tab, e, &en) || en.file != n ||
            en.offset != lf[i].offset)
            continue; /* removed meanwhile: its copy is dead space in the new file */
        disk_record(d, &recs[nrec], REC_MOVE, lf[i].digest);
        recs[nrec].file = (uint8_t)n;
        recs[nrec].offset = lf[i].new_offset;
        recs[nrec].size = lf[i].size;
        recs[nrec].aux = lf[i].offset;
        nrec++;
    }
    disk_record(d, &recs[nrec], REC_GENERATION, NULL);
    recs[nrec].file = (uint8_t)n;
    recs[nrec].aux = gen + 1;
    /* Frames whose records were lost: PUT records into the new generation,
     * after its GENERATION record (a PUT names the current generation), and
     * table entries now, under the same lock (given back if the append
     * fails), so that two frames of one key are not both indexed and a
     * delete or a write of the key meanwhile wins. */
    size_t nput = 0;
    uint64_t now = disk_now_s(), killed = 0;
    for (size_t i = 0; i < nlf; i++) {
        struct fmt_frame fr = {.flags = lf[i].frame_flags, .written_at = lf[i].written_at};
        memcpy(fr.digest, lf[i].digest, CAS_MAX_DIGEST);
        if (!lf[i].adopt)
            continue;
        unsigned refused = tomb_adoption_refusal(d, &fr, now);
        if (refused == TOMB_DELETED && disk_frame_kill_at(d, fd, lf[i].new_offset, fr.digest) > 0)
            killed++; /* a client delete since find_unindexed refuses it: for good */
        if (refused || objtab_find(&d->tab, lf[i].digest) != OBJTAB_NONE)
            continue;
        if (objtab_insert(&d->tab, lf[i].digest, n, lf[i].new_offset, lf[i].size, 0) == OBJTAB_NONE)
            continue; /* out of memory: left to the next compaction's look */
        struct fmt_record *r = &recs[nrec + 1 + nput++];
        disk_record(d, r, REC_PUT, lf[i].digest);
        r->file = (uint8_t)n;
        r->offset = lf[i].new_offset;
        r->size = lf[i].size;
    }
    /* The marks durable before the GENERATION record makes the copy
     * current. If they cannot be, the tombstone in force still refuses the
     * frame at the next start, which marks it then. */
    if (killed && fdatasync(fd) < 0)
        log_warn("compact: data file %u: cannot sync the removal marks of %" PRIu64
                 " refused frames: %s",
                 n, killed, strerror(errno));
    rc = disk_append(d, recs, nrec + 1 + nput, &jpos, err, errlen);
    for (size_t i = nrec + 1; i < nrec + 1 + nput; i++) {
        uint32_t e = objtab_find(&d->tab, recs[i].digest);
        assert(e != OBJTAB_NONE); /* inserted above, under the same write lock */
        if (rc < 0) {
            objtab_remove(&d->tab, e);
            continue;
        }
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(recs[i].digest, d->base.algo->digest_len, hex);
        d->objects++;
        d->bytes += recs[i].size;
        live += frame_bytes(recs[i].size);
        tomb_clear(d, recs[i].digest); /* an expired tombstone */
        log_warn("compact: data file %u: object %s is whole and intact, not indexed, and no "
                 "removal names it: its index record was lost; indexed again",
                 n, hex);
    }
    if (rc == 0) {
        for (size_t i = 0; i < nrec; i++) {
            uint32_t e = objtab_find(&d->tab, recs[i].digest);
            assert(e != OBJTAB_NONE); /* found above, under the same write lock */
            objtab_set_location(&d->tab, e, n, recs[i].offset);
            live += frame_bytes(recs[i].size);
        }
        d->files[n].ref = newref;
        d->files[n].gen = gen + 1;
        d->files[n].live = live;
    }
    pthread_rwlock_unlock(&d->lock);
    free(recs);
    if (rc < 0) {
        dfile_ref_put(newref);
        unlinkat(d->dirfd, name, 0);
        goto out;
    }
    dfile_ref_put(oldref); /* the table's reference */
    rc = disk_sync(d, &jpos, err, errlen);
    if (rc == 0) {
        unlinkat(d->dirfd, oldname, 0);
        disk_fsync_dir(d);
        log_info("compact: data file %u: %" PRIu64 " -> %" PRIu64 " bytes", n, old_len, pos);
    }
    pthread_mutex_lock(&d->files_lock);
    d->files[n].length = pos;
    pthread_mutex_unlock(&d->files_lock);
out:
    if (room)
        __atomic_sub_fetch(&d->unwritten, room, __ATOMIC_RELAXED);
    retotal(d, counted, copied); /* a file given up counts what was copied */
    dfile_ref_put(oldref); /* ours */
    free(lf);
    pthread_mutex_lock(&d->files_lock);
    d->files[n].busy = false;
    d->files[n].compacting = false;
    pthread_cond_broadcast(&d->files_cond);
    pthread_mutex_unlock(&d->files_lock);
    return rc;
}

static void *compact_main(void *arg)
{
    struct compact_plan *plan = arg;
    struct disk_store *d = plan->d;
    char err[400] = "";
    int failures = 0;
    /* Files with the fewest live bytes first: a file with none needs no
     * room to be given back, and what each gives back helps the next copy
     * fit on a full file system. */
    unsigned order[FMT_NFILES];
    uint64_t live_at[FMT_NFILES];
    pthread_rwlock_rdlock(&d->lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        live_at[n] = d->files[n].live;
    pthread_rwlock_unlock(&d->lock);
    for (unsigned i = 0; i < FMT_NFILES; i++) {
        unsigned j = i;
        for (; j > 0 && live_at[order[j - 1]] > live_at[i]; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    for (unsigned k = 0; k < FMT_NFILES; k++) {
        unsigned n = order[k];
        pthread_mutex_lock(&d->files_lock);
        uint64_t length = d->files[n].length - d->files[n].reserved;
        pthread_mutex_unlock(&d->files_lock);
        pthread_rwlock_rdlock(&d->lock);
        uint64_t live = d->files[n].live;
        pthread_rwlock_unlock(&d->lock);
        if (length <= live) {
            retotal(d, &plan->planned[n], 0);
            continue;
        }
        err[0] = '\0';
        int rc = compact_file(d, n, &plan->planned[n], err, sizeof(err));
        if (rc < 0) {
            log_warn("compact: data file %u left as it was: %s", n, err);
            failures++;
        }
        pthread_mutex_lock(&d->compact_lock);
        if (rc == -ENOSPC && !d->compact_left_out[0]) /* for GET /compact */
            snprintf(d->compact_left_out, sizeof(d->compact_left_out),
                     "data file %u left as it was: %s", n, err);
        pthread_mutex_unlock(&d->compact_lock);
    }
    /* A store of index format 1 (from before removal frames) holds frames
     * of removed objects that nothing in the data files names; once every
     * file with dead bytes has been compacted, none is left, and the index
     * says so from now on (format 2: docs/FORMAT.md, "Removal frames"). */
    bool upgrade = false;
    pthread_rwlock_wrlock(&d->lock);
    if (!failures && d->index_version != FMT_INDEX_VERSION_REMOVALS) {
        d->index_version = FMT_INDEX_VERSION_REMOVALS;
        upgrade = true;
    }
    pthread_rwlock_unlock(&d->lock);
    int snap = disk_maybe_snapshot(d, upgrade);
    /* The index's preallocation beyond what the objects left need. */
    pthread_rwlock_wrlock(&d->lock);
    disk_index_trim(d);
    pthread_rwlock_unlock(&d->lock);
    if (upgrade && snap == 0) {
        log_info("compact: the index is now of format %d (removals recorded in the data files)",
                 FMT_INDEX_VERSION_REMOVALS);
    } else if (upgrade) { /* the index was left as it was: still format 1 */
        pthread_rwlock_wrlock(&d->lock);
        d->index_version = FMT_INDEX_VERSION;
        pthread_rwlock_unlock(&d->lock);
    }
#ifndef NDEBUG
    pthread_rwlock_rdlock(&d->lock);
    DISK_ASSERT_CONSISTENT(d); /* every move kept the table and its counters in step */
    pthread_rwlock_unlock(&d->lock);
#endif
    pthread_mutex_lock(&d->compact_lock);
    d->compact_running = false;
    d->compact_done = d->compact_total;
    d->compactions++;
    pthread_cond_broadcast(&d->compact_cond);
    pthread_mutex_unlock(&d->compact_lock);
    log_info("compact: done%s", failures ? " (with failures, see above)" : "");
    free(plan);
    return NULL;
}

int disk_compact_start(struct store *s, char *err, size_t errlen)
{
    struct disk_store *d = disk_of(s);
    if (__atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST)) {
        snprintf(err, errlen, "store is read-only: %s", d->read_only_reason);
        return -EROFS;
    }
    pthread_mutex_lock(&d->compact_lock);
    if (d->compact_running) {
        pthread_mutex_unlock(&d->compact_lock);
        snprintf(err, errlen, "compaction is already running");
        return -EBUSY;
    }
    if (d->compact_joinable) {
        pthread_join(d->compact_thread, NULL);
        d->compact_joinable = false;
    }
    /* The total is the live bytes to copy in files that have dead bytes,
     * each file's share kept in the plan so that it can be corrected when
     * the file is reached (retotal). */
    struct compact_plan *plan = calloc(1, sizeof(*plan));
    if (!plan) {
        pthread_mutex_unlock(&d->compact_lock);
        snprintf(err, errlen, "cannot start compaction: out of memory");
        return -ENOMEM;
    }
    plan->d = d;
    uint64_t total = 0;
    pthread_rwlock_rdlock(&d->lock);
    pthread_mutex_lock(&d->files_lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        if (d->files[n].length - d->files[n].reserved > d->files[n].live) {
            plan->planned[n] = d->files[n].live;
            total += d->files[n].live;
        }
    pthread_mutex_unlock(&d->files_lock);
    pthread_rwlock_unlock(&d->lock);
    d->compact_total = total;
    d->compact_done = 0;
    d->compact_running = true;
    d->compact_left_out[0] = '\0';
    int rc = pthread_create(&d->compact_thread, NULL, compact_main, plan);
    if (rc != 0) {
        free(plan);
        d->compact_running = false;
        pthread_mutex_unlock(&d->compact_lock);
        snprintf(err, errlen, "cannot start compaction: %s", strerror(rc));
        return -rc;
    }
    d->compact_joinable = true;
    pthread_mutex_unlock(&d->compact_lock);
    log_info("compact: started, %" PRIu64 " live bytes to copy", total);
    return 0;
}

void disk_compact_wait(struct store *s)
{
    struct disk_store *d = disk_of(s);
    pthread_mutex_lock(&d->compact_lock);
    bool join = d->compact_joinable;
    d->compact_joinable = false;
    pthread_mutex_unlock(&d->compact_lock);
    if (join)
        pthread_join(d->compact_thread, NULL);
}
