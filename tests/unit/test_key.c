/*
 * test_key.c - key parsing and printing (common/key.c): hex in either case,
 * the sha1:/sha256: prefixes, every way a key can be wrong (prefix, length,
 * non-hex, path traversal, embedded NUL or slash), error messages naming
 * the bad key, and the big-endian ring position.
 */
#include "key.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct cas_hash_algo *sha1, *sha256;

static const char *ABC1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
static const char *ABC256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static int parse(const char *s, const struct cas_hash_algo *a, struct cas_key *k, char *err,
                 size_t errlen)
{
    memset(k, 0, sizeof(*k));
    err[0] = '\0';
    return cas_key_parse(s, strlen(s), a, k, err, errlen);
}

static void test_lowercase_hex(void)
{
    struct cas_key k;
    char err[512], hex[CAS_MAX_HEX + 1];
    CU_ASSERT_EQUAL_FATAL(parse(ABC1, sha1, &k, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(k.algo, sha1);
    CU_ASSERT_EQUAL(k.digest[0], 0xa9);
    CU_ASSERT_EQUAL(k.digest[1], 0x99);
    CU_ASSERT_EQUAL(k.digest[19], 0x9d);
    cas_key_hex(&k, hex);
    CU_ASSERT_STRING_EQUAL(hex, ABC1);
    CU_ASSERT_EQUAL_FATAL(parse(ABC256, sha256, &k, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(k.algo, sha256);
    cas_key_hex(&k, hex);
    CU_ASSERT_STRING_EQUAL(hex, ABC256);
}

static void test_either_case(void)
{
    struct cas_key lower, upper, mixed;
    char err[512], hex[CAS_MAX_HEX + 1];
    char up[41], mx[41];
    for (int i = 0; i < 40; i++) {
        up[i] = (char)(ABC1[i] >= 'a' ? ABC1[i] - 32 : ABC1[i]);
        mx[i] = i % 2 ? up[i] : ABC1[i];
    }
    up[40] = mx[40] = '\0';
    CU_ASSERT_EQUAL(parse(ABC1, sha1, &lower, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(parse(up, sha1, &upper, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(parse(mx, sha1, &mixed, err, sizeof(err)), 0);
    CU_ASSERT(cas_key_equal(&lower, &upper));
    CU_ASSERT(cas_key_equal(&lower, &mixed));
    /* Printed back as lowercase. */
    cas_key_hex(&upper, hex);
    CU_ASSERT_STRING_EQUAL(hex, ABC1);
}

static void test_prefixes(void)
{
    struct cas_key plain, pref;
    char err[512], s[128];
    snprintf(s, sizeof(s), "sha1:%s", ABC1);
    CU_ASSERT_EQUAL(parse(ABC1, sha1, &plain, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(parse(s, sha1, &pref, err, sizeof(err)), 0);
    CU_ASSERT(cas_key_equal(&plain, &pref));
    snprintf(s, sizeof(s), "sha256:%s", ABC256);
    CU_ASSERT_EQUAL(parse(ABC256, sha256, &plain, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(parse(s, sha256, &pref, err, sizeof(err)), 0);
    CU_ASSERT(cas_key_equal(&plain, &pref));
    /* Uppercase hex after a prefix too. */
    snprintf(s, sizeof(s), "sha1:A9993E364706816ABA3E25717850C26C9CD0D89D");
    CU_ASSERT_EQUAL(parse(s, sha1, &pref, err, sizeof(err)), 0);
    CU_ASSERT(cas_key_equal(&plain, &plain));
}

static void test_wrong_prefix(void)
{
    struct cas_key k;
    char err[512], s[128];
    /* A sha256 key on a sha1 store and the other way round. */
    snprintf(s, sizeof(s), "sha256:%s", ABC256);
    CU_ASSERT_EQUAL(parse(s, sha1, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, s));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "sha1"));
    snprintf(s, sizeof(s), "sha1:%s", ABC1);
    CU_ASSERT_EQUAL(parse(s, sha256, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, s));
    /* A right-length key with the wrong algorithm's prefix. */
    snprintf(s, sizeof(s), "sha256:%s", ABC1);
    CU_ASSERT_EQUAL(parse(s, sha1, &k, err, sizeof(err)), -EINVAL);
    static const char *bad[] = {
        "md5:", "sha:", ":", "sha1::", "sha11:", "ha1:", "sha1 :", " sha1:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(s, sizeof(s), "%s%s", bad[i], ABC1);
        CU_ASSERT_EQUAL(parse(s, sha1, &k, err, sizeof(err)), -EINVAL);
        CU_ASSERT(strlen(err) > 0);
    }
    /* A colon inside the hex. */
    snprintf(s, sizeof(s), "%.20s:%.19s", ABC1, ABC1 + 20);
    CU_ASSERT_EQUAL(parse(s, sha1, &k, err, sizeof(err)), -EINVAL);
}

static void test_wrong_length(void)
{
    struct cas_key k;
    char err[512], s[200];
    size_t lens[] = {0, 1, 20, 39, 41, 63, 64, 65, 128};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(s, 'a', lens[i]);
        s[lens[i]] = '\0';
        CU_ASSERT_EQUAL(parse(s, sha1, &k, err, sizeof(err)), -EINVAL);
        if (lens[i] != 64)
            CU_ASSERT_EQUAL(parse(s, sha256, &k, err, sizeof(err)), -EINVAL);
    }
    CU_ASSERT_EQUAL(parse("sha1:", sha1, &k, err, sizeof(err)), -EINVAL);
    /* A sha1 key is not a sha256 key, and vice versa. */
    CU_ASSERT_EQUAL(parse(ABC1, sha256, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(parse(ABC256, sha1, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "64"));
}

static void test_non_hex(void)
{
    struct cas_key k;
    char err[512], s[64];
    const char bad[] = "gGzZ-+ .x/\\:%\x7f\x80\xff";
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t b = 0; b < sizeof(bad) - 1; b++) {
            if (bad[b] == ':')
                continue; /* a colon is a prefix, tested elsewhere */
            memcpy(s, ABC1, 41);
            s[pos] = bad[b];
            if (parse(s, sha1, &k, err, sizeof(err)) != -EINVAL) {
                CU_FAIL("non-hex byte accepted");
                printf("\n  accepted byte 0x%02x at %zu\n", (unsigned char)bad[b], pos);
            }
        }
    }
    CU_ASSERT_EQUAL(parse("0x9993e364706816aba3e25717850c26c9cd0d89d", sha1, &k, err, sizeof(err)),
                    -EINVAL);
}

/* Nothing that looks like a path gets through, even at exactly the right
 * length. */
static void test_path_traversal(void)
{
    struct cas_key k;
    char err[512];
    static const char *bad[] = {
        "../../etc/passwd",
        "../../../../../../../../../../../../../a", /* 40 characters */
        "/etc/passwd/////////////////////////////",
        "..%2f..%2f..%2fetc%2fpasswd%2f%2f%2f%2f%",
        "a9993e364706816aba3e25717850c26c9cd0d8/.",
        "a9993e364706816aba3e25717850c26c9cd0d../",
        "sha1:../../../../../../../../../../../../../a",
        "./a9993e364706816aba3e25717850c26c9cd0d8",
        "..",
        ".",
        "/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(parse(bad[i], sha1, &k, err, sizeof(err)), -EINVAL);
        CU_ASSERT_EQUAL(parse(bad[i], sha256, &k, err, sizeof(err)), -EINVAL);
    }
    CU_ASSERT_EQUAL(strlen(bad[1]), 40);
}

static void test_embedded_nul_and_slash(void)
{
    struct cas_key k;
    char err[512], s[64];
    memcpy(s, ABC1, 41);
    s[10] = '\0';
    CU_ASSERT_EQUAL(cas_key_parse(s, 40, sha1, &k, err, sizeof(err)), -EINVAL);
    /* The NUL is shown escaped, not cutting the message short. */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\\x00"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a9993e3647"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "6816aba3e25717850c26c9cd0d89d"));
    memcpy(s, ABC1, 41);
    s[39] = '\0';
    CU_ASSERT_EQUAL(cas_key_parse(s, 40, sha1, &k, err, sizeof(err)), -EINVAL);
    memcpy(s, ABC1, 41);
    s[20] = '/';
    CU_ASSERT_EQUAL(cas_key_parse(s, 40, sha1, &k, err, sizeof(err)), -EINVAL);
    /* Only len bytes count: trailing bytes beyond len are ignored. */
    char longer[64];
    snprintf(longer, sizeof(longer), "%s/../x", ABC1);
    CU_ASSERT_EQUAL(cas_key_parse(longer, 40, sha1, &k, err, sizeof(err)), 0);
}

static void test_error_names_key(void)
{
    struct cas_key k;
    char err[512];
    CU_ASSERT_EQUAL(parse("../../etc/passwd", sha1, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "../../etc/passwd"));
    CU_ASSERT_EQUAL(parse("not-a-key-at-all-but-exactly-40-chars-ok", sha1, &k, err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not-a-key-at-all-but-exactly-40-chars-ok"));
    /* Quotes and control characters are escaped so the message stays one
     * line of valid JSON string content. */
    CU_ASSERT_EQUAL(parse("a\"b\nc\\d", sha1, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\\x0a"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\\x22"));
    /* A very long key is shown cut, with an ellipsis. */
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CU_ASSERT_EQUAL(parse(big, sha1, &k, err, sizeof(err)), -EINVAL);
    CU_ASSERT(strlen(err) < 300);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "qqqqqqqqqqqqqqqqqqqq..."));
    /* A small error buffer is never overrun. */
    char small[16];
    memset(small, 'X', sizeof(small));
    CU_ASSERT_EQUAL(parse(big, sha1, &k, small, 8), -EINVAL);
    CU_ASSERT_EQUAL(strlen(small), 7);
    CU_ASSERT_EQUAL(small[8], 'X');
}

static void test_equal(void)
{
    struct cas_key a, b;
    char err[256];
    CU_ASSERT_EQUAL(parse(ABC1, sha1, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(parse("da39a3ee5e6b4b0d3255bfef95601890afd80709", sha1, &b, err, sizeof(err)),
                    0);
    CU_ASSERT_FALSE(cas_key_equal(&a, &b));
    b = a;
    CU_ASSERT_TRUE(cas_key_equal(&a, &b));
    /* Same leading bytes, another algorithm: not equal. */
    b.algo = sha256;
    CU_ASSERT_FALSE(cas_key_equal(&a, &b));
}

static void test_position_big_endian(void)
{
    struct cas_key k;
    char err[256];
    CU_ASSERT_EQUAL(parse("0102030405060708090a0b0c0d0e0f1011121314", sha1, &k, err, sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(cas_key_position(&k), UINT64_C(0x0102030405060708));
    CU_ASSERT_EQUAL(parse("ffffffffffffffff000000000000000000000000", sha1, &k, err, sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(cas_key_position(&k), UINT64_MAX);
    CU_ASSERT_EQUAL(parse("8000000000000000ffffffffffffffffffffffff", sha1, &k, err, sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(cas_key_position(&k), UINT64_C(1) << 63);
    CU_ASSERT_EQUAL(parse("00000000000000017fffffffffffffffffffffff", sha1, &k, err, sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(cas_key_position(&k), 1);
    CU_ASSERT_EQUAL(parse(ABC256, sha256, &k, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cas_key_position(&k), UINT64_C(0xba7816bf8f01cfea));
}

static void test_hex_codec(void)
{
    unsigned char in[4] = {0x00, 0x7f, 0x80, 0xff}, out[4];
    char hex[9];
    cas_hex_encode(in, 4, hex);
    CU_ASSERT_STRING_EQUAL(hex, "007f80ff");
    CU_ASSERT_EQUAL(cas_hex_decode("007F80fF", 4, out), 0);
    CU_ASSERT_EQUAL(memcmp(in, out, 4), 0);
    CU_ASSERT_EQUAL(cas_hex_decode("007g80ff", 4, out), -EINVAL);
    CU_ASSERT_EQUAL(cas_hex_decode("0 7f80ff", 4, out), -EINVAL);
    cas_hex_encode(in, 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "");
}

int main(void)
{
    sha1 = cas_hash_by_name("sha1");
    sha256 = cas_hash_by_name("sha256");
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("key", NULL, NULL);
    CU_add_test(s, "lowercase hex", test_lowercase_hex);
    CU_add_test(s, "hex in either case", test_either_case);
    CU_add_test(s, "sha1:/sha256: prefixes", test_prefixes);
    CU_add_test(s, "wrong prefix", test_wrong_prefix);
    CU_add_test(s, "wrong length", test_wrong_length);
    CU_add_test(s, "non-hex byte anywhere", test_non_hex);
    CU_add_test(s, "path traversal strings", test_path_traversal);
    CU_add_test(s, "embedded NUL and slash", test_embedded_nul_and_slash);
    CU_add_test(s, "error message names the key", test_error_names_key);
    CU_add_test(s, "equality", test_equal);
    CU_add_test(s, "position is big-endian", test_position_big_endian);
    CU_add_test(s, "hex encode/decode", test_hex_codec);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
