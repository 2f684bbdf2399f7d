/*
 * s3_store.c - the S3 backend (s3.h): the store_ops of an S3-compatible
 * bucket, with the node's state in a local journal (s3-index).
 *
 * Locking: one mutex (st->lock) guards the object table, the tombstones,
 * the GC state and the journal's order; bucket requests are never made
 * under it. st->gc_lock serialises gc/begin, gc/end and gc/cancel.
 *
 * Deletion and concurrent writes of the same key: a delete (client DELETE,
 * drop, or gc/end) first flags the entry DELETING (reads and marks then see
 * it as absent), deletes objects/<hex> in the bucket, then removes the
 * entry and records the DEL. A write registers its key before its upload
 * becomes visible and checks afterwards whether a delete of that key ran
 * meanwhile ("clobbered"): then the bytes it uploaded may be gone, and it
 * uploads them again (a body in memory) or fails (a multipart upload,
 * whose parts are gone): never an index entry for bytes not in the bucket.
 *
 * Records (format.h, the disk index's 64-byte records; file/offset unused):
 * HEADER (magic "CASS3IDX"), PUT (digest, size), DEL (aux reason), TOMB,
 * GC_BEGIN / UNMARK / GC_END / GC_CANCEL. Replay rebuilds the table.
 */
#define _GNU_SOURCE
#include "s3.h"
#include "buf.h"
#include "format.h"
#include "journal.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "num.h"
#include "objtab.h"
#include "s3_client.h"
#include "s3_xml.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S3_INDEX "s3-index"
#define S3_INDEX_MAGIC "CASS3IDX"
#define S3_NODE_KEY "cas-node"
#define S3_DELETING 2u /* objtab flag: a delete of this key is under way */
#define S3_READ_WINDOW (4u << 20)
#define S3_COPY_MAX (5ull << 30) /* CopyObject's limit (POST bodies above one part) */
#define S3_TOMBSTONE_TTL (7u * 24 * 3600)
#define TIME_MAX ((UINT64_C(1) << 56) - 1)

struct inflight {
    unsigned char digest[CAS_MAX_DIGEST];
    bool clobbered;
    struct inflight *next;
};

struct s3_store {
    struct store base;
    struct s3_client cli;
    char *dir;
    int dirfd, lockfd;
    struct journal journal;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* an entry stopped being DELETING */
    pthread_mutex_t gc_lock;
    struct objtab tab;   /* digest -> size, flags MARKED | DELETING */
    struct objtab tombs; /* digest -> offset = unix seconds, flags = enum fmt_tomb_kind */
    struct inflight *inflight;
    bool gc_active;
    uint64_t gc_id, last_gc_id;
    uint64_t objects, bytes, garbage_objects, garbage_bytes, reserved;
    uint64_t capacity, max_object_size, tombstone_ttl;
    int read_only; /* 0 no, 1 --read-only, 2 faulted */
    char read_only_reason[200];
    uint64_t corrupt_found, lost, compactions;
    /* scrub */
    pthread_t scrub_thread;
    bool scrub_running, scrub_stop;
    pthread_mutex_t scrub_mu;
    pthread_cond_t scrub_cv;
    uint64_t scrub_rate, scrub_bytes, scrub_objects, scrub_corrupt, scrub_passes, scrub_last_pass;
};

struct store_put {
    struct s3_store *st;
    struct cas_hash *h;
    bool have_expect, copy;
    struct cas_key expect;
    uint64_t size_hint, received;
    char *buf;
    size_t len, cap;
    bool multipart;
    char upkey[96]; /* the key the multipart upload goes to */
    char upload_id[S3_XML_TOKEN_MAX + 1];
    unsigned parts;
    struct cas_buf complete; /* the CompleteMultipartUpload body, part by part */
};

struct store_obj {
    struct s3_store *st;
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t size;
    char *win; /* bytes [win_off, win_off + win_len) of the object */
    uint64_t win_off;
    size_t win_len;
};

static struct s3_store *s3_of(struct store *s)
{
    return (struct s3_store *)s;
}

static void object_key(const struct s3_store *st, const unsigned char *digest, char *out,
                       size_t outlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    snprintf(out, outlen, "objects/%s", hex);
}

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

/* ---- the journal ------------------------------------------------------------ */

static void record(struct s3_store *st, struct fmt_record *r, int type, const unsigned char *digest)
{
    memset(r, 0, sizeof(*r));
    r->type = (uint8_t)type;
    r->algo = (uint8_t)st->base.algo->id;
    if (digest)
        memcpy(r->digest, digest, st->base.algo->digest_len);
}

static void fault(struct s3_store *st, const char *what, int rc)
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
static int append(struct s3_store *st, const struct fmt_record *r, size_t n,
                  struct journal_pos *pos, char *err, size_t errlen)
{
    int rc = journal_append(&st->journal, r, n, pos);
    if (rc < 0) {
        if (rc != -ENOSPC)
            fault(st, "index append", rc);
        snprintf(err, errlen, "cannot append to %s/%s: %s", st->dir, S3_INDEX, strerror(-rc));
        return rc == -ENOSPC ? -ENOSPC : -EIO;
    }
    return 0;
}

static int sync_to(struct s3_store *st, const struct journal_pos *pos, char *err, size_t errlen)
{
    int rc = journal_sync(&st->journal, pos);
    if (rc < 0) {
        fault(st, "index fdatasync", rc);
        snprintf(err, errlen, "%s/%s not durable: %s", st->dir, S3_INDEX, strerror(-rc));
        return -EIO;
    }
    return 0;
}

static int refuse_read_only(struct s3_store *st, char *err, size_t errlen)
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
static uint32_t find_live(struct s3_store *st, const unsigned char *digest, struct objtab_entry *en)
{
    uint32_t e = objtab_find(&st->tab, digest);
    if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, en) || (en->flags & S3_DELETING))
        return OBJTAB_NONE;
    return e;
}

static void unmark(struct s3_store *st, uint32_t e, const struct objtab_entry *en)
{
    objtab_set_flags(&st->tab, e, en->flags & ~OBJTAB_MARKED);
    st->garbage_objects--;
    st->garbage_bytes -= en->size;
}

/* Removes entry e (its bytes are gone from the bucket). */
static void table_remove(struct s3_store *st, uint32_t e)
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

static int tomb_set(struct s3_store *st, const unsigned char *digest, unsigned kind, uint64_t when)
{
    uint32_t t = objtab_find(&st->tombs, digest);
    if (when > TIME_MAX)
        when = TIME_MAX;
    if (t != OBJTAB_NONE)
        objtab_remove(&st->tombs, t);
    return objtab_insert(&st->tombs, digest, 0, when, 0, kind) == OBJTAB_NONE ? -ENOMEM : 0;
}

static void tomb_clear(struct s3_store *st, const unsigned char *digest)
{
    uint32_t t = objtab_find(&st->tombs, digest);
    if (t != OBJTAB_NONE)
        objtab_remove(&st->tombs, t);
}

/* True while a client's delete of digest refuses copies. */
static bool tomb_in_force(struct s3_store *st, const unsigned char *digest)
{
    struct objtab_entry en;
    uint32_t t = objtab_find(&st->tombs, digest);
    return t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED &&
           en.offset + st->tombstone_ttl > now_s();
}

/* Marks every writer of digest whose upload a delete may have removed. */
static void clobber(struct s3_store *st, const unsigned char *digest)
{
    for (struct inflight *i = st->inflight; i; i = i->next)
        if (memcmp(i->digest, digest, st->base.algo->digest_len) == 0)
            i->clobbered = true;
}

static void inflight_remove(struct s3_store *st, struct inflight *f)
{
    for (struct inflight **p = &st->inflight; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            return;
        }
}

/* ---- replay ------------------------------------------------------------------------ */

static int apply(struct s3_store *st, const struct fmt_record *r, char *err, size_t errlen)
{
    uint32_t e = objtab_find(&st->tab, r->digest);
    struct objtab_entry en;
    switch (r->type) {
    case REC_HEADER:
        return 0;
    case REC_PUT:
        tomb_clear(st, r->digest);
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
            table_remove(st, e);
        if (r->aux == DEL_CORRUPT)
            return tomb_set(st, r->digest, TOMB_QUARANTINED, r->offset);
        return 0;
    case REC_TOMB:
        return tomb_set(st, r->digest, r->flags, r->aux);
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
            unmark(st, e, &en);
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
        return 0;
    default:
        return 1; /* unknown: refused by the caller */
    }
}

static int write_header(struct s3_store *st, int fd, char *err, size_t errlen)
{
    struct fmt_record r;
    record(st, &r, REC_HEADER, NULL);
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
static int replay(struct s3_store *st, int fd, uint64_t *end, char *err, size_t errlen)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    uint64_t size = (uint64_t)sb.st_size, off = 0, bad_at = UINT64_MAX;
    unsigned char buf[FMT_RECORD_SIZE];
    struct fmt_record r;
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
        int rc = apply(st, &r, err, errlen);
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
        log_warn("%s/%s: cutting a torn tail of %" PRIu64 " bytes", st->dir, S3_INDEX,
                 size - good);
        if (ftruncate(fd, (off_t)good) < 0 || fdatasync(fd) < 0) {
            snprintf(err, errlen, "cannot cut %s/%s: %s", st->dir, S3_INDEX, strerror(errno));
            return -EIO;
        }
    }
    *end = good;
    return 0;
}

/* ---- bucket helpers ------------------------------------------------------------------ */

/* DELETE objects/<hex>: 0 when gone (204, 200 or 404), else -EIO with a message. */
static int bucket_delete(struct s3_store *st, const unsigned char *digest, char *err,
                         size_t errlen)
{
    char key[96];
    object_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "DELETE", .key = key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 204 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc < 0 ? -EIO : 0;
}

/* Flags entry e DELETING, deletes it in the bucket, then removes it and
 * records del (a REC_DEL, plus extra records, appended with it). Caller
 * holds st->lock, which is released during the bucket request. */
static int delete_entry(struct s3_store *st, uint32_t e, const unsigned char *digest,
                        struct journal_pos *pos, char *err, size_t errlen)
{
    struct objtab_entry en;
    objtab_get(&st->tab, e, &en);
    objtab_set_flags(&st->tab, e, en.flags | S3_DELETING);
    pthread_mutex_unlock(&st->lock);
    int rc = bucket_delete(st, digest, err, errlen);
    pthread_mutex_lock(&st->lock);
    e = objtab_find(&st->tab, digest);
    if (rc < 0) {
        if (e != OBJTAB_NONE && objtab_get(&st->tab, e, &en))
            objtab_set_flags(&st->tab, e, en.flags & ~S3_DELETING);
        pthread_cond_broadcast(&st->changed);
        return rc;
    }
    clobber(st, digest);
    struct fmt_record r;
    record(st, &r, REC_DEL, digest);
    r.aux = DEL_CLIENT;
    rc = append(st, &r, 1, pos, err, errlen);
    if (e != OBJTAB_NONE)
        table_remove(st, e);
    pthread_cond_broadcast(&st->changed);
    return rc;
}

/* ---- writes ---------------------------------------------------------------------------- */

static int s3_put_begin(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                        struct store_put **out, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    if (st->max_object_size && size_hint != UINT64_MAX && size_hint > st->max_object_size) {
        snprintf(err, errlen, "object of %" PRIu64 " bytes is over the limit of %" PRIu64,
                 size_hint, st->max_object_size);
        return -EFBIG;
    }
    if (size_hint != UINT64_MAX) {
        pthread_mutex_lock(&st->lock);
        bool full = st->bytes + st->reserved + size_hint > st->capacity;
        pthread_mutex_unlock(&st->lock);
        if (full) {
            snprintf(err, errlen,
                     "store full: %" PRIu64 " bytes do not fit in --capacity %" PRIu64
                     " (%" PRIu64 " stored)",
                     size_hint, st->capacity, st->bytes);
            return -ENOSPC;
        }
    }
    struct store_put *p = calloc(1, sizeof(*p));
    if (!p || !(p->h = cas_hash_new(s->algo))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->st = st;
    p->size_hint = size_hint;
    if (expect) {
        p->have_expect = true;
        p->expect = *expect;
    }
    cas_buf_init(&p->complete);
    *out = p;
    return 0;
}

static void put_free(struct store_put *p)
{
    cas_hash_free(p->h);
    free(p->buf);
    cas_buf_free(&p->complete);
    free(p);
}

static void multipart_abort(struct store_put *p)
{
    if (!p->multipart)
        return;
    char q[S3_XML_TOKEN_MAX * 3 + 32], id[S3_XML_TOKEN_MAX * 3 + 1], err[256];
    s3_query_escape(p->upload_id, id, sizeof(id));
    snprintf(q, sizeof(q), "uploadId=%s", id);
    struct s3_req rq = {.method = "DELETE", .key = p->upkey, .query = q};
    struct s3_resp rs;
    if (s3_do(&p->st->cli, &rq, &rs, err, sizeof(err)) < 0 ||
        (rs.status != 204 && rs.status != 200 && rs.status != 404)) {
        if (!err[0] || rs.status)
            s3_status_error(&rq, &rs, err, sizeof(err));
        log_warn("s3: cannot abort the upload of %s (the bucket's lifecycle rules must clean "
                 "it up): %s",
                 p->upkey, err);
    }
    s3_resp_free(&rs);
    p->multipart = false;
}

static void s3_put_abort(struct store_put *p)
{
    multipart_abort(p);
    put_free(p);
}

static int s3_put_copy(struct store_put *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    p->copy = true;
    return 0;
}

/* Sends the buffered part (multipart upload; starts it first when needed). */
static int flush_part(struct store_put *p, char *err, size_t errlen)
{
    struct s3_store *st = p->st;
    struct s3_resp rs;
    if (!p->multipart) {
        if (p->have_expect) {
            object_key(st, p->expect.digest, p->upkey, sizeof(p->upkey));
        } else {
            /* POST: the key is known only at the end; upload under tmp/ and
             * copy to objects/ once the digest is known. */
            unsigned char rnd[12];
            char hex[25];
            if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
                snprintf(err, errlen, "getrandom: %s", strerror(errno));
                return -EIO;
            }
            cas_hex_encode(rnd, sizeof(rnd), hex);
            snprintf(p->upkey, sizeof(p->upkey), "tmp/%s", hex);
        }
        struct s3_req rq = {.method = "POST", .key = p->upkey, .query = "uploads="};
        int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
        if (rc == 0 && rs.status != 200) {
            s3_status_error(&rq, &rs, err, errlen);
            rc = -EIO;
        }
        if (rc == 0)
            rc = s3_xml_upload_id(rs.body.data ? rs.body.data : "", rs.body.len, p->upload_id,
                                  sizeof(p->upload_id), err, errlen) < 0
                     ? -EIO
                     : 0;
        s3_resp_free(&rs);
        if (rc < 0)
            return rc;
        p->multipart = true;
        cas_buf_puts(&p->complete, "<CompleteMultipartUpload>");
    }
    char q[S3_XML_TOKEN_MAX * 3 + 64], id[S3_XML_TOKEN_MAX * 3 + 1];
    s3_query_escape(p->upload_id, id, sizeof(id));
    unsigned part = p->parts + 1;
    snprintf(q, sizeof(q), "partNumber=%u&uploadId=%s", part, id);
    struct s3_req rq = {.method = "PUT", .key = p->upkey, .query = q, .body = p->buf,
                        .body_len = p->len};
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    if (rc == 0 && !rs.etag[0]) {
        snprintf(err, errlen, "the bucket answered part %u of %s without an ETag", part,
                 p->upkey);
        rc = -EIO;
    }
    if (rc == 0) {
        /* ETags are quoted hex digests: nothing to escape in XML. */
        cas_buf_printf(&p->complete, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                       part, rs.etag);
        p->parts = part;
        p->len = 0;
    }
    s3_resp_free(&rs);
    return rc;
}

static int s3_put_write(struct store_put *p, const void *data, size_t len, char *err,
                        size_t errlen)
{
    struct s3_store *st = p->st;
    if (p->size_hint != UINT64_MAX && p->received + len > p->size_hint) {
        snprintf(err, errlen, "body longer than its Content-Length of %" PRIu64, p->size_hint);
        return -EINVAL;
    }
    if (st->max_object_size && p->received + len > st->max_object_size) {
        snprintf(err, errlen, "object over the limit of %" PRIu64 " bytes", st->max_object_size);
        return -EFBIG;
    }
    if (p->received + len > st->capacity) {
        snprintf(err, errlen, "store full: the body is larger than --capacity %" PRIu64,
                 st->capacity);
        return -ENOSPC;
    }
    cas_hash_update(p->h, data, len);
    p->received += len;
    const char *d = data;
    while (len) {
        if (!p->buf) {
            /* Bounded: one part; a body known to be smaller gets its size. */
            p->cap = p->size_hint < S3_PART_SIZE ? (size_t)p->size_hint : S3_PART_SIZE;
            if (!(p->buf = malloc(p->cap ? p->cap : 1))) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
        }
        if (p->len == p->cap) { /* full, and more to come: not the last part */
            int rc = flush_part(p, err, errlen);
            if (rc < 0)
                return rc;
        }
        size_t n = p->cap - p->len < len ? p->cap - p->len : len;
        memcpy(p->buf + p->len, d, n);
        p->len += n;
        d += n;
        len -= n;
    }
    return 0;
}

/* Makes the verified bytes visible under objects/<hex>: one PUT from
 * memory, or the multipart upload's completion (plus a copy from tmp/ for
 * a POST). 0, or -EIO with a message. */
static int publish(struct store_put *p, const unsigned char *digest, char *err, size_t errlen)
{
    struct s3_store *st = p->st;
    char key[96];
    object_key(st, digest, key, sizeof(key));
    struct s3_resp rs;
    int rc;
    if (!p->multipart) {
        char sha[CAS_MAX_HEX + 1];
        const char *payload = NULL;
        if (strcmp(st->base.algo->name, "sha256") == 0) {
            cas_hex_encode(digest, st->base.algo->digest_len, sha);
            payload = sha; /* the key is the payload's SHA-256: signed for free */
        }
        struct s3_req rq = {.method = "PUT", .key = key, .body = p->buf ? p->buf : "",
                            .body_len = p->len, .payload_sha256 = payload};
        rc = s3_do(&st->cli, &rq, &rs, err, errlen);
        if (rc == 0 && rs.status != 200) {
            s3_status_error(&rq, &rs, err, errlen);
            rc = -EIO;
        }
        s3_resp_free(&rs);
        return rc < 0 ? -EIO : 0;
    }
    if (p->len && (rc = flush_part(p, err, errlen)) < 0)
        return rc;
    cas_buf_puts(&p->complete, "</CompleteMultipartUpload>");
    char q[S3_XML_TOKEN_MAX * 3 + 32], id[S3_XML_TOKEN_MAX * 3 + 1];
    s3_query_escape(p->upload_id, id, sizeof(id));
    snprintf(q, sizeof(q), "uploadId=%s", id);
    struct s3_req rq = {.method = "POST", .key = p->upkey, .query = q, .body = p->complete.data,
                        .body_len = p->complete.len};
    rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    } else if (rc == 0) {
        rc = s3_xml_complete(rs.body.data ? rs.body.data : "", rs.body.len, err, errlen);
    }
    s3_resp_free(&rs);
    if (rc < 0)
        return -EIO;
    p->multipart = false; /* completed: nothing to abort any more */
    if (strcmp(p->upkey, key) == 0)
        return 0;
    /* POST: copy tmp/<random> to objects/<hex>, then remove the temporary. */
    char src[160];
    snprintf(src, sizeof(src), "x-amz-copy-source: /%s/%s", st->cli.bucket, p->upkey);
    struct s3_req cp = {.method = "PUT", .key = key, .header = src};
    rc = s3_do(&st->cli, &cp, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&cp, &rs, err, errlen);
        rc = -EIO;
    } else if (rc == 0) {
        char code[128], msg[256];
        if (s3_xml_error(rs.body.data ? rs.body.data : "", rs.body.len, code, sizeof(code), msg,
                         sizeof(msg)) != 0) {
            snprintf(err, errlen, "copying %s to %s: %s %s", p->upkey, key, code, msg);
            rc = -EIO;
        }
    }
    s3_resp_free(&rs);
    struct s3_req del = {.method = "DELETE", .key = p->upkey};
    char derr[256];
    if (s3_do(&st->cli, &del, &rs, derr, sizeof(derr)) < 0 ||
        (rs.status != 204 && rs.status != 200))
        log_warn("s3: cannot remove the temporary %s: %s", p->upkey, derr);
    s3_resp_free(&rs);
    return rc < 0 ? -EIO : 0;
}

static int s3_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created,
                         char *err, size_t errlen)
{
    struct s3_store *st = p->st;
    unsigned char digest[CAS_MAX_DIGEST];
    size_t dl = st->base.algo->digest_len;
    cas_hash_final(p->h, digest);
    int rc = 0;
    if (p->size_hint != UINT64_MAX && p->received != p->size_hint) {
        snprintf(err, errlen, "body of %" PRIu64 " bytes, not its Content-Length of %" PRIu64,
                 p->received, p->size_hint);
        rc = -EINVAL;
        goto out;
    }
    if (p->have_expect && memcmp(digest, p->expect.digest, dl) != 0) {
        char got[CAS_MAX_HEX + 1], want[CAS_MAX_HEX + 1];
        cas_hex_encode(digest, dl, got);
        cas_hex_encode(p->expect.digest, dl, want);
        snprintf(err, errlen, "digest mismatch: the body hashes to %s, not %s (nothing stored)",
                 got, want);
        rc = -EBADMSG;
        goto out;
    }
    if (p->multipart && !p->have_expect && p->received > S3_COPY_MAX) {
        snprintf(err, errlen,
                 "a POST body over %llu bytes cannot be stored by the S3 backend (CopyObject's "
                 "limit): PUT it under its key",
                 (unsigned long long)S3_COPY_MAX);
        rc = -EFBIG;
        goto out;
    }
    key->algo = st->base.algo;
    memcpy(key->digest, digest, dl);
    struct inflight me = {.clobbered = false};
    memcpy(me.digest, digest, dl);
    pthread_mutex_lock(&st->lock);
    if (p->copy && tomb_in_force(st, digest)) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "refused: the key was deleted here by a client");
        rc = -ECANCELED;
        goto out;
    }
    if (st->bytes + st->reserved + p->received > st->capacity &&
        find_live(st, digest, &(struct objtab_entry){0}) == OBJTAB_NONE) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "store full: %" PRIu64 " bytes do not fit in --capacity %" PRIu64,
                 p->received, st->capacity);
        rc = -ENOSPC;
        goto out;
    }
    st->reserved += p->received;
    for (int attempt = 0;; attempt++) {
        /* A delete of this key in progress would remove what we upload. */
        for (;;) {
            uint32_t e = objtab_find(&st->tab, digest);
            struct objtab_entry en;
            if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en) || !(en.flags & S3_DELETING))
                break;
            pthread_cond_wait(&st->changed, &st->lock);
        }
        me.clobbered = false;
        me.next = st->inflight;
        st->inflight = &me;
        bool mp = p->multipart;
        pthread_mutex_unlock(&st->lock);
        rc = publish(p, digest, err, errlen);
        pthread_mutex_lock(&st->lock);
        inflight_remove(st, &me);
        if (rc < 0 || !me.clobbered)
            break;
        if (mp || attempt >= 3) {
            snprintf(err, errlen, "a delete of this key ran during the upload; try again");
            rc = -EIO;
            break;
        }
    }
    st->reserved -= p->received;
    if (rc < 0) {
        pthread_mutex_unlock(&st->lock);
        goto out;
    }
    struct journal_pos pos;
    struct objtab_entry en;
    uint32_t e = find_live(st, digest, &en);
    struct fmt_record r;
    if (e != OBJTAB_NONE) {
        *created = false;
        if (st->gc_active && (en.flags & OBJTAB_MARKED)) {
            record(st, &r, REC_UNMARK, digest);
            rc = append(st, &r, 1, &pos, err, errlen);
            if (rc == 0)
                unmark(st, e, &en);
        } else {
            journal_now(&st->journal, &pos);
        }
    } else {
        *created = true;
        record(st, &r, REC_PUT, digest);
        r.size = p->received;
        rc = append(st, &r, 1, &pos, err, errlen);
        if (rc == 0) {
            if (objtab_insert(&st->tab, digest, 0, 0, p->received, 0) == OBJTAB_NONE) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            } else {
                st->objects++;
                st->bytes += p->received;
                tomb_clear(st, digest);
            }
        }
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0 && sync)
        rc = sync_to(st, &pos, err, errlen);
out:
    if (rc < 0)
        multipart_abort(p);
    put_free(p);
    return rc;
}

/* ---- reads -------------------------------------------------------------------------------- */

/* Unmarks entry e in the active cycle, appending the record; caller holds
 * the lock. true when a record was appended (then sync to *pos). */
static bool touch_entry(struct s3_store *st, uint32_t e, struct objtab_entry *en,
                        struct journal_pos *pos, int *rc, char *err, size_t errlen)
{
    if (!st->gc_active || !(en->flags & OBJTAB_MARKED))
        return false;
    struct fmt_record r;
    record(st, &r, REC_UNMARK, en->digest);
    *rc = append(st, &r, 1, pos, err, errlen);
    if (*rc == 0)
        unmark(st, e, en);
    return *rc == 0;
}

static int s3_open_obj(struct store *s, const struct cas_key *key, bool touch,
                       struct store_obj **out, uint64_t *size, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    struct objtab_entry en;
    struct journal_pos pos;
    int rc = 0;
    bool synced = false;
    pthread_mutex_lock(&st->lock);
    uint32_t e = find_live(st, key->digest, &en);
    if (e == OBJTAB_NONE) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "no such object");
        return -ENOENT;
    }
    if (touch)
        synced = touch_entry(st, e, &en, &pos, &rc, err, errlen);
    uint64_t sz = en.size;
    pthread_mutex_unlock(&st->lock);
    if (rc == 0 && synced)
        rc = sync_to(st, &pos, err, errlen);
    if (rc < 0)
        return rc;
    struct store_obj *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    o->st = st;
    memcpy(o->digest, key->digest, s->algo->digest_len);
    o->size = sz;
    *size = sz;
    *out = o;
    return 0;
}

/* The bucket no longer has an object the index lists (a crash between a
 * bucket DELETE and its record, or someone else's delete): take it out of
 * service like a corrupt copy, so balancers restore it from a replica. */
static void take_out(struct s3_store *st, const unsigned char *digest, bool missing)
{
    struct journal_pos pos;
    struct fmt_record r[2];
    char err[256];
    pthread_mutex_lock(&st->lock);
    uint32_t e = objtab_find(&st->tab, digest);
    int rc = -ENOENT;
    if (e != OBJTAB_NONE) {
        record(st, &r[0], REC_DEL, digest);
        r[0].aux = DEL_CORRUPT;
        r[0].offset = now_s();
        rc = append(st, r, 1, &pos, err, sizeof(err));
        if (rc == 0) {
            table_remove(st, e);
            tomb_set(st, digest, TOMB_QUARANTINED, now_s());
            if (missing)
                st->lost++;
            st->corrupt_found++;
        }
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        sync_to(st, &pos, err, sizeof(err));
}

static void lost(struct s3_store *st, const unsigned char *digest)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    log_error("s3: object %s is in the index but not in the bucket: taken out of service", hex);
    take_out(st, digest, true);
}

/* GET of [off, off + len) into buf; whole: that is the whole object (then
 * a plain GET, no Range). len bytes, or -EIO (-ENOENT: the bucket has no
 * such object). More or fewer bytes than asked for are an error. */
static ssize_t bucket_range(struct s3_store *st, const unsigned char *digest, char *buf,
                            size_t len, uint64_t off, bool whole, char *err, size_t errlen)
{
    char key[96];
    object_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "GET", .key = key, .range_off = off,
                        .range_len = whole ? 0 : len, .out = buf, .out_cap = len};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    ssize_t got = -EIO;
    if (rc == 0 && rs.status == 404) {
        s3_status_error(&rq, &rs, err, errlen);
        got = -ENOENT;
    } else if (rc == 0 && rs.status != 206 && !(rs.status == 200 && off == 0)) {
        s3_status_error(&rq, &rs, err, errlen);
    } else if (rc == 0 && rs.out_len != len) {
        snprintf(err, errlen, "GET %s: the bucket sent %zu bytes of the %zu asked for", key,
                 rs.out_len, len);
    } else if (rc == 0) {
        got = (ssize_t)len;
    }
    s3_resp_free(&rs);
    return got;
}

static ssize_t s3_pread(struct store_obj *o, void *buf, size_t len, uint64_t off)
{
    if (off >= o->size)
        return 0;
    if (len > o->size - off)
        len = (size_t)(o->size - off);
    if (!len)
        return 0;
    if (off >= o->win_off && off + len <= o->win_off + o->win_len) {
        memcpy(buf, o->win + (off - o->win_off), len);
        return (ssize_t)len;
    }
    char err[512];
    ssize_t n;
    if (len >= S3_READ_WINDOW) {
        n = bucket_range(o->st, o->digest, buf, len, off, off == 0 && len == o->size, err,
                         sizeof(err));
    } else {
        /* Read ahead: the routes read in small chunks, a request per chunk
         * would be slow. Bounded: one window per open object. */
        uint64_t want = o->size - off < S3_READ_WINDOW ? o->size - off : S3_READ_WINDOW;
        if (!o->win && !(o->win = malloc(S3_READ_WINDOW)))
            return -ENOMEM;
        o->win_len = 0;
        n = bucket_range(o->st, o->digest, o->win, (size_t)want, off, off == 0 && want == o->size,
                         err, sizeof(err));
        if (n > 0) {
            o->win_off = off;
            o->win_len = (size_t)n;
            memcpy(buf, o->win, len);
            n = (ssize_t)len;
        }
    }
    if (n == -ENOENT) {
        lost(o->st, o->digest);
        return -EIO;
    }
    if (n < 0)
        log_error("s3: read: %s", err);
    return n;
}

static void s3_close_obj(struct store_obj *o)
{
    free(o->win);
    free(o);
}

static void quarantine_digest(struct s3_store *st, const unsigned char *digest, const char *why)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    log_error("s3: object %s is corrupt (%s): taken out of service", hex, why);
    take_out(st, digest, false);
}

static void s3_quarantine(struct store_obj *o, const char *why)
{
    quarantine_digest(o->st, o->digest, why);
}

/* Before "already stored": the bucket still has the object, at its size
 * (a HEAD; reading every byte would cost a GET per PUT); the index record
 * is durable when sync. */
static int s3_confirm(struct store_obj *o, bool sync, char *err, size_t errlen)
{
    struct s3_store *st = o->st;
    char key[96];
    object_key(st, o->digest, key, sizeof(key));
    struct s3_req rq = {.method = "HEAD", .key = key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 404) {
        s3_resp_free(&rs);
        lost(st, o->digest);
        return -ENOENT;
    }
    if (rc == 0 && (rs.status != 200 || rs.content_length != (int64_t)o->size)) {
        if (rs.status == 200) {
            s3_resp_free(&rs);
            quarantine_digest(st, o->digest, "the bucket holds it at another size");
            return -ENOENT;
        }
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    if (rc < 0)
        return -EIO;
    if (sync) {
        struct journal_pos pos;
        pthread_mutex_lock(&st->lock);
        journal_now(&st->journal, &pos);
        pthread_mutex_unlock(&st->lock);
        return sync_to(st, &pos, err, errlen);
    }
    return 0;
}

static int s3_stat(struct store *s, const struct cas_key *key, uint64_t *size)
{
    struct s3_store *st = s3_of(s);
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    bool found = find_live(st, key->digest, &en) != OBJTAB_NONE;
    if (found)
        *size = en.size;
    pthread_mutex_unlock(&st->lock);
    return found ? 0 : -ENOENT;
}

/* ---- deletes --------------------------------------------------------------------------------- */

static int remove_common(struct store *s, const struct cas_key *key, bool tomb, char *err,
                         size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    struct journal_pos pos;
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    /* Another delete of the key in progress: wait for it, then see. */
    for (;;) {
        uint32_t e = objtab_find(&st->tab, key->digest);
        if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en) || !(en.flags & S3_DELETING))
            break;
        pthread_cond_wait(&st->changed, &st->lock);
    }
    uint32_t e = find_live(st, key->digest, &en);
    bool found = e != OBJTAB_NONE;
    if (found)
        rc = delete_entry(st, e, key->digest, &pos, err, errlen);
    if (rc == 0 && tomb) {
        /* Recorded even when the object is absent: a copy in flight to here
         * must not bring it back. */
        struct fmt_record r;
        record(st, &r, REC_TOMB, key->digest);
        r.flags = TOMB_DELETED;
        r.aux = now_s();
        rc = append(st, &r, 1, &pos, err, errlen);
        if (rc == 0)
            rc = tomb_set(st, key->digest, TOMB_DELETED, r.aux);
    } else if (rc == 0 && !found) {
        journal_now(&st->journal, &pos);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = sync_to(st, &pos, err, errlen);
    if (rc == 0 && !found) {
        snprintf(err, errlen, "no such object");
        return -ENOENT;
    }
    return rc;
}

static int s3_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_common(s, key, true, err, errlen);
}

static int s3_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_common(s, key, false, err, errlen);
}

static int s3_quarantined(struct store *s, store_list_fn fn, void *cls)
{
    struct s3_store *st = s3_of(s);
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    for (uint32_t t = 0; t < st->tombs.used; t++)
        if (objtab_get(&st->tombs, t, &en) && en.flags == TOMB_QUARANTINED)
            fn(cls, en.digest, 0);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

/* The cursor is the next table slot in decimal, as the disk backend's. */
static int s3_list(struct store *s, struct store_cursor *cursor, enum store_list_state state,
                   uint64_t min_size, uint64_t max_size, size_t max, store_list_fn fn, void *cls,
                   char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    uint64_t e = 0;
    if (cursor->done)
        return 0;
    if (cursor->token[0] && cas_parse_u64(cursor->token, &e) < 0) {
        snprintf(err, errlen, "bad list cursor \"%.64s\"", cursor->token);
        return -EINVAL;
    }
    size_t emitted = 0;
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    for (; e < st->tab.used && emitted < max; e++) {
        if (!objtab_get(&st->tab, (uint32_t)e, &en) || (en.flags & S3_DELETING))
            continue;
        if (en.size < min_size || en.size >= max_size)
            continue;
        if (state == STORE_LIST_GARBAGE && !(st->gc_active && (en.flags & OBJTAB_MARKED)))
            continue;
        fn(cls, en.digest, en.size);
        emitted++;
    }
    cursor->done = e >= st->tab.used;
    pthread_mutex_unlock(&st->lock);
    snprintf(cursor->token, sizeof(cursor->token), "%" PRIu64, e);
    return 0;
}

/* ---- GC ------------------------------------------------------------------------------------------ */

static int s3_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                       uint64_t *bytes, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->gc_lock);
    if (id == 0) {
        /* Ids grow with time, so a stale id from an old cycle never matches. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        if (id <= st->last_gc_id)
            id = st->last_gc_id + 1;
    }
    struct fmt_record r;
    struct journal_pos pos;
    pthread_mutex_lock(&st->lock);
    record(st, &r, REC_GC_BEGIN, NULL);
    r.aux = id;
    rc = append(st, &r, 1, &pos, err, errlen);
    if (rc == 0) {
        apply(st, &r, err, errlen);
        *objects = st->objects;
        *bytes = st->bytes;
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = sync_to(st, &pos, err, errlen);
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
        uint32_t e = find_live(st, keys[i].digest, &en);
        if (present)
            present[i] = e != OBJTAB_NONE;
        if (e != OBJTAB_NONE && st->gc_active && (en.flags & OBJTAB_MARKED))
            record(st, &recs[nr++], REC_UNMARK, keys[i].digest);
    }
    if (nr)
        rc = append(st, recs, nr, &pos, err, errlen);
    if (rc == 0)
        for (size_t i = 0; i < nr; i++) {
            uint32_t e = find_live(st, recs[i].digest, &en);
            if (e != OBJTAB_NONE && (en.flags & OBJTAB_MARKED))
                unmark(st, e, &en);
        }
    pthread_mutex_unlock(&st->lock);
    free(recs);
    if (rc == 0 && nr)
        rc = sync_to(st, &pos, err, errlen);
    if (unmarked)
        *unmarked = rc == 0 ? nr : 0;
    return rc;
}

static int s3_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                      char *err, size_t errlen)
{
    return unmark_keys(s3_of(s), keys, n, NULL, unmarked, err, errlen);
}

static int s3_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present,
                       char *err, size_t errlen)
{
    return unmark_keys(s3_of(s), keys, n, present, NULL, err, errlen);
}

static int s3_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                     size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
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
        gone[i] = bucket_delete(st, victims + i * CAS_MAX_DIGEST, e1, sizeof(e1)) == 0;
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
            clobber(st, d);
            record(st, &r, REC_DEL, d);
            r.aux = DEL_CLIENT;
            if (rc == 0)
                rc = append(st, &r, 1, &pos, err, errlen);
            if (e != OBJTAB_NONE)
                table_remove(st, e);
            *removed += 1;
            *bytes += sizes[i];
        } else if (e != OBJTAB_NONE && objtab_get(&st->tab, e, &en)) {
            objtab_set_flags(&st->tab, e, en.flags & ~S3_DELETING);
        }
    }
    if (rc == 0 && !failed && gone) {
        record(st, &r, REC_GC_END, NULL);
        r.aux = id;
        rc = append(st, &r, 1, &pos, err, errlen);
        if (rc == 0)
            apply(st, &r, err, errlen);
    } else if (rc == 0) {
        journal_now(&st->journal, &pos);
    }
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
    int src = sync_to(st, &pos, err, errlen);
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
        log_info("gc: cycle %" PRIu64 " ended: %" PRIu64 " objects, %" PRIu64 " bytes removed",
                 id, *removed, *bytes);
    return rc;
}

static int s3_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->gc_lock);
    pthread_mutex_lock(&st->lock);
    struct journal_pos pos;
    if (!st->gc_active || st->gc_id != id) {
        snprintf(err, errlen, "GC cycle %" PRIu64 " is not the current one", id);
        rc = -ESTALE;
    } else {
        struct fmt_record r;
        record(st, &r, REC_GC_CANCEL, NULL);
        r.aux = id;
        rc = append(st, &r, 1, &pos, err, errlen);
        if (rc == 0)
            apply(st, &r, err, errlen);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = sync_to(st, &pos, err, errlen);
    pthread_mutex_unlock(&st->gc_lock);
    return rc;
}

static bool s3_gc_active(struct store *s, uint64_t *id)
{
    struct s3_store *st = s3_of(s);
    pthread_mutex_lock(&st->lock);
    bool a = st->gc_active;
    if (a)
        *id = st->gc_id;
    pthread_mutex_unlock(&st->lock);
    return a;
}

/* Compaction: a bucket gives a removed object's space back at once, so
 * what there is to reclaim is the index's: s3-index is rewritten as a
 * snapshot (HEADER, one PUT per object, the GC cycle and its unmarks,
 * tombstones in force, quarantined keys) into s3-index.snap, fdatasync'd,
 * renamed over s3-index and swapped into the journal, all under the lock so
 * no record falls between the snapshot and the swap. Synchronous: done when
 * it returns. */
static int s3_compact_start(struct store *s, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    const char *tmp = S3_INDEX ".snap";
    pthread_mutex_lock(&st->gc_lock);
    pthread_mutex_lock(&st->lock);
    unlinkat(st->dirfd, tmp, 0);
    int fd = fmt_open_regular(st->dirfd, st->dir, tmp, O_RDWR | O_CREAT | O_EXCL, err, errlen);
    if (fd < 0) {
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&st->gc_lock);
        return fd;
    }
    enum { BATCH = 1024 };
    unsigned char *buf = malloc(BATCH * FMT_RECORD_SIZE);
    size_t nb = 0;
    uint64_t off = 0;
    rc = buf ? write_header(st, fd, err, errlen) : -ENOMEM;
    off = FMT_RECORD_SIZE;
    struct fmt_record r;
    struct objtab_entry en;
#define EMIT()                                                                                     \
    do {                                                                                           \
        fmt_record_encode(&r, buf + nb++ * FMT_RECORD_SIZE);                                        \
        if (nb == BATCH) {                                                                         \
            if (rc == 0 && pwrite(fd, buf, nb * FMT_RECORD_SIZE, (off_t)off) !=                   \
                               (ssize_t)(nb * FMT_RECORD_SIZE))                                    \
                rc = -EIO;                                                                         \
            off += nb * FMT_RECORD_SIZE;                                                           \
            nb = 0;                                                                                \
        }                                                                                          \
    } while (0)
    /* Objects being deleted are written too: their DEL follows in the new
     * journal once the bucket delete is done. */
    for (uint32_t e = 0; rc == 0 && e < st->tab.used; e++)
        if (objtab_get(&st->tab, e, &en)) {
            record(st, &r, REC_PUT, en.digest);
            r.size = en.size;
            EMIT();
        }
    if (st->gc_active && rc == 0) {
        record(st, &r, REC_GC_BEGIN, NULL);
        r.aux = st->gc_id;
        EMIT();
        for (uint32_t e = 0; rc == 0 && e < st->tab.used; e++)
            if (objtab_get(&st->tab, e, &en) && !(en.flags & OBJTAB_MARKED)) {
                record(st, &r, REC_UNMARK, en.digest);
                EMIT();
            }
    }
    for (uint32_t t = 0; rc == 0 && t < st->tombs.used; t++)
        if (objtab_get(&st->tombs, t, &en) &&
            (en.flags == TOMB_QUARANTINED || en.offset + st->tombstone_ttl > now_s())) {
            record(st, &r, REC_TOMB, en.digest);
            r.flags = (uint8_t)en.flags;
            r.aux = en.offset;
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
    return rc;
}

/* ---- scrub ------------------------------------------------------------------------------------------ */

/* Reads every object back from the bucket, hashing it against its key, at
 * most scrub_rate bytes per second; a mismatch is quarantined, a missing
 * object taken out of service. Then sleeps an hour and starts again. */
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
            bool ok = true, missing = false;
            char err[512];
            for (uint64_t off = 0; off < size && ok;) {
                size_t n = size - off < S3_READ_WINDOW ? (size_t)(size - off) : S3_READ_WINDOW;
                ssize_t got = bucket_range(st, digest, buf, n, off, off == 0 && n == size, err,
                                           sizeof(err));
                if (got < 0) {
                    ok = false;
                    missing = got == -ENOENT;
                    break;
                }
                cas_hash_update(h, buf, n);
                off += n;
                __atomic_add_fetch(&st->scrub_bytes, n, __ATOMIC_RELAXED);
                /* Rate: sleep as long as n bytes take at scrub_rate. */
                struct timespec ts = {.tv_sec = (time_t)(n / st->scrub_rate),
                                      .tv_nsec = (long)((n % st->scrub_rate) * 1000000000ull /
                                                        st->scrub_rate)};
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
                if (stop)
                    goto out;
            }
            unsigned char got[CAS_MAX_DIGEST];
            if (ok) {
                cas_hash_final(h, got);
                if (memcmp(got, digest, dl) != 0) {
                    __atomic_add_fetch(&st->scrub_corrupt, 1, __ATOMIC_RELAXED);
                    quarantine_digest(st, digest, "scrub: the bucket's bytes do not match the key");
                }
            } else if (missing) {
                __atomic_add_fetch(&st->scrub_corrupt, 1, __ATOMIC_RELAXED);
                log_error("s3: scrub: %s", err);
                lost(st, digest);
            } else {
                log_warn("s3: scrub: %s (will try again next pass)", err);
            }
            __atomic_add_fetch(&st->scrub_objects, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&st->scrub_passes, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&st->scrub_last_pass, now_s(), __ATOMIC_RELAXED);
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

static int s3_scrub_start(struct store *s, uint64_t bytes_per_second)
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

/* ---- info, metrics, open, destroy ----------------------------------------------------------------- */

static void s3_info(struct store *s, struct store_info *o)
{
    struct s3_store *st = s3_of(s);
    memset(o, 0, sizeof(*o));
    pthread_mutex_lock(&st->lock);
    o->objects = st->objects;
    o->bytes = st->bytes;
    o->garbage = st->garbage_bytes;
    o->garbage_objects = st->garbage_objects;
    o->gc_active = st->gc_active;
    o->gc_id = st->gc_id;
    struct objtab_entry en;
    for (uint32_t t = 0; t < st->tombs.used; t++)
        if (objtab_get(&st->tombs, t, &en)) {
            if (en.flags == TOMB_QUARANTINED)
                o->quarantined++;
            else if (en.offset + st->tombstone_ttl > now_s())
                o->tombstones++;
        }
    uint64_t used = st->bytes + st->reserved;
    pthread_mutex_unlock(&st->lock);
    o->total = st->capacity;
    o->available = st->capacity > used ? st->capacity - used : 0;
    int ro = __atomic_load_n(&st->read_only, __ATOMIC_SEQ_CST);
    o->read_only = ro != 0;
    o->faulted = ro == 2;
    if (ro)
        snprintf(o->read_only_reason, sizeof(o->read_only_reason), "%s", st->read_only_reason);
    o->corrupt_found = __atomic_load_n(&st->corrupt_found, __ATOMIC_RELAXED);
    o->compactions = st->compactions;
    o->scrubbing = st->scrub_running;
    o->scrub_rate = st->scrub_rate;
    o->scrub_bytes = __atomic_load_n(&st->scrub_bytes, __ATOMIC_RELAXED);
    o->scrub_objects = __atomic_load_n(&st->scrub_objects, __ATOMIC_RELAXED);
    o->scrub_corrupt = __atomic_load_n(&st->scrub_corrupt, __ATOMIC_RELAXED);
    o->scrub_passes = __atomic_load_n(&st->scrub_passes, __ATOMIC_RELAXED);
    o->scrub_last_pass = __atomic_load_n(&st->scrub_last_pass, __ATOMIC_RELAXED);
}

static void s3_metrics(struct store *s, struct cas_buf *o)
{
    struct s3_store *st = s3_of(s);
    cas_buf_printf(
        o,
        "# HELP cas_s3_requests_total Requests sent to the bucket (retries included).\n"
        "# TYPE cas_s3_requests_total counter\ncas_s3_requests_total %" PRIu64 "\n"
        "# HELP cas_s3_retries_total Bucket requests retried (5xx, resets, timeouts).\n"
        "# TYPE cas_s3_retries_total counter\ncas_s3_retries_total %" PRIu64 "\n"
        "# HELP cas_s3_failures_total Bucket requests that failed after their retries.\n"
        "# TYPE cas_s3_failures_total counter\ncas_s3_failures_total %" PRIu64 "\n"
        "# HELP cas_s3_lost_objects_total Objects the index listed that the bucket no longer had.\n"
        "# TYPE cas_s3_lost_objects_total counter\ncas_s3_lost_objects_total %" PRIu64 "\n",
        __atomic_load_n(&st->cli.requests, __ATOMIC_RELAXED),
        __atomic_load_n(&st->cli.retries, __ATOMIC_RELAXED),
        __atomic_load_n(&st->cli.failures, __ATOMIC_RELAXED),
        __atomic_load_n(&st->lost, __ATOMIC_RELAXED));
}

static void s3_destroy(struct store *s)
{
    struct s3_store *st = s3_of(s);
    if (!st)
        return;
    if (st->scrub_running) {
        pthread_mutex_lock(&st->scrub_mu);
        st->scrub_stop = true;
        pthread_cond_broadcast(&st->scrub_cv);
        pthread_mutex_unlock(&st->scrub_mu);
        pthread_join(st->scrub_thread, NULL);
    }
    if (st->journal.fd >= 0)
        journal_destroy(&st->journal);
    objtab_destroy(&st->tab);
    objtab_destroy(&st->tombs);
    s3_client_free(&st->cli);
    if (st->lockfd >= 0)
        close(st->lockfd);
    if (st->dirfd >= 0)
        close(st->dirfd);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->gc_lock);
    pthread_cond_destroy(&st->changed);
    pthread_mutex_destroy(&st->scrub_mu);
    pthread_cond_destroy(&st->scrub_cv);
    free(st->dir);
    free(st);
}

const struct store_ops s3_ops = {
    .name = "s3",
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .put_copy = s3_put_copy,
    .open = s3_open_obj,
    .pread = s3_pread,
    .close = s3_close_obj,
    .quarantine = s3_quarantine,
    .confirm = s3_confirm,
    .stat = s3_stat,
    .remove = s3_remove,
    .drop = s3_drop,
    .quarantined = s3_quarantined,
    .list = s3_list,
    .gc_begin = s3_gc_begin,
    .gc_mark = s3_gc_mark,
    .use_keys = s3_use_keys,
    .gc_end = s3_gc_end,
    .gc_cancel = s3_gc_cancel,
    .gc_active = s3_gc_active,
    .compact_start = s3_compact_start,
    .scrub_start = s3_scrub_start,
    .info = s3_info,
    .metrics = s3_metrics,
    .destroy = s3_destroy,
};

/* ---- opening: the bucket, the node's copy, the index ------------------------------------------------ */

/* HEAD of the bucket: it exists and takes our credentials. */
static int check_bucket(struct s3_client *c, char *err, size_t errlen)
{
    struct s3_req rq = {.method = "HEAD"};
    struct s3_resp rs;
    int rc = s3_do(c, &rq, &rs, err, errlen);
    if (rc < 0) {
        char e2[512];
        snprintf(e2, sizeof(e2), "%s", err);
        snprintf(err, errlen, "cannot reach the bucket %s at %s: %s", c->bucket, c->endpoint, e2);
    } else if (rs.status == 404) {
        snprintf(err, errlen, "the bucket %s does not exist at %s (create it first)", c->bucket,
                 c->endpoint);
        rc = -ENOENT;
    } else if (rs.status == 403 || rs.status == 401) {
        snprintf(err, errlen,
                 "the bucket %s at %s refused our credentials (%ld): check the access and secret "
                 "keys and the region",
                 c->bucket, c->endpoint, rs.status);
        rc = -EACCES;
    } else if (rs.status != 200) {
        snprintf(err, errlen, "the bucket %s at %s answered %ld to HEAD", c->bucket, c->endpoint,
                 rs.status);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc;
}

static int read_small(int dirfd, const char *name, char *buf, size_t cap, size_t *len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, cap);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    if ((size_t)n == cap)
        return -EFBIG;
    *len = (size_t)n;
    return 0;
}

#define NODE_FILE_MAX (1u << 20)

int s3_prepare(const struct store_options *o, int dirfd, char *err, size_t errlen)
{
    struct s3_client c;
    int rc = s3_client_init(&c, o->s3_endpoint, o->s3_bucket, o->s3_region, o->s3_access_key,
                            o->s3_secret_key, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = check_bucket(&c, err, errlen)) < 0)
        goto out;
    if (faccessat(dirfd, "node", F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
        goto out;
    /* A lost --dir: the bucket's copy of the node file keeps the id and tokens. */
    char *buf = malloc(NODE_FILE_MAX);
    if (!buf) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    struct s3_req rq = {.method = "GET", .key = S3_NODE_KEY, .out = buf, .out_cap = NODE_FILE_MAX};
    struct s3_resp rs;
    rc = s3_do(&c, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 200) {
        int fd = openat(dirfd, "node.s3tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, buf, rs.out_len) != (ssize_t)rs.out_len || fsync(fd) < 0 ||
            renameat(dirfd, "node.s3tmp", dirfd, "node") < 0 || fsync(dirfd) < 0) {
            snprintf(err, errlen, "cannot restore %s/node from the bucket: %s", o->dir,
                     strerror(errno));
            rc = -EIO;
        } else {
            log_info("s3: %s/node restored from the bucket's copy (%s)", o->dir, S3_NODE_KEY);
        }
        if (fd >= 0)
            close(fd);
    } else if (rc == 0 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    free(buf);
out:
    s3_client_free(&c);
    return rc;
}

/* The bucket's copy of the node file: put there on first start; a bucket
 * holding another node's copy is refused (two nodes on one bucket would
 * delete each other's objects). */
static int check_node_copy(struct s3_store *st, char *err, size_t errlen)
{
    char *local = malloc(NODE_FILE_MAX), *remote = malloc(NODE_FILE_MAX);
    size_t llen = 0;
    int rc = -ENOMEM;
    if (!local || !remote) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if ((rc = read_small(st->dirfd, "node", local, NODE_FILE_MAX, &llen)) < 0) {
        snprintf(err, errlen, "cannot read %s/node: %s", st->dir, strerror(-rc));
        goto out;
    }
    struct s3_req rq = {.method = "GET", .key = S3_NODE_KEY, .out = remote,
                        .out_cap = NODE_FILE_MAX};
    struct s3_resp rs;
    rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 200) {
        if (rs.out_len != llen || memcmp(local, remote, llen) != 0) {
            snprintf(err, errlen,
                     "the bucket %s holds another node's state (%s differs from %s/node): one "
                     "bucket per storaged; nothing was changed",
                     st->cli.bucket, S3_NODE_KEY, st->dir);
            rc = -EINVAL;
        }
    } else if (rc == 0 && rs.status == 404) {
        s3_resp_free(&rs);
        struct s3_req put = {.method = "PUT", .key = S3_NODE_KEY, .body = local,
                             .body_len = llen};
        rc = s3_do(&st->cli, &put, &rs, err, errlen);
        if (rc == 0 && rs.status != 200) {
            s3_status_error(&put, &rs, err, errlen);
            rc = -EIO;
        }
    } else if (rc == 0) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
out:
    free(local);
    free(remote);
    return rc;
}

/* A new index from a listing of objects/ in the bucket (first start, or a
 * lost --dir), written to a temporary file and renamed into place, so a
 * crash halfway leaves no partial index. */
static int rebuild_index(struct s3_store *st, char *err, size_t errlen)
{
    const char *tmp = S3_INDEX ".rebuild";
    unlinkat(st->dirfd, tmp, 0);
    int fd = fmt_open_regular(st->dirfd, st->dir, tmp, O_RDWR | O_CREAT | O_EXCL, err, errlen);
    if (fd < 0)
        return fd;
    int rc = write_header(st, fd, err, errlen);
    journal_init(&st->journal, fd, FMT_RECORD_SIZE);
    char token[S3_XML_TOKEN_MAX + 1] = "", q[S3_XML_TOKEN_MAX * 3 + 100];
    uint64_t found = 0, skipped = 0;
    bool more = rc == 0;
    while (more) {
        char esc[S3_XML_TOKEN_MAX * 3 + 1];
        s3_query_escape(token, esc, sizeof(esc));
        snprintf(q, sizeof(q), "%s%s%slist-type=2&prefix=objects%%2F", token[0] ? "continuation-token=" : "",
                 token[0] ? esc : "", token[0] ? "&" : "");
        struct s3_req rq = {.method = "GET", .query = q};
        struct s3_resp rs;
        struct s3_list_page pg = {0};
        rc = s3_do(&st->cli, &rq, &rs, err, errlen);
        if (rc == 0 && rs.status != 200) {
            s3_status_error(&rq, &rs, err, errlen);
            rc = -EIO;
        }
        if (rc == 0)
            rc = s3_xml_list(rs.body.data ? rs.body.data : "", rs.body.len, &pg, err, errlen);
        s3_resp_free(&rs);
        for (size_t i = 0; rc == 0 && i < pg.n; i++) {
            struct cas_key k;
            char kerr[256];
            const char *hex = pg.items[i].key + strlen("objects/");
            if (strncmp(pg.items[i].key, "objects/", 8) != 0 ||
                strlen(hex) != st->base.algo->digest_len * 2 ||
                cas_key_parse(hex, strlen(hex), st->base.algo, &k, kerr, sizeof(kerr)) < 0) {
                skipped++;
                continue;
            }
            struct fmt_record r;
            struct journal_pos pos;
            record(st, &r, REC_PUT, k.digest);
            r.size = pg.items[i].size;
            if ((rc = append(st, &r, 1, &pos, err, errlen)) == 0)
                rc = apply(st, &r, err, errlen);
            found++;
        }
        more = rc == 0 && pg.truncated;
        snprintf(token, sizeof(token), "%s", pg.next_token);
        s3_list_page_free(&pg);
    }
    if (rc == 0 && (fdatasync(fd) < 0 || renameat(st->dirfd, tmp, st->dirfd, S3_INDEX) < 0 ||
                    fsync(st->dirfd) < 0)) {
        snprintf(err, errlen, "cannot write %s/%s: %s", st->dir, S3_INDEX, strerror(errno));
        rc = -EIO;
    }
    if (rc < 0) {
        journal_destroy(&st->journal);
        st->journal.fd = -1;
        unlinkat(st->dirfd, tmp, 0);
        return rc;
    }
    log_info("s3: %s/%s built from the bucket: %" PRIu64 " objects, %" PRIu64 " bytes%s", st->dir,
             S3_INDEX, found, st->bytes, skipped ? " (keys not of this store skipped)" : "");
    return 0;
}

static int s3_backend_open(const struct store_options *o, struct store **out, char *err,
                           size_t errlen)
{
    if (!o->capacity) {
        snprintf(err, errlen, "--capacity (or CAS_CAPACITY) is required with --backend s3: a "
                              "bucket has no size, and the capacity sizes the ring");
        return -EINVAL;
    }
    struct s3_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->base.ops = &s3_ops;
    st->base.algo = o->algo;
    st->dirfd = st->lockfd = st->journal.fd = -1;
    st->capacity = o->capacity;
    st->max_object_size = o->max_object_size;
    st->tombstone_ttl = o->tombstone_ttl ? o->tombstone_ttl : S3_TOMBSTONE_TTL;
    st->read_only = o->read_only ? 1 : 0;
    if (o->read_only)
        snprintf(st->read_only_reason, sizeof(st->read_only_reason), "--read-only");
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->gc_lock, NULL);
    pthread_cond_init(&st->changed, NULL);
    pthread_mutex_init(&st->scrub_mu, NULL);
    pthread_cond_init(&st->scrub_cv, NULL);
    int rc = -ENOMEM;
    st->dir = strdup(o->dir);
    if (!st->dir || objtab_init(&st->tab, o->algo->digest_len) < 0 ||
        objtab_init(&st->tombs, o->algo->digest_len) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    st->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", o->dir, strerror(errno));
        goto fail;
    }
    st->lockfd = fmt_open_regular(st->dirfd, st->dir, "LOCK", O_RDWR | O_CREAT, err, errlen);
    if (st->lockfd < 0) {
        rc = st->lockfd;
        goto fail;
    }
    if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(st->lockfd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        rc = -EBUSY;
        snprintf(err, errlen, "%s is in use by another storaged%s%s (lock on %s/LOCK)", o->dir,
                 *pid ? ", pid " : "", pid, o->dir);
        goto fail;
    }
    if (faccessat(st->dirfd, "index", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        rc = -EINVAL;
        snprintf(err, errlen,
                 "%s holds a disk store (an index file): the S3 backend's state needs a "
                 "directory of its own",
                 o->dir);
        goto fail;
    }
    if ((rc = s3_client_init(&st->cli, o->s3_endpoint, o->s3_bucket, o->s3_region,
                             o->s3_access_key, o->s3_secret_key, err, errlen)) < 0)
        goto fail;
    if ((rc = check_bucket(&st->cli, err, errlen)) < 0 ||
        (rc = check_node_copy(st, err, errlen)) < 0)
        goto fail;
    int fd = fmt_open_regular(st->dirfd, st->dir, S3_INDEX, O_RDWR, err, errlen);
    if (fd == -ENOENT) {
        if ((rc = rebuild_index(st, err, errlen)) < 0)
            goto fail;
    } else if (fd < 0) {
        rc = fd;
        goto fail;
    } else {
        uint64_t end = 0;
        if ((rc = replay(st, fd, &end, err, errlen)) < 0) {
            close(fd);
            goto fail;
        }
        journal_init(&st->journal, fd, end);
    }
    /* The PID in LOCK, for a second daemon's message (as the disk store). */
    char pid[32];
    int pl = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(st->lockfd, 0) < 0 || pwrite(st->lockfd, pid, (size_t)pl, 0) < 0)
        log_warn("cannot write pid to %s/LOCK: %s", st->dir, strerror(errno));
    *out = &st->base;
    return 0;
fail:
    s3_destroy(&st->base);
    return rc;
}

const struct store_backend s3_backend = {
    .name = "s3",
    .open = s3_backend_open,
    .prepare = s3_prepare,
    .usage = "s3: objects in an S3-compatible bucket, --dir holds the node's state; "
             "--s3-endpoint URL --s3-bucket NAME [--s3-region R] [--s3-access-key-file F "
             "--s3-secret-key-file F] (or CAS_S3_ACCESS_KEY / CAS_S3_SECRET_KEY) --capacity BYTES",
};
