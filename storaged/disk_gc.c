/*
 * disk_gc.c - the GC cycle of the disk backend (the Cantera design).
 *
 * begin marks every stored object (one REC_GC_BEGIN record does that on
 * replay); reads, writes, POST /objects/missing and gc/mark unmark the
 * objects they touch (one REC_UNMARK each, only the first time in a cycle);
 * end removes whatever is still marked (one REC_GC_END record, synced, then
 * removal frames in the data files: disk_rmframe.c, rule D8). Everything
 * is in the index, so a restart in the middle of a cycle keeps the cycle and
 * its marks.
 *
 * What makes a use safe against a racing end (docs/OPERATIONS.md, "What
 * survives a GC cycle"): a use decides "the object is here" and unmarks it
 * under the write lock in one step (disk_use in disk_mark.c, disk_use_keys),
 * and end removes under the same lock, so either end came first (the use answers
 * 404 / "missing") or the unmark did (end keeps the object). The unmark is
 * durable before the use answers; a use that finds the object already
 * unmarked by another request waits for that request's unmark to be
 * durable too (d->unmark_pos), since it is answering on the strength of it.
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int refuse_read_only(struct disk_store *d, char *err, size_t errlen)
{
    if (!__atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST))
        return 0;
    snprintf(err, errlen, "store is read-only: %s", d->read_only_reason);
    return -EROFS;
}

/* True when id is the active cycle; else says why in err. Caller holds lock. */
static bool is_current(struct disk_store *d, uint64_t id, char *err, size_t errlen)
{
    if (d->gc_active && d->gc_id == id)
        return true;
    if (d->gc_active)
        snprintf(err, errlen, "gc cycle %" PRIu64 " is not the current one (%" PRIu64 ")", id,
                 d->gc_id);
    else
        snprintf(err, errlen, "gc cycle %" PRIu64 " is not the current one (none is active)", id);
    return false;
}

int disk_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                  uint64_t *bytes, char *err, size_t errlen)
{
    struct disk_store *d = disk_of(s);
    int rc = refuse_read_only(d, err, errlen);
    if (rc < 0)
        return rc;
    struct fmt_record r;
    struct journal_pos pos;
    pthread_rwlock_wrlock(&d->lock);
    if (id == 0) {
        id = fmt_new_gc_id(d->last_gc_id);
    } else if (id <= d->last_gc_id) {
        /* A reused id would let the earlier cycle's holder end this one
         * (its stale `end N` removing what it had kept): ids only grow. */
        fmt_gc_id_refusal(id, d->gc_active, d->gc_id, d->last_gc_id, err, errlen);
        pthread_rwlock_unlock(&d->lock);
        return -ESTALE;
    }
    if (disk_index_room_short(d)) {
        /* A cycle may append a use (UNMARK) per object: on a full file
         * system, begun with less room than that beside a DELETE of every
         * object, repeated cycles would eat the room removals need (attack
         * a6 d11). Cycles already begun go on; ending or cancelling one
         * always has room. */
        snprintf(err, errlen,
                 "disk full: the index has no room for a GC cycle's uses beside a DELETE of each "
                 "of the %" PRIu64 " objects; DELETE objects or free space, compact, then begin "
                 "again",
                 d->objects);
        pthread_rwlock_unlock(&d->lock);
        return -ENOSPC;
    }
    disk_record(d, &r, REC_GC_BEGIN, NULL);
    r.aux = id;
    rc = disk_append(d, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        bool was = d->gc_active;
        uint64_t old = d->gc_id;
        /* No garbage outside a cycle: gc/end and cancel leave none. */
        assert(was || (d->garbage_objects == 0 && d->garbage_bytes == 0));
        struct objtab_entry en;
        for (uint32_t e = 0; e < d->tab.used; e++)
            if (objtab_get(&d->tab, e, &en))
                objtab_set_flags(&d->tab, e, en.flags | OBJTAB_MARKED);
        d->gc_active = true;
        d->gc_id = id;
        if (id > d->last_gc_id)
            d->last_gc_id = id;
        d->garbage_objects = d->objects;
        d->garbage_bytes = d->bytes;
        *objects = d->objects;
        *bytes = d->bytes;
        if (was)
            log_info("gc: cycle %" PRIu64 " cancelled by a new one", old);
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc < 0)
        return rc;
    *id_out = id;
    log_info("gc: cycle %" PRIu64 " begun: %" PRIu64 " objects, %" PRIu64 " bytes marked", id,
             *objects, *bytes);
    return disk_sync(d, &pos, err, errlen);
}

static int use_batch(struct disk_store *d, const struct cas_key *keys, size_t n, bool *present,
                     uint64_t *unmarked, char *err, size_t errlen);

int disk_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                  size_t errlen)
{
    struct disk_store *d = disk_of(s);
    pthread_rwlock_rdlock(&d->lock);
    if (!d->gc_active || __atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST)) {
        /* No cycle: nothing to unmark, a look-up is enough (a cycle begun
         * after this answer marks the objects anew). A read-only store
         * cannot record uses, and cannot end a cycle either. */
        for (size_t i = 0; i < n; i++)
            present[i] = objtab_find(&d->tab, keys[i].digest) != OBJTAB_NONE;
        pthread_rwlock_unlock(&d->lock);
        return 0;
    }
    pthread_rwlock_unlock(&d->lock);
    uint64_t unmarked;
    return use_batch(d, keys, n, present, &unmarked, err, errlen);
}

int disk_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                 char *err, size_t errlen)
{
    struct disk_store *d = disk_of(s);
    int rc = refuse_read_only(d, err, errlen);
    *unmarked = 0;
    if (rc < 0)
        return rc;
    return use_batch(d, keys, n, NULL, unmarked, err, errlen);
}

/* Unmarks every stored key of keys in the active cycle, in one batch of
 * records, and waits for durability of those and of any earlier unmark a
 * found-but-unmarked key relies on. present (may be NULL) gets which keys
 * are stored, decided under the same lock. */
static int use_batch(struct disk_store *d, const struct cas_key *keys, size_t n, bool *present,
                     uint64_t *unmarked, char *err, size_t errlen)
{
    int rc = 0;
    *unmarked = 0;
    struct fmt_record *recs = malloc((n ? n : 1) * sizeof(*recs));
    if (!recs)
        return -ENOMEM;
    size_t nrec = 0;
    uint32_t *touched = malloc((n ? n : 1) * sizeof(*touched));
    if (!touched) {
        free(recs);
        return -ENOMEM;
    }
    struct journal_pos pos;
    bool found_any = false;
    pthread_rwlock_wrlock(&d->lock);
    for (size_t i = 0; i < n; i++) {
        uint32_t e = objtab_find(&d->tab, keys[i].digest);
        if (present)
            present[i] = e != OBJTAB_NONE;
        found_any |= e != OBJTAB_NONE;
        if (e != OBJTAB_NONE && disk_unmark(d, e)) {
            disk_record(d, &recs[nrec], REC_UNMARK, keys[i].digest);
            touched[nrec++] = e;
        }
    }
    if (nrec) {
        rc = disk_append(d, recs, nrec, &pos, err, errlen);
        if (rc < 0) { /* the index did not take it: mark them again */
            for (size_t i = 0; i < nrec; i++) {
                struct objtab_entry en;
                objtab_get(&d->tab, touched[i], &en);
                objtab_set_flags(&d->tab, touched[i], en.flags | OBJTAB_MARKED);
                d->garbage_objects++;
                d->garbage_bytes += en.size;
            }
        } else {
            d->unmark_pos = pos;
        }
    }
    /* Found keys already unmarked rely on the latest unmark (ours or not). */
    pos = d->unmark_pos;
    bool active = d->gc_active;
    pthread_rwlock_unlock(&d->lock);
    free(recs);
    free(touched);
    if (rc < 0)
        return rc;
    *unmarked = nrec;
    return active && found_any ? disk_sync_unmarks(d, &pos, err, errlen) : 0;
}

/* Ends cycle id: removes every object still marked (REC_GC_END), or with
 * remove false unmarks them and removes nothing (REC_GC_CANCEL). */
static int finish_cycle(struct disk_store *d, uint64_t id, bool remove, uint64_t *removed,
                        uint64_t *bytes, char *err, size_t errlen)
{
    int rc = refuse_read_only(d, err, errlen);
    if (rc < 0)
        return rc;
    struct fmt_record r;
    struct journal_pos pos;
    struct rm_plan plan = {.count = 0};
again:
    pthread_rwlock_wrlock(&d->lock);
    if (!is_current(d, id, err, errlen)) {
        /* A cancel of an id not begun yet (a balancer's begin that failed,
         * whose begin here is still queued behind a stall): no begin of it
         * is taken from now on (in memory: a queued request does not
         * outlive the process). */
        if (!remove && id > d->last_gc_id)
            d->last_gc_id = id;
        pthread_rwlock_unlock(&d->lock);
        return -ESTALE;
    }
    if (remove) {
        /* What the removal frames will name is exactly what is still marked
         * now, under the same lock as the uses; their room is held in every
         * data file concerned, so no compaction moves those frames before
         * the frames are written (after GC_END is durable, rule D8). */
        unsigned wait_file = 0;
        rc = disk_removal_plan_marked(d, &plan, &wait_file, err, errlen);
        if (rc == -EAGAIN) {
            pthread_rwlock_unlock(&d->lock);
            disk_removal_wait_file(d, wait_file); /* a compaction holds that file */
            goto again;
        }
        if (rc < 0) {
            pthread_rwlock_unlock(&d->lock);
            return rc;
        }
    }
    disk_record(d, &r, remove ? REC_GC_END : REC_GC_CANCEL, NULL);
    r.aux = id;
    rc = disk_append(d, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        *removed = remove ? d->garbage_objects : 0;
        *bytes = remove ? d->garbage_bytes : 0;
        struct objtab_entry en;
        uint64_t marked = 0, marked_bytes = 0, counted = d->garbage_objects,
                 counted_bytes = d->garbage_bytes;
        for (uint32_t e = 0; e < d->tab.used; e++) {
            if (!objtab_get(&d->tab, e, &en) || !(en.flags & OBJTAB_MARKED))
                continue;
            marked++;
            marked_bytes += en.size;
            if (remove)
                disk_forget(d, e);
            else
                objtab_set_flags(&d->tab, e, en.flags & ~OBJTAB_MARKED);
        }
        /* What the cycle counted as garbage is what was marked: the
         * garbage counters (and so /capacity and gc/end's answer) are true. */
        assert(marked == counted && marked_bytes == counted_bytes);
        (void)marked, (void)marked_bytes, (void)counted, (void)counted_bytes;
        d->garbage_objects = d->garbage_bytes = 0;
        d->gc_active = false;
        if (remove)
            d->gc_ended_id = id;
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc == 0)
        rc = disk_sync(d, &pos, err, errlen);
    if (rc < 0) {
        /* Not recorded (507: nothing changed, nothing marked in place), or
         * not durable: no removal frame is written. */
        disk_removal_plan_drop(d, &plan);
        return rc;
    }
    if (remove) {
        /* GC_END is durable, the objects are gone from the table: the
         * removal frames go into the data files without the lock. */
        rc = disk_removal_plan_write(d, &plan, RM_GC, disk_now_s(), err, errlen);
        if (rc < 0)
            return rc;
        log_info("gc: cycle %" PRIu64 " ended: %" PRIu64 " objects, %" PRIu64 " bytes removed", id,
                 *removed, *bytes);
    } else {
        log_info("gc: cycle %" PRIu64 " cancelled, nothing removed", id);
    }
    return 0;
}

int disk_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                size_t errlen)
{
    return finish_cycle(disk_of(s), id, true, removed, bytes, err, errlen);
}

int disk_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen)
{
    uint64_t removed, bytes;
    return finish_cycle(disk_of(s), id, false, &removed, &bytes, err, errlen);
}

void disk_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id)
{
    struct disk_store *d = disk_of(s);
    pthread_rwlock_rdlock(&d->lock);
    *last_id = d->last_gc_id;
    *ended_id = d->gc_ended_id;
    pthread_rwlock_unlock(&d->lock);
}

bool disk_gc_active(struct store *s, uint64_t *id)
{
    struct disk_store *d = disk_of(s);
    pthread_rwlock_rdlock(&d->lock);
    bool active = d->gc_active;
    *id = d->gc_id;
    pthread_rwlock_unlock(&d->lock);
    return active;
}
