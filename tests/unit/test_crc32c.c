/*
 * test_crc32c.c - CUnit suite for common/crc32c.c: the standard check value,
 * incremental use, and agreement with a bit-by-bit reference at every
 * length and alignment, for cas_crc32c (the SSE4.2 path where the CPU has
 * it) and for cas_crc32c_portable (the table path, which cas_crc32c alone
 * never reaches on such a CPU).
 */
#include "crc32c.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

static uint32_t reference(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_check_value(void)
{
    CU_ASSERT_EQUAL(cas_crc32c(0, "123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(cas_crc32c(0, "", 0), 0u);
    unsigned char zeros[32] = {0};
    CU_ASSERT_EQUAL(cas_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
}

static void test_against_reference(void)
{
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len + off <= sizeof(buf); len += 7)
            CU_ASSERT_EQUAL(cas_crc32c(0, buf + off, len), reference(buf + off, len));
}

static void test_portable_against_reference(void)
{
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    CU_ASSERT_EQUAL(cas_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(cas_crc32c_portable(0, "", 0), 0u);
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len + off <= sizeof(buf); len++) {
            uint32_t want = reference(buf + off, len);
            CU_ASSERT_EQUAL(cas_crc32c_portable(0, buf + off, len), want);
            /* Both paths agree, also when continued from either's value. */
            size_t half = len / 2;
            uint32_t a = cas_crc32c_portable(0, buf + off, half);
            CU_ASSERT_EQUAL(cas_crc32c(a, buf + off + half, len - half), want);
            uint32_t b = cas_crc32c(0, buf + off, half);
            CU_ASSERT_EQUAL(cas_crc32c_portable(b, buf + off + half, len - half), want);
        }
}

static void test_incremental(void)
{
    size_t n = 3 * 1024 * 1024 + 5;
    unsigned char *b = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 11);
    uint32_t whole = cas_crc32c(0, b, n);
    for (size_t cut = 0; cut < n; cut += 333333) {
        uint32_t c = cas_crc32c(0, b, cut);
        CU_ASSERT_EQUAL(cas_crc32c(c, b + cut, n - cut), whole);
    }
    b[n / 2] ^= 1;
    CU_ASSERT_NOT_EQUAL(cas_crc32c(0, b, n), whole);
    free(b);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("crc32c", NULL, NULL);
    CU_add_test(s, "check value", test_check_value);
    CU_add_test(s, "against a bit-by-bit reference", test_against_reference);
    CU_add_test(s, "table path against the reference", test_portable_against_reference);
    CU_add_test(s, "incremental", test_incremental);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
