/*
 * disk_write.c - storing an object in the disk backend.
 *
 * Writers never wait for each other. A write whose size is known (a
 * Content-Length) reserves its frame's bytes at the end of the shortest
 * data file at once and streams into that range, so any number of writers
 * share a file, each in its own range, and a client that stalls holds only
 * its range. A write of unknown size (chunked, multipart) buffers up to
 * WRITE_BUF and beyond that spools to an unlinked temporary file in the
 * store's directory; it reserves its range only at commit, when the size is
 * known, and copies the spooled bytes in (copy_file_range, in the kernel).
 * The frame header goes in front once the digest is known, the data file is
 * fdatasync'ed, and only then is the index record appended and
 * group-committed: bytes of a write that is abandoned, refused or torn by a
 * crash are never named by the index, so never served. Abandoned space at
 * the end of a file is cut off at once (and at start-up); a range with
 * other writers' ranges after it is punched out and stays dead space that
 * compaction gives back.
 *
 * A reservation must fit in the file system's free space less what other
 * writes in flight have reserved and not yet written; a declared size that
 * does not (a client declaring terabytes and stalling) is refused at once
 * with "disk full" (507), before a byte is read. A data file write that
 * fails for space (ENOSPC, EDQUOT, EFBIG: the file system's largest file)
 * fails that write with "disk full", never the store.
 *
 * A write of an object that is already stored is a use of the stored copy:
 * it answers "already stored" only once that copy has passed a check (its
 * block checksums, read back: disk_verify_copy) and is durable; a copy that
 * fails the check is taken out of service and the new bytes take its place.
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "disk_internal.h"
#include "stamp.h"
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

#define NO_FILE UINT32_MAX

struct store_put {
    struct disk_store *d;
    unsigned file;      /* data file of the reserved range; NO_FILE none yet */
    int fd;             /* where payload bytes go: the data file, or the spool */
    int spool;          /* unlinked temporary file (unknown size); -1 none */
    uint64_t frame_off; /* where the frame header goes in fd */
    uint64_t res_len;   /* bytes reserved in the data file from frame_off */
    uint64_t res_done;  /* of them, taken off d->unwritten as written */
    uint64_t hint;      /* the declared size, UINT64_MAX unknown */
    uint64_t flushed;   /* payload bytes written to fd */
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
    bool copy;   /* a copy from another replica: a tombstone refuses it */
    bool framed; /* the frame header is written: a whole frame is in the range */
    uint64_t delete_seq; /* d->delete_seq when the write began (tomb_deleted_since) */
    uint64_t stamp;      /* when a client sent it, unix us (tomb_outranks; disk_put_stamp) */
};

/*
 * Whether a new object whose frame is len bytes fits: len and the object's
 * share of the room kept for removing every stored object (disk_room.c:
 * disk_room_per_object) must fit in what new data may take
 * (disk_room_writable: the free space less writes in flight, the index
 * reserve and the room for removal frames). 0, or -ENOSPC with err saying
 * how much is free (an fstatvfs failure is not a refusal).
 */
static int space_for(struct disk_store *d, uint64_t len, char *err, size_t errlen)
{
    uint64_t writable, avail;
    if (disk_room_writable(d, &writable, &avail) < 0)
        return 0;
    if (len <= writable && disk_room_per_object() <= writable - len)
        return 0;
    snprintf(err, errlen,
             "disk full: an object of %" PRIu64 " bytes does not fit in %s (%" PRIu64
             " bytes free, %" PRIu64 " of them reserved by writes in flight and kept for "
             "removing the %" PRIu64 " stored objects, %" PRIu64 " bytes each)",
             len, d->dir, avail, avail - writable, __atomic_load_n(&d->objects, __ATOMIC_RELAXED),
             disk_room_per_object());
    return -ENOSPC;
}

/*
 * Reserves len bytes at the end of the shortest data file the compactor
 * does not hold. Never waits for a writer; waits only while the compactor
 * holds every file, which it never does (it holds one at a time).
 */
static void reserve(struct store_put *p, uint64_t len)
{
    struct disk_store *d = p->d;
    pthread_mutex_lock(&d->files_lock);
    int best;
    for (;;) {
        best = -1;
        for (unsigned n = 0; n < FMT_NFILES; n++) {
            struct dfile *f = &d->files[n];
            if (f->busy || f->compacting)
                continue;
            /* Reserved ranges count: concurrent writers spread over files. */
            if (best < 0 || f->length < d->files[best].length)
                best = (int)n;
        }
        if (best >= 0)
            break;
        pthread_cond_wait(&d->files_cond, &d->files_lock);
    }
    struct dfile *f = &d->files[best];
    p->file = (unsigned)best;
    p->frame_off = f->length;
    p->res_len = len;
    p->res_done = 0;
    __atomic_add_fetch(&d->unwritten, len, __ATOMIC_RELAXED);
    __atomic_add_fetch(&d->puts_pending, 1, __ATOMIC_RELAXED);
    f->length += len;
    f->reserved += len;
    f->writers++;
    pthread_mutex_unlock(&d->files_lock);
    pthread_rwlock_rdlock(&d->lock);
    p->fd = d->files[best].ref->fd; /* the compactor waits for writers to leave */
    pthread_rwlock_unlock(&d->lock);
}

/*
 * Gives back the range: its first used bytes hold a committed frame, the
 * rest is cut off (at the end of the file) or punched out (dead space for
 * compaction). Done under files_lock so no later reservation is written
 * before the cut.
 */
static void unreserve(struct store_put *p, uint64_t used)
{
    struct disk_store *d = p->d;
    if (p->file == NO_FILE)
        return;
    struct dfile *f = &d->files[p->file];
    uint64_t end = p->frame_off + p->res_len, keep = p->frame_off + used;
    pthread_mutex_lock(&d->files_lock);
    assert(f->writers > 0 && f->reserved >= p->res_len); /* reserve() counted this one */
    if (used < p->res_len) {
        if (f->length == end) {
            if (ftruncate(p->fd, (off_t)keep) < 0)
                log_error("cannot cut data file %u back to %" PRIu64 ": %s", p->file, keep,
                          strerror(errno));
            f->length = keep;
        } else if (fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)keep,
                             (off_t)(end - keep)) < 0 &&
                   errno != EOPNOTSUPP) {
            log_warn("data file %u: cannot free %" PRIu64 " bytes at %" PRIu64
                     " now (compaction will): %s",
                     p->file, end - keep, keep, strerror(errno));
        }
    }
    f->reserved -= p->res_len;
    f->writers--;
    __atomic_sub_fetch(&d->unwritten, p->res_len - p->res_done, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&d->puts_pending, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&d->files_cond);
    pthread_mutex_unlock(&d->files_lock);
    p->file = NO_FILE;
}

static void put_free(struct store_put *p)
{
    if (p->spool >= 0)
        close(p->spool);
    free(p->sums);
    cas_hash_free(p->hash);
    free(p->buf);
    free(p);
}

/* Gives back everything this write reserved; nothing of it stays. */
static void put_undo(struct store_put *p)
{
    unreserve(p, 0);
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
    if (hint != UINT64_MAX && hint > (UINT64_C(1) << 56) - fmt_frame_len(0)) {
        snprintf(err, errlen, "object of %" PRIu64 " bytes is larger than a store can hold", hint);
        return -EFBIG;
    }
    struct store_put *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->d = d;
    p->file = NO_FILE;
    p->fd = p->spool = -1;
    p->hint = hint;
    p->delete_seq = __atomic_load_n(&d->delete_seq, __ATOMIC_SEQ_CST);
    p->stamp = cas_stamp_now();
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
    if (hint != UINT64_MAX) {
        int rc = space_for(d, fmt_frame_len(hint), err, errlen);
        if (rc < 0) {
            put_free(p);
            return rc;
        }
        reserve(p, fmt_frame_len(hint));
    }
    *out = p;
    return 0;
}

/* The spool of a write of unknown size: an unlinked file in the store's
 * directory (same file system, so the copy at commit stays in the kernel). */
static int open_spool(struct store_put *p, char *err, size_t errlen)
{
    struct disk_store *d = p->d;
    int fd = openat(d->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        char name[64];
        for (int i = 0; i < 100 && fd < 0; i++) {
            snprintf(name, sizeof(name), "spool.%d.%08x", (int)getpid(), (unsigned)random());
            fd = openat(d->dirfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
            if (fd >= 0)
                unlinkat(d->dirfd, name, 0);
            else if (errno != EEXIST)
                break;
        }
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a spool file in %s: %s", d->dir, strerror(errno));
        return errno == ENOSPC ? -ENOSPC : -EIO;
    }
    p->spool = p->fd = fd;
    p->frame_off = 0; /* same layout as in a data file */
    return 0;
}

/* Writes the buffered payload bytes (not the header room) to the file. */
static int flush(struct store_put *p, char *err, size_t errlen)
{
    size_t n = p->buflen - FMT_FRAME_HEADER;
    if (!n)
        return 0;
    if (p->file == NO_FILE) {
        /* A spool takes free space too: not the room kept for removals. */
        int rc = space_for(p->d, n, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (p->fd < 0) {
        int rc = open_spool(p, err, errlen);
        if (rc < 0)
            return rc;
    }
    int rc = disk_pwrite_all(p->fd, p->buf + FMT_FRAME_HEADER, n,
                             p->frame_off + FMT_FRAME_HEADER + p->flushed);
    if (rc < 0) {
        if (rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG) {
            snprintf(err, errlen, "disk full: cannot store the object in %s: %s", p->d->dir,
                     strerror(-rc));
            return -ENOSPC;
        }
        disk_fault(p->d, p->spool >= 0 ? "spool file write" : "data file write", rc);
        snprintf(err, errlen, "cannot write %s: %s",
                 p->spool >= 0 ? "the spool file" : "a data file", strerror(-rc));
        return -EIO;
    }
    p->flushed += n;
    p->buflen = FMT_FRAME_HEADER;
    if (p->spool < 0) { /* within the reservation: never more than it left */
        uint64_t done = n < p->res_len - p->res_done ? n : p->res_len - p->res_done;
        __atomic_sub_fetch(&p->d->unwritten, done, __ATOMIC_RELAXED);
        p->res_done += done;
    }
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
    if (p->hint != UINT64_MAX && p->size + len > p->hint) {
        snprintf(err, errlen, "body is longer than the declared %" PRIu64 " bytes", p->hint);
        return -EINVAL;
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

/* Says why a write of the key is refused: a client deleted it here.
 * A copy from another replica: -ECANCELED (410) while the tombstone is in
 * force. A client write: -EBUSY (409) when the delete was sent at or after
 * the write (tomb_outranks, by X-CAS-Timestamp) or came while it was in
 * flight; storing it would undo that delete, which may already be answered
 * 204 (SPEC, Deletion), e.g. a balancer's straggling copy of a PUT it
 * answered before the DELETE came. */
static int refuse_deleted(struct disk_store *d, const unsigned char *digest, bool copy,
                          bool in_flight, char *err, size_t errlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, d->base.algo->digest_len, hex);
    snprintf(err, errlen, "object %s was deleted here%s", hex,
             copy ? ": a copy from another replica is refused (only a client PUT stores it again)"
             : in_flight ? " while this write was in progress: nothing stored (send it again to "
                           "store it after the delete)"
                         : " by a delete sent after this write (" CAS_STAMP_HEADER
                           "): nothing stored (send it again to store it after the delete)");
    return copy ? -ECANCELED : -EBUSY;
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
    return refused ? refuse_deleted(d, p->expect.digest, true, false, err, errlen) : 0;
}

int disk_put_stamp(struct store_put *p, uint64_t stamp, char *err, size_t errlen)
{
    struct disk_store *d = p->d;
    p->stamp = stamp;
    if (!p->has_expect || p->copy)
        return 0; /* the key is known only at commit, which checks again */
    pthread_rwlock_rdlock(&d->lock);
    bool refused = tomb_outranks(d, p->expect.digest, stamp);
    pthread_rwlock_unlock(&d->lock);
    return refused ? refuse_deleted(d, p->expect.digest, false, false, err, errlen) : 0;
}

void disk_put_abort(struct store_put *p)
{
    put_undo(p);
    put_free(p);
}

/*
 * When digest is already stored: checks the stored copy (frame header,
 * block checksums) and counts this write as a use of it, durably when sync
 * (disk_use). 0: the stored copy answers for this write. -ENOENT: none is
 * stored any more, or the stored one was damaged and is now out of
 * service; the caller stores its own bytes. Other errors are errors.
 */
static int use_stored_copy(struct disk_store *d, const unsigned char *digest, bool sync, char *err,
                           size_t errlen)
{
    struct objtab_entry en;
    pthread_rwlock_rdlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, digest);
    if (e == OBJTAB_NONE || !objtab_get(&d->tab, e, &en)) {
        pthread_rwlock_unlock(&d->lock);
        return -ENOENT;
    }
    unsigned file = en.file;
    uint64_t offset = en.offset, size = en.size;
    struct dfile_ref *ref = d->files[file].ref;
    dfile_ref_get(ref);
    pthread_rwlock_unlock(&d->lock);

    unsigned char hdr[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    const char *why = NULL;
    int rc = 0;
    if (pread(ref->fd, hdr, sizeof(hdr), (off_t)offset) != (ssize_t)sizeof(hdr))
        why = "frame unreadable";
    else if (!fmt_frame_decode(hdr, &fr))
        why = "frame header checksum mismatch";
    else if (fr.size != size || memcmp(fr.digest, digest, d->base.algo->digest_len) != 0)
        why = "frame header names another object";
    else
        rc = disk_verify_copy(d, ref->fd, offset, size, fr.sums_crc, &why);
    dfile_ref_put(ref);
    if (why) {
        disk_take_out(d, digest, file, offset, why);
        return -ENOENT;
    }
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the stored copy: %s", strerror(-rc));
        return -EIO;
    }
    return disk_use(d, digest, sync ? USE_SYNC | USE_COPY : 0, err, errlen);
}

/* Copies the spooled payload bytes into the reserved range of the data file
 * and writes on there. */
static int unspool(struct store_put *p)
{
    return disk_copy_range(p->spool, FMT_FRAME_HEADER, p->fd, p->frame_off + FMT_FRAME_HEADER,
                           p->flushed);
}

int disk_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                    size_t errlen)
{
    struct disk_store *d = p->d;
    int rc = 0;
    *created = false;
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
    rc = use_stored_copy(d, key->digest, sync, err, errlen);
    if (rc != -ENOENT)
        goto undo; /* answered by the stored copy (0), or an error */
    rc = 0;

    /* The block checksum table after the payload, the header in front, then
     * make the bytes durable. */
    if (p->block_fill && push_sum(p) < 0) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto undo;
    }
    assert(p->nsums == fmt_blocks(p->size));
    if (p->file == NO_FILE) {
        /* Size unknown until now: reserve the range, bring the spooled bytes. */
        if ((rc = space_for(d, fmt_frame_len(p->size), err, errlen)) < 0)
            goto undo;
        reserve(p, fmt_frame_len(p->size));
        if (p->flushed && (rc = unspool(p)) < 0)
            goto write_failed;
    }
    /* The frame carries the write's stamp and whether it is a copy, so that
     * if its record is lost, start-up, compaction and fsck --repair judge
     * it against a tombstone by the rule the commit below applies
     * (tomb_refuses_adoption). */
    struct fmt_frame fr = {.algo = (uint8_t)d->base.algo->id,
                           .flags = FMT_FRAME_STAMPED | (p->copy ? FMT_FRAME_COPY : 0),
                           .sums_crc = cas_crc32c(0, p->sums, p->nsums * 4),
                           .size = p->size,
                           .written_at = p->stamp};
    memcpy(fr.digest, key->digest, d->base.algo->digest_len);
    fmt_frame_encode(&fr, p->buf);
    uint64_t sums_off = p->frame_off + FMT_FRAME_HEADER + p->size;
    if (p->flushed == 0 && p->buflen + p->nsums * 4 <= p->bufcap) {
        /* Header, payload and table in one pwrite. */
        if (p->nsums)
            memcpy(p->buf + p->buflen, p->sums, p->nsums * 4);
        rc = disk_pwrite_all(p->fd, p->buf, p->buflen + p->nsums * 4, p->frame_off);
    } else if (p->flushed == 0) {
        rc = disk_pwrite_all(p->fd, p->buf, p->buflen, p->frame_off);
        if (rc == 0)
            rc = disk_pwrite_all(p->fd, p->sums, p->nsums * 4, sums_off);
    } else {
        rc = flush(p, err, errlen);
        if (rc == 0)
            rc = disk_pwrite_all(p->fd, p->sums, p->nsums * 4, sums_off);
        if (rc == 0)
            rc = disk_pwrite_all(p->fd, p->buf, FMT_FRAME_HEADER, p->frame_off);
    }
    p->framed = rc == 0;
    /* Durable now, or counted as not yet (dirty) before anyone can find it. */
    pthread_mutex_lock(&d->files_lock);
    uint64_t seq = sync ? d->files[p->file].dirty_seq : ++d->files[p->file].dirty_seq;
    pthread_mutex_unlock(&d->files_lock);
    if (rc == 0 && sync) {
        if (fdatasync(p->fd) < 0)
            rc = -errno;
        else {
            pthread_mutex_lock(&d->files_lock);
            if (seq > d->files[p->file].clean_seq)
                d->files[p->file].clean_seq = seq;
            pthread_mutex_unlock(&d->files_lock);
        }
    }
write_failed:
    if (rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG) {
        snprintf(err, errlen, "disk full: cannot store the object in %s: %s", d->dir,
                 strerror(-rc));
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
    for (;;) {
        pthread_rwlock_wrlock(&d->lock);
        if (objtab_find(&d->tab, key->digest) == OBJTAB_NONE)
            break;
        /* Another writer stored it meanwhile: its fresh copy answers for
         * this write once durable, unless it is gone again already. */
        pthread_rwlock_unlock(&d->lock);
        rc = disk_use(d, key->digest, sync ? USE_SYNC | USE_COPY : 0, err, errlen);
        if (rc != -ENOENT)
            goto undo;
    }
    /* Checked under the same lock as a delete's tombstone, so a delete
     * that raced this copy either refuses it here or removes it after. */
    if (p->copy && tomb_refuses_copy(d, key->digest, disk_now_s())) {
        pthread_rwlock_unlock(&d->lock);
        rc = refuse_deleted(d, key->digest, true, false, err, errlen);
        goto undo;
    }
    /* A client write lifts a tombstone only of a delete sent before it
     * (stamps) that also reached here before it began (delete_seq: a node
     * whose clock stepped back, or balancers whose clocks disagree, still
     * cannot bring back what a delete overtook here). */
    bool in_flight = tomb_deleted_since(d, key->digest, p->delete_seq);
    if (in_flight || (!p->copy && tomb_outranks(d, key->digest, p->stamp))) {
        pthread_rwlock_unlock(&d->lock);
        rc = refuse_deleted(d, key->digest, false, in_flight, err, errlen);
        goto undo;
    }
    rc = disk_append(d, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        if (objtab_insert(&d->tab, key->digest, p->file, p->frame_off, p->size, 0) == OBJTAB_NONE) {
            /* The record is in the index; the table must follow it. */
            pthread_rwlock_unlock(&d->lock);
            disk_fault(d, "object table (out of memory)", -ENOMEM);
            snprintf(err, errlen, "out of memory");
            unreserve(p, frame_bytes(p->size));
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
    unreserve(p, frame_bytes(p->size));
    put_free(p);
    *created = true;
    return sync ? disk_sync(d, &pos, err, errlen) : 0;

undo:
    if (p->framed && p->file != NO_FILE && fmt_frame_kill(p->buf))
        /* A whole frame this write gives up (another copy answered, or a
         * tombstone refused it): marked removed before its range is cut or
         * punched, so that no index rebuilt from the data files, nor
         * start-up, takes it for an object whose record was lost, should the
         * punch not happen (docs/FORMAT.md "Removal frames"). */
    {
        if (disk_pwrite_all(p->fd, p->buf, FMT_FRAME_HEADER, p->frame_off) == 0 &&
            (rc == -EBUSY || rc == -ECANCELED) && fdatasync(p->fd) < 0) {
            /* Refused by a delete (409): the mark is durable before the
             * answer. A write that began before the delete landed but is
             * stamped after it (clocks that disagree) is kept out only by
             * the in-memory delete sequence; without the mark, a power cut
             * would let the next start index it again (tomb_refuses_adoption
             * goes by stamps) and the acknowledged DELETE would be undone. */
            rc = -errno;
            disk_fault(d, "data file fdatasync", rc);
            snprintf(err, errlen, "cannot make data file %u durable: %s", p->file, strerror(-rc));
            rc = -EIO;
        }
    }
    put_undo(p);
    put_free(p);
    return rc;
}
