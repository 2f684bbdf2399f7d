/*
 * test_cli_gc.c - CUnit suite for ca-cas/gc.c (begin-gc, mark-gc, end-gc)
 * against a scripted server (fakesrv.h): what each command asks, what it
 * prints in text and --json, that bad operands are refused before anything
 * is sent (exit 2), and that a server's refusal or an odd answer is an
 * error naming it (exit 1).
 */
#include "fakesrv.h"

#define K1 "0123456789abcdef0123456789abcdef01234567"
#define K2 "da39a3ee5e6b4b0d3255bfef95601890afd80709"

static void test_begin(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/begin", 200, "{\"id\":\"17\",\"objects\":3,\"bytes\":9}\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "17\n");
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].id, "");
    free(out);
    free(err);

    /* --id goes to the server; --json prints the answer as it came. */
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", "--id", "42", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "{\"id\":\"17\",\"objects\":3,\"bytes\":9}\n");
    CU_ASSERT_EQUAL(fake.nreqs, 2);
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].id, "42");
    free(out);
    free(err);
}

static void test_begin_numeric_or_missing_id(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    /* An id sent as a number is taken too. */
    fake_on("POST", "/gc/begin", 200, "{\"id\":123456789012,\"objects\":0}", 1);
    fake_on("POST", "/gc/begin", 200, "{\"objects\":0}", 1);
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "123456789012\n");
    free(out);
    free(err);
    /* No id at all: an error naming the answer, nothing printed on stdout. */
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no cycle id"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"objects\":0}"));
    free(out);
    free(err);
}

static void test_begin_refused(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/begin", 503, "{\"error\":\"store is read-only\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "begin-gc: store is read-only (HTTP 503)"));
    free(out);
    free(err);
}

static void test_bad_operands_send_nothing(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    const char *bad_ids[] = {"abc", "", "-1", "1e3", "123456789012345678901", "12 "};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", "--id", bad_ids[i], NULL),
                        CLI_EXIT_USAGE);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a number"));
        free(out);
        free(err);
        CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", bad_ids[i], NULL),
                        CLI_EXIT_USAGE);
        /* "-1" is taken for an option there: refused all the same. */
        if (bad_ids[i][0] != '-')
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a cycle id"));
        free(out);
        free(err);
    }
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", "7", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unexpected operand \"7\""));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cycle id is missing"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "1", "2", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unexpected operand \"2\""));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", K1, "nope", NULL),
                    CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", "--bogus", NULL),
                    CLI_EXIT_USAGE);
    free(out);
    free(err);
    /* None of these reached the server. */
    CU_ASSERT_EQUAL(fake.nreqs, 0);
}

static void test_mark_operands(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/mark", 200, "{\"unmarked\":1}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", K1,
                            "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "2 keys sent, 1 copies unmarked\n");
    /* One batch, keys normalised, one per line. */
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, K1 "\n" K2 "\n");
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", K1, NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "{\"keys\":1,\"unmarked\":1}\n");
    free(out);
    free(err);
}

static void test_mark_stdin(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/mark", 200, "{\"unmarked\":2}", 0);
    static char text[] = K1 " 100\n\n" K2 "\n";
    FILE *saved = stdin;
    stdin = fmemopen(text, strlen(text), "r");
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", NULL), CLI_EXIT_OK);
    fclose(stdin);
    stdin = saved;
    CU_ASSERT_STRING_EQUAL(out, "2 keys sent, 2 copies unmarked\n");
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, K1 "\n" K2 "\n");
    free(out);
    free(err);

    /* A bad line on stdin: named by its number, nothing sent. */
    fake_reset();
    static char bad[] = K1 "\nxyz\n";
    stdin = fmemopen(bad, strlen(bad), "r");
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", NULL), CLI_EXIT_USAGE);
    fclose(stdin);
    stdin = saved;
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stdin line 2"));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
}

static void test_mark_refused(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/mark", 409, "{\"error\":\"no GC cycle is active\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", K1, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mark-gc: no GC cycle is active (HTTP 409)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "0 unmarked"));
    free(out);
    free(err);
}

static void test_end(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/end", 200, "{\"removed\":3,\"bytes\":2048}", 1);
    fake_on("POST", "/gc/end", 409, "{\"error\":\"cycle 17 is not the current one\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "17", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "removed 3 objects, 2048 bytes (2.00 KiB)\n");
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].id, "17");
    free(out);
    free(err);
    /* A rejected end (409) is an error naming the id and the reason. */
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "17", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "end-gc 17: cycle 17 is not the current one (HTTP 409)"));
    free(out);
    free(err);
}

/* A 200 answer without the SPEC's counts is not the server's (a proxy's
 * page, another service's upload answer): no "removed 0", no "unmarked 0",
 * exit 1. */
static void test_answers_without_counts(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/gc/end", 200, "{\"key\":\"abc\",\"success\":true}", 1);
    fake_on("POST", "/gc/end", 200, "{\"removed\":3}", 1);
    fake_on("POST", "/gc/mark", 200, "{}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "5", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no \"removed\""));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "5", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_mark_gc, &ctx, &out, &err, "mark-gc", K1, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NULL(strstr(out, "unmarked 0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unmarked"));
    free(out);
    free(err);
}

static void test_unreachable(void)
{
    /* Port 1 (tcpmux): nothing listens there on a test machine. */
    struct cli_ctx ctx = fake_ctx(false, "http://127.0.0.1:1");
    char *out, *err;
    CU_ASSERT_EQUAL(run_cmd(cmd_end_gc, &ctx, &out, &err, "end-gc", "5", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach server http://127.0.0.1:1"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_begin_gc, &ctx, &out, &err, "begin-gc", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach server"));
    free(out);
    free(err);
}

int main(void)
{
    if (fake_start() < 0)
        return 1;
    capture_init();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("gc commands", NULL, NULL);
    CU_add_test(s, "begin-gc: text, --id, --json", test_begin);
    CU_add_test(s, "begin-gc: numeric id taken, missing id an error", test_begin_numeric_or_missing_id);
    CU_add_test(s, "begin-gc: server refusal named", test_begin_refused);
    CU_add_test(s, "bad operands refused, nothing sent", test_bad_operands_send_nothing);
    CU_add_test(s, "mark-gc: operands in one batch", test_mark_operands);
    CU_add_test(s, "mark-gc: keys from stdin", test_mark_stdin);
    CU_add_test(s, "mark-gc: server refusal named", test_mark_refused);
    CU_add_test(s, "end-gc: removed figures, 409 named", test_end);
    CU_add_test(s, "mark-gc, end-gc: answers without their counts", test_answers_without_counts);
    CU_add_test(s, "server not reachable", test_unreachable);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    capture_fini();
    fake_stop();
    return failed ? 1 : 0;
}
