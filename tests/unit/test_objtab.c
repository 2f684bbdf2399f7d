/*
 * test_objtab.c - the in-memory object table (storaged/objtab.c): insert,
 * find and remove on 200k random digests checked against a reference,
 * backward-shift deletion across clusters and the wrap-around of the slot
 * array, entry numbers that stay valid while the table grows, packing of
 * location and size, and memory per object at one million entries.
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

struct page_seen {
    unsigned char first[32];
    uint64_t sizes[16];
    size_t n;
};

static void page_collect(void *cls, const unsigned char *digest, uint64_t size)
{
    struct page_seen *p = cls;
    if (p->n == 0)
        memcpy(p->first, digest, 20);
    if (p->n < 16)
        p->sizes[p->n] = size;
    p->n++;
}

/* Listing pages: bounded by max, resumed from *next, removed entries and
 * skip flags left out, need flags required, sizes in [min, max). */
static void test_list_page(void)
{
    struct objtab t;
    CU_ASSERT_EQUAL_FATAL(objtab_init(&t, 20), 0);
    unsigned char d[20];
    uint32_t e[10];
    for (unsigned i = 0; i < 10; i++) {
        memset(d, 0, sizeof(d));
        d[0] = (unsigned char)(i + 1);
        e[i] = objtab_insert(&t, d, 0, 0, 100 * (i + 1), 0);
        CU_ASSERT_NOT_EQUAL_FATAL(e[i], OBJTAB_NONE);
    }
    objtab_remove(&t, e[2]);                   /* size 300: gone */
    objtab_set_flags(&t, e[4], 0x40u);         /* size 500: to skip */
    objtab_set_flags(&t, e[6], OBJTAB_MARKED); /* size 700: marked */
    objtab_set_flags(&t, e[7], OBJTAB_MARKED); /* size 800: marked */

    struct page_seen p = {.n = 0};
    uint64_t next = 0;
    CU_ASSERT_FALSE(objtab_list_page(&t, &next, 0, UINT64_MAX, 0x40u, 0, 3, page_collect, &p));
    CU_ASSERT_EQUAL(p.n, 3);
    CU_ASSERT_EQUAL(p.sizes[0], 100);
    CU_ASSERT_EQUAL(p.sizes[2], 400); /* 300 removed */
    memset(&p, 0, sizeof(p));
    CU_ASSERT_TRUE(objtab_list_page(&t, &next, 0, UINT64_MAX, 0x40u, 0, 100, page_collect, &p));
    CU_ASSERT_EQUAL(p.n, 5); /* 600..1000; 500 skipped */
    CU_ASSERT_EQUAL(p.sizes[0], 600);
    CU_ASSERT_EQUAL(next, 10);

    /* Only the marked ones, and the size bounds: [700, 800) holds one. */
    memset(&p, 0, sizeof(p));
    next = 0;
    CU_ASSERT_TRUE(
        objtab_list_page(&t, &next, 0, UINT64_MAX, 0, OBJTAB_MARKED, 100, page_collect, &p));
    CU_ASSERT_EQUAL(p.n, 2);
    memset(&p, 0, sizeof(p));
    next = 0;
    CU_ASSERT_TRUE(objtab_list_page(&t, &next, 700, 800, 0, OBJTAB_MARKED, 100, page_collect, &p));
    CU_ASSERT_EQUAL(p.n, 1);
    CU_ASSERT_EQUAL(p.sizes[0], 700);

    /* A page that ends exactly at the last entry says done. */
    memset(&p, 0, sizeof(p));
    next = 9;
    CU_ASSERT_TRUE(objtab_list_page(&t, &next, 0, UINT64_MAX, 0, 0, 1, page_collect, &p));
    CU_ASSERT_EQUAL(p.n, 1);
    CU_ASSERT_EQUAL(p.sizes[0], 1000);
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
    CU_add_test(s, "listing pages: bounds, resume, flags", test_list_page);
    CU_add_test(s, "memory per object at 1M (SHA-1)", test_memory_sha1);
    CU_add_test(s, "memory per object at 1M (SHA-256)", test_memory_sha256);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
