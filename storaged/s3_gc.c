/*
 * s3_gc.c - the S3 backend's GC cycle (begin, mark, missing, end, cancel),
 * its compaction (a snapshot of s3-index) and its scrubber (every object
 * read back from the bucket and checked against its key). gc/end's order
 * (flag DELETING, delete in the bucket, then record) is what keeps a
 * removed object from coming back through a rebuild from the bucket.
 */
#define _GNU_SOURCE
#include "s3_internal.h"
#include "buf.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "num.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- GC
 * ------------------------------------------------------------------------------------------ */

int s3_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects, uint64_t *bytes,
                char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->gc_lock);
    struct fmt_record r;
    struct journal_pos pos;
    pthread_mutex_lock(&st->lock);
    if (id == 0) {
        id = fmt_new_gc_id(st->last_gc_id);
    } else if (id <= st->last_gc_id) {
        /* Ids only grow: a reused id would let the earlier cycle's `end N`
         * end this one (fmt_gc_id_refusal). */
        fmt_gc_id_refusal(id, st->gc_active, st->gc_id, st->last_gc_id, err, errlen);
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&st->gc_lock);
        return -ESTALE;
    }
    s3_record(st, &r, REC_GC_BEGIN, NULL);
    r.aux = id;
    rc = s3_append(st, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        s3_apply(st, &r, err, errlen);
        *objects = st->objects;
        *bytes = st->bytes;
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = s3_sync_to(st, &pos, err, errlen);
    pthread_mutex_unlock(&st->gc_lock);
    if (rc == 0) {
        *id_out = id;
        log_info("gc: cycle %" PRIu64 " begun: %" PRIu64 " objects, %" PRIu64 " bytes marked", id,
                 *objects, *bytes);
    }
    return rc;
}

/* Unmarks the keys present (present[i] when not NULL); counts them. */
static int unmark_keys(struct s3_store *st, const struct cas_key *keys, size_t n, bool *present,
                       uint64_t *unmarked, char *err, size_t errlen)
{
    struct fmt_record *recs = calloc(n ? n : 1, sizeof(*recs));
    if (!recs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t nr = 0;
    struct objtab_entry en;
    struct journal_pos pos;
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < n; i++) {
        uint32_t e = s3_find_live(st, keys[i].digest, &en);
        if (present)
            present[i] = e != OBJTAB_NONE;
        if (e != OBJTAB_NONE && st->gc_active && (en.flags & OBJTAB_MARKED))
            s3_record(st, &recs[nr++], REC_UNMARK, keys[i].digest);
    }
    if (nr)
        rc = s3_append(st, recs, nr, &pos, err, errlen);
    if (rc == 0)
        for (size_t i = 0; i < nr; i++) {
            uint32_t e = s3_find_live(st, recs[i].digest, &en);
            if (e != OBJTAB_NONE && (en.flags & OBJTAB_MARKED))
                s3_unmark(st, e, &en);
        }
    pthread_mutex_unlock(&st->lock);
    free(recs);
    if (rc == 0 && nr)
        rc = s3_sync_to(st, &pos, err, errlen);
    if (unmarked)
        *unmarked = rc == 0 ? nr : 0;
    return rc;
}

int s3_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked, char *err,
               size_t errlen)
{
    return unmark_keys(s3_of(s), keys, n, NULL, unmarked, err, errlen);
}

int s3_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                size_t errlen)
{
    return unmark_keys(s3_of(s), keys, n, present, NULL, err, errlen);
}

int s3_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
              size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    *removed = *bytes = 0;
    pthread_mutex_lock(&st->gc_lock);
    pthread_mutex_lock(&st->lock);
    if (!st->gc_active || st->gc_id != id) {
        snprintf(err, errlen, "GC cycle %" PRIu64 " is not the current one (%s %" PRIu64 ")", id,
                 st->gc_active ? "current:" : "none active; last:", st->gc_id);
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&st->gc_lock);
        return -ESTALE;
    }
    /* Everything still marked is flagged DELETING at once, under the lock:
     * from here a read, mark or missing finds it absent, and a request that
     * answered success for it before has unmarked it. */
    size_t n = st->garbage_objects, k = 0;
    unsigned char *victims = malloc((n ? n : 1) * CAS_MAX_DIGEST);
    uint64_t *sizes = malloc((n ? n : 1) * sizeof(*sizes));
    struct objtab_entry en;
    if (!victims || !sizes) {
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&st->gc_lock);
        free(victims);
        free(sizes);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t e = 0; e < st->tab.used && k < n; e++)
        if (objtab_get(&st->tab, e, &en) && (en.flags & OBJTAB_MARKED) &&
            !(en.flags & S3_DELETING)) {
            memcpy(victims + k * CAS_MAX_DIGEST, en.digest, st->base.algo->digest_len);
            sizes[k++] = en.size;
            objtab_set_flags(&st->tab, e, en.flags | S3_DELETING);
        }
    pthread_mutex_unlock(&st->lock);
    size_t failed = 0;
    char first[400] = "";
    bool *gone = calloc(k ? k : 1, sizeof(*gone));
    for (size_t i = 0; gone && i < k; i++) {
        char e1[400];
        gone[i] = s3_bucket_delete(st, victims + i * CAS_MAX_DIGEST, sizes[i], e1, sizeof(e1)) == 0;
        if (!gone[i] && !failed++)
            snprintf(first, sizeof(first), "%s", e1);
    }
    struct journal_pos pos;
    struct fmt_record r;
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < k; i++) {
        const unsigned char *d = victims + i * CAS_MAX_DIGEST;
        uint32_t e = objtab_find(&st->tab, d);
        if (gone && gone[i]) {
            s3_clobber(st, d);
            s3_record(st, &r, REC_DEL, d);
            r.aux = DEL_CLIENT;
            if (rc == 0)
                rc = s3_append(st, &r, 1, &pos, err, errlen);
            if (e != OBJTAB_NONE)
                s3_table_remove(st, e);
            *removed += 1;
            *bytes += sizes[i];
        } else if (e != OBJTAB_NONE && objtab_get(&st->tab, e, &en)) {
            objtab_set_flags(&st->tab, e, en.flags & ~S3_DELETING);
        }
    }
    if (rc == 0 && !failed && gone) {
        s3_record(st, &r, REC_GC_END, NULL);
        r.aux = id;
        rc = s3_append(st, &r, 1, &pos, err, errlen);
        if (rc == 0) {
            s3_apply(st, &r, err, errlen);
            st->gc_ended_id = id;
        }
    } else if (rc == 0) {
        journal_now(&st->journal, &pos);
    }
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
    int src = s3_sync_to(st, &pos, err, errlen);
    if (rc == 0)
        rc = src;
    pthread_mutex_unlock(&st->gc_lock);
    free(victims);
    free(sizes);
    if (rc == 0 && (failed || !gone)) {
        snprintf(err, errlen,
                 "gc/end: %zu of %zu objects could not be removed from the bucket (the cycle "
                 "stays active; end it again): %s",
                 gone ? failed : k, k, gone ? first : "out of memory");
        rc = -EIO;
    }
    free(gone);
    if (rc == 0)
        log_info("gc: cycle %" PRIu64 " ended: %" PRIu64 " objects, %" PRIu64 " bytes removed", id,
                 *removed, *bytes);
    return rc;
}

int s3_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->gc_lock);
    pthread_mutex_lock(&st->lock);
    struct journal_pos pos;
    if (!st->gc_active || st->gc_id != id) {
        snprintf(err, errlen, "GC cycle %" PRIu64 " is not the current one", id);
        /* A cancel ahead of its begin (still queued behind a stall): no
         * begin of that id is taken from now on (as disk_gc.c). */
        if (id > st->last_gc_id)
            st->last_gc_id = id;
        rc = -ESTALE;
    } else {
        struct fmt_record r;
        s3_record(st, &r, REC_GC_CANCEL, NULL);
        r.aux = id;
        rc = s3_append(st, &r, 1, &pos, err, errlen);
        if (rc == 0)
            s3_apply(st, &r, err, errlen);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = s3_sync_to(st, &pos, err, errlen);
    pthread_mutex_unlock(&st->gc_lock);
    return rc;
}

void s3_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id)
{
    struct s3_store *st = s3_of(s);
    pthread_mutex_lock(&st->lock);
    *last_id = st->last_gc_id;
    *ended_id = st->gc_ended_id;
    pthread_mutex_unlock(&st->lock);
}

bool s3_gc_active(struct store *s, uint64_t *id)
{
    struct s3_store *st = s3_of(s);
    pthread_mutex_lock(&st->lock);
    bool a = st->gc_active;
    if (a)
        *id = st->gc_id;
    pthread_mutex_unlock(&st->lock);
    return a;
}

/*
 * The expired tombstones of client deletes, cleared from the bucket first:
 * each key's tombs/<hex>.deleted is deleted under the key's tombstone hold
 * (a DELETE or a re-PUT of the key waits), and the keys whose deletion
 * succeeded and whose tombstone is still expired go into *cleared. Only
 * those leave the index: a tombstone stays in the index for as long as the
 * bucket may hold it, so a re-PUT of the key always removes the bucket's
 * first (s3_tomb_present), and the bucket never says "deleted" beside an
 * acknowledged object (a rebuild of the index would leave that object out,
 * and the next sweep delete it). Failures are logged; those keys stay.
 */
static void clear_expired_tombs(struct s3_store *st, struct objtab *cleared)
{
    size_t dl = st->base.algo->digest_len, n = 0;
    pthread_mutex_lock(&st->lock);
    struct objtab_entry en;
    for (uint32_t t = 0; t < st->tombs.used; t++)
        if (objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
            !s3_tomb_entry_in_force(st, &en))
            n++;
    unsigned char *v = n ? malloc(n * dl) : NULL;
    size_t k = 0;
    for (uint32_t t = 0; v && t < st->tombs.used && k < n; t++)
        if (objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
            !s3_tomb_entry_in_force(st, &en))
            memcpy(v + dl * k++, en.digest, dl);
    for (size_t i = 0; i < k; i++) {
        const unsigned char *d = v + dl * i;
        struct tomb_hold h;
        s3_tomb_hold(st, &h, d);
        uint32_t t = objtab_find(&st->tombs, d);
        if (t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
            !s3_tomb_entry_in_force(st, &en)) {
            char terr[300];
            pthread_mutex_unlock(&st->lock);
            int rc = s3_bucket_tomb(st, d, false, 0, terr, sizeof(terr));
            pthread_mutex_lock(&st->lock);
            if (rc < 0)
                log_warn("s3: compaction keeps an expired tombstone: %s", terr);
            else if (objtab_insert(cleared, d, 0, 0, 0, 0) == OBJTAB_NONE)
                log_warn("s3: compaction keeps an expired tombstone: out of memory");
        }
        s3_tomb_release(st, &h);
    }
    pthread_mutex_unlock(&st->lock);
    free(v);
}

/* Whether tombstone en goes into the snapshot: a quarantine entry, a
 * client delete's in force, or one expired whose bucket tombstone is not
 * cleared (clear_expired_tombs). */
static bool snapshot_keeps_tomb(struct s3_store *st, const struct objtab_entry *en,
                                const struct objtab *cleared)
{
    if (en->flags == TOMB_QUARANTINED || s3_tomb_entry_in_force(st, en))
        return true;
    return en->flags == TOMB_DELETED && objtab_find(cleared, en->digest) == OBJTAB_NONE;
}

/* Compaction: a bucket gives a removed object's space back at once, so
 * what there is to reclaim is the index's: s3-index is rewritten as a
 * snapshot (HEADER, one PUT per object, the GC cycle and its unmarks,
 * tombstones in force and those expired whose bucket tombstone could not
 * be cleared first, quarantined keys) into s3-index.snap, fdatasync'd,
 * renamed over s3-index and swapped into the journal, all under the lock so
 * no record falls between the snapshot and the swap. Synchronous: done when
 * it returns. */
int s3_compact_start(struct store *s, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    const char *tmp = S3_INDEX ".snap";
    struct objtab cleared;
    if (objtab_init(&cleared, st->base.algo->digest_len) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    clear_expired_tombs(st, &cleared);
    pthread_mutex_lock(&st->gc_lock);
    pthread_mutex_lock(&st->lock);
    unlinkat(st->dirfd, tmp, 0);
    int fd = fmt_open_regular(st->dirfd, st->dir, tmp, O_RDWR | O_CREAT | O_EXCL, err, errlen);
    if (fd < 0) {
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&st->gc_lock);
        objtab_destroy(&cleared);
        return fd;
    }
    enum { BATCH = 1024 };
    unsigned char *buf = malloc(BATCH * FMT_RECORD_SIZE);
    size_t nb = 0;
    uint64_t off = 0;
    rc = buf ? s3_write_header(st, fd, err, errlen) : -ENOMEM;
    off = FMT_RECORD_SIZE;
    struct fmt_record r;
    struct objtab_entry en;
#define EMIT()                                                                                     \
    do {                                                                                           \
        fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);                                       \
        if (nb == BATCH) {                                                                         \
            if (rc == 0 && pwrite(fd, buf, nb * FMT_RECORD_SIZE, (off_t)off) !=                    \
                               (ssize_t)(nb * FMT_RECORD_SIZE))                                    \
                rc = -EIO;                                                                         \
            off += nb * FMT_RECORD_SIZE;                                                           \
            nb = 0;                                                                                \
        }                                                                                          \
    } while (0)
    if (!st->gc_active && st->gc_ended_id) {
        /* No cycle: the last cycle ended, as a cycle begun and ended before
         * any object (nothing marked, nothing removed), so GET /gc's
         * ended_id survives a restart. */
        s3_record(st, &r, REC_GC_BEGIN, NULL);
        r.aux = st->gc_ended_id;
        EMIT();
        s3_record(st, &r, REC_GC_END, NULL);
        r.aux = st->gc_ended_id;
        EMIT();
    }
    if (!st->gc_active && st->last_gc_id > st->gc_ended_id) {
        /* And the last id begun, as a cycle begun and cancelled, so ids
         * keep growing after a restart (SPEC: a stale id never matches). */
        s3_record(st, &r, REC_GC_BEGIN, NULL);
        r.aux = st->last_gc_id;
        EMIT();
        s3_record(st, &r, REC_GC_CANCEL, NULL);
        r.aux = st->last_gc_id;
        EMIT();
    }
    /* Objects being deleted are written too: their DEL follows in the new
     * journal once the bucket delete is done. Placeholders of unrecorded
     * uploads being removed (S3_UNDOING) are no objects: never written. */
    for (uint32_t e = 0; rc == 0 && e < st->tab.used; e++)
        if (objtab_get(&st->tab, e, &en) && !(en.flags & S3_UNDOING)) {
            s3_record(st, &r, REC_PUT, en.digest);
            r.size = en.size;
            EMIT();
        }
    if (st->gc_active && rc == 0) {
        s3_record(st, &r, REC_GC_BEGIN, NULL);
        r.aux = st->gc_id;
        EMIT();
        for (uint32_t e = 0; rc == 0 && e < st->tab.used; e++)
            if (objtab_get(&st->tab, e, &en) && !(en.flags & (OBJTAB_MARKED | S3_UNDOING))) {
                s3_record(st, &r, REC_UNMARK, en.digest);
                EMIT();
            }
    }
    for (uint32_t t = 0; rc == 0 && t < st->tombs.used; t++)
        if (objtab_get(&st->tombs, t, &en) && snapshot_keeps_tomb(st, &en, &cleared)) {
            s3_record(st, &r, REC_TOMB, en.digest);
            r.flags = (uint8_t)en.flags;
            r.aux = en.offset / US_PER_S;
            r.size = en.offset; /* the stamp */
            EMIT();
        }
#undef EMIT
    if (rc == 0 && nb &&
        pwrite(fd, buf, nb * FMT_RECORD_SIZE, (off_t)off) != (ssize_t)(nb * FMT_RECORD_SIZE))
        rc = -EIO;
    off += nb * FMT_RECORD_SIZE;
    if (rc == 0 && (fdatasync(fd) < 0 || renameat(st->dirfd, tmp, st->dirfd, S3_INDEX) < 0 ||
                    fsync(st->dirfd) < 0))
        rc = -EIO;
    if (rc == 0) {
        uint64_t before = __atomic_load_n(&st->journal.end, __ATOMIC_ACQUIRE);
        journal_replace(&st->journal, fd, off);
        st->compactions++;
        /* The tombstones the snapshot left out leave the table too. */
        for (uint32_t t = 0; t < st->tombs.used; t++)
            if (objtab_get(&st->tombs, t, &en) && !snapshot_keeps_tomb(st, &en, &cleared))
                objtab_remove(&st->tombs, t);
        log_info("s3: %s/%s rewritten: %" PRIu64 " bytes, was %" PRIu64, st->dir, S3_INDEX, off,
                 before);
    } else {
        if (!err[0] || rc != -ENOMEM)
            snprintf(err, errlen, "cannot write %s/%s: %s", st->dir, tmp,
                     strerror(rc == -EIO && errno ? errno : -rc));
        close(fd);
        unlinkat(st->dirfd, tmp, 0);
    }
    pthread_mutex_unlock(&st->lock);
    pthread_mutex_unlock(&st->gc_lock);
    free(buf);
    objtab_destroy(&cleared);
    return rc;
}

/* ---- scrub
 * ------------------------------------------------------------------------------------------ */

/* After the scrubber verified an object of size bytes against its key,
 * with t its block table computed from the same bytes: the bucket's table
 * (s3_sums.c) is rewritten from t when it is missing (an object of an
 * older build), damaged, or not t. Best effort: logged. */
static void scrub_table(struct s3_store *st, const unsigned char *digest, uint64_t size,
                        struct s3_sums *t)
{
    if (!s3_sums_wanted(size) || s3_sums_finish(t) < 0 ||
        __atomic_load_n(&st->read_only, __ATOMIC_SEQ_CST))
        return;
    uint32_t *have = NULL;
    size_t n = 0;
    int rc = s3_sums_load(st, digest, size, &have, &n);
    bool same = rc == 0 && n == t->n && memcmp(have, t->v, n * 4) == 0;
    free(have);
    if (same || rc == -ENOMEM)
        return;
    char hex[CAS_MAX_HEX + 1], err[512];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    if (s3_sums_upload(st, digest, size, t, err, sizeof(err)) < 0) {
        log_warn("s3: scrub: cannot write the block table of %s: %s", hex, err);
        return;
    }
    log_info("s3: scrub: block table of %s %s, written from the verified bytes", hex,
             rc == -ENOENT ? "missing"
             : rc < 0      ? "unusable"
                           : "wrong");
    __atomic_add_fetch(&st->scrub_tables, 1, __ATOMIC_RELAXED);
}

/* Reads every object back from the bucket, hashing it against its key, at
 * most scrub_rate bytes per second; a mismatch is quarantined, a missing
 * object taken out of service; an intact object's block table is checked
 * and rewritten when missing or wrong (scrub_table). Then sleeps an hour
 * and starts again. */
static void *scrub_main(void *arg)
{
    struct s3_store *st = arg;
    size_t dl = st->base.algo->digest_len;
    char *buf = malloc(S3_READ_WINDOW);
    struct cas_hash *h = cas_hash_new(st->base.algo);
    while (buf && h) {
        uint32_t e = 0;
        for (;;) {
            unsigned char digest[CAS_MAX_DIGEST];
            uint64_t size = 0;
            bool have = false;
            struct objtab_entry en;
            pthread_mutex_lock(&st->lock);
            for (; e < st->tab.used; e++)
                if (objtab_get(&st->tab, e, &en) && !(en.flags & S3_DELETING)) {
                    memcpy(digest, en.digest, dl);
                    size = en.size;
                    have = true;
                    e++;
                    break;
                }
            pthread_mutex_unlock(&st->lock);
            if (!have)
                break;
            cas_hash_reset(h);
            struct s3_sums t = {0};
            bool table = s3_sums_wanted(size); /* false: its table is not checked */
            bool ok = true, missing = false, bad_size = false;
            char err[512];
            for (uint64_t off = 0; off < size && ok;) {
                size_t n = size - off < S3_READ_WINDOW ? (size_t)(size - off) : S3_READ_WINDOW;
                ssize_t got = s3_bucket_range(st, digest, buf, n, off, off == 0 && n == size, err,
                                              sizeof(err));
                if (got < 0) {
                    ok = false;
                    missing = got == -ENOENT;
                    bad_size = got == -EBADMSG;
                    break;
                }
                cas_hash_update(h, buf, n);
                if (table && s3_sums_update(&t, buf, n) < 0)
                    table = false; /* out of memory */
                off += n;
                __atomic_add_fetch(&st->scrub_bytes, n, __ATOMIC_RELAXED);
                /* Rate: sleep as long as n bytes take at scrub_rate. */
                struct timespec ts = {
                    .tv_sec = (time_t)(n / st->scrub_rate),
                    .tv_nsec = (long)((n % st->scrub_rate) * 1000000000ull / st->scrub_rate)};
                pthread_mutex_lock(&st->scrub_mu);
                if (!st->scrub_stop) {
                    struct timespec until;
                    clock_gettime(CLOCK_REALTIME, &until);
                    until.tv_sec += ts.tv_sec;
                    until.tv_nsec += ts.tv_nsec;
                    if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                    }
                    pthread_cond_timedwait(&st->scrub_cv, &st->scrub_mu, &until);
                }
                bool stop = st->scrub_stop;
                pthread_mutex_unlock(&st->scrub_mu);
                if (stop) {
                    s3_sums_free(&t);
                    goto out;
                }
            }
            unsigned char got[CAS_MAX_DIGEST];
            if (ok) {
                cas_hash_final(h, got);
                if (memcmp(got, digest, dl) != 0) {
                    __atomic_add_fetch(&st->scrub_corrupt, 1, __ATOMIC_RELAXED);
                    s3_quarantine_digest(st, digest,
                                         "scrub: the bucket's bytes do not match the key");
                } else if (table) {
                    scrub_table(st, digest, size, &t);
                }
            } else if (bad_size) {
                __atomic_add_fetch(&st->scrub_corrupt, 1, __ATOMIC_RELAXED);
                s3_quarantine_digest(st, digest, err);
            } else if (missing) {
                __atomic_add_fetch(&st->scrub_corrupt, 1, __ATOMIC_RELAXED);
                log_error("s3: scrub: %s", err);
                s3_lost(st, digest);
            } else {
                log_warn("s3: scrub: %s (will try again next pass)", err);
            }
            s3_sums_free(&t);
            __atomic_add_fetch(&st->scrub_objects, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&st->scrub_passes, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&st->scrub_last_pass, s3_now_s(), __ATOMIC_RELAXED);
        pthread_mutex_lock(&st->scrub_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 3600;
        while (!st->scrub_stop &&
               pthread_cond_timedwait(&st->scrub_cv, &st->scrub_mu, &until) != ETIMEDOUT)
            ;
        bool stop = st->scrub_stop;
        pthread_mutex_unlock(&st->scrub_mu);
        if (stop)
            break;
    }
out:
    free(buf);
    cas_hash_free(h);
    return NULL;
}

int s3_scrub_start(struct store *s, uint64_t bytes_per_second)
{
    struct s3_store *st = s3_of(s);
    if (!bytes_per_second || st->scrub_running)
        return 0;
    st->scrub_rate = bytes_per_second;
    st->scrub_stop = false;
    int rc = pthread_create(&st->scrub_thread, NULL, scrub_main, st);
    if (rc)
        return -rc;
    st->scrub_running = true;
    return 0;
}

void s3_scrub_stop(struct s3_store *st)
{
    if (!st->scrub_running)
        return;
    pthread_mutex_lock(&st->scrub_mu);
    st->scrub_stop = true;
    pthread_cond_broadcast(&st->scrub_cv);
    pthread_mutex_unlock(&st->scrub_mu);
    pthread_join(st->scrub_thread, NULL);
    st->scrub_running = false;
}
