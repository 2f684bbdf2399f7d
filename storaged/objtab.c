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

bool objtab_list_page(const struct objtab *t, uint64_t *next, uint64_t min_size, uint64_t max_size,
                      unsigned skip, unsigned need, size_t max,
                      void (*fn)(void *cls, const unsigned char *digest, uint64_t size), void *cls)
{
    size_t emitted = 0;
    uint64_t e = *next;
    struct objtab_entry en;
    for (; e < t->used && emitted < max; e++) {
        if (!objtab_get(t, (uint32_t)e, &en) || (en.flags & skip) || (en.flags & need) != need)
            continue;
        if (en.size < min_size || en.size >= max_size)
            continue;
        fn(cls, en.digest, en.size);
        emitted++;
    }
    *next = e;
    return e >= t->used;
}

/* ---- pages in key order (objtab.h) -------------------------------------- */

static uint64_t prefix64(const unsigned char *d)
{
    uint64_t v;
    memcpy(&v, d, 8);
    return be64toh(v);
}

static unsigned char *page_key(const struct objtab_page *p, size_t i)
{
    return p->digests + i * p->digest_len;
}

/* Key order, the 8-byte prefix first (k is prefix64(a)). */
static int page_cmp(const struct objtab_page *p, uint64_t k, const unsigned char *a, uint64_t k2,
                    const unsigned char *b)
{
    if (k != k2)
        return k < k2 ? -1 : 1;
    return memcmp(a + 8, b + 8, p->digest_len - 8);
}

static void page_swap(struct objtab_page *p, size_t i, size_t j)
{
    unsigned char tmp[64];
    memcpy(tmp, page_key(p, i), p->digest_len);
    memcpy(page_key(p, i), page_key(p, j), p->digest_len);
    memcpy(page_key(p, j), tmp, p->digest_len);
    uint64_t s = p->sizes[i];
    p->sizes[i] = p->sizes[j];
    p->sizes[j] = s;
}

static bool page_less(const struct objtab_page *p, size_t i, size_t j)
{
    return memcmp(page_key(p, i), page_key(p, j), p->digest_len) < 0;
}

/* Max-heap over [0, n): moves element i down to its place. */
static void page_sift_down(struct objtab_page *p, size_t i, size_t n)
{
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        if (l < n && page_less(p, big, l))
            big = l;
        if (l + 1 < n && page_less(p, big, l + 1))
            big = l + 1;
        if (big == i)
            return;
        page_swap(p, i, big);
        i = big;
    }
}

static void page_sift_up(struct objtab_page *p, size_t i)
{
    while (i > 0 && page_less(p, (i - 1) / 2, i)) {
        page_swap(p, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

/* Room for one more key; on failure the page keeps the size it has
 * (smaller pages, more scans, the same answer). */
static bool page_grow(struct objtab_page *p)
{
    size_t want = p->alloc * 2 < p->cap ? p->alloc * 2 : p->cap;
    unsigned char *d = realloc(p->digests, want * p->digest_len);
    if (d)
        p->digests = d;
    uint64_t *s = d ? realloc(p->sizes, want * sizeof(uint64_t)) : NULL;
    if (s)
        p->sizes = s;
    if (!d || !s) {
        p->cap = p->alloc;
        return false;
    }
    p->alloc = want;
    return true;
}

int objtab_page_init(struct objtab_page *p, size_t digest_len, size_t cap)
{
    memset(p, 0, sizeof(*p));
    if (digest_len < 8 || digest_len > sizeof(p->after) || cap == 0)
        return -EINVAL;
    p->digest_len = digest_len;
    p->cap = cap;
    p->alloc = cap < 1024 ? cap : 1024;
    p->digests = malloc(p->alloc * digest_len);
    p->sizes = malloc(p->alloc * sizeof(uint64_t));
    if (!p->digests || !p->sizes) {
        objtab_page_free(p);
        return -ENOMEM;
    }
    return 0;
}

void objtab_page_free(struct objtab_page *p)
{
    free(p->digests);
    free(p->sizes);
    memset(p, 0, sizeof(*p));
}

void objtab_page_start(struct objtab_page *p, const unsigned char *after)
{
    p->n = 0;
    p->next = 0;
    p->full = false;
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
    if (p->n == p->alloc && p->n < p->cap)
        page_grow(p);
    if (p->n == p->cap) {
        p->full = true;
        if (page_cmp(p, k, d, prefix64(page_key(p, 0)), page_key(p, 0)) >= 0)
            return;
        memcpy(page_key(p, 0), d, p->digest_len);
        p->sizes[0] = size;
        page_sift_down(p, 0, p->n);
    } else {
        memcpy(page_key(p, p->n), d, p->digest_len);
        p->sizes[p->n] = size;
        page_sift_up(p, p->n);
        p->n++;
    }
    if (p->n == p->cap)
        p->full = true;
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
    /* Heap sort: the largest goes to the end, one at a time. */
    for (size_t i = p->n; i > 1; i--) {
        page_swap(p, 0, i - 1);
        page_sift_down(p, 0, i - 1);
    }
    size_t out = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (out && !memcmp(page_key(p, out - 1), page_key(p, i), p->digest_len))
            continue;
        if (out != i) {
            memcpy(page_key(p, out), page_key(p, i), p->digest_len);
            p->sizes[out] = p->sizes[i];
        }
        out++;
    }
    p->n = out;
    return p->full;
}
