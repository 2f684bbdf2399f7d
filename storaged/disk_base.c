/*
 * disk_base.c - the bottom of the disk backend: helpers every other disk_*.c
 * file uses and that need nothing of theirs. The I/O fault switch (a store
 * turns read-only), filling a record, the directory fsync, references to an
 * open data file generation (dfile_ref: readers keep one alive while
 * compaction replaces it), taking an entry out of the table and its
 * counters, making a data file durable after ?sync=0 writes, and copying a
 * range between files. Calls nothing above it (scripts/check-layers.sh).
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
#include <unistd.h>

void disk_fault(struct disk_store *d, const char *what, int err)
{
    int expected = 0;
    if (__atomic_compare_exchange_n(&d->read_only, &expected, 2, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
        snprintf(d->read_only_reason, sizeof(d->read_only_reason), "I/O error on %s: %s", what,
                 strerror(-err));
    }
    log_error("STORE IS NOW READ-ONLY: I/O error on %s in %s: %s; fix the disk and restart", what,
              d->dir, strerror(-err));
}

void disk_record(struct disk_store *d, struct fmt_record *r, int type, const unsigned char *digest)
{
    memset(r, 0, sizeof(*r));
    r->type = (uint8_t)type;
    r->algo = (uint8_t)d->base.algo->id;
    if (digest)
        memcpy(r->digest, digest, d->base.algo->digest_len);
}

int disk_fsync_dir(struct disk_store *d)
{
    return fsync(d->dirfd) < 0 ? -errno : 0;
}

void dfile_ref_put(struct dfile_ref *r)
{
    if (!r)
        return;
    int left = __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
    assert(left >= 0); /* a reference given back twice */
    if (left == 0) {
        close(r->fd);
        free(r);
    }
}

struct dfile_ref *dfile_ref_new(int fd)
{
    struct dfile_ref *r = malloc(sizeof(*r));
    if (r) {
        r->fd = fd;
        r->refs = 1;
    }
    return r;
}

void disk_forget(struct disk_store *d, uint32_t e)
{
    struct objtab_entry en;
    assert(disk_locked_write(d));
    if (!objtab_get(&d->tab, e, &en))
        return;
    /* The counters hold this entry (disk_table_consistent). */
    assert(d->objects > 0 && d->bytes >= en.size && d->files[en.file].live >= frame_bytes(en.size));
    assert(!(en.flags & OBJTAB_MARKED) ||
           (d->gc_active && d->garbage_objects > 0 && d->garbage_bytes >= en.size));
    d->files[en.file].live -= frame_bytes(en.size);
    d->objects--;
    d->bytes -= en.size;
    if (en.flags & OBJTAB_MARKED) {
        d->garbage_objects--;
        d->garbage_bytes -= en.size;
    }
    objtab_remove(&d->tab, e);
}

int disk_datafile_sync(struct disk_store *d, unsigned n, int fd, char *err, size_t errlen)
{
    pthread_mutex_lock(&d->files_lock);
    uint64_t seq = d->files[n].dirty_seq;
    bool clean = seq <= d->files[n].clean_seq;
    pthread_mutex_unlock(&d->files_lock);
    if (clean)
        return 0;
    if (fdatasync(fd) < 0) {
        int rc = -errno;
        disk_fault(d, "data file fdatasync", rc);
        snprintf(err, errlen, "cannot make data file %u durable: %s", n, strerror(-rc));
        return -EIO;
    }
    pthread_mutex_lock(&d->files_lock);
    if (seq > d->files[n].clean_seq)
        d->files[n].clean_seq = seq;
    pthread_mutex_unlock(&d->files_lock);
    return 0;
}

int disk_copy_range(int from, uint64_t off, int to, uint64_t to_off, uint64_t len)
{
    loff_t in = (loff_t)off, out = (loff_t)to_off;
    while (len) {
        ssize_t n = copy_file_range(from, &in, to, &out,
                                    len > (1u << 30) ? (1u << 30) : (size_t)len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP)) {
            /* No in-kernel copy here: through a buffer. */
            unsigned char *b = malloc(1 << 20);
            if (!b)
                return -ENOMEM;
            int rc = 0;
            while (len && rc == 0) {
                size_t want = len > (1 << 20) ? (1 << 20) : (size_t)len;
                ssize_t r = pread(from, b, want, in);
                if (r <= 0) {
                    rc = r < 0 ? -errno : -EIO;
                    break;
                }
                rc = disk_pwrite_all(to, b, (size_t)r, (uint64_t)out);
                in += r;
                out += r;
                len -= (uint64_t)r;
            }
            free(b);
            return rc;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        len -= (uint64_t)n;
    }
    return 0;
}

bool disk_table_consistent(struct disk_store *d, char *why, size_t whylen)
{
    uint64_t objects = 0, bytes = 0, gobjects = 0, gbytes = 0, live[FMT_NFILES] = {0};
    uint64_t length[FMT_NFILES], quarantined = 0;
    struct objtab_entry en;
    assert(disk_locked(d));
    pthread_mutex_lock(&d->files_lock);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        length[n] = d->files[n].length;
    pthread_mutex_unlock(&d->files_lock);
    for (uint32_t e = 0; e < d->tab.used; e++) {
        if (!objtab_get(&d->tab, e, &en))
            continue;
        if (en.file >= FMT_NFILES) {
            snprintf(why, whylen, "entry %" PRIu32 " names data file %u", e, en.file);
            return false;
        }
        uint64_t end = en.offset + frame_bytes(en.size);
        if (end > length[en.file] && !(d->replay.relocated_files & (1ull << en.file))) {
            snprintf(why, whylen,
                     "entry %" PRIu32 " ends at %" PRIu64 " past data file %u (%" PRIu64 " bytes)",
                     e, end, en.file, length[en.file]);
            return false;
        }
        if ((en.flags & OBJTAB_MARKED) && !d->gc_active) {
            snprintf(why, whylen, "entry %" PRIu32 " is marked with no GC cycle active", e);
            return false;
        }
        objects++;
        bytes += en.size;
        live[en.file] += frame_bytes(en.size);
        if (en.flags & OBJTAB_MARKED) {
            gobjects++;
            gbytes += en.size;
        }
    }
    if (objects != d->objects || objects != d->tab.count || bytes != d->bytes) {
        snprintf(why, whylen,
                 "the table holds %" PRIu64 " objects (count %" PRIu32 "), %" PRIu64
                 " bytes; the counters say %" PRIu64 ", %" PRIu64,
                 objects, d->tab.count, bytes, d->objects, d->bytes);
        return false;
    }
    if (gobjects != d->garbage_objects || gbytes != d->garbage_bytes) {
        snprintf(why, whylen,
                 "%" PRIu64 " objects (%" PRIu64 " bytes) are marked; the garbage counters say "
                 "%" PRIu64 " (%" PRIu64 ")",
                 gobjects, gbytes, d->garbage_objects, d->garbage_bytes);
        return false;
    }
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        if (live[n] != d->files[n].live) {
            snprintf(why, whylen,
                     "data file %u: %" PRIu64 " live bytes in the table, %" PRIu64 " counted", n,
                     live[n], d->files[n].live);
            return false;
        }
    }
    for (uint32_t e = 0; e < d->tombs.used; e++)
        if (objtab_get(&d->tombs, e, &en) && en.flags == TOMB_QUARANTINED)
            quarantined++;
    if (quarantined != d->tomb_quarantined) {
        snprintf(why, whylen,
                 "%" PRIu64 " quarantined keys in the tombstone table, %" PRIu64 " counted",
                 quarantined, d->tomb_quarantined);
        return false;
    }
    return true;
}

void disk_assert_consistent(struct disk_store *d, const char *file, int line)
{
    char why[256];
    if (disk_table_consistent(d, why, sizeof(why)))
        return;
    log_error("%s:%d: the object table of %s does not add up: %s", file, line, d->dir, why);
    abort();
}
