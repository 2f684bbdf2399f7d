/*
 * disk_check.c - the integrity of a stored copy: checking it against its
 * block checksum table (disk_verify_copy: a repeated write or a confirm
 * reads it back before answering for it), and taking a corrupt copy out of
 * service (disk_take_out: REC_DEL with reason corrupt, listed as
 * quarantined until a good copy replaces it), and checking a frame's bytes
 * against its key before an unindexed frame is indexed again (start-up's
 * adoption, compaction's). Reads, writes, the scrubber, start-up and
 * compaction call these; they call nothing of theirs.
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "disk_internal.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void disk_take_out(struct disk_store *d, const unsigned char *digest, unsigned file,
                   uint64_t offset, const char *why)
{
    char hex[CAS_MAX_HEX + 1], err[256];
    cas_hex_encode(digest, d->base.algo->digest_len, hex);
    struct journal_pos pos;
    bool removed = false;
    pthread_rwlock_wrlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, digest);
    struct objtab_entry en;
    if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en) && en.file == file && en.offset == offset) {
        /* Its frame is marked removed in place (best effort: a damaged
         * header is not), so that no index rebuilt from the data files, nor
         * start-up, indexes it again when its bytes read back right later
         * (a passing read error, a damaged block table). */
        int fd = d->files[file].ref->fd;
        unsigned char h[FMT_FRAME_HEADER];
        struct fmt_frame fr;
        if (pread(fd, h, sizeof(h), (off_t)offset) == (ssize_t)sizeof(h) &&
            fmt_frame_decode(h, &fr) && !memcmp(fr.digest, digest, d->base.algo->digest_len) &&
            fmt_frame_kill(h) && disk_pwrite_all(fd, h, sizeof(h), offset) == 0 &&
            fdatasync(fd) < 0)
            log_warn("data file %u: cannot sync the removal mark of %s", file, hex);
        struct fmt_record r;
        disk_record(d, &r, REC_DEL, digest);
        r.aux = DEL_CORRUPT;
        if (disk_append(d, &r, 1, &pos, err, sizeof(err)) == 0) {
            disk_forget(d, e);
            removed = true;
            /* Listed for the balancers until a good copy replaces it; if
             * memory fails, the index still says so at the next start. */
            if (tomb_set(d, digest, TOMB_QUARANTINED, disk_now_s()) < 0)
                log_warn("out of memory: quarantined object not listed until restart");
        }
    }
    pthread_rwlock_unlock(&d->lock);
    if (!removed)
        return;
    __atomic_fetch_add(&d->corrupt_found, 1, __ATOMIC_RELAXED);
    log_error("CORRUPT object %s in data file %u at offset %" PRIu64 ": %s; taken out of service",
              hex, file, offset, why);
    disk_sync(d, &pos, err, sizeof(err));
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return 0;
}

int disk_verify_copy(struct disk_store *d, int fd, uint64_t offset, uint64_t size,
                     uint32_t sums_crc, const char **why)
{
    (void)d;
    uint64_t count = fmt_blocks(size);
    uint32_t *sums = malloc(count ? count * 4 : 1);
    unsigned char *buf = malloc(FMT_BLOCK);
    int rc = 0;
    *why = NULL;
    if (!sums || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = pread_full(fd, sums, (size_t)count * 4, offset + FMT_FRAME_HEADER + size)) < 0)
        goto out;
    if (cas_crc32c(0, sums, (size_t)count * 4) != sums_crc) {
        *why = "its block checksum table is damaged";
        rc = -EBADMSG;
        goto out;
    }
    for (uint64_t b = 0; b < count; b++) {
        uint64_t at = b * FMT_BLOCK;
        size_t len = size - at < FMT_BLOCK ? (size_t)(size - at) : FMT_BLOCK;
        if ((rc = pread_full(fd, buf, len, offset + FMT_FRAME_HEADER + at)) < 0)
            goto out;
        if (htole32(cas_crc32c(0, buf, len)) != sums[b]) {
            *why = "a block does not match its checksum (caught by a repeated write)";
            rc = -EBADMSG;
            goto out;
        }
    }
out:
    free(sums);
    free(buf);
    return rc;
}

/* A short or failed read counts as a mismatch: the caller leaves the frame
 * out. */
bool disk_frame_bytes_match(struct disk_store *d, int fd, uint64_t off, uint64_t size,
                            const unsigned char *digest, unsigned char *buf, size_t buflen)
{
    struct cas_hash *h = cas_hash_new(d->base.algo);
    if (!h)
        return false;
    bool ok = true;
    for (uint64_t at = 0; at < size && ok;) {
        size_t want = size - at < buflen ? (size_t)(size - at) : buflen;
        ok = pread(fd, buf, want, (off_t)(off + at)) == (ssize_t)want;
        if (ok)
            cas_hash_update(h, buf, want);
        at += want;
    }
    unsigned char got[CAS_MAX_DIGEST];
    cas_hash_final(h, got);
    cas_hash_free(h);
    return ok && memcmp(got, digest, d->base.algo->digest_len) == 0;
}
