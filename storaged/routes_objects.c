/*
 * routes_objects.c - storing and serving objects over HTTP.
 *
 * Reads are verified: a small object (up to 1 MiB) is read whole and checked
 * against its key before the first byte goes out (a corrupt one answers
 * 404). A large one, or a range of it, is served block by block, each 1 MiB
 * block checked against the CRC-32C the store recorded when the object was
 * written (after checking the whole object against its key), before any of
 * its bytes go out; a bad block cuts the connection, so a corrupt object
 * never arrives complete. A backend without block checksums (or with a
 * damaged table) is checked against the key as the bytes stream, the last
 * chunk held back until the digest is known. Either way a corrupt object is
 * taken out of service. The first block of a large read (the first chunk,
 * without a table) is read, and checked, before the answer's head: a copy
 * whose first block is bad answers 404, one that cannot be read (a file or
 * bucket object gone, a hung S3 server) 500, so a balancer moves on to
 * another copy instead of relaying a 200 that is cut at once.
 */
#define _GNU_SOURCE
#include "routes.h"
#include "objtab.h"
#include "crc32c.h"
#include "json.h"
#include "log.h"
#include "multipart.h"
#include "num.h"
#include "range.h"
#include "stamp.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SMALL_OBJECT (1024 * 1024)
#define READ_CHUNK (256 * 1024)
#define SPILL_AT (1024 * 1024)

unsigned storaged_status(int rc)
{
    switch (rc) {
    case -EINVAL:
        return 400;
    case -ENOENT:
        return 404;
    case -EBUSY:
    case -ESTALE:
        return 409;
    case -EFBIG:
        return 413;
    case -EBADMSG:
        return 422;
    case -ECANCELED:
        return 410;
    case -EROFS:
        return 503;
    case -ENOSPC:
        return 507;
    default:
        return 500;
    }
}

static struct storaged *app_of(struct http_req *req)
{
    return req->app;
}

/* Parses the route's key; answers 400 and returns false when it is bad. */
static bool parse_key(struct http_req *req, struct cas_key *key)
{
    char err[512];
    if (cas_key_parse(req->param, req->param_len, app_of(req)->store->algo, key, err, sizeof(err)) <
        0) {
        http_error(req, 400, "%s", err);
        return false;
    }
    return true;
}

/* While a GC cycle is active, says so (X-CAS-GC: <id>): a balancer that
 * reads or writes through this node learns of the cycle at once and unmarks
 * the object on its other holders too. */
static void add_gc_header(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    uint64_t id;
    if (store_gc_active(s, &id)) {
        char v[24];
        snprintf(v, sizeof(v), "%" PRIu64, id);
        http_add_header(req, "X-CAS-GC", v);
    }
}

static void add_object_headers(struct http_req *req, const char *hex)
{
    char etag[CAS_MAX_HEX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", hex);
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Accept-Ranges", "bytes");
    http_add_header(req, "Cache-Control", "public, max-age=31536000, immutable");
    add_gc_header(req);
}

/* ---- writes ------------------------------------------------------------ */

enum put_kind { PUT_KEYED, POST_PLAIN, POST_CASK };

struct put_ctx {
    struct store *store;
    struct store_put *put;
    enum put_kind kind;
    struct mp_reader *mp; /* multipart Cask uploads (common/multipart.c) */
    int rc;
    char err[512];
};

static void put_cleanup(struct http_req *req)
{
    struct put_ctx *c = req->ctx;
    if (c->put)
        store_put_abort(c->store, c->put);
    free(c->mp);
    free(c);
}

static void put_fail(struct http_req *req, int rc, const char *msg)
{
    struct put_ctx *c = req->ctx;
    if (c->put) {
        store_put_abort(c->store, c->put);
        c->put = NULL;
    }
    http_error(req, storaged_status(rc), "%s", *msg ? msg : strerror(-rc));
}

static int put_body(struct http_req *req, const char *data, size_t len)
{
    struct put_ctx *c = req->ctx;
    int rc = store_put_write(c->store, c->put, data, len, c->err, sizeof(c->err));
    if (rc < 0) {
        put_fail(req, rc, c->err);
        return -1;
    }
    return 0;
}

/* The bytes of the form's "file" part go to the store as they come. */
static int cask_part(void *cls, const char *data, size_t len, uint64_t off)
{
    (void)off;
    return put_body(cls, data, len) < 0 ? -EIO : 0;
}

static int cask_body(struct http_req *req, const char *data, size_t len)
{
    struct put_ctx *c = req->ctx;
    if (mp_feed(c->mp, data, len) < 0) {
        if (!req->resp) /* else put_body has answered already */
            put_fail(req, -EINVAL, c->mp->err);
        return -1;
    }
    return req->resp ? -1 : 0;
}

static void put_done(struct http_req *req)
{
    struct put_ctx *c = req->ctx;
    if (c->mp && mp_finish(c->mp) < 0) { /* no closing boundary, no file part */
        put_fail(req, -EINVAL, c->mp->err);
        return;
    }
    struct cas_key key;
    bool created = false;
    const char *sync = http_query(req, "sync");
    bool durable = !(sync && strcmp(sync, "0") == 0);
    struct store_put *p = c->put;
    c->put = NULL;
    int rc = store_put_commit(c->store, p, durable, &key, &created, c->err, sizeof(c->err));
    if (rc < 0) {
        put_fail(req, rc, c->err);
        return;
    }
    char hex[CAS_MAX_HEX + 1], loc[CAS_MAX_HEX + 16];
    cas_key_hex(&key, hex);
    snprintf(loc, sizeof(loc), "/objects/%s", hex);
    struct cas_buf b;
    cas_buf_init(&b);
    if (c->kind == POST_CASK) {
        cas_buf_printf(&b, "{\"key\":\"%s:%s\",\"success\":true}\n", key.algo->name, hex);
        http_reply_buf(req, 201, "application/json", &b);
    } else {
        cas_buf_printf(&b, "%s\n", hex);
        http_reply_buf(req, c->kind == PUT_KEYED && !created ? 200 : 201, "text/plain", &b);
    }
    http_add_header(req, "Location", loc);
    http_add_header(req, "X-CAS-Copies", "1"); /* one durable copy: this disk's */
    add_gc_header(req);
}

/* ?replica=1 on PUT and DELETE of /objects/{key}: the request comes from a
 * balancer or rebalance moving copies between replicas, not from a client
 * (docs/OPERATIONS.md, "What a DELETE promises"). Sets *out; false (400
 * sent) when the value is not 0 or 1. */
static bool replica_query(struct http_req *req, bool *out)
{
    const char *v = http_query(req, "replica");
    *out = v && strcmp(v, "1") == 0;
    if (v && strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
        http_error(req, 400, "query parameter replica=\"%s\" must be 0 or 1", v);
        return false;
    }
    return true;
}

/* The query of a write, checked before anything else (a stored object's
 * PUT included, docs/API.md): sync (0 or 1, default 1) and, for PUT
 * /objects/{key}, replica. False when it answered 400. */
static bool put_query(struct http_req *req, enum put_kind kind, bool *durable, bool *copy)
{
    const char *sync = http_query(req, "sync");
    *durable = true;
    *copy = false;
    if (sync && cas_parse_bit(sync, durable) < 0) {
        http_error(req, 400, "sync=\"%s\": want 0 or 1", sync);
        return false;
    }
    return kind != PUT_KEYED || replica_query(req, copy);
}

/* The request's write stamp (common/stamp.h): its X-CAS-Timestamp, checked
 * strictly, or this node's clock now (a client talking to it directly).
 * False when it answered 400. */
static bool request_stamp(struct http_req *req, bool is_delete, uint64_t *stamp)
{
    const char *v = http_header(req, CAS_STAMP_HEADER);
    uint64_t now = cas_stamp_now();
    char err[256];
    *stamp = now;
    if (v && cas_stamp_parse(v, now, is_delete, stamp, err, sizeof(err)) < 0) {
        http_error(req, 400, "%s", err);
        return false;
    }
    return true;
}

/* Starts a write whose query (put_query: copy) and stamp (request_stamp)
 * the caller has checked. */
static void begin_put(struct http_req *req, const struct cas_key *expect, enum put_kind kind,
                      bool copy, uint64_t stamp)
{
    struct storaged *app = app_of(req);
    struct put_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        http_error(req, 500, "out of memory");
        return;
    }
    c->store = app->store;
    c->kind = kind;
    req->ctx = c;
    req->cleanup = put_cleanup;
    uint64_t hint = req->has_length ? req->content_length : UINT64_MAX;
    if (kind == POST_CASK) {
        const char *ct = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (mp_is_form(ct)) {
            c->mp = malloc(sizeof(*c->mp));
            if (!c->mp) {
                http_error(req, 500, "out of memory");
                return;
            }
            if (mp_init(c->mp, ct, cask_part, req, c->err, sizeof(c->err)) < 0) {
                http_error(req, 400, "%s", c->err);
                return;
            }
            hint = UINT64_MAX; /* the part is smaller than the body */
        }
    }
    int rc = store_put_begin(app->store, expect, hint, &c->put, c->err, sizeof(c->err));
    if (rc == 0) {
        /* A copy is refused by any tombstone in force; a client's write by
         * one of a delete sent after it. */
        rc = copy ? store_put_copy(app->store, c->put, c->err, sizeof(c->err))
                  : store_put_stamp(app->store, c->put, stamp, c->err, sizeof(c->err));
        if (rc < 0) {
            store_put_abort(app->store, c->put);
            c->put = NULL;
        }
    }
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", c->err);
        return;
    }
    req->on_body = c->mp ? cask_body : put_body;
    req->on_done = put_done;
}

static void start_put(struct http_req *req, const struct cas_key *expect, enum put_kind kind)
{
    bool durable, copy;
    uint64_t stamp;
    /* put_done reads sync once it is valid */
    if (put_query(req, kind, &durable, &copy) && request_stamp(req, false, &stamp))
        begin_put(req, expect, kind, copy, stamp);
}

static void reply_key(struct http_req *req, unsigned status, const struct cas_key *key)
{
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(key, hex);
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(&b, "%s\n", hex);
    http_reply_buf(req, status, "text/plain", &b);
    if (status == 200 || status == 201)
        http_add_header(req, "X-CAS-Copies", "1");
    add_gc_header(req);
}

/* A PUT of a key already stored, at its head: the body is hashed as it
 * streams in and dropped (nothing is written), and the answer waits for
 * its end: a body that does not hash to the key (or is longer than the
 * stored object) is a 422 like any write's; one that does is a use of the
 * object counted again at the end, and a 200 only if the object is still
 * stored then (a DELETE or gc/end can remove it while the body arrives:
 * then 409 and nothing stored, as for a write a DELETE overtook; SPEC,
 * "GC semantics": a 200 during a cycle must leave the object alive). */
struct drain {
    struct cas_key key;
    struct cas_hash *hash;
    uint64_t size, received; /* the stored object's bytes; the body's so far */
    bool durable;
};

static void drain_free(struct http_req *req)
{
    struct drain *d = req->ctx;
    cas_hash_free(d->hash);
    free(d);
}

static void drain_mismatch(struct http_req *req, const char *why)
{
    struct drain *d = req->ctx;
    char want[CAS_MAX_HEX + 1];
    cas_key_hex(&d->key, want);
    http_error(req, 422, "digest mismatch: the body %s %s (nothing stored)", why, want);
}

static int drain_body(struct http_req *req, const char *data, size_t len)
{
    struct drain *d = req->ctx;
    if (len > d->size - d->received) {
        drain_mismatch(req, "is longer than the stored object");
        return -1;
    }
    d->received += len;
    cas_hash_update(d->hash, data, len);
    return 0;
}

static void drained(struct http_req *req)
{
    struct drain *d = req->ctx;
    struct storaged *app = app_of(req);
    unsigned char got[CAS_MAX_DIGEST];
    cas_hash_final(d->hash, got);
    if (d->received != d->size || memcmp(got, d->key.digest, d->key.algo->digest_len) != 0) {
        char hex[CAS_MAX_HEX + 1], why[CAS_MAX_HEX + 40];
        cas_hex_encode(got, d->key.algo->digest_len, hex);
        snprintf(why, sizeof(why), "hashes to %s, not", hex);
        drain_mismatch(req, why);
        return;
    }
    struct store_obj *o;
    uint64_t size;
    char err[256];
    int rc = store_open(app->store, &d->key, true, &o, &size, err, sizeof(err));
    if (rc == 0) {
        rc = store_confirm(app->store, o, d->durable, err, sizeof(err));
        store_close(app->store, o);
    }
    if (rc == -ENOENT) {
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&d->key, hex);
        http_error(req, 409,
                   "object %s was removed here (a DELETE, gc/end, or its copy failed its check) "
                   "while this write's body was arriving: nothing stored (send it again to store it)",
                   hex);
        return;
    }
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    reply_key(req, 200, &d->key);
}

void route_put(struct http_req *req)
{
    struct cas_key key;
    if (!parse_key(req, &key))
        return;
    struct storaged *app = app_of(req);
    /* Already stored: count it as a use for GC and answer at once, once the
     * stored copy has passed its check and is durable (unless ?sync=0).
     * With "Expect: 100-continue" the client never sends the body;
     * otherwise the body is read and dropped. A copy that fails the check
     * is taken out of service and the body stored in its place. */
    struct store_obj *o;
    uint64_t size;
    char err[256];
    bool durable, copy;
    uint64_t stamp; /* checked first: a bad one is a 400 whatever the store holds */
    if (!put_query(req, PUT_KEYED, &durable, &copy) || !request_stamp(req, false, &stamp))
        return;
    int rc = store_open(app->store, &key, true, &o, &size, err, sizeof(err));
    if (rc == 0) {
        rc = store_confirm(app->store, o, durable, err, sizeof(err));
        store_close(app->store, o);
    }
    if (rc < 0 && rc != -ENOENT) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    if (rc == 0) {
        /* "Expect: 100-continue": the final answer now, the body never sent. */
        const char *expect = http_header(req, MHD_HTTP_HEADER_EXPECT);
        if (expect && strcasestr(expect, "100-continue")) {
            reply_key(req, 200, &key);
            return;
        }
        struct drain *d = calloc(1, sizeof(*d));
        if (!d || !(d->hash = cas_hash_new(key.algo))) {
            free(d);
            http_error(req, 500, "out of memory");
            return;
        }
        d->key = key;
        d->size = size;
        d->durable = durable;
        req->ctx = d;
        req->cleanup = drain_free;
        if (req->has_length && req->content_length != size) {
            drain_mismatch(req, "is not the size of the stored object");
            return;
        }
        req->on_body = drain_body;
        req->on_done = drained;
        return;
    }
    begin_put(req, &key, PUT_KEYED, copy, stamp);
}

void route_post(struct http_req *req)
{
    start_put(req, NULL, POST_PLAIN);
}

void route_post_cask(struct http_req *req)
{
    start_put(req, NULL, POST_CASK);
}

/* ---- reads ------------------------------------------------------------- */

struct vread {
    struct store *store;
    struct store_obj *obj;
    struct cas_hash *hash;
    struct cas_key key;
    uint64_t size, start, end; /* send [start, end) of size */
    uint64_t hashed;           /* bytes of the object hashed so far */
    char *scratch;             /* for bytes hashed but not sent */
    struct storaged *app;
    /* Block mode: each block is checked against its CRC-32C before any of
     * its bytes go out. */
    uint32_t *sums;
    size_t nsums;
    uint64_t block_size, cached; /* block held in scratch, UINT64_MAX none */
    /* Hash mode: the first bytes of the range, read before the head. */
    char *first;
    size_t first_len;
};

static void vread_free(void *cls)
{
    struct vread *v = cls;
    store_close(v->store, v->obj);
    cas_hash_free(v->hash);
    free(v->scratch);
    free(v->first);
    free(v->sums);
    free(v);
}

static void vread_corrupt(struct vread *v, const char *why)
{
    store_quarantine(v->store, v->obj, why);
    __atomic_fetch_add(&v->app->verify_failures, 1, __ATOMIC_RELAXED);
}

/* Loads block b into scratch and checks it against its CRC-32C: 0,
 * -ENOMEM, -EIO (cannot be read; logged) or -EBADMSG (does not match; the
 * copy is quarantined). */
static int block_load(struct vread *v, uint64_t b)
{
    uint64_t bstart = b * v->block_size;
    size_t blen =
        v->size - bstart < v->block_size ? (size_t)(v->size - bstart) : (size_t)v->block_size;
    if (!v->scratch && !(v->scratch = malloc(v->block_size)))
        return -ENOMEM;
    ssize_t n = store_pread(v->store, v->obj, v->scratch, blen, bstart);
    if (n != (ssize_t)blen) {
        log_error("read error serving an object: %s", n < 0 ? strerror((int)-n) : "short");
        return -EIO;
    }
    if (b >= v->nsums || htole32(cas_crc32c(0, v->scratch, blen)) != v->sums[b]) {
        vread_corrupt(v, "a block does not match its checksum (caught while serving)");
        return -EBADMSG;
    }
    v->cached = b;
    return 0;
}

/* Block mode reader: loads, checks and serves one block at a time. */
static ssize_t block_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct vread *v = cls;
    uint64_t at = v->start + pos;
    if (at >= v->end)
        return HTTP_STREAM_END;
    uint64_t b = at / v->block_size, bstart = b * v->block_size;
    size_t blen =
        v->size - bstart < v->block_size ? (size_t)(v->size - bstart) : (size_t)v->block_size;
    if (b != v->cached && block_load(v, b) < 0)
        return HTTP_STREAM_ERROR;
    uint64_t upto = bstart + blen < v->end ? bstart + blen : v->end;
    size_t n = upto - at < max ? (size_t)(upto - at) : max;
    memcpy(buf, v->scratch + (at - bstart), n);
    return (ssize_t)n;
}

/* Hashes object bytes [v->hashed, upto) without sending them. */
static int hash_through(struct vread *v, uint64_t upto)
{
    if (v->hashed >= upto)
        return 0;
    if (!v->scratch && !(v->scratch = malloc(READ_CHUNK)))
        return -ENOMEM;
    while (v->hashed < upto) {
        size_t want = upto - v->hashed > READ_CHUNK ? READ_CHUNK : (size_t)(upto - v->hashed);
        ssize_t n = store_pread(v->store, v->obj, v->scratch, want, v->hashed);
        if (n <= 0)
            return n < 0 ? (int)n : -EIO;
        cas_hash_update(v->hash, v->scratch, (size_t)n);
        v->hashed += (uint64_t)n;
    }
    return 0;
}

static bool vread_check(struct vread *v)
{
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_final(v->hash, d);
    if (memcmp(d, v->key.digest, v->key.algo->digest_len) == 0)
        return true;
    vread_corrupt(v, "bytes do not match the key (caught while serving)");
    return false;
}

static ssize_t vread_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct vread *v = cls;
    uint64_t at = v->start + pos;
    if (at >= v->end)
        return HTTP_STREAM_END;
    if (hash_through(v, at) < 0 || v->hashed != at)
        return HTTP_STREAM_ERROR; /* never out of order: refuse rather than guess */
    size_t want = v->end - at < max ? (size_t)(v->end - at) : max;
    ssize_t n;
    if (at < v->start + v->first_len) { /* read before the head */
        size_t off = (size_t)(at - v->start);
        n = (ssize_t)(v->first_len - off < want ? v->first_len - off : want);
        memcpy(buf, v->first + off, (size_t)n);
    } else {
        n = store_pread(v->store, v->obj, buf, want, at);
    }
    if (n <= 0) {
        log_error("read error serving an object: %s", n < 0 ? strerror((int)-n) : "short file");
        return HTTP_STREAM_ERROR;
    }
    cas_hash_update(v->hash, buf, (size_t)n);
    v->hashed += (uint64_t)n;
    if (at + (uint64_t)n == v->end) {
        /* The last chunk goes out only once every byte has been checked. */
        if (hash_through(v, v->size) < 0 || !vread_check(v))
            return HTTP_STREAM_ERROR;
    }
    return n;
}

/*
 * Reads the first block of a large read (block mode: the block holding
 * v->start, checked against its CRC-32C; hash mode: up to READ_CHUNK bytes
 * from v->start, held for vread_read) before the answer's head. False when
 * it answered with an error instead: 404 for a bad block (the copy is
 * quarantined), 500 when the bytes cannot be read.
 */
static bool read_first_block(struct http_req *req, struct vread *v, bool block_mode)
{
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&v->key, hex);
    int rc = 0;
    if (block_mode) {
        rc = block_load(v, v->start / v->block_size);
    } else if (v->end > v->start) {
        size_t want = v->end - v->start > READ_CHUNK ? READ_CHUNK : (size_t)(v->end - v->start);
        ssize_t n = -ENOMEM;
        if ((v->first = malloc(want)))
            n = store_pread(v->store, v->obj, v->first, want, v->start);
        if (n == (ssize_t)want) {
            v->first_len = want;
        } else {
            rc = n == -ENOMEM ? -ENOMEM : -EIO;
            log_error("read error serving %s: %s", hex, n < 0 ? strerror((int)-n) : "short");
        }
    }
    if (rc == -EBADMSG)
        http_error(req, 404, "object %s not found (its copy here was corrupt)", hex);
    else if (rc < 0)
        http_error(req, 500, "cannot read object %s: %s", hex,
                   rc == -ENOMEM ? "out of memory" : "read error (logged)");
    return rc == 0;
}

/* Serves a small object (or a range of it) from memory, verified first.
 * False when it answered with an error instead. */
static bool serve_small(struct http_req *req, struct vread *v, unsigned status)
{
    char *data = malloc(v->size ? v->size : 1);
    if (!data) {
        http_error(req, 500, "out of memory");
        return false;
    }
    ssize_t n = v->size ? store_pread(v->store, v->obj, data, v->size, 0) : 0;
    if (n != (ssize_t)v->size) {
        free(data);
        http_error(req, 500, "cannot read the object: %s", n < 0 ? strerror((int)-n) : "short");
        return false;
    }
    cas_hash_update(v->hash, data, v->size);
    if (!vread_check(v)) {
        free(data);
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&v->key, hex);
        http_error(req, 404, "object %s not found (its copy here was corrupt)", hex);
        return false;
    }
    if (v->start)
        memmove(data, data + v->start, v->end - v->start);
    http_reply_owned(req, status, "application/octet-stream", data, v->end - v->start);
    return true;
}

void route_get(struct http_req *req)
{
    struct cas_key key;
    if (!parse_key(req, &key))
        return;
    struct storaged *app = app_of(req);
    char err[512] = "", hex[CAS_MAX_HEX + 1];
    cas_key_hex(&key, hex);
    struct store_obj *obj;
    uint64_t size;
    int rc = store_open(app->store, &key, !req->is_head, &obj, &size, err, sizeof(err));
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    struct vread *v = calloc(1, sizeof(*v));
    if (!v || !(v->hash = cas_hash_new(key.algo))) {
        free(v);
        store_close(app->store, obj);
        http_error(req, 500, "out of memory");
        return;
    }
    *v = (struct vread){.store = app->store,
                        .obj = obj,
                        .hash = v->hash,
                        .key = key,
                        .size = size,
                        .start = 0,
                        .end = size,
                        .app = app};

    /* RFC 9110 preconditions (common/httpd.h): 304 with the headers a 200
     * would carry, 412, or If-Range not matching: the whole object. */
    bool use_range = true;
    unsigned pre = http_preconditions(req, hex, &use_range);
    if (pre) {
        vread_free(v);
        if (pre == 304) {
            http_reply_not_modified(req, size);
            add_object_headers(req, hex);
        } else {
            http_error(req, 412, "precondition failed: object %s has ETag \"%s\"", hex, hex);
        }
        return;
    }
    unsigned status = 200;
    /* Range is for GET only (RFC 9110 section 14.2): a HEAD gets the
     * whole object's head, as a balancer answers it. */
    int r = use_range && !req->is_head
                ? range_parse(http_header(req, MHD_HTTP_HEADER_RANGE), size, &v->start, &v->end)
                : 1;
    if (r < 0) {
        vread_free(v);
        char cr[64];
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        http_error(req, 416, "range not satisfiable: object %s has %" PRIu64 " bytes", hex, size);
        http_add_header(req, "Content-Range", cr);
        return;
    }
    char cr[96] = "";
    if (r == 0) {
        status = 206;
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, v->start, v->end - 1,
                 size);
    }
    if (req->is_head) {
        /* Headers only: Content-Length is the size; the reader never runs. */
        http_reply_stream(req, status, "application/octet-stream", v->end - v->start, vread_read, v,
                          vread_free);
    } else if (size <= SMALL_OBJECT) {
        bool ok = serve_small(req, v, status);
        vread_free(v);
        if (!ok)
            return;
    } else {
        /* Large: block by block against the CRC-32C table when the backend
         * keeps one (and trusts it for this range), else against the key
         * as the bytes stream. */
        http_reader_fn reader = vread_read;
        v->cached = UINT64_MAX;
        if (store_sums_serve(app->store, v->start, v->end, size) &&
            store_block_sums(app->store, obj, &v->sums, &v->nsums, &v->block_size) == 0)
            reader = block_read;
        if (!read_first_block(req, v, reader == block_read)) {
            vread_free(v);
            return;
        }
        http_reply_stream(req, status, "application/octet-stream", v->end - v->start, reader, v,
                          vread_free);
    }
    add_object_headers(req, hex);
    if (*cr)
        http_add_header(req, "Content-Range", cr);
}

void route_bad_key(struct http_req *req)
{
    struct cas_key key;
    parse_key(req, &key); /* always fails: the segment holds a slash */
}

void route_delete(struct http_req *req)
{
    struct cas_key key;
    if (!parse_key(req, &key))
        return;
    struct storaged *app = app_of(req);
    char err[512] = "";
    bool replica;
    uint64_t stamp;
    if (!replica_query(req, &replica) || !request_stamp(req, !replica, &stamp))
        return;
    /* A client's delete leaves a tombstone; a rebalance dropping a copy
     * outside the object's home does not. */
    int rc = replica ? store_drop(app->store, &key, err, sizeof(err))
                     : store_remove(app->store, &key, stamp, err, sizeof(err));
    if (rc < 0)
        http_error(req, storaged_status(rc), "%s", err);
    else
        http_reply(req, 204, NULL, "", 0);
}

/* ---- key lists in request bodies ---------------------------------------- */

int keylines_feed(struct keylines *kl, const char *data, size_t len,
                  int (*fn)(void *cls, const char *line, size_t len, uint64_t lineno), void *cls)
{
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        /* An overlong line keeps its first bytes, however the body was cut
         * into chunks: the 400 then quotes the start of that line. */
        size_t room = kl->plen < sizeof(kl->partial) - 1 ? sizeof(kl->partial) - 1 - kl->plen : 0;
        size_t take = n < room ? n : room;
        if (take)
            memcpy(kl->partial + kl->plen, data, take);
        if (n > room)
            kl->overlong = true;
        kl->plen += n;
        if (!nl)
            return 0;
        data += n + 1;
        len -= n + 1;
        kl->lineno++;
        size_t l = kl->overlong ? sizeof(kl->partial) - 1 : kl->plen;
        if (l && kl->partial[l - 1] == '\r')
            l--;
        int rc = 0;
        if (l || kl->overlong)
            rc = fn(cls, kl->partial, l, kl->lineno);
        kl->plen = 0;
        kl->overlong = false;
        if (rc)
            return rc;
    }
    return 0;
}

int keylines_finish(struct keylines *kl,
                    int (*fn)(void *cls, const char *line, size_t len, uint64_t lineno), void *cls)
{
    if (!kl->plen)
        return 0;
    return keylines_feed(kl, "\n", 1, fn, cls);
}

/* ---- POST /objects/missing --------------------------------------------- */

/* The answer grows in memory up to SPILL_AT, then moves to an unlinked
 * temporary file, so a body of millions of keys needs no more memory. Keys
 * are looked up MISSING_BATCH at a time: in a GC cycle the store unmarks
 * the found ones of a batch together (one index append, one sync). */
#define MISSING_BATCH 4096

struct missing_ctx {
    struct keylines kl;
    struct storaged *app;
    struct cas_buf out;
    FILE *spill;
    uint64_t spilled;
    struct cas_key keys[MISSING_BATCH];
    bool present[MISSING_BATCH];
    size_t n;
    char err[512];
};

static void missing_cleanup(struct http_req *req)
{
    struct missing_ctx *c = req->ctx;
    cas_buf_free(&c->out);
    if (c->spill)
        fclose(c->spill);
    free(c);
}

/* Appends one missing key to the answer. */
static int missing_emit(struct missing_ctx *c, const struct cas_key *key)
{
    char hex[CAS_MAX_HEX + 2];
    cas_key_hex(key, hex);
    size_t hl = strlen(hex);
    hex[hl++] = '\n';
    if (!c->spill && c->out.len + hl > SPILL_AT) {
        c->spill = tmpfile();
        if (!c->spill || fwrite(c->out.data, 1, c->out.len, c->spill) != c->out.len) {
            snprintf(c->err, sizeof(c->err), "cannot spool the answer to a temporary file");
            return -2;
        }
        c->spilled = c->out.len;
        cas_buf_free(&c->out);
    }
    if (c->spill) {
        if (fwrite(hex, 1, hl, c->spill) != hl) {
            snprintf(c->err, sizeof(c->err), "cannot spool the answer to a temporary file");
            return -2;
        }
        c->spilled += hl;
    } else {
        cas_buf_append(&c->out, hex, hl);
    }
    return 0;
}

/* Looks the batch up (a use of each found key in a GC cycle, durable on
 * return) and answers the keys not stored. */
static int missing_flush(struct missing_ctx *c)
{
    struct store *st = c->app->store;
    if (!c->n)
        return 0;
    char err[400] = "";
    int rc = store_use_keys(st, c->keys, c->n, c->present, err, sizeof(err));
    if (rc < 0) {
        snprintf(c->err, sizeof(c->err), "%s", *err ? err : strerror(-rc));
        c->n = 0;
        return -2;
    }
    for (size_t i = 0; i < c->n && rc == 0; i++)
        if (!c->present[i])
            rc = missing_emit(c, &c->keys[i]);
    c->n = 0;
    return rc;
}

static int missing_line(void *cls, const char *line, size_t len, uint64_t lineno)
{
    struct missing_ctx *c = cls;
    char err[400];
    if (cas_key_parse(line, len, c->app->store->algo, &c->keys[c->n], err, sizeof(err)) < 0) {
        snprintf(c->err, sizeof(c->err), "line %" PRIu64 ": %s", lineno, err);
        return -1;
    }
    if (++c->n == MISSING_BATCH)
        return missing_flush(c);
    return 0;
}

static int missing_body(struct http_req *req, const char *data, size_t len)
{
    struct missing_ctx *c = req->ctx;
    int rc = keylines_feed(&c->kl, data, len, missing_line, c);
    if (rc) {
        http_error(req, rc == -1 ? 400 : 500, "%s", c->err);
        return -1;
    }
    return 0;
}

static ssize_t spill_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    FILE *f = cls;
    size_t n = fread(buf, 1, max, f);
    return n ? (ssize_t)n : (ferror(f) ? HTTP_STREAM_ERROR : HTTP_STREAM_END);
}

static void spill_close(void *cls)
{
    fclose(cls);
}

static void missing_done(struct http_req *req)
{
    struct missing_ctx *c = req->ctx;
    int rc = keylines_finish(&c->kl, missing_line, c);
    if (!rc)
        rc = missing_flush(c);
    if (rc) {
        http_error(req, rc == -1 ? 400 : 500, "%s", c->err);
        return;
    }
    if (c->spill) {
        fflush(c->spill);
        rewind(c->spill);
        FILE *f = c->spill;
        c->spill = NULL;
        http_reply_stream(req, 200, "text/plain", c->spilled, spill_read, f, spill_close);
    } else {
        http_reply_buf(req, 200, "text/plain", &c->out);
    }
}

void route_missing(struct http_req *req)
{
    struct missing_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        http_error(req, 500, "out of memory");
        return;
    }
    c->app = app_of(req);
    cas_buf_init(&c->out);
    req->ctx = c;
    req->cleanup = missing_cleanup;
    req->on_body = missing_body;
    req->on_done = missing_done;
}

/* ---- GET /objects (list) ----------------------------------------------- */

/* Keys per page of a listing by default (objtab.h; --list-page-keys): the
 * store's objects / LIST_SCANS, at least LIST_PAGE_KEYS (about 1.8 MiB for
 * SHA-1 keys, 2.5 MiB for SHA-256) and at most LIST_PAGE_MAX. Each page is
 * one scan of the store's table (docs/OPERATIONS.md "Listing order and
 * memory"): a fixed page would make a listing's time grow with the square
 * of the objects (6 s at 4M objects, minutes at 40M); this keeps it to
 * about LIST_SCANS scans, for memory of about 1/50 of the table's. */
#define LIST_PAGE_KEYS 65536
#define LIST_PAGE_MAX 16777216
#define LIST_SCANS 32
/* Lines formatted per call for the HTTP layer. */
#define LIST_LINES 2048

struct list_ctx {
    struct store *store;
    enum store_list_state state;
    uint64_t min_size, max_size;
    struct store_cursor cursor;
    struct objtab_page page;
    size_t page_pos; /* keys of the page already formatted */
    struct cas_buf buf;
    size_t bufpos;
};

static ssize_t list_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct list_ctx *c = cls;
    size_t dlen = c->page.digest_len;
    while (c->bufpos == c->buf.len) {
        cas_buf_reset(&c->buf);
        c->bufpos = 0;
        if (c->page_pos == c->page.n) {
            if (c->cursor.done)
                return HTTP_STREAM_END;
            char err[512] = "";
            c->page_pos = 0;
            int rc = store_list_page(c->store, &c->cursor, c->state, c->min_size, c->max_size,
                                     &c->page, err, sizeof(err));
            if (rc < 0) {
                /* Mid-stream: the 200 is gone, so the listing is cut short
                 * (the client sees no final chunk) rather than shown complete. */
                log_error("list: %s", *err ? err : strerror(-rc));
                return HTTP_STREAM_ERROR;
            }
        }
        for (size_t k = 0; k < LIST_LINES && c->page_pos < c->page.n; k++, c->page_pos++) {
            /* "<hex> <size>\n" by hand: printf was a fifth of a listing's CPU. */
            char line[CAS_MAX_HEX + 24], digits[20];
            cas_hex_encode(objtab_page_key(&c->page, c->page_pos), dlen, line);
            size_t len = 2 * dlen, nd = 0;
            line[len++] = ' ';
            uint64_t v = objtab_page_size(&c->page, c->page_pos);
            do
                digits[nd++] = (char)('0' + v % 10);
            while ((v /= 10) != 0);
            while (nd)
                line[len++] = digits[--nd];
            line[len++] = '\n';
            cas_buf_append(&c->buf, line, len);
        }
    }
    size_t n = c->buf.len - c->bufpos < max ? c->buf.len - c->bufpos : max;
    memcpy(out, c->buf.data + c->bufpos, n);
    c->bufpos += n;
    return (ssize_t)n;
}

static void list_free(void *cls)
{
    struct list_ctx *c = cls;
    cas_buf_free(&c->buf);
    objtab_page_free(&c->page);
    free(c);
}

static bool query_u64(struct http_req *req, const char *name, uint64_t *out)
{
    const char *v = http_query(req, name);
    if (!v)
        return true;
    if (cas_parse_u64(v, out) < 0) {
        http_error(req, 400,
                   "query parameter %s=\"%s\" is not a number from 0 to "
                   "18446744073709551615",
                   name, v);
        return false;
    }
    return true;
}

void route_list(struct http_req *req)
{
    struct list_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        http_error(req, 500, "out of memory");
        return;
    }
    c->store = app_of(req)->store;
    c->max_size = UINT64_MAX;
    const char *state = http_query(req, "state");
    if (state && strcmp(state, "garbage") == 0) {
        c->state = STORE_LIST_GARBAGE;
    } else if (state && strcmp(state, "live") != 0) {
        free(c);
        http_error(req, 400, "state=\"%s\": want live or garbage", state);
        return;
    }
    if (!query_u64(req, "min_size", &c->min_size) || !query_u64(req, "max_size", &c->max_size)) {
        free(c);
        return;
    }
    size_t page_keys = app_of(req)->list_page_keys;
    if (!page_keys) {
        struct store_info info;
        store_info(c->store, &info);
        uint64_t want = info.objects / LIST_SCANS;
        page_keys = want < LIST_PAGE_KEYS ? LIST_PAGE_KEYS
                    : want > LIST_PAGE_MAX ? LIST_PAGE_MAX
                                           : (size_t)want;
    }
    if (objtab_page_init(&c->page, c->store->algo->digest_len, page_keys) < 0) {
        free(c);
        http_error(req, 500, "out of memory");
        return;
    }
    cas_buf_init(&c->buf);
    http_reply_stream(req, 200, "text/plain", HTTP_SIZE_UNKNOWN, list_read, c, list_free);
}
