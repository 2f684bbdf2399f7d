/*
 * test_cli_keylist.c - CUnit suite for ca-cas/keylist.c: keys from operands or
 * a stream reach the batch callback checked, normalised to lowercase hex,
 * one per line, in batches of at most max keys; a bad key or a refusing
 * callback stops the run with a message naming where it was.
 */
#include "cli.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K1 "0123456789abcdef0123456789abcdef01234567"
#define K2 "89abcdef0123456789abcdef0123456789abcdef"
#define K3 "da39a3ee5e6b4b0d3255bfef95601890afd80709"
#define K256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* What the callback saw: every batch body concatenated, with "|" after each
 * batch, and the counts it was told. */
struct seen {
    char bodies[4096];
    size_t counts[16];
    int batches;
    int fail_at; /* batch number (1-based) at which to refuse; 0 never */
};

static int collect(void *cls, const char *body, size_t len, size_t count, char *err, size_t errlen)
{
    struct seen *s = cls;
    s->batches++;
    if (s->fail_at == s->batches) {
        snprintf(err, errlen, "server said no");
        return -EIO;
    }
    /* The body is exactly count lines. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += body[i] == '\n';
    CU_ASSERT_EQUAL(lines, count);
    CU_ASSERT(len > 0 && body[len - 1] == '\n');
    if (s->batches <= 16)
        s->counts[s->batches - 1] = count;
    strncat(s->bodies, body, len);
    strcat(s->bodies, "|");
    return 0;
}

static FILE *stream_of(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    return f;
}

static void test_args_batches(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    char *keys[] = {K1, "sha1:" K2, K3, K256, K1};
    cli_keylist_init(&kl, 2, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, keys, 5, err, sizeof(err)), 0);
    /* Two full batches went out as soon as they filled; the fifth key waits. */
    CU_ASSERT_EQUAL(s.batches, 2);
    CU_ASSERT_EQUAL(kl.count, 1);
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.batches, 3);
    CU_ASSERT_EQUAL(s.counts[0], 2);
    CU_ASSERT_EQUAL(s.counts[1], 2);
    CU_ASSERT_EQUAL(s.counts[2], 1);
    CU_ASSERT_EQUAL(kl.total, 5);
    /* Prefix dropped, case folded; repeated keys are passed on as given. */
    CU_ASSERT_STRING_EQUAL(s.bodies, K1 "\n" K2 "\n|" K3 "\n" K256 "\n|" K1 "\n|");
    /* A flush with nothing pending does not call the callback. */
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.batches, 3);
    cli_keylist_free(&kl);
}

static void test_args_uppercase(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    char up[] = "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709";
    char *keys[] = {up};
    cli_keylist_init(&kl, 10, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, keys, 1, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.batches, 0);
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(s.bodies, K3 "\n|");
    cli_keylist_free(&kl);
}

static void test_args_bad_key(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    char *keys[] = {K1, "not-a-key", K2};
    cli_keylist_init(&kl, 10, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, keys, 3, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "argument"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not-a-key"));
    /* The key after the bad one was not taken. */
    CU_ASSERT_EQUAL(kl.total, 1);
    cli_keylist_free(&kl);

    /* Right length, wrong digits; unknown prefix. */
    const char *bad[] = {"g123456789abcdef0123456789abcdef01234567", "md5:" K1, K1 "0", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&s, 0, sizeof(s));
        err[0] = '\0';
        cli_keylist_init(&kl, 10, collect, &s);
        char *one[] = {(char *)bad[i]};
        CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, one, 1, err, sizeof(err)), -EINVAL);
        CU_ASSERT(strlen(err) > 0);
        CU_ASSERT_EQUAL(kl.count, 0);
        CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(s.batches, 0);
        cli_keylist_free(&kl);
    }
}

static void test_stream_words_and_blanks(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    /* "list --long" lines, leading blanks, CRLF, empty and blank lines, a
     * last line without newline. */
    FILE *f = stream_of("\n" K1 " 1234\n"
                        "   \t" K2 "\r\n"
                        "  \n"
                        "\t\n" K3);
    cli_keylist_init(&kl, 100, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, f, "keys.txt", err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.batches, 1);
    CU_ASSERT_EQUAL(kl.total, 3);
    CU_ASSERT_STRING_EQUAL(s.bodies, K1 "\n" K2 "\n" K3 "\n|");
    fclose(f);
    cli_keylist_free(&kl);
}

static void test_stream_bad_line_named(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    FILE *f = stream_of(K1 "\n\n" K2 "\nzzz 12\n" K3 "\n");
    cli_keylist_init(&kl, 100, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, f, "keys.txt", err, sizeof(err)), -EINVAL);
    /* Line numbers count the blank line too: the bad key is on line 4. */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "keys.txt line 4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "zzz"));
    CU_ASSERT_EQUAL(kl.total, 2);
    fclose(f);
    cli_keylist_free(&kl);
}

static void test_stream_callback_refuses(void)
{
    struct seen s = {.fail_at = 2};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    FILE *f = stream_of(K1 "\n" K2 "\n" K3 "\n" K256 "\n");
    cli_keylist_init(&kl, 1, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, f, "-", err, sizeof(err)), -EIO);
    CU_ASSERT_STRING_EQUAL(err, "server said no");
    /* Reading stopped at the refused batch. */
    CU_ASSERT_EQUAL(s.batches, 2);
    CU_ASSERT_EQUAL(kl.total, 2);
    /* The refused batch is not handed on again. */
    CU_ASSERT_EQUAL(kl.count, 0);
    fclose(f);
    cli_keylist_free(&kl);
}

static void test_max_zero_is_one(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    char *keys[] = {K1, K2};
    cli_keylist_init(&kl, 0, collect, &s);
    CU_ASSERT_EQUAL(kl.max, 1);
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, keys, 2, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.batches, 2);
    CU_ASSERT_STRING_EQUAL(s.bodies, K1 "\n|" K2 "\n|");
    cli_keylist_free(&kl);
}

static void test_stream_read_error(void)
{
    struct seen s = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX] = "";
    /* A write-only stream: reading it sets the error indicator. */
    FILE *f = fopen("/dev/null", "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    cli_keylist_init(&kl, 10, collect, &s);
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, f, "out.txt", err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "reading out.txt"));
    CU_ASSERT_EQUAL(s.batches, 0);
    fclose(f);
    cli_keylist_free(&kl);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("keylist", NULL, NULL);
    CU_add_test(s, "operands in batches of max", test_args_batches);
    CU_add_test(s, "upper case folded", test_args_uppercase);
    CU_add_test(s, "bad operand named, later keys not taken", test_args_bad_key);
    CU_add_test(s, "stream: first word, blank lines, CRLF", test_stream_words_and_blanks);
    CU_add_test(s, "stream: bad line named by number", test_stream_bad_line_named);
    CU_add_test(s, "stream: a refusing callback stops", test_stream_callback_refuses);
    CU_add_test(s, "max 0 means batches of one", test_max_zero_is_one);
    CU_add_test(s, "stream: read error", test_stream_read_error);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
