/*
 * gcagree.c - before gc/end, unmark every garbage copy of an object that
 * another backend holds live (gcagree.h says why).
 *
 * One pass: a table of the keys some backend lists as garbage, each with
 * the set of backends where it is garbage; then each backend j is asked
 * (POST /objects/missing, batches of AGREE_BATCH) about the keys that are
 * garbage elsewhere but not on j: a key it holds is live there (held and
 * not marked), so it was used during the cycle; then each backend gets a
 * POST /gc/mark of its garbage keys found live elsewhere. Asking j about a
 * key that is not garbage on j changes nothing there (unmarking an object
 * that is not marked, or looking up one that is absent), so the question
 * itself never keeps what it should not.
 *
 * Races only make it keep more: a use during the pass unmarks on its own
 * (through gc_touch on every holder that is up); a key listed as garbage
 * and unmarked since is unmarked again. The cost is one listing of every
 * backend's garbage, one look-up per key on each backend that does not
 * hold it as garbage, and one unmark per copy kept; memory is bounded by
 * the config's gc_agree_max_keys, beyond which the key space is split into
 * passes.
 */
#define _GNU_SOURCE
#include "gcagree.h"
#include "bstream.h"
#include "upstream.h"
#include "view.h"
#include "buf.h"
#include "key.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGREE_BATCH 8192

struct agree {
    size_t dlen, words;  /* digest bytes; 64-bit words of backend bits per key */
    size_t n, cap;       /* keys, room for keys */
    size_t max;          /* keys at once: the config's gc_agree_max_keys */
    size_t tcap;         /* slots of the hash table, a power of two */
    unsigned char *dig;  /* cap * dlen */
    uint64_t *mask;      /* cap * words: backends where the key is garbage */
    unsigned char *live; /* cap: held live by some backend */
    uint32_t *slot;      /* tcap: key index + 1, 0 empty */
};

static void agree_free(struct agree *a)
{
    free(a->dig);
    free(a->mask);
    free(a->live);
    free(a->slot);
    memset(a, 0, sizeof(*a));
}

static size_t agree_hash(const struct agree *a, const unsigned char *d)
{
    uint64_t h;
    memcpy(&h, d + 8, sizeof(h)); /* digests are uniform; bytes 8.. differ from the shard's */
    return (size_t)h & (a->tcap - 1);
}

static int agree_grow(struct agree *a)
{
    size_t ncap = a->cap ? a->cap * 2 : 4096;
    unsigned char *dig = realloc(a->dig, ncap * a->dlen);
    if (dig)
        a->dig = dig;
    uint64_t *mask = realloc(a->mask, ncap * a->words * sizeof(uint64_t));
    if (mask)
        a->mask = mask;
    unsigned char *live = realloc(a->live, ncap);
    if (live)
        a->live = live;
    uint32_t *slot = calloc(ncap * 2, sizeof(uint32_t));
    if (!dig || !mask || !live || !slot) {
        free(slot);
        return -ENOMEM;
    }
    free(a->slot);
    a->slot = slot;
    a->tcap = ncap * 2;
    a->cap = ncap;
    for (size_t i = 0; i < a->n; i++) {
        size_t j = agree_hash(a, a->dig + i * a->dlen);
        while (a->slot[j])
            j = (j + 1) & (a->tcap - 1);
        a->slot[j] = (uint32_t)i + 1;
    }
    return 0;
}

/* Records that d is garbage on backend b. -E2BIG when a new key would
 * make more than a->max. */
static int agree_add(struct agree *a, const unsigned char *d, size_t b)
{
    if (a->n == a->cap && a->n < a->max && agree_grow(a) < 0)
        return -ENOMEM;
    size_t j = agree_hash(a, d);
    while (a->slot[j]) {
        size_t i = a->slot[j] - 1;
        if (!memcmp(a->dig + i * a->dlen, d, a->dlen)) {
            a->mask[i * a->words + b / 64] |= 1ull << (b % 64);
            return 0;
        }
        j = (j + 1) & (a->tcap - 1);
    }
    if (a->n >= a->max)
        return -E2BIG;
    size_t i = a->n++;
    memcpy(a->dig + i * a->dlen, d, a->dlen);
    memset(a->mask + i * a->words, 0, a->words * sizeof(uint64_t));
    a->mask[i * a->words + b / 64] |= 1ull << (b % 64);
    a->live[i] = 0;
    a->slot[j] = (uint32_t)i + 1;
    return 0;
}

static bool agree_has(const struct agree *a, size_t i, size_t b)
{
    return a->mask[i * a->words + b / 64] & (1ull << (b % 64));
}

/* Pass p of passes (a power of two) takes the keys whose first 32 bits
 * fall in its share. */
static bool in_pass(const unsigned char *d, unsigned p, unsigned passes)
{
    uint32_t h = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
    return passes == 1 || (uint64_t)h * passes >> 32 == p;
}

/* Reads backend b's garbage listing into a (this pass's keys only). */
static int agree_list(struct balancer *bal, const struct view *v, struct agree *a, size_t b,
                      unsigned p, unsigned passes, uint64_t *listed, char *err, size_t errlen)
{
    char url[1200];
    snprintf(url, sizeof(url), "%s/objects?state=garbage", v->b[b]->url);
    struct bstream *s = NULL;
    struct bstream_head head;
    char e[300];
    if (bstream_open(bal, v, url, "GET", NULL, &s, &head, e, sizeof(e)) < 0) {
        snprintf(err, errlen, "%s: garbage listing: %s", v->b[b]->url, e);
        return -EAGAIN;
    }
    if (head.status != 200) {
        bstream_close(s);
        snprintf(err, errlen, "%s: garbage listing: HTTP %ld", v->b[b]->url, head.status);
        return -EAGAIN;
    }
    char buf[64 * 1024], line[256];
    size_t ll = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = bstream_read(s, buf, sizeof(buf), e, sizeof(e));
        if (n < 0) {
            snprintf(err, errlen, "%s: garbage listing cut: %s", v->b[b]->url, e);
            rc = -EAGAIN;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n && rc == 0; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof(line))
                    line[ll++] = buf[i];
                continue;
            }
            const char *sp = memchr(line, ' ', ll);
            struct cas_key k;
            if (view_parse_key(v, line, sp ? (size_t)(sp - line) : ll, &k, e, sizeof(e)) == 0) {
                (*listed)++;
                if (in_pass(k.digest, p, passes))
                    rc = agree_add(a, k.digest, b);
            }
            ll = 0;
        }
        if (rc < 0)
            break;
    }
    bstream_close(s);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory comparing the backends' garbage");
    return rc;
}

/* POSTs body to backend b's path; the answer in *resp (caller frees). */
static int agree_post(struct balancer *bal, const struct view *v, size_t b, const char *path,
                      const struct cas_buf *body, struct cas_buf *resp, char *err, size_t errlen)
{
    struct upstream_call c = {.method = "POST", .body = body->data, .body_len = body->len};
    snprintf(c.url, sizeof(c.url), "%s%s", v->b[b]->url, path);
    upstream_run(bal, v, &c, 1, v->cfg->gc_ms);
    if (c.status != 200) {
        char d[300];
        upstream_describe(&c, d, sizeof(d));
        snprintf(err, errlen, "%s%s: %s", v->b[b]->url, path, d);
        upstream_calls_free(&c, 1);
        return -EAGAIN;
    }
    *resp = c.resp;
    cas_buf_init(&c.resp);
    upstream_calls_free(&c, 1);
    return 0;
}

/* Asks backend b which of the keys idx[0..n) (not garbage on b) it holds;
 * those are live there. The answer lists the absent ones in the order given. */
static int agree_ask(struct balancer *bal, const struct view *v, struct agree *a, size_t b,
                     const uint32_t *idx, size_t n, const struct cas_buf *body, char *err,
                     size_t errlen)
{
    struct cas_buf resp;
    int rc = agree_post(bal, v, b, "/objects/missing", body, &resp, err, errlen);
    if (rc < 0)
        return rc;
    size_t hl = 2 * a->dlen, pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *line = body->data + i * (hl + 1);
        if (pos + hl <= resp.len && !memcmp(resp.data + pos, line, hl)) {
            pos += hl + 1; /* absent on b */
            continue;
        }
        a->live[idx[i]] = 1;
    }
    cas_buf_free(&resp);
    return 0;
}

/* One pass over a: ask every backend, then unmark the garbage copies of
 * keys some backend holds live. */
static int agree_settle_pass(struct balancer *bal, const struct view *v, struct agree *a,
                             struct gcagree_stats *st, char *err, size_t errlen)
{
    uint32_t *idx = malloc(AGREE_BATCH * sizeof(*idx));
    if (!idx) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct cas_buf body;
    cas_buf_init(&body);
    char hex[2 * CAS_MAX_DIGEST + 1];
    int rc = 0;
    for (size_t b = 0; b < v->n && rc == 0; b++) {
        size_t k = 0;
        for (size_t i = 0; i <= a->n && rc == 0; i++) {
            if (i < a->n && !agree_has(a, i, b) && !a->live[i]) {
                cas_hex_encode(a->dig + i * a->dlen, a->dlen, hex);
                cas_buf_printf(&body, "%s\n", hex);
                idx[k++] = (uint32_t)i;
            }
            if (k && (k == AGREE_BATCH || i == a->n)) {
                st->asked += k;
                rc = agree_ask(bal, v, a, b, idx, k, &body, err, errlen);
                cas_buf_reset(&body);
                k = 0;
            }
        }
    }
    for (size_t b = 0; b < v->n && rc == 0; b++) {
        size_t k = 0;
        for (size_t i = 0; i <= a->n && rc == 0; i++) {
            if (i < a->n && agree_has(a, i, b) && a->live[i]) {
                cas_hex_encode(a->dig + i * a->dlen, a->dlen, hex);
                cas_buf_printf(&body, "%s\n", hex);
                k++;
            }
            if (k && (k == AGREE_BATCH || i == a->n)) {
                struct cas_buf resp;
                rc = agree_post(bal, v, b, "/gc/mark", &body, &resp, err, errlen);
                if (rc == 0) {
                    cas_buf_free(&resp);
                    st->unmarked += k;
                }
                cas_buf_reset(&body);
                k = 0;
            }
        }
    }
    cas_buf_free(&body);
    free(idx);
    return rc;
}

int gcagree_settle(struct balancer *bal, const struct view *v, uint64_t id,
                   struct gcagree_stats *stats, char *err, size_t errlen)
{
    struct gcagree_stats st = {0};
    if (v->n < 2) {
        if (stats)
            *stats = st;
        return 0; /* one backend: nothing to agree on */
    }
    if (!v->algo) {
        snprintf(err, errlen,
                 "the cluster's hash algorithm is not known yet (no backend "
                 "answered a probe)");
        return -EAGAIN;
    }
    struct agree a = {0};
    a.dlen = v->algo->digest_len;
    a.words = (v->n + 63) / 64;
    a.max = v->cfg->gc_agree_max_keys ? v->cfg->gc_agree_max_keys : CONFIG_GC_AGREE_MAX_KEYS;
    unsigned passes = 1;
    int rc = 0;
    for (unsigned p = 0; p < passes && rc == 0;) {
        a.n = 0;
        if (a.slot)
            memset(a.slot, 0, a.tcap * sizeof(uint32_t));
        for (size_t b = 0; b < v->n && rc == 0; b++)
            rc = agree_list(bal, v, &a, b, p, passes, &st.listed, err, errlen);
        if (rc == -E2BIG && passes < (1u << 16)) {
            /* Too many keys at once: start over in twice as many passes. */
            passes *= 2;
            p = 0;
            rc = 0;
            continue;
        }
        if (rc == 0)
            rc = agree_settle_pass(bal, v, &a, &st, err, errlen);
        p++;
    }
    st.passes = passes;
    agree_free(&a);
    if (rc == -E2BIG) {
        snprintf(err, errlen, "too much garbage to compare the backends");
        rc = -EAGAIN;
    }
    if (rc == 0 && st.unmarked)
        log_info("GC %" PRIu64 ": %" PRIu64 " garbage copies kept, their objects held live on "
                 "another backend (%" PRIu64 " listed, %" PRIu64 " asked, %u passes)",
                 id, st.unmarked, st.listed, st.asked, passes);
    if (stats)
        *stats = st;
    return rc;
}
