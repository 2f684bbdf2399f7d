/*
 * disk_replay.c - opening a disk store's contents: the index read back into
 * the object table, the data file generations reconciled with it, the data
 * files opened, torn tails cut off, and the counters rebuilt. disk_open.c
 * calls disk_replay once the directory's lock is held.
 *
 * Recovery rules (docs/FORMAT.md has them byte by byte). Start-up cuts or
 * removes only what it can prove is garbage, and refuses (-EINVAL, a message
 * naming what to run, nothing changed) everything else that does not add up;
 * with check_only (fsck) it reads on and records what it found instead:
 * - the index is read record by record; a record whose CRC fails is a torn
 *   tail if no valid record follows it (the file is cut there), and damage
 *   in the middle otherwise (refused; fsck skips it); a damaged HEADER is
 *   refused (fsck reads on);
 * - compaction moves (REC_MOVE) count only once their REC_GENERATION follows;
 * - the generation the index names for each data file must be there (else
 *   refused; fsck takes the newest one there); other generations are
 *   compaction leftovers and are removed;
 * - an index entry whose frame runs past the end of its data file is
 *   refused (fsck drops it); bytes past the last indexed frame are cut when
 *   they are an unfinished write, kept when they hold a whole frame;
 * - every file is opened only if it is a regular file (fmt_open_regular).
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- replay ------------------------------------------------------------ */

struct pending_move {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t from, to;
};

struct replay {
    struct pending_move *moves[FMT_NFILES];
    size_t nmoves[FMT_NFILES], capmoves[FMT_NFILES];
};

static void mark_all(struct disk_store *d, bool marked)
{
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en))
            objtab_set_flags(&d->tab, e,
                             marked ? en.flags | OBJTAB_MARKED : en.flags & ~OBJTAB_MARKED);
}

static void remove_marked(struct disk_store *d)
{
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en) && (en.flags & OBJTAB_MARKED))
            objtab_remove(&d->tab, e);
}

/* d->untombed: digest's last record removed its frame at (file, offset)
 * with a DEL of aux 0 (note), or a TOMB or PUT followed (forget). */
static int untombed_note(struct disk_store *d, const unsigned char *digest, unsigned file,
                         uint64_t offset)
{
    uint32_t e = objtab_find(&d->untombed, digest);
    if (e != OBJTAB_NONE) {
        objtab_set_location(&d->untombed, e, file, offset);
        return 0;
    }
    return objtab_insert(&d->untombed, digest, file, offset, 0, 0) == OBJTAB_NONE ? -ENOMEM : 0;
}

static void untombed_forget(struct disk_store *d, const unsigned char *digest)
{
    uint32_t e = objtab_find(&d->untombed, digest);
    if (e != OBJTAB_NONE)
        objtab_remove(&d->untombed, e);
}

bool disk_untombed_at(struct disk_store *d, const unsigned char *digest, unsigned file,
                      uint64_t offset)
{
    uint32_t e = objtab_find(&d->untombed, digest);
    struct objtab_entry en;
    return e != OBJTAB_NONE && objtab_get(&d->untombed, e, &en) && en.file == file &&
           en.offset == offset && objtab_find(&d->tombs, digest) == OBJTAB_NONE;
}

/* Applies one valid record to the table. 0, 1 when the record makes no
 * sense (unknown type, data file number out of range: written by another
 * version, or damage the CRC did not catch), or -errno. */
static int apply_record(struct disk_store *d, struct replay *rp, const struct fmt_record *r,
                        char *err, size_t errlen)
{
    size_t dl = d->base.algo->digest_len;
    uint32_t e;
    switch (r->type) {
    case REC_HEADER:
        return 0;
    case REC_PUT:
        if (r->file >= FMT_NFILES)
            return 1;
        e = objtab_find(&d->tab, r->digest);
        if (e != OBJTAB_NONE) {
            objtab_set_location(&d->tab, e, r->file, r->offset);
            objtab_set_flags(&d->tab, e, r->flags & PUT_MARKED ? OBJTAB_MARKED : 0);
        } else if (objtab_insert(&d->tab, r->digest, r->file, r->offset, r->size,
                                 r->flags & PUT_MARKED ? OBJTAB_MARKED : 0) == OBJTAB_NONE) {
            snprintf(err, errlen, "out of memory replaying the index");
            return -ENOMEM;
        }
        tomb_clear(d, r->digest); /* stored again: no tombstone, not quarantined */
        untombed_forget(d, r->digest);
        return 0;
    case REC_DEL:
        e = objtab_find(&d->tab, r->digest);
        untombed_forget(d, r->digest);
        if (e != OBJTAB_NONE) {
            struct objtab_entry en;
            if (r->aux == DEL_CLIENT && objtab_get(&d->tab, e, &en) &&
                untombed_note(d, r->digest, en.file, en.offset) < 0) {
                snprintf(err, errlen, "out of memory replaying the index");
                return -ENOMEM;
            }
            objtab_remove(&d->tab, e);
        }
        if (r->aux == DEL_CORRUPT && tomb_set(d, r->digest, TOMB_QUARANTINED, 0) < 0) {
            snprintf(err, errlen, "out of memory replaying the index");
            return -ENOMEM;
        }
        return 0;
    case REC_TOMB:
        if (r->flags != TOMB_DELETED && r->flags != TOMB_QUARANTINED) {
            log_warn("index: tombstone record of unknown kind %u skipped", r->flags);
            return 0;
        }
        if (tomb_replay(d, r) < 0) {
            snprintf(err, errlen, "out of memory replaying the index");
            return -ENOMEM;
        }
        untombed_forget(d, r->digest);
        /* A tombstone says the object is not stored (docs/FORMAT.md): it
         * also removes it, so that a damaged DEL record before it (skipped
         * by fsck --repair) cannot bring a deleted object back. A later
         * PUT record (a client's new write) stores it again. */
        e = objtab_find(&d->tab, r->digest);
        if (e != OBJTAB_NONE)
            objtab_remove(&d->tab, e);
        return 0;
    case REC_GC_BEGIN:
        mark_all(d, true);
        /* fall through */
    case REC_GC_STATE:
        d->gc_active = true;
        d->gc_id = r->aux;
        if (r->aux > d->last_gc_id)
            d->last_gc_id = r->aux;
        return 0;
    case REC_UNMARK:
        e = objtab_find(&d->tab, r->digest);
        if (e != OBJTAB_NONE) {
            struct objtab_entry en;
            objtab_get(&d->tab, e, &en);
            objtab_set_flags(&d->tab, e, en.flags & ~OBJTAB_MARKED);
        }
        return 0;
    case REC_GC_END:
        remove_marked(d);
        d->gc_active = false;
        /* GET /gc's ended_id survives a restart: a balancer that finishes
         * an end that failed part way needs it (docs/API.md, gc/end). */
        d->gc_ended_id = r->aux;
        if (r->aux > d->last_gc_id)
            d->last_gc_id = r->aux;
        return 0;
    case REC_GC_CANCEL:
        mark_all(d, false);
        d->gc_active = false;
        return 0;
    case REC_MOVE: {
        if (r->file >= FMT_NFILES)
            return 1;
        unsigned f = r->file;
        if (rp->nmoves[f] == rp->capmoves[f]) {
            size_t cap = rp->capmoves[f] ? rp->capmoves[f] * 2 : 1024;
            struct pending_move *m = realloc(rp->moves[f], cap * sizeof(*m));
            if (!m) {
                snprintf(err, errlen, "out of memory replaying the index");
                return -ENOMEM;
            }
            rp->moves[f] = m;
            rp->capmoves[f] = cap;
        }
        struct pending_move *m = &rp->moves[f][rp->nmoves[f]++];
        memcpy(m->digest, r->digest, dl);
        m->from = r->aux;
        m->to = r->offset;
        return 0;
    }
    case REC_GENERATION: {
        if (r->file >= FMT_NFILES)
            return 1;
        unsigned f = r->file;
        for (size_t i = 0; i < rp->nmoves[f]; i++) {
            struct pending_move *m = &rp->moves[f][i];
            struct objtab_entry en;
            e = objtab_find(&d->tab, m->digest);
            if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en) && en.file == f &&
                en.offset == m->from)
                objtab_set_location(&d->tab, e, f, m->to);
        }
        rp->nmoves[f] = 0;
        d->files[f].gen = r->aux;
        return 0;
    }
    default:
        return 1;
    }
}

#define REPLAY_CHUNK (4u << 20) /* index bytes read at a time: a multiple of 64 */

/* Reads up to len bytes of the index at off; the count, or -errno. */
static ssize_t read_at(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* True if a valid record lies in the index file at or after from (on a
 * record boundary) and before end: damage in the middle, not a torn tail.
 * Only runs when a record fails its check, so it may read the rest. */
static bool valid_record_follows(int fd, uint64_t from, uint64_t end, unsigned char *buf)
{
    struct fmt_record r;
    for (uint64_t at = from; at < end;) {
        size_t want = end - at < REPLAY_CHUNK ? (size_t)(end - at) : REPLAY_CHUNK;
        ssize_t n = read_at(fd, buf, want, at);
        if (n <= 0)
            return false;
        for (ssize_t o = 0; o + FMT_RECORD_SIZE <= n; o += FMT_RECORD_SIZE)
            if (fmt_record_decode(buf + o, &r))
                return true;
        at += (uint64_t)n;
    }
    return false;
}

/* Bytes held by the data files of the directory, whatever their generation. */
static uint64_t data_bytes_present(struct disk_store *d)
{
    DIR *dir = fdopendir(dup(d->dirfd));
    if (!dir)
        return 0;
    rewinddir(dir); /* a dup shares the position another listing left at the end */
    uint64_t total = 0;
    struct dirent *de;
    struct stat st;
    while ((de = readdir(dir))) {
        unsigned n;
        uint64_t gen;
        if (fmt_datafile_parse(de->d_name, &n, &gen) && fstatat(d->dirfd, de->d_name, &st, 0) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(dir);
    return total;
}

static int write_header(struct disk_store *d, int fd, char *err, size_t errlen)
{
    struct fmt_record r;
    disk_record(d, &r, REC_HEADER, NULL);
    memcpy(r.digest, FMT_INDEX_MAGIC, 8);
    r.aux = FMT_INDEX_VERSION_REMOVALS; /* a new store writes removal frames from the start */
    unsigned char buf[FMT_RECORD_SIZE];
    fmt_record_encode(&r, buf);
    if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || fdatasync(fd) < 0) {
        snprintf(err, errlen, "cannot write %s/index: %s", d->dir, strerror(errno));
        return -errno;
    }
    return 0;
}

/*
 * Reads the whole index into the table. The index is read in one buffer per
 * 8 MiB so a million records replay without a million syscalls.
 */
static int replay_index(struct disk_store *d, int *fd_out, uint64_t *end_out, char *err,
                        size_t errlen)
{
    int fd = fmt_open_regular(d->dirfd, d->dir, "index",
                              d->check_only ? O_RDONLY : O_RDWR | O_CREAT, err, errlen);
    if (fd == -ENOENT && d->check_only)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* fsck: an index lost whole */
    if (fd < 0)
        return fd;
    struct stat st;
    fstat(fd, &st);
    if (st.st_size == 0) {
        if (d->check_only) {
            *fd_out = fd;
            *end_out = 0;
            return 0;
        }
        /* A new store, unless data files already hold bytes: then the index
         * was lost, and starting afresh would cut every data file to zero. */
        uint64_t held = data_bytes_present(d);
        if (held) {
            snprintf(err, errlen,
                     "%s/index is missing or empty but the data files hold %" PRIu64
                     " bytes; run ca-cas fsck %s --repair to rebuild it from them",
                     d->dir, held, d->dir);
            close(fd);
            return -EINVAL;
        }
        int rc = write_header(d, fd, err, errlen);
        if (rc < 0 || (rc = disk_fsync_dir(d)) < 0) {
            close(fd);
            return rc;
        }
        *fd_out = fd;
        *end_out = FMT_RECORD_SIZE;
        d->index_records = 1;
        d->index_version = FMT_INDEX_VERSION_REMOVALS;
        return 0;
    }
    /* Read in chunks, so replay needs no more than REPLAY_CHUNK besides the
     * table itself, however large the index. */
    uint64_t len = (uint64_t)st.st_size, end = len - len % FMT_RECORD_SIZE, off = 0;
    unsigned char *buf = malloc(REPLAY_CHUNK), *look = malloc(REPLAY_CHUNK);
    struct replay rp;
    memset(&rp, 0, sizeof(rp));
    int rc = 0;
    struct fmt_record r;
    if (!buf || !look) {
        snprintf(err, errlen, "out of memory reading the index");
        rc = -ENOMEM;
        goto out;
    }
    if (read_at(fd, buf, FMT_RECORD_SIZE, 0) != FMT_RECORD_SIZE || !fmt_record_decode(buf, &r) ||
        r.type != REC_HEADER || memcmp(r.digest, FMT_INDEX_MAGIC, 8) ||
        (r.aux != FMT_INDEX_VERSION && r.aux != FMT_INDEX_VERSION_REMOVALS)) {
        if (!d->check_only) {
            snprintf(
                err, errlen,
                "%s/index has a damaged HEADER record (its first 64 bytes); nothing was "
                "changed: run ca-cas fsck %s --repair to rebuild the index from the data files",
                d->dir, d->dir);
            rc = -EINVAL;
            goto out;
        }
        /* fsck: read on after it; --repair writes a new header. */
        d->replay.bad_header = true;
        off = FMT_RECORD_SIZE;
    } else if (r.algo != d->base.algo->id) {
        const struct cas_hash_algo *a = cas_hash_by_id(r.algo);
        snprintf(err, errlen,
                 "%s/node says the store uses %s keys but its index holds %s keys: the node file "
                 "belongs to another store. Restore the right node file from a backup (if there "
                 "is none, ca-cas fsck %s --repair --new-identity writes one for %s keys)",
                 d->dir, d->base.algo->name, a ? a->name : "unknown", d->dir,
                 a ? a->name : "the index's");
        rc = -EINVAL;
        goto out;
    } else {
        d->index_version = r.aux;
    }
    bool torn = false;
    while (off < end && !torn) {
        size_t want = end - off < REPLAY_CHUNK ? (size_t)(end - off) : REPLAY_CHUNK;
        ssize_t n = read_at(fd, buf, want, off);
        if (n != (ssize_t)want) {
            snprintf(err, errlen, "cannot read %s/index: %s", d->dir,
                     n < 0 ? strerror((int)-n) : "short read");
            rc = -EIO;
            goto out;
        }
        size_t o;
        for (o = 0; o < want; o += FMT_RECORD_SIZE) {
            if (!fmt_record_decode(buf + o, &r)) {
                if (!valid_record_follows(fd, off + o + FMT_RECORD_SIZE, end, look)) {
                    torn = true;
                    break;
                }
                if (!d->check_only) {
                    /* A damaged record could be a DEL or a GC_END: skipping
                     * it would bring removed objects back. */
                    snprintf(err, errlen,
                             "%s/index: record at offset %" PRIu64 " is damaged (CRC mismatch) "
                             "and valid records follow it; nothing was changed: run ca-cas fsck "
                             "%s to see the damage, then ca-cas fsck %s --repair to rebuild the "
                             "index from the data files",
                             d->dir, off + o, d->dir, d->dir);
                    rc = -EINVAL;
                    goto out;
                }
                d->replay.bad_records++;
                log_error("index: damaged record at offset %" PRIu64 " skipped (valid records "
                          "follow)",
                          off + o);
                continue;
            }
            d->replay.records++;
            if ((rc = apply_record(d, &rp, &r, err, errlen)) < 0)
                goto out;
            if (rc == 1) {
                rc = 0;
                if (!d->check_only) {
                    snprintf(err, errlen,
                             "%s/index: record at offset %" PRIu64 " (type %u, data file %u) "
                             "makes no sense to this version; nothing was changed: run ca-cas "
                             "fsck %s, then ca-cas fsck %s --repair to rebuild the index",
                             d->dir, off + o, r.type, r.file, d->dir, d->dir);
                    rc = -EINVAL;
                    goto out;
                }
                d->replay.bad_records++;
                log_error("index: record at offset %" PRIu64 " (type %u, data file %u) skipped",
                          off + o, r.type, r.file);
            }
        }
        off += o;
    }
    d->index_records = d->replay.records;
    if (off < len) {
        d->replay.torn_bytes = len - off;
        log_warn("index: torn tail of %" PRIu64 " bytes at offset %" PRIu64 " cut off", len - off,
                 off);
        if (!d->check_only && (ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0)) {
            snprintf(err, errlen, "cannot cut the torn tail of %s/index: %s", d->dir,
                     strerror(errno));
            rc = -errno;
            goto out;
        }
    }
    *fd_out = fd;
    *end_out = off;
out:
    for (int f = 0; f < FMT_NFILES; f++)
        free(rp.moves[f]);
    free(buf);
    free(look);
    if (rc < 0)
        close(fd);
    return rc;
}

/* ---- data files -------------------------------------------------------- */

/*
 * Checks the data files the directory holds against the generations the
 * index names, before anything is removed or created. Start-up refuses
 * (-EINVAL with a message, nothing changed) when
 *  - a data file name is taken by something other than a regular file;
 *  - the current generation of file N is missing although the index names a
 *    generation above 0 for it, points objects into it, or another
 *    generation of it is there (an index restored from a later backup than
 *    the data, or a lost file: creating an empty one and removing the other
 *    would lose every object in it);
 *  - a generation above current + 1 is there (the index is older than the
 *    data files: that file is no compaction leftover).
 * Then the other generations are provably leftovers of a compaction (below
 * current: committed, its copy was synced before the GENERATION record;
 * current + 1: never committed) and remove_stale_generations removes them.
 * fsck (check_only) instead takes the newest generation that is there as
 * current and flags the file in replay.relocated_files, so that it can find
 * the objects in it by their frames.
 */
static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, CAS_MAX_DIGEST);
}

/* Keys of the intact frames of fd (CAS_MAX_DIGEST bytes each, zero-padded,
 * sorted), walking past damaged bytes and punched-out ranges. */
static int frame_keys(struct disk_store *d, int fd, unsigned char **out, size_t *count)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    size_t n = 0, cap = 0, buflen = 1u << 20;
    unsigned char *keys = NULL, *buf = malloc(buflen);
    if (!buf)
        return -ENOMEM;
    struct fmt_walk w = {.fd = fd, .fsize = (uint64_t)st.st_size, .algo = d->base.algo->id,
                         .buf = buf, .buflen = buflen};
    int rc;
    while ((rc = fmt_walk_next(&w)) > 0) {
        /* Damage is stepped over; a removal frame names objects, is none;
         * a frame marked removed in place is a removed object. */
        if (w.what != FMT_AT_OBJECT)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            unsigned char *k = realloc(keys, cap * CAS_MAX_DIGEST);
            if (!k) {
                rc = -ENOMEM;
                break;
            }
            keys = k;
        }
        memset(keys + n * CAS_MAX_DIGEST, 0, CAS_MAX_DIGEST);
        memcpy(keys + n * CAS_MAX_DIGEST, w.fr.digest, d->base.algo->digest_len);
        n++;
    }
    free(buf);
    if (rc < 0) {
        free(keys);
        return rc;
    }
    if (n)
        qsort(keys, n, CAS_MAX_DIGEST, cmp_digest);
    *out = keys;
    *count = n;
    return 0;
}

/*
 * Whether data file n at generation `next` (the current one + 1) holds only
 * copies of frames of generation `cur`, by key: then it is provably what a
 * compaction that never committed was writing (a compaction copies frames
 * of the current generation and nothing else; writers keep away from the
 * file meanwhile). 1 yes; 0 no, with the first other key in hex (an object
 * written after that compaction committed: the index is older than the data
 * files); or -errno with err filled when a file cannot be read.
 */
static int next_gen_only_copies(struct disk_store *d, unsigned n, uint64_t cur, uint64_t next,
                                char *hex, char *err, size_t errlen)
{
    char names[2][32];
    fmt_datafile_name(n, cur, names[0], sizeof(names[0]));
    fmt_datafile_name(n, next, names[1], sizeof(names[1]));
    unsigned char *keys[2] = {NULL, NULL};
    size_t count[2] = {0, 0};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        int fd = fmt_open_regular(d->dirfd, d->dir, names[i], O_RDONLY, err, errlen);
        if (fd < 0)
            return fd;
        rc = frame_keys(d, fd, &keys[i], &count[i]);
        close(fd);
        if (rc < 0)
            snprintf(err, errlen, "cannot read %s/%s: %s", d->dir, names[i], strerror(-rc));
    }
    if (rc == 0) {
        rc = 1;
        for (size_t i = 0; i < count[1] && rc == 1; i++)
            if (!count[0] || !bsearch(keys[1] + i * CAS_MAX_DIGEST, keys[0], count[0], CAS_MAX_DIGEST,
                         cmp_digest)) {
                cas_hex_encode(keys[1] + i * CAS_MAX_DIGEST, d->base.algo->digest_len, hex);
                rc = 0;
            }
    }
    free(keys[0]);
    free(keys[1]);
    return rc;
}

static int reconcile_generations(struct disk_store *d, char *err, size_t errlen)
{
    bool cur[FMT_NFILES] = {false}, other[FMT_NFILES] = {false}, future[FMT_NFILES] = {false};
    uint64_t newest[FMT_NFILES] = {0}, entries[FMT_NFILES] = {0};
    int fd = dup(d->dirfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "cannot list %s: %s", d->dir, strerror(errno));
        return -EIO;
    }
    rewinddir(dir); /* a dup shares the position another listing left at the end */
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        unsigned n;
        uint64_t gen;
        struct stat st;
        if (!fmt_datafile_parse(de->d_name, &n, &gen))
            continue;
        if (fstatat(d->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        if (!S_ISREG(st.st_mode)) {
            rc = fmt_not_regular(d->dir, de->d_name, st.st_mode, err, errlen);
            break;
        }
        if (gen == d->files[n].gen) {
            cur[n] = true;
            continue;
        }
        if (!other[n] || gen > newest[n])
            newest[n] = gen;
        other[n] = true;
        if (gen > d->files[n].gen + 1)
            future[n] = true;
    }
    closedir(dir);
    if (rc < 0)
        return rc;
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en))
            entries[en.file]++;
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        if (cur[n] && !future[n] && other[n] && newest[n] == d->files[n].gen + 1) {
            /* The next generation is removed as a compaction that never
             * committed only when that is provably all it is. */
            char hex[CAS_MAX_HEX + 1], next[32];
            rc = next_gen_only_copies(d, n, d->files[n].gen, newest[n], hex, err, errlen);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                fmt_datafile_name(n, newest[n], next, sizeof(next));
                if (d->check_only) {
                    /* fsck: that generation is the current one; the index's
                     * entries are looked for in it by their frames. */
                    log_warn("data file %u: %s holds object %s, which the generation the "
                             "index names does not: the index is older than the data files",
                             n, next, hex);
                    d->files[n].gen = newest[n];
                    d->replay.relocated_files |= 1ull << n;
                    continue;
                }
                snprintf(err, errlen,
                         "%s/%s holds object %s, which the generation the index names for data "
                         "file %u does not: it is no leftover of an unfinished compaction, the "
                         "index is older than the data files (restored from a backup?); nothing "
                         "was changed: run ca-cas fsck %s --repair to rebuild the index from the "
                         "data files",
                         d->dir, next, hex, n, d->dir);
                return -EINVAL;
            }
            continue;
        }
        if (cur[n] && !future[n])
            continue;
        if (!cur[n] && !other[n] && d->files[n].gen == 0 && entries[n] == 0)
            continue; /* never written: created empty below */
        char want[32], have[32] = "";
        fmt_datafile_name(n, d->files[n].gen, want, sizeof(want));
        if (other[n])
            fmt_datafile_name(n, newest[n], have, sizeof(have));
        if (d->check_only) {
            log_warn("data file %u: the index names %s, the directory holds %s", n, want,
                     cur[n]     ? want
                     : other[n] ? have
                                : "none");
            d->files[n].gen = other[n] && (!cur[n] || newest[n] > d->files[n].gen) ? newest[n]
                              : cur[n]                                             ? d->files[n].gen
                                                                                   : 0;
            d->replay.relocated_files |= 1ull << n;
            continue;
        }
        if (!cur[n])
            snprintf(err, errlen,
                     "%s/%s is missing: the index says data file %u is at that generation%s%s%s; "
                     "nothing was changed (an index restored from another backup than the data "
                     "files, or a lost file): restore it, or run ca-cas fsck %s --repair to "
                     "rebuild the index from the data files that are there",
                     d->dir, want, n, entries[n] ? " and holds objects" : "",
                     other[n] ? ", but the directory holds " : "", have, d->dir);
        else
            snprintf(err, errlen,
                     "%s/%s is newer than the generation the index names for data file %u (%s): "
                     "the index is older than the data files (restored from a backup?); nothing "
                     "was changed: run ca-cas fsck %s --repair to rebuild the index from the data "
                     "files",
                     d->dir, have, n, want, d->dir);
        return -EINVAL;
    }
    return 0;
}

/* Removes data files of generations other than the current one: leftovers of
 * a compaction that crashed before or after its commit (reconcile_generations
 * has made sure they are nothing else). */
static void remove_stale_generations(struct disk_store *d)
{
    DIR *dir = fdopendir(dup(d->dirfd));
    if (!dir)
        return;
    rewinddir(dir); /* a dup shares the position reconcile_generations left at the end */
    struct dirent *de;
    bool removed = false;
    while ((de = readdir(dir))) {
        unsigned n;
        uint64_t gen;
        struct stat st;
        if (!fmt_datafile_parse(de->d_name, &n, &gen) || gen == d->files[n].gen)
            continue;
        if (d->check_only) {
            log_warn("stale data file %s (current generation of file %u is %" PRIu64 ")",
                     de->d_name, n, d->files[n].gen);
            continue;
        }
        if (fstatat(d->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(d->dirfd, de->d_name, 0) == 0) {
            log_info("removed stale data file %s (left by a compaction; file %u is at "
                     "generation %" PRIu64 ")",
                     de->d_name, n, d->files[n].gen);
            removed = true;
        }
    }
    closedir(dir);
    if (removed)
        disk_fsync_dir(d);
}

/* True when a whole, intact frame (an object's or a removal frame) starts
 * at off in fd (size bytes long): then bytes past the last indexed frame are
 * not just an unfinished write. */
static bool whole_frame_at(struct disk_store *d, int fd, uint64_t off, uint64_t size)
{
    unsigned char h[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    struct fmt_removal rm;
    if (size < off + FMT_FRAME_HEADER || pread(fd, h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h))
        return false;
    return fmt_frame_at(h, d->base.algo->id, size - off, &fr, &rm) != FMT_AT_NONE;
}

/* True when a whole, intact frame starts anywhere at or after off in fd
 * (size bytes long): bytes past the last indexed frame that hold one are not
 * just an unfinished write, even when they begin with one (a writer's range
 * torn by a crash, with a synced frame or a removal frame after it: writers
 * and removals share a file). */
static bool frame_in_tail(struct disk_store *d, int fd, uint64_t off, uint64_t size)
{
    if (whole_frame_at(d, fd, off, size))
        return true;
    size_t buflen = 1u << 20;
    unsigned char *buf = malloc(buflen);
    if (!buf)
        return true; /* cannot tell: keep */
    bool found = false;
    for (uint64_t q = off + 1; !found && (q = fmt_next_frame(fd, q, size, buf, buflen)) < size; q++)
        found = whole_frame_at(d, fd, q, size);
    free(buf);
    return found;
}

/* A range [off, end) of a data file. */
struct span {
    unsigned file;
    uint64_t off, end;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * The removals the index lost (docs/FORMAT.md "Removal frames": an object
 * frame of key K at offset O is removed when a removal frame later in the
 * same file names (K, O)). rs holds the removal frames of data file n at
 * its current generation (compaction drops removal frames with the frames
 * they name, so each counts only in its own file and generation). An entry
 * naming the very frame the table holds live for its key, at that offset of
 * this file, can only mean that the index lost durable records: a removal
 * frame is written only after the removal's DEL (or GC_END) is synced in
 * the index (rule D8), and only after the frame it names. Such a removal
 * is applied again, as the answered request did it: a DEL record, and for
 * a client's DELETE (RM_CLIENT) its tombstone (a TOMB record with the
 * delete's stamp, unless it has expired); gc/end (RM_GC) and a balancer's
 * drop (RM_DROP) leave none. A re-PUT of the key after the removal is a
 * frame elsewhere, which no removal names: untouched. The records are
 * synced with the adoptions before the store opens. The count applied is
 * added to *applied. 0 or -errno with err filled.
 */
static int apply_lost_removals(struct disk_store *d, unsigned n, const struct disk_removals *rs,
                               uint64_t *applied, char *err, size_t errlen)
{
    uint64_t now = disk_now_s();
    for (size_t i = 0; i < rs->n; i++) {
        const struct disk_removal *x = &rs->v[i];
        uint32_t e = objtab_find(&d->tab, x->digest);
        struct objtab_entry en;
        if (x->at <= x->offset)
            continue;
        if (x->kind == RM_CLIENT && e == OBJTAB_NONE &&
            disk_untombed_at(d, x->digest, n, x->offset)) {
            /* The DEL is there, its TOMB (same batch) was lost. */
            if (x->stamp / 1000000 + d->tomb_ttl <= now)
                continue;
            struct fmt_record t;
            struct journal_pos pos;
            tomb_record(d, &t, x->digest, TOMB_DELETED, x->stamp / 1000000, x->stamp);
            int rc = disk_append(d, &t, 1, &pos, err, errlen);
            if (rc < 0)
                return rc;
            if (tomb_set_stamp(d, x->digest, TOMB_DELETED, t.size) < 0) {
                snprintf(err, errlen, "out of memory applying removals");
                return -ENOMEM;
            }
            untombed_forget(d, x->digest);
            (*applied)++;
            char hex[CAS_MAX_HEX + 1];
            cas_hex_encode(x->digest, d->base.algo->digest_len, hex);
            log_warn("data file %u: the index lost the tombstone of the client's DELETE of %s "
                     "(its removal frame at offset %" PRIu64 " names the frame its DEL removed): "
                     "rebuilt with the delete's stamp",
                     n, hex, x->at);
            continue;
        }
        if (e == OBJTAB_NONE || !objtab_get(&d->tab, e, &en) || en.file != n ||
            en.offset != x->offset)
            continue;
        struct fmt_record rec[2];
        size_t nrec = 0;
        disk_record(d, &rec[nrec], REC_DEL, x->digest);
        rec[nrec++].aux = DEL_CLIENT;
        bool tomb = x->kind == RM_CLIENT && x->stamp / 1000000 + d->tomb_ttl > now;
        if (tomb)
            tomb_record(d, &rec[nrec++], x->digest, TOMB_DELETED, x->stamp / 1000000, x->stamp);
        struct journal_pos pos;
        int rc = disk_append(d, rec, nrec, &pos, err, errlen);
        if (rc < 0)
            return rc;
        objtab_remove(&d->tab, e);
        if (tomb && tomb_set_stamp(d, x->digest, TOMB_DELETED, rec[1].size) < 0) {
            snprintf(err, errlen, "out of memory applying removals");
            return -ENOMEM;
        }
        (*applied)++;
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(x->digest, d->base.algo->digest_len, hex);
        log_warn("data file %u: object %s at offset %" PRIu64 " was removed (%s; the removal "
                 "frame at offset %" PRIu64 " names it) but the index still listed it: the "
                 "index lost the removal's records; removed again%s",
                 n, hex, x->offset,
                 x->kind == RM_CLIENT ? "a client's DELETE"
                 : x->kind == RM_GC   ? "gc/end"
                                      : "a balancer's drop",
                 x->at, tomb ? ", with the delete's tombstone" : "");
    }
    return 0;
}

/*
 * A store of index format 2 records every removal in its data files, so a
 * whole intact object frame of data file n that no indexed frame covers
 * (in one of the nr ranges r: the gaps between indexed frames, and the bytes
 * past the last one), that no removal frame after it names (rs: the removal
 * frames of those ranges, sorted), whose key the table does not hold and no
 * tombstone in force refuses, is an object whose
 * index record was lost (an index cut back: as writers commit out of file
 * order, such a frame can lie before indexed ones; or a write whose record
 * never got there: never answered, so keeping it is allowed too). Each one
 * whose bytes match its key gets its PUT record now (synced before the store
 * opens); the count adopted is added to *adopted. Only unindexed frames are
 * read (their headers; the payload of a candidate). A file with a damaged
 * removal frame in those ranges adopts nothing (logged). The caller has
 * applied every file's lost removals and tombstones first, and clears the
 * tombstones of the adopted keys only after every file
 * (tomb_clear_stored), so that a frame is judged the same whatever its
 * file's number. A frame a client delete's tombstone refuses is marked
 * removed in place ("CASD"; the file fdatasynced before this returns):
 * judged again after the tombstone expired, it would be indexed. 0 or
 * -errno with err filled.
 */
static int adopt_ranges(struct disk_store *d, unsigned n, const struct span *r, size_t nr,
                        const struct disk_removals *rsp, uint64_t *adopted, char *err,
                        size_t errlen)
{
    int fd = d->files[n].ref->fd;
    const struct disk_removals rs = *rsp;
    size_t buflen = 1u << 20;
    unsigned char *buf = malloc(buflen);
    int rc = buf ? 0 : -ENOMEM;
    if (rc == 0 && rs.damaged) {
        /* What the damaged entries removed cannot be told: indexing a frame
         * there could bring back a removed object. Nothing is adopted; the
         * frames stay as they are (compaction leaves this file alone too). */
        log_error("data file %u: %" PRIu64 " damaged removal frames: no unindexed object "
                  "there is indexed again; run ca-cas fsck %s --repair",
                  n, rs.damaged, d->dir);
        free(buf);
        return 0;
    }
    uint64_t now = disk_now_s(), killed = 0;
    bool synced = false;
    for (size_t i = 0; i < nr && rc == 0; i++) {
        struct fmt_walk w = {.fd = fd,
                             .fsize = r[i].end,
                             .algo = d->base.algo->id,
                             .next = r[i].off,
                             .buf = buf,
                             .buflen = buflen};
        while (rc == 0 && (rc = fmt_walk_next(&w)) > 0) {
            rc = 0;
            if (w.what != FMT_AT_OBJECT)
                continue; /* damage, a removal frame, an object removed in place */
            const struct fmt_frame fr = w.fr;
            uint64_t at = w.at;
            if (disk_removal_covers(&rs, fr.digest, at))
                continue; /* removed */
            char hex[CAS_MAX_HEX + 1];
            cas_hex_encode(fr.digest, d->base.algo->digest_len, hex);
            /* Judged against the tombstones as every removal left them
             * (an adoption earlier in this pass clears its key's only
             * after the pass): the same answer whatever the file order. */
            unsigned refused = tomb_adoption_refusal(d, &fr, now);
            if (refused == TOMB_DELETED) {
                /* A write the client's DELETE refused (or overtook) whose
                 * commit never marked its frame removed (a crash): marked
                 * now, so that nothing indexes it once the tombstone
                 * expires (docs/FORMAT.md, start-up step 5). */
                rc = disk_frame_kill_at(d, fd, at, fr.digest);
                if (rc < 0) {
                    snprintf(err, errlen, "cannot mark a refused frame removed in data file %u: %s",
                             n, strerror(-rc));
                    break;
                }
                killed += (uint64_t)rc;
                if (rc > 0)
                    log_warn("data file %u: object %s at offset %" PRIu64 " is not indexed and "
                             "its key's tombstone refuses it (a write the client's DELETE "
                             "overtook or refused): marked removed",
                             n, hex, at);
                rc = 0;
                continue;
            }
            if (refused || objtab_find(&d->tab, fr.digest) != OBJTAB_NONE)
                continue; /* taken out as corrupt, or another copy of the key is stored */
            if (!disk_frame_bytes_match(d, fd, at + FMT_FRAME_HEADER, fr.size, fr.digest, buf,
                                        buflen)) {
                log_warn("data file %u: unindexed frame of %s at offset %" PRIu64
                         " does not match its key: left out",
                         n, hex, at);
                continue;
            }
            /* The frame may be in the page cache only (written by a
             * process killed before its fdatasync): made durable before
             * the record that names it (rule D1), once per file. */
            if (!synced && fdatasync(fd) < 0) {
                rc = -errno;
                snprintf(err, errlen, "cannot sync data file %u: %s", n, strerror(errno));
                break;
            }
            synced = true;
            struct fmt_record rec;
            struct journal_pos pos;
            disk_record(d, &rec, REC_PUT, fr.digest);
            rec.file = (uint8_t)n;
            rec.offset = at;
            rec.size = fr.size;
            if ((rc = disk_append(d, &rec, 1, &pos, err, errlen)) < 0)
                break;
            if (objtab_insert(&d->tab, fr.digest, n, at, fr.size, 0) == OBJTAB_NONE) {
                snprintf(err, errlen, "out of memory adopting objects");
                rc = -ENOMEM;
                break;
            }
            (*adopted)++; /* its tombstone is cleared after the pass (tomb_clear_stored) */
            log_warn("data file %u: object %s at offset %" PRIu64 " is whole and intact, not "
                     "indexed, and no removal names it: its index record was lost; indexed "
                     "again",
                     n, hex, at);
        }
    }
    /* The marks are durable before the store opens. */
    if (rc == 0 && killed && fdatasync(fd) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot sync data file %u: %s", n, strerror(errno));
    }
    if (rc == -ENOMEM && !*err)
        snprintf(err, errlen, "out of memory reading data file %u", n);
    else if (rc == -EIO && !*err)
        snprintf(err, errlen, "cannot read data file %u", n);
    free(buf);
    return rc;
}

/* The gaps between the indexed frames of every data file (below each file's
 * maxend), sorted by file and offset, in *out (malloc'd; *nout of them).
 * 0 or -ENOMEM. */
static int index_gaps(struct disk_store *d, struct span **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    size_t n = 0;
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en))
            n++;
    struct span *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    n = 0;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en))
            v[n++] = (struct span){
                .file = en.file, .off = en.offset, .end = en.offset + frame_bytes(en.size)};
    qsort(v, n, sizeof(*v), cmp_span);
    /* In place: gap k before frame i is never past it. */
    size_t g = 0;
    uint64_t upto = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || v[i].file != v[i - 1].file)
            upto = 0;
        struct span f = v[i];
        if (f.off > upto)
            v[g++] = (struct span){.file = f.file, .off = upto, .end = f.off};
        if (f.end > upto)
            upto = f.end;
    }
    *out = v;
    *nout = g;
    return 0;
}

/* Removal entries kept between start-up's two passes (open_data_files). */
#define REPLAY_KEPT_REMOVALS (1u << 18)

/* The unindexed ranges of data file n: its gaps (gaps[first[n]] up to
 * gaps[first[n + 1]]), then its framed tail when tail[n], in *out
 * (malloc'd, *nout of them). 0 or -ENOMEM. */
static int file_ranges(unsigned n, const struct span *gaps, const size_t *first, const bool *tail,
                       const uint64_t *maxend, const uint64_t *fsize, struct span **out,
                       size_t *nout)
{
    size_t nr = first[n + 1] - first[n];
    struct span *x = malloc((nr + 1) * sizeof(*x));
    if (!x)
        return -ENOMEM;
    memcpy(x, gaps + first[n], nr * sizeof(*x));
    if (tail[n])
        x[nr++] = (struct span){.file = n, .off = maxend[n], .end = fsize[n]};
    *out = x;
    *nout = nr;
    return 0;
}

/* The removal frames in the unindexed ranges of data file n (file_ranges),
 * sorted, into *rs. 0 or -errno with err filled. */
static int read_removals(struct disk_store *d, unsigned n, const struct span *gaps,
                         const size_t *first, const bool *tail, const uint64_t *maxend,
                         const uint64_t *fsize, struct disk_removals *rs, char *err, size_t errlen)
{
    struct span *x = NULL;
    size_t nr = 0;
    memset(rs, 0, sizeof(*rs));
    int rc = file_ranges(n, gaps, first, tail, maxend, fsize, &x, &nr);
    for (size_t k = 0; k < nr && rc == 0; k++)
        rc = disk_removals_add(d, d->files[n].ref->fd, x[k].off, x[k].end, rs);
    free(x);
    disk_removals_sort(rs);
    if (rc < 0)
        snprintf(err, errlen, "cannot read the removal frames of data file %u: %s", n,
                 strerror(-rc));
    return rc;
}

/*
 * Opens every data file and reconciles it with the table. An entry whose
 * frame runs past the end of its file means the data file is shorter than
 * the index says: start-up refuses (fsck drops the entry and reports it).
 * Bytes past the last indexed frame are cut when they are an unfinished
 * write (no whole intact frame in them); else kept, and in an index of
 * format 2 the object frames among them, and in the gaps between indexed
 * frames, that no removal names are indexed again (adopt_ranges).
 */
static int open_data_files(struct disk_store *d, char *err, size_t errlen)
{
    uint64_t maxend[FMT_NFILES] = {0};
    uint64_t fsize[FMT_NFILES];
    bool created = false;
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        char name[32];
        fmt_datafile_name(n, d->files[n].gen, name, sizeof(name));
        int fd = fmt_open_regular(d->dirfd, d->dir, name,
                                  d->check_only ? O_RDONLY : O_RDWR | O_CREAT, err, errlen);
        if (fd == -ENOENT && d->check_only)
            fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return fd;
        struct stat st;
        fstat(fd, &st);
        if (st.st_size == 0 && !d->check_only)
            created = true;
        fsize[n] = (uint64_t)st.st_size;
        d->files[n].ref = dfile_ref_new(fd);
        if (!d->files[n].ref) {
            close(fd);
            return -ENOMEM;
        }
    }
    if (created)
        disk_fsync_dir(d);
    struct objtab_entry en;
    uint64_t past_end = 0, indexed = 0;
    for (uint32_t e = 0; e < d->tab.used; e++) {
        if (!objtab_get(&d->tab, e, &en))
            continue;
        indexed++;
        if (d->replay.relocated_files & (1ull << en.file))
            continue; /* fsck finds these by their frames */
        uint64_t fend = en.offset + frame_bytes(en.size);
        if (fend > fsize[en.file]) {
            char hex[CAS_MAX_HEX + 1];
            cas_hex_encode(en.digest, d->tab.digest_len, hex);
            if (!d->check_only) {
                if (past_end++ == 0)
                    snprintf(err, errlen,
                             "%s: data file %u is shorter than the index says: object %s ends "
                             "at %" PRIu64 " but the file has %" PRIu64 " bytes (truncated, or "
                             "replaced by an older copy); nothing was changed: restore the file, "
                             "or run ca-cas fsck %s to list what is lost and ca-cas fsck %s "
                             "--repair to take it out of the index",
                             d->dir, en.file, hex, fend, fsize[en.file], d->dir, d->dir);
                continue;
            }
            log_error("object %s: its data in file %u ends at %" PRIu64 " but the file has %" PRIu64
                      " bytes; lost",
                      hex, en.file, fend, fsize[en.file]);
            objtab_remove(&d->tab, e);
            d->replay.dropped_entries++;
            continue;
        }
        if (fend > maxend[en.file])
            maxend[en.file] = fend;
    }
    if (past_end)
        return -EINVAL;
    uint64_t adopted = 0;
    bool tail[FMT_NFILES] = {false};
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        d->files[n].length = fsize[n];
        if (fsize[n] > maxend[n]) {
            d->replay.truncated_bytes += fsize[n] - maxend[n];
            if (d->check_only)
                continue;
            bool framed = frame_in_tail(d, d->files[n].ref->fd, maxend[n], fsize[n]);
            /* Its removal frames are read below with the gaps' (any index
             * format: a removal frame is a removal whoever wrote it). */
            tail[n] = framed;
            if (framed && d->index_version == FMT_INDEX_VERSION_REMOVALS) {
                /* Removals are in the data files: what no removal names
                 * there is live (adopt_ranges, below, with the gaps); the
                 * rest stays dead bytes until compaction. */
                continue;
            }
            if (framed) {
                /* A removed object, a write whose PUT record was torn
                 * off, or (an index older than the data) an object the
                 * index never heard of: not provably garbage, so kept as
                 * dead bytes until compaction (ca-cas fsck --repair can
                 * index it if the index was restored from a backup). */
                if (indexed == 0) /* every object removed, or an index cut back */
                    log_warn("data file %u: %" PRIu64 " bytes hold a whole frame and the "
                             "index names no object at all: if the index was damaged or restored "
                             "from a backup, stop now and run ca-cas fsck %s (the next compaction "
                             "drops what the index does not name)",
                             n, fsize[n] - maxend[n], d->dir);
                else
                    log_info("data file %u: %" PRIu64 " bytes past the last indexed object "
                             "hold a whole frame: kept until compaction",
                             n, fsize[n] - maxend[n]);
                continue;
            }
            log_info("data file %u: %" PRIu64 " bytes past the last indexed object cut off "
                     "(a write that was never acknowledged)",
                     n, fsize[n] - maxend[n]);
            if (ftruncate(d->files[n].ref->fd, (off_t)maxend[n]) < 0 ||
                fdatasync(d->files[n].ref->fd) < 0) {
                snprintf(err, errlen, "cannot cut data file %u: %s", n, strerror(errno));
                return -errno;
            }
            d->files[n].length = maxend[n];
        }
    }
    uint64_t applied = 0;
    if (!d->check_only) {
        /* The gaps between indexed frames and the framed tails: only the
         * frames the index does not name are read. Their removal frames
         * first take out what the index lost the removal of (any index
         * format); in a store of format 2 the object frames no removal
         * names are then indexed again. */
        bool v2 = d->index_version == FMT_INDEX_VERSION_REMOVALS;
        struct span *gaps;
        size_t ngaps;
        if (index_gaps(d, &gaps, &ngaps) < 0) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        /* Two passes (docs/FORMAT.md, start-up step 5): every file's
         * removal frames first, then adoption. A frame is judged only once
         * every lost removal and lost tombstone of every file is applied:
         * a stale entry of its key in a later file, or the tombstone of a
         * DELETE whose removal frame is in another file, decides it. Each
         * file's removals are kept for the second pass up to
         * REPLAY_KEPT_REMOVALS entries in all (about 100 bytes each); the
         * files past that are read again. */
        struct disk_removals *rs = calloc(FMT_NFILES, sizeof(*rs));
        bool kept[FMT_NFILES] = {false};
        size_t first[FMT_NFILES + 1], nkept = 0;
        int rc = rs ? 0 : -ENOMEM;
        if (!rs)
            snprintf(err, errlen, "out of memory");
        for (unsigned n = 0, i = 0; n <= FMT_NFILES; n++) {
            first[n] = i;
            while (n < FMT_NFILES && i < ngaps && gaps[i].file == n)
                i++;
        }
        for (unsigned n = 0; n < FMT_NFILES && rc == 0; n++) {
            if (first[n + 1] == first[n] && !tail[n])
                continue;
            rc = read_removals(d, n, gaps, first, tail, maxend, fsize, &rs[n], err, errlen);
            if (rc == 0)
                rc = apply_lost_removals(d, n, &rs[n], &applied, err, errlen);
            if (rc == 0 && v2 && !d->replay_reread && nkept + rs[n].n <= REPLAY_KEPT_REMOVALS) {
                kept[n] = true;
                nkept += rs[n].n;
            } else {
                disk_removals_free(&rs[n]);
            }
        }
        for (unsigned n = 0; n < FMT_NFILES && rc == 0 && v2; n++) {
            if (first[n + 1] == first[n] && !tail[n])
                continue;
            if (!kept[n])
                rc = read_removals(d, n, gaps, first, tail, maxend, fsize, &rs[n], err, errlen);
            struct span *x = NULL;
            size_t nr = 0;
            if (rc == 0 && (rc = file_ranges(n, gaps, first, tail, maxend, fsize, &x, &nr)) < 0)
                snprintf(err, errlen, "out of memory");
            if (rc == 0)
                rc = adopt_ranges(d, n, x, nr, &rs[n], &adopted, err, errlen);
            free(x);
            disk_removals_free(&rs[n]);
        }
        if (rs) {
            for (unsigned n = 0; n < FMT_NFILES; n++)
                disk_removals_free(&rs[n]);
            free(rs);
        }
        /* Adopted keys are stored again: their tombstones go. */
        if (rc == 0 && adopted)
            tomb_clear_stored(d);
        free(gaps);
        if (rc < 0)
            return rc;
    }
    if (applied)
        log_warn("%" PRIu64 " removals the index lost were applied again: removal frames in "
                 "the data files name the frames (the index lost the records of answered "
                 "removals: cut back, or restored from an older copy)",
                 applied);
    if (adopted || applied) {
        struct journal_pos pos;
        journal_now(&d->journal, &pos);
        int rc = disk_sync(d, &pos, err, errlen);
        if (rc < 0)
            return rc;
        if (adopted)
            log_warn("%" PRIu64 " objects past the end of what the index named were indexed "
                     "again (their records had been lost: an index cut back, or writes that "
                     "stopped before their record)",
                     adopted);
    }
    return 0;
}

static void recount(struct disk_store *d)
{
    struct objtab_entry en;
    d->objects = d->bytes = d->garbage_objects = d->garbage_bytes = 0;
    for (unsigned n = 0; n < FMT_NFILES; n++)
        d->files[n].live = 0;
    for (uint32_t e = 0; e < d->tab.used; e++) {
        if (!objtab_get(&d->tab, e, &en))
            continue;
        d->objects++;
        d->bytes += en.size;
        d->files[en.file].live += frame_bytes(en.size);
        if (en.flags & OBJTAB_MARKED) {
            d->garbage_objects++;
            d->garbage_bytes += en.size;
        }
    }
    if (!d->gc_active && d->garbage_objects) {
        mark_all(d, false);
        d->garbage_objects = d->garbage_bytes = 0;
    }
}

int disk_replay(struct disk_store *d, char *err, size_t errlen)
{
    int rc, ifd;
    uint64_t iend;
    if (objtab_init(&d->untombed, d->base.algo->digest_len) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if ((rc = replay_index(d, &ifd, &iend, err, errlen)) < 0)
        return rc;
    d->journal.fd = ifd;
    d->journal.end = d->journal.synced = iend;
    if ((rc = reconcile_generations(d, err, errlen)) < 0)
        return rc;
    remove_stale_generations(d);
    if ((rc = open_data_files(d, err, errlen)) < 0)
        return rc;
    recount(d);
    /* fsck (check_only) reads it after the replay (fsck.c). */
    if (!d->check_only)
        objtab_destroy(&d->untombed);
    DISK_ASSERT_CONSISTENT(d); /* the table and its counters agree */
    return 0;
}
