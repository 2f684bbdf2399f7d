/*
 * disk_remove.c - a client's DELETE and a balancer's drop on the disk
 * backend.
 *
 * A client's DELETE removes the object (REC_DEL) and leaves a tombstone
 * (REC_TOMB) so that no copy from another replica brings it back
 * (disk_tomb.c); a balancer's drop of a copy it placed elsewhere removes it
 * without one. Either first appends a removal frame naming the object's
 * frame (digest, offset) to the data file that holds it and fdatasyncs it
 * (disk_rmframe.c), then records the removal in the index, syncs that, and
 * only then answers: the data files alone tell a removed frame from a live
 * one, so an index rebuilt from them (ca-cas fsck --repair) never brings a
 * removal back (docs/FORMAT.md, "Removal frames", rule D8).
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

/* ---- a client's DELETE, a balancer's drop -------------------------------- */

/* Removes key's object; with a tombstone when client, durably either way. */
static int remove_object(struct disk_store *d, const struct cas_key *key, bool client, char *err,
                         size_t errlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(key, hex);
    if (__atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST)) {
        snprintf(err, errlen, "store is read-only: %s", d->read_only_reason);
        return -EROFS;
    }
    struct journal_pos pos;
    struct fmt_record r[2];
    struct rm_held held = {.n = 0};
    bool keep = true;
    size_t n = 0;
    uint64_t now = disk_now_s();
    struct objtab_entry en;
    /* First the removal frame, in the object's data file, durable. */
    int rc = disk_removal_frame_one(d, key->digest, client ? RM_CLIENT : RM_DROP, now, &held,
                                    &en, &keep, err, errlen);
    if (rc < 0)
        return rc;
    uint32_t e;
    /* Then the index. While this removal held its room in the file, no
     * compaction moved the object; another removal (gc/end) may have taken
     * it meanwhile, which this one then finds gone. */
    pthread_rwlock_wrlock(&d->lock);
    uint32_t e2 = objtab_find(&d->tab, key->digest);
    struct objtab_entry en2;
    if (e2 != OBJTAB_NONE && (!held.n || !objtab_get(&d->tab, e2, &en2) || en2.file != en.file ||
                              en2.offset != en.offset))
        e2 = OBJTAB_NONE; /* not the copy the removal frame names: left as it is */
    e = e2;
    if (e != OBJTAB_NONE) {
        disk_record(d, &r[n], REC_DEL, key->digest);
        r[n++].aux = DEL_CLIENT;
    }
    if (client)
        tomb_record(d, &r[n++], key->digest, TOMB_DELETED, now);
    if (!n) {
        pthread_rwlock_unlock(&d->lock);
        disk_removal_release(d, &held, keep);
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    rc = disk_append(d, r, n, &pos, err, errlen);
    if (rc == 0) {
        if (e != OBJTAB_NONE)
            disk_forget(d, e);
        if (client && tomb_set(d, key->digest, TOMB_DELETED, now) < 0) {
            /* The index has it; only this process's memory does not. */
            pthread_rwlock_unlock(&d->lock);
            disk_removal_release(d, &held, keep);
            disk_fault(d, "tombstone table (out of memory)", -ENOMEM);
            snprintf(err, errlen, "out of memory");
            return -EIO;
        }
    }
    pthread_rwlock_unlock(&d->lock);
    /* A removal frame whose index record failed stays: it names a frame the
     * store still serves, which an index rebuilt from the data files would
     * leave out, as it may for a delete that was never answered. */
    disk_removal_release(d, &held, keep);
    if (rc < 0)
        return rc;
    rc = disk_sync(d, &pos, err, errlen);
    if (rc == 0 && e == OBJTAB_NONE) {
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    return rc;
}

int disk_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_object(disk_of(s), key, true, err, errlen);
}

int disk_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_object(disk_of(s), key, false, err, errlen);
}

