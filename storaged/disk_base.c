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

#include <errno.h>
#include <fcntl.h>
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
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
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
    if (!objtab_get(&d->tab, e, &en))
        return;
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
