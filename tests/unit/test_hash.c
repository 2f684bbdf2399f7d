/*
 * test_hash.c - the hash algorithm table (common/hash.c): known SHA-1 and
 * SHA-256 vectors through the table, incremental digests equal to one-shot
 * digests, context reuse after reset, and lookups by name and by on-disk id.
 */
#include "hash.h"
#include "key.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct vector {
    const char *algo;
    const char *input; /* NULL: one million 'a' */
    const char *hex;
};

static const struct vector vectors[] = {
    {"sha1", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
    {"sha1", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
    {"sha1", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    {"sha1", NULL, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},
    {"sha256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"sha256", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"sha256", NULL, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
};

static char *million_a(void)
{
    char *p = malloc(1000000);
    memset(p, 'a', 1000000);
    return p;
}

static void test_known_vectors_one_shot(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct cas_hash_algo *a = cas_hash_by_name(vectors[i].algo);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        char *big = vectors[i].input ? NULL : million_a();
        const char *in = big ? big : vectors[i].input;
        size_t len = big ? 1000000 : strlen(in);
        unsigned char d[CAS_MAX_DIGEST];
        char hex[CAS_MAX_HEX + 1];
        memset(d, 0xee, sizeof(d));
        cas_hash_buffer(a, in, len, d);
        cas_hex_encode(d, a->digest_len, hex);
        CU_ASSERT_STRING_EQUAL(hex, vectors[i].hex);
        free(big);
    }
}

static void test_known_vectors_incremental(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct cas_hash_algo *a = cas_hash_by_name(vectors[i].algo);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        struct cas_hash *h = cas_hash_new(a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(h);
        char *big = vectors[i].input ? NULL : million_a();
        const char *in = big ? big : vectors[i].input;
        size_t len = big ? 1000000 : strlen(in);
        /* Odd chunk sizes, including empty updates. */
        size_t pos = 0, step = 1;
        while (pos < len) {
            size_t n = step < len - pos ? step : len - pos;
            cas_hash_update(h, in + pos, n);
            cas_hash_update(h, in + pos, 0);
            pos += n;
            step = step * 3 + 1;
        }
        unsigned char d[CAS_MAX_DIGEST];
        char hex[CAS_MAX_HEX + 1];
        cas_hash_final(h, d);
        cas_hex_encode(d, a->digest_len, hex);
        CU_ASSERT_STRING_EQUAL(hex, vectors[i].hex);
        cas_hash_free(h);
        free(big);
    }
}

/* Random buffers split at random points hash the same as in one go. */
static void test_incremental_equals_one_shot(void)
{
    unsigned seed = 12345;
    size_t len = 300000;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)rand_r(&seed);
    for (size_t ai = 0; ai < cas_hash_algo_count; ai++) {
        const struct cas_hash_algo *a = &cas_hash_algos[ai];
        struct cas_hash *h = cas_hash_new(a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(h);
        for (int round = 0; round < 20; round++) {
            size_t n = (size_t)rand_r(&seed) % len;
            unsigned char one[CAS_MAX_DIGEST], inc[CAS_MAX_DIGEST];
            cas_hash_buffer(a, buf, n, one);
            cas_hash_reset(h);
            size_t pos = 0;
            while (pos < n) {
                size_t k = 1 + (size_t)rand_r(&seed) % 70000;
                if (k > n - pos)
                    k = n - pos;
                cas_hash_update(h, buf + pos, k);
                pos += k;
            }
            cas_hash_final(h, inc);
            CU_ASSERT_EQUAL(memcmp(one, inc, a->digest_len), 0);
        }
        cas_hash_free(h);
    }
    free(buf);
}

/* One-shot digests from several threads at once, alternating algorithms
 * (each thread keeps its own cached context): every result equals the
 * streaming digest of the same bytes. */
struct oneshot_job {
    unsigned seed;
    int bad;
};

static void *oneshot_worker(void *arg)
{
    struct oneshot_job *j = arg;
    unsigned char buf[5000];
    for (int round = 0; round < 400; round++) {
        size_t n = (size_t)rand_r(&j->seed) % sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)rand_r(&j->seed);
        const struct cas_hash_algo *a = &cas_hash_algos[(size_t)round % cas_hash_algo_count];
        unsigned char one[CAS_MAX_DIGEST], inc[CAS_MAX_DIGEST];
        cas_hash_buffer(a, buf, n, one);
        struct cas_hash *h = cas_hash_new(a);
        cas_hash_update(h, buf, n);
        cas_hash_final(h, inc);
        cas_hash_free(h);
        if (memcmp(one, inc, a->digest_len) != 0)
            j->bad++;
    }
    return NULL;
}

static void test_one_shot_from_threads(void)
{
    pthread_t t[4];
    struct oneshot_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct oneshot_job){.seed = 777u + (unsigned)i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, oneshot_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(jobs[i].bad, 0);
    }
}

/* The context may be reset and reused after final, and a reset discards
 * whatever was fed before it. */
static void test_reset_and_reuse(void)
{
    const struct cas_hash_algo *a = cas_hash_by_name("sha1");
    struct cas_hash *h = cas_hash_new(a);
    unsigned char d[CAS_MAX_DIGEST];
    char hex[CAS_MAX_HEX + 1];
    cas_hash_update(h, "garbage", 7);
    cas_hash_final(h, d);
    cas_hash_reset(h);
    cas_hash_update(h, "ab", 2);
    cas_hash_update(h, "c", 1);
    cas_hash_final(h, d);
    cas_hex_encode(d, a->digest_len, hex);
    CU_ASSERT_STRING_EQUAL(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    cas_hash_reset(h);
    cas_hash_update(h, "discarded", 9);
    cas_hash_reset(h);
    cas_hash_final(h, d);
    cas_hex_encode(d, a->digest_len, hex);
    CU_ASSERT_STRING_EQUAL(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    cas_hash_free(h);
    cas_hash_free(NULL); /* allowed */
}

static void test_lookup_by_name(void)
{
    const struct cas_hash_algo *s1 = cas_hash_by_name("sha1");
    const struct cas_hash_algo *s256 = cas_hash_by_name("sha256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s256);
    CU_ASSERT_EQUAL(s1->id, CAS_HASH_SHA1);
    CU_ASSERT_EQUAL(s1->digest_len, 20);
    CU_ASSERT_EQUAL(s1->hex_len, 40);
    CU_ASSERT_STRING_EQUAL(s1->name, "sha1");
    CU_ASSERT_EQUAL(s256->id, CAS_HASH_SHA256);
    CU_ASSERT_EQUAL(s256->digest_len, 32);
    CU_ASSERT_EQUAL(s256->hex_len, 64);
    CU_ASSERT_STRING_EQUAL(s256->name, "sha256");
    CU_ASSERT_PTR_NULL(cas_hash_by_name("md5"));
    CU_ASSERT_PTR_NULL(cas_hash_by_name(""));
    CU_ASSERT_PTR_NULL(cas_hash_by_name("sha"));
    CU_ASSERT_PTR_NULL(cas_hash_by_name("sha1 "));
    CU_ASSERT_PTR_NULL(cas_hash_by_name("sha2566"));
    CU_ASSERT_PTR_NULL(cas_hash_by_name(NULL));
}

static void test_lookup_by_id(void)
{
    CU_ASSERT_PTR_EQUAL(cas_hash_by_id(1), cas_hash_by_name("sha1"));
    CU_ASSERT_PTR_EQUAL(cas_hash_by_id(2), cas_hash_by_name("sha256"));
    /* The ids are on disk: they must never be renumbered. */
    CU_ASSERT_EQUAL(CAS_HASH_SHA1, 1);
    CU_ASSERT_EQUAL(CAS_HASH_SHA256, 2);
    CU_ASSERT_PTR_NULL(cas_hash_by_id(0));
    CU_ASSERT_PTR_NULL(cas_hash_by_id(3));
    CU_ASSERT_PTR_NULL(cas_hash_by_id(-1));
    CU_ASSERT_PTR_NULL(cas_hash_by_id(255));
}

static void test_table_consistent(void)
{
    CU_ASSERT_EQUAL(cas_hash_algo_count, 2);
    for (size_t i = 0; i < cas_hash_algo_count; i++) {
        const struct cas_hash_algo *a = &cas_hash_algos[i];
        CU_ASSERT(a->digest_len <= CAS_MAX_DIGEST);
        CU_ASSERT_EQUAL(a->hex_len, 2 * a->digest_len);
        CU_ASSERT_PTR_EQUAL(cas_hash_by_name(a->name), a);
        CU_ASSERT_PTR_EQUAL(cas_hash_by_id((int)a->id), a);
        CU_ASSERT_PTR_NOT_NULL(a->evp);
        for (size_t j = 0; j < i; j++) {
            CU_ASSERT_NOT_EQUAL(a->id, cas_hash_algos[j].id);
            CU_ASSERT_STRING_NOT_EQUAL(a->name, cas_hash_algos[j].name);
        }
    }
}

/* A cluster's hash is most members', ties to the earliest; unknown
 * members do not count. */
static void test_cluster_hash_is_the_majority(void)
{
    const struct cas_hash_algo *s1 = cas_hash_by_name("sha1"), *s256 = cas_hash_by_name("sha256");
    const struct cas_hash_algo *one_odd_first[] = {s256, s1, s1};
    CU_ASSERT_PTR_EQUAL(cas_hash_of_cluster(one_odd_first, 3), s1);
    const struct cas_hash_algo *one_odd_last[] = {s1, s1, s256};
    CU_ASSERT_PTR_EQUAL(cas_hash_of_cluster(one_odd_last, 3), s1);
    const struct cas_hash_algo *tie[] = {NULL, s256, s1};
    CU_ASSERT_PTR_EQUAL(cas_hash_of_cluster(tie, 3), s256);
    const struct cas_hash_algo *unknown_do_not_count[] = {NULL, NULL, s256, NULL};
    CU_ASSERT_PTR_EQUAL(cas_hash_of_cluster(unknown_do_not_count, 4), s256);
    const struct cas_hash_algo *none[] = {NULL, NULL};
    CU_ASSERT_PTR_NULL(cas_hash_of_cluster(none, 2));
    CU_ASSERT_PTR_NULL(cas_hash_of_cluster(none, 0));
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("hash", NULL, NULL);
    CU_add_test(s, "known vectors, one shot", test_known_vectors_one_shot);
    CU_add_test(s, "known vectors, incremental", test_known_vectors_incremental);
    CU_add_test(s, "incremental equals one shot", test_incremental_equals_one_shot);
    CU_add_test(s, "reset and reuse", test_reset_and_reuse);
    CU_add_test(s, "one shot from several threads", test_one_shot_from_threads);
    CU_add_test(s, "lookup by name", test_lookup_by_name);
    CU_add_test(s, "lookup by id", test_lookup_by_id);
    CU_add_test(s, "table consistent", test_table_consistent);
    CU_add_test(s, "a cluster's hash is the majority's", test_cluster_hash_is_the_majority);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
