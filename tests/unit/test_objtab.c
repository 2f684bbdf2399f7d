/*
 * test_objtab.c - the in-memory object table (storaged/objtab.c): insert,
 * find and remove on 200k random digests checked against a reference,
 * backward-shift deletion across clusters and the wrap-around of the slot
 * array, entry numbers that stay valid while the table grows, packing of
 * location and size, memory per object at one million entries, and
 * listing pages in key order (objtab_page_*) while the table changes
 * between the steps of a scan and between pages.
 */
#include "objtab.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#define FMT_NFILES_TEST 50 /* the data files a location may name */

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void random_digest(unsigned char *d, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rng();
        memcpy(d + i, &v, len - i < 8 ? len - i : 8);
    }
}

struct ref {
    unsigned char digest[32];
    bool present;
    uint32_t e;
    unsigned file;
    uint64_t offset, size;
    unsigned flags;
};

static int check_entry(const struct objtab *t, const struct ref *r, size_t dl)
{
    uint32_t e = objtab_find(t, r->digest);
    if (!r->present)
        return e == OBJTAB_NONE;
    if (e != r->e)
        return 0;
    struct objtab_entry en;
    if (!objtab_get(t, e, &en))
        return 0;
    return memcmp(en.digest, r->digest, dl) == 0 && en.file == r->file && en.offset == r->offset &&
           en.size == r->size && en.flags == r->flags;
}

static void run_random(size_t dl)
{
    enum { N = 200000 };
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, dl), 0);
    struct ref *refs = calloc(N, sizeof(*refs));
    rng_state = 42 + dl;
    for (size_t i = 0; i < N; i++)
        random_digest(refs[i].digest, dl);
    size_t present = 0, bad = 0;
    /* Insert all, with random removals interleaved. */
    for (size_t i = 0; i < N; i++) {
        struct ref *r = &refs[i];
        r->file = (unsigned)(rng() % FMT_NFILES_TEST);
        r->offset = rng() & ((UINT64_C(1) << 56) - 1);
        r->size = rng() & ((UINT64_C(1) << 56) - 1);
        r->flags = (unsigned)(rng() & OBJTAB_MARKED);
        r->e = objtab_insert(&t, r->digest, r->file, r->offset, r->size, r->flags);
        if (r->e == OBJTAB_NONE)
            CU_FAIL_FATAL("insert failed");
        r->present = true;
        present++;
        if (rng() % 3 == 0) {
            struct ref *victim = &refs[rng() % (i + 1)];
            if (victim->present) {
                objtab_remove(&t, victim->e);
                victim->present = false;
                present--;
            }
        }
    }
    CU_ASSERT_EQUAL(t.count, present);
    for (size_t i = 0; i < N; i++)
        if (!check_entry(&t, &refs[i], dl))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    /* Remove half of what is left, re-insert some removed ones, check again. */
    for (size_t i = 0; i < N; i++) {
        struct ref *r = &refs[i];
        if (r->present && rng() % 2) {
            objtab_remove(&t, r->e);
            r->present = false;
            present--;
        } else if (!r->present && rng() % 4 == 0) {
            r->e = objtab_insert(&t, r->digest, r->file, r->offset, r->size, r->flags);
            r->present = true;
            present++;
        }
    }
    CU_ASSERT_EQUAL(t.count, present);
    bad = 0;
    for (size_t i = 0; i < N; i++)
        if (!check_entry(&t, &refs[i], dl))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    /* Digests never inserted are not found. */
    size_t false_hits = 0;
    for (int i = 0; i < 10000; i++) {
        unsigned char d[32];
        random_digest(d, dl);
        if (objtab_find(&t, d) != OBJTAB_NONE)
            false_hits++;
    }
    CU_ASSERT_EQUAL(false_hits, 0);
    /* Remove everything: the table is empty and finds nothing. */
    for (size_t i = 0; i < N; i++)
        if (refs[i].present) {
            objtab_remove(&t, refs[i].e);
            refs[i].present = false;
        }
    CU_ASSERT_EQUAL(t.count, 0);
    bad = 0;
    for (size_t i = 0; i < N; i++)
        if (objtab_find(&t, refs[i].digest) != OBJTAB_NONE)
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    for (uint32_t i = 0; i <= t.mask; i++)
        if (t.slots[i])
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    free(refs);
    objtab_destroy(&t);
}

static void test_random_sha1(void)
{
    run_random(20);
}

static void test_random_sha256(void)
{
    run_random(32);
}

/* A digest whose slot hash (bytes 12..15, little-endian) is h. */
static void digest_with_home(unsigned char *d, size_t dl, uint32_t h, uint32_t uniq)
{
    memset(d, 0, dl);
    memcpy(d, &uniq, 4);
    memcpy(d + 12, &h, 4);
}

/*
 * Backward-shift deletion: long probe runs that wrap around the end of the
 * 1024-slot array, members whose homes lie before, inside and after the
 * hole; after every single deletion every remaining key is findable.
 */
static void test_backward_shift(void)
{
    const size_t dl = 20;
    for (int pattern = 0; pattern < 40; pattern++) {
        struct objtab t;
        CU_ASSERT_EQUAL_FATAL(objtab_init(&t, dl), 0);
        CU_ASSERT_EQUAL_FATAL(t.mask, 1023); /* the test relies on the initial size */
        enum { M = 60 };
        unsigned char d[M][20];
        uint32_t e[M];
        bool live[M];
        rng_state = 1000 + (uint64_t)pattern;
        for (int i = 0; i < M; i++) {
            /* Homes clustered around the wrap point and around slot 500,
             * with high bits set that the mask drops. */
            static const uint32_t homes[] = {1018, 1020, 1021, 1023, 0, 1, 3, 498, 500, 501};
            uint32_t h = homes[rng() % 10] | (uint32_t)(rng() << 10);
            digest_with_home(d[i], dl, h, (uint32_t)i + 1);
            e[i] = objtab_insert(&t, d[i], 1, (uint64_t)i, (uint64_t)i * 10, 0);
            live[i] = true;
        }
        CU_ASSERT_EQUAL(t.mask, 1023);
        int failures = 0;
        for (int step = 0; step < M; step++) {
            int v = (int)(rng() % M);
            while (!live[v])
                v = (v + 1) % M;
            objtab_remove(&t, e[v]);
            live[v] = false;
            for (int i = 0; i < M; i++) {
                uint32_t f = objtab_find(&t, d[i]);
                if (live[i] ? f != e[i] : f != OBJTAB_NONE)
                    failures++;
            }
        }
        CU_ASSERT_EQUAL(failures, 0);
        CU_ASSERT_EQUAL(t.count, 0);
        objtab_destroy(&t);
    }
}

/* Entry numbers stay valid while the table grows and other entries come
 * and go; a scan by number sees every live entry once. */
static void test_entry_numbers_stable(void)
{
    const size_t dl = 20;
    enum { FIRST = 1000, MORE = 100000 };
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, dl), 0);
    rng_state = 7;
    unsigned char first[FIRST][20];
    uint32_t fe[FIRST];
    for (int i = 0; i < FIRST; i++) {
        random_digest(first[i], dl);
        fe[i] = objtab_insert(&t, first[i], 2, (uint64_t)i, 1, 0);
    }
    uint32_t mask0 = t.mask;
    unsigned char *more = malloc((size_t)MORE * dl);
    uint32_t *me = malloc(MORE * sizeof(uint32_t));
    for (int i = 0; i < MORE; i++) {
        random_digest(more + (size_t)i * dl, dl);
        me[i] = objtab_insert(&t, more + (size_t)i * dl, 3, (uint64_t)i, 2, 0);
    }
    CU_ASSERT(t.mask > mask0); /* it did grow */
    for (int i = 0; i < MORE; i += 2)
        objtab_remove(&t, me[i]);
    int bad = 0;
    for (int i = 0; i < FIRST; i++) {
        struct objtab_entry en;
        if (objtab_find(&t, first[i]) != fe[i] || !objtab_get(&t, fe[i], &en) ||
            memcmp(en.digest, first[i], dl) != 0 || en.offset != (uint64_t)i)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Removed entries are not live; e >= used is not live. */
    struct objtab_entry en;
    CU_ASSERT_FALSE(objtab_get(&t, me[0], &en));
    CU_ASSERT_FALSE(objtab_get(&t, t.used, &en));
    CU_ASSERT_FALSE(objtab_get(&t, OBJTAB_NONE - 1, &en));
    /* A scan by number sees exactly the live entries. */
    size_t seen = 0;
    for (uint32_t e = 0; e < t.used; e++)
        if (objtab_get(&t, e, &en))
            seen++;
    CU_ASSERT_EQUAL(seen, t.count);
    CU_ASSERT_EQUAL(seen, FIRST + MORE / 2);
    /* Freed numbers are reused before new ones are handed out. */
    uint32_t used = t.used;
    unsigned char d[20];
    random_digest(d, dl);
    uint32_t n = objtab_insert(&t, d, 0, 0, 0, 0);
    CU_ASSERT(n < used);
    CU_ASSERT_EQUAL(t.used, used);
    free(more);
    free(me);
    objtab_destroy(&t);
}

static void test_fields_and_setters(void)
{
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, 32), 0);
    unsigned char d[32];
    memset(d, 0xab, sizeof(d));
    const uint64_t max56 = (UINT64_C(1) << 56) - 1;
    uint32_t e = objtab_insert(&t, d, 49, max56, max56, OBJTAB_MARKED);
    struct objtab_entry en;
    CU_ASSERT_TRUE_FATAL(objtab_get(&t, e, &en));
    CU_ASSERT_EQUAL(en.file, 49);
    CU_ASSERT_EQUAL(en.offset, max56);
    CU_ASSERT_EQUAL(en.size, max56);
    CU_ASSERT_EQUAL(en.flags, OBJTAB_MARKED);
    /* Moving keeps size and flags; flags keep location and size. */
    objtab_set_location(&t, e, 3, 12345);
    CU_ASSERT_TRUE(objtab_get(&t, e, &en));
    CU_ASSERT_EQUAL(en.file, 3);
    CU_ASSERT_EQUAL(en.offset, 12345);
    CU_ASSERT_EQUAL(en.size, max56);
    CU_ASSERT_EQUAL(en.flags, OBJTAB_MARKED);
    objtab_set_flags(&t, e, 0);
    CU_ASSERT_TRUE(objtab_get(&t, e, &en));
    CU_ASSERT_EQUAL(en.flags, 0);
    CU_ASSERT_EQUAL(en.file, 3);
    CU_ASSERT_EQUAL(en.offset, 12345);
    CU_ASSERT_EQUAL(en.size, max56);
    /* A 1 TiB object at a 1 PiB offset (sizes are 64-bit in the API). */
    unsigned char d2[32];
    memset(d2, 0xcd, sizeof(d2));
    uint32_t e2 = objtab_insert(&t, d2, 0, UINT64_C(1) << 50, UINT64_C(1) << 40, 0);
    CU_ASSERT_TRUE(objtab_get(&t, e2, &en));
    CU_ASSERT_EQUAL(en.offset, UINT64_C(1) << 50);
    CU_ASSERT_EQUAL(en.size, UINT64_C(1) << 40);
    CU_ASSERT_EQUAL(en.flags, 0);
    /* An empty object. */
    unsigned char d3[32] = {0};
    uint32_t e3 = objtab_insert(&t, d3, 0, 0, 0, 0);
    CU_ASSERT_TRUE(objtab_get(&t, e3, &en));
    CU_ASSERT_EQUAL(en.size, 0);
    CU_ASSERT_EQUAL(objtab_find(&t, d3), e3);
    objtab_destroy(&t);
}

static void check_memory(size_t dl)
{
    enum { N = 1000000 };
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, dl), 0);
    rng_state = 99;
    unsigned char d[32];
    for (uint32_t i = 0; i < N; i++) {
        random_digest(d, dl);
        if (objtab_insert(&t, d, i % 50, i, i, 0) == OBJTAB_NONE)
            CU_FAIL_FATAL("insert failed");
    }
    CU_ASSERT_EQUAL(t.count, N);
    size_t mem = objtab_memory(&t);
    double per = (double)mem / N;
    printf("\n  %zu-byte digests: %.1f bytes per object at %d objects\n", dl, per, N);
    CU_ASSERT(per < 64.0);
    /* The figure is honest: at least the packed entries and the slots. */
    CU_ASSERT(mem >= (size_t)N * (dl + 16) + ((size_t)t.mask + 1) * sizeof(uint32_t));
    /* Still correct at that size. */
    rng_state = 99;
    size_t bad = 0;
    for (uint32_t i = 0; i < N; i += 97) {
        random_digest(d, dl);
        uint32_t e = objtab_find(&t, d);
        struct objtab_entry en;
        if (e == OBJTAB_NONE || !objtab_get(&t, e, &en) || en.offset != i)
            bad++;
        for (int k = 0; k < 96; k++)
            random_digest(d, dl);
    }
    CU_ASSERT_EQUAL(bad, 0);
    objtab_destroy(&t);
}

static void test_memory_sha1(void)
{
    check_memory(20);
}

static void test_memory_sha256(void)
{
    check_memory(32);
}

/* ---- pages in key order (objtab_page_*) ----------------------------------- */

/* What a whole listing by pages gave: keys in the order listed. */
struct listing {
    unsigned char *keys; /* n * dlen */
    uint64_t *sizes;
    size_t n, cap, dlen;
};

static void listing_add(struct listing *l, const unsigned char *d, uint64_t size)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->keys = realloc(l->keys, l->cap * l->dlen);
        l->sizes = realloc(l->sizes, l->cap * sizeof(uint64_t));
    }
    memcpy(l->keys + l->n * l->dlen, d, l->dlen);
    l->sizes[l->n++] = size;
}

/* Hook run between two steps of a scan (the caller would have released the
 * table's lock there): may change the table. */
typedef void (*between_fn)(struct objtab *t, unsigned step_no, void *cls);

/* Lists t by pages of cap keys, steps of step entries, into out. Pages are
 * bounded: the loop stops after 100000 pages. Returns the number of pages. */
static size_t list_sorted(struct objtab *t, size_t cap, size_t step, uint64_t min, uint64_t max,
                          unsigned skip, unsigned need, between_fn between, void *cls,
                          struct listing *out)
{
    struct objtab_page p;
    memset(out, 0, sizeof(*out));
    out->dlen = t->digest_len;
    CU_ASSERT_EQUAL_FATAL(objtab_page_init(&p, t->digest_len, cap), 0);
    unsigned char after[64];
    bool from = false, more = true;
    size_t pages = 0;
    unsigned steps = 0;
    while (more && pages < 100000) {
        objtab_page_start(&p, from ? after : NULL);
        while (!objtab_page_scan(&p, t, step, min, max, skip, need))
            if (between)
                between(t, steps++, cls);
        more = objtab_page_finish(&p);
        CU_ASSERT(p.n <= (cap < 2 ? 2 : cap));
        for (size_t i = 0; i < p.n; i++)
            listing_add(out, objtab_page_key(&p, i), objtab_page_size(&p, i));
        if (p.n) {
            memcpy(after, objtab_page_key(&p, p.n - 1), p.digest_len);
            from = true;
        } else {
            more = false;
        }
        pages++;
    }
    objtab_page_free(&p);
    return pages;
}

static bool strictly_ascending(const struct listing *l)
{
    for (size_t i = 1; i < l->n; i++)
        if (memcmp(l->keys + (i - 1) * l->dlen, l->keys + i * l->dlen, l->dlen) >= 0)
            return false;
    return true;
}

static size_t times_listed(const struct listing *l, const unsigned char *d)
{
    size_t c = 0;
    for (size_t i = 0; i < l->n; i++)
        c += !memcmp(l->keys + i * l->dlen, d, l->dlen);
    return c;
}

static void listing_free(struct listing *l)
{
    free(l->keys);
    free(l->sizes);
}

static int cmp20(const void *a, const void *b)
{
    return memcmp(a, b, 20);
}

/* Every key once, ascending, over many pages, for both digest lengths; keys
 * that share their first 8 bytes are ordered by the rest. */
static void check_sorted_pages(size_t dlen)
{
    rng_state = 99 + dlen;
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, dlen), 0);
    enum { N = 5000 };
    static unsigned char keys[N][32];
    for (size_t i = 0; i < N; i++) {
        random_digest(keys[i], dlen);
        if (i % 10 == 1) /* same 8-byte prefix as the key before it */
            memcpy(keys[i], keys[i - 1], 8);
        CU_ASSERT_NOT_EQUAL_FATAL(objtab_insert(&t, keys[i], 0, 0, i, 0), OBJTAB_NONE);
    }
    size_t caps[] = {1, 2, 7, 100, 4999, 5000, 5001, 65536};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        struct listing l;
        size_t pages = list_sorted(&t, caps[c], 333, 0, UINT64_MAX, 0, 0, NULL, NULL, &l);
        CU_ASSERT_EQUAL(l.n, N);
        CU_ASSERT(strictly_ascending(&l));
        /* Between cap/2 and cap keys a page (cap is at least 2), plus
         * perhaps one empty page at the end. */
        size_t cap = caps[c] < 2 ? 2 : caps[c];
        CU_ASSERT(pages >= (N + cap - 1) / cap && pages <= 2 * N / cap + 2);
        bool sizes_ok = true;
        for (size_t i = 0; i < l.n && sizes_ok; i++) {
            uint32_t e = objtab_find(&t, l.keys + i * dlen);
            struct objtab_entry en;
            sizes_ok = e != OBJTAB_NONE && objtab_get(&t, e, &en) && en.size == l.sizes[i];
        }
        CU_ASSERT(sizes_ok);
        listing_free(&l);
    }
    objtab_destroy(&t);
}

static void test_sorted_pages_sha1(void)
{
    check_sorted_pages(20);
}

static void test_sorted_pages_sha256(void)
{
    check_sorted_pages(32);
}

/* The size bounds select, the skip flags leave out, the need flags are
 * required (OBJTAB_MARKED: the garbage), across pages. */
static void test_sorted_pages_filters(void)
{
    rng_state = 7;
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, 20), 0);
    enum { N = 3000 };
    static unsigned char keys[N][20];
    size_t want_live = 0, want_marked_mid = 0;
    for (size_t i = 0; i < N; i++) {
        random_digest(keys[i], 20);
        unsigned flags = i % 3 == 0 ? OBJTAB_MARKED : i % 3 == 1 ? 0x40u : 0;
        uint64_t size = i % 50;
        CU_ASSERT_NOT_EQUAL_FATAL(objtab_insert(&t, keys[i], 0, 0, size, flags), OBJTAB_NONE);
        want_live += !(flags & 0x40u);
        want_marked_mid += flags == OBJTAB_MARKED && size >= 10 && size < 20;
    }
    struct listing l;
    list_sorted(&t, 64, 100, 0, UINT64_MAX, 0x40u, 0, NULL, NULL, &l);
    CU_ASSERT_EQUAL(l.n, want_live);
    CU_ASSERT(strictly_ascending(&l));
    listing_free(&l);
    list_sorted(&t, 64, 100, 10, 20, 0, OBJTAB_MARKED, NULL, NULL, &l);
    CU_ASSERT_EQUAL(l.n, want_marked_mid);
    CU_ASSERT(strictly_ascending(&l));
    bool in_bounds = true;
    for (size_t i = 0; i < l.n; i++)
        in_bounds = in_bounds && l.sizes[i] >= 10 && l.sizes[i] < 20;
    CU_ASSERT(in_bounds);
    listing_free(&l);
    /* Nothing matches: one empty page, done. */
    CU_ASSERT_EQUAL(list_sorted(&t, 64, 100, 1000, 2000, 0, 0, NULL, NULL, &l), 1);
    CU_ASSERT_EQUAL(l.n, 0);
    listing_free(&l);
    objtab_destroy(&t);
}

/* Changes between the steps of a scan and between pages: the table grows
 * (new entries, slot array doubled), keys are removed, and a key removed
 * and added again lands on an entry the scan has not reached yet (the free
 * list is last-in first-out), so one scan meets it twice. The listing must
 * still be strictly ascending (no key twice), hold every key present from
 * start to end exactly once, and no key never stored. */
struct churn {
    unsigned char (*stable)[20]; /* never touched: must each be listed once */
    size_t nstable;
    unsigned char (*victims)[20]; /* removed during the listing */
    size_t nvictims, removed;
    unsigned char twice[20]; /* removed and added again mid-scan */
    uint32_t twice_entry_before, twice_entry_after;
    unsigned char (*added)[20]; /* added during the listing */
    size_t nadded, added_n;
};

static void churn_between(struct objtab *t, unsigned step_no, void *cls)
{
    struct churn *c = cls;
    if (step_no == 0) {
        /* The scan has passed entry 0..step-1. Free the entry of one key
         * ahead, then the entry of "twice" (behind): re-adding "twice"
         * takes the last freed... so free the one behind first. */
        uint32_t behind = objtab_find(t, c->twice);
        c->twice_entry_before = behind;
        uint32_t ahead = objtab_find(t, c->victims[0]);
        objtab_remove(t, behind);
        objtab_remove(t, ahead); /* freed last: taken first */
        c->removed = 1;
        c->twice_entry_after = objtab_insert(t, c->twice, 0, 0, 42, 0);
    }
    /* Grow the table while the scan goes on, and remove a victim a step. */
    for (int i = 0; i < 300 && c->added_n < c->nadded; i++, c->added_n++)
        objtab_insert(t, c->added[c->added_n], 0, 0, 1, 0);
    if (c->removed < c->nvictims) {
        uint32_t e = objtab_find(t, c->victims[c->removed++]);
        if (e != OBJTAB_NONE)
            objtab_remove(t, e);
    }
}

static void test_sorted_pages_churn(void)
{
    rng_state = 1234;
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, 20), 0);
    enum { NSTABLE = 4000, NVICTIMS = 200, NADDED = 20000 };
    struct churn c = {.nstable = NSTABLE, .nvictims = NVICTIMS, .nadded = NADDED};
    c.stable = calloc(NSTABLE, 20);
    c.victims = calloc(NVICTIMS, 20);
    c.added = calloc(NADDED, 20);
    /* "twice" first: entry 0, behind the scan after its first step. */
    random_digest(c.twice, 20);
    CU_ASSERT_EQUAL_FATAL(objtab_insert(&t, c.twice, 0, 0, 42, 0), 0);
    for (size_t i = 0; i < NSTABLE; i++) {
        random_digest(c.stable[i], 20);
        objtab_insert(&t, c.stable[i], 0, 0, i, 0);
        if (i < NVICTIMS) {
            random_digest(c.victims[i], 20);
            objtab_insert(&t, c.victims[i], 0, 0, i, 0);
        }
    }
    for (size_t i = 0; i < NADDED; i++)
        random_digest(c.added[i], 20);
    uint32_t mask_before = t.mask;
    struct listing l;
    list_sorted(&t, 500, 64, 0, UINT64_MAX, 0, 0, churn_between, &c, &l);
    /* The set-up did what it says: "twice" moved to an entry ahead. */
    CU_ASSERT(c.twice_entry_after > c.twice_entry_before);
    CU_ASSERT(t.mask > mask_before); /* the slot array grew mid-listing */
    CU_ASSERT(c.added_n > 0 && c.removed > 1);
    CU_ASSERT(strictly_ascending(&l));
    CU_ASSERT_EQUAL(times_listed(&l, c.twice), 1);
    size_t missing = 0;
    for (size_t i = 0; i < NSTABLE; i++)
        missing += times_listed(&l, c.stable[i]) != 1;
    CU_ASSERT_EQUAL(missing, 0);
    /* Nothing listed that was never stored. */
    qsort(c.stable, NSTABLE, 20, cmp20);
    qsort(c.victims, NVICTIMS, 20, cmp20);
    qsort(c.added, NADDED, 20, cmp20);
    size_t strangers = 0;
    for (size_t i = 0; i < l.n; i++) {
        const unsigned char *k = l.keys + i * 20;
        strangers += !bsearch(k, c.stable, NSTABLE, 20, cmp20) &&
                     !bsearch(k, c.victims, NVICTIMS, 20, cmp20) &&
                     !bsearch(k, c.added, NADDED, 20, cmp20) && memcmp(k, c.twice, 20);
    }
    CU_ASSERT_EQUAL(strangers, 0);
    listing_free(&l);
    free(c.stable);
    free(c.victims);
    free(c.added);
    objtab_destroy(&t);
}

/* One scan that meets the same key at two entries keeps it once; a page
 * that overflowed keeps its smaller half and says more remain, and the
 * next page goes on after its last key without losing any. */
static void test_sorted_page_duplicate_in_scan(void)
{
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, 20), 0);
    unsigned char d[20];
    for (unsigned i = 0; i < 5; i++) {
        memset(d, 0, sizeof(d));
        d[0] = (unsigned char)(10 * (i + 1));
        objtab_insert(&t, d, 0, 0, i, 0); /* entries 0..4: keys 10,20,30,40,50 */
    }
    struct objtab_page p;
    CU_ASSERT_EQUAL_FATAL(objtab_page_init(&p, 20, 8), 0);
    objtab_page_start(&p, NULL);
    CU_ASSERT_FALSE(objtab_page_scan(&p, &t, 2, 0, UINT64_MAX, 0, 0)); /* saw 10, 20 */
    /* Key 10 moves ahead of the scan: free its entry (0) first and entry 4
     * (key 50) last; the free list gives back the last freed first. */
    memset(d, 0, sizeof(d));
    d[0] = 10;
    objtab_remove(&t, objtab_find(&t, d));
    d[0] = 50;
    objtab_remove(&t, objtab_find(&t, d));
    d[0] = 10;
    CU_ASSERT_EQUAL(objtab_insert(&t, d, 0, 0, 0, 0), 4);
    CU_ASSERT_TRUE(objtab_page_scan(&p, &t, 100, 0, UINT64_MAX, 0, 0));
    CU_ASSERT_FALSE(objtab_page_finish(&p)); /* 10 met twice, kept once; nothing left */
    CU_ASSERT_EQUAL(p.n, 4);
    for (size_t i = 0; i < p.n && i < 4; i++)
        CU_ASSERT_EQUAL(objtab_page_key(&p, i)[0], 10 * (i + 1));

    /* A page of 2 over 4 keys overflows: it keeps the smallest one, and the
     * pages go on after their last keys: 10, 20, 30, 40, each once. */
    objtab_page_free(&p);
    CU_ASSERT_EQUAL_FATAL(objtab_page_init(&p, 20, 2), 0);
    unsigned char after[20];
    bool from = false;
    unsigned seen = 0, pages = 0;
    for (bool more = true; more && pages < 10; pages++) {
        objtab_page_start(&p, from ? after : NULL);
        while (!objtab_page_scan(&p, &t, 1, 0, UINT64_MAX, 0, 0))
            ;
        more = objtab_page_finish(&p);
        for (size_t i = 0; i < p.n; i++)
            CU_ASSERT_EQUAL(objtab_page_key(&p, i)[0], 10 * (++seen));
        if (p.n)
            memcpy(after, objtab_page_key(&p, p.n - 1), 20), from = true;
    }
    CU_ASSERT_EQUAL(seen, 4);
    CU_ASSERT(pages >= 2 && pages <= 5);
    objtab_page_free(&p);
    objtab_destroy(&t);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("objtab", NULL, NULL);
    CU_add_test(s, "200k random digests vs reference (SHA-1)", test_random_sha1);
    CU_add_test(s, "200k random digests vs reference (SHA-256)", test_random_sha256);
    CU_add_test(s, "backward-shift deletion keeps keys findable", test_backward_shift);
    CU_add_test(s, "entry numbers stable while growing", test_entry_numbers_stable);
    CU_add_test(s, "fields and setters", test_fields_and_setters);
    CU_add_test(s, "pages in key order: every key once (SHA-1)", test_sorted_pages_sha1);
    CU_add_test(s, "pages in key order: every key once (SHA-256)", test_sorted_pages_sha256);
    CU_add_test(s, "pages in key order: sizes and flags", test_sorted_pages_filters);
    CU_add_test(s, "pages in key order: growth, removals, re-adds mid-scan",
                test_sorted_pages_churn);
    CU_add_test(s, "pages in key order: a key met twice in one scan",
                test_sorted_page_duplicate_in_scan);
    CU_add_test(s, "memory per object at 1M (SHA-1)", test_memory_sha1);
    CU_add_test(s, "memory per object at 1M (SHA-256)", test_memory_sha256);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
