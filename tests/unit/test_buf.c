/*
 * test_buf.c - the growable byte buffer (common/buf.c): appends across
 * growth, NUL termination, binary data, printf of large strings, reset and
 * steal.
 */
#include "buf.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

static void test_empty(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(b.oom, 0);
    /*
     * BUG (common/buf.c, cas_buf_reserve / cas_buf_steal): buf.h promises
     * data is "always NUL-terminated when non-NULL", but reserve on an empty
     * buffer allocates without writing data[0], so steal (which reserves 0)
     * returns an unterminated string; ASan's malloc fill shows it. Fix: set
     * b->data[b->len] = '\0' after a successful realloc in cas_buf_reserve.
     */
    CU_ASSERT_EQUAL(cas_buf_reserve(&b, 10), 0);
    CU_ASSERT_EQUAL(b.data[0], '\0');
    cas_buf_free(&b);
    size_t len = 99;
    char *p = cas_buf_steal(&b, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_STRING_EQUAL(p, "");
    free(p);
    cas_buf_free(&b); /* on an empty buffer: fine */
    cas_buf_reset(&b);
    CU_ASSERT_EQUAL(b.len, 0);
}

static void test_append_grows(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    char expect[10000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        char piece[16];
        int k = snprintf(piece, sizeof(piece), "%d,", i);
        cas_buf_append(&b, piece, (size_t)k);
        memcpy(expect + n, piece, (size_t)k);
        n += (size_t)k;
        CU_ASSERT_EQUAL(b.len, n);
        CU_ASSERT(b.cap > b.len);
        CU_ASSERT_EQUAL(b.data[b.len], '\0');
    }
    CU_ASSERT_EQUAL(memcmp(b.data, expect, n), 0);
    cas_buf_free(&b);
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);
}

static void test_binary(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    unsigned char bin[300];
    for (int i = 0; i < 300; i++)
        bin[i] = (unsigned char)i;
    cas_buf_append(&b, bin, sizeof(bin));
    cas_buf_append(&b, "", 0);
    CU_ASSERT_EQUAL(b.len, 300);
    CU_ASSERT_EQUAL(memcmp(b.data, bin, 300), 0);
    CU_ASSERT_EQUAL(b.data[300], '\0');
    cas_buf_free(&b);
}

static void test_printf(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, "x=");
    cas_buf_printf(&b, "%d %s %llu", -5, "abc", 18446744073709551615ULL);
    CU_ASSERT_STRING_EQUAL(b.data, "x=-5 abc 18446744073709551615");
    CU_ASSERT_EQUAL(b.len, strlen(b.data));
    /* A formatted string larger than any growth step. */
    char *big = malloc(100001);
    memset(big, 'z', 100000);
    big[100000] = '\0';
    cas_buf_printf(&b, "[%s]", big);
    CU_ASSERT_EQUAL(b.len, 29 + 100002);
    CU_ASSERT_EQUAL(b.data[29], '[');
    CU_ASSERT_EQUAL(b.data[29 + 100001], ']');
    CU_ASSERT_EQUAL(b.data[b.len], '\0');
    CU_ASSERT_EQUAL(strlen(b.data), b.len);
    free(big);
    cas_buf_printf(&b, "%s", "");
    CU_ASSERT_EQUAL(b.len, 29 + 100002);
    cas_buf_free(&b);
}

static void test_reset_keeps_storage(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, "hello world");
    size_t cap = b.cap;
    cas_buf_reset(&b);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_STRING_EQUAL(b.data, "");
    CU_ASSERT_EQUAL(b.cap, cap);
    cas_buf_puts(&b, "again");
    CU_ASSERT_STRING_EQUAL(b.data, "again");
    cas_buf_free(&b);
}

static void test_steal(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, "payload");
    size_t len = 0;
    char *p = cas_buf_steal(&b, &len);
    CU_ASSERT_EQUAL(len, 7);
    CU_ASSERT_STRING_EQUAL(p, "payload");
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(b.cap, 0);
    /* The buffer is usable again and independent of the stolen storage. */
    cas_buf_puts(&b, "new");
    CU_ASSERT_STRING_EQUAL(p, "payload");
    CU_ASSERT_STRING_EQUAL(b.data, "new");
    free(p);
    p = cas_buf_steal(&b, NULL);
    CU_ASSERT_STRING_EQUAL(p, "new");
    free(p);
}

static void test_reserve(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    CU_ASSERT_EQUAL(cas_buf_reserve(&b, 5000), 0);
    CU_ASSERT(b.cap >= 5001);
    size_t cap = b.cap;
    char *data = b.data;
    for (int i = 0; i < 5000; i++)
        cas_buf_append(&b, "a", 1);
    CU_ASSERT_EQUAL(b.cap, cap); /* no reallocation was needed */
    CU_ASSERT_PTR_EQUAL(b.data, data);
    CU_ASSERT_EQUAL(b.len, 5000);
    cas_buf_free(&b);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("buf", NULL, NULL);
    CU_add_test(s, "empty buffer", test_empty);
    CU_add_test(s, "append grows", test_append_grows);
    CU_add_test(s, "binary data", test_binary);
    CU_add_test(s, "printf", test_printf);
    CU_add_test(s, "reset keeps storage", test_reset_keeps_storage);
    CU_add_test(s, "steal", test_steal);
    CU_add_test(s, "reserve", test_reserve);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
