/*
 * test_cli_admin.c - CUnit suite for ca-cas/admin.c (compact, capacity, status)
 * against a scripted server (fakesrv.h): compact starts, follows GET
 * /compact until running is false and reports what was reclaimed; one
 * already running (409) is waited for, then another started; --no-wait
 * returns at once; capacity and status print the server's figures, warn
 * about partial answers and name the server's errors. Also bench's option
 * checks (ca-cas/bench.c), which refuse before any request is made.
 */
#include "fakesrv.h"

static void test_compact_no_wait(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/compact", 202, "{\"started\":true}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", "--no-wait", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "compaction started\n");
    /* Only the POST: no capacity figures, no following. */
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].method, "POST");
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", "--no-wait", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "{\"started\":true,\"finished\":false,\"done_bytes\":0}\n");
    free(out);
    free(err);
}

static void test_compact_follows_until_done(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/capacity", 200, "{\"unreclaimed\":1000}", 1);
    fake_on("GET", "/capacity", 200, "{\"unreclaimed\":100}", 0);
    fake_on("POST", "/compact", 202, "{}", 0);
    fake_on("GET", "/compact", 200, "{\"running\":true,\"done_bytes\":10,\"total_bytes\":900}", 1);
    fake_on("GET", "/compact", 200, "{\"running\":false,\"done_bytes\":900,\"total_bytes\":900}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "compaction finished: 900 bytes reclaimed (900 B), 100 still "
                                "unreclaimed\n");
    /* capacity, POST, two polls, capacity. */
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 5);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].path, "/capacity");
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].method, "POST");
    CU_ASSERT_STRING_EQUAL(fake.reqs[2].path, "/compact");
    CU_ASSERT_STRING_EQUAL(fake.reqs[3].path, "/compact");
    CU_ASSERT_STRING_EQUAL(fake.reqs[4].path, "/capacity");
    free(out);
    free(err);

    /* --json: the same figures as fields. */
    fake_reset();
    fake_on("GET", "/capacity", 200, "{\"unreclaimed\":50}", 0);
    fake_on("POST", "/compact", 202, "{}", 0);
    fake_on("GET", "/compact", 200, "{\"running\":false,\"done_bytes\":7}", 0);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "{\"started\":true,\"finished\":true,\"done_bytes\":7,"
                                "\"reclaimed\":0,\"unreclaimed\":50}\n");
    free(out);
    free(err);
}

static void test_compact_without_capacity(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    /* A server without /capacity figures (404): no reclaimed figure. */
    fake_on("POST", "/compact", 200, "{}", 0);
    fake_on("GET", "/compact", 200, "{\"running\":false}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "compaction finished\n");
    free(out);
    free(err);
}

static void test_compact_already_running(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/compact", 409, "{\"error\":\"compaction already running\"}", 1);
    fake_on("POST", "/compact", 202, "{}", 0);
    fake_on("GET", "/compact", 200, "{\"running\":false,\"done_bytes\":5}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "one is already running; waiting for it"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "compaction finished"));
    /* It waited for the running one, then started its own. */
    int posts = 0;
    for (int i = 0; i < fake.nreqs; i++)
        posts += strcmp(fake.reqs[i].method, "POST") == 0;
    CU_ASSERT_EQUAL(posts, 2);
    free(out);
    free(err);

    /* Still running after the wait (409 twice): an error. */
    fake_reset();
    fake_on("POST", "/compact", 409, "{\"error\":\"compaction already running\"}", 0);
    fake_on("GET", "/compact", 200, "{\"running\":false}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "compact: compaction already running (HTTP 409)"));
    free(out);
    free(err);

    /* --no-wait does not wait for another's. */
    fake_reset();
    fake_on("POST", "/compact", 409, "{\"error\":\"compaction already running\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", "--no-wait", NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(HTTP 409)"));
    free(out);
    free(err);
}

static void test_compact_odd_answers(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("POST", "/compact", 202, "{}", 0);
    fake_on("GET", "/compact", 200, "{\"done_bytes\":5}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no \"running\" in the answer"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    fake_reset();
    fake_on("POST", "/compact", 503, "{\"error\":\"store is read-only\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "store is read-only (HTTP 503)"));
    free(out);
    free(err);
    /* The follow-up fails: an error, not "finished". */
    fake_reset();
    fake_on("POST", "/compact", 202, "{}", 0);
    fake_on("GET", "/compact", 500, "{\"error\":\"boom\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "boom (HTTP 500)"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_compact, &ctx, &out, &err, "compact", "now", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unexpected operand \"now\""));
    free(out);
    free(err);
}

static void test_capacity(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/capacity", 200,
            "{\"total\":2048,\"available\":1024,\"unreclaimed\":0,\"objects\":3,\"bytes\":10}\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_capacity, &ctx, &out, &err, "capacity", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "total        2048 (2.00 KiB)\n"
                                "available    1024 (1.00 KiB)\n"
                                "unreclaimed  0 (0 B)\n"
                                "garbage      unknown\n"
                                "objects      3\n"
                                "bytes        10 (10 B)\n");
    CU_ASSERT_STRING_EQUAL(err, "");
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_capacity, &ctx, &out, &err, "capacity", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(
        out, "{\"total\":2048,\"available\":1024,\"unreclaimed\":0,\"objects\":3,\"bytes\":10}\n");
    free(out);
    free(err);
}

static void test_capacity_partial_and_errors(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/capacity", 200, "{\"total\":1,\"partial\":true,\"backends_up\":2}", 1);
    fake_on("GET", "/capacity", 502, "{\"error\":\"no backend answered\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_capacity, &ctx, &out, &err, "capacity", NULL), CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning: capacity: partial: only 2 backends answered"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_capacity, &ctx, &out, &err, "capacity", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "capacity: no backend answered (HTTP 502)"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_capacity, &ctx, &out, &err, "capacity", "x", NULL), CLI_EXIT_USAGE);
    free(out);
    free(err);
}

static void test_status(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/status", 200, "{\"role\":\"storaged\",\"objects\":2}", 1);
    fake_on("GET", "/status", 200, "{\"role\":\"balancerd\",\"backends_down\":1}", 1);
    fake_on("GET", "/status", 200, "{\"role\":\"balancerd\",\"backends_down\":3}", 1);
    fake_on("GET", "/status", 200, "{\"role\": oops", 1);
    fake_on("GET", "/status", 500, "plain text failure\nsecond line", 1);
    CU_ASSERT_EQUAL(run_cmd(cmd_status, &ctx, &out, &err, "status", NULL), CLI_EXIT_OK);
    char want[256];
    snprintf(want, sizeof(want), "server: %s\n", fake.url);
    CU_ASSERT_EQUAL(strncmp(out, want, strlen(want)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "role: storaged\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "objects: 2\n"));
    CU_ASSERT_STRING_EQUAL(err, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_status, &ctx, &out, &err, "status", NULL), CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "1 backend is down; its figures"));
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_status, &ctx, &out, &err, "status", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "{\"role\":\"balancerd\",\"backends_down\":3}\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 backends are down; their figures"));
    free(out);
    free(err);
    /* Text mode needs JSON it can read. */
    ctx.json = false;
    CU_ASSERT_EQUAL(run_cmd(cmd_status, &ctx, &out, &err, "status", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "status: "));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    /* A plain-text error: its first line, and the status. */
    CU_ASSERT_EQUAL(run_cmd(cmd_status, &ctx, &out, &err, "status", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "status: plain text failure (HTTP 500)"));
    CU_ASSERT_PTR_NULL(strstr(err, "second line"));
    free(out);
    free(err);
}

/* bench --size below the 16-byte unique tail would store the same object on
 * every PUT (the empty one for 0) and delete it at the end, a user's too;
 * --count 0 and --duration 0 once ran the default 10 s load. All refused
 * with exit 2 before any request. */
static void test_bench_refuses_sizes_and_zero_limits(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    static const char *cases[][4] = {
        {"--size", "0", "--size", "at least 16"},
        {"--size", "15", "--size", "at least 16"},
        {"--count", "0", "--count", "at least 1"},
        {"--duration", "0", "--duration", "more than 0"},
        {"--duration", "0s", "--duration", "more than 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        fake_reset();
        fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
        fake_on("GET", "/capacity", 200, "{}", 0);
        CU_ASSERT_EQUAL(run_cmd(cmd_bench, &ctx, &out, &err, "bench", cases[i][0], cases[i][1],
                                "--hash", "sha1", NULL),
                        CLI_EXIT_USAGE);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i][2]));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i][3]));
        CU_ASSERT_EQUAL(fake.nreqs, 0);
        free(out);
        free(err);
    }
}

int main(void)
{
    if (fake_start() < 0)
        return 1;
    capture_init();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("admin commands", NULL, NULL);
    CU_add_test(s, "compact --no-wait", test_compact_no_wait);
    CU_add_test(s, "compact follows until done", test_compact_follows_until_done);
    CU_add_test(s, "compact without capacity figures", test_compact_without_capacity);
    CU_add_test(s, "compact: one already running", test_compact_already_running);
    CU_add_test(s, "compact: odd answers and refusals", test_compact_odd_answers);
    CU_add_test(s, "capacity: text and --json", test_capacity);
    CU_add_test(s, "capacity: partial, errors", test_capacity_partial_and_errors);
    CU_add_test(s, "status: text, --json, backends down, errors", test_status);
    CU_add_test(s, "bench: --size < 16, --count 0, --duration 0 refused",
                test_bench_refuses_sizes_and_zero_limits);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    capture_fini();
    fake_stop();
    return failed ? 1 : 0;
}
