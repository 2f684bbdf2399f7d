/*
 * disk_compact.c - giving back the space of removed objects, one data file
 * at a time, and rewriting the index when it has grown far past the table.
 *
 * Compacting data file N at generation G: N is taken from the writers; its
 * live frames are copied (in-kernel, copy_file_range) to data-N.g(G+1),
 * which is made durable; then, under the table lock, one batch of REC_MOVE
 * records plus a REC_GENERATION record goes to the index and the table
 * switches to the new file; then the old file is unlinked. A crash before
 * the REC_GENERATION record is durable leaves generation G current (the new
 * file is a leftover, removed at start-up); a crash after it leaves G+1
 * current (the old file is the leftover). The free space needed is the live
 * bytes of one data file, about 2% of the data. Readers holding the old
 * file keep reading it through their reference.
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "log.h"

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
};

static int by_offset(const void *a, const void *b)
{
    const struct live_frame *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void progress(struct disk_store *d, uint64_t n)
{
    pthread_mutex_lock(&d->compact_lock);
    d->compact_done += n;
    pthread_mutex_unlock(&d->compact_lock);
}

/* How long compaction waits for the writers in flight in a data file (new
 * ones go elsewhere) before it leaves that file for the next compaction: a
 * stalled upload must not hold compaction up for long. */
#define WRITERS_WAIT_SECONDS 5

/* Compacts data file n. The file must have dead bytes; returns 0 or -errno
 * (-EBUSY: writers stayed in it). */
static int compact_file(struct disk_store *d, unsigned n, char *err, size_t errlen)
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
        return -EBUSY;
    }
    d->files[n].busy = true;
    uint64_t old_len = d->files[n].length;
    pthread_mutex_unlock(&d->files_lock);

    /* The live frames of the file, in file order. */
    struct live_frame *lf = NULL;
    size_t nlf = 0, cap = 0;
    int rc = 0;
    pthread_rwlock_rdlock(&d->lock);
    uint64_t gen = d->files[n].gen;
    struct dfile_ref *oldref = d->files[n].ref;
    __atomic_fetch_add(&oldref->refs, 1, __ATOMIC_ACQ_REL);
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
        memcpy(lf[nlf].digest, en.digest, d->tab.digest_len);
        lf[nlf].offset = en.offset;
        lf[nlf].size = en.size;
        nlf++;
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc < 0)
        goto out;
    if (nlf)
        qsort(lf, nlf, sizeof(*lf), by_offset);

    char name[32], oldname[32];
    fmt_datafile_name(n, gen + 1, name, sizeof(name));
    fmt_datafile_name(n, gen, oldname, sizeof(oldname));
    int fd = openat(d->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
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
        progress(d, len);
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
    rc = disk_append(d, recs, nrec + 1, &jpos, err, errlen);
    if (rc == 0) {
        for (size_t i = 0; i < nrec; i++) {
            uint32_t e = objtab_find(&d->tab, recs[i].digest);
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
    dfile_ref_put(oldref); /* ours */
    free(lf);
    pthread_mutex_lock(&d->files_lock);
    d->files[n].busy = false;
    d->files[n].compacting = false;
    pthread_cond_broadcast(&d->files_cond);
    pthread_mutex_unlock(&d->files_lock);
    return rc;
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
    tomb_record(d, r, en->digest, en->flags, en->offset);
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
    if (!force && d->index_records <= 2 * need + 4096) {
        pthread_rwlock_unlock(&d->lock);
        return 0;
    }
    uint64_t old_records = d->index_records;
    journal_now(&d->journal, &start);
    buf = malloc((size_t)BATCH * FMT_RECORD_SIZE);
    if (!buf) {
        pthread_rwlock_unlock(&d->lock);
        rc = -ENOMEM;
        goto out;
    }
    disk_record(d, &r, REC_HEADER, NULL);
    memcpy(r.digest, FMT_INDEX_MAGIC, 8);
    r.aux = FMT_INDEX_VERSION;
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
    }
    pthread_rwlock_unlock(&d->lock);
    nrec = nb;

    fd = openat(d->dirfd, "index.new", O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
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
    tomb_prune(d, tomb_now); /* the new index no longer has them either */
    d->index_records = nrec;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_rwlock_unlock(&d->lock);
    close(oldfd); /* frees the old index's blocks: outside the lock */
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
    snprintf(err, sizeof(err), "%s", strerror(-rc));
    log_warn("compact: index snapshot failed: %s (the index is unchanged)", err);
    return rc;
}

static void *compact_main(void *arg)
{
    struct disk_store *d = arg;
    char err[256] = "";
    int failures = 0;
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        pthread_mutex_lock(&d->files_lock);
        uint64_t length = d->files[n].length - d->files[n].reserved;
        pthread_mutex_unlock(&d->files_lock);
        pthread_rwlock_rdlock(&d->lock);
        uint64_t live = d->files[n].live;
        pthread_rwlock_unlock(&d->lock);
        if (length <= live)
            continue;
        err[0] = '\0';
        if (compact_file(d, n, err, sizeof(err)) < 0) {
            log_warn("compact: data file %u left as it was: %s", n, err);
            failures++;
        }
    }
    disk_maybe_snapshot(d, false);
    pthread_mutex_lock(&d->compact_lock);
    d->compact_running = false;
    d->compact_done = d->compact_total;
    d->compactions++;
    pthread_cond_broadcast(&d->compact_cond);
    pthread_mutex_unlock(&d->compact_lock);
    log_info("compact: done%s", failures ? " (with failures, see above)" : "");
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
    /* The total is the live bytes to copy in files that have dead bytes. */
    uint64_t total = 0;
    pthread_rwlock_rdlock(&d->lock);
    pthread_mutex_lock(&d->files_lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        if (d->files[n].length - d->files[n].reserved > d->files[n].live)
            total += d->files[n].live;
    pthread_mutex_unlock(&d->files_lock);
    pthread_rwlock_unlock(&d->lock);
    d->compact_total = total;
    d->compact_done = 0;
    d->compact_running = true;
    int rc = pthread_create(&d->compact_thread, NULL, compact_main, d);
    if (rc != 0) {
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
