/*
 * disk_mark.c - a use of an object during a GC cycle (reads, repeated
 * writes, confirmations: the ops above call disk_use). Under the table's
 * write lock a use unmarks the object if the active cycle marked it (one
 * REC_UNMARK) and remembers where that record ends (d->unmark_pos); it
 * answers only once the unmark it relies on, its own or an earlier one, is
 * durable. The rules, and why a use is safe against a racing gc/end, are in
 * disk_gc.c's opening comment.
 */
#define _GNU_SOURCE
#include "disk_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

bool disk_unmark(struct disk_store *d, uint32_t e)
{
    struct objtab_entry en;
    assert(disk_locked_write(d));
    if (!d->gc_active || !objtab_get(&d->tab, e, &en) || !(en.flags & OBJTAB_MARKED))
        return false;
    assert(d->garbage_objects > 0 && d->garbage_bytes >= en.size); /* it is counted */
    objtab_set_flags(&d->tab, e, en.flags & ~OBJTAB_MARKED);
    d->garbage_objects--;
    d->garbage_bytes -= en.size;
    return true;
}

int disk_sync_unmarks(struct disk_store *d, const struct journal_pos *pos, char *err, size_t errlen)
{
    if (!pos->end)
        return 0; /* no unmark since the store opened */
    return disk_sync(d, pos, err, errlen);
}

/* Unmarks entry e, if the active cycle marked it, in the table and (one
 * REC_UNMARK) in the index; remembers where that record ends. Caller holds
 * lock (write). */
static int unmark_logged(struct disk_store *d, uint32_t e, const unsigned char *digest, char *err,
                         size_t errlen)
{
    if (!disk_unmark(d, e))
        return 0;
    struct fmt_record r;
    struct journal_pos pos;
    disk_record(d, &r, REC_UNMARK, digest);
    int rc = disk_append(d, &r, 1, &pos, err, errlen);
    if (rc < 0) { /* the index did not take it: keep the table in step */
        struct objtab_entry en;
        objtab_get(&d->tab, e, &en);
        objtab_set_flags(&d->tab, e, en.flags | OBJTAB_MARKED);
        d->garbage_objects++;
        d->garbage_bytes += en.size;
        return rc;
    }
    d->unmark_pos = pos;
    return 0;
}

int disk_use(struct disk_store *d, const unsigned char *digest, unsigned flags, char *err,
             size_t errlen)
{
    struct journal_pos upos = {0, 0}, cpos = {0, 0};
    struct objtab_entry en;
    struct dfile_ref *ref = NULL;
    int rc = 0;
    pthread_rwlock_wrlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, digest);
    if (e == OBJTAB_NONE || !objtab_get(&d->tab, e, &en)) {
        pthread_rwlock_unlock(&d->lock);
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(digest, d->base.algo->digest_len, hex);
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    if (d->gc_active) {
        rc = unmark_logged(d, e, digest, err, errlen);
        upos = d->unmark_pos;
    }
    if (rc == 0 && (flags & USE_COPY)) {
        /* Every record about the object is at or before the index's end. */
        journal_now(&d->journal, &cpos);
        ref = d->files[en.file].ref;
        dfile_ref_get(ref);
    }
    pthread_rwlock_unlock(&d->lock);
    if (rc == 0 && ref)
        rc = disk_datafile_sync(d, en.file, ref->fd, err, errlen);
    if (ref)
        dfile_ref_put(ref);
    if (rc == 0 && (flags & USE_COPY))
        rc = disk_sync(d, &cpos, err, errlen);
    else if (rc == 0 && (flags & USE_SYNC))
        rc = disk_sync_unmarks(d, &upos, err, errlen);
    return rc;
}
