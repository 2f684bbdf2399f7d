/*
 * s3_store.c - the S3 backend's object operations (s3.h): writes, reads,
 * deletes, listings, info and metrics of an S3-compatible bucket, with the
 * node's state in a local journal (s3-index, s3_core.c). The ops table that
 * names them is in s3_backend.c.
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
#include "s3_internal.h"
#include "buf.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "num.h"
#include "stamp.h"

#include <assert.h>
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
static void s3_inflight_remove(struct s3_store *st, struct inflight *f)
{
    for (struct inflight **p = &st->inflight; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            return;
        }
}

/* Flags entry e DELETING, deletes it in the bucket, then removes it and
 * records del (a REC_DEL, plus extra records, appended with it). Caller
 * holds st->lock, which is released during the bucket request. */
static int s3_delete_entry(struct s3_store *st, uint32_t e, const unsigned char *digest,
                           struct journal_pos *pos, char *err, size_t errlen)
{
    struct objtab_entry en;
    objtab_get(&st->tab, e, &en);
    objtab_set_flags(&st->tab, e, en.flags | S3_DELETING);
    pthread_mutex_unlock(&st->lock);
    int rc = s3_bucket_delete(st, digest, en.size, err, errlen);
    pthread_mutex_lock(&st->lock);
    e = objtab_find(&st->tab, digest);
    if (rc < 0) {
        if (e != OBJTAB_NONE && objtab_get(&st->tab, e, &en))
            objtab_set_flags(&st->tab, e, en.flags & ~S3_DELETING);
        pthread_cond_broadcast(&st->changed);
        return rc;
    }
    s3_clobber(st, digest);
    struct fmt_record r;
    s3_record(st, &r, REC_DEL, digest);
    r.aux = DEL_CLIENT;
    rc = s3_append(st, &r, 1, pos, err, errlen);
    if (e != OBJTAB_NONE)
        s3_table_remove(st, e);
    pthread_cond_broadcast(&st->changed);
    return rc;
}

/* A write that will not be recorded - a copy refused because a client's
 * DELETE of its key landed during its upload, or a write a delete
 * clobbered that cannot upload again - may have left its bytes under
 * objects/<hex> (and its block table): removes them, unless another write
 * of the key has an index entry by now (those bytes are its own). Nothing
 * unrecorded stays in the bucket, where a rebuild of the index from the
 * bucket would list it. Meanwhile a placeholder entry flagged S3_DELETING |
 * S3_UNDOING holds off the key's other writers as a delete does (they wait
 * before uploading, or upload again after). Caller holds st->lock, which is
 * released during the bucket request. 0, or -EIO with a message when the
 * bucket's copy could not be removed (logged; then the stop leaves no
 * s3-clean marker, and the next start's sweep deletes it: tombstoned or
 * not, it is listed nowhere). */
static int undo_upload(struct s3_store *st, const unsigned char *digest, uint64_t size, char *err,
                       size_t errlen)
{
    uint32_t e;
    struct objtab_entry en;
    for (;;) { /* a delete (or another undo) of the key first */
        e = objtab_find(&st->tab, digest);
        if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en) || !(en.flags & S3_DELETING))
            break;
        pthread_cond_wait(&st->changed, &st->lock);
    }
    if (e != OBJTAB_NONE)
        return 0;
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    int rc;
    if (objtab_insert(&st->tab, digest, 0, 0, size, S3_DELETING | S3_UNDOING) == OBJTAB_NONE) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    } else {
        pthread_mutex_unlock(&st->lock);
        rc = s3_bucket_delete(st, digest, size, err, errlen);
        pthread_mutex_lock(&st->lock);
        /* Writers whose upload landed before that DELETE lost it. */
        s3_clobber(st, digest);
        if ((e = objtab_find(&st->tab, digest)) != OBJTAB_NONE)
            objtab_remove(&st->tab, e);
        pthread_cond_broadcast(&st->changed);
    }
    if (rc < 0) {
        st->debris = true;
        log_error("s3: cannot remove the unrecorded upload of %s from the bucket (never served; "
                  "the next start removes it): %s",
                  hex, err);
        return -EIO;
    }
    return 0;
}

/* ---- writes ---------------------------------------------------------------------------- */

/* A write whose PUT record could not be appended after its upload (the
 * index's file system full, say): what it uploaded is taken back, and a
 * tombstone it lifted (lifted; its hold still held) is written back with
 * the stamp in force, so that the failure changes nothing, in the index
 * or in the bucket (the sweep after a crash would otherwise adopt the
 * upload: a DELETE undone by a write that failed). Caller holds st->lock,
 * released during the bucket requests; failures are logged (the upload,
 * unlisted, then waits for the next start's sweep). */
static void unrecorded(struct s3_store *st, struct store_put *p, const unsigned char *digest,
                       bool lifted)
{
    char hex[CAS_MAX_HEX + 1], uerr[400];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    if (undo_upload(st, digest, p->received, uerr, sizeof(uerr)) < 0)
        log_warn("s3: cannot remove the upload of %s, whose record failed: %s", hex, uerr);
    uint32_t t = objtab_find(&st->tombs, digest);
    struct objtab_entry ten;
    if (lifted && t != OBJTAB_NONE && objtab_get(&st->tombs, t, &ten) &&
        s3_tomb_entry_in_force(st, &ten)) {
        uint64_t stamp = ten.offset;
        pthread_mutex_unlock(&st->lock);
        if (s3_bucket_tomb(st, digest, true, stamp, uerr, sizeof(uerr)) < 0) {
            st->debris = true;
            log_error("s3: cannot write the tombstone of %s back to the bucket: %s", hex, uerr);
        }
        pthread_mutex_lock(&st->lock);
    }
}

int s3_put_begin(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                 struct store_put **out, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    /* A new object needs its PUT record beside the room kept for removals
     * (a stored one only re-uploads: no record, or an UNMARK). */
    bool stored = false;
    if (expect) {
        pthread_mutex_lock(&st->lock);
        stored = s3_find_live(st, expect->digest, &(struct objtab_entry){0}) != OBJTAB_NONE;
        pthread_mutex_unlock(&st->lock);
    }
    if (!stored && (rc = s3_index_room(st, 1, false, err, errlen)) < 0)
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
                     "store full: %" PRIu64 " bytes do not fit in --capacity %" PRIu64 " (%" PRIu64
                     " stored)",
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
    pthread_mutex_lock(&st->lock);
    p->delete_seq = st->delete_seq;
    pthread_mutex_unlock(&st->lock);
    p->stamp = cas_stamp_now();
    if (expect) {
        p->have_expect = true;
        p->expect = *expect;
    }
    cas_buf_init(&p->complete);
    *out = p;
    return 0;
}

static void s3_put_free(struct store_put *p)
{
    if (p->up.running)
        pthread_join(p->up.thread, NULL);
    free(p->up.buf);
    cas_hash_free(p->h);
    free(p->buf);
    cas_buf_free(&p->complete);
    s3_sums_free(&p->sums);
    free(p);
}

static void multipart_abort(struct store_put *p)
{
    if (p->up.running) { /* its result no longer matters */
        pthread_join(p->up.thread, NULL);
        p->up.running = false;
    }
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

void s3_put_abort(struct store_put *p)
{
    multipart_abort(p);
    s3_put_free(p);
}

int s3_put_stamp(struct store_put *p, uint64_t stamp, char *err, size_t errlen)
{
    struct s3_store *st = p->st;
    p->stamp = stamp;
    if (!p->have_expect || p->copy)
        return 0; /* the key is known only at commit, which checks again */
    pthread_mutex_lock(&st->lock);
    bool refused = s3_tomb_outranks(st, p->expect.digest, stamp);
    pthread_mutex_unlock(&st->lock);
    if (!refused)
        return 0;
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&p->expect, hex);
    snprintf(err, errlen,
             "object %s was deleted here by a delete sent after this write (" CAS_STAMP_HEADER
             "): nothing stored (send it again to store it after the delete)",
             hex);
    return -EBUSY;
}

int s3_put_copy(struct store_put *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    p->copy = true;
    return 0;
}

/* Starts the multipart upload (under objects/<hex>, or tmp/<random> for a
 * POST whose key is known only at the end). 0, or -EIO with a message. */
static int multipart_start(struct store_put *p, char *err, size_t errlen)
{
    struct s3_store *st = p->st;
    struct s3_resp rs;
    if (p->have_expect) {
        s3_object_key(st, p->expect.digest, p->upkey, sizeof(p->upkey));
    } else {
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
    return 0;
}

/* Uploads p->up's part (p->up.buf, len, part number): fills p->up.rc,
 * etag and err. Touches nothing else of p, so it runs on the worker thread
 * while the writer fills p->buf. */
static void *upload_part(void *arg)
{
    struct store_put *p = arg;
    struct s3_store *st = p->st;
    char q[S3_XML_TOKEN_MAX * 3 + 64], id[S3_XML_TOKEN_MAX * 3 + 1];
    s3_query_escape(p->upload_id, id, sizeof(id));
    snprintf(q, sizeof(q), "partNumber=%u&uploadId=%s", p->up.part, id);
    struct s3_req rq = {
        .method = "PUT", .key = p->upkey, .query = q, .body = p->up.buf, .body_len = p->up.len};
    struct s3_resp rs;
    p->up.err[0] = 0;
    int rc = s3_do(&st->cli, &rq, &rs, p->up.err, sizeof(p->up.err));
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, p->up.err, sizeof(p->up.err));
        rc = -EIO;
    }
    if (rc == 0 && !rs.etag[0]) {
        snprintf(p->up.err, sizeof(p->up.err), "the bucket answered part %u of %s without an ETag",
                 p->up.part, p->upkey);
        rc = -EIO;
    }
    if (rc == 0)
        snprintf(p->up.etag, sizeof(p->up.etag), "%s", rs.etag);
    s3_resp_free(&rs);
    p->up.rc = rc < 0 ? -EIO : 0;
    return NULL;
}

/* The part in p->up was uploaded: lists it in the completion; 0, or its
 * error (then the write fails and its upload is aborted). */
static int part_done(struct store_put *p, char *err, size_t errlen)
{
    if (p->up.rc < 0) {
        snprintf(err, errlen, "%s", p->up.err);
        return p->up.rc;
    }
    /* ETags are quoted hex digests: nothing to escape in XML. */
    cas_buf_printf(&p->complete, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                   p->up.part, p->up.etag);
    p->parts = p->up.part;
    return 0;
}

/* Waits for the part in flight, if any (part_done). */
static int part_wait(struct store_put *p, char *err, size_t errlen)
{
    if (!p->up.running)
        return 0;
    pthread_join(p->up.thread, NULL);
    p->up.running = false;
    return part_done(p, err, errlen);
}

/* Sends the buffered part (multipart upload; starts it first when needed):
 * waits for the previous part, then hands this one to a worker thread
 * (swapping buffers: the writer goes on receiving into the other one);
 * wait: also waits for this one (the last part, before the completion).
 * 0, or -EIO / -ENOMEM with a message. */
static int flush_part(struct store_put *p, bool wait, char *err, size_t errlen)
{
    int rc;
    if (!p->multipart && (rc = multipart_start(p, err, errlen)) < 0)
        return rc;
    if ((rc = part_wait(p, err, errlen)) < 0)
        return rc;
    if (!p->up.buf && !(p->up.buf = malloc(p->cap))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char *t = p->up.buf;
    p->up.buf = p->buf;
    p->up.len = p->len;
    p->buf = t;
    p->len = 0;
    p->up.part = p->parts + 1;
    if (wait || pthread_create(&p->up.thread, NULL, upload_part, p) != 0) {
        upload_part(p); /* inline: the last part, or no thread to be had */
        return part_done(p, err, errlen);
    }
    p->up.running = true;
    return 0;
}

int s3_put_write(struct store_put *p, const void *data, size_t len, char *err, size_t errlen)
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
    if (s3_sums_update(&p->sums, data, len) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
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
            int rc = flush_part(p, false, err, errlen);
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
    s3_object_key(st, digest, key, sizeof(key));
    struct s3_resp rs;
    int rc;
    if (!p->multipart) {
        char sha[CAS_MAX_HEX + 1];
        const char *payload = NULL;
        if (strcmp(st->base.algo->name, "sha256") == 0) {
            cas_hex_encode(digest, st->base.algo->digest_len, sha);
            payload = sha; /* the key is the payload's SHA-256: signed for free */
        }
        struct s3_req rq = {.method = "PUT",
                            .key = key,
                            .body = p->buf ? p->buf : "",
                            .body_len = p->len,
                            .payload_sha256 = payload};
        rc = s3_do(&st->cli, &rq, &rs, err, errlen);
        if (rc == 0 && rs.status != 200) {
            s3_status_error(&rq, &rs, err, errlen);
            rc = -EIO;
        }
        s3_resp_free(&rs);
        return rc < 0 ? -EIO : 0;
    }
    if ((rc = part_wait(p, err, errlen)) < 0)
        return rc;
    if (p->len && (rc = flush_part(p, true, err, errlen)) < 0)
        return rc;
    cas_buf_puts(&p->complete, "</CompleteMultipartUpload>");
    char q[S3_XML_TOKEN_MAX * 3 + 32], id[S3_XML_TOKEN_MAX * 3 + 1];
    s3_query_escape(p->upload_id, id, sizeof(id));
    snprintf(q, sizeof(q), "uploadId=%s", id);
    struct s3_req rq = {.method = "POST",
                        .key = p->upkey,
                        .query = q,
                        .body = p->complete.data,
                        .body_len = p->complete.len,
                        .work_bytes = p->received};
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
    struct s3_req cp = {.method = "PUT", .key = key, .header = src, .work_bytes = p->received};
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

int s3_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                  size_t errlen)
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
    if (p->copy && s3_tomb_in_force(st, digest)) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "refused: the key was deleted here by a client");
        rc = -ECANCELED;
        goto out;
    }
    if (st->bytes + st->reserved + p->received > st->capacity &&
        s3_find_live(st, digest, &(struct objtab_entry){0}) == OBJTAB_NONE) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "store full: %" PRIu64 " bytes do not fit in --capacity %" PRIu64,
                 p->received, st->capacity);
        rc = -ENOSPC;
        goto out;
    }
    st->reserved += p->received;
    if (s3_sums_wanted(p->received) && s3_sums_finish(&p->sums) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    /* refused: a copy whose key a client deleted during its upload (checked
     * again after each upload, under the lock the delete records its
     * tombstone under: FORMAT.md, "Tombstones"); undo: a write that ends
     * unrecorded after an upload. Either way what it uploaded is removed. */
    bool refused = false, undo = false, deleted_during = false, deleted_after_upload = false;
    bool in_flight = false; /* deleted_during: by delete_seq, not only by stamps */
    bool lifted = false;    /* the bucket's tombstone of the key removed by this write */
    for (int attempt = 0; rc == 0; attempt++) {
        /* A delete of this key in progress would remove what we upload. */
        for (;;) {
            uint32_t e = objtab_find(&st->tab, digest);
            struct objtab_entry en;
            if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en) || !(en.flags & S3_DELETING))
                break;
            pthread_cond_wait(&st->changed, &st->lock);
        }
        if (attempt > 0 && p->copy && s3_tomb_in_force(st, digest)) {
            refused = true; /* a DELETE clobbered the last upload and left its tombstone */
            break;
        }
        /* A client write lifts a tombstone only of a delete sent before it
         * (stamps: s3_tomb_outranks) that also landed before it began
         * (delete_seq): either kind may already be answered 204 (SPEC,
         * Deletion; e.g. a balancer's straggling copy of a PUT it answered
         * before the DELETE came). */
        in_flight = s3_tomb_deleted_since(st, digest, p->delete_seq);
        if (in_flight || (!p->copy && s3_tomb_outranks(st, digest, p->stamp))) {
            deleted_during = true;
            break;
        }
        me.clobbered = false;
        me.next = st->inflight;
        st->inflight = &me;
        bool mp = p->multipart;
        pthread_mutex_unlock(&st->lock);
        /* The block table goes to the bucket before the object becomes
         * visible (again, after a delete that removed both): it describes
         * the bytes whose digest was just checked. */
        if (s3_sums_wanted(p->received))
            rc = s3_sums_upload(st, digest, p->received, &p->sums, err, errlen);
        if (rc == 0)
            rc = publish(p, digest, err, errlen);
        pthread_mutex_lock(&st->lock);
        s3_inflight_remove(st, &me);
        /* A delete (DELETE, gc/end) that flagged the key during the
         * upload may remove the bucket's copy after the upload landed and
         * only clobber us once we are gone from inflight: our bytes are
         * not safe until it is over, so upload again after it. */
        uint32_t de = objtab_find(&st->tab, digest);
        struct objtab_entry den;
        if (rc == 0 && de != OBJTAB_NONE && objtab_get(&st->tab, de, &den) &&
            (den.flags & S3_DELETING))
            me.clobbered = true;
        if (rc == 0 && p->copy && s3_tomb_in_force(st, digest)) {
            refused = true;
            break;
        }
        in_flight = rc == 0 && s3_tomb_deleted_since(st, digest, p->delete_seq);
        if (rc == 0 && (in_flight || (!p->copy && s3_tomb_outranks(st, digest, p->stamp)))) {
            deleted_during = deleted_after_upload = true;
            break;
        }
        if (rc < 0 || !me.clobbered)
            break;
        if (mp || attempt >= 3) {
            snprintf(err, errlen, "a delete of this key ran during the upload; try again");
            rc = -EIO;
            undo = true;
            break;
        }
    }
    /*
     * A client write stored over a client delete's tombstone removes the
     * bucket's (tombs/<hex>.deleted) before its PUT record, and fails if it
     * cannot: the sweep after a crash and a rebuild of the index from the
     * bucket take the bucket's word on whether the key stays deleted, so a
     * stale one would delete or hide this acknowledged object once the
     * index lost its record (restored from a backup, or cut back). The
     * key's tombstone hold covers the removal and the record (or, when the
     * record fails, the tombstone written back): a DELETE of the key, which
     * takes the same hold for its tombstone and records, comes wholly before
     * or wholly after, so no request's tombstone lands between them. A
     * crash between the two leaves an unanswered write, which the sweep
     * adopts.
     */
    struct tomb_hold hold;
    bool held = false;
    if (rc == 0 && !refused && !undo && !deleted_during && !p->copy &&
        s3_tomb_present(st, digest) &&
        s3_find_live(st, digest, &(struct objtab_entry){0}) == OBJTAB_NONE) {
        s3_tomb_hold(st, &hold, digest);
        held = true;
        /* A delete that held the key while we waited has recorded by now. */
        in_flight = s3_tomb_deleted_since(st, digest, p->delete_seq);
        if (in_flight || s3_tomb_outranks(st, digest, p->stamp)) {
            deleted_during = deleted_after_upload = true;
        } else if (s3_tomb_present(st, digest)) {
            /* Expired too: the bucket keeps a client delete's tombstone
             * until compaction clears it (s3_compact_start). */
            char terr[300];
            pthread_mutex_unlock(&st->lock);
            int trc = s3_bucket_tomb(st, digest, false, 0, terr, sizeof(terr));
            pthread_mutex_lock(&st->lock);
            if (trc < 0) {
                snprintf(err, errlen,
                         "cannot remove the key's tombstone from the bucket (%s): nothing "
                         "stored; send it again",
                         terr);
                rc = -EIO;
                undo = true;
            } else {
                lifted = true;
            }
        }
    }
    st->reserved -= p->received;
    if (deleted_during) {
        char hex[CAS_MAX_HEX + 1], uerr[400];
        cas_hex_encode(digest, dl, hex);
        if (deleted_after_upload && undo_upload(st, digest, p->received, uerr, sizeof(uerr)) < 0)
            log_warn("s3: cannot remove the upload of %s, deleted during its write: %s", hex, uerr);
        snprintf(err, errlen,
                 "object %s was deleted here %s: nothing stored (send it again to store it after "
                 "the delete)",
                 hex,
                 in_flight ? "while this write was in progress"
                           : "by a delete sent after this write (" CAS_STAMP_HEADER ")");
        rc = -EBUSY;
    }
    if (refused || undo) {
        char uerr[400];
        int urc = undo_upload(st, digest, p->received, uerr, sizeof(uerr));
        if (refused && urc < 0) {
            snprintf(err, errlen,
                     "refused: the key was deleted here by a client during the copy, and the "
                     "copy's upload could not be removed from the bucket: %s",
                     uerr);
            rc = -EIO;
        } else if (refused) {
            snprintf(err, errlen, "refused: the key was deleted here by a client during the copy");
            rc = -ECANCELED;
        }
    }
    if (rc < 0) {
        if (held)
            s3_tomb_release(st, &hold);
        pthread_mutex_unlock(&st->lock);
        goto out;
    }
    struct journal_pos pos;
    struct objtab_entry en;
    uint32_t e = s3_find_live(st, digest, &en);
    struct fmt_record r;
    bool had_tomb = false;
    if (e != OBJTAB_NONE) {
        *created = false;
        if (st->gc_active && (en.flags & OBJTAB_MARKED)) {
            s3_record(st, &r, REC_UNMARK, digest);
            rc = s3_append(st, &r, 1, &pos, err, errlen);
            if (rc == 0)
                s3_unmark(st, e, &en);
        } else {
            journal_now(&st->journal, &pos);
        }
    } else {
        *created = true;
        /* Only a client's PUT lifts a tombstone: a copy met by one was
         * refused above, under this same hold of the lock. */
        had_tomb = s3_tomb_in_force(st, digest);
        assert(!(p->copy && had_tomb));
        s3_record(st, &r, REC_PUT, digest);
        r.size = p->received;
        rc = s3_append(st, &r, 1, &pos, err, errlen);
        if (rc == 0) {
            if (objtab_insert(&st->tab, digest, 0, 0, p->received, 0) == OBJTAB_NONE) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            } else {
                st->objects++;
                st->bytes += p->received;
                s3_tomb_clear(st, digest);
            }
        }
        if (rc < 0)
            unrecorded(st, p, digest, lifted);
    }
    if (held)
        s3_tomb_release(st, &hold);
    pthread_mutex_unlock(&st->lock);
    if (rc == 0 && sync)
        rc = s3_sync_to(st, &pos, err, errlen);
    if (rc == 0 && had_tomb && !lifted) {
        /* A tombstone that came after this write's check would have
         * refused it above (delete_seq): not expected; kept as before. */
        char terr[300];
        if (s3_bucket_tomb(st, digest, false, 0, terr, sizeof(terr)) < 0)
            log_warn("s3: cannot remove the tombstone of a key stored again: %s", terr);
    }
out:
    if (rc < 0)
        multipart_abort(p);
    s3_put_free(p);
    return rc;
}

/* ---- reads -------------------------------------------------------------------------------- */

/* Unmarks entry e in the active cycle, appending the record; caller holds
 * the lock. true when a record was appended (then sync to *pos). */
static bool s3_touch_entry(struct s3_store *st, uint32_t e, struct objtab_entry *en,
                           struct journal_pos *pos, int *rc, char *err, size_t errlen)
{
    if (!st->gc_active || !(en->flags & OBJTAB_MARKED))
        return false;
    struct fmt_record r;
    s3_record(st, &r, REC_UNMARK, en->digest);
    *rc = s3_append(st, &r, 1, pos, err, errlen);
    if (*rc == 0)
        s3_unmark(st, e, en);
    return *rc == 0;
}

int s3_open_obj(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
                uint64_t *size, char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    struct objtab_entry en;
    struct journal_pos pos;
    int rc = 0;
    bool synced = false;
    pthread_mutex_lock(&st->lock);
    uint32_t e = s3_find_live(st, key->digest, &en);
    if (e == OBJTAB_NONE) {
        pthread_mutex_unlock(&st->lock);
        snprintf(err, errlen, "no such object");
        return -ENOENT;
    }
    if (touch)
        synced = s3_touch_entry(st, e, &en, &pos, &rc, err, errlen);
    uint64_t sz = en.size;
    pthread_mutex_unlock(&st->lock);
    if (rc == 0 && synced)
        rc = s3_sync_to(st, &pos, err, errlen);
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

ssize_t s3_pread(struct store_obj *o, void *buf, size_t len, uint64_t off)
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
    if (len >= FMT_BLOCK) {
        /* A block (a ranged GET checked by the block table) or more: read
         * exactly that, no read-ahead past the range. */
        n = s3_bucket_range(o->st, o->digest, buf, len, off, off == 0 && len == o->size, err,
                            sizeof(err));
    } else {
        /* Read ahead: the routes read in small chunks, a request per chunk
         * would be slow. Bounded: one window per open object. */
        uint64_t want = o->size - off < S3_READ_WINDOW ? o->size - off : S3_READ_WINDOW;
        if (!o->win && !(o->win = malloc(S3_READ_WINDOW)))
            return -ENOMEM;
        o->win_len = 0;
        n = s3_bucket_range(o->st, o->digest, o->win, (size_t)want, off,
                            off == 0 && want == o->size, err, sizeof(err));
        if (n > 0) {
            o->win_off = off;
            o->win_len = (size_t)n;
            memcpy(buf, o->win, len);
            n = (ssize_t)len;
        }
    }
    if (n == -ENOENT) {
        s3_lost(o->st, o->digest);
        return -EIO;
    }
    if (n == -EBADMSG) {
        s3_quarantine_digest(o->st, o->digest, err);
        return -EIO;
    }
    if (n < 0)
        log_error("s3: read: %s", err);
    return n;
}

/* The object's per-block CRC-32C table from its sidecar in the bucket
 * (s3_sums.c); -ENOENT none, -EIO not trustworthy: the routes then check
 * the key. */
int s3_block_sums(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block)
{
    int rc = s3_sums_load(o->st, o->digest, o->size, sums, n);
    if (rc == 0)
        *block = FMT_BLOCK;
    return rc;
}

void s3_close_obj(struct store_obj *o)
{
    free(o->win);
    free(o);
}

void s3_quarantine(struct store_obj *o, const char *why)
{
    s3_quarantine_digest(o->st, o->digest, why);
}

/* Before "already stored": the copy must be intact. The bucket's bytes
 * cannot be checked without reading them all back (a HEAD tells the size,
 * not the content: an ETag is an MD5 only for single-part uploads, and the
 * index keeps none), while the client is sending the same bytes anyway: so
 * the answer is always "store them again" (-ENOENT), and the write's commit
 * overwrites objects/<hex> with the freshly verified bytes and answers
 * "already stored" (created false) once that is in the bucket. A PUT of the
 * right bytes over a bad copy therefore always replaces it. */
int s3_confirm(struct store_obj *o, bool sync, char *err, size_t errlen)
{
    (void)o;
    (void)sync;
    snprintf(err, errlen, "stored again over the bucket's copy");
    return -ENOENT;
}

int s3_stat(struct store *s, const struct cas_key *key, uint64_t *size)
{
    struct s3_store *st = s3_of(s);
    struct objtab_entry en;
    pthread_mutex_lock(&st->lock);
    bool found = s3_find_live(st, key->digest, &en) != OBJTAB_NONE;
    if (found)
        *size = en.size;
    pthread_mutex_unlock(&st->lock);
    return found ? 0 : -ENOENT;
}

/* ---- deletes --------------------------------------------------------------------------------- */

/* stamp: a client delete's (tomb), unix microseconds. */
static int remove_common(struct store *s, const struct cas_key *key, bool tomb, uint64_t stamp,
                         char *err, size_t errlen)
{
    struct s3_store *st = s3_of(s);
    int rc = s3_refuse_read_only(st, err, errlen);
    if (rc < 0)
        return rc;
    /* The tombstone goes to the bucket first (tombs/<hex>.deleted), so a --dir
     * rebuilt from the bucket keeps refusing copies of the key; if that
     * fails nothing has changed. The key's tombstone hold covers it and the
     * records: a client PUT lifting an older tombstone of the key comes
     * wholly before or after (tomb_hold). */
    if ((rc = s3_index_room(st, tomb ? 2 : 1, true, err, errlen)) < 0)
        return rc; /* before the bucket: a refused DELETE changes nothing */
    struct tomb_hold hold;
    pthread_mutex_lock(&st->lock);
    if (tomb) {
        s3_tomb_hold(st, &hold, key->digest);
        pthread_mutex_unlock(&st->lock);
        rc = s3_bucket_tomb(st, key->digest, true, stamp, err, errlen);
        pthread_mutex_lock(&st->lock);
        if (rc < 0) {
            s3_tomb_release(st, &hold);
            pthread_mutex_unlock(&st->lock);
            return rc;
        }
    }
    struct journal_pos pos;
    struct objtab_entry en;
    /* Another delete of the key in progress: wait for it, then see. */
    for (;;) {
        uint32_t e = objtab_find(&st->tab, key->digest);
        if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en) || !(en.flags & S3_DELETING))
            break;
        pthread_cond_wait(&st->changed, &st->lock);
    }
    uint32_t e = s3_find_live(st, key->digest, &en);
    bool found = e != OBJTAB_NONE;
    if (found)
        rc = s3_delete_entry(st, e, key->digest, &pos, err, errlen);
    if (rc == 0 && tomb) {
        /* Recorded even when the object is absent: a copy in flight to here
         * must not bring it back. */
        struct fmt_record r;
        s3_record(st, &r, REC_TOMB, key->digest);
        r.flags = TOMB_DELETED;
        r.aux = s3_now_s();
        r.size = stamp > TIME_MAX ? TIME_MAX : stamp;
        rc = s3_append(st, &r, 1, &pos, err, errlen);
        if (rc == 0)
            rc = s3_tomb_set_stamp(st, key->digest, TOMB_DELETED, r.size);
    } else if (rc == 0 && !found) {
        journal_now(&st->journal, &pos);
    }
    if (tomb)
        s3_tomb_release(st, &hold);
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        rc = s3_sync_to(st, &pos, err, errlen);
    if (rc == 0 && !found) {
        snprintf(err, errlen, "no such object");
        return -ENOENT;
    }
    return rc;
}

int s3_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_common(s, key, true, cas_stamp_now(), err, errlen);
}

int s3_remove_at(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                 size_t errlen)
{
    return remove_common(s, key, true, stamp, err, errlen);
}

int s3_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    return remove_common(s, key, false, 0, err, errlen);
}

int s3_quarantined(struct store *s, store_list_fn fn, void *cls)
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
/* One page in key order (store.h, objtab.h), from the in-memory table (the
 * bucket is listed only at open); the lock is held for one step of the
 * scan at a time, as in disk_list. */
int s3_list(struct store *s, const unsigned char *after, enum store_list_state state,
            uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
            size_t errlen)
{
    struct s3_store *st = s3_of(s);
    objtab_page_start(page, after);
    for (bool end = false; !end;) {
        pthread_mutex_lock(&st->lock);
        if (state == STORE_LIST_GARBAGE && !st->gc_active) {
            page->n = 0; /* no cycle (any more): no garbage */
            page->has_limit = false;
            end = true;
        } else {
            /* Objects a delete or gc/end is removing are gone already. */
            end = objtab_page_scan(page, &st->tab, S3_LIST_STEP, min_size, max_size, S3_DELETING,
                                   state == STORE_LIST_GARBAGE ? OBJTAB_MARKED : 0);
        }
        pthread_mutex_unlock(&st->lock);
    }
    objtab_page_finish(page);
    return 0;
}

/* ---- info, metrics, open, destroy
 * ----------------------------------------------------------------- */

void s3_info(struct store *s, struct store_info *o)
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
            else if (s3_tomb_entry_in_force(st, &en))
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

void s3_metrics(struct store *s, struct cas_buf *o)
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
        "# TYPE cas_s3_lost_objects_total counter\ncas_s3_lost_objects_total %" PRIu64 "\n"
        "# HELP cas_s3_block_tables_rewritten_total Block tables (sums/<hex>.crc32c) the scrubber "
        "wrote for intact objects (missing, damaged or wrong).\n"
        "# TYPE cas_s3_block_tables_rewritten_total counter\n"
        "cas_s3_block_tables_rewritten_total %" PRIu64 "\n",
        __atomic_load_n(&st->cli.requests, __ATOMIC_RELAXED),
        __atomic_load_n(&st->cli.retries, __ATOMIC_RELAXED),
        __atomic_load_n(&st->cli.failures, __ATOMIC_RELAXED),
        __atomic_load_n(&st->lost, __ATOMIC_RELAXED),
        __atomic_load_n(&st->scrub_tables, __ATOMIC_RELAXED));
}
