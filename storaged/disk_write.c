/*
 * disk_write.c - storing an object in the disk backend.
 *
 * A write takes the shortest data file that no other writer holds, so the
 * tail of that file is its own: the bytes stream to the end of the file as
 * they arrive (buffered up to WRITE_BUF), the frame header goes in front
 * once the digest is known, the data file is fdatasync'ed, and only then is
 * the index record appended and group-committed. A mismatch, a duplicate or
 * an error cuts the file back to where the frame began, so nothing is left
 * behind.
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "disk_internal.h"
#include "log.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITE_BUF (512 * 1024)

struct store_put {
    struct disk_store *d;
    unsigned file;
    int fd;
    uint64_t frame_off; /* where the frame header goes */
    uint64_t flushed;   /* payload bytes on disk */
    uint64_t size;      /* payload bytes received */
    struct cas_hash *hash;
    bool has_expect;
    struct cas_key expect;
    unsigned char *buf; /* header room + up to WRITE_BUF payload bytes */
    size_t buflen, bufcap;
    uint32_t *sums; /* CRC-32C of each FMT_BLOCK block so far */
    size_t nsums, capsums;
    uint32_t block_crc; /* of the block being received */
    uint64_t block_fill;
    bool copy; /* a copy from another replica: a tombstone refuses it */
};

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
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

/* Picks the shortest data file nobody holds, waiting while all are held. */
static unsigned pick_file(struct disk_store *d)
{
    pthread_mutex_lock(&d->files_lock);
    for (;;) {
        int best = -1;
        for (unsigned n = 0; n < FMT_NFILES; n++) {
            struct dfile *f = &d->files[n];
            if (f->busy || f->compacting)
                continue;
            if (best < 0 || f->length < d->files[best].length)
                best = (int)n;
        }
        if (best >= 0) {
            d->files[best].busy = true;
            pthread_mutex_unlock(&d->files_lock);
            return (unsigned)best;
        }
        pthread_cond_wait(&d->files_cond, &d->files_lock);
    }
}

static void release_file(struct disk_store *d, unsigned n, uint64_t new_length)
{
    pthread_mutex_lock(&d->files_lock);
    d->files[n].length = new_length;
    d->files[n].busy = false;
    pthread_cond_broadcast(&d->files_cond);
    pthread_mutex_unlock(&d->files_lock);
}

static void put_free(struct store_put *p)
{
    free(p->sums);
    cas_hash_free(p->hash);
    free(p->buf);
    free(p);
}

/* Cuts the data file back to where this frame began and lets the file go. */
static void put_undo(struct store_put *p)
{
    if (ftruncate(p->fd, (off_t)p->frame_off) < 0)
        log_error("cannot cut data file %u back to %" PRIu64 ": %s", p->file, p->frame_off,
                  strerror(errno));
    release_file(p->d, p->file, p->frame_off);
}

int disk_put_begin(struct store *s, const struct cas_key *expect, uint64_t hint,
                   struct store_put **out, char *err, size_t errlen)
{
    struct disk_store *d = disk_of(s);
    if (__atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST)) {
        snprintf(err, errlen, "store is read-only: %s", d->read_only_reason);
        return -EROFS;
    }
    if (d->max_object_size && hint != UINT64_MAX && hint > d->max_object_size) {
        snprintf(err, errlen, "object of %" PRIu64 " bytes is over the limit of %" PRIu64, hint,
                 d->max_object_size);
        return -EFBIG;
    }
    struct store_put *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->d = d;
    p->hash = cas_hash_new(s->algo);
    /* Small objects are written with their header in one pwrite: size the
     * buffer to the object when it is known to be small. */
    p->bufcap = FMT_FRAME_HEADER + (hint < WRITE_BUF ? (size_t)hint + 4 : WRITE_BUF);
    p->buf = malloc(p->bufcap);
    if (!p->hash || !p->buf) {
        put_free(p);
        return -ENOMEM;
    }
    p->buflen = FMT_FRAME_HEADER; /* room for the header */
    if (expect) {
        p->has_expect = true;
        p->expect = *expect;
    }
    p->file = pick_file(d);
    pthread_rwlock_rdlock(&d->lock);
    p->fd = d->files[p->file].ref->fd; /* the compactor cannot swap a busy file */
    pthread_rwlock_unlock(&d->lock);
    pthread_mutex_lock(&d->files_lock);
    p->frame_off = d->files[p->file].length;
    pthread_mutex_unlock(&d->files_lock);
    *out = p;
    return 0;
}

/* Writes the buffered payload bytes (not the header room) to the file. */
static int flush(struct store_put *p, char *err, size_t errlen)
{
    size_t n = p->buflen - FMT_FRAME_HEADER;
    if (!n)
        return 0;
    int rc = pwrite_all(p->fd, p->buf + FMT_FRAME_HEADER, n,
                        p->frame_off + FMT_FRAME_HEADER + p->flushed);
    if (rc < 0) {
        if (rc == -ENOSPC || rc == -EDQUOT) {
            snprintf(err, errlen, "disk full: cannot store the object in %s", p->d->dir);
            return -ENOSPC;
        }
        disk_fault(p->d, "data file write", rc);
        snprintf(err, errlen, "cannot write data file %u: %s", p->file, strerror(-rc));
        return -EIO;
    }
    p->flushed += n;
    p->buflen = FMT_FRAME_HEADER;
    return 0;
}

static int push_sum(struct store_put *p)
{
    if (p->nsums == p->capsums) {
        size_t cap = p->capsums ? p->capsums * 2 : 16;
        uint32_t *n = realloc(p->sums, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        p->sums = n;
        p->capsums = cap;
    }
    p->sums[p->nsums++] = htole32(p->block_crc); /* stored little-endian */
    p->block_crc = 0;
    p->block_fill = 0;
    return 0;
}

/* Extends the per-block CRC-32C table over len more bytes. */
static int block_sums_add(struct store_put *p, const unsigned char *data, size_t len)
{
    while (len) {
        size_t n = FMT_BLOCK - p->block_fill < len ? (size_t)(FMT_BLOCK - p->block_fill) : len;
        p->block_crc = cas_crc32c(p->block_crc, data, n);
        p->block_fill += n;
        data += n;
        len -= n;
        if (p->block_fill == FMT_BLOCK && push_sum(p) < 0)
            return -ENOMEM;
    }
    return 0;
}

int disk_put_write(struct store_put *p, const void *data, size_t len, char *err, size_t errlen)
{
    struct disk_store *d = p->d;
    if (d->max_object_size && p->size + len > d->max_object_size) {
        snprintf(err, errlen, "object is over the limit of %" PRIu64 " bytes", d->max_object_size);
        return -EFBIG;
    }
    cas_hash_update(p->hash, data, len);
    if (block_sums_add(p, data, len) < 0)
        return -ENOMEM;
    p->size += len;
    const char *src = data;
    while (len) {
        if (p->buflen == p->bufcap) {
            if (p->bufcap < FMT_FRAME_HEADER + WRITE_BUF) {
                unsigned char *nb = realloc(p->buf, FMT_FRAME_HEADER + WRITE_BUF);
                if (!nb)
                    return -ENOMEM;
                p->buf = nb;
                p->bufcap = FMT_FRAME_HEADER + WRITE_BUF;
                continue;
            }
            int rc = flush(p, err, errlen);
            if (rc < 0)
                return rc;
        }
        size_t n = p->bufcap - p->buflen < len ? p->bufcap - p->buflen : len;
        memcpy(p->buf + p->buflen, src, n);
        p->buflen += n;
        src += n;
        len -= n;
    }
    return 0;
}

/* Says why a copy of the key is refused: a client deleted it here. */
static int refuse_copy(struct disk_store *d, const unsigned char *digest, char *err, size_t errlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, d->base.algo->digest_len, hex);
    snprintf(err, errlen,
             "object %s was deleted here: a copy from another replica is refused (only a "
             "client PUT stores it again)",
             hex);
    return -ECANCELED;
}

int disk_put_copy(struct store_put *p, char *err, size_t errlen)
{
    struct disk_store *d = p->d;
    p->copy = true;
    if (!p->has_expect)
        return 0; /* the key is known only at commit, which checks again */
    pthread_rwlock_rdlock(&d->lock);
    bool refused = tomb_refuses_copy(d, p->expect.digest, disk_now_s());
    pthread_rwlock_unlock(&d->lock);
    return refused ? refuse_copy(d, p->expect.digest, err, errlen) : 0;
}

void disk_put_abort(struct store_put *p)
{
    put_undo(p);
    put_free(p);
}

int disk_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                    size_t errlen)
{
    struct disk_store *d = p->d;
    int rc = 0;
    key->algo = d->base.algo;
    cas_hash_final(p->hash, key->digest);
    if (p->has_expect && !cas_key_equal(key, &p->expect)) {
        char got[CAS_MAX_HEX + 1], want[CAS_MAX_HEX + 1];
        cas_key_hex(key, got);
        cas_key_hex(&p->expect, want);
        snprintf(err, errlen, "digest mismatch: the body hashes to %s, not %s", got, want);
        rc = -EBADMSG;
        goto undo;
    }
    *created = false;
    pthread_rwlock_rdlock(&d->lock);
    bool exists = objtab_find(&d->tab, key->digest) != OBJTAB_NONE;
    pthread_rwlock_unlock(&d->lock);
    if (exists)
        goto duplicate;

    /* The block checksum table after the payload, the header in front, then
     * make the bytes durable. */
    if (p->block_fill && push_sum(p) < 0) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto undo;
    }
    assert(p->nsums == fmt_blocks(p->size));
    struct fmt_frame fr = {.algo = (uint8_t)d->base.algo->id,
                           .sums_crc = cas_crc32c(0, p->sums, p->nsums * 4),
                           .size = p->size,
                           .written_at = (uint64_t)time(NULL)};
    memcpy(fr.digest, key->digest, d->base.algo->digest_len);
    fmt_frame_encode(&fr, p->buf);
    uint64_t sums_off = p->frame_off + FMT_FRAME_HEADER + p->size;
    if (p->flushed == 0 && p->buflen + p->nsums * 4 <= p->bufcap) {
        /* Header, payload and table in one pwrite. */
        if (p->nsums)
            memcpy(p->buf + p->buflen, p->sums, p->nsums * 4);
        rc = pwrite_all(p->fd, p->buf, p->buflen + p->nsums * 4, p->frame_off);
    } else if (p->flushed == 0) {
        rc = pwrite_all(p->fd, p->buf, p->buflen, p->frame_off);
        if (rc == 0)
            rc = pwrite_all(p->fd, p->sums, p->nsums * 4, sums_off);
    } else {
        rc = flush(p, err, errlen);
        if (rc == 0)
            rc = pwrite_all(p->fd, p->sums, p->nsums * 4, sums_off);
        if (rc == 0)
            rc = pwrite_all(p->fd, p->buf, FMT_FRAME_HEADER, p->frame_off);
    }
    p->flushed = p->size + 1; /* whatever happens next, cut the file back on undo */
    if (rc == 0 && sync && fdatasync(p->fd) < 0)
        rc = -errno;
    if (rc == -ENOSPC || rc == -EDQUOT) {
        snprintf(err, errlen, "disk full: cannot store the object in %s", d->dir);
        rc = -ENOSPC;
        goto undo;
    }
    if (rc < 0) {
        if (rc != -EIO || !*err) {
            disk_fault(d, "data file write", rc);
            snprintf(err, errlen, "cannot write data file %u: %s", p->file, strerror(-rc));
        }
        rc = -EIO;
        goto undo;
    }

    struct fmt_record r;
    disk_record(d, &r, REC_PUT, key->digest);
    r.file = (uint8_t)p->file;
    r.offset = p->frame_off;
    r.size = p->size;
    struct journal_pos pos;
    pthread_rwlock_wrlock(&d->lock);
    if (objtab_find(&d->tab, key->digest) != OBJTAB_NONE) {
        pthread_rwlock_unlock(&d->lock); /* another writer stored it meanwhile */
        goto duplicate;
    }
    /* Checked under the same lock as a delete's tombstone, so a delete
     * that raced this copy either refuses it here or removes it after. */
    if (p->copy && tomb_refuses_copy(d, key->digest, disk_now_s())) {
        pthread_rwlock_unlock(&d->lock);
        rc = refuse_copy(d, key->digest, err, errlen);
        goto undo;
    }
    rc = disk_append(d, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        if (objtab_insert(&d->tab, key->digest, p->file, p->frame_off, p->size, 0) == OBJTAB_NONE) {
            /* The record is in the index; the table must follow it. */
            pthread_rwlock_unlock(&d->lock);
            disk_fault(d, "object table (out of memory)", -ENOMEM);
            snprintf(err, errlen, "out of memory");
            release_file(d, p->file, p->frame_off + frame_bytes(p->size));
            put_free(p);
            return -EIO;
        }
        d->objects++;
        d->bytes += p->size;
        d->files[p->file].live += frame_bytes(p->size);
        tomb_clear(d, key->digest); /* a client PUT, or a good copy over a quarantined one */
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc < 0)
        goto undo;
    release_file(d, p->file, p->frame_off + frame_bytes(p->size));
    put_free(p);
    *created = true;
    return sync ? disk_sync(d, &pos, err, errlen) : 0;

duplicate:
    put_undo(p);
    put_free(p);
    return disk_touch(d, key->digest, sync, err, errlen);
undo:
    put_undo(p);
    put_free(p);
    return rc;
}
