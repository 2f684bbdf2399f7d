/*
 * test_stamp.c - the X-CAS-Timestamp write stamp (common/stamp.c): the
 * clock's unit, the accepted form, and the bounds around the receiver's
 * clock (ahead for any request, behind for a DELETE only).
 */
#include "stamp.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NOW UINT64_C(1800000000000000) /* unix microseconds, in 2027 */

static void test_clock_is_microseconds(void)
{
    uint64_t s = (uint64_t)time(NULL);
    uint64_t us = cas_stamp_now();
    CU_ASSERT(us / 1000000 >= s && us / 1000000 <= s + 1);
}

static void test_accepted(void)
{
    uint64_t v = 0;
    char err[256];
    CU_ASSERT_EQUAL(cas_stamp_parse("1800000000000000", NOW, false, &v, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(v, NOW);
    /* A write's stamp may be far in the past (a delayed request). */
    CU_ASSERT_EQUAL(cas_stamp_parse("1", NOW, false, &v, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(v, 1);
    char s[32];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)(NOW + CAS_STAMP_SKEW_US));
    CU_ASSERT_EQUAL(cas_stamp_parse(s, NOW, true, &v, err, sizeof(err)), 0);
    snprintf(s, sizeof(s), "%llu", (unsigned long long)(NOW - CAS_STAMP_SKEW_US));
    CU_ASSERT_EQUAL(cas_stamp_parse(s, NOW, true, &v, err, sizeof(err)), 0);
}

static void test_refused(void)
{
    const char *bad[] = {NULL,
                         "",
                         "0",
                         "-1",
                         "+1",
                         " 1",
                         "1 ",
                         "1.5",
                         "0x1",
                         "abc",
                         "1e6",
                         "5 6",
                         "99999999999999999999999"};
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        err[0] = '\0';
        CU_ASSERT_EQUAL(cas_stamp_parse(bad[i], NOW, false, &v, err, sizeof(err)), -EINVAL);
        CU_ASSERT_EQUAL(v, 42); /* untouched */
        CU_ASSERT_PTR_NOT_NULL(strstr(err, CAS_STAMP_HEADER));
    }
    uint64_t v = 42;
    char s[32];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)(NOW + CAS_STAMP_SKEW_US + 1));
    CU_ASSERT_EQUAL(cas_stamp_parse(s, NOW, false, &v, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ahead"));
    snprintf(s, sizeof(s), "%llu", (unsigned long long)(NOW - CAS_STAMP_SKEW_US - 1));
    CU_ASSERT_EQUAL(cas_stamp_parse(s, NOW, true, &v, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "behind"));
    CU_ASSERT_EQUAL(cas_stamp_parse(s, NOW, false, &v, err, sizeof(err)), 0); /* a write: fine */
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("stamp", NULL, NULL);
    CU_add_test(s, "the clock is unix microseconds", test_clock_is_microseconds);
    CU_add_test(s, "decimal stamps within the bounds", test_accepted);
    CU_add_test(s, "malformed and out-of-bounds stamps", test_refused);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
