/*
 * s3_core.c - the bottom of the S3 backend (s3_internal.h): what every
 * other S3 file uses and which calls nothing of theirs: object names, the
 * s3-index journal (append, sync, replay, the records' effect on the
 * table), the table and tombstone helpers, and the bucket requests on one
 * object (delete, tombstone marker, ranged GET) with taking a bad or lost
 * copy out of service. Layers, bottom first: s3_client / s3_xml / s3_sums,
 * s3_core, then s3_store (object operations), s3_gc (GC, compaction,
 * scrub) and s3_open (opening, recovery, rebuild) side by side, and
 * s3_backend (the ops table, destroy, the registry entry) on top. Locking
 * rules: s3_store.c's opening comment.
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
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
void s3_object_key(const struct s3_store *st, const unsigned char *digest, char *out, size_t outlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    snprintf(out, outlen, "objects/%s", hex);
}

uint64_t s3_now_s(void)
{
    return (uint64_t)time(NULL);
}

/* ---- the journal ------------------------------------------------------------ */

void s3_record(struct s3_store *st, struct fmt_record *r, int type, const unsigned char *digest)
{
    memset(r, 0, sizeof(*r));
    r->type = (uint8_t)type;
    r->algo = (uint8_t)st->base.algo->id;
    if (digest)
        memcpy(r->digest, digest, st->base.algo->digest_len);
}

static void s3_fault(struct s3_store *st, const char *what, int rc)
{
    int expected = 0;
    if (__atomic_compare_exchange_n(&st->read_only, &expected, 2, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST))
        snprintf(st->read_only_reason, sizeof(st->read_only_reason), "I/O error on %s: %s", what,
                 strerror(-rc));
    log_error("STORE IS NOW READ-ONLY: I/O error on %s in %s/%s: %s; fix the disk and restart",
              what, st->dir, S3_INDEX, strerror(-rc));
}

/* Caller holds st->lock. */
int s3_append(struct s3_store *st, const struct fmt_record *r, size_t n, struct journal_pos *pos,
              char *err, size_t errlen)
{
    int rc = journal_append(&st->journal, r, n, pos);
    if (rc < 0) {
        if (rc != -ENOSPC)
            s3_fault(st, "index append", rc);
        snprintf(err, errlen, "cannot append to %s/%s: %s", st->dir, S3_INDEX, strerror(-rc));
        return rc == -ENOSPC ? -ENOSPC : -EIO;
    }
    return 0;
}

int s3_sync_to(struct s3_store *st, const struct journal_pos *pos, char *err, size_t errlen)
{
    int rc = journal_sync(&st->journal, pos);
    if (rc < 0) {
        s3_fault(st, "index fdatasync", rc);
        snprintf(err, errlen, "%s/%s not durable: %s", st->dir, S3_INDEX, strerror(-rc));
        return -EIO;
    }
    return 0;
}

int s3_index_room(struct s3_store *st, unsigned records, bool removal, char *err, size_t errlen)
{
    pthread_mutex_lock(&st->lock);
    uint64_t objects = st->objects;
    pthread_mutex_unlock(&st->lock);
    uint64_t kept = removal ? 0 : objects * S3_REMOVAL_ROOM_PER_OBJECT + S3_ROOM_MARGIN;
    uint64_t need = (uint64_t)records * FMT_RECORD_SIZE;
    struct stat sb;
    if (!removal && fstat(st->journal.fd, &sb) == 0) {
        /* The room is allocated to s3-index itself (past its end, its size
         * unchanged), as the disk backend preallocates its index: what a
         * DELETE appends then needs no new block, whatever else fills the
         * file system meanwhile. */
        int rc = fallocate(st->journal.fd, FALLOC_FL_KEEP_SIZE, 0,
                           (off_t)((uint64_t)sb.st_size + kept + need));
        if (rc == 0 || (errno != ENOSPC && errno != EDQUOT))
            return 0; /* allocated, or not supported here: the append says */
    } else if (removal) {
        /* Room allocated past the index's end (above), or free blocks. */
        struct statvfs sv;
        if (fstat(st->journal.fd, &sb) < 0 || fstatvfs(st->dirfd, &sv) < 0 ||
            (uint64_t)sb.st_blocks * 512 >= (uint64_t)sb.st_size + need ||
            (uint64_t)sv.f_bavail * sv.f_frsize >= need)
            return 0;
    }
    struct statvfs sv;
    uint64_t avail = fstatvfs(st->dirfd, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_frsize : 0;
    snprintf(err, errlen,
             "%s is full: %" PRIu64 " bytes free for %s, %" PRIu64 " of them kept for removing "
             "the %" PRIu64 " stored objects; nothing changed",
             st->dir, avail, S3_INDEX, kept, objects);
    return -ENOSPC;
}

int s3_refuse_read_only(struct s3_store *st, char *err, size_t errlen)
{
    if (__atomic_load_n(&st->read_only, __ATOMIC_SEQ_CST)) {
        snprintf(err, errlen, "store is read-only%s%s", st->read_only_reason[0] ? ": " : "",
                 st->read_only_reason);
        return -EROFS;
    }
    return 0;
}

/* ---- the table (caller holds st->lock) ------------------------------------------ */

/* Entry of digest that is not being deleted, or OBJTAB_NONE. */
uint32_t s3_find_live(struct s3_store *st, const unsigned char *digest, struct objtab_entry *en)
{
    uint32_t e = objtab_find(&st->tab, digest);
    if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, en) || (en->flags & S3_DELETING))
        return OBJTAB_NONE;
    return e;
}

void s3_unmark(struct s3_store *st, uint32_t e, const struct objtab_entry *en)
{
    objtab_set_flags(&st->tab, e, en->flags & ~OBJTAB_MARKED);
    st->garbage_objects--;
    st->garbage_bytes -= en->size;
}

/* Removes entry e (its bytes are gone from the bucket). */
void s3_table_remove(struct s3_store *st, uint32_t e)
{
    struct objtab_entry en;
    if (!objtab_get(&st->tab, e, &en))
        return;
    if (en.flags & OBJTAB_MARKED && st->gc_active) {
        st->garbage_objects--;
        st->garbage_bytes -= en.size;
    }
    st->objects--;
    st->bytes -= en.size;
    objtab_remove(&st->tab, e);
}

int s3_tomb_set(struct s3_store *st, const unsigned char *digest, unsigned kind, uint64_t when)
{
    return s3_tomb_set_stamp(st, digest, kind,
                             when > TIME_MAX / US_PER_S ? TIME_MAX : when * US_PER_S);
}

int s3_tomb_set_stamp(struct s3_store *st, const unsigned char *digest, unsigned kind,
                      uint64_t stamp)
{
    uint32_t t = objtab_find(&st->tombs, digest);
    struct objtab_entry en;
    if (stamp > TIME_MAX)
        stamp = TIME_MAX;
    if (t != OBJTAB_NONE) {
        /* Of two deletes, the later stamp rules whichever came last. */
        if (kind == TOMB_DELETED && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
            en.offset > stamp)
            stamp = en.offset;
        objtab_remove(&st->tombs, t);
    }
    uint64_t seq = kind == TOMB_DELETED ? ++st->delete_seq : 0;
    return objtab_insert(&st->tombs, digest, 0, stamp, seq, kind) == OBJTAB_NONE ? -ENOMEM : 0;
}

bool s3_tomb_entry_in_force(const struct s3_store *st, const struct objtab_entry *en)
{
    return en->flags == TOMB_DELETED && en->offset / US_PER_S + st->tombstone_ttl > s3_now_s();
}

bool s3_tomb_outranks(struct s3_store *st, const unsigned char *digest, uint64_t stamp)
{
    struct objtab_entry en;
    uint32_t t = objtab_find(&st->tombs, digest);
    return t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && s3_tomb_entry_in_force(st, &en) &&
           en.offset >= stamp;
}

bool s3_tomb_deleted_since(struct s3_store *st, const unsigned char *digest, uint64_t seq)
{
    struct objtab_entry en;
    uint32_t t = objtab_find(&st->tombs, digest);
    return t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
           en.size > seq;
}

void s3_tomb_clear(struct s3_store *st, const unsigned char *digest)
{
    uint32_t t = objtab_find(&st->tombs, digest);
    if (t != OBJTAB_NONE)
        objtab_remove(&st->tombs, t);
}

/* Takes the key's tombstone hold (struct tomb_hold), waiting for another
 * holder to let go. Caller holds st->lock (released while it waits). */
void s3_tomb_hold(struct s3_store *st, struct tomb_hold *h, const unsigned char *digest)
{
    size_t dl = st->base.algo->digest_len;
    for (;;) {
        bool busy = false;
        for (struct tomb_hold *x = st->tomb_holds; x && !busy; x = x->next)
            busy = !memcmp(x->digest, digest, dl);
        if (!busy)
            break;
        pthread_cond_wait(&st->changed, &st->lock);
    }
    memcpy(h->digest, digest, dl);
    h->next = st->tomb_holds;
    st->tomb_holds = h;
}

/* Lets go of hold h (taken by s3_tomb_hold). Caller holds st->lock. */
void s3_tomb_release(struct s3_store *st, struct tomb_hold *h)
{
    for (struct tomb_hold **p = &st->tomb_holds; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            pthread_cond_broadcast(&st->changed);
            return;
        }
}

bool s3_tomb_present(struct s3_store *st, const unsigned char *digest)
{
    struct objtab_entry en;
    uint32_t t = objtab_find(&st->tombs, digest);
    return t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED;
}

/* True while a client's delete of digest refuses copies. */
bool s3_tomb_in_force(struct s3_store *st, const unsigned char *digest)
{
    struct objtab_entry en;
    uint32_t t = objtab_find(&st->tombs, digest);
    return t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && s3_tomb_entry_in_force(st, &en);
}

/* Marks every writer of digest whose upload a delete may have removed. */
void s3_clobber(struct s3_store *st, const unsigned char *digest)
{
    for (struct inflight *i = st->inflight; i; i = i->next)
        if (memcmp(i->digest, digest, st->base.algo->digest_len) == 0)
            i->clobbered = true;
}

/* ---- replay ------------------------------------------------------------------------ */

int s3_apply(struct s3_store *st, const struct fmt_record *r, char *err, size_t errlen)
{
    uint32_t e = objtab_find(&st->tab, r->digest);
    struct objtab_entry en;
    switch (r->type) {
    case REC_HEADER:
        return 0;
    case REC_PUT:
        s3_tomb_clear(st, r->digest);
        if (e != OBJTAB_NONE)
            return 0;
        if (objtab_insert(&st->tab, r->digest, 0, 0, r->size, 0) == OBJTAB_NONE) {
            snprintf(err, errlen, "out of memory replaying %s", S3_INDEX);
            return -ENOMEM;
        }
        st->objects++;
        st->bytes += r->size;
        return 0;
    case REC_DEL:
        if (e != OBJTAB_NONE)
            s3_table_remove(st, e);
        if (r->aux == DEL_CORRUPT)
            return s3_tomb_set(st, r->digest, TOMB_QUARANTINED, r->offset);
        return 0;
    case REC_TOMB:
        /* The stamp is in size; 0 in a record from before stamps. */
        if (r->size)
            return s3_tomb_set_stamp(st, r->digest, r->flags, r->size);
        return s3_tomb_set(st, r->digest, r->flags, r->aux);
    case REC_GC_BEGIN:
        st->gc_active = true;
        st->gc_id = r->aux;
        if (r->aux > st->last_gc_id)
            st->last_gc_id = r->aux;
        st->garbage_objects = st->objects;
        st->garbage_bytes = st->bytes;
        for (uint32_t i = 0; i < st->tab.used; i++)
            if (objtab_get(&st->tab, i, &en))
                objtab_set_flags(&st->tab, i, en.flags | OBJTAB_MARKED);
        return 0;
    case REC_UNMARK:
        if (e != OBJTAB_NONE && objtab_get(&st->tab, e, &en) && (en.flags & OBJTAB_MARKED) &&
            st->gc_active)
            s3_unmark(st, e, &en);
        return 0;
    case REC_GC_END:
    case REC_GC_CANCEL:
        for (uint32_t i = 0; i < st->tab.used; i++)
            if (objtab_get(&st->tab, i, &en) && (en.flags & OBJTAB_MARKED)) {
                /* gc/end recorded a DEL for each object it removed; what is
                 * still marked here was not removed. */
                objtab_set_flags(&st->tab, i, en.flags & ~OBJTAB_MARKED);
            }
        st->gc_active = false;
        st->garbage_objects = st->garbage_bytes = 0;
        if (r->type == REC_GC_END) {
            /* GET /gc's ended_id survives a restart (docs/API.md, gc/end). */
            st->gc_ended_id = r->aux;
            if (r->aux > st->last_gc_id)
                st->last_gc_id = r->aux;
        }
        return 0;
    default:
        return 1; /* unknown: refused by the caller */
    }
}

int s3_write_header(struct s3_store *st, int fd, char *err, size_t errlen)
{
    struct fmt_record r;
    s3_record(st, &r, REC_HEADER, NULL);
    memcpy(r.digest, S3_INDEX_MAGIC, 8);
    r.aux = FMT_INDEX_VERSION;
    unsigned char buf[FMT_RECORD_SIZE];
    fmt_record_encode(&r, buf);
    if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || fdatasync(fd) < 0 ||
        fsync(st->dirfd) < 0) {
        snprintf(err, errlen, "cannot write %s/%s: %s", st->dir, S3_INDEX, strerror(errno));
        return -EIO;
    }
    return 0;
}

/* Reads s3-index into the table. A torn tail (a partial or damaged last
 * record) is cut; a damaged record followed by good ones is refused. */
int s3_replay(struct s3_store *st, int fd, uint64_t *end, char *err, size_t errlen)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    uint64_t size = (uint64_t)sb.st_size, off = 0, bad_at = UINT64_MAX;
    unsigned char buf[FMT_RECORD_SIZE];
    struct fmt_record r;
    /* The index is written whole (rebuild_index: a temporary file renamed
     * into place), so one without its header is damaged, not torn: an empty
     * or cut file would otherwise start an empty store over a full bucket. */
    if (size < FMT_RECORD_SIZE) {
        snprintf(err, errlen,
                 "%s/%s is %" PRIu64 " bytes, shorter than its header: damaged; nothing was "
                 "changed: move it away to rebuild it from the bucket",
                 st->dir, S3_INDEX, size);
        return -EINVAL;
    }
    for (; off + FMT_RECORD_SIZE <= size; off += FMT_RECORD_SIZE) {
        if (pread(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf)) {
            snprintf(err, errlen, "cannot read %s/%s: %s", st->dir, S3_INDEX, strerror(errno));
            return -EIO;
        }
        bool ok = fmt_record_decode(buf, &r);
        if (off == 0 && (!ok || r.type != REC_HEADER || memcmp(r.digest, S3_INDEX_MAGIC, 8) ||
                         r.aux != FMT_INDEX_VERSION)) {
            snprintf(err, errlen,
                     "%s/%s is not an S3 backend index (bad header); nothing was changed: move "
                     "it away to rebuild it from the bucket",
                     st->dir, S3_INDEX);
            return -EINVAL;
        }
        if (ok && r.algo != st->base.algo->id) {
            snprintf(err, errlen, "%s/%s holds %s keys, not %s", st->dir, S3_INDEX,
                     cas_hash_by_id(r.algo) ? cas_hash_by_id(r.algo)->name : "unknown",
                     st->base.algo->name);
            return -EINVAL;
        }
        if (!ok) {
            if (bad_at == UINT64_MAX)
                bad_at = off;
            continue;
        }
        if (bad_at != UINT64_MAX) {
            snprintf(err, errlen,
                     "%s/%s: damaged record at byte %" PRIu64 " followed by good ones; nothing "
                     "was changed: move it away to rebuild it from the bucket",
                     st->dir, S3_INDEX, bad_at);
            return -EINVAL;
        }
        int rc = s3_apply(st, &r, err, errlen);
        if (rc == 1) {
            snprintf(err, errlen, "%s/%s: unknown record type %u at byte %" PRIu64, st->dir,
                     S3_INDEX, r.type, off);
            return -EINVAL;
        }
        if (rc < 0)
            return rc;
    }
    uint64_t good = bad_at != UINT64_MAX ? bad_at : off;
    if (good < size) {
        log_warn("%s/%s: cutting a torn tail of %" PRIu64 " bytes", st->dir, S3_INDEX, size - good);
        if (ftruncate(fd, (off_t)good) < 0 || fdatasync(fd) < 0) {
            snprintf(err, errlen, "cannot cut %s/%s: %s", st->dir, S3_INDEX, strerror(errno));
            return -EIO;
        }
    }
    *end = good;
    return 0;
}

/* ---- bucket helpers ------------------------------------------------------------------ */

/* DELETE objects/<hex>: 0 when gone (204, 200 or 404), else -EIO with a
 * message; then its block table, best effort (the object first: a table
 * without its object is harmless, see s3_sums.c). */
int s3_bucket_delete(struct s3_store *st, const unsigned char *digest, uint64_t size, char *err,
                     size_t errlen)
{
    char key[96];
    s3_object_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "DELETE", .key = key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 204 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    if (rc == 0)
        s3_sums_delete(st, digest, size);
    return rc < 0 ? -EIO : 0;
}

int s3_bucket_tomb(struct s3_store *st, const unsigned char *digest, bool put, uint64_t stamp,
                   char *err, size_t errlen)
{
    char hex[CAS_MAX_HEX + 1], key[96], body[32] = "";
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    snprintf(key, sizeof(key), "tombs/%s.deleted", hex);
    /* The body keeps the delete's stamp, so that a tombstone rebuilt from
     * the bucket (a lost --dir) orders writes as the delete did. */
    if (put && stamp)
        snprintf(body, sizeof(body), "%" PRIu64 "\n", stamp);
    struct s3_req rq = {
        .method = put ? "PUT" : "DELETE", .key = key, .body = body, .body_len = strlen(body)};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 &&
        (put ? rs.status != 200 : (rs.status != 204 && rs.status != 200 && rs.status != 404))) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc < 0 ? -EIO : 0;
}

int s3_tomb_stamp_parse(const char *body, size_t len, uint64_t *stamp)
{
    *stamp = 0;
    if (len && body[len - 1] == '\n')
        len--;
    if (len == 0)
        return 0; /* written before the stamp was kept */
    uint64_t v = 0;
    if (cas_parse_u64_n(body, len, &v) < 0 || v == 0 || v > TIME_MAX)
        return -EINVAL;
    *stamp = v;
    return 0;
}

int s3_bucket_tomb_stamp(struct s3_store *st, const char *key, uint64_t *stamp, char *err,
                         size_t errlen)
{
    char body[S3_TOMB_BODY_MAX];
    *stamp = 0;
    struct s3_req rq = {.method = "GET", .key = key, .out = body, .out_cap = sizeof(body)};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 404) {
        rc = -ENOENT; /* removed meanwhile (a client stored the key again) */
    } else if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    } else if (rc == 0 && s3_tomb_stamp_parse(body, rs.out_len, stamp) < 0) {
        log_warn("s3: %s holds no stamp this version wrote (%zu bytes): the tombstone counts "
                 "from now",
                 key, rs.out_len);
        *stamp = 0;
    }
    s3_resp_free(&rs);
    return rc;
}

/* The bucket no longer has an object the index lists (a crash between a
 * bucket DELETE and its record, or someone else's delete): take it out of
 * service like a corrupt copy, so balancers restore it from a replica. */
void s3_take_out(struct s3_store *st, const unsigned char *digest, bool missing)
{
    struct journal_pos pos;
    struct fmt_record r[2];
    char err[256];
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    /* Not an entry being deleted (its DEL follows) or a placeholder of an
     * upload being removed (s3_store.c, undo_upload): the bucket lost
     * nothing there, and the delete's tombstone must stay as it is. */
    uint32_t e = s3_find_live(st, digest, &en);
    int rc = -ENOENT;
    if (e != OBJTAB_NONE) {
        s3_record(st, &r[0], REC_DEL, digest);
        r[0].aux = DEL_CORRUPT;
        r[0].offset = s3_now_s();
        rc = s3_append(st, r, 1, &pos, err, sizeof(err));
        if (rc == 0) {
            s3_table_remove(st, e);
            s3_tomb_set(st, digest, TOMB_QUARANTINED, s3_now_s());
            if (missing)
                st->lost++;
            st->corrupt_found++;
        }
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        s3_sync_to(st, &pos, err, sizeof(err));
}

void s3_lost(struct s3_store *st, const unsigned char *digest)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    log_error("s3: object %s is in the index but not in the bucket: taken out of service", hex);
    s3_take_out(st, digest, true);
}

/* GET of [off, off + len) into buf; whole: that is the whole object (then
 * a plain GET, no Range). len bytes, or a negative errno: -ENOENT the
 * bucket has no such object; -EBADMSG the bucket's object is not the size
 * the index records (a complete answer, by its own framing, with fewer
 * bytes than asked for, or 416 for a range inside the recorded size): a bad
 * copy for good, to be taken out of service; -EIO anything else (a body
 * cut short in transit is a transfer error, retried by s3_do). */
ssize_t s3_bucket_range(struct s3_store *st, const unsigned char *digest, char *buf, size_t len,
                        uint64_t off, bool whole, char *err, size_t errlen)
{
    char key[96];
    s3_object_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "GET",
                        .key = key,
                        .range_off = off,
                        .range_len = whole ? 0 : len,
                        .out = buf,
                        .out_cap = len};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    ssize_t got = -EIO;
    if (rc == 0 && rs.status == 404) {
        s3_status_error(&rq, &rs, err, errlen);
        got = -ENOENT;
    } else if (rc == 0 && rs.status == 416) {
        s3_status_error(&rq, &rs, err, errlen);
        got = -EBADMSG; /* the object ends before off */
    } else if (rc == 0 && rs.status != 206 && !(rs.status == 200 && off == 0)) {
        s3_status_error(&rq, &rs, err, errlen);
    } else if (rc == 0 && rs.out_len != len) {
        /* libcurl checked the body against its Content-Length: this is the
         * whole answer, and the object is shorter than the index says. */
        snprintf(err, errlen,
                 "GET %s: the bucket's object ends after %zu of the %zu bytes asked for "
                 "(it is not the size the index records)",
                 key, rs.out_len, len);
        got = -EBADMSG;
    } else if (rc == 0) {
        got = (ssize_t)len;
    }
    s3_resp_free(&rs);
    return got;
}

void s3_quarantine_digest(struct s3_store *st, const unsigned char *digest, const char *why)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    log_error("s3: object %s is corrupt (%s): taken out of service", hex, why);
    s3_take_out(st, digest, false);
}
