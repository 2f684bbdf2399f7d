/*
 * objtab.c - the in-memory object table (see objtab.h).
 */
#include "objtab.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SHIFT 14
#define CHUNK_ENTRIES (1u << CHUNK_SHIFT)
#define FLAGS_SHIFT 56
#define LOW56 ((UINT64_C(1) << FLAGS_SHIFT) - 1)

static unsigned char *entry_ptr(const struct objtab *t, uint32_t e)
{
    return t->chunks[e >> CHUNK_SHIFT] + (size_t)(e & (CHUNK_ENTRIES - 1)) * t->stride;
}

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void store64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Bytes 12..15 of the digest: a storaged holds only some ring ranges, so the
 * leading bytes are not uniform within one node, but these are. */
static uint32_t slot_hash(const struct objtab *t, const unsigned char *d)
{
    uint32_t h;
    memcpy(&h, d + 12, 4);
    return h;
}

int objtab_init(struct objtab *t, size_t digest_len)
{
    memset(t, 0, sizeof(*t));
    t->digest_len = digest_len;
    t->stride = digest_len + 16;
    t->mask = 1023;
    t->slots = calloc(t->mask + 1, sizeof(uint32_t));
    return t->slots ? 0 : -ENOMEM;
}

void objtab_destroy(struct objtab *t)
{
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

uint32_t objtab_find(const struct objtab *t, const unsigned char *digest)
{
    for (uint32_t i = slot_hash(t, digest) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t s = t->slots[i];
        if (!s)
            return OBJTAB_NONE;
        if (memcmp(entry_ptr(t, s - 1), digest, t->digest_len) == 0)
            return s - 1;
    }
}

static void place(uint32_t *slots, uint32_t mask, const struct objtab *t, uint32_t e)
{
    uint32_t i = slot_hash(t, entry_ptr(t, e)) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = e + 1;
}

static int grow(struct objtab *t)
{
    uint32_t nmask = t->mask * 2 + 1;
    uint32_t *ns = calloc((size_t)nmask + 1, sizeof(uint32_t));
    if (!ns)
        return -ENOMEM;
    for (uint32_t i = 0; i <= t->mask; i++)
        if (t->slots[i])
            place(ns, nmask, t, t->slots[i] - 1);
    free(t->slots);
    t->slots = ns;
    t->mask = nmask;
    return 0;
}

static uint32_t alloc_entry(struct objtab *t)
{
    if (t->free_head) {
        uint32_t e = t->free_head - 1;
        t->free_head = (uint32_t)load64(entry_ptr(t, e) + t->digest_len);
        return e;
    }
    if (t->used == OBJTAB_NONE - 1)
        return OBJTAB_NONE;
    if ((t->used >> CHUNK_SHIFT) >= t->nchunks) {
        unsigned char **nc = realloc(t->chunks, (t->nchunks + 1) * sizeof(*nc));
        if (!nc)
            return OBJTAB_NONE;
        t->chunks = nc;
        nc[t->nchunks] = malloc((size_t)CHUNK_ENTRIES * t->stride);
        if (!nc[t->nchunks])
            return OBJTAB_NONE;
        t->nchunks++;
    }
    return t->used++;
}

uint32_t objtab_insert(struct objtab *t, const unsigned char *digest, unsigned file,
                       uint64_t offset, uint64_t size, unsigned flags)
{
    /* Keep the load under 3/4 so probes stay short. */
    if ((uint64_t)(t->count + 1) * 4 > (uint64_t)(t->mask + 1) * 3 && grow(t) < 0)
        return OBJTAB_NONE;
    uint32_t e = alloc_entry(t);
    if (e == OBJTAB_NONE)
        return e;
    unsigned char *p = entry_ptr(t, e);
    memcpy(p, digest, t->digest_len);
    store64(p + t->digest_len, (uint64_t)file << FLAGS_SHIFT | (offset & LOW56));
    store64(p + t->digest_len + 8, (uint64_t)(flags & 0x7f) << FLAGS_SHIFT | (size & LOW56));
    place(t->slots, t->mask, t, e);
    t->count++;
    return e;
}

void objtab_remove(struct objtab *t, uint32_t e)
{
    unsigned char *p = entry_ptr(t, e);
    uint32_t i = slot_hash(t, p) & t->mask;
    while (t->slots[i] != e + 1)
        i = (i + 1) & t->mask;
    /* Backward-shift: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & t->mask; t->slots[j]; j = (j + 1) & t->mask) {
        uint32_t home = slot_hash(t, entry_ptr(t, t->slots[j] - 1)) & t->mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole] = 0;
    store64(p + t->digest_len, t->free_head);
    store64(p + t->digest_len + 8, (uint64_t)OBJTAB_FREE << FLAGS_SHIFT);
    t->free_head = e + 1;
    t->count--;
}

bool objtab_get(const struct objtab *t, uint32_t e, struct objtab_entry *out)
{
    if (e >= t->used)
        return false;
    const unsigned char *p = entry_ptr(t, e);
    uint64_t sz = load64(p + t->digest_len + 8);
    unsigned flags = (unsigned)(sz >> FLAGS_SHIFT);
    if (flags & OBJTAB_FREE)
        return false;
    uint64_t loc = load64(p + t->digest_len);
    out->digest = p;
    out->file = (unsigned)(loc >> FLAGS_SHIFT);
    out->offset = loc & LOW56;
    out->size = sz & LOW56;
    out->flags = flags;
    return true;
}

void objtab_set_location(struct objtab *t, uint32_t e, unsigned file, uint64_t offset)
{
    store64(entry_ptr(t, e) + t->digest_len, (uint64_t)file << FLAGS_SHIFT | (offset & LOW56));
}

void objtab_set_flags(struct objtab *t, uint32_t e, unsigned flags)
{
    unsigned char *p = entry_ptr(t, e) + t->digest_len + 8;
    store64(p, (uint64_t)(flags & 0x7f) << FLAGS_SHIFT | (load64(p) & LOW56));
}

void objtab_set_size(struct objtab *t, uint32_t e, uint64_t size)
{
    unsigned char *p = entry_ptr(t, e) + t->digest_len + 8;
    store64(p, (load64(p) & ~LOW56) | (size & LOW56));
}

size_t objtab_memory(const struct objtab *t)
{
    return t->nchunks * (size_t)CHUNK_ENTRIES * t->stride + ((size_t)t->mask + 1) * 4 +
           t->nchunks * sizeof(void *);
}

/* ---- pages in key order (objtab.h) -------------------------------------- */

static uint64_t prefix64(const unsigned char *d)
{
    uint64_t v;
    memcpy(&v, d, 8);
    return be64toh(v);
}

static unsigned char *page_rec(const struct objtab_page *p, size_t i)
{
    return p->recs + i * p->stride;
}

/* Key order of d (whose prefix is k) against b (prefix k2). */
static int page_cmp(const struct objtab_page *p, uint64_t k, const unsigned char *d, uint64_t k2,
                    const unsigned char *b)
{
    if (k != k2)
        return k < k2 ? -1 : 1;
    return memcmp(d + 8, b + 8, p->digest_len - 8);
}

static int rec_cmp(const unsigned char *a, const unsigned char *b, const struct objtab_page *p)
{
    return page_cmp(p, prefix64(a), a, prefix64(b), b);
}

static inline void swap_n(unsigned char *a, unsigned char *b, size_t n)
{
    unsigned char tmp[64 + 8];
    memcpy(tmp, a, n);
    memcpy(a, b, n);
    memcpy(b, tmp, n);
}

/* The two strides that exist (SHA-1 and SHA-256 keys) get constant-size
 * copies the compiler inlines: swaps were a fifth of a listing's CPU. */
static void page_swap(struct objtab_page *p, size_t i, size_t j)
{
    unsigned char *a = page_rec(p, i), *b = page_rec(p, j);
    if (p->stride == 28)
        swap_n(a, b, 28);
    else if (p->stride == 40)
        swap_n(a, b, 40);
    else
        swap_n(a, b, p->stride);
}

/* Partitions recs[lo..hi] (lo < hi) around the median of three: returns j
 * with recs[lo..j) <= recs[j] <= recs(j..hi]. */
static size_t page_partition(struct objtab_page *p, size_t lo, size_t hi)
{
    unsigned char pivot[64 + 8];
    size_t mid = lo + (hi - lo) / 2;
    if (rec_cmp(page_rec(p, mid), page_rec(p, lo), p) < 0)
        page_swap(p, mid, lo);
    if (rec_cmp(page_rec(p, hi), page_rec(p, lo), p) < 0)
        page_swap(p, hi, lo);
    if (rec_cmp(page_rec(p, hi), page_rec(p, mid), p) < 0)
        page_swap(p, hi, mid);
    page_swap(p, lo, mid);
    memcpy(pivot, page_rec(p, lo), p->stride);
    size_t i = lo, j = hi + 1;
    for (;;) {
        do
            i++;
        while (i <= hi && rec_cmp(page_rec(p, i), pivot, p) < 0);
        do
            j--;
        while (rec_cmp(page_rec(p, j), pivot, p) > 0);
        if (i >= j)
            break;
        page_swap(p, i, j);
    }
    page_swap(p, lo, j);
    return j;
}

/* Sorts recs[lo..hi] in place (quicksort, insertion sort for short runs;
 * recursion on the smaller side only, so the stack stays O(log n)): no
 * scratch copy of the page, unlike qsort. Keys are digests, which nobody
 * chooses, so the median of three does not meet its bad cases. */
static void page_sort(struct objtab_page *p, size_t lo, size_t hi)
{
    while (hi > lo && hi - lo >= 16) {
        size_t j = page_partition(p, lo, hi);
        if (j - lo < hi - j) {
            if (j > lo)
                page_sort(p, lo, j - 1);
            lo = j + 1;
        } else {
            page_sort(p, j + 1, hi);
            if (j == lo)
                return;
            hi = j - 1;
        }
    }
    for (size_t i = lo + 1; i <= hi && hi > lo; i++)
        for (size_t k = i; k > lo && rec_cmp(page_rec(p, k), page_rec(p, k - 1), p) < 0; k--)
            page_swap(p, k, k - 1);
}

/* Quickselect: puts the k smallest records (k < n) in recs[0..k), the k-th
 * smallest last among them. Expected linear time. */
static void page_select(struct objtab_page *p, size_t k)
{
    size_t lo = 0, hi = p->n - 1, want = k - 1;
    while (lo < hi) {
        size_t j = page_partition(p, lo, hi);
        if (j == want)
            return;
        if (j < want)
            lo = j + 1;
        else
            hi = j - 1;
    }
}

/* The page is full: keeps its smallest half, and the largest key kept
 * becomes the limit (keys from there up are left for a later page). */
static void page_halve(struct objtab_page *p)
{
    size_t k = p->n / 2;
    page_select(p, k);
    /* recs[k-1] is the k-th smallest; [0, k-1) are not larger. */
    p->n = k;
    memcpy(p->limit, page_rec(p, k - 1), p->digest_len);
    p->limit64 = prefix64(p->limit);
    p->has_limit = true;
}

/* Room for one more key: the page grows to cap; on out of memory it keeps
 * the size it has (smaller pages, more scans, the same answer). */
static void page_grow(struct objtab_page *p)
{
    size_t want = p->alloc * 2 < p->cap ? p->alloc * 2 : p->cap;
    unsigned char *r = realloc(p->recs, want * p->stride);
    if (!r) {
        p->cap = p->alloc;
        return;
    }
    p->recs = r;
    p->alloc = want;
}

int objtab_page_init(struct objtab_page *p, size_t digest_len, size_t cap)
{
    memset(p, 0, sizeof(*p));
    if (digest_len < 8 || digest_len > sizeof(p->after))
        return -EINVAL;
    p->digest_len = digest_len;
    p->stride = digest_len + 8;
    p->cap = cap < 2 ? 2 : cap;
    p->alloc = p->cap < 1024 ? p->cap : 1024;
    p->recs = malloc(p->alloc * p->stride);
    if (!p->recs) {
        objtab_page_free(p);
        return -ENOMEM;
    }
    return 0;
}

void objtab_page_free(struct objtab_page *p)
{
    free(p->recs);
    memset(p, 0, sizeof(*p));
}

void objtab_page_start(struct objtab_page *p, const unsigned char *after)
{
    p->n = 0;
    p->next = 0;
    p->has_limit = false;
    p->has_after = after != NULL;
    if (after) {
        memcpy(p->after, after, p->digest_len);
        p->after64 = prefix64(after);
    }
}

static void page_offer(struct objtab_page *p, const unsigned char *d, uint64_t size)
{
    uint64_t k = prefix64(d);
    if (p->has_after && page_cmp(p, k, d, p->after64, p->after) <= 0)
        return;
    if (p->has_limit && page_cmp(p, k, d, p->limit64, p->limit) >= 0)
        return;
    if (p->n == p->alloc && p->alloc < p->cap)
        page_grow(p);
    if (p->n == p->alloc) {
        page_halve(p);
        if (page_cmp(p, k, d, p->limit64, p->limit) >= 0)
            return;
    }
    unsigned char *r = page_rec(p, p->n++);
    memcpy(r, d, p->digest_len);
    memcpy(r + p->digest_len, &size, 8);
}

bool objtab_page_scan(struct objtab_page *p, const struct objtab *t, size_t step, uint64_t min_size,
                      uint64_t max_size, unsigned skip, unsigned need)
{
    uint64_t e = p->next, end = p->next + step;
    if (end > t->used || end < e)
        end = t->used;
    struct objtab_entry en;
    for (; e < end; e++) {
        if (!objtab_get(t, (uint32_t)e, &en) || (en.flags & skip) || (en.flags & need) != need)
            continue;
        if (en.size < min_size || en.size >= max_size)
            continue;
        page_offer(p, en.digest, en.size);
    }
    p->next = e;
    return e >= t->used;
}

bool objtab_page_finish(struct objtab_page *p)
{
    if (p->n > 1)
        page_sort(p, 0, p->n - 1);
    size_t out = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (out && !memcmp(page_rec(p, out - 1), page_rec(p, i), p->digest_len))
            continue;
        if (out != i)
            memcpy(page_rec(p, out), page_rec(p, i), p->stride);
        out++;
    }
    p->n = out;
    return p->has_limit;
}
