/*
 * disk_remove.c - removing an object from the disk backend: a client's
 * DELETE (REC_DEL, then a REC_TOMB tombstone so that no copy from another
 * replica brings it back: disk_tomb.c) and a balancer's drop of a copy it
 * placed elsewhere (no tombstone). Durable before either answers.
 */
#define _GNU_SOURCE
#include "disk_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
    size_t n = 0;
    uint64_t now = disk_now_s();
    pthread_rwlock_wrlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, key->digest);
    if (e != OBJTAB_NONE) {
        disk_record(d, &r[n], REC_DEL, key->digest);
        r[n++].aux = DEL_CLIENT;
    }
    if (client)
        tomb_record(d, &r[n++], key->digest, TOMB_DELETED, now);
    if (!n) {
        pthread_rwlock_unlock(&d->lock);
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    int rc = disk_append(d, r, n, &pos, err, errlen);
    if (rc == 0) {
        if (e != OBJTAB_NONE)
            disk_forget(d, e);
        if (client && tomb_set(d, key->digest, TOMB_DELETED, now) < 0) {
            /* The index has it; only this process's memory does not. */
            pthread_rwlock_unlock(&d->lock);
            disk_fault(d, "tombstone table (out of memory)", -ENOMEM);
            snprintf(err, errlen, "out of memory");
            return -EIO;
        }
    }
    pthread_rwlock_unlock(&d->lock);
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
