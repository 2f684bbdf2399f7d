/*
 * s3_sums.c - the S3 backend's per-block CRC-32C tables (s3_internal.h):
 * computed while a write is hashed, kept in the bucket as a small sidecar
 * object sums/<hex>.crc32c next to objects/<hex>, and read back so that a
 * ranged GET reads and checks only the blocks it returns (store.h's
 * block_sums). Layout in docs/FORMAT.md ("The S3 backend's block tables").
 *
 * The table is a function of the object's bytes, so one key always has
 * the same table: a sidecar left behind by an upload that failed, or by an
 * earlier copy of the key, is still right for any later copy. A sidecar is
 * trusted only when it names the object's key and size and its own hash
 * (the store's algorithm, over all bytes before it) matches; otherwise it
 * is ignored and reads check the key instead.
 */
#define _GNU_SOURCE
#include "s3_internal.h"
#include "crc32c.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUMS_MAGIC "CASS3SUM"
#define SUMS_VERSION 1u
#define SUMS_HEADER 32u

void s3_sums_key(const struct s3_store *st, const unsigned char *digest, char *out, size_t outlen)
{
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, st->base.algo->digest_len, hex);
    snprintf(out, outlen, "sums/%s.crc32c", hex);
}

bool s3_sums_wanted(uint64_t size)
{
    return size > FMT_BLOCK;
}

int s3_sums_update(struct s3_sums *t, const void *data, size_t len)
{
    const unsigned char *d = data;
    while (len) {
        size_t n = FMT_BLOCK - t->fill < len ? (size_t)(FMT_BLOCK - t->fill) : len;
        t->crc = cas_crc32c(t->crc, d, n);
        t->fill += n;
        d += n;
        len -= n;
        if (t->fill == FMT_BLOCK && s3_sums_finish(t) < 0)
            return -ENOMEM;
    }
    return 0;
}

int s3_sums_finish(struct s3_sums *t)
{
    if (!t->fill)
        return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uint32_t *v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = htole32(t->crc);
    t->crc = 0;
    t->fill = 0;
    return 0;
}

void s3_sums_free(struct s3_sums *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* Bytes of a sidecar for an object of size: header, key, table, hash. */
static size_t sums_len(const struct s3_store *st, uint64_t size)
{
    return SUMS_HEADER + 2 * st->base.algo->digest_len + 4 * (size_t)fmt_blocks(size);
}

static void sums_header(const struct s3_store *st, uint64_t size, unsigned char *h)
{
    memset(h, 0, SUMS_HEADER);
    memcpy(h, SUMS_MAGIC, 8);
    uint32_t v = htole32(SUMS_VERSION), b = htole32(FMT_BLOCK);
    uint64_t s = htole64(size);
    memcpy(h + 8, &v, 4);
    memcpy(h + 12, &b, 4);
    memcpy(h + 16, &s, 8);
    h[24] = (unsigned char)st->base.algo->id;
}

int s3_sums_upload(struct s3_store *st, const unsigned char *digest, uint64_t size,
                   const struct s3_sums *t, char *err, size_t errlen)
{
    size_t dl = st->base.algo->digest_len, len = sums_len(st, size);
    if (t->n != fmt_blocks(size)) {
        snprintf(err, errlen, "block table of %zu entries for %llu bytes", t->n,
                 (unsigned long long)size);
        return -EINVAL;
    }
    unsigned char *b = malloc(len);
    struct cas_hash *h = cas_hash_new(st->base.algo);
    if (!b || !h) {
        free(b);
        cas_hash_free(h);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sums_header(st, size, b);
    memcpy(b + SUMS_HEADER, digest, dl);
    memcpy(b + SUMS_HEADER + dl, t->v, t->n * 4);
    cas_hash_update(h, b, len - dl);
    cas_hash_final(h, b + len - dl);
    cas_hash_free(h);
    char key[96];
    s3_sums_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "PUT", .key = key, .body = b, .body_len = len};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    free(b);
    return rc < 0 ? -EIO : 0;
}

int s3_sums_load(struct s3_store *st, const unsigned char *digest, uint64_t size, uint32_t **sums,
                 size_t *n)
{
    if (!s3_sums_wanted(size))
        return -ENOENT;
    size_t dl = st->base.algo->digest_len, len = sums_len(st, size);
    char key[96], err[400] = "";
    s3_sums_key(st, digest, key, sizeof(key));
    /* One byte more than expected: a longer sidecar is seen as such. */
    unsigned char *b = malloc(len + 1);
    if (!b)
        return -ENOMEM;
    struct s3_req rq = {.method = "GET", .key = key, .out = (char *)b, .out_cap = len + 1};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, sizeof(err));
    const char *why = NULL;
    if (rc < 0) {
        why = err;
    } else if (rs.status == 404) {
        rc = -ENOENT; /* written by an older build, or lost: reads check the key */
    } else if (rs.status != 200) {
        s3_status_error(&rq, &rs, err, sizeof(err));
        why = err;
    } else if (rs.out_len != len) {
        why = "not the size its object's table has";
    } else {
        unsigned char want[SUMS_HEADER], hash[CAS_MAX_DIGEST];
        sums_header(st, size, want);
        struct cas_hash *h = cas_hash_new(st->base.algo);
        if (!h) {
            rc = -ENOMEM;
        } else {
            cas_hash_update(h, b, len - dl);
            cas_hash_final(h, hash);
            cas_hash_free(h);
            if (memcmp(b, want, SUMS_HEADER) != 0)
                why = "its header does not describe this object";
            else if (memcmp(b + SUMS_HEADER, digest, dl) != 0)
                why = "it names another key";
            else if (memcmp(b + len - dl, hash, dl) != 0)
                why = "its hash does not match (damaged)";
        }
    }
    s3_resp_free(&rs);
    if (why) {
        char hex[CAS_MAX_HEX + 1];
        cas_hex_encode(digest, dl, hex);
        log_warn("s3: object %s: block table %s not used (%s); reads check the key instead", hex,
                 key, why);
        rc = -EIO;
    }
    if (rc < 0) {
        free(b);
        return rc;
    }
    size_t count = (size_t)fmt_blocks(size);
    uint32_t *v = malloc(count * 4);
    if (!v) {
        free(b);
        return -ENOMEM;
    }
    memcpy(v, b + SUMS_HEADER + dl, count * 4);
    free(b);
    *sums = v;
    *n = count;
    return 0;
}

void s3_sums_delete(struct s3_store *st, const unsigned char *digest, uint64_t size)
{
    if (!s3_sums_wanted(size))
        return;
    char key[96], err[400] = "";
    s3_sums_key(st, digest, key, sizeof(key));
    struct s3_req rq = {.method = "DELETE", .key = key};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, sizeof(err));
    if (rc == 0 && rs.status != 204 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, sizeof(err));
        rc = -EIO;
    }
    s3_resp_free(&rs);
    /* Harmless when it stays: the table of a key is the same for every copy. */
    if (rc < 0)
        log_warn("s3: cannot remove the block table %s: %s", key, err);
}
