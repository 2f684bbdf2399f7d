/*
 * rebalance.c - the pure half of the rebalance engine (see rebalance.h):
 * the cluster description and its ring, the table of listed objects, the
 * plan of one object, and the parsing of a backend's GET /ring answer.
 * Nothing here does I/O; rebalance_run.c drives a pass and
 * rebalance_io.c talks HTTP.
 */
#include "rebalance.h"
#include "json.h"
#include "ringjson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cluster -------------------------------------------------------- */

struct rb_cluster *rb_cluster_new(size_t n, unsigned replicas, const char *token)
{
    struct rb_cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->n = n;
    c->replicas = replicas;
    c->b = calloc(n ? n : 1, sizeof(*c->b));
    if (!c->b || (token && !(c->token = strdup(token)))) {
        rb_cluster_free(c);
        return NULL;
    }
    return c;
}

void rb_cluster_free(struct rb_cluster *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->b && i < c->n; i++) {
        free(c->b[i].url);
        free(c->b[i].domain);
        free(c->b[i].tokens);
    }
    free(c->b);
    ring_free(c->ring);
    free(c->token);
    free(c->ca_pem);
    free(c->cert_pem);
    if (c->key_pem)
        explicit_bzero(c->key_pem, c->key_len);
    free(c->key_pem);
    free(c);
}

int rb_cluster_set(struct rb_cluster *c, size_t i, const char *url, const char *domain,
                   const char *node, const uint64_t *tokens, size_t ntokens, bool up, bool writable,
                   const char *error)
{
    if (i >= c->n)
        return -EINVAL;
    struct rb_backend *b = &c->b[i];
    free(b->url);
    free(b->domain);
    free(b->tokens);
    memset(b, 0, sizeof(*b));
    b->url = strdup(url);
    b->domain = strdup(domain ? domain : "");
    if (!b->url || !b->domain)
        return -ENOMEM;
    snprintf(b->node, sizeof(b->node), "%s", node ? node : "");
    if (ntokens) {
        b->tokens = malloc(ntokens * sizeof(*tokens));
        if (!b->tokens)
            return -ENOMEM;
        memcpy(b->tokens, tokens, ntokens * sizeof(*tokens));
        b->ntokens = ntokens;
    }
    b->up = up;
    b->writable = up && writable;
    snprintf(b->error, sizeof(b->error), "%s", error ? error : "");
    return 0;
}

int rb_cluster_finish(struct rb_cluster *c, char *err, size_t errlen)
{
    ring_free(c->ring);
    c->ring = ring_new(c->n);
    if (!c->ring) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->complete = true;
    for (size_t i = 0; i < c->n; i++) {
        const struct rb_backend *b = &c->b[i];
        if (!b->ntokens)
            c->complete = false;
        int rc = ring_add_backend(c->ring, i, b->node, b->domain, b->tokens, b->ntokens);
        if (rc < 0) {
            snprintf(err, errlen, "ring: backend %s: %s", b->url, strerror(-rc));
            return rc;
        }
    }
    int rc = ring_finish(c->ring);
    if (rc < 0)
        snprintf(err, errlen, "ring: %s", strerror(-rc));
    return rc;
}

/* ---- GET /ring ---------------------------------------------------------- */

int rb_parse_ring(const char *json, char *node, size_t nodelen, const struct cas_hash_algo **algo,
                  uint64_t **tokens, size_t *ntokens, char *err, size_t errlen)
{
    /* The balancer's probes read /ring with the same parser: the same
     * answers are refused on both sides, so placement stays identical. */
    return ringjson_parse(json, json ? strlen(json) : 0, node, nodelen, algo, tokens, ntokens, err,
                          errlen);
}

/* ---- plans -------------------------------------------------------------- */

int rb_plan_init(struct rb_plan *p, size_t nbackends)
{
    memset(p, 0, sizeof(*p));
    size_t n = nbackends ? nbackends : 1;
    p->home = calloc(n, sizeof(size_t));
    p->copy_to = calloc(n, sizeof(size_t));
    p->remove = calloc(n, sizeof(size_t));
    if (!p->home || !p->copy_to || !p->remove) {
        rb_plan_free(p);
        return -ENOMEM;
    }
    return 0;
}

void rb_plan_free(struct rb_plan *p)
{
    free(p->home);
    free(p->copy_to);
    free(p->remove);
    memset(p, 0, sizeof(*p));
}

void rb_plan_object(const struct rb_cluster *c, uint64_t pos, const bool *holders,
                    struct rb_plan *p)
{
    p->nhome = ring_home(c->ring, pos, c->replicas, p->home);
    p->ncopy = p->nremove = 0;
    p->home_unavailable = false;
    for (size_t i = 0; i < p->nhome; i++) {
        const struct rb_backend *b = &c->b[p->home[i]];
        /* A down backend's listing is unknown: its copy may or may not be
         * there, and it can take none. */
        if (!b->up) {
            p->home_unavailable = true;
        } else if (!holders[p->home[i]]) {
            if (b->writable)
                p->copy_to[p->ncopy++] = p->home[i];
            else
                p->home_unavailable = true;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        if (!holders[i] || !c->b[i].up)
            continue;
        bool home = false;
        for (size_t j = 0; j < p->nhome; j++)
            home |= p->home[j] == i;
        if (!home)
            p->remove[p->nremove++] = i;
    }
    /* Removals keep `replicas` copies in distinct failure domains: only a
     * full home, every member reachable, on a ring where every backend's
     * tokens are known (else the home itself may be wrong). */
    p->removals_allowed = c->complete && p->nhome == c->replicas && !p->home_unavailable;
}

/* ---- the table of objects ----------------------------------------------- */

/*
 * Entries live in one dense array (so they can be walked by number), each
 * a digest, a size and a bitmap of holders; an open-addressing index of
 * entry numbers finds a digest. Digests are uniform, so their first bytes
 * are the hash.
 */
struct rb_entry {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t size;
    uint64_t bits[]; /* words of holder bits */
};

struct rb_objects {
    size_t nbackends, words, stride;
    size_t count, cap;      /* entries */
    unsigned char *entries; /* cap * stride bytes */
    uint32_t *index;        /* nslots; 0 empty, else entry number + 1 */
    size_t nslots;          /* power of two */
};

static struct rb_entry *entry(const struct rb_objects *t, size_t i)
{
    return (struct rb_entry *)(t->entries + i * t->stride);
}

struct rb_objects *rb_objects_new(size_t nbackends)
{
    struct rb_objects *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nbackends = nbackends;
    t->words = (nbackends + 63) / 64;
    if (!t->words)
        t->words = 1;
    t->stride = sizeof(struct rb_entry) + t->words * sizeof(uint64_t);
    t->nslots = 1024;
    t->index = calloc(t->nslots, sizeof(*t->index));
    if (!t->index) {
        free(t);
        return NULL;
    }
    return t;
}

void rb_objects_free(struct rb_objects *t)
{
    if (!t)
        return;
    free(t->entries);
    free(t->index);
    free(t);
}

static uint64_t digest_hash(const unsigned char *d)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return h;
}

static int grow_index(struct rb_objects *t)
{
    size_t nslots = t->nslots * 2;
    uint32_t *idx = calloc(nslots, sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    for (size_t i = 0; i < t->count; i++) {
        size_t s = digest_hash(entry(t, i)->digest) & (nslots - 1);
        while (idx[s])
            s = (s + 1) & (nslots - 1);
        idx[s] = (uint32_t)(i + 1);
    }
    free(t->index);
    t->index = idx;
    t->nslots = nslots;
    return 0;
}

int rb_objects_add(struct rb_objects *t, const unsigned char *digest, size_t len, uint64_t size,
                   size_t backend)
{
    if (len > CAS_MAX_DIGEST || len < sizeof(uint64_t) || backend >= t->nbackends)
        return -EINVAL;
    unsigned char d[CAS_MAX_DIGEST] = {0};
    memcpy(d, digest, len);
    size_t s = digest_hash(d) & (t->nslots - 1);
    while (t->index[s]) {
        struct rb_entry *e = entry(t, t->index[s] - 1);
        if (memcmp(e->digest, d, CAS_MAX_DIGEST) == 0) {
            e->bits[backend / 64] |= 1ull << (backend % 64);
            return 0;
        }
        s = (s + 1) & (t->nslots - 1);
    }
    if (t->count >= UINT32_MAX - 1)
        return -E2BIG;
    if (t->count == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        unsigned char *ents = realloc(t->entries, cap * t->stride);
        if (!ents)
            return -ENOMEM;
        t->entries = ents;
        t->cap = cap;
    }
    struct rb_entry *e = entry(t, t->count);
    memset(e, 0, t->stride);
    memcpy(e->digest, d, CAS_MAX_DIGEST);
    e->size = size;
    e->bits[backend / 64] |= 1ull << (backend % 64);
    t->index[s] = (uint32_t)(t->count + 1);
    t->count++;
    if (t->count * 2 > t->nslots)
        return grow_index(t);
    return 0;
}

size_t rb_objects_count(const struct rb_objects *t)
{
    return t->count;
}

const unsigned char *rb_objects_digest(const struct rb_objects *t, size_t i, uint64_t *size)
{
    struct rb_entry *e = entry(t, i);
    if (size)
        *size = e->size;
    return e->digest;
}

bool rb_objects_holds(const struct rb_objects *t, size_t i, size_t backend)
{
    return (entry(t, i)->bits[backend / 64] >> (backend % 64)) & 1;
}

void rb_objects_set_holds(struct rb_objects *t, size_t i, size_t backend, bool holds)
{
    uint64_t bit = 1ull << (backend % 64);
    if (holds)
        entry(t, i)->bits[backend / 64] |= bit;
    else
        entry(t, i)->bits[backend / 64] &= ~bit;
}
