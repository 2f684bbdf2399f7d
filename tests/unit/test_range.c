/*
 * test_range.c - the Range header of GET /objects/{key} (common/range.c):
 * the three forms served, what falls back to the whole object, what is
 * unsatisfiable, and numbers too large for 64 bits.
 */
#include "range.h"

#include <CUnit/Basic.h>

static int parse(const char *h, uint64_t size, uint64_t *a, uint64_t *b)
{
    *a = *b = 12345;
    return range_parse(h, size, a, b);
}

static void test_three_forms(void)
{
    uint64_t a, b;
    CU_ASSERT_EQUAL(parse("bytes=2-4", 10, &a, &b), 0);
    CU_ASSERT(a == 2 && b == 5);
    CU_ASSERT_EQUAL(parse("bytes=7-", 10, &a, &b), 0);
    CU_ASSERT(a == 7 && b == 10);
    CU_ASSERT_EQUAL(parse("bytes=-3", 10, &a, &b), 0);
    CU_ASSERT(a == 7 && b == 10);
    CU_ASSERT_EQUAL(parse("bytes=-30", 10, &a, &b), 0); /* more than there is: all of it */
    CU_ASSERT(a == 0 && b == 10);
    CU_ASSERT_EQUAL(parse("bytes=5-99", 10, &a, &b), 0); /* end cut at the size */
    CU_ASSERT(a == 5 && b == 10);
}

static void test_whole_object_when_unusable(void)
{
    uint64_t a, b;
    const char *whole[] = {NULL,         "",          "items=0-1", "bytes=0-1,3-4", "bytes=",
                           "bytes=-",    "bytes=5-1", "bytes= 1-2", "bytes=1-2 ",   "bytes=+1-2",
                           "bytes=1--2", "bytes=-+3", "bytes=0x1-"};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        CU_ASSERT_EQUAL(parse(whole[i], 10, &a, &b), 1);
        CU_ASSERT(a == 12345 && b == 12345); /* untouched */
    }
}

static void test_unsatisfiable(void)
{
    uint64_t a, b;
    CU_ASSERT_EQUAL(parse("bytes=10-", 10, &a, &b), -1);
    CU_ASSERT_EQUAL(parse("bytes=-0", 10, &a, &b), -1);
    CU_ASSERT_EQUAL(parse("bytes=0-", 0, &a, &b), -1);
    CU_ASSERT_EQUAL(parse("bytes=-5", 0, &a, &b), -1);
    /* Past 2^64: strtoull saturates, and the start is past any object. */
    CU_ASSERT_EQUAL(parse("bytes=99999999999999999999999-", 10, &a, &b), -1);
}

static void test_largest_sizes(void)
{
    uint64_t a, b;
    CU_ASSERT_EQUAL(parse("bytes=0-18446744073709551615", UINT64_MAX, &a, &b), 0);
    CU_ASSERT(a == 0 && b == UINT64_MAX);
    CU_ASSERT_EQUAL(parse("bytes=-18446744073709551615", UINT64_MAX, &a, &b), 0);
    CU_ASSERT(a == 0 && b == UINT64_MAX);
    CU_ASSERT_EQUAL(parse("bytes=18446744073709551614-", UINT64_MAX, &a, &b), 0);
    CU_ASSERT(a == UINT64_MAX - 1 && b == UINT64_MAX);
}

/* The balancer's half (balancerd/proxy.c): the Range read without the size,
 * then resolved against the size a backend states. Whether a header is
 * usable does not depend on the size; numbers past 2^64 saturate. */
static void test_spec_then_resolve(void)
{
    struct range_spec r;
    uint64_t a, b;
    CU_ASSERT_EQUAL(range_spec_parse("bytes=0-99999999999999999999999", &r), 0);
    CU_ASSERT(!r.suffix && r.a == 0 && r.b == UINT64_MAX);
    CU_ASSERT_EQUAL(range_resolve(&r, 1000, &a, &b), 0);
    CU_ASSERT(a == 0 && b == 1000);
    CU_ASSERT_EQUAL(range_spec_parse("bytes=-99999999999999999999999", &r), 0);
    CU_ASSERT(r.suffix && r.b == UINT64_MAX);
    CU_ASSERT_EQUAL(range_resolve(&r, 1000, &a, &b), 0);
    CU_ASSERT(a == 0 && b == 1000);
    CU_ASSERT_EQUAL(range_spec_parse("bytes=99999999999999999999999-", &r), 0);
    CU_ASSERT_EQUAL(range_resolve(&r, UINT64_MAX, &a, &b), -1);
    CU_ASSERT_EQUAL(range_spec_parse("bytes=-0", &r), 0);
    CU_ASSERT_EQUAL(range_resolve(&r, 10, &a, &b), -1);
    const char *unusable[] = {"Bytes=0-5", "bytes=0-1,3-4", "bytes= 1-2", "bytes=5-1", "bytes=-"};
    for (size_t i = 0; i < sizeof(unusable) / sizeof(unusable[0]); i++)
        CU_ASSERT_EQUAL(range_spec_parse(unusable[i], &r), 1);
    /* range_parse is exactly the two steps, for every size. */
    const char *hs[] = {"bytes=0-0",
                        "bytes=3-",
                        "bytes=-4",
                        "bytes=2-5",
                        "bytes=9-",
                        "bytes=-0",
                        "bytes=0-18446744073709551615",
                        "x"};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        for (uint64_t size = 0; size < 12; size++) {
            uint64_t a1 = 7, b1 = 7, a2 = 7, b2 = 7;
            int want = range_parse(hs[i], size, &a1, &b1);
            int got = range_spec_parse(hs[i], &r) ? 1 : range_resolve(&r, size, &a2, &b2);
            CU_ASSERT_EQUAL(got, want);
            CU_ASSERT(a1 == a2 && b1 == b2);
        }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("range", NULL, NULL);
    CU_add_test(s, "a-b, a- and -n", test_three_forms);
    CU_add_test(s, "unusable headers serve the whole object", test_whole_object_when_unusable);
    CU_add_test(s, "unsatisfiable ranges", test_unsatisfiable);
    CU_add_test(s, "64-bit sizes", test_largest_sizes);
    CU_add_test(s, "the Range before the size, then resolved", test_spec_then_resolve);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
