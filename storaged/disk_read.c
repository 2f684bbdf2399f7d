/*
 * disk_read.c - reading, removing and listing objects in the disk backend.
 *
 * Opening an object checks its frame header (magic, CRC, key, size) before
 * any byte is served; the payload itself is checked against the key by the
 * caller as it streams (routes.c), who calls disk_quarantine on a mismatch.
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "disk_internal.h"
#include "log.h"
#include "num.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Objects up to this size are read with their frame header in one pread
 * when opened, and served from that copy. */
#define PREFETCH_MAX (64 * 1024)

struct store_obj {
    struct disk_store *d;
    struct dfile_ref *ref;
    unsigned file;
    uint64_t offset; /* frame header */
    uint64_t size;
    unsigned char digest[CAS_MAX_DIGEST];
    unsigned char *frame; /* header + payload when size <= PREFETCH_MAX */
    uint32_t sums_crc;    /* from the frame header */
};

int disk_open_obj(struct store *s, const struct cas_key *key, bool touch_it, struct store_obj **out,
                  uint64_t *size, char *err, size_t errlen)
{
    struct disk_store *d = disk_of(s);
    struct store_obj *o = malloc(sizeof(*o));
    if (!o)
        return -ENOMEM;
    bool marked, active;
    struct journal_pos upos;
    pthread_rwlock_rdlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, key->digest);
    struct objtab_entry en;
    if (e == OBJTAB_NONE || !objtab_get(&d->tab, e, &en)) {
        pthread_rwlock_unlock(&d->lock);
        free(o);
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(key, hex);
        snprintf(err, errlen, "object %s not found", hex);
        return -ENOENT;
    }
    o->d = d;
    o->file = en.file;
    o->offset = en.offset;
    o->size = en.size;
    memcpy(o->digest, key->digest, s->algo->digest_len);
    o->ref = d->files[en.file].ref;
    dfile_ref_get(o->ref);
    active = d->gc_active;
    marked = active && (en.flags & OBJTAB_MARKED);
    upos = d->unmark_pos;
    pthread_rwlock_unlock(&d->lock);

    unsigned char hdr[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    size_t want = sizeof(hdr);
    o->frame = NULL;
    if (o->size <= PREFETCH_MAX && (o->frame = malloc(FMT_FRAME_HEADER + o->size)))
        want = FMT_FRAME_HEADER + (size_t)o->size;
    ssize_t n = pread(o->ref->fd, o->frame ? o->frame : hdr, want, (off_t)o->offset);
    const char *why = NULL;
    if (n == (ssize_t)want && o->frame)
        memcpy(hdr, o->frame, sizeof(hdr));
    if (n != (ssize_t)want)
        why = "frame unreadable";
    else if (!fmt_frame_decode(hdr, &fr))
        why = "frame header checksum mismatch";
    else if (fr.size != o->size || memcmp(fr.digest, o->digest, s->algo->digest_len) != 0)
        why = "frame header names another object";
    if (why) {
        disk_quarantine(o, why);
        disk_close_obj(o);
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(key, hex);
        snprintf(err, errlen, "object %s not found (its copy here was corrupt)", hex);
        return -ENOENT;
    }
    o->sums_crc = fr.sums_crc;
    if (touch_it && active) {
        /* Marked: unmark under the write lock, where a racing gc/end may
         * turn out to have removed it (then this read answers 404). Not
         * marked: another request unmarked it; wait for that to be durable. */
        int rc = marked ? disk_use(d, key->digest, USE_SYNC, err, errlen)
                        : disk_sync_unmarks(d, &upos, err, errlen);
        if (rc < 0) {
            disk_close_obj(o);
            return rc;
        }
    }
    *size = o->size;
    *out = o;
    return 0;
}

ssize_t disk_pread(struct store_obj *o, void *buf, size_t len, uint64_t off)
{
    if (off >= o->size)
        return 0;
    if (len > o->size - off)
        len = (size_t)(o->size - off);
    if (o->frame) {
        memcpy(buf, o->frame + FMT_FRAME_HEADER + off, len);
        return (ssize_t)len;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(o->ref->fd, (char *)buf + done, len - done,
                          (off_t)(o->offset + FMT_FRAME_HEADER + off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file is shorter than the index says */
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int disk_block_sums(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block)
{
    uint64_t count = fmt_blocks(o->size);
    uint32_t *t = malloc(count ? count * 4 : 1);
    if (!t)
        return -ENOMEM;
    uint64_t off = o->offset + FMT_FRAME_HEADER + o->size;
    size_t len = (size_t)count * 4, done = 0;
    while (done < len) {
        ssize_t r = pread(o->ref->fd, (char *)t + done, len - done, (off_t)(off + done));
        if (r <= 0) {
            free(t);
            return -EIO;
        }
        done += (size_t)r;
    }
    if (cas_crc32c(0, t, len) != o->sums_crc) {
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(o->digest, o->d->base.algo->digest_len, hex);
        log_warn("object %s: its block checksum table is damaged; reads check the key instead",
                 hex);
        free(t);
        return -EIO;
    }
    *sums = t;
    *n = (size_t)count;
    *block = FMT_BLOCK;
    return 0;
}

void disk_close_obj(struct store_obj *o)
{
    free(o->frame);
    dfile_ref_put(o->ref);
    free(o);
}

void disk_quarantine(struct store_obj *o, const char *why)
{
    disk_take_out(o->d, o->digest, o->file, o->offset, why);
}

int disk_confirm(struct store_obj *o, bool sync, char *err, size_t errlen)
{
    struct disk_store *d = o->d;
    const char *why;
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(o->digest, d->base.algo->digest_len, hex);
    int rc = disk_verify_copy(d, o->ref->fd, o->offset, o->size, o->sums_crc, &why);
    if (rc == -EBADMSG) {
        disk_quarantine(o, why);
        snprintf(err, errlen, "object %s: the copy here was corrupt", hex);
        return -ENOENT;
    }
    if (rc < 0) {
        snprintf(err, errlen, "object %s: cannot read the copy here: %s", hex, strerror(-rc));
        return -EIO;
    }
    /* Durable: its bytes, its index record, and its unmark in a cycle. It
     * may have been removed since it was opened (-ENOENT: store it anew). */
    return disk_use(d, o->digest, sync ? USE_SYNC | USE_COPY : 0, err, errlen);
}

int disk_stat(struct store *s, const struct cas_key *key, uint64_t *size)
{
    struct disk_store *d = disk_of(s);
    struct objtab_entry en;
    pthread_rwlock_rdlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, key->digest);
    bool found = e != OBJTAB_NONE && objtab_get(&d->tab, e, &en);
    if (found)
        *size = en.size;
    pthread_rwlock_unlock(&d->lock);
    return found ? 0 : -ENOENT;
}

/* One page in key order (store.h, objtab.h): the table is scanned in steps
 * of LIST_STEP entries, the read lock taken for each step only, so that a
 * writer waits for one step (about a millisecond), never a whole scan. */
int disk_list(struct store *s, const unsigned char *after, enum store_list_state state,
              uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
              size_t errlen)
{
    struct disk_store *d = disk_of(s);
    objtab_page_start(page, after);
    for (bool end = false; !end;) {
        pthread_rwlock_rdlock(&d->lock);
        if (state == STORE_LIST_GARBAGE && !d->gc_active) {
            page->n = 0; /* no cycle (any more): no garbage */
            page->has_limit = false;
            end = true;
        } else {
            end = objtab_page_scan(page, &d->tab, DISK_LIST_STEP, min_size, max_size, 0,
                                   state == STORE_LIST_GARBAGE ? OBJTAB_MARKED : 0);
        }
        pthread_rwlock_unlock(&d->lock);
    }
    objtab_page_finish(page);
    return 0;
}
