/*
 * test_balancerd_tagcache.c - block tags of verified objects
 * (balancerd/tagcache.c): tags taken while an object passes are found for
 * the same key and size only; a later pass of the same bytes, cut into any
 * pieces, checks; one changed byte in any block, or bytes past the end,
 * fail at the piece that ends that block and every piece after; tags of an
 * incomplete or unconfirmed pass are never kept; the budget holds, the
 * least recently used object going first, and tags that could not be kept
 * are never taken; tags are taken from an object's second miss on, never
 * its first; digests chosen to share their first bytes still spread over
 * the buckets; another cache (another secret) knows nothing of these tags.
 */
#define _GNU_SOURCE
#include "tagcache.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SIZE (3 * TAG_BLOCK + 12345) /* four blocks, the last one short */

static unsigned char *data;
static char err_[160]; /* tag_cache_new's message */

static struct cas_key key_of(unsigned seed)
{
    struct cas_key k = {.algo = cas_hash_by_name("sha1")};
    for (size_t i = 0; i < sizeof(k.digest); i++)
        k.digest[i] = (unsigned char)(seed * 131 + i * 7);
    return k;
}

/* Feeds size bytes of buf in pieces of step bytes; returns the first
 * error, and in *at the offset of the piece that gave it. */
static int feed(struct tag_stream *s, const unsigned char *buf, size_t size, size_t step,
                size_t *at)
{
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        int rc = tag_stream_update(s, buf + off, n);
        if (rc < 0) {
            if (at)
                *at = off;
            return rc;
        }
    }
    return 0;
}

/* Tags taken for key over the object's bytes, committed: its first miss
 * takes none, its second does. */
static void learn(struct tag_cache *c, const struct cas_key *k, uint64_t size)
{
    /* The first miss (an earlier one of this key, or of another with
     * the same first digest bytes in the same slot, may have been noted:
     * then this one tags, and is dropped). */
    tag_stream_close(tag_stream_open(c, k, size));
    struct tag_stream *s = tag_stream_open(c, k, size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_FALSE(tag_stream_checking(s));
    CU_ASSERT_EQUAL(feed(s, data, (size_t)size, 300000, NULL), 0);
    tag_stream_commit(s);
    tag_stream_close(s);
}

static void test_count(void)
{
    CU_ASSERT_EQUAL(tag_count(0), 0);
    CU_ASSERT_EQUAL(tag_count(1), 1);
    CU_ASSERT_EQUAL(tag_count(TAG_BLOCK), 1);
    CU_ASSERT_EQUAL(tag_count(TAG_BLOCK + 1), 2);
    CU_ASSERT_EQUAL(tag_count(SIZE), 4);
}

static void test_same_bytes_check_in_any_pieces(void)
{
    struct tag_cache *c = tag_cache_new(1 << 20, err_, sizeof(err_));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    struct cas_key k = key_of(1);
    learn(c, &k, SIZE);
    size_t steps[] = {1 << 20, 65536, 777777, SIZE, 4093};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct tag_stream *s = tag_stream_open(c, &k, SIZE);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_TRUE(tag_stream_checking(s));
        CU_ASSERT_EQUAL(feed(s, data, SIZE, steps[i], NULL), 0);
        tag_stream_close(s);
    }
    struct tag_cache_stats st;
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.objects, 1);
    CU_ASSERT_EQUAL(st.hits, 5);
    CU_ASSERT_EQUAL(st.misses, 2);
    /* Another size under the same key is a lie, not these tags: a miss,
     * the caller hashes (the key was missed before: the stream computes). */
    struct tag_stream *s = tag_stream_open(c, &k, SIZE - 1);
    CU_ASSERT_PTR_NOT_NULL(s);
    CU_ASSERT_FALSE(s && tag_stream_checking(s));
    tag_stream_close(s);
    /* Another key: a first miss, no stream; its second miss computes. */
    struct cas_key other = key_of(2);
    CU_ASSERT_PTR_NULL(tag_stream_open(c, &other, SIZE));
    s = tag_stream_open(c, &other, SIZE);
    CU_ASSERT_PTR_NOT_NULL(s);
    CU_ASSERT_FALSE(s && tag_stream_checking(s));
    tag_stream_close(s);
    /* Another algorithm, same digest bytes: a first miss. */
    struct cas_key k256 = k;
    k256.algo = cas_hash_by_name("sha256");
    CU_ASSERT_PTR_NULL(tag_stream_open(c, &k256, SIZE));
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.misses, 6);
    CU_ASSERT_EQUAL(st.objects, 1);
    tag_cache_free(c);
}

static void test_one_changed_byte_fails_its_block(void)
{
    struct tag_cache *c = tag_cache_new(1 << 20, err_, sizeof(err_));
    struct cas_key k = key_of(3);
    learn(c, &k, SIZE);
    unsigned char *bad = malloc(SIZE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bad);
    /* The first byte, a block's last, the next block's first, the middle
     * of the third, the object's last byte. */
    size_t where[] = {0, TAG_BLOCK - 1, TAG_BLOCK, 2 * TAG_BLOCK + 500000, SIZE - 1};
    const size_t step = 65536;
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        memcpy(bad, data, SIZE);
        bad[where[i]] ^= 0x01;
        struct tag_stream *s = tag_stream_open(c, &k, SIZE);
        CU_ASSERT_TRUE_FATAL(tag_stream_checking(s));
        size_t at = 0;
        CU_ASSERT_EQUAL(feed(s, bad, SIZE, step, &at), -EBADMSG);
        /* The piece that failed is the one holding the end of the changed
         * byte's block. */
        size_t block_end = (where[i] / TAG_BLOCK + 1) * TAG_BLOCK;
        if (block_end > SIZE)
            block_end = SIZE;
        CU_ASSERT_EQUAL(at, (block_end - 1) / step * step);
        /* Nothing passes after a failure, not even the right bytes. */
        CU_ASSERT_EQUAL(tag_stream_update(s, data, 1), -EBADMSG);
        tag_stream_close(s);
    }
    /* Bytes past the end fail. */
    struct tag_stream *s = tag_stream_open(c, &k, SIZE);
    CU_ASSERT_EQUAL(feed(s, data, SIZE, step, NULL), 0);
    CU_ASSERT_EQUAL(tag_stream_update(s, data, 1), -EBADMSG);
    tag_stream_close(s);
    free(bad);
    tag_cache_free(c);
}

static void test_only_confirmed_whole_passes_are_kept(void)
{
    struct tag_cache *c = tag_cache_new(1 << 20, err_, sizeof(err_));
    struct cas_key k = key_of(4);
    CU_ASSERT_PTR_NULL(tag_stream_open(c, &k, SIZE)); /* the first miss */
    /* Incomplete: committed after half the bytes. */
    struct tag_stream *s = tag_stream_open(c, &k, SIZE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(feed(s, data, SIZE / 2, 65536, NULL), 0);
    tag_stream_commit(s);
    tag_stream_close(s);
    /* Whole, but never committed (the digest did not match). */
    s = tag_stream_open(c, &k, SIZE);
    CU_ASSERT_EQUAL(feed(s, data, SIZE, 65536, NULL), 0);
    tag_stream_close(s);
    struct tag_cache_stats st;
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.objects, 0);
    s = tag_stream_open(c, &k, SIZE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_FALSE(tag_stream_checking(s));
    tag_stream_close(s);
    tag_cache_free(c);
}

static void test_budget_drops_least_recently_used(void)
{
    /* Each object of SIZE takes 4 tags and an entry: room for three. */
    struct tag_cache *probe = tag_cache_new(1 << 20, err_, sizeof(err_));
    struct cas_key k0 = key_of(10);
    learn(probe, &k0, SIZE);
    struct tag_cache_stats st;
    tag_cache_stats(probe, &st);
    size_t one = st.bytes;
    CU_ASSERT(one >= 4 * TAG_LEN);
    tag_cache_free(probe);

    struct tag_cache *c = tag_cache_new(3 * one + one / 2, err_, sizeof(err_));
    struct cas_key k[4];
    for (unsigned i = 0; i < 3; i++) {
        k[i] = key_of(20 + i);
        learn(c, &k[i], SIZE);
    }
    /* k[0] read again: now k[1] is the least recently used. */
    struct tag_stream *s = tag_stream_open(c, &k[0], SIZE);
    CU_ASSERT_TRUE(tag_stream_checking(s));
    tag_stream_close(s);
    k[3] = key_of(23);
    learn(c, &k[3], SIZE);
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.objects, 3);
    CU_ASSERT_EQUAL(st.evictions, 1);
    CU_ASSERT(st.bytes <= 3 * one + one / 2);
    bool kept[4];
    for (unsigned i = 0; i < 4; i++) {
        s = tag_stream_open(c, &k[i], SIZE);
        kept[i] = s && tag_stream_checking(s);
        tag_stream_close(s);
    }
    CU_ASSERT_TRUE(kept[0]);
    CU_ASSERT_FALSE(kept[1]);
    CU_ASSERT_TRUE(kept[2]);
    CU_ASSERT_TRUE(kept[3]);
    /* An object whose tags alone exceed the budget is never tagged (no
     * stream on any miss: the caller hashes), and evicts nothing. */
    struct cas_key big = key_of(30);
    uint64_t huge = (uint64_t)TAG_BLOCK * (4 * one / TAG_LEN);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_PTR_NULL(tag_stream_open(c, &big, huge));
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.objects, 3);
    CU_ASSERT_EQUAL(st.evictions, 1);
    tag_cache_free(c);
    /* Nor one of over TAG_MAX_COUNT blocks, whatever the budget: a
     * backend's Content-Length alone never makes the balancer allocate
     * more than TAG_MAX_COUNT tags. */
    c = tag_cache_new((size_t)64 << 20, err_, sizeof(err_));
    uint64_t over = (uint64_t)TAG_MAX_COUNT * TAG_BLOCK + 1;
    for (int i = 0; i < 3; i++)
        CU_ASSERT_PTR_NULL(tag_stream_open(c, &big, over));
    s = tag_stream_open(c, &big, over - 1); /* missed before: tagged */
    CU_ASSERT_PTR_NOT_NULL(s);
    tag_stream_close(s);
    tag_cache_free(c);
}

/* Clients choose what they store: digests ground to share their first
 * bytes must not share a bucket (placement is keyed, not the digest's
 * first bytes), or every look-up walks them all under the lock. */
static void test_chosen_digests_spread(void)
{
    struct tag_cache *c = tag_cache_new((size_t)16 << 20, err_, sizeof(err_));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const unsigned n = 4096;
    for (unsigned i = 0; i < n; i++) {
        struct cas_key k = key_of(40);
        /* The same first 16 bytes; only the last four differ. */
        k.digest[16] = (unsigned char)i;
        k.digest[17] = (unsigned char)(i >> 8);
        learn(c, &k, TAG_BLOCK + 1);
    }
    struct tag_cache_stats st;
    tag_cache_stats(c, &st);
    CU_ASSERT_EQUAL(st.objects, n);
    /* 4096 entries in 4096 buckets: a few per bucket, not all in one. */
    CU_ASSERT(st.longest_chain < 16);
    tag_cache_free(c);
}

static void test_another_cache_knows_nothing(void)
{
    struct tag_cache *a = tag_cache_new(1 << 20, err_, sizeof(err_)), *b = tag_cache_new(1 << 20, err_, sizeof(err_));
    struct cas_key k = key_of(5);
    learn(a, &k, SIZE);
    learn(b, &k, SIZE - 1);
    /* b has tags of the first SIZE - 1 bytes, under its own secret: other
     * bytes fail them. */
    struct tag_stream *s = tag_stream_open(b, &k, SIZE - 1);
    CU_ASSERT_TRUE_FATAL(tag_stream_checking(s));
    CU_ASSERT_EQUAL(feed(s, data + 1, SIZE - 1, 65536, NULL), -EBADMSG);
    tag_stream_close(s);
    s = tag_stream_open(b, &k, SIZE);
    CU_ASSERT_FALSE(s && tag_stream_checking(s));
    tag_stream_close(s);
    tag_cache_free(a);
    tag_cache_free(b);
}

int main(void)
{
    data = malloc(SIZE);
    if (!data)
        return 1;
    srandom(7);
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (unsigned char)random();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_tagcache", NULL, NULL);
    CU_add_test(s, "one tag per started block", test_count);
    CU_add_test(s, "the same bytes check, in any pieces; other sizes and keys miss",
                test_same_bytes_check_in_any_pieces);
    CU_add_test(s, "one changed byte fails its block, and all after", test_one_changed_byte_fails_its_block);
    CU_add_test(s, "only whole, confirmed passes are kept", test_only_confirmed_whole_passes_are_kept);
    CU_add_test(s, "the budget holds, least recently used first", test_budget_drops_least_recently_used);
    CU_add_test(s, "chosen digests spread over the buckets", test_chosen_digests_spread);
    CU_add_test(s, "another cache knows nothing of these tags", test_another_cache_knows_nothing);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    free(data);
    return failed ? 1 : 0;
}
