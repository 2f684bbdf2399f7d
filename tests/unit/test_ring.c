/*
 * test_ring.c - the placement rule (common/ring.c): determinism across
 * processes and config orders, distinct failure domains, token-weighted
 * shares, and writes skipping unavailable backends.
 */
#include "ring.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A small deterministic generator so every run builds the same rings. */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct fixture {
    size_t n;
    const char *node[8];
    const char *domain[8];
    size_t ntokens[8];
    uint64_t *tokens[8];
};

/* Six backends in three domains; backend 0 has twice the tokens of 1. */
static void fixture_init(struct fixture *f, uint64_t seed)
{
    static const char *nodes[] = {"n-a1", "n-a2", "n-b1", "n-b2", "n-c1", "n-c2"};
    static const char *domains[] = {"rack-a", "rack-a", "rack-b", "rack-b", "rack-c", "rack-c"};
    static const size_t counts[] = {512, 256, 256, 256, 256, 256};
    rng_state = seed;
    f->n = 6;
    for (size_t i = 0; i < f->n; i++) {
        f->node[i] = nodes[i];
        f->domain[i] = domains[i];
        f->ntokens[i] = counts[i];
        f->tokens[i] = malloc(counts[i] * sizeof(uint64_t));
        for (size_t t = 0; t < counts[i]; t++)
            f->tokens[i][t] = rng_next();
    }
}

static void fixture_free(struct fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->tokens[i]);
}

/* Builds a ring with the fixture's backends in the order perm[]. */
static struct ring *build(const struct fixture *f, const size_t *perm)
{
    struct ring *r = ring_new(f->n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    for (size_t i = 0; i < f->n; i++) {
        size_t b = perm ? perm[i] : i;
        CU_ASSERT_EQUAL(ring_add_backend(r, i, f->node[b], f->domain[b], f->tokens[b],
                                         f->ntokens[b]),
                        0);
    }
    CU_ASSERT_EQUAL(ring_finish(r), 0);
    return r;
}

static uint64_t key_pos(uint64_t i)
{
    rng_state = i * 7919 + 1;
    return rng_next();
}

/* Writes the node ids of the homes of 2000 positions, one line each. */
static void dump_homes(FILE *out, const struct fixture *f, const size_t *perm)
{
    struct ring *r = build(f, perm);
    for (uint64_t i = 0; i < 2000; i++) {
        size_t home[3];
        size_t n = ring_home(r, key_pos(i), 3, home);
        for (size_t j = 0; j < n; j++)
            fprintf(out, "%s ", f->node[perm ? perm[home[j]] : home[j]]);
        fputc('\n', out);
    }
    ring_free(r);
}

static void test_same_answer_in_two_processes(void)
{
    struct fixture f;
    fixture_init(&f, 42);
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid_t pid = fork();
    CU_ASSERT_TRUE_FATAL(pid >= 0);
    if (pid == 0) {
        /* The child lists the backends in another order, as another
         * balancer's config might. */
        static const size_t perm[] = {5, 3, 1, 0, 2, 4};
        close(fds[0]);
        FILE *out = fdopen(fds[1], "w");
        dump_homes(out, &f, perm);
        fclose(out);
        _exit(0);
    }
    close(fds[1]);
    char *mine = NULL, *theirs = NULL;
    size_t mine_len = 0, theirs_len = 0;
    FILE *m = open_memstream(&mine, &mine_len);
    dump_homes(m, &f, NULL);
    fclose(m);
    FILE *in = fdopen(fds[0], "r");
    FILE *t = open_memstream(&theirs, &theirs_len);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, got, t);
    fclose(in);
    fclose(t);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(mine_len, theirs_len);
    CU_ASSERT_TRUE(mine_len > 0 && mine_len == theirs_len && memcmp(mine, theirs, mine_len) == 0);
    free(mine);
    free(theirs);
    fixture_free(&f);
}

static void test_home_distinct_domains(void)
{
    struct fixture f;
    fixture_init(&f, 7);
    struct ring *r = build(&f, NULL);
    CU_ASSERT_EQUAL(ring_domain_count(r), 3);
    for (size_t replicas = 1; replicas <= 3; replicas++)
        for (uint64_t i = 0; i < 20000; i++) {
            size_t home[3];
            size_t n = ring_home(r, key_pos(i), replicas, home);
            CU_ASSERT_EQUAL(n, replicas);
            for (size_t a = 0; a < n; a++)
                for (size_t b = a + 1; b < n; b++)
                    CU_ASSERT_NOT_EQUAL(ring_backend_domain(r, home[a]),
                                        ring_backend_domain(r, home[b]));
        }
    /* Asking for more copies than domains gives one per domain. */
    size_t home[6];
    CU_ASSERT_EQUAL(ring_home(r, 12345, 6, home), 3);
    ring_free(r);
    fixture_free(&f);
}

static void test_walk_and_home_agree(void)
{
    /* The home is the walk order with taken domains skipped, and the read
     * order starts with the home then covers every backend once. */
    struct fixture f;
    fixture_init(&f, 99);
    struct ring *r = build(&f, NULL);
    for (uint64_t i = 0; i < 2000; i++) {
        uint64_t pos = key_pos(i);
        size_t walk[6], home[3], order[6], nhome = 0;
        CU_ASSERT_EQUAL(ring_walk(r, pos, walk), 6);
        CU_ASSERT_EQUAL(ring_home(r, pos, 2, home), 2);
        CU_ASSERT_EQUAL(home[0], walk[0]);
        CU_ASSERT_EQUAL(ring_read_order(r, pos, 2, order, &nhome), 6);
        CU_ASSERT_EQUAL(nhome, 2);
        CU_ASSERT_EQUAL(order[0], home[0]);
        CU_ASSERT_EQUAL(order[1], home[1]);
        unsigned seen = 0;
        for (size_t j = 0; j < 6; j++)
            seen |= 1u << order[j];
        CU_ASSERT_EQUAL(seen, 0x3f);
    }
    ring_free(r);
    fixture_free(&f);
}

static void test_share_follows_tokens(void)
{
    /* Backend 0 has 512 tokens, the others 256: over 100,000 random keys
     * its share of first copies is twice theirs, within 10%. */
    struct fixture f;
    fixture_init(&f, 2024);
    struct ring *r = build(&f, NULL);
    size_t count[6] = {0};
    rng_state = 5;
    for (int i = 0; i < 100000; i++) {
        size_t home[1];
        CU_ASSERT_EQUAL(ring_home(r, rng_next(), 1, home), 1);
        count[home[0]]++;
    }
    double others = 0;
    for (size_t b = 1; b < 6; b++)
        others += (double)count[b];
    others /= 5;
    double ratio = (double)count[0] / others;
    CU_ASSERT_TRUE(ratio > 1.8 && ratio < 2.2);
    if (!(ratio > 1.8 && ratio < 2.2))
        fprintf(stderr, "share ratio %.3f\n", ratio);
    ring_free(r);
    fixture_free(&f);
}

static void test_write_set_skips_unavailable(void)
{
    struct fixture f;
    fixture_init(&f, 3);
    struct ring *r = build(&f, NULL);
    bool avail[6] = {true, true, true, true, true, true};
    avail[2] = false; /* down */
    avail[4] = false; /* read-only */
    for (uint64_t i = 0; i < 5000; i++) {
        uint64_t pos = key_pos(i);
        size_t set[3], home[3];
        size_t n = ring_write_set(r, pos, 3, avail, set);
        CU_ASSERT_EQUAL(n, 3); /* rack-b and rack-c each keep one backend */
        for (size_t j = 0; j < n; j++) {
            CU_ASSERT_TRUE(avail[set[j]]);
            for (size_t k = j + 1; k < n; k++)
                CU_ASSERT_NOT_EQUAL(ring_backend_domain(r, set[j]),
                                    ring_backend_domain(r, set[k]));
        }
        /* With everything available the write set is the home. */
        bool all[6] = {true, true, true, true, true, true};
        size_t m = ring_write_set(r, pos, 3, all, set);
        CU_ASSERT_EQUAL(ring_home(r, pos, 3, home), m);
        CU_ASSERT_EQUAL(memcmp(set, home, m * sizeof(size_t)), 0);
    }
    /* A whole domain unavailable: only two domains remain. */
    avail[3] = false;
    size_t set[3];
    CU_ASSERT_EQUAL(ring_write_set(r, 77, 3, avail, set), 2);
    ring_free(r);
    fixture_free(&f);
}

static void test_tokenless_backend_last(void)
{
    /* A backend that never answered has no tokens: it is never a home but
     * reads still reach it, last. */
    uint64_t t1[] = {100, 300}, t2[] = {200, 400};
    struct ring *r = ring_new(3);
    CU_ASSERT_EQUAL(ring_add_backend(r, 0, "x", "d1", NULL, 0), 0);
    CU_ASSERT_EQUAL(ring_add_backend(r, 1, "y", "d2", t1, 2), 0);
    CU_ASSERT_EQUAL(ring_add_backend(r, 2, "z", "d3", t2, 2), 0);
    CU_ASSERT_EQUAL(ring_add_backend(r, 2, "z", "d3", t2, 2), -EINVAL);
    CU_ASSERT_EQUAL(ring_finish(r), 0);
    size_t home[3], order[3], nhome;
    CU_ASSERT_EQUAL(ring_home(r, 150, 3, home), 2);
    CU_ASSERT_EQUAL(home[0], 2); /* 200 is the first token at or above 150 */
    CU_ASSERT_EQUAL(home[1], 1);
    CU_ASSERT_EQUAL(ring_home(r, 500, 1, home), 1);
    CU_ASSERT_EQUAL(home[0], 1); /* wraps to 100 */
    CU_ASSERT_EQUAL(ring_home(r, 300, 1, home), 1);
    CU_ASSERT_EQUAL(home[0], 1); /* a token equal to the position counts */
    CU_ASSERT_EQUAL(ring_read_order(r, 150, 2, order, &nhome), 3);
    CU_ASSERT_EQUAL(nhome, 2);
    CU_ASSERT_EQUAL(order[2], 0);
    ring_free(r);
}

static void test_key_position_big_endian(void)
{
    struct cas_key k;
    char err[200];
    const struct cas_hash_algo *sha1 = cas_hash_by_name("sha1");
    CU_ASSERT_EQUAL(cas_key_parse("0102030405060708090a0b0c0d0e0f1011121314", 40, sha1, &k, err,
                                  sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(ring_position(&k), 0x0102030405060708ULL);
}

/* Two backends that drew the same tokens: every balancer must order them
 * alike whatever its config order, so ties go by node id. Also the
 * refusals of ring_add_backend and ring_finish. */
static void test_tied_tokens_ordered_by_node(void)
{
    const uint64_t t[2] = {UINT64_C(1) << 62, UINT64_C(3) << 62};
    struct ring *a = ring_new(2), *b = ring_new(2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    /* Config order differs: in a, "node-b" is backend 0; in b, backend 1. */
    CU_ASSERT_EQUAL(ring_add_backend(a, 0, "node-b", "d1", t, 2), 0);
    CU_ASSERT_EQUAL(ring_add_backend(a, 1, "node-a", "d2", t, 2), 0);
    CU_ASSERT_EQUAL(ring_add_backend(b, 0, "node-a", "d2", t, 2), 0);
    CU_ASSERT_EQUAL(ring_add_backend(b, 1, "node-b", "d1", t, 2), 0);
    /* Described twice, or out of range: refused. */
    CU_ASSERT_EQUAL(ring_add_backend(a, 1, "node-a", "d2", t, 2), -EINVAL);
    CU_ASSERT_EQUAL(ring_add_backend(a, 2, "node-c", "d3", t, 2), -EINVAL);
    CU_ASSERT_EQUAL(ring_finish(a), 0);
    CU_ASSERT_EQUAL(ring_finish(b), 0);
    const char *name_a[2] = {"node-b", "node-a"}, *name_b[2] = {"node-a", "node-b"};
    uint64_t probes[] = {0, UINT64_C(1) << 62, (UINT64_C(1) << 62) + 1, UINT64_C(3) << 62,
                         UINT64_MAX};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        size_t wa[2], wb[2];
        CU_ASSERT_EQUAL(ring_walk(a, probes[i], wa), 2);
        CU_ASSERT_EQUAL(ring_walk(b, probes[i], wb), 2);
        for (int k = 0; k < 2; k++)
            CU_ASSERT_STRING_EQUAL(name_a[wa[k]], name_b[wb[k]]);
        /* node-a sorts first on every tied token. */
        CU_ASSERT_STRING_EQUAL(name_a[wa[0]], "node-a");
    }
    ring_free(a);
    ring_free(b);
    /* A ring with a backend never described cannot be finished. */
    struct ring *c = ring_new(2);
    CU_ASSERT_EQUAL(ring_add_backend(c, 0, "x", "d1", t, 2), 0);
    CU_ASSERT_EQUAL(ring_finish(c), -EINVAL);
    ring_free(c);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ring", NULL, NULL);
    CU_add_test(s, "same answer in two processes", test_same_answer_in_two_processes);
    CU_add_test(s, "home in distinct failure domains", test_home_distinct_domains);
    CU_add_test(s, "walk, home and read order agree", test_walk_and_home_agree);
    CU_add_test(s, "share follows tokens", test_share_follows_tokens);
    CU_add_test(s, "write set skips unavailable", test_write_set_skips_unavailable);
    CU_add_test(s, "tokenless backend last", test_tokenless_backend_last);
    CU_add_test(s, "key position big-endian", test_key_position_big_endian);
    CU_add_test(s, "tied tokens ordered by node id", test_tied_tokens_ordered_by_node);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
