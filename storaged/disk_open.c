/*
 * disk_open.c - the top of the disk backend: its store_ops table (the one
 * file that names every op of the files below it), the registry's entry
 * (disk_backend), opening a directory (the lock, then disk_replay.c) and
 * closing it, and the capacity, metrics and status figures.
 *
 * The disk backend's files, bottom first; each calls only the lines below
 * it (scripts/check-layers.sh proves it from the object files):
 *   disk_base                 faults, records, data file references, copies
 *   disk_tomb                 the tombstone and quarantine table
 *   disk_index                appending to the index, group commit, snapshot
 *   disk_mark | disk_check | disk_rmframe
 *                             a use in a GC cycle | a copy's integrity |
 *                             removal frames (writing, reading back)
 *   disk_read | disk_write | disk_gc | disk_remove | disk_compact |
 *   disk_replay               the ops (and replay), never calling each other
 *   disk_scrub                the scrubber, a reader through disk_read
 *   disk_open                 this file
 * Their shared state and locking rules: disk_internal.h.
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "json.h"
#include "log.h"
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

const struct store_ops disk_ops = {
    .name = "disk",
    .put_begin = disk_put_begin,
    .put_write = disk_put_write,
    .put_commit = disk_put_commit,
    .put_abort = disk_put_abort,
    .open = disk_open_obj,
    .pread = disk_pread,
    .close = disk_close_obj,
    .block_sums = disk_block_sums,
    .quarantine = disk_quarantine,
    .confirm = disk_confirm,
    .stat = disk_stat,
    .remove = disk_remove,
    .remove_at = disk_remove_at,
    .drop = disk_drop,
    .quarantined = disk_quarantined,
    .put_copy = disk_put_copy,
    .put_stamp = disk_put_stamp,
    .list = disk_list,
    .gc_begin = disk_gc_begin,
    .gc_mark = disk_gc_mark,
    .use_keys = disk_use_keys,
    .gc_end = disk_gc_end,
    .gc_cancel = disk_gc_cancel,
    .gc_active = disk_gc_active,
    .gc_history = disk_gc_history,
    .compact_start = disk_compact_start,
    .scrub_start = disk_scrub_start,
    .compact_wait = disk_compact_wait,
    .info = disk_info,
    .metrics = disk_metrics,
    .status_scrub = disk_status_scrub,
    .destroy = disk_destroy,
};

static int disk_backend_open(const struct store_options *o, struct store **out, char *err,
                             size_t errlen)
{
    struct disk_options d = {.dir = o->dir,
                             .algo = o->algo,
                             .read_only = o->read_only,
                             .capacity = o->capacity,
                             .max_object_size = o->max_object_size,
                             .check_only = o->check_only,
                             .tombstone_ttl = o->tombstone_ttl};
    /* A directory of the S3 backend's state: opening it as a disk store
     * would create an empty store under the same node identity. */
    char path[4096];
    snprintf(path, sizeof(path), "%s/s3-index", o->dir);
    if (access(path, F_OK) == 0) {
        snprintf(err, errlen,
                 "%s holds an S3 backend's state (s3-index): start it with --backend s3 and its "
                 "bucket; nothing was changed",
                 o->dir);
        return -EINVAL;
    }
    return disk_open(&d, out, err, errlen);
}

const struct store_backend disk_backend = {
    .name = "disk",
    .open = disk_backend_open,
    .usage = "disk (the default): an append-only index plus 50 data files in --dir; "
             "--capacity overrides the file system's size",
};

/* ---- open and close ---------------------------------------------------- */

static int take_lock(struct disk_store *d, char *err, size_t errlen)
{
    d->lockfd = fmt_open_regular(d->dirfd, d->dir, "LOCK", O_RDWR | O_CREAT, err, errlen);
    if (d->lockfd < 0) {
        int rc = d->lockfd;
        d->lockfd = -1;
        return rc;
    }
    if (flock(d->lockfd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(d->lockfd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "%s is in use by another storaged%s%s (lock on %s/LOCK)", d->dir,
                 *pid ? ", pid " : "", pid, d->dir);
        return -EBUSY;
    }
    return 0;
}

/* Once the store is open: the PID in LOCK, for a second daemon's message
 * (not before, so that a refused start leaves LOCK as it was). */
static void note_pid(struct disk_store *d)
{
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(d->lockfd, 0) < 0 || pwrite(d->lockfd, pid, (size_t)n, 0) < 0)
        log_warn("cannot write pid to %s/LOCK: %s", d->dir, strerror(errno));
}

int disk_open(const struct disk_options *opts, struct store **out, char *err, size_t errlen)
{
    struct disk_store *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    uint64_t t0 = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    d->base.ops = &disk_ops;
    d->base.algo = opts->algo;
    d->unshared = true; /* until it is returned */
    d->dir = strdup(opts->dir);
    d->dirfd = d->lockfd = -1;
    d->check_only = opts->check_only;
    d->capacity = opts->capacity;
    d->max_object_size = opts->max_object_size;
    d->read_only = opts->read_only ? 1 : 0;
    if (opts->read_only)
        snprintf(d->read_only_reason, sizeof(d->read_only_reason), "started with --read-only");
    pthread_rwlock_init(&d->lock, NULL);
    pthread_mutex_init(&d->files_lock, NULL);
    pthread_cond_init(&d->files_cond, NULL);
    pthread_mutex_init(&d->compact_lock, NULL);
    pthread_cond_init(&d->compact_cond, NULL);
    pthread_mutex_init(&d->scrub_lock, NULL);
    pthread_cond_init(&d->scrub_cond, NULL);
    journal_init(&d->journal, -1, 0);
    d->tomb_ttl = opts->tombstone_ttl ? opts->tombstone_ttl : DISK_TOMBSTONE_TTL;
    d->replay_reread = opts->replay_reread_removals;
    int rc = objtab_init(&d->tab, opts->algo->digest_len);
    if (rc == 0)
        rc = objtab_init(&d->tombs, opts->algo->digest_len);
    if (rc < 0)
        goto fail;
    d->dirfd = open(opts->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open directory %s: %s", opts->dir, strerror(errno));
        goto fail;
    }
    if ((rc = take_lock(d, err, errlen)) < 0)
        goto fail;
    if ((rc = disk_replay(d, err, errlen)) < 0)
        goto fail;
    struct statvfs fs;
    if (fstatvfs(d->dirfd, &fs) == 0) {
        d->fs_bytes = (uint64_t)fs.f_blocks * fs.f_frsize;
        d->fs_block = fs.f_frsize;
    }
    if (!d->read_only)
        disk_index_reserve(d);
    tomb_prune(d, disk_now_s());
    if (!d->check_only)
        note_pid(d);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    d->replay.seconds =
        (double)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec - t0) / 1e9;
    d->unshared = d->check_only;
    *out = &d->base;
    return 0;
fail:
    disk_destroy(&d->base);
    return rc;
}

void disk_replay_stats(struct store *s, struct disk_replay_stats *out)
{
    *out = disk_of(s)->replay;
}

void disk_info(struct store *s, struct store_info *o)
{
    struct disk_store *d = disk_of(s);
    memset(o, 0, sizeof(*o));
    struct statvfs vfs;
    if (fstatvfs(d->dirfd, &vfs) == 0) {
        o->total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
        /* What new objects may take: the room for removing the stored ones
         * and what writes in flight will take are not available
         * (disk_room.c). */
        uint64_t avail;
        if (disk_room_writable(d, &o->available, &avail) < 0)
            o->available = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    }
    uint64_t length = 0, live = 0;
    pthread_mutex_lock(&d->files_lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        length += d->files[n].length - d->files[n].reserved; /* not uploads in flight */
    pthread_mutex_unlock(&d->files_lock);
    pthread_rwlock_rdlock(&d->lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        live += d->files[n].live;
    o->objects = d->objects;
    o->bytes = d->bytes;
    o->garbage = d->garbage_bytes;
    o->garbage_objects = d->garbage_objects;
    o->gc_active = d->gc_active;
    o->gc_id = d->gc_id;
    tomb_counts(d, &o->tombstones, &o->quarantined);
    pthread_rwlock_unlock(&d->lock);
    o->unreclaimed = length > live ? length - live : 0;
    if (d->capacity) {
        /* --capacity: the store may use that much, within what the disk has. */
        uint64_t used = length + __atomic_load_n(&d->journal.end, __ATOMIC_RELAXED);
        uint64_t left = d->capacity > used ? d->capacity - used : 0;
        o->total = d->capacity;
        if (left < o->available)
            o->available = left;
    }
    int ro = __atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST);
    o->read_only = ro != 0;
    o->faulted = ro == 2; /* disk_fault: an I/O error, not --read-only */
    if (ro)
        snprintf(o->read_only_reason, sizeof(o->read_only_reason), "%s", d->read_only_reason);
    pthread_mutex_lock(&d->compact_lock);
    o->compacting = d->compact_running;
    o->compact_done = d->compact_done;
    o->compact_total = d->compact_total;
    o->compactions = d->compactions;
    snprintf(o->compact_left_out, sizeof(o->compact_left_out), "%s", d->compact_left_out);
    pthread_mutex_unlock(&d->compact_lock);
    o->corrupt_found = __atomic_load_n(&d->corrupt_found, __ATOMIC_RELAXED);
    o->scrubbing = d->scrub_running;
    o->scrub_rate = d->scrub_rate;
    o->scrub_bytes = __atomic_load_n(&d->scrub_bytes, __ATOMIC_RELAXED);
    o->scrub_objects = __atomic_load_n(&d->scrub_objects, __ATOMIC_RELAXED);
    o->scrub_corrupt = __atomic_load_n(&d->scrub_corrupt, __ATOMIC_RELAXED);
    o->scrub_passes = d->scrub_passes;
    o->scrub_last_pass = d->scrub_last_pass;
}

void disk_internals(struct store *s, struct disk_internals *o)
{
    struct disk_store *d = disk_of(s);
    memset(o, 0, sizeof(*o));
    pthread_rwlock_rdlock(&d->lock);
    o->memory = objtab_memory(&d->tab);
    o->index_records = d->index_records;
    pthread_rwlock_unlock(&d->lock);
    o->scrub_file = d->scrub_file;
    o->scrub_offset = d->scrub_offset;
    o->index_syncs = d->journal.syncs;
}

void disk_metrics(struct store *s, struct cas_buf *o)
{
    struct disk_internals in;
    disk_internals(s, &in);
    cas_buf_printf(o,
                   "# HELP cas_index_syncs_total fdatasync calls on the index (group commits).\n"
                   "# TYPE cas_index_syncs_total counter\ncas_index_syncs_total %" PRIu64 "\n"
                   "# HELP cas_index_records Records in the index file.\n"
                   "# TYPE cas_index_records gauge\ncas_index_records %" PRIu64 "\n"
                   "# HELP cas_table_memory_bytes Memory held by the object table.\n"
                   "# TYPE cas_table_memory_bytes gauge\ncas_table_memory_bytes %" PRIu64 "\n",
                   in.index_syncs, in.index_records, (uint64_t)in.memory);
}

void disk_status_scrub(struct store *s, struct cas_json *j)
{
    struct disk_internals in;
    disk_internals(s, &in);
    cas_json_key(j, "file");
    cas_json_u64(j, in.scrub_file);
    cas_json_key(j, "offset");
    cas_json_u64(j, in.scrub_offset);
}

void disk_destroy(struct store *s)
{
    struct disk_store *d = disk_of(s);
    if (!d)
        return;
    disk_scrub_stop(d);
    disk_compact_wait(s);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        dfile_ref_put(d->files[n].ref);
    journal_destroy(&d->journal);
    objtab_destroy(&d->tab);
    objtab_destroy(&d->tombs);
    objtab_destroy(&d->untombed);
    if (d->lockfd >= 0)
        close(d->lockfd); /* releases the flock */
    if (d->dirfd >= 0)
        close(d->dirfd);
    pthread_rwlock_destroy(&d->lock);
    free(d->dir);
    free(d);
}
