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
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)
/* The largest stamp an objtab entry's offset holds (56 bits). */
#define STAMP_LIMIT ((UINT64_C(1) << 56) - 1)

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
    /* Per digest, the newest removal the removal frames hold: offset = its
     * written_at (the storaged's clock, which orders removals of one store
     * whatever their senders' clocks), size = its stamp (unix microseconds,
     * at most STAMP_LIMIT: a client delete's is its tombstone's), flags =
     * its kind (enum fmt_removal_kind). */
    struct objtab newest;
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

/* What d remembers of digest, for a message: its tombstone (a client
 * delete) or its quarantine entry. */
static const char *tomb_name(struct disk_store *d, const unsigned char *digest)
{
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    return e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en) && en.flags == TOMB_QUARANTINED
               ? "quarantine entry"
               : "tombstone";
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
    char err[512];
    int fd = fmt_open_regular(f->d->dirfd, f->d->dir, "index", O_RDONLY, err, sizeof(err));
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
            /* REC_TOMB too: a deleted object's frame is not put back. */
            if (r.type != REC_PUT && r.type != REC_DEL && r.type != REC_UNMARK &&
                r.type != REC_TOMB)
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

/*
 * Pass 0, for the data files whose generation the index names is missing
 * (replay.relocated_files): the offsets the index holds for them point into
 * that missing file. Walk the frames of the generation that is there and
 * move each entry of the file to where its frame is; entries whose frame is
 * not there are lost (reported, and taken out). Frames the index does not
 * know are put back by pass 2.
 */
static int relocate_files(struct fsck *f, bool repair)
{
    struct disk_store *d = f->d;
    uint64_t mask = d->replay.relocated_files;
    if (!mask)
        return 0;
    unsigned char *found = calloc(d->tab.used ? d->tab.used : 1, 1);
    if (!found)
        return -ENOMEM;
    char hex[CAS_MAX_HEX + 1], name[32];
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        if (!(mask & (1ull << n)))
            continue;
        f->r->relocated++;
        fmt_datafile_name(n, d->files[n].gen, name, sizeof(name));
        say(f, true,
            "data file %u: the generation the index names is missing; objects are "
            "looked for in %s by their frames",
            n, name);
        int fd = d->files[n].ref->fd;
        struct stat st;
        struct fmt_walk w = {.fd = fd,
                             .fsize = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0,
                             .algo = d->base.algo->id,
                             .buf = f->buf,
                             .buflen = CHUNK};
        /* Damage, removal frames and objects removed in place are stepped
         * over; an unreadable header ends the file. */
        while (fmt_walk_next(&w) > 0) {
            if (w.what != FMT_AT_OBJECT)
                continue;
            uint32_t e = objtab_find(&d->tab, w.fr.digest);
            struct objtab_entry en;
            if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en) && en.file == n &&
                en.size == w.fr.size) {
                objtab_set_location(&d->tab, e, n, w.at);
                found[e] = 1;
            }
        }
    }
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++) {
        if (!objtab_get(&d->tab, e, &en) || !(mask & (1ull << en.file)) || found[e])
            continue;
        cas_hex_encode(en.digest, d->tab.digest_len, hex);
        f->r->dropped++;
        say(f, true, "object %s: not in data file %u as it is now: lost%s", hex, en.file,
            repair ? " (taken out of the index)" : "");
        disk_forget(d, e);
    }
    free(found);
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

/* Notes x, a removal of data file n, in f->newest when it is the newest
 * of its key so far. 0 or -ENOMEM. */
static int note_newest(struct fsck *f, const struct disk_removal *x)
{
    uint32_t t = objtab_find(&f->newest, x->digest);
    struct objtab_entry te;
    uint64_t stamp = x->stamp > STAMP_LIMIT ? STAMP_LIMIT : x->stamp;
    uint64_t when = x->written_at > STAMP_LIMIT ? STAMP_LIMIT : x->written_at;
    if (t == OBJTAB_NONE)
        return objtab_insert(&f->newest, x->digest, 0, when, stamp, x->kind) == OBJTAB_NONE
                   ? -ENOMEM
                   : 0;
    if (objtab_get(&f->newest, t, &te) && when >= te.offset) {
        objtab_set_location(&f->newest, t, 0, when);
        objtab_set_size(&f->newest, t, stamp);
        objtab_set_flags(&f->newest, t, x->kind);
    }
    return 0;
}

/*
 * Pass 2a, for data file n (its removal frames rs): the removals the index
 * lost. An indexed object that a removal frame later in its file names was
 * removed (the index lost the removal's records: damaged, cut back at a
 * record boundary, restored from an older copy; a removal frame is written
 * only once the removal's record is durable, rule D8): the data file's rule
 * wins, and --repair takes it out. A client DELETE whose DEL the index
 * holds but whose TOMB (the same batch) it lost gets its tombstone back
 * with the delete's stamp (in memory also without --repair, so that the
 * report says what a repair would leave out).
 */
static int apply_file_removals(struct fsck *f, unsigned n, const struct disk_removals *rs,
                               bool repair, uint64_t now)
{
    struct disk_store *d = f->d;
    char hex[CAS_MAX_HEX + 1];
    for (size_t i = 0; i < rs->n; i++) {
        const struct disk_removal *x = &rs->v[i];
        if (note_newest(f, x) < 0)
            return -ENOMEM;
        if (x->at <= x->offset)
            continue;
        uint32_t e = objtab_find(&d->tab, x->digest);
        struct objtab_entry en;
        if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en) && en.file == n &&
            en.offset == x->offset) {
            cas_hex_encode(x->digest, d->tab.digest_len, hex);
            f->r->lost_removals++;
            say(f, true,
                "object %s in data file %u at offset %" PRIu64
                " was removed (%s; a removal frame at offset %" PRIu64
                " says so) but the index still lists it: the index lost the "
                "removal's records%s",
                hex, n, x->offset,
                x->kind == RM_CLIENT ? "a client's DELETE"
                : x->kind == RM_GC   ? "gc/end"
                                     : "a balancer's drop",
                x->at, repair ? " (taken out)" : "");
            if (repair)
                disk_forget(d, e);
            continue;
        }
        if (x->kind != RM_CLIENT || (d->replay.relocated_files & (1ull << n)) ||
            x->stamp / 1000000 + d->tomb_ttl <= now || e != OBJTAB_NONE ||
            !disk_untombed_at(d, x->digest, n, x->offset))
            continue;
        cas_hex_encode(x->digest, d->tab.digest_len, hex);
        f->r->lost_removals++;
        say(f, true,
            "object %s: the index lost the tombstone of its client's DELETE (the removal "
            "frame at offset %" PRIu64 " of data file %u names the frame its DEL "
            "removed)%s",
            hex, x->at, n, repair ? " (rebuilt with the delete's stamp)" : "");
        uint64_t stamp = x->stamp > STAMP_LIMIT ? STAMP_LIMIT : x->stamp;
        if (tomb_set_stamp(d, x->digest, TOMB_DELETED, stamp) < 0)
            return -ENOMEM;
    }
    if (rs->damaged) {
        f->r->bad_frames += rs->damaged;
        say(f, true,
            "data file %u: %" PRIu64 " damaged removal frames: objects they removed may "
            "be put back by a repair (run a GC cycle or delete them again)",
            n, rs->damaged);
    }
    return 0;
}

/*
 * Pass 2b, once every file's removals are in: a key whose newest removal in
 * the data files is a client's delete, not stored now, within the
 * tombstone time, gets its tombstone back, so that it refuses exactly the
 * writes the delete refused - also in a data file walked before the one
 * that holds the delete's removal frame - and copies from other replicas
 * (a key deleted before the last compaction of its data file has no
 * removal frame left: its tombstone is not rebuilt). In memory also
 * without --repair (what a repair would leave out).
 */
static int rebuild_newest_tombs(struct fsck *f, bool repair, uint64_t now)
{
    struct disk_store *d = f->d;
    uint64_t rebuilt = 0;
    struct objtab_entry te;
    for (uint32_t t = 0; t < f->newest.used; t++) {
        /* te.size: the delete's stamp (its X-CAS-Timestamp, possibly from a
         * balancer whose clock is ahead), not the frame's written_at: a
         * write stamped before the delete stays refused after the repair as
         * before it. */
        if (!objtab_get(&f->newest, t, &te) || te.flags != RM_CLIENT ||
            te.size / 1000000 + d->tomb_ttl <= now ||
            objtab_find(&d->tab, te.digest) != OBJTAB_NONE ||
            objtab_find(&d->tombs, te.digest) != OBJTAB_NONE)
            continue;
        if (tomb_set_stamp(d, te.digest, TOMB_DELETED, te.size) < 0)
            return -ENOMEM;
        rebuilt++;
    }
    if (rebuilt && repair)
        say(f, false, "%" PRIu64 " tombstones of client deletes rebuilt from the removal frames",
            rebuilt);
    return 0;
}

/* --repair: marks the frame of fr at off of data file n removed in place
 * (a write a client's delete refused: docs/FORMAT.md, "Frame flags and the
 * write's stamp"), through *wfd, a writable descriptor of the file opened
 * on first use. 0 or -errno. */
static int kill_refused(struct fsck *f, unsigned n, int *wfd, uint64_t off,
                        const struct fmt_frame *fr)
{
    struct disk_store *d = f->d;
    if (*wfd < 0) {
        char name[32], err[512];
        fmt_datafile_name(n, d->files[n].gen, name, sizeof(name));
        *wfd = fmt_open_regular(d->dirfd, d->dir, name, O_RDWR, err, sizeof(err));
        if (*wfd < 0) {
            say(f, true, "%s", err);
            return *wfd;
        }
    }
    int rc = disk_frame_kill_at(d, *wfd, off, fr->digest);
    if (rc > 0)
        f->r->refused_marked++;
    return rc < 0 ? rc : 0;
}

/*
 * Pass 2: the framing of every data file, in two passes: first every
 * file's removal frames (apply_file_removals, rebuild_newest_tombs), then
 * the object frames, so that each is judged knowing every removal of every
 * file. An intact frame the index does not name is a removed object when a
 * removal frame later in its file names it (docs/FORMAT.md, "Removal
 * frames"): never put back. Any other is an object whose record was lost,
 * put back by repair, when the index is damaged (a torn tail, damaged
 * records, no index at all), or its file was relocated, or the store
 * records every removal in its data files (index format 2); in a sound
 * index of format 1 (a store from before removal frames) such a frame is a
 * removed object waiting for compaction and stays removed. A frame a
 * client delete's tombstone refuses is marked removed in place by repair.
 * *left_out counts intact frames left out for any reason other than a
 * removal frame or a copy of the key indexed elsewhere.
 */
static int walk_data_files(struct fsck *f, bool repair, uint64_t *left_out)
{
    bool index_damaged =
        f->r->bad_records || f->r->torn_bytes || f->d->replay.records == 0 || f->r->bad_header;
    struct disk_store *d = f->d;
    bool v2 = d->index_version == FMT_INDEX_VERSION_REMOVALS;
    char hex[CAS_MAX_HEX + 1];
    uint64_t now = disk_now_s();
    uint64_t fsize[FMT_NFILES];
    *left_out = 0;
    /* Every file's removals, kept for the walk (fsck reads every byte
     * anyway; about 100 bytes per removal entry). */
    struct disk_removals *rs = calloc(FMT_NFILES, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    int rc = 0;
    for (unsigned n = 0; n < FMT_NFILES && rc == 0; n++) {
        struct stat st;
        fsize[n] = fstat(d->files[n].ref->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        rc = disk_removals_read(d, d->files[n].ref->fd, 0, fsize[n], &rs[n]);
        if (rc == 0)
            rc = apply_file_removals(f, n, &rs[n], repair, now);
    }
    if (rc == 0)
        rc = rebuild_newest_tombs(f, repair, now);
    for (unsigned n = 0; n < FMT_NFILES && rc == 0; n++) {
        int fd = d->files[n].ref->fd, wfd = -1;
        struct fmt_walk w = {
            .fd = fd, .fsize = fsize[n], .algo = d->base.algo->id, .buf = f->buf, .buflen = CHUNK};
        while (rc == 0 && fmt_walk_next(&w) > 0) {
            const struct fmt_frame fr = w.fr;
            const uint64_t p = w.at, next = w.next;
            if (w.what == FMT_AT_NONE) {
                /* An incomplete frame at the very end is a write that was
                 * never acknowledged, not damage. */
                bool tail = next == fsize[n];
                if (!tail) {
                    f->r->bad_frames++;
                    say(f, true,
                        "data file %u: bad frame at offset %" PRIu64 ", %" PRIu64 " bytes skipped",
                        n, p, next - p);
                } else {
                    say(f, false,
                        "data file %u: %" PRIu64 " bytes of an unfinished write at "
                        "the end (cut at the next start)",
                        n, fsize[n] - p);
                }
                continue;
            }
            if (w.what != FMT_AT_OBJECT)
                continue; /* a removal frame, or an object removed in place: never put back */
            if (disk_removal_covers(&rs[n], fr.digest, p))
                continue; /* removed (a lost removal of it was applied above) */
            uint32_t e = objtab_find(&d->tab, fr.digest);
            struct objtab_entry en;
            if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en) && en.file == n && en.offset == p)
                continue; /* indexed here */
            /* A relocated file's frames are looked at whatever the rest of
             * the index is like; other files' only when the index lost
             * records or removals are in the data files. */
            bool damaged = index_damaged || (d->replay.relocated_files & (1ull << n));
            bool known = e != OBJTAB_NONE;
            bool adopt = damaged || v2;
            if (!known && adopt && !v2 && objtab_find(&f->mentioned, fr.digest) != OBJTAB_NONE)
                adopt = false; /* format 1: the readable index removed it */
            /* Judged against the tombstones as every removal left them (an
             * adoption earlier in this walk clears its key's only after
             * it), so a frame the tombstone refuses is marked whatever the
             * file order. */
            unsigned refused = adopt ? tomb_adoption_refusal(d, &fr, now) : 0;
            if (refused) {
                adopt = false;
                cas_hex_encode(fr.digest, d->tab.digest_len, hex);
                say(f, false,
                    "object %s in data file %u at offset %" PRIu64
                    " is not indexed and its key's %s refuses it (%s): left out%s",
                    hex, n, p, tomb_name(d, fr.digest),
                    !fmt_frame_stamp(&fr)         ? "a frame written before write stamps"
                    : (fr.flags & FMT_FRAME_COPY) ? "a copy from another replica"
                                                  : "its write was stamped at or before it",
                    refused == TOMB_DELETED && repair ? " (marked removed)" : "");
                if (refused == TOMB_DELETED && repair &&
                    (rc = kill_refused(f, n, &wfd, p, &fr)) < 0)
                    break;
            }
            if (!known && !adopt)
                (*left_out)++;
            if (!known && adopt &&
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
                    d->files[n].live += frame_bytes(fr.size);
                }
            }
        }
        /* The marks are durable before fsck says it is done. */
        if (wfd >= 0) {
            if (rc == 0 && fdatasync(wfd) < 0)
                rc = -errno;
            close(wfd);
        }
    }
    /* Keys put back are stored again: their tombstones go. */
    if (rc == 0 && repair)
        tomb_clear_stored(d);
    for (unsigned n = 0; n < FMT_NFILES; n++)
        disk_removals_free(&rs[n]);
    free(rs);
    return rc;
}

/* The hash the store's bytes use: its index header's, or else the first
 * intact frame's. NULL when neither tells. */
static const struct cas_hash_algo *algo_of_data(int dirfd, const char *dir)
{
    char err[512];
    unsigned char b[FMT_RECORD_SIZE];
    struct fmt_record r;
    int fd = fmt_open_regular(dirfd, dir, "index", O_RDONLY, err, sizeof(err));
    if (fd >= 0) {
        bool ok = pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) && fmt_record_decode(b, &r) &&
                  r.type == REC_HEADER && !memcmp(r.digest, FMT_INDEX_MAGIC, 8);
        close(fd);
        if (ok && cas_hash_by_id(r.algo))
            return cas_hash_by_id(r.algo);
    }
    int dfd = dup(dirfd);
    DIR *dd = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!dd) {
        if (dfd >= 0)
            close(dfd);
        return NULL;
    }
    rewinddir(dd); /* a dup shares the directory position */
    const struct cas_hash_algo *a = NULL;
    struct dirent *de;
    while (!a && (de = readdir(dd))) {
        unsigned n;
        uint64_t gen;
        struct fmt_frame fr;
        if (!fmt_datafile_parse(de->d_name, &n, &gen))
            continue;
        fd = fmt_open_regular(dirfd, dir, de->d_name, O_RDONLY, err, sizeof(err));
        if (fd < 0)
            continue;
        if (pread(fd, b, FMT_FRAME_HEADER, 0) == FMT_FRAME_HEADER && fmt_frame_decode(b, &fr))
            a = cas_hash_by_id(fr.algo);
        close(fd);
    }
    closedir(dd);
    return a;
}

/*
 * --repair --new-identity: writes a new node file for the hash the data
 * holds, keeping an existing one as node.replaced.<time>. Holds the
 * directory's lock while it does, so a running storaged is never changed.
 */
static int new_identity(int dirfd, const char *dir, struct fsck_report *out, fsck_say_fn sayfn,
                        void *cls, char *err, size_t errlen)
{
    const struct cas_hash_algo *algo = algo_of_data(dirfd, dir);
    if (!algo) {
        snprintf(err, errlen,
                 "cannot tell which hash %s holds (no index header, no intact "
                 "frame): no node file written",
                 dir);
        return -EINVAL;
    }
    int lfd = fmt_open_regular(dirfd, dir, "LOCK", O_RDWR | O_CREAT, err, errlen);
    if (lfd < 0)
        return lfd;
    if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen,
                 "%s is in use by another storaged (lock on %s/LOCK); stop it "
                 "before fsck",
                 dir, dir);
        close(lfd);
        return -EBUSY;
    }
    int rc = 0;
    char aside[64] = "";
    struct stat st;
    if (fstatat(dirfd, "node", &st, AT_SYMLINK_NOFOLLOW) == 0) {
        snprintf(aside, sizeof(aside), "node.replaced.%lld", (long long)time(NULL));
        if (renameat(dirfd, "node", dirfd, aside) < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot move %s/node aside: %s", dir, strerror(errno));
        }
    }
    struct node_identity node;
    struct statvfs vfs;
    uint64_t capacity = fstatvfs(dirfd, &vfs) == 0 ? (uint64_t)vfs.f_blocks * vfs.f_frsize : 0;
    if (rc == 0 && (rc = node_create(dirfd, dir, algo, capacity, &node, err, errlen)) == 0) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "new node identity written: id %s, %s, %zu ring tokens%s%s; in a cluster the "
                 "node's objects are misplaced until ca-cas rebalance",
                 node.id, algo->name, node.ntokens, *aside ? "; the old node file is " : "", aside);
        out->new_identity = true;
        if (sayfn)
            sayfn(cls, false, msg);
        node_free(&node);
    }
    close(lfd);
    return rc;
}

static int open_for_check(const char *dir, unsigned flags, struct fsck_report *out,
                          fsck_say_fn sayfn, void *cls, struct disk_store **res, char *err,
                          size_t errlen)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return -errno;
    }
    /* An S3 node's --dir holds only its small state; its objects are in
     * the bucket, which an offline check does not read. Say so, exit 1,
     * and touch nothing (not even with --repair --new-identity): "0
     * objects checked, 0 problems" there would be a false all-clear. */
    struct stat s3st;
    if (fstatat(dirfd, "s3-index", &s3st, AT_SYMLINK_NOFOLLOW) == 0) {
        snprintf(err, errlen,
                 "%s is an S3 backend's directory (it holds s3-index): the node's objects live "
                 "in its bucket, which fsck does not read; fsck checks disk stores only. Nothing "
                 "was checked or changed. Check an S3 node's objects with its scrubber "
                 "(--scrub-rate; /status \"scrub\", cas_scrub_* in /metrics)",
                 dir);
        close(dirfd);
        return -EMEDIUMTYPE;
    }
    struct node_identity node;
    int rc = node_load(dirfd, dir, &node, err, errlen);
    bool replace = rc == -ENOENT || rc == -EINVAL;
    if (rc == 0) {
        const struct cas_hash_algo *a = algo_of_data(dirfd, dir);
        replace = a && a != node.algo;
    }
    if (replace && (flags & FSCK_REPAIR) && (flags & FSCK_NEW_IDENTITY)) {
        node_free(&node);
        rc = new_identity(dirfd, dir, out, sayfn, cls, err, errlen);
        if (rc == 0)
            rc = node_load(dirfd, dir, &node, err, errlen);
    } else if (rc == -ENOENT) {
        char what[300];
        if (node_dir_holds_store(dirfd, what, sizeof(what)))
            snprintf(err, errlen,
                     "%s/node is missing but %s holds a store (%s). Restore the node file from "
                     "a backup (it holds the node id and ring tokens); if there is none, "
                     "ca-cas fsck %s --repair --new-identity writes a new one",
                     dir, dir, what, dir);
    }
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
    *res = disk_of(s);
    return 0;
}

int store_fsck(const char *dir, unsigned flags, fsck_say_fn sayfn, fsck_progress_fn progress,
               void *cls, struct fsck_report *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    bool repair = flags & FSCK_REPAIR;
    struct disk_store *d = NULL;
    int rc = open_for_check(dir, flags, out, sayfn, cls, &d, err, errlen);
    if (rc < 0)
        return rc;
    struct fsck f = {.d = d, .say = sayfn, .progress = progress, .cls = cls, .r = out};
    f.hash = cas_hash_new(d->base.algo);
    f.buf = malloc(CHUNK);
    if (!f.hash || !f.buf || objtab_init(&f.mentioned, d->tab.digest_len) < 0 ||
        objtab_init(&f.newest, d->tab.digest_len) < 0) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    out->records = d->replay.records;
    out->bad_records = d->replay.bad_records;
    out->torn_bytes = d->replay.torn_bytes;
    out->dropped = d->replay.dropped_entries;
    out->bad_header = d->replay.bad_header;
    if (out->bad_header)
        say(&f, true, "index: the HEADER record (the first 64 bytes) is damaged");
    if (out->bad_records)
        say(&f, true,
            "index: %" PRIu64 " damaged records in the middle of the file; a repair skips "
            "them: client deletes stay deleted (their tombstones), but if one was the end of a "
            "GC cycle (GC_END), the objects that cycle removed are back and the cycle looks "
            "active: after the repair, end or cancel it and run a new GC cycle",
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
    if ((rc = relocate_files(&f, repair)) < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    check_indexed(&f, repair);
    uint64_t left_out = 0;
    if ((rc = walk_data_files(&f, repair, &left_out)) < 0) {
        snprintf(err, errlen, "cannot walk the data files of %s: %s", dir, strerror(-rc));
        goto out;
    }
    if (d->index_version != FMT_INDEX_VERSION_REMOVALS)
        say(&f, false,
            "the index %s: objects removed before this store wrote removal frames (index "
            "format 1) whose data file was not compacted since cannot be told from live ones%s",
            d->index_version == FMT_INDEX_VERSION ? "is of format 1"
                                                  : "header is lost, its format unknown",
            left_out ? "; the frames of removed objects the index still speaks of stay out" : "");
    if (repair && out->problems) {
        /* The new index is of format 2 when every intact frame now is
         * indexed or named by a removal frame; else of format 1 until a
         * compaction drops the frames only the old index knew were dead. */
        d->index_version = left_out ? FMT_INDEX_VERSION : FMT_INDEX_VERSION_REMOVALS;
        /* Keep the old index beside the new one: what the repair left out
         * can still be looked at (and it costs one link, no copy). */
        /* The frames put back may be in the page cache only (written by a
         * storaged killed before its own sync): durable before the index
         * that names them (rule D1, docs/FORMAT.md). A missing data file
         * is /dev/null here (EINVAL: nothing to sync). */
        for (unsigned n = 0; n < FMT_NFILES; n++)
            if (fdatasync(d->files[n].ref->fd) < 0 && errno != EINVAL) {
                rc = -errno;
                snprintf(err, errlen, "cannot sync data file %u of %s: %s; no index written",
                         n, dir, strerror(errno));
                goto out;
            }
        char keep[64];
        snprintf(keep, sizeof(keep), "index.before-repair.%lld", (long long)time(NULL));
        if (linkat(d->dirfd, "index", d->dirfd, keep, 0) == 0)
            say(&f, false, "the old index is kept as %s/%s", dir, keep);
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
    objtab_destroy(&f.newest);
    cas_hash_free(f.hash);
    free(f.buf);
    disk_destroy(&d->base);
    return rc;
}
