/*
 * test_backend.c - the balancer's reading of a storaged's GET /ring answer
 * (apply_ring in balancerd/backend.c), which must agree with `ca-cas
 * rebalance` (rb_parse_ring) on every answer: placement is the same in
 * every balancer and in the rebalancer. backend.c is included to reach its
 * static reader, as tests/fuzz/ring.c does.
 */
#include "../../balancerd/backend.c"

#include "rebalance.h"

#include <CUnit/Basic.h>

/* Parses json both ways; checks they agree; returns the balancer's count. */
static size_t both(const char *json)
{
    struct backend b;
    memset(&b, 0, sizeof(b));
    b.url = "http://test:1";
    char err[256], node[128];
    bool applied = apply_ring(&b, json, err, sizeof(err));
    const struct cas_hash_algo *algo = NULL;
    uint64_t *tokens = NULL;
    size_t n = 0;
    int rc = rb_parse_ring(json, node, sizeof(node), &algo, &tokens, &n, err, sizeof(err));
    CU_ASSERT_EQUAL(applied, rc == 0);
    if (applied && rc == 0) {
        CU_ASSERT_EQUAL(b.ntokens, n);
        CU_ASSERT(b.ntokens == n && memcmp(b.tokens, tokens, n * sizeof(*tokens)) == 0);
        CU_ASSERT_PTR_EQUAL(b.algo, algo);
        CU_ASSERT_STRING_EQUAL(b.node, node);
    }
    size_t got = b.ntokens;
    free(b.tokens);
    free(tokens);
    return got;
}

static void test_well_formed_ring(void)
{
    CU_ASSERT_EQUAL(both("{\"node\":\"n1\",\"hash\":\"sha1\",\"tokens\":[\"0000000000000001\","
                         "\"ffffffffffffffff\"]}"),
                    2);
}

/* Found by tests/fuzz/ring.c: a token with a non-hex byte ("f70]5cc8...")
 * was read by the balancer as its leading hex digits (0xf70) but skipped
 * by the rebalancer, so the two placed objects on different rings. */
static void test_non_hex_token_skipped_by_both(void)
{
    CU_ASSERT_EQUAL(both("{\"node\":\"n1\",\"hash\":\"sha1\",\"tokens\":[\"0a\",\"f70]5cc86d5b6413\","
                         "\"zz\",\"1g\",\"0b\"]}"),
                    2);
    CU_ASSERT_EQUAL(both("{\"node\":\"n1\",\"hash\":\"sha1\",\"tokens\":[\"xyz\"]}"), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("backend", NULL, NULL);
    CU_add_test(s, "a well-formed /ring answer", test_well_formed_ring);
    CU_add_test(s, "non-hex tokens skipped as the rebalancer does",
                test_non_hex_token_skipped_by_both);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
