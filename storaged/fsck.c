/*
 * fsck.c - offline check and repair of a storaged directory (see fsck.h and
 * docs/FORMAT.md).
 */
#define _GNU_SOURCE
#include "fsck.h"
#include "crc32c.h"
#include "disk_internal.h"
#include "log.h"
#include "node.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)

struct fsck {
    struct disk_store *d;
    fsck_say_fn say;
    fsck_progress_fn progress;
    void *cls;
    struct fsck_report *r;
    struct cas_hash *hash;
    unsigned char *buf;
    uint64_t done, total;
    struct objtab mentioned; /* digests the readable index speaks of */
};

static void say(struct fsck *f, bool problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct fsck *f, bool problem, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (problem)
        f->r->problems++;
    if (f->say)
        f->say(f->cls, problem, msg);
}

static void advance(struct fsck *f, uint64_t n)
{
    f->done += n;
    if (f->progress)
        f->progress(f->cls, f->done, f->total);
}

/* Hashes size bytes at off of fd; true when they match digest. With sums,
 * also counts the blocks whose CRC-32C differs from the table in *bad_sums. */
static bool payload_matches(struct fsck *f, int fd, uint64_t off, uint64_t size,
                            const unsigned char *digest, const uint32_t *sums, uint64_t *bad_sums)
{
    _Static_assert(CHUNK == FMT_BLOCK, "one read per checksummed block");
    cas_hash_reset(f->hash);
    uint64_t at = 0;
    while (at < size) {
        size_t want = size - at > CHUNK ? CHUNK : (size_t)(size - at);
        size_t got = 0;
        while (got < want) {
            ssize_t n = pread(fd, f->buf + got, want - got, (off_t)(off + at + got));
            if (n <= 0)
                return false;
            got += (size_t)n;
        }
        cas_hash_update(f->hash, f->buf, want);
        if (sums && htole32(cas_crc32c(0, f->buf, want)) != sums[at / FMT_BLOCK])
            (*bad_sums)++;
        at += want;
        advance(f, want);
    }
    unsigned char got[CAS_MAX_DIGEST];
    cas_hash_final(f->hash, got);
    return memcmp(got, digest, f->d->base.algo->digest_len) == 0;
}

/* Collects every digest a valid PUT, DEL or UNMARK record of the index names. */
static int collect_mentioned(struct fsck *f)
{
    int fd = openat(f->d->dirfd, "index", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned char rec[FMT_RECORD_SIZE * 1024];
    off_t off = 0;
    ssize_t n;
    while ((n = pread(fd, rec, sizeof(rec), off)) > 0) {
        for (ssize_t i = 0; i + FMT_RECORD_SIZE <= n; i += FMT_RECORD_SIZE) {
            struct fmt_record r;
            if (!fmt_record_decode(rec + i, &r))
                continue;
            if (r.type != REC_PUT && r.type != REC_DEL && r.type != REC_UNMARK)
                continue;
            if (objtab_find(&f->mentioned, r.digest) == OBJTAB_NONE &&
                objtab_insert(&f->mentioned, r.digest, 0, 0, 0, 0) == OBJTAB_NONE) {
                close(fd);
                return -ENOMEM;
            }
        }
        off += n - n % FMT_RECORD_SIZE;
        if (n % FMT_RECORD_SIZE)
            break;
    }
    close(fd);
    return 0;
}

/* Pass 1: every indexed object, header and bytes. */
static void check_indexed(struct fsck *f, bool repair)
{
    struct disk_store *d = f->d;
    struct objtab_entry en;
    char hex[CAS_MAX_HEX + 1];
    for (uint32_t e = 0; e < d->tab.used; e++) {
        if (!objtab_get(&d->tab, e, &en))
            continue;
        cas_hex_encode(en.digest, d->tab.digest_len, hex);
        int fd = d->files[en.file].ref->fd;
        unsigned char h[FMT_FRAME_HEADER];
        struct fmt_frame fr;
        const char *why = NULL;
        if (pread(fd, h, sizeof(h), (off_t)en.offset) != (ssize_t)sizeof(h) ||
            !fmt_frame_decode(h, &fr))
            why = "frame header damaged";
        else if (fr.size != en.size || memcmp(fr.digest, en.digest, d->tab.digest_len) != 0)
            why = "frame header names another object";
        uint64_t nsums = fmt_blocks(en.size), bad_sums = 0;
        uint32_t *sums = !why ? malloc(nsums ? nsums * 4 : 1) : NULL;
        if (sums && pread(fd, sums, nsums * 4, (off_t)(en.offset + FMT_FRAME_HEADER + en.size)) !=
                        (ssize_t)(nsums * 4)) {
            free(sums);
            sums = NULL;
            why = "block checksum table unreadable";
        }
        bool table_ok = sums && cas_crc32c(0, sums, nsums * 4) == fr.sums_crc;
        if (!why && !payload_matches(f, fd, en.offset + FMT_FRAME_HEADER, en.size, en.digest,
                                     table_ok ? sums : NULL, &bad_sums))
            why = "bytes do not match the key";
        free(sums);
        f->r->objects++;
        f->r->bytes += en.size;
        if (!why && (!table_ok || bad_sums)) {
            /* The bytes are right; only their checksums are not. Reads of
             * this object check the key instead. */
            f->r->bad_sums++;
            say(f, true, "object %s: block checksum table damaged (the object itself is intact)",
                hex);
        }
        if (!why)
            continue;
        f->r->corrupt++;
        say(f, true, "corrupt object %s in data file %u at offset %" PRIu64 ": %s%s", hex, en.file,
            en.offset, why, repair ? " (taken out)" : "");
        if (repair)
            disk_forget(d, e);
    }
}

/* Finds the next valid frame header at or after from; file size if none. */
static uint64_t resync(struct fsck *f, int fd, uint64_t from, uint64_t fsize)
{
    unsigned char h[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    for (uint64_t p = from; p + FMT_FRAME_HEADER <= fsize;) {
        ssize_t n = pread(fd, f->buf, CHUNK, (off_t)p);
        if (n < 4)
            break;
        for (ssize_t i = 0; i + 4 <= n; i++) {
            if (memcmp(f->buf + i, "CASO", 4) != 0)
                continue;
            if (pread(fd, h, sizeof(h), (off_t)(p + (uint64_t)i)) == (ssize_t)sizeof(h) &&
                fmt_frame_decode(h, &fr))
                return p + (uint64_t)i;
        }
        p += (uint64_t)n - 3;
    }
    return fsize;
}

/*
 * Pass 2: the framing of every data file. When the index is damaged (a torn
 * tail, damaged records, or no index at all), intact frames it does not know
 * and never spoke of are objects whose records were lost: counted, and with
 * repair put back. With a sound index such frames are removed objects
 * waiting for compaction, and stay removed.
 */
static int walk_data_files(struct fsck *f, bool repair)
{
    bool index_damaged = f->r->bad_records || f->r->torn_bytes || f->d->replay.records == 0;
    struct disk_store *d = f->d;
    char hex[CAS_MAX_HEX + 1];
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        int fd = d->files[n].ref->fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
            continue;
        uint64_t fsize = (uint64_t)st.st_size, p = 0;
        while (p + FMT_FRAME_HEADER <= fsize) {
            unsigned char h[FMT_FRAME_HEADER];
            struct fmt_frame fr;
            if (pread(fd, h, sizeof(h), (off_t)p) != (ssize_t)sizeof(h))
                break;
            if (!fmt_frame_decode(h, &fr) || fr.algo != d->base.algo->id || fr.size > fsize - p ||
                fmt_frame_len(fr.size) > fsize - p) {
                uint64_t next = resync(f, fd, p + 1, fsize);
                /* An incomplete frame at the very end is a write that was
                 * never acknowledged, not damage. */
                bool tail = next == fsize;
                if (!tail) {
                    f->r->bad_frames++;
                    say(f, true,
                        "data file %u: bad frame at offset %" PRIu64 ", %" PRIu64 " bytes skipped",
                        n, p, next - p);
                } else {
                    say(f, false,
                        "data file %u: %" PRIu64 " bytes of an unfinished write at "
                        "the end (cut at the next start)",
                        n, fsize - p);
                }
                p = next;
                continue;
            }
            uint64_t next = p + fmt_frame_len(fr.size);
            uint32_t e = objtab_find(&d->tab, fr.digest);
            bool known = !index_damaged || e != OBJTAB_NONE ||
                         objtab_find(&f->mentioned, fr.digest) != OBJTAB_NONE;
            if (!known &&
                payload_matches(f, fd, p + FMT_FRAME_HEADER, fr.size, fr.digest, NULL, NULL)) {
                cas_hex_encode(fr.digest, d->tab.digest_len, hex);
                f->r->unindexed++;
                say(f, true,
                    "object %s in data file %u at offset %" PRIu64
                    " is intact but missing from the index%s",
                    hex, n, p, repair ? " (put back)" : "");
                if (repair && objtab_insert(&d->tab, fr.digest, n, p, fr.size, 0) != OBJTAB_NONE) {
                    f->r->recovered++;
                    d->objects++;
                    d->bytes += fr.size;
                }
            }
            p = next;
        }
    }
    return 0;
}

static int open_for_check(const char *dir, struct disk_store **out, char *err, size_t errlen)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return -errno;
    }
    struct node_identity node;
    int rc = node_load(dirfd, dir, &node, err, errlen);
    close(dirfd);
    if (rc < 0)
        return rc;
    struct disk_options o = {.dir = dir, .algo = node.algo, .check_only = true};
    node_free(&node);
    struct store *s;
    rc = disk_open(&o, &s, err, errlen);
    if (rc == -EBUSY) /* the message names the directory and the pid */
        snprintf(err + strlen(err), errlen - strlen(err), "; stop that storaged before fsck");
    if (rc < 0)
        return rc;
    *out = disk_of(s);
    return 0;
}

int store_fsck(const char *dir, bool repair, fsck_say_fn sayfn, fsck_progress_fn progress,
               void *cls, struct fsck_report *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct disk_store *d = NULL;
    int rc = open_for_check(dir, &d, err, errlen);
    if (rc < 0)
        return rc;
    struct fsck f = {.d = d, .say = sayfn, .progress = progress, .cls = cls, .r = out};
    f.hash = cas_hash_new(d->base.algo);
    f.buf = malloc(CHUNK);
    if (!f.hash || !f.buf || objtab_init(&f.mentioned, d->tab.digest_len) < 0) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    out->records = d->replay.records;
    out->bad_records = d->replay.bad_records;
    out->torn_bytes = d->replay.torn_bytes;
    out->dropped = d->replay.dropped_entries;
    if (out->bad_records)
        say(&f, true, "index: %" PRIu64 " damaged records in the middle of the file",
            out->bad_records);
    if (out->torn_bytes)
        say(&f, true, "index: torn tail of %" PRIu64 " bytes", out->torn_bytes);
    if (out->dropped)
        say(&f, true, "index: %" PRIu64 " objects whose data files are too short (lost)",
            out->dropped);
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        struct stat st;
        if (fstat(d->files[n].ref->fd, &st) == 0)
            f.total += (uint64_t)st.st_size;
    }
    /* A storaged refuses this state (it would cut the data files to zero),
     * so it is a problem even when no object in them is intact: --repair
     * then writes an index, possibly empty, and the store opens again. */
    if (d->replay.records == 0 && f.total > 0)
        say(&f, true, "index: missing or empty while the data files hold %" PRIu64 " bytes",
            f.total);
    if ((rc = collect_mentioned(&f)) < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    check_indexed(&f, repair);
    walk_data_files(&f, repair);
    if (repair && out->problems) {
        rc = disk_maybe_snapshot(d, true);
        if (rc < 0) {
            snprintf(err, errlen, "cannot write the new index in %s: %s", dir, strerror(-rc));
            goto out;
        }
        out->repaired = true;
        say(&f, false, "index rebuilt: %" PRIu64 " objects", d->objects);
    }
out:
    objtab_destroy(&f.mentioned);
    cas_hash_free(f.hash);
    free(f.buf);
    disk_destroy(&d->base);
    return rc;
}
