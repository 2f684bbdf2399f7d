/*
 * test_ringjson.c - the GET /ring parser shared by the balancer and
 * `ca-cas rebalance` (common/ringjson.c): what SPEC's ring looks like is
 * accepted, anything else (token counts outside 64..16384, tokens that are
 * not 16 lowercase hex digits, bad node or hash, invalid JSON) is refused.
 */
#include "rebalance.h"
#include "ringjson.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A ring answer with n tokens; token bad_at (when < n) replaced by bad. */
static char *ring_doc(const char *node, const char *hash, size_t n, size_t bad_at, const char *bad)
{
    size_t cap = 128 + n * 24 + (bad ? strlen(bad) : 0);
    char *s = malloc(cap);
    size_t len =
        (size_t)snprintf(s, cap, "{\"node\":\"%s\",\"hash\":\"%s\",\"tokens\":[", node, hash);
    for (size_t i = 0; i < n; i++) {
        if (i == bad_at)
            len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? "," : "", bad);
        else
            len += (size_t)snprintf(s + len, cap - len, "%s\"%016llx\"", i ? "," : "",
                                    (unsigned long long)(i * 0x9e3779b97f4a7c15ULL));
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

static int parse(const char *doc, size_t len, char *err, size_t errlen)
{
    char node[32];
    const struct cas_hash_algo *algo;
    uint64_t *tok = NULL;
    size_t n = 0;
    int rc = ringjson_parse(doc, len, node, sizeof(node), &algo, &tok, &n, err, errlen);
    if (rc == 0) {
        CU_ASSERT_PTR_NOT_NULL(tok);
    } else {
        CU_ASSERT_PTR_NULL(tok);
        CU_ASSERT_PTR_NULL(algo);
        CU_ASSERT(err[0] != '\0');
    }
    free(tok);
    return rc;
}

static void test_accepts_spec_ring(void)
{
    char *doc = ring_doc("00112233445566ff", "sha256", 64, SIZE_MAX, NULL);
    char node[32], err[256];
    const struct cas_hash_algo *algo;
    uint64_t *tok;
    size_t n;
    CU_ASSERT_EQUAL_FATAL(
        ringjson_parse(doc, strlen(doc), node, sizeof(node), &algo, &tok, &n, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(node, "00112233445566ff");
    CU_ASSERT_STRING_EQUAL(algo->name, "sha256");
    CU_ASSERT_EQUAL(n, 64);
    CU_ASSERT_EQUAL(tok[0], 0);
    CU_ASSERT_EQUAL(tok[1], 0x9e3779b97f4a7c15ULL);
    free(tok);
    free(doc);
    doc = ring_doc("00112233445566ff", "sha1", RINGJSON_TOKENS_MAX, SIZE_MAX, NULL);
    CU_ASSERT_EQUAL(parse(doc, strlen(doc), err, sizeof(err)), 0);
    free(doc);
}

static void test_token_counts(void)
{
    char err[256];
    size_t counts[] = {0, 1, 63, RINGJSON_TOKENS_MAX + 1, 100000};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        char *doc = ring_doc("00112233445566ff", "sha1", counts[i], SIZE_MAX, NULL);
        CU_ASSERT_EQUAL(parse(doc, strlen(doc), err, sizeof(err)), -EPROTO);
        free(doc);
    }
    char *doc = ring_doc("00112233445566ff", "sha1", 63, SIZE_MAX, NULL);
    parse(doc, strlen(doc), err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "63 tokens"));
    free(doc);
}

static void test_bad_tokens(void)
{
    const char *bad[] = {"\"zzzzzzzzzzzzzzzz\"",
                         "\"-1\"",
                         "\"0x12\"",
                         "\"1\"",
                         "\"00000000000000FF\"",
                         "\"000000000000000ff\"",
                         "\"00000000 000000f\"",
                         "\"-000000000000001\"",
                         "\"+000000000000001\"",
                         "18",
                         "null",
                         "[]",
                         "\"0000000000000\\u0000ff\""};
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *doc = ring_doc("00112233445566ff", "sha1", 100, 37, bad[i]);
        CU_ASSERT_EQUAL(parse(doc, strlen(doc), err, sizeof(err)), -EPROTO);
        if (i == 0)
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "token 37"));
        free(doc);
    }
}

static void test_bad_node_or_hash(void)
{
    char err[256];
    const char *nodes[] = {"", "n1", "00112233445566FF", "00112233445566ff0", "0011223344556g"};
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        char *doc = ring_doc(nodes[i], "sha1", 64, SIZE_MAX, NULL);
        CU_ASSERT_EQUAL(parse(doc, strlen(doc), err, sizeof(err)), -EPROTO);
        free(doc);
    }
    const char *hashes[] = {"md5", "", "SHA1", "sha1 "};
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
        char *doc = ring_doc("00112233445566ff", hashes[i], 64, SIZE_MAX, NULL);
        CU_ASSERT_EQUAL(parse(doc, strlen(doc), err, sizeof(err)), -EPROTO);
        free(doc);
    }
    char *doc = ring_doc("00112233445566ff", "md5", 64, SIZE_MAX, NULL);
    parse(doc, strlen(doc), err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "md5"));
    free(doc);
}

static void test_bad_json(void)
{
    char err[256];
    char *doc = ring_doc("00112233445566ff", "sha1", 64, SIZE_MAX, NULL);
    size_t len = strlen(doc);
    /* Every truncation of a good answer is refused. */
    for (size_t cut = 0; cut < len; cut += 7)
        CU_ASSERT_EQUAL(parse(doc, cut, err, sizeof(err)), -EPROTO);
    CU_ASSERT_EQUAL(parse(doc, len - 1, err, sizeof(err)), -EPROTO);
    /* Trailing garbage, a member given twice, not an object. */
    char *more = malloc(len + 64);
    snprintf(more, len + 64, "%s}", doc);
    CU_ASSERT_EQUAL(parse(more, strlen(more), err, sizeof(err)), -EPROTO);
    snprintf(more, len + 64, "{\"node\":\"ffffffffffffffff\",%s", doc + 1);
    CU_ASSERT_EQUAL(parse(more, strlen(more), err, sizeof(err)), -EPROTO);
    CU_ASSERT_EQUAL(parse("[]", 2, err, sizeof(err)), -EPROTO);
    CU_ASSERT_EQUAL(parse("{}", 2, err, sizeof(err)), -EPROTO);
    CU_ASSERT_EQUAL(parse("", 0, err, sizeof(err)), -EPROTO);
    free(more);
    free(doc);
}

static void test_rebalance_uses_it(void)
{
    /* ca-cas rebalance goes through the same parser: same refusals. */
    char node[32], err[256];
    const struct cas_hash_algo *algo;
    uint64_t *tok = NULL;
    size_t n;
    char *doc = ring_doc("00112233445566ff", "sha1", 100, 3, "\"0x12\"");
    CU_ASSERT_EQUAL(rb_parse_ring(doc, node, sizeof(node), &algo, &tok, &n, err, sizeof(err)),
                    -EPROTO);
    CU_ASSERT_PTR_NULL(tok);
    free(doc);
    doc = ring_doc("00112233445566ff", "sha1", 100, SIZE_MAX, NULL);
    CU_ASSERT_EQUAL(rb_parse_ring(doc, node, sizeof(node), &algo, &tok, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 100);
    free(tok);
    free(doc);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ringjson", NULL, NULL);
    CU_add_test(s, "accepts a ring as SPEC describes it", test_accepts_spec_ring);
    CU_add_test(s, "token counts outside 64..16384 refused", test_token_counts);
    CU_add_test(s, "tokens not 16 lowercase hex refused", test_bad_tokens);
    CU_add_test(s, "bad node or hash refused", test_bad_node_or_hash);
    CU_add_test(s, "invalid or truncated JSON refused", test_bad_json);
    CU_add_test(s, "rebalance uses the same parser", test_rebalance_uses_it);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
