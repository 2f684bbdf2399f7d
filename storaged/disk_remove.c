/*
 * disk_remove.c - a client's DELETE and a balancer's drop on the disk
 * backend.
 *
 * A client's DELETE removes the object (REC_DEL) and leaves a tombstone
 * (REC_TOMB) so that no copy from another replica brings it back
 * (disk_tomb.c); a balancer's drop of a copy it placed elsewhere removes it
 * without one. Either records the removal in the index (DEL, and TOMB) and
 * syncs that, then appends a removal frame naming the object's frame
 * (digest, offset) to the data file that holds it and fdatasyncs it
 * (disk_rmframe.c), and only then answers: the data files alone tell a
 * removed frame from a live one, so an index rebuilt from them (ca-cas fsck
 * --repair) never brings an answered removal back, and a removal frame never
 * names an object the index still keeps (docs/FORMAT.md, "Removal frames",
 * rule D8).
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
static int remove_object(struct disk_store *d, const struct cas_key *key, bool client,
                         uint64_t stamp, char *err, size_t errlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(key, hex);
    if (__atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST)) {
        snprintf(err, errlen, "store is read-only: %s", d->read_only_reason);
        return -EROFS;
    }
    struct journal_pos pos;
    struct fmt_record r[2];
    struct rm_plan plan = {.count = 0};
    size_t n;
    uint64_t now = disk_now_s();
    uint32_t e;
    int rc;
    for (;;) {
        /* Under the lock: the object's frame, its room for the removal frame
         * in that file (no compaction moves it from now on), the index
         * records. */
        n = 0;
        pthread_rwlock_wrlock(&d->lock);
        e = objtab_find(&d->tab, key->digest);
        struct objtab_entry en;
        if (e != OBJTAB_NONE && objtab_get(&d->tab, e, &en)) {
            if (disk_removal_plan_one(d, &en, &plan) == -EAGAIN) {
                pthread_rwlock_unlock(&d->lock);
                disk_removal_wait_file(d, en.file); /* a compaction holds the file */
                continue;
            }
            disk_record(d, &r[n], REC_DEL, key->digest);
            r[n++].aux = DEL_CLIENT;
        } else {
            e = OBJTAB_NONE;
        }
        break;
    }
    if (!n && client && disk_index_room_short(d)) {
        pthread_rwlock_unlock(&d->lock);
        snprintf(err, errlen,
                 "disk full: object %s is not stored here, and its tombstone is refused to keep "
                 "the index's room for removing stored objects",
                 hex);
        return -ENOSPC;
    }
    if (client)
        tomb_record(d, &r[n++], key->digest, TOMB_DELETED, now, stamp);
    if (!n) {
        pthread_rwlock_unlock(&d->lock);
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    rc = disk_append(d, r, n, &pos, err, errlen);
    if (rc == 0) {
        if (e != OBJTAB_NONE)
            disk_forget(d, e);
        if (client && tomb_set_stamp(d, key->digest, TOMB_DELETED, r[n - 1].size) < 0) {
            /* The index has it; only this process's memory does not. */
            pthread_rwlock_unlock(&d->lock);
            disk_removal_plan_drop(d, &plan);
            disk_fault(d, "tombstone table (out of memory)", -ENOMEM);
            snprintf(err, errlen, "out of memory");
            return -EIO;
        }
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc == 0)
        rc = disk_sync(d, &pos, err, errlen);
    if (rc < 0) {
        /* Not recorded (507 on a full index: nothing changed), or not
         * durable: no removal frame, and nothing marked in place. */
        disk_removal_plan_drop(d, &plan);
        return rc;
    }
    /* The removal is durable in the index: now into the data file, with
     * the tombstone's stamp, so that one rebuilt from the frame (start-up,
     * fsck --repair) orders writes as this delete does. */
    if (client)
        plan.stamp = r[n - 1].size;
    rc = disk_removal_plan_write(d, &plan, client ? RM_CLIENT : RM_DROP, now, err, errlen);
    if (rc < 0)
        return rc;
    if (e == OBJTAB_NONE) {
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    return 0;
}

int disk_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_object(disk_of(s), key, true, 0, err, errlen);
}

/* A client's DELETE stamped by its sender (store.h remove_at): its
 * tombstone carries stamp (unix microseconds). */
int disk_remove_at(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                   size_t errlen)
{
    return remove_object(disk_of(s), key, true, stamp, err, errlen);
}

int disk_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_object(disk_of(s), key, false, 0, err, errlen);
}

