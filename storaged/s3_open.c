/*
 * s3_open.c - opening the S3 backend: the bucket checked (exists, takes our
 * credentials), the node file's copy in the bucket (restored into a lost
 * --dir; another node's copy refused), and s3-index replayed or rebuilt by
 * listing objects/ in the bucket (s3_open_state; the registry's entry,
 * s3_backend, which calls it, is in s3_backend.c).
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
#include <time.h>
#include <unistd.h>

/* ---- opening: the bucket, the node's copy, the index
 * ------------------------------------------------ */

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

/* Reads the regular file name (never through a symlink, never blocking on
 * a FIFO: -EINVAL for anything else) into buf; -EFBIG when cap bytes do
 * not hold it. */
static int read_small(int dirfd, const char *name, char *buf, size_t cap, size_t *len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return -EINVAL;
    }
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

#define NODE_FILE_MAX S3_NODE_FILE_MAX

int s3_prepare(const struct store_options *o, int dirfd, char *err, size_t errlen)
{
    struct s3_client c;
    int rc = s3_client_init(&c, o->s3_endpoint, o->s3_bucket, o->s3_region, o->s3_access_key,
                            o->s3_secret_key, err, errlen);
    if (rc < 0)
        return rc;
    s3_client_set_timeout(&c, o->s3_timeout_ms);
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
    if (rc == 0 && rs.status == 200)
        rc = s3_claim_check_restore(&c, buf, rs.out_len, err, errlen);
    if (rc == 0 && rs.status == 200) {
        /* node.s3tmp is ours alone: whatever is there (a crashed restore's
         * leftover, a symlink, a FIFO) is unlinked, never followed or
         * opened, and the file is created new (O_EXCL: a name put back
         * meanwhile is refused, not used). */
        if (unlinkat(dirfd, "node.s3tmp", 0) < 0 && errno != ENOENT) {
            snprintf(err, errlen,
                     "cannot restore %s/node from the bucket: cannot remove %s/node.s3tmp: %s",
                     o->dir, o->dir, strerror(errno));
            rc = -EIO;
        }
        int fd = rc < 0 ? -1
                        : fmt_open_regular(dirfd, o->dir, "node.s3tmp", O_WRONLY | O_CREAT | O_EXCL,
                                           err, errlen);
        if (fd < 0) {
            if (rc == 0) {
                char e2[512];
                snprintf(e2, sizeof(e2), "%s", err);
                snprintf(err, errlen, "cannot restore %s/node from the bucket: %s", o->dir, e2);
                rc = -EIO;
            }
        } else if (write(fd, buf, rs.out_len) != (ssize_t)rs.out_len || fsync(fd) < 0 ||
                   renameat(dirfd, "node.s3tmp", dirfd, "node") < 0 || fsync(dirfd) < 0) {
            snprintf(err, errlen, "cannot restore %s/node from the bucket: %s", o->dir,
                     strerror(errno));
            unlinkat(dirfd, "node.s3tmp", 0);
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

/* The bucket's copy of the node file: put there on first start (through
 * s3_claim.c's protocol, safe against another node taking the bucket at
 * the same moment); a bucket holding another node's copy is refused (two
 * nodes on one bucket would delete each other's objects). */
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
    struct s3_req rq = {
        .method = "GET", .key = S3_NODE_KEY, .out = remote, .out_cap = NODE_FILE_MAX};
    struct s3_resp rs;
    rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 200) {
        if (rs.out_len != llen || memcmp(local, remote, llen) != 0) {
            snprintf(err, errlen,
                     "the bucket %s holds another node's state (%s differs from %s/node): one "
                     "bucket per storaged; nothing was changed",
                     st->cli.bucket, S3_NODE_KEY, st->dir);
            rc = -EINVAL;
        } else if (!st->read_only) {
            rc = s3_claim_hold(st, err, errlen);
        }
    } else if (rc == 0 && rs.status == 404) {
        rc = s3_claim_bucket(st, local, llen, err, errlen);
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

/* Empty pages in a row that list_prefix follows; S3 may send a truncated
 * page without keys, but not this many. */
#define LIST_EMPTY_PAGES_MAX 100

/* Calls fn for every key under prefix (URL-encoded, e.g. "objects%2F") in
 * the bucket, page by page (ListObjectsV2). 0, fn's nonzero result, or a
 * negative errno with a message. A listing that does not move on is
 * refused (-EIO), not followed for ever: ListObjectsV2 gives keys in
 * ascending order, so a key not above the one before it (a page again, a
 * token that goes back), the same token twice in a row, or more than
 * LIST_EMPTY_PAGES_MAX empty pages in a row mean a broken or hostile
 * bucket. */
static int list_prefix(struct s3_store *st, const char *prefix,
                       int (*fn)(struct s3_store *st, const struct s3_list_item *it, void *cls),
                       void *cls, char *err, size_t errlen)
{
    char token[S3_XML_TOKEN_MAX + 1] = "", q[S3_XML_TOKEN_MAX * 3 + 100];
    char last[S3_XML_KEY_MAX + 1] = "";
    unsigned empty = 0;
    bool more = true;
    int rc = 0;
    while (more && rc == 0) {
        char esc[S3_XML_TOKEN_MAX * 3 + 1];
        s3_query_escape(token, esc, sizeof(esc));
        snprintf(q, sizeof(q), "%s%s%slist-type=2&prefix=%s", token[0] ? "continuation-token=" : "",
                 token[0] ? esc : "", token[0] ? "&" : "", prefix);
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
            if (last[0] && strcmp(pg.items[i].key, last) <= 0) {
                snprintf(err, errlen,
                         "listing %s of the bucket: key \"%.100s\" after \"%.100s\" (not in "
                         "ascending order: the bucket's listing goes back or round)",
                         prefix, pg.items[i].key, last);
                rc = -EIO;
                break;
            }
            snprintf(last, sizeof(last), "%s", pg.items[i].key);
            rc = fn(st, &pg.items[i], cls);
        }
        empty = pg.n ? 0 : empty + 1;
        more = pg.truncated;
        if (rc == 0 && more &&
            (strcmp(token, pg.next_token) == 0 || empty > LIST_EMPTY_PAGES_MAX)) {
            snprintf(err, errlen,
                     "listing %s of the bucket: %s (the bucket's listing does not move on)", prefix,
                     empty > LIST_EMPTY_PAGES_MAX ? "too many empty pages in a row"
                                                  : "the same continuation token again");
            rc = -EIO;
        }
        snprintf(token, sizeof(token), "%s", pg.next_token);
        s3_list_page_free(&pg);
    }
    return rc;
}

/* The digest in "objects/<hex>" of this store's algorithm; false otherwise. */
static bool object_digest(struct s3_store *st, const char *name, struct cas_key *k)
{
    char kerr[256];
    const char *hex = name + strlen("objects/");
    return strncmp(name, "objects/", 8) == 0 && strlen(hex) == st->base.algo->digest_len * 2 &&
           cas_key_parse(hex, strlen(hex), st->base.algo, k, kerr, sizeof(kerr)) == 0;
}

struct rebuild {
    uint64_t found, skipped, tombs, left;
    struct objtab tombed; /* keys with tombs/<hex>.deleted in the bucket (expired or not) */
    char *err;
    size_t errlen;
};

static int rebuild_one(struct s3_store *st, const struct s3_list_item *it, void *cls)
{
    struct rebuild *rb = cls;
    struct cas_key k;
    if (!object_digest(st, it->key, &k)) {
        rb->skipped++;
        return 0;
    }
    if (objtab_find(&rb->tombed, k.digest) != OBJTAB_NONE) {
        /* The bucket still says "deleted": a client PUT after the delete
         * removes tombs/<hex>.deleted before its record (and fails if it
         * cannot), so this is the upload of a write the delete refused,
         * or of one that failed, which was not taken back. Not indexed; the
         * next start's sweep removes it (no s3-clean marker is left). */
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(k.digest, st->base.algo->digest_len, hex);
        log_warn("s3: objects/%s stays out of the rebuilt index: the bucket's tombstone of the "
                 "key stands (an upload a delete refused, not taken back)",
                 hex);
        st->debris = true;
        rb->left++;
        return 0;
    }
    struct fmt_record r;
    struct journal_pos pos;
    s3_record(st, &r, REC_PUT, k.digest);
    r.size = it->size;
    int rc = s3_append(st, &r, 1, &pos, rb->err, rb->errlen);
    if (rc == 0)
        rc = s3_apply(st, &r, rb->err, rb->errlen);
    rb->found++;
    return rc;
}

/* tombs/<hex>.deleted: a client deleted the key; its tombstone is in force
 * again with the delete's stamp, which its body keeps (s3_bucket_tomb), so
 * that it refuses exactly the writes the delete refused (a balancer's clock
 * may run ahead of this node's: the rebuild's time would let a write
 * stamped before the delete through). A body written before the stamp was
 * kept (empty) or one this version cannot read counts from now: the TTL
 * only grows. Read before the objects: an object beside its key's
 * tombstone stays out (rebuild_one). */
static int rebuild_tomb(struct s3_store *st, const struct s3_list_item *it, void *cls)
{
    struct rebuild *rb = cls;
    struct cas_key k;
    struct objtab_entry en;
    char name[S3_XML_KEY_MAX + 8];
    size_t kl = strlen(it->key);
    const char *suffix = ".deleted";
    if (strncmp(it->key, "tombs/", 6) != 0 || kl < 6 + strlen(suffix) ||
        strcmp(it->key + kl - strlen(suffix), suffix) != 0)
        return 0;
    snprintf(name, sizeof(name), "objects/%.*s", (int)(kl - 6 - strlen(suffix)), it->key + 6);
    if (!object_digest(st, name, &k) || s3_find_live(st, k.digest, &en) != OBJTAB_NONE)
        return 0;
    uint64_t stamp = 0;
    int rc = 0;
    if (it->size > 0 && it->size <= S3_TOMB_BODY_MAX) {
        rc = s3_bucket_tomb_stamp(st, it->key, &stamp, rb->err, rb->errlen);
        if (rc == -ENOENT)
            return 0; /* gone since the listing: the key was stored again */
        if (rc < 0)
            return rc; /* the rebuild fails: guessing the stamp could undo the delete */
    } else if (it->size > 0) {
        log_warn("s3: %s holds %" PRIu64 " bytes, no stamp this version wrote: the tombstone "
                 "counts from now",
                 it->key, it->size);
    }
    if (objtab_insert(&rb->tombed, k.digest, 0, 0, 0, 0) == OBJTAB_NONE) {
        snprintf(rb->err, rb->errlen, "out of memory");
        return -ENOMEM;
    }
    struct fmt_record r;
    struct journal_pos pos;
    s3_record(st, &r, REC_TOMB, k.digest);
    r.flags = TOMB_DELETED;
    r.aux = stamp ? stamp / 1000000 : s3_now_s();
    r.size = stamp; /* 0: aux * 10^6 */
    rc = s3_append(st, &r, 1, &pos, rb->err, rb->errlen);
    if (rc == 0)
        rc = s3_apply(st, &r, rb->err, rb->errlen);
    rb->tombs++;
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
    int rc = s3_write_header(st, fd, err, errlen);
    journal_init(&st->journal, fd, FMT_RECORD_SIZE);
    struct rebuild rb = {.err = err, .errlen = errlen};
    if (rc == 0 && objtab_init(&rb.tombed, st->base.algo->digest_len) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    if (rc == 0)
        rc = list_prefix(st, "tombs%2F", rebuild_tomb, &rb, err, errlen);
    if (rc == 0)
        rc = list_prefix(st, "objects%2F", rebuild_one, &rb, err, errlen);
    objtab_destroy(&rb.tombed);
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
    log_info("s3: %s/%s built from the bucket: %" PRIu64 " objects, %" PRIu64 " bytes, %" PRIu64
             " tombstones%s; %" PRIu64 " objects left out (their key's tombstone stands)",
             st->dir, S3_INDEX, rb.found, st->bytes, rb.tombs,
             rb.skipped ? " (keys not of this store skipped)" : "", rb.left);
    return 0;
}

struct sweep {
    uint64_t removed, adopted, failed, left;
    char first[300];
    char *buf; /* S3_READ_WINDOW bytes */
    struct cas_hash *h;
};

/* What reading objects/<hex> back says of it. */
enum sweep_read { SWEEP_GOOD, SWEEP_BAD, SWEEP_UNREAD };

/* Reads objects/<hex> in the bucket in windows of S3_READ_WINDOW bytes:
 * SWEEP_GOOD when it hashes to its key; SWEEP_BAD when it was read whole
 * (or the bucket answered, by its own framing, that it is shorter than
 * listed) and does not, or is gone; SWEEP_UNREAD when it could not be read
 * (a transfer error, a refusal such as 503 SlowDown): nothing is known of
 * its bytes. */
static enum sweep_read bucket_verifies(struct s3_store *st, struct sweep *sw,
                                       const struct cas_key *k, uint64_t size)
{
    char err[300];
    unsigned char got[CAS_MAX_DIGEST];
    cas_hash_reset(sw->h);
    for (uint64_t off = 0; off < size;) {
        size_t n = size - off < S3_READ_WINDOW ? (size_t)(size - off) : S3_READ_WINDOW;
        ssize_t rc = s3_bucket_range(st, k->digest, sw->buf, n, off, off == 0 && n == size, err,
                                     sizeof(err));
        if (rc == -EBADMSG || rc == -ENOENT)
            return SWEEP_BAD;
        if (rc < 0)
            return SWEEP_UNREAD;
        cas_hash_update(sw->h, sw->buf, n);
        off += n;
    }
    cas_hash_final(sw->h, got);
    return memcmp(got, k->digest, st->base.algo->digest_len) == 0 ? SWEEP_GOOD : SWEEP_BAD;
}

/* Whether the bucket holds tombs/<hex>.deleted: 1 yes, 0 no, -EIO when it
 * cannot be told (err filled). A client DELETE puts it before its record;
 * a client PUT that stored the key again removes it only after its own
 * record is durable (s3_store.c), so its absence means the delete was
 * overtaken by a write that was acknowledged (or about to be). */
static int bucket_tomb_present(struct s3_store *st, const unsigned char *digest, char *err,
                               size_t errlen)
{
    char hex[CAS_MAX_HEX + 1], key[96];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    snprintf(key, sizeof(key), "tombs/%s.deleted", hex);
    struct s3_req rq = {.method = "HEAD", .key = key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    long status = rs.status;
    s3_resp_free(&rs);
    return rc < 0 ? -EIO : status == 200;
}

/* Notes a key the sweep leaves in the bucket unlisted (never served: reads
 * go through the index) because what it found cannot justify a removal; the
 * store then leaves no s3-clean marker at its stop (debris), so the next
 * start sweeps again. */
static void sweep_leave(struct s3_store *st, struct sweep *sw, const char *hex, const char *why)
{
    sw->left++;
    st->debris = true;
    log_warn("s3: after a crash: objects/%s is not listed and %s: left in the bucket, not served; "
             "the next start sweeps again",
             hex, why);
}

/*
 * One key found in the bucket after a crash: listed in the index, kept;
 * under tmp/ (never acknowledged), or read whole and not hashing to its
 * key, or tombstoned by the bucket itself (tombs/<hex>.deleted, which a
 * client DELETE puts there first): deleted. An unlisted object that
 * verifies and that the bucket holds no tombstone for (an upload finished
 * but not acknowledged; an object newer than an index restored from a
 * backup or cut back, also a re-PUT after a delete whose tombstone that
 * older index still holds: the re-PUT removed the bucket's) is adopted.
 * What cannot be read, or whose tombstone cannot be looked up, is left
 * alone: the sweep deletes only bytes it can show are not an acknowledged
 * object.
 */
static int sweep_one(struct s3_store *st, const struct s3_list_item *it, void *cls)
{
    struct sweep *sw = cls;
    struct cas_key k;
    struct objtab_entry en;
    char err[300];
    bool tmp = strncmp(it->key, "tmp/", 4) == 0;
    if (!tmp && !object_digest(st, it->key, &k))
        return 0; /* not ours: left alone */
    if (!tmp && s3_find_live(st, k.digest, &en) != OBJTAB_NONE)
        return 0;
    if (!tmp) {
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(k.digest, st->base.algo->digest_len, hex);
        /* The bucket says whether the key stays deleted, whatever the index
         * holds: its tombstone may be older than the bucket (an index cut
         * back or restored), or expired (a node down for longer than the
         * tombstones last) while the bucket's still stands. A client PUT
         * removes the bucket's before its record, so one that stands means
         * this is an upload the delete refused, or a write that failed. */
        int tombed = bucket_tomb_present(st, k.digest, err, sizeof(err));
        if (tombed < 0) {
            char why[400];
            snprintf(why, sizeof(why), "its tombstone cannot be looked up (%s)", err);
            sweep_leave(st, sw, hex, why);
            return 0;
        }
        enum sweep_read v = tombed ? SWEEP_BAD : bucket_verifies(st, sw, &k, it->size);
        if (v == SWEEP_UNREAD) {
            sweep_leave(st, sw, hex, "it cannot be read now");
            return 0;
        }
        if (v == SWEEP_GOOD) {
            struct fmt_record r;
            struct journal_pos pos;
            s3_record(st, &r, REC_PUT, k.digest); /* lifts the index's stale tombstone */
            r.size = it->size;
            if (s3_append(st, &r, 1, &pos, err, sizeof(err)) == 0 &&
                s3_apply(st, &r, err, sizeof(err)) == 0 &&
                s3_sync_to(st, &pos, err, sizeof(err)) == 0)
                sw->adopted++;
            return 0;
        }
    }
    struct s3_req rq = {.method = "DELETE", .key = it->key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, sizeof(err));
    if (rc == 0 && rs.status != 204 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, sizeof(err));
        rc = -EIO;
    }
    s3_resp_free(&rs);
    if (rc < 0 && !sw->failed++)
        snprintf(sw->first, sizeof(sw->first), "%s", err);
    else if (rc == 0)
        sw->removed++;
    return 0;
}

/* After a crash (no s3-clean marker): uploads that were never acknowledged
 * may be in the bucket, and a server that does not store a PUT atomically
 * (s3rver does not) may even hold one cut short by the crash. Every
 * objects/<hex> the index does not list is looked at (sweep_one): kept
 * (and listed) when it hashes to its key and the bucket holds no
 * tombstone for it, deleted when it does not hash to its key or the
 * bucket's tombstone stands, left alone when that cannot be told; all of
 * tmp/ is deleted. Nothing unverified is served, nothing good is lost.
 * Runs before the store serves, so no write races it. A failure is
 * logged, not fatal: an unlisted object is never served, and reads verify. */
static void sweep_orphans(struct s3_store *st)
{
    struct sweep sw = {.buf = malloc(S3_READ_WINDOW), .h = cas_hash_new(st->base.algo)};
    char err[512];
    int rc = -ENOMEM;
    if (sw.buf && sw.h) {
        pthread_mutex_lock(&st->lock); /* s3_append's rule; nothing else runs yet */
        rc = list_prefix(st, "objects%2F", sweep_one, &sw, err, sizeof(err));
        if (rc == 0)
            rc = list_prefix(st, "tmp%2F", sweep_one, &sw, err, sizeof(err));
        pthread_mutex_unlock(&st->lock);
    } else {
        snprintf(err, sizeof(err), "out of memory");
    }
    if (rc < 0) {
        log_warn("s3: after a crash, cannot list the bucket to check unacknowledged uploads: %s "
                 "(the next start checks again)",
                 err);
        st->debris = true; /* no s3-clean marker at the stop: the next start sweeps */
    }
    if (sw.removed || sw.adopted || sw.failed || sw.left)
        log_info("s3: after a crash: %" PRIu64 " unlisted objects that verified kept, %" PRIu64
                 " bad or unacknowledged ones removed from the bucket, %" PRIu64 " left alone%s%s",
                 sw.adopted, sw.removed, sw.left, sw.failed ? "; could not remove some: " : "",
                 sw.first);
    free(sw.buf);
    cas_hash_free(sw.h);
}

/* s3-clean exists only between a clean stop and the next start. */
#define S3_CLEAN "s3-clean"

void s3_mark_clean(struct s3_store *st)
{
    /* A regular file only: a FIFO put there would block the stop for ever,
     * a symlink would create a file elsewhere. */
    char err[400];
    int fd = fmt_open_regular(st->dirfd, st->dir, S3_CLEAN, O_WRONLY | O_CREAT, err, sizeof(err));
    if (fd >= 0 && (fsync(fd) < 0 || fsync(st->dirfd) < 0))
        snprintf(err, sizeof(err), "cannot write %s/%s: %s", st->dir, S3_CLEAN, strerror(errno));
    else if (fd >= 0)
        err[0] = 0;
    if (err[0])
        log_warn("%s (the next start checks the bucket for debris)", err);
    if (fd >= 0)
        close(fd);
}

/* Whether the last stop was clean (the s3-clean marker): 1 yes, 0 no, or a
 * negative errno with a message when something other than a regular file
 * is in its place (refused like any file of the store). Changes nothing. */
static int was_clean(struct s3_store *st, char *err, size_t errlen)
{
    struct stat sb;
    if (fstatat(st->dirfd, S3_CLEAN, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        snprintf(err, errlen, "cannot check %s/%s: %s", st->dir, S3_CLEAN, strerror(e));
        return -e;
    }
    if (!S_ISREG(sb.st_mode))
        return fmt_not_regular(st->dir, S3_CLEAN, sb.st_mode, err, errlen);
    return 1;
}

int s3_open_state(struct s3_store *st, const struct store_options *o, char *err, size_t errlen)
{
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
    if ((rc = s3_client_init(&st->cli, o->s3_endpoint, o->s3_bucket, o->s3_region, o->s3_access_key,
                             o->s3_secret_key, err, errlen)) < 0)
        goto fail;
    s3_client_set_timeout(&st->cli, o->s3_timeout_ms);
    if ((rc = check_bucket(&st->cli, err, errlen)) < 0 ||
        (rc = check_node_copy(st, err, errlen)) < 0)
        goto fail;
    /* The marker is read now but removed only once the index is open
     * (below): a start refused before that (a damaged s3-index) leaves
     * --dir as it was, marker included. */
    if ((rc = was_clean(st, err, errlen)) < 0)
        goto fail;
    bool clean = rc == 1;
    int fd = fmt_open_regular(st->dirfd, st->dir, S3_INDEX, O_RDWR, err, errlen);
    if (fd == -ENOENT) {
        if ((rc = rebuild_index(st, err, errlen)) < 0)
            goto fail;
    } else if (fd < 0) {
        rc = fd;
        goto fail;
    } else {
        uint64_t end = 0;
        if ((rc = s3_replay(st, fd, &end, err, errlen)) < 0) {
            close(fd);
            goto fail;
        }
        journal_init(&st->journal, fd, end);
        if (!clean && !st->read_only)
            sweep_orphans(st);
    }
    /* From here the store serves: a crash must find no marker. */
    if (clean && (unlinkat(st->dirfd, S3_CLEAN, 0) < 0 || fsync(st->dirfd) < 0)) {
        rc = -errno;
        snprintf(err, errlen, "cannot remove %s/%s: %s", st->dir, S3_CLEAN, strerror(errno));
        goto fail;
    }
    st->opened = true;
    /* The PID in LOCK, for a second daemon's message (as the disk store). */
    char pid[32];
    int pl = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(st->lockfd, 0) < 0 || pwrite(st->lockfd, pid, (size_t)pl, 0) < 0)
        log_warn("cannot write pid to %s/LOCK: %s", st->dir, strerror(errno));
    return 0;
fail:
    return rc;
}
