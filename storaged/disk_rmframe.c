/*
 * disk_rmframe.c - the removal frames that record every removal of the
 * disk backend in the data files themselves (docs/FORMAT.md, "Removal
 * frames", rule D8): writing them (disk_remove.c for a DELETE or a drop,
 * disk_gc.c for gc/end, one batch per data file) and reading them back
 * (disk_replay.c, fsck).
 *
 * A removal frame goes into the same file as the frames it names, after
 * them, so "later in the same file" orders the two with no clock; a
 * compaction of that file drops both (the removed frames are not copied,
 * and removal frames never are). To keep that true a removal holds its
 * room in the file as a writer does (the compactor waits for writers) and
 * waits for a compaction that holds the file to finish first.
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
#include <sys/stat.h>

/* ---- room for a removal frame ------------------------------------------ */

/* Reserves len bytes at the end of data file n as a writer of it. false
 * when the compactor holds or is taking n. Caller holds files_lock, and
 * lock (any mode) so that the file's descriptor is current. */
static bool slot_reserve(struct disk_store *d, unsigned n, uint64_t len, struct rm_slot *s)
{
    struct dfile *f = &d->files[n];
    if (f->busy || f->compacting)
        return false;
    s->file = n;
    s->off = f->length;
    s->len = len;
    s->fd = f->ref->fd; /* the compactor waits for writers to leave */
    f->length += len;
    f->reserved += len;
    f->writers++;
    __atomic_add_fetch(&d->unwritten, len, __ATOMIC_RELAXED);
    return true;
}

/* Gives a slot back: its bytes stay (keep) or, like an abandoned write,
 * are cut off at the end of the file or punched out. */
static void slot_release(struct disk_store *d, struct rm_slot *s, bool keep)
{
    struct dfile *f = &d->files[s->file];
    pthread_mutex_lock(&d->files_lock);
    if (!keep) {
        if (f->length == s->off + s->len) {
            if (ftruncate(s->fd, (off_t)s->off) == 0)
                f->length = s->off;
        } else {
            fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s->off,
                      (off_t)s->len);
        }
    }
    f->reserved -= s->len;
    f->writers--;
    __atomic_sub_fetch(&d->unwritten, s->len, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&d->files_cond);
    pthread_mutex_unlock(&d->files_lock);
}

void disk_removal_release(struct disk_store *d, struct rm_held *held, bool keep)
{
    for (unsigned i = 0; i < held->n; i++)
        slot_release(d, &held->slots[i], keep);
    held->n = 0;
}

void disk_removal_wait_file(struct disk_store *d, unsigned n)
{
    pthread_mutex_lock(&d->files_lock);
    while (d->files[n].busy || d->files[n].compacting)
        pthread_cond_wait(&d->files_cond, &d->files_lock);
    pthread_mutex_unlock(&d->files_lock);
}

/* Bytes of the removal frames for count entries (FMT_REMOVAL_MAX a frame). */
static uint64_t frames_len(uint64_t count)
{
    uint64_t full = count / FMT_REMOVAL_MAX, rest = count % FMT_REMOVAL_MAX;
    return full * fmt_removal_len(FMT_REMOVAL_MAX) + (rest ? fmt_removal_len(rest) : 0);
}

/* Writes the removal frames for count entries (an entry table, digests of
 * this store) into slot s, frame after frame (not synced). 0 or -errno. */
static int slot_write(struct disk_store *d, const struct rm_slot *s, unsigned kind, uint64_t now,
                      uint64_t stamp, unsigned char *entries, uint64_t count)
{
    uint64_t at = s->off;
    for (uint64_t i = 0; i < count;) {
        uint64_t k = count - i < FMT_REMOVAL_MAX ? count - i : FMT_REMOVAL_MAX;
        unsigned char *e = entries + i * FMT_REMOVAL_ENTRY;
        struct fmt_removal h = {.algo = (uint8_t)d->base.algo->id,
                                .kind = (uint8_t)kind,
                                .entries_crc = fmt_removal_entries_crc(e, k),
                                .count = k,
                                .written_at = now,
                                .stamp = stamp};
        unsigned char hdr[FMT_FRAME_HEADER];
        fmt_removal_encode(&h, hdr);
        int rc = disk_pwrite_all(s->fd, hdr, sizeof(hdr), at);
        if (rc == 0)
            rc = disk_pwrite_all(s->fd, e, (size_t)(k * FMT_REMOVAL_ENTRY), at + sizeof(hdr));
        if (rc < 0)
            return rc;
        at += fmt_removal_len(k);
        i += k;
    }
    assert(at == s->off + s->len);
    return 0;
}

static bool no_room(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG;
}

/*
 * Marks the object frames that count entries name in data file fd removed in
 * place (fmt_frame_kill: the header is rewritten, no new space is taken), not
 * synced. For a file system with no room for a removal frame: DELETE and
 * gc/end must go on on a full disk. A named frame whose header is not that
 * object's intact header is left as it is. 0 or -errno.
 */
static int kill_in_place(struct disk_store *d, int fd, const unsigned char *entries, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        unsigned char digest[CAS_MAX_DIGEST], h[FMT_FRAME_HEADER];
        uint64_t off;
        struct fmt_frame fr;
        fmt_removal_entry_get(entries, i, digest, &off);
        if (pread(fd, h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h))
            return -EIO;
        if (!fmt_frame_decode(h, &fr) || memcmp(fr.digest, digest, d->tab.digest_len) != 0)
            continue;
        fmt_frame_kill(h);
        int rc = disk_pwrite_all(fd, h, sizeof(h), off);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- planning a removal, then writing it (rule D8) ----------------------- */

/*
 * A removal is planned under the table lock (its entries and its room in
 * every data file concerned, held as a writer so that no compaction takes
 * those files), then recorded in the index, whose record is synced, and only
 * then written into the data files (disk_removal_plan_write), without the
 * lock: the objects are already gone from the table, so no use can race with
 * the write. A crash in between leaves an index record without its removal
 * frame: the removal was never answered, and an index lost later can bring
 * back only such an unanswered removal, never lose a live object.
 */

/* Room for the planned entries in every data file concerned, or none at
 * all (-EAGAIN, *wait_file set: the compactor holds that file). */
static int plan_reserve(struct disk_store *d, struct rm_plan *p, unsigned *wait_file)
{
    p->held.n = 0;
    pthread_mutex_lock(&d->files_lock);
    for (unsigned f = 0; f < FMT_NFILES; f++) {
        uint64_t k = p->start[f + 1] - p->start[f];
        if (!k)
            continue;
        if (!slot_reserve(d, f, frames_len(k), &p->held.slots[p->held.n])) {
            pthread_mutex_unlock(&d->files_lock);
            disk_removal_release(d, &p->held, false);
            *wait_file = f;
            return -EAGAIN;
        }
        p->held.n++;
    }
    pthread_mutex_unlock(&d->files_lock);
    return 0;
}

int disk_removal_plan_marked(struct disk_store *d, struct rm_plan *p, unsigned *wait_file,
                             char *err, size_t errlen)
{
    assert(disk_locked_write(d));
    memset(p, 0, sizeof(*p));
    uint64_t per_file[FMT_NFILES] = {0};
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en) && (en.flags & OBJTAB_MARKED)) {
            per_file[en.file]++;
            p->count++;
        }
    if (!p->count)
        return 0;
    /* Entry tables, grouped by file (a counting sort over the table). */
    uint64_t fill[FMT_NFILES];
    for (unsigned f = 0; f < FMT_NFILES; f++)
        p->start[f + 1] = p->start[f] + per_file[f];
    memcpy(fill, p->start, sizeof(fill));
    p->entries = malloc(p->count * FMT_REMOVAL_ENTRY);
    if (!p->entries) {
        p->count = 0;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t e = 0; e < d->tab.used; e++)
        if (objtab_get(&d->tab, e, &en) && (en.flags & OBJTAB_MARKED))
            fmt_removal_entry_put(p->entries, fill[en.file]++, en.digest, d->tab.digest_len,
                                  en.offset);
    int rc = plan_reserve(d, p, wait_file);
    if (rc < 0) {
        free(p->entries);
        memset(p, 0, sizeof(*p));
    }
    return rc;
}

int disk_removal_plan_one(struct disk_store *d, const struct objtab_entry *en, struct rm_plan *p)
{
    assert(disk_locked_write(d));
    memset(p, 0, sizeof(*p));
    p->entries = p->one;
    p->count = 1;
    fmt_removal_entry_put(p->entries, 0, en->digest, d->tab.digest_len, en->offset);
    for (unsigned f = en->file + 1; f <= FMT_NFILES; f++)
        p->start[f] = 1;
    unsigned wait_file;
    int rc = plan_reserve(d, p, &wait_file);
    if (rc < 0)
        memset(p, 0, sizeof(*p));
    return rc;
}

static void plan_free(struct rm_plan *p)
{
    if (p->entries != p->one)
        free(p->entries);
    memset(p, 0, sizeof(*p));
}

void disk_removal_plan_drop(struct disk_store *d, struct rm_plan *p)
{
    disk_removal_release(d, &p->held, false);
    plan_free(p);
}

int disk_removal_plan_write(struct disk_store *d, struct rm_plan *p, unsigned kind, uint64_t now,
                            char *err, size_t errlen)
{
    if (!p->count) {
        plan_free(p);
        return 0;
    }
    int rc = 0;
    unsigned bad = 0;
    for (unsigned i = 0; i < p->held.n && rc == 0; i++) {
        struct rm_slot *s = &p->held.slots[i];
        rc = slot_write(d, s, kind, now, p->stamp,
                        p->entries + p->start[s->file] * FMT_REMOVAL_ENTRY,
                        p->start[s->file + 1] - p->start[s->file]);
        bad = s->file;
    }
    bool in_place = no_room(rc);
    if (in_place) {
        /* No room: every removed frame is marked in place instead (the
         * removal frames written so far are given back below). The frames
         * are no longer in the table, and the slots keep any compaction off
         * their files, so nothing copies them meanwhile. */
        log_warn("removal: no room for removal frames in %s: the %" PRIu64
                 " removed frames are marked removed in place",
                 d->dir, p->count);
        rc = 0;
        for (unsigned i = 0; i < p->held.n && rc == 0; i++) {
            struct rm_slot *s = &p->held.slots[i];
            rc = kill_in_place(d, s->fd, p->entries + p->start[s->file] * FMT_REMOVAL_ENTRY,
                               p->start[s->file + 1] - p->start[s->file]);
            bad = s->file;
        }
    }
    /* One fdatasync per file, after all the writes: the disk takes them
     * together. */
    for (unsigned i = 0; i < p->held.n && rc == 0; i++) {
        bad = p->held.slots[i].file;
        if (fdatasync(p->held.slots[i].fd) < 0)
            rc = -errno;
    }
    uint64_t count = p->count;
    disk_removal_release(d, &p->held, rc == 0 && !in_place);
    plan_free(p);
    if (rc == 0)
        return 0;
    /* The index record is durable: the removal happened, but the data files
     * do not say so. Not answered as a success: an index rebuilt from the
     * data files (fsck --repair) could bring these objects back. */
    if (!no_room(rc))
        disk_fault(d, "data file write (removal frame)", rc);
    log_error("removal of %" PRIu64 " objects recorded in the index of %s but not in data file "
              "%u (%s): an index rebuilt from the data files (ca-cas fsck --repair) may bring "
              "them back",
              count, d->dir, bad, strerror(-rc));
    snprintf(err, errlen,
             "removed from the index, but the removal could not be recorded in data file %u of "
             "%s: %s",
             bad, d->dir, strerror(-rc));
    return -EIO;
}

/* ---- reading removal frames back ----------------------------------------- */

static int cmp_removal(const void *a, const void *b)
{
    const struct disk_removal *x = a, *y = b;
    int c = memcmp(x->digest, y->digest, CAS_MAX_DIGEST);
    if (c)
        return c;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int disk_removals_read(struct disk_store *d, int fd, uint64_t from, uint64_t fsize,
                       struct disk_removals *out)
{
    int rc = disk_removals_add(d, fd, from, fsize, out);
    disk_removals_sort(out);
    return rc;
}

void disk_removals_sort(struct disk_removals *rs)
{
    if (rs->n)
        qsort(rs->v, rs->n, sizeof(*rs->v), cmp_removal);
}

int disk_removals_add(struct disk_store *d, int fd, uint64_t from, uint64_t fsize,
                      struct disk_removals *out)
{
    size_t buflen = 64 * 1024;
    unsigned char *buf = malloc(buflen), *ents = NULL;
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    struct fmt_walk w = {.fd = fd, .fsize = fsize, .algo = d->base.algo->id, .next = from,
                         .buf = buf, .buflen = buflen};
    while (rc == 0 && (rc = fmt_walk_next(&w)) > 0) {
        rc = 0;
        if (w.what != FMT_AT_REMOVAL)
            continue;
        const struct fmt_removal rm = w.rm;
        const uint64_t p = w.at;
        size_t len = (size_t)(rm.count * FMT_REMOVAL_ENTRY);
        unsigned char *x = realloc(ents, len);
        if (!x) {
            rc = -ENOMEM;
            break;
        }
        ents = x;
        if (pread(fd, ents, len, (off_t)(p + FMT_FRAME_HEADER)) != (ssize_t)len) {
            rc = -EIO;
            break;
        }
        if (fmt_removal_entries_crc(ents, rm.count) != rm.entries_crc) {
            out->damaged++;
            log_error("data file: removal frame at offset %" PRIu64 " is damaged (%" PRIu64
                      " entries fail their CRC): the objects it removed cannot be told",
                      p, rm.count);
            continue;
        }
        if (out->n + rm.count > out->cap) {
            size_t cap = out->cap ? out->cap : 1024;
            while (cap < out->n + rm.count)
                cap *= 2;
            struct disk_removal *v = realloc(out->v, cap * sizeof(*v));
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            out->v = v;
            out->cap = cap;
        }
        for (uint64_t i = 0; i < rm.count; i++) {
            struct disk_removal *r = &out->v[out->n++];
            fmt_removal_entry_get(ents, i, r->digest, &r->offset);
            r->at = p;
            r->written_at = rm.written_at;
            r->stamp = fmt_removal_stamp(&rm);
            r->kind = rm.kind;
        }
    }
    free(buf);
    free(ents);
    return rc;
}

const struct disk_removal *disk_removal_covers(const struct disk_removals *rs,
                                               const unsigned char *digest, uint64_t offset)
{
    if (!rs->n)
        return NULL;
    struct disk_removal key;
    memset(key.digest, 0, sizeof(key.digest));
    memcpy(key.digest, digest, CAS_MAX_DIGEST);
    key.offset = offset;
    const struct disk_removal *r = bsearch(&key, rs->v, rs->n, sizeof(*rs->v), cmp_removal);
    /* Only a removal written after the frame removes it (always so, as
     * removals are appended; a frame name at an offset past its removal
     * would be another frame written over a cut-off range). */
    return r && r->at > offset ? r : NULL;
}

void disk_removals_free(struct disk_removals *rs)
{
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
}

int disk_frame_kill_at(struct disk_store *d, int fd, uint64_t off, const unsigned char *digest)
{
    unsigned char h[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    ssize_t got = pread(fd, h, sizeof(h), (off_t)off);
    if (got < 0)
        return -errno;
    if (got != (ssize_t)sizeof(h))
        return -EIO;
    if (!fmt_frame_decode(h, &fr) || memcmp(fr.digest, digest, d->base.algo->digest_len) != 0 ||
        !fmt_frame_kill(h))
        return 0;
    int rc = disk_pwrite_all(fd, h, sizeof(h), off);
    return rc < 0 ? rc : 1;
}
