/*
 * ring.c - the placement rule (see ring.h): a sorted array of (token,
 * backend) pairs searched with a binary search, then walked upward.
 */
#include "ring.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ring_token {
    uint64_t token;
    uint32_t backend;
};

struct ring_backend {
    char *node;
    size_t domain; /* index into the ring's domain names */
    size_t ntokens;
    bool added;
};

struct ring {
    size_t nbackends;
    struct ring_backend *backends;
    struct ring_token *tokens;
    size_t ntokens;
    char **domains;
    size_t ndomains;
    size_t with_tokens; /* backends holding at least one token */
    bool finished;
};

struct ring *ring_new(size_t nbackends)
{
    struct ring *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->nbackends = nbackends;
    r->backends = calloc(nbackends ? nbackends : 1, sizeof(*r->backends));
    r->domains = calloc(nbackends ? nbackends : 1, sizeof(*r->domains));
    if (!r->backends || !r->domains) {
        ring_free(r);
        return NULL;
    }
    return r;
}

void ring_free(struct ring *r)
{
    if (!r)
        return;
    if (r->backends)
        for (size_t i = 0; i < r->nbackends; i++)
            free(r->backends[i].node);
    if (r->domains)
        for (size_t i = 0; i < r->ndomains; i++)
            free(r->domains[i]);
    free(r->backends);
    free(r->domains);
    free(r->tokens);
    free(r);
}

static int domain_index(struct ring *r, const char *domain, size_t *out)
{
    for (size_t i = 0; i < r->ndomains; i++)
        if (strcmp(r->domains[i], domain) == 0) {
            *out = i;
            return 0;
        }
    char *copy = strdup(domain);
    if (!copy)
        return -ENOMEM;
    assert(r->ndomains < r->nbackends);
    r->domains[r->ndomains] = copy;
    *out = r->ndomains++;
    return 0;
}

int ring_add_backend(struct ring *r, size_t idx, const char *node, const char *domain,
                     const uint64_t *tokens, size_t ntokens)
{
    if (idx >= r->nbackends || r->backends[idx].added || r->finished)
        return -EINVAL;
    struct ring_backend *b = &r->backends[idx];
    int rc = domain_index(r, domain ? domain : "", &b->domain);
    if (rc < 0)
        return rc;
    b->node = strdup(node ? node : "");
    if (!b->node)
        return -ENOMEM;
    if (ntokens) {
        struct ring_token *t = realloc(r->tokens, (r->ntokens + ntokens) * sizeof(*t));
        if (!t)
            return -ENOMEM;
        r->tokens = t;
        for (size_t i = 0; i < ntokens; i++) {
            t[r->ntokens + i].token = tokens[i];
            t[r->ntokens + i].backend = (uint32_t)idx;
        }
        r->ntokens += ntokens;
        r->with_tokens++;
    }
    b->ntokens = ntokens;
    b->added = true;
    return 0;
}

/* qsort has no context argument; the comparison needs node ids for ties. */
static __thread const struct ring *sort_ring;

static int cmp_token(const void *a, const void *b)
{
    const struct ring_token *x = a, *y = b;
    if (x->token != y->token)
        return x->token < y->token ? -1 : 1;
    /* Two backends drew the same token: order by node id, which every
     * balancer sees the same whatever its config order. */
    int c = strcmp(sort_ring->backends[x->backend].node, sort_ring->backends[y->backend].node);
    if (c)
        return c;
    return x->backend < y->backend ? -1 : x->backend > y->backend;
}

int ring_finish(struct ring *r)
{
    for (size_t i = 0; i < r->nbackends; i++)
        if (!r->backends[i].added)
            return -EINVAL;
    sort_ring = r;
    if (r->ntokens)
        qsort(r->tokens, r->ntokens, sizeof(*r->tokens), cmp_token);
    sort_ring = NULL;
    r->finished = true;
    return 0;
}

size_t ring_backend_count(const struct ring *r)
{
    return r->nbackends;
}

size_t ring_token_count(const struct ring *r)
{
    return r->ntokens;
}

size_t ring_backend_tokens(const struct ring *r, size_t idx)
{
    return idx < r->nbackends ? r->backends[idx].ntokens : 0;
}

size_t ring_domain_count(const struct ring *r)
{
    return r->ndomains;
}

size_t ring_backend_domain(const struct ring *r, size_t idx)
{
    assert(idx < r->nbackends);
    return r->backends[idx].domain;
}

/* Index of the first token >= pos, or ntokens when there is none. */
static size_t lower_bound(const struct ring *r, uint64_t pos)
{
    size_t lo = 0, hi = r->ntokens;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->tokens[mid].token < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t ring_walk(const struct ring *r, uint64_t pos, size_t *out)
{
    assert(r->finished);
    size_t n = 0;
    /* Backends come from a config file: a few hundred at most, so the
     * bitmap fits on the stack. */
    bool seen[r->nbackends ? r->nbackends : 1];
    memset(seen, 0, sizeof(seen));
    if (r->ntokens) {
        size_t start = lower_bound(r, pos);
        for (size_t i = 0; i < r->ntokens && n < r->with_tokens; i++) {
            size_t b = r->tokens[(start + i) % r->ntokens].backend;
            if (!seen[b]) {
                seen[b] = true;
                out[n++] = b;
            }
        }
    }
    for (size_t b = 0; b < r->nbackends; b++)
        if (!seen[b] && r->backends[b].ntokens == 0)
            out[n++] = b;
    assert(n == r->nbackends);
    return n;
}

/* The walk filtered by distinct failure domains and availability. */
static size_t pick(const struct ring *r, const size_t *walk, size_t nwalk, size_t replicas,
                   const bool *available, size_t *out)
{
    bool taken[r->ndomains ? r->ndomains : 1];
    memset(taken, 0, sizeof(taken));
    size_t n = 0;
    for (size_t i = 0; i < nwalk && n < replicas; i++) {
        size_t b = walk[i];
        if (r->backends[b].ntokens == 0)
            break; /* the tokenless tail is not part of the ring */
        if (available && !available[b])
            continue;
        size_t d = r->backends[b].domain;
        if (taken[d])
            continue;
        taken[d] = true;
        out[n++] = b;
    }
    return n;
}

size_t ring_home(const struct ring *r, uint64_t pos, size_t replicas, size_t *out)
{
    size_t walk[r->nbackends ? r->nbackends : 1];
    size_t nwalk = ring_walk(r, pos, walk);
    return pick(r, walk, nwalk, replicas, NULL, out);
}

size_t ring_write_set(const struct ring *r, uint64_t pos, size_t replicas, const bool *available,
                      size_t *out)
{
    size_t walk[r->nbackends ? r->nbackends : 1];
    size_t nwalk = ring_walk(r, pos, walk);
    return pick(r, walk, nwalk, replicas, available, out);
}

size_t ring_read_order(const struct ring *r, uint64_t pos, size_t replicas, size_t *out,
                       size_t *nhome)
{
    size_t walk[r->nbackends ? r->nbackends : 1];
    size_t nwalk = ring_walk(r, pos, walk);
    size_t h = pick(r, walk, nwalk, replicas, NULL, out);
    size_t n = h;
    for (size_t i = 0; i < nwalk; i++) {
        bool home = false;
        for (size_t j = 0; j < h; j++)
            if (out[j] == walk[i])
                home = true;
        if (!home)
            out[n++] = walk[i];
    }
    if (nhome)
        *nhome = h;
    return n;
}
