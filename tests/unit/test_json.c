/*
 * test_json.c - the JSON writer and flat-member lookups (common/json.c):
 * escaping of quotes, backslashes and control characters, commas in nested
 * objects and arrays, and cas_json_get_* on the daemons' small replies,
 * including ids sent as strings.
 */
#include "json.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *escaped(const char *s)
{
    struct cas_buf b;
    cas_buf_init(&b);
    cas_json_escape(&b, s);
    return cas_buf_steal(&b, NULL);
}

static void check_escape(const char *in, const char *want)
{
    char *got = escaped(in);
    CU_ASSERT_STRING_EQUAL(got, want);
    if (strcmp(got, want) != 0)
        printf("\n  escape: got %s want %s\n", got, want);
    free(got);
}

static void test_escape(void)
{
    check_escape("", "\"\"");
    check_escape("plain", "\"plain\"");
    check_escape("a\"b", "\"a\\\"b\"");
    check_escape("back\\slash", "\"back\\\\slash\"");
    check_escape("line\nfeed\r\ttab", "\"line\\nfeed\\r\\ttab\"");
    check_escape("\x01\x1f", "\"\\u0001\\u001f\"");
    check_escape("\b\f", "\"\\u0008\\u000c\"");
    check_escape("del\x7f", "\"del\x7f\"");         /* not a control character in JSON */
    check_escape("caf\xc3\xa9", "\"caf\xc3\xa9\""); /* UTF-8 passes through */
    check_escape("</script>", "\"</script>\"");
}

/* No byte below 0x20 survives unescaped, whatever the input. */
static void test_escape_all_control_chars(void)
{
    char in[40];
    for (int c = 1; c < 0x20; c++)
        in[c - 1] = (char)c;
    in[31] = '\0';
    char *got = escaped(in);
    for (char *p = got; *p; p++)
        CU_ASSERT((unsigned char)*p >= 0x20);
    free(got);
}

/* Bytes that are not well-formed UTF-8 (RFC 3629) come out as \u00XX, each
 * keeping its value; well-formed sequences of every length pass through. */
static void test_escape_invalid_utf8(void)
{
    check_escape("/nosuch\xff", "\"/nosuch\\u00ff\"");
    check_escape("\xc3", "\"\\u00c3\"");                 /* truncated 2-byte */
    check_escape("\xc3(", "\"\\u00c3(\"");               /* bad continuation */
    check_escape("\xc0\xaf", "\"\\u00c0\\u00af\"");       /* overlong '/' */
    check_escape("\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""); /* overlong 3-byte */
    check_escape("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""); /* UTF-16 surrogate */
    check_escape("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""); /* > U+10FFFF */
    check_escape("\xf5", "\"\\u00f5\"");
    check_escape("\xe2\x82", "\"\\u00e2\\u0082\"");       /* cut 3-byte at the end */
    check_escape("\xe2\x82\xac \xf0\x9f\x98\x80 \xdf\xbf", "\"\xe2\x82\xac \xf0\x9f\x98\x80 \xdf\xbf\"");
    check_escape("a\x80\"b", "\"a\\u0080\\\"b\"");
}

/* Whatever the bytes, the output is valid UTF-8 (checked by the same
 * decoder the writer trusts, and by the byte rules: no 0x80-0xff outside
 * a well-formed sequence). */
static void test_escape_any_bytes_valid_utf8(void)
{
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char in[64];
        int n = 1 + (int)(seed % 62);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned char c = (unsigned char)(seed >> 16);
            in[i] = c ? (char)c : 'x';
        }
        in[n] = '\0';
        char *got = escaped(in);
        size_t len = strlen(got);
        for (size_t i = 0; i < len;) {
            size_t k = cas_utf8_valid_prefix((const unsigned char *)got + i, len - i);
            CU_ASSERT_FATAL(k > 0);
            CU_ASSERT((unsigned char)got[i] >= 0x20);
            i += k;
        }
        free(got);
    }
}

static char *render(void (*fn)(struct cas_json *))
{
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    fn(&j);
    return cas_buf_steal(&b, NULL);
}

static void doc_flat(struct cas_json *j)
{
    cas_json_begin_object(j);
    cas_json_key(j, "id");
    cas_json_string(j, "42");
    cas_json_key(j, "objects");
    cas_json_u64(j, 18446744073709551615ULL);
    cas_json_key(j, "delta");
    cas_json_i64(j, -7);
    cas_json_key(j, "active");
    cas_json_bool(j, true);
    cas_json_key(j, "none");
    cas_json_null(j);
    cas_json_key(j, "ratio");
    cas_json_double(j, 0.5);
    cas_json_key(j, "nil");
    cas_json_string(j, NULL);
    cas_json_end_object(j);
}

static void doc_nested(struct cas_json *j)
{
    cas_json_begin_object(j);
    cas_json_key(j, "a");
    cas_json_begin_array(j);
    cas_json_u64(j, 1);
    cas_json_u64(j, 2);
    cas_json_begin_object(j);
    cas_json_key(j, "b");
    cas_json_begin_array(j);
    cas_json_end_array(j);
    cas_json_key(j, "c");
    cas_json_begin_object(j);
    cas_json_end_object(j);
    cas_json_end_object(j);
    cas_json_begin_array(j);
    cas_json_string(j, "x");
    cas_json_end_array(j);
    cas_json_end_array(j);
    cas_json_key(j, "d\"q");
    cas_json_bool(j, false);
    cas_json_end_object(j);
}

static void doc_top_array(struct cas_json *j)
{
    cas_json_begin_array(j);
    for (int i = 0; i < 3; i++) {
        cas_json_begin_object(j);
        cas_json_key(j, "i");
        cas_json_i64(j, i);
        cas_json_end_object(j);
    }
    cas_json_end_array(j);
}

static void test_writer_flat(void)
{
    char *s = render(doc_flat);
    CU_ASSERT_STRING_EQUAL(s, "{\"id\":\"42\",\"objects\":18446744073709551615,\"delta\":-7,"
                              "\"active\":true,\"none\":null,\"ratio\":0.5,\"nil\":\"\"}");
    free(s);
}

static void test_writer_nested(void)
{
    char *s = render(doc_nested);
    CU_ASSERT_STRING_EQUAL(s, "{\"a\":[1,2,{\"b\":[],\"c\":{}},[\"x\"]],\"d\\\"q\":false}");
    free(s);
    s = render(doc_top_array);
    CU_ASSERT_STRING_EQUAL(s, "[{\"i\":0},{\"i\":1},{\"i\":2}]");
    free(s);
}

static void test_get_flat(void)
{
    char *s = render(doc_flat);
    char str[64];
    uint64_t u = 0;
    bool b = false;
    /* The writer can write 2^64-1; the reader (jansson) holds integers in
     * int64 and refuses the whole text: numbers past 2^63-1 travel as
     * strings. The rest of the test reads the same document with
     * "objects" at the int64 maximum. */
    CU_ASSERT_EQUAL(cas_json_get_string(s, "id", str, sizeof(str)), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "objects", &u), -EINVAL);
    char *big = strstr(s, "18446744073709551615");
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memcpy(big, "09223372036854775807", 20);
    memmove(big, big + 1, strlen(big)); /* drop the leading 0 */
    CU_ASSERT_EQUAL(cas_json_get_string(s, "id", str, sizeof(str)), 0);
    CU_ASSERT_STRING_EQUAL(str, "42");
    /* Ids travel as strings; get_u64 reads them too. */
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "id", &u), 0);
    CU_ASSERT_EQUAL(u, 42);
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "objects", &u), 0);
    CU_ASSERT_EQUAL(u, (uint64_t)INT64_MAX);
    CU_ASSERT_EQUAL(cas_json_get_bool(s, "active", &b), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(cas_json_get_string(s, "missing", str, sizeof(str)), -ENOENT);
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "missing", &u), -ENOENT);
    CU_ASSERT_EQUAL(cas_json_get_bool(s, "missing", &b), -ENOENT);
    /* Type mismatches. */
    CU_ASSERT_NOT_EQUAL(cas_json_get_string(s, "objects", str, sizeof(str)), 0);
    CU_ASSERT_NOT_EQUAL(cas_json_get_bool(s, "objects", &b), 0);
    CU_ASSERT_NOT_EQUAL(cas_json_get_u64(s, "active", &u), 0);
    free(s);
}

static void test_get_whitespace_and_order(void)
{
    const char *s = "{ \"gc\" : { \"id\" : 1 } ,\n\t\"removed\"\n:\t17 , \"active\" : false,"
                    " \"id\" : \"1234567890123\" }";
    uint64_t u = 0;
    bool b = true;
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "removed", &u), 0);
    CU_ASSERT_EQUAL(u, 17);
    CU_ASSERT_EQUAL(cas_json_get_bool(s, "active", &b), 0);
    CU_ASSERT_FALSE(b);
    /* The top-level id, not the nested one. */
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "id", &u), 0);
    CU_ASSERT_EQUAL(u, 1234567890123ULL);
}

static void test_get_not_fooled(void)
{
    /* A value equal to a member name, a name inside a string, nested
     * members of the same name. */
    const char *s = "{\"note\":\"id\",\"text\":\"\\\"id\\\":9\",\"list\":[{\"id\":7}],"
                    "\"id\":\"3\"}";
    char str[64];
    uint64_t u = 0;
    CU_ASSERT_EQUAL(cas_json_get_u64(s, "id", &u), 0);
    CU_ASSERT_EQUAL(u, 3);
    CU_ASSERT_EQUAL(cas_json_get_string(s, "note", str, sizeof(str)), 0);
    CU_ASSERT_STRING_EQUAL(str, "id");
    CU_ASSERT_EQUAL(cas_json_get_string(s, "text", str, sizeof(str)), 0);
    CU_ASSERT_STRING_EQUAL(str, "\"id\":9");
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"list\":[{\"x\":7}]}", "x", &u), -ENOENT);
    /* Not a JSON object at all: refused (was -ENOENT by the hand parser). */
    CU_ASSERT_EQUAL(cas_json_get_u64("", "x", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"x\":\"unterminated", "x", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_string("{\"x", "x", str, sizeof(str)), -EINVAL);
}

/* What the writer escapes, get_string unescapes (for the escapes it
 * documents: \" \\ \/ \n \t). */
static void test_round_trip_string(void)
{
    const char *v = "err: \"bad\" key\\path\nnext\tcol";
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "error");
    cas_json_string(&j, v);
    cas_json_end_object(&j);
    char out[128];
    CU_ASSERT_EQUAL(cas_json_get_string(b.data, "error", out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, v);
    /* Truncation to the output size, always terminated. */
    char small[5];
    CU_ASSERT_EQUAL(cas_json_get_string(b.data, "error", small, sizeof(small)), 0);
    CU_ASSERT_STRING_EQUAL(small, "err:");
    CU_ASSERT_EQUAL(cas_json_get_string("{\"p\":\"a\\/b\"}", "p", out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "a/b");
    cas_buf_free(&b);
}

static void test_get_u64_rejects_bad_numbers(void)
{
    uint64_t u = 99;
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"abc\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":null}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":99999999999999999999}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(u, 99);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":0}", "n", &u), 0);
    CU_ASSERT_EQUAL(u, 0);
    /*
     * BUG (common/json.c, cas_json_get_u64): strtoull accepts a minus sign,
     * so {"n":-1} reads as 18446744073709551615 and returns 0. A negative
     * count or id from a backend must be refused, not wrapped.
     */
    u = 99;
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":-1}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"-5\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(u, 99);
}

/* Odd inputs to the jansson-based readers: a text that is not one
 * well-formed object is refused as a whole (-EINVAL), whatever member is
 * asked for; only top-level members count. */
static void test_get_odd_inputs(void)
{
    char str[64];
    uint64_t u = 77;
    bool b = false;
    /* Duplicate member names: ambiguous, refused (not first or last wins). */
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1,\"n\":2}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1,\"m\":3,\"n\":1}", "m", &u), -EINVAL);
    CU_ASSERT_EQUAL(u, 77);
    /* The same name nested twice is fine: different objects. */
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"a\":{\"n\":1},\"b\":{\"n\":2},\"n\":5}", "n", &u), 0);
    CU_ASSERT_EQUAL(u, 5);
    /* Nested before and after the top-level member: the top level counts. */
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"gc\":{\"active\":true},\"active\":false,"
                                      "\"x\":[{\"active\":true}]}",
                                      "active", &b),
                    0);
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(cas_json_get_string("{\"e\":{\"error\":\"inner\"}}", "error", str, sizeof(str)),
                    -ENOENT);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"list\":[{\"id\":7}],\"gc\":{\"id\":\"8\"}}", "id", &u),
                    -ENOENT);
    /* A top-level value that is not an object. */
    CU_ASSERT_EQUAL(cas_json_get_u64("[{\"n\":1}]", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("1", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64(NULL, "n", &u), -EINVAL);
    /* Numbers out of range or not integers. */
    u = 77;
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":9223372036854775808}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":9223372036854775808,\"m\":1}", "m", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"18446744073709551616\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1.5}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1e3}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"12abc\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\" 1\"}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(u, 77);
    /* ... while the full range travels as a string, and int64's top as a number. */
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":\"18446744073709551615\"}", "n", &u), 0);
    CU_ASSERT_EQUAL(u, UINT64_MAX);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":9223372036854775807}", "n", &u), 0);
    CU_ASSERT_EQUAL(u, (uint64_t)INT64_MAX);
    /* Invalid UTF-8 anywhere in the text, a lone surrogate, \u0000. */
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"a\xff\"}", "s", str, sizeof(str)), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"\xc0\xaf\"}", "s", str, sizeof(str)), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"\xe2\x82\":1,\"n\":2}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"\\ud800\"}", "s", str, sizeof(str)), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"a\\u0000b\"}", "s", str, sizeof(str)), -EINVAL);
    /* Escapes are decoded: \u00e9, a surrogate pair, \r \b \f. */
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"\\u00e9\\ud83d\\ude00\\r\\b\\f\"}", "s", str,
                                        sizeof(str)),
                    0);
    CU_ASSERT_STRING_EQUAL(str, "\xc3\xa9\xf0\x9f\x98\x80\r\b\f");
    /* Valid UTF-8 passes; a cut in the middle of a character is still
     * cut (outlen bytes), as callers only show the text. */
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"d\xc3\xa9j\xc3\xa0\"}", "s", str, sizeof(str)), 0);
    CU_ASSERT_STRING_EQUAL(str, "d\xc3\xa9j\xc3\xa0");
    /* Trailing text after the object. */
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1} {\"n\":2}", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1}x", "n", &u), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_u64("{\"n\":1}\r\n", "n", &u), 0); /* whitespace is fine */
    /* Every proper prefix of a document is refused; the whole one reads. */
    const char *doc = "{\"active\":true,\"id\":\"12\",\"gc\":{\"n\":[1,2]},\"objects\":3}";
    size_t len = strlen(doc);
    char *cut = malloc(len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
    for (size_t i = 0; i < len; i++) {
        memcpy(cut, doc, i);
        cut[i] = '\0';
        u = 77;
        CU_ASSERT_EQUAL(cas_json_get_u64(cut, "objects", &u), -EINVAL);
        CU_ASSERT_EQUAL(cas_json_get_bool(cut, "active", &b), -EINVAL);
        CU_ASSERT_EQUAL(u, 77);
    }
    free(cut);
    CU_ASSERT_EQUAL(cas_json_get_u64(doc, "objects", &u), 0);
    CU_ASSERT_EQUAL(u, 3);
    CU_ASSERT_EQUAL(cas_json_get_u64(doc, "id", &u), 0);
    CU_ASSERT_EQUAL(u, 12);
    /* outlen 0 has no room for the terminator. */
    CU_ASSERT_EQUAL(cas_json_get_string("{\"s\":\"x\"}", "s", str, 0), -EINVAL);
}

static void test_get_bool_values(void)
{
    bool b = false;
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"a\":true}", "a", &b), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"a\":false}", "a", &b), 0);
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"a\":\"true\"}", "a", &b), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"a\":1}", "a", &b), -EINVAL);
    CU_ASSERT_EQUAL(cas_json_get_bool("{\"a\":null}", "a", &b), -EINVAL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("json", NULL, NULL);
    CU_add_test(s, "escaping", test_escape);
    CU_add_test(s, "every control character escaped", test_escape_all_control_chars);
    CU_add_test(s, "invalid UTF-8 escaped byte by byte", test_escape_invalid_utf8);
    CU_add_test(s, "any bytes give valid UTF-8", test_escape_any_bytes_valid_utf8);
    CU_add_test(s, "writer: flat object", test_writer_flat);
    CU_add_test(s, "writer: nesting and commas", test_writer_nested);
    CU_add_test(s, "get_* on a flat object", test_get_flat);
    CU_add_test(s, "get_* with whitespace, nested decoys", test_get_whitespace_and_order);
    CU_add_test(s, "get_* not fooled by strings", test_get_not_fooled);
    CU_add_test(s, "string round trip", test_round_trip_string);
    CU_add_test(s, "get_u64 rejects bad numbers", test_get_u64_rejects_bad_numbers);
    CU_add_test(s, "get_bool values", test_get_bool_values);
    CU_add_test(s, "get_* odd inputs: duplicates, nesting, range, UTF-8, truncation",
                test_get_odd_inputs);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
