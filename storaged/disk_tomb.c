/*
 * disk_tomb.c - what the disk backend remembers of keys it no longer holds:
 *
 *   tombstones   a client deleted the key here. Until the tombstone expires
 *                (DISK_TOMBSTONE_TTL) or a client PUT stores the key again,
 *                a copy from another replica (put_copy: read repair,
 *                quarantine repair, anti-entropy, rebalance) is refused, so
 *                a copy that was in flight when the delete came, or that a
 *                balancer took from a replica the delete had not reached,
 *                cannot bring the object back.
 *   quarantine   a copy of the key was found corrupt and taken out of
 *                service. Balancers poll the list (GET /quarantine) and copy
 *                a good replica back; storing the key clears the entry.
 *
 * Both live in d->tombs, an objtab keyed by digest whose `offset` is the
 * stamp of the event (unix microseconds: for a client delete, the
 * X-CAS-Timestamp its balancer sent, else this node's clock at the
 * request; the tombstone's 7 days count from it), whose `size` is the
 * delete's place among the writes in flight (d->delete_seq) and whose
 * flags are the enum fmt_tomb_kind, and in
 * the index: a client delete (disk_remove.c) appends REC_TOMB (after the
 * REC_DEL when the object was there), a quarantine is the REC_DEL with aux DEL_CORRUPT, any
 * REC_PUT of the key clears the entry, and an index snapshot writes one
 * REC_TOMB per entry still in force (expired tombstones are left out).
 * A REC_TOMB keeps the stamp in `size` (0 in records written before
 * stamps: then aux seconds * 10^6 stands for it).
 * GC never touches them: a cycle removes objects, not these entries.
 *
 * A client write is refused (409) when a client delete's tombstone of its
 * key carries a stamp at or after the write's (tomb_outranks): a copy of a
 * PUT that a balancer sent before the client's DELETE but that reached this
 * node only after it cannot bring the object back (SPEC, Deletion).
 */
#define _GNU_SOURCE
#include "disk_internal.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t disk_now_s(void)
{
    return (uint64_t)time(NULL);
}

/* The objtab stores `offset` in 56 bits: unix microseconds up to the year
 * 4253. */
#define STAMP_MAX ((UINT64_C(1) << 56) - 1)
#define US_PER_S UINT64_C(1000000)

/* The stamp of an event at unix seconds when. */
static uint64_t seconds_stamp(uint64_t when)
{
    return when > STAMP_MAX / US_PER_S ? STAMP_MAX : when * US_PER_S;
}

int tomb_set(struct disk_store *d, const unsigned char *digest, unsigned kind, uint64_t when)
{
    return tomb_set_stamp(d, digest, kind, seconds_stamp(when));
}

int tomb_replay(struct disk_store *d, const struct fmt_record *r)
{
    uint64_t stamp = r->size;
    if (!stamp) /* a record from before stamps */
        stamp = r->aux > STAMP_MAX / US_PER_S ? STAMP_MAX : r->aux * US_PER_S;
    return tomb_set_stamp(d, r->digest, r->flags, stamp);
}

int tomb_set_stamp(struct disk_store *d, const unsigned char *digest, unsigned kind, uint64_t stamp)
{
    assert(disk_locked_write(d));
    if (stamp > STAMP_MAX)
        stamp = STAMP_MAX;
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    /* A client delete's place among the writes in flight (tomb_deleted_since). */
    uint64_t seq =
        kind == TOMB_DELETED ? __atomic_add_fetch(&d->delete_seq, 1, __ATOMIC_SEQ_CST) : 0;
    if (e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en)) {
        /* Of two deletes, the later stamp rules whichever came last: a
         * write sent between them was deleted by the second. */
        if (kind == TOMB_DELETED && en.flags == TOMB_DELETED && en.offset > stamp)
            stamp = en.offset;
        d->tomb_quarantined -= en.flags == TOMB_QUARANTINED;
        objtab_set_location(&d->tombs, e, 0, stamp);
        objtab_set_flags(&d->tombs, e, kind);
        objtab_set_size(&d->tombs, e, seq);
    } else if (objtab_insert(&d->tombs, digest, 0, stamp, seq, kind) == OBJTAB_NONE) {
        return -ENOMEM;
    }
    d->tomb_quarantined += kind == TOMB_QUARANTINED;
    return 0;
}

void tomb_clear(struct disk_store *d, const unsigned char *digest)
{
    assert(disk_locked_write(d));
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    if (e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en)) {
        assert(en.flags != TOMB_QUARANTINED || d->tomb_quarantined > 0);
        d->tomb_quarantined -= en.flags == TOMB_QUARANTINED;
        objtab_remove(&d->tombs, e);
    }
}

void tomb_counts(const struct disk_store *d, uint64_t *tombstones, uint64_t *quarantined)
{
    *quarantined = d->tomb_quarantined;
    *tombstones = d->tombs.count - d->tomb_quarantined; /* expired ones until pruned */
}

bool tomb_expired(const struct disk_store *d, const struct objtab_entry *en, uint64_t now)
{
    return en->flags == TOMB_DELETED && en->offset / US_PER_S + d->tomb_ttl <= now;
}

bool tomb_refuses_copy(struct disk_store *d, const unsigned char *digest, uint64_t now)
{
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    return e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en) && en.flags == TOMB_DELETED &&
           !tomb_expired(d, &en, now);
}

bool tomb_deleted_since(struct disk_store *d, const unsigned char *digest, uint64_t seq)
{
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    return e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en) && en.flags == TOMB_DELETED &&
           en.size > seq;
}

bool tomb_outranks(struct disk_store *d, const unsigned char *digest, uint64_t stamp)
{
    uint32_t e = objtab_find(&d->tombs, digest);
    struct objtab_entry en;
    return e != OBJTAB_NONE && objtab_get(&d->tombs, e, &en) && en.flags == TOMB_DELETED &&
           !tomb_expired(d, &en, disk_now_s()) && en.offset >= stamp;
}

bool tomb_refuses_adoption(struct disk_store *d, const struct fmt_frame *fr, uint64_t now)
{
    return tomb_adoption_refusal(d, fr, now) != 0;
}

unsigned tomb_adoption_refusal(struct disk_store *d, const struct fmt_frame *fr, uint64_t now)
{
    uint32_t e = objtab_find(&d->tombs, fr->digest);
    struct objtab_entry en;
    if (e == OBJTAB_NONE || !objtab_get(&d->tombs, e, &en))
        return 0;
    if (en.flags != TOMB_QUARANTINED && tomb_expired(d, &en, now))
        return 0;
    uint64_t stamp = fmt_frame_stamp(fr);
    if (!stamp)
        return en.flags; /* a frame from before stamps: it cannot say it came later */
    if (en.flags == TOMB_DELETED && (fr->flags & FMT_FRAME_COPY))
        return en.flags; /* a copy: refused while the tombstone is in force */
    /* The commit's rule (tomb_outranks): a client write stamped after the
     * delete stored the key again; one stamped at or before it was refused
     * (409) and its frame, if a crash kept it from being marked removed,
     * stays out. A quarantine entry's time is this node's clock when the
     * copy was taken out (0 once replayed from its DEL record): a frame
     * written after it is a new copy, and its bytes are checked against the
     * key before it is indexed. */
    return en.offset >= stamp ? en.flags : 0;
}

void tomb_clear_stored(struct disk_store *d)
{
    struct objtab_entry en;
    for (uint32_t e = 0; e < d->tombs.used; e++)
        if (objtab_get(&d->tombs, e, &en) && objtab_find(&d->tab, en.digest) != OBJTAB_NONE)
            tomb_clear(d, en.digest);
}

void tomb_prune(struct disk_store *d, uint64_t now)
{
    struct objtab_entry en;
    assert(disk_locked_write(d));
    for (uint32_t e = 0; e < d->tombs.used; e++)
        if (objtab_get(&d->tombs, e, &en) && tomb_expired(d, &en, now))
            objtab_remove(&d->tombs, e);
}

size_t tomb_count(const struct disk_store *d)
{
    return d->tombs.count;
}

void tomb_record(struct disk_store *d, struct fmt_record *r, const unsigned char *digest,
                 unsigned kind, uint64_t when, uint64_t stamp)
{
    disk_record(d, r, REC_TOMB, digest);
    r->flags = (uint8_t)kind;
    r->aux = when;
    r->size = stamp ? (stamp > STAMP_MAX ? STAMP_MAX : stamp) : seconds_stamp(when);
}

void tomb_record_entry(struct disk_store *d, struct fmt_record *r, const struct objtab_entry *en)
{
    disk_record(d, r, REC_TOMB, en->digest);
    r->flags = (uint8_t)en->flags;
    r->aux = en->offset / US_PER_S;
    r->size = en->offset;
}

int disk_quarantined(struct store *s, store_list_fn fn, void *cls)
{
    struct disk_store *d = disk_of(s);
    struct objtab_entry en;
    pthread_rwlock_rdlock(&d->lock);
    for (uint32_t e = 0; e < d->tombs.used; e++)
        if (objtab_get(&d->tombs, e, &en) && en.flags == TOMB_QUARANTINED)
            fn(cls, en.digest, 0);
    pthread_rwlock_unlock(&d->lock);
    return 0;
}
