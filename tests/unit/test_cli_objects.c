/*
 * test_cli_objects.c - CUnit suite for ca-cas/objects.c (put, stat, missing,
 * rm, list) against a scripted server (fakesrv.h), on the paths the
 * integration suite does not reach: a server that stores a stream under a
 * key the data does not hash to (an error, never printed as stored), bad
 * operands refused before anything is sent, the same file given twice sent
 * once, a failing POST /objects/missing falling back to sending everything,
 * list's last line without newline and its bound on one line, rm and
 * missing in --json, a server that goes away mid-command, a listing a
 * balancer marks incomplete (X-CAS-Backends-Skipped).
 */
#include "fakesrv.h"

#include <errno.h>
#include <sys/stat.h>

#define K1 "0123456789abcdef0123456789abcdef01234567"
#define K2 "da39a3ee5e6b4b0d3255bfef95601890afd80709"
/* sha1("hello\n") */
#define HELLO "f572d396fae9206628714fb2ce00f72e94f2258f"

static char dir[] = "/tmp/cas-test-objects-XXXXXX";

static const char *file_with(const char *name, const char *text)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Runs cmd with stdin reading from a pipe holding text (small). */
static int run_with_stdin_pipe(int (*cmd)(int, char **, const struct cli_ctx *),
                               const struct cli_ctx *ctx, const char *text, char **out, char **err,
                               const char *a0, const char *a1)
{
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    CU_ASSERT_FATAL(write(p[1], text, strlen(text)) == (ssize_t)strlen(text));
    close(p[1]);
    int saved = dup(STDIN_FILENO);
    dup2(p[0], STDIN_FILENO);
    close(p[0]);
    int rc = run_cmd(cmd, ctx, out, err, a0, a1, NULL);
    dup2(saved, STDIN_FILENO);
    close(saved);
    clearerr(stdin);
    return rc;
}

static void test_put_stream_key_checked(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    /* The server claims another key than the data hashes to. */
    fake_on("POST", "/objects", 201, K1 "\n", 1);
    /* A server that answers with the Location only. */
    fake_on_header("POST", "/objects", 201, "", "Location: /objects/" HELLO);
    CU_ASSERT_EQUAL(run_with_stdin_pipe(cmd_put, &ctx, "hello\n", &out, &err, "put", "--hash=sha1"),
                    CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the server stored key " K1
                                       " but the data sent hashes to " HELLO));
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "hello\n");
    free(out);
    free(err);

    CU_ASSERT_EQUAL(run_with_stdin_pipe(cmd_put, &ctx, "hello\n", &out, &err, "put", "--hash=sha1"),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, HELLO "\n");
    free(out);
    free(err);

    /* No key at all in the answer. */
    fake_reset();
    fake_on("POST", "/objects", 201, "stored!\n", 0);
    CU_ASSERT_EQUAL(run_with_stdin_pipe(cmd_put, &ctx, "hello\n", &out, &err, "put", "--hash=sha1"),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the server's answer has no key"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    /* A refusal is named. */
    fake_reset();
    fake_on("POST", "/objects", 507, "{\"error\":\"disk full\"}", 0);
    CU_ASSERT_EQUAL(run_with_stdin_pipe(cmd_put, &ctx, "hello\n", &out, &err, "put", "--hash=sha1"),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "put -: disk full (HTTP 507)"));
    free(out);
    free(err);
}

static void test_put_files(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *a = file_with("a", "hello\n");
    const char *b = file_with("b", "hello\n");
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    mkdir(sub, 0700);
    fake_reset();
    fake_on("POST", "/objects/missing", 200, HELLO "\n", 0);
    fake_on("PUT", "/objects/" HELLO, 201, HELLO "\n", 0);
    /* The same data twice, a directory, a file that is not there. */
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "sha1", a, sub, b,
                            "/nonexistent/file", NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, HELLO "\n" HELLO "\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "put /nonexistent/file: No such file or directory"));
    /* One question, one upload. */
    int puts = 0;
    for (int i = 0; i < fake.nreqs; i++)
        puts += strcmp(fake.reqs[i].method, "PUT") == 0;
    CU_ASSERT_EQUAL(puts, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].path, "/objects/missing");
    /* Both files were asked about (the server answers once per key). */
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, HELLO "\n" HELLO "\n");
    free(out);
    free(err);

    /* Already stored: nothing sent; --json says so; --no-sync reaches the
     * query of an upload. */
    fake_reset();
    fake_on("POST", "/objects/missing", 200, "", 0);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "sha1", a, NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"key\":\"" HELLO "\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"uploaded\":false"));
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    free(out);
    free(err);

    /* POST /objects/missing fails (an old server, a proxy): everything is
     * sent. */
    fake_reset();
    ctx.json = false;
    fake_on("POST", "/objects/missing", 500, "{\"error\":\"boom\"}", 0);
    fake_on("PUT", "/objects/" HELLO, 201, HELLO "\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "sha1", "--no-sync", a,
                            NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, HELLO "\n");
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 2);
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].query, "sync=0");
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].body, "hello\n");
    free(out);
    free(err);

    /* Without the token (401) it is an error, not "send everything". */
    fake_reset();
    fake_on("POST", "/objects/missing", 401, "{\"error\":\"token required\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "sha1", a, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "token required (HTTP 401)"));
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    free(out);
    free(err);

    /* A 200 answer naming something that was not asked (a Cask upload's
     * {"key":...}, a page) is not "nothing missing": put fails, prints no
     * key, sends nothing. */
    fake_reset();
    fake_on("POST", "/objects/missing", 200, "{\"key\":\"abc\",\"success\":true}\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "sha1", a, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not asked"));
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    free(out);
    free(err);
}

static void test_put_usage(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "--hash", "md5", "x", NULL),
                    CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "want sha1 or sha256"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_put, &ctx, &out, &err, "put", "-", "x", "-", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "more than once"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(fake.nreqs, 0);
}

static void test_stat(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/objects/" K1, 500, "{\"error\":\"disk error\"}", 0);
    fake_on("GET", "/objects/" K2, 200, "", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_stat, &ctx, &out, &err, "stat", K1, K2, NULL), CLI_EXIT_FAIL);
    /* The failing key is named (HEAD: no body, the reason); the next one is
     * still asked. */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stat " K1 ": internal server error (HTTP 500)"));
    CU_ASSERT_STRING_EQUAL(out, K2 " 0\n");
    free(out);
    free(err);
    /* Bad key: refused before anything is sent. */
    fake_reset();
    CU_ASSERT_EQUAL(run_cmd(cmd_stat, &ctx, &out, &err, "stat", K1, "zz", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "zz"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_rm, &ctx, &out, &err, "rm", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no key given"));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    free(out);
    free(err);
    /* Server gone: one error, not one per key. */
    struct cli_ctx gone = fake_ctx(false, "http://127.0.0.1:1");
    CU_ASSERT_EQUAL(run_cmd(cmd_stat, &gone, &out, &err, "stat", K1, K2, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach server"));
    CU_ASSERT_PTR_NULL(strstr(err, K2));
    free(out);
    free(err);
}

static void test_rm(void)
{
    struct cli_ctx ctx = fake_ctx(true, NULL);
    char *out, *err;
    fake_reset();
    fake_on("DELETE", "/objects/" K1, 204, "", 0);
    fake_on("DELETE", "/objects/" K2, 404, "{\"error\":\"not found\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_rm, &ctx, &out, &err, "rm", K1, K2, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "[{\"key\":\"" K1 "\",\"removed\":true},{\"key\":\"" K2
                                "\",\"removed\":false,\"error\":\"not found (HTTP 404)\"}]\n");
    free(out);
    free(err);
    /* Server gone: stops at the first key. */
    struct cli_ctx gone = fake_ctx(false, "http://127.0.0.1:1");
    CU_ASSERT_EQUAL(run_cmd(cmd_rm, &gone, &out, &err, "rm", K1, K2, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "rm " K1));
    CU_ASSERT_PTR_NULL(strstr(err, "rm " K2));
    free(out);
    free(err);
}

static void test_missing(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *keys = file_with("keys", K1 " 10\n" K2 "\n");
    fake_reset();
    fake_on("POST", "/objects/missing", 200, K2 "\r\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_missing, &ctx, &out, &err, "missing", keys, NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, K2 "\n");
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, K1 "\n" K2 "\n");
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_missing, &ctx, &out, &err, "missing", keys, NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "[\"" K2 "\"]\n");
    free(out);
    free(err);
    ctx.json = false;
    CU_ASSERT_EQUAL(run_cmd(cmd_missing, &ctx, &out, &err, "missing", keys, keys, NULL),
                    CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "one FILE at most"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_missing, &ctx, &out, &err, "missing", "/nonexistent/keys", NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open /nonexistent/keys"));
    free(out);
    free(err);
    fake_reset();
    fake_on("POST", "/objects/missing", 503, "{\"error\":\"read-only\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_missing, &ctx, &out, &err, "missing", keys, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing: read-only (HTTP 503)"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
}

static void test_list(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    /* The last line has no newline; an empty line is skipped. */
    fake_on("GET", "/objects", 200, K1 " 10\n\n" K2 " 0", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, K1 "\n" K2 "\n");
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].query, "state=live");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", "--long", "--garbage",
                            "--min-size", "1K", "--max-size", "2", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, K1 " 10\n" K2 " 0\n");
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].query, "state=garbage&min_size=1024&max_size=2");
    free(out);
    free(err);
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "[{\"key\":\"" K1 "\",\"size\":10},{\"key\":\"" K2
                                "\",\"size\":0}]\n");
    free(out);
    free(err);
}

static void test_list_refusals(void)
{
    struct cli_ctx ctx = fake_ctx(true, NULL);
    char *out, *err;
    static char huge[6000];
    memset(huge, 'a', sizeof(huge) - 1);
    fake_reset();
    fake_on("GET", "/objects", 200, huge, 1);
    fake_on("GET", "/objects", 500, "{\"error\":\"boom\"}", 1);
    /* A "line" of 6000 bytes without newline is not a listing. */
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "list: "));
    /* With --json nothing half-made is printed. */
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "boom (HTTP 500)"));
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", "x", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "takes no operands"));
    free(out);
    free(err);
}

/* A balancer's listing that left backends out (X-CAS-Backends-Skipped):
 * printed, but exit 1 with the count on stderr; --json prints nothing
 * half-made; --allow-partial warns and exits 0; 0 is a whole listing. */
static void test_list_incomplete(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on_header("GET", "/objects", 200, K1 " 10\n", "X-CAS-Backends-Skipped: 3");
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, K1 "\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ca-cas: list: the listing is incomplete: the server "
                                       "left 3 backends out (X-CAS-Backends-Skipped: 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--allow-partial"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", "--allow-partial", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, K1 "\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ca-cas: warning: list: the listing is incomplete"));
    free(out);
    free(err);
    ctx.json = true;
    cli_json_errors = true; /* what main() sets for --json */
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", "--garbage", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"error\":\"list: the listing is incomplete"));
    free(out);
    free(err);
    /* Also when the array would have streamed out in pieces (over 64 KiB). */
    static char big[2000 * 44 + 1];
    for (int i = 0; i < 2000; i++)
        memcpy(big + i * 44, K1 " 10\n", 44);
    fake_reset();
    fake_on_header("GET", "/objects", 200, big, "X-CAS-Backends-Skipped: 1");
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "left 1 backend out"));
    free(out);
    free(err);
    fake_reset();
    fake_on_header("GET", "/objects", 200, K1 " 10\n", "X-CAS-Backends-Skipped: 3");
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", "--allow-partial", NULL),
                    CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "[{\"key\":\"" K1 "\",\"size\":10}]\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"warning\":\"list: the listing is incomplete"));
    free(out);
    free(err);
    ctx.json = false;
    cli_json_errors = false;
    /* A count that is not a number still marks the listing incomplete. */
    fake_reset();
    fake_on_header("GET", "/objects", 200, K1 " 10\n", "X-CAS-Backends-Skipped: -1");
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unreadable X-CAS-Backends-Skipped"));
    free(out);
    free(err);
    fake_reset();
    fake_on_header("GET", "/objects", 200, K1 " 10\n", "X-CAS-Backends-Skipped: 0");
    CU_ASSERT_EQUAL(run_cmd(cmd_list, &ctx, &out, &err, "list", NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, K1 "\n");
    CU_ASSERT_STRING_EQUAL(err, "");
    free(out);
    free(err);
}

int main(void)
{
    if (!mkdtemp(dir) || fake_start() < 0)
        return 1;
    capture_init();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("object commands", NULL, NULL);
    CU_add_test(s, "put stdin: the server's key checked", test_put_stream_key_checked);
    CU_add_test(s, "put files: twice sent once, bad files named, missing fails",
                test_put_files);
    CU_add_test(s, "put: usage errors send nothing", test_put_usage);
    CU_add_test(s, "stat: errors named, server gone", test_stat);
    CU_add_test(s, "rm: --json, server gone", test_rm);
    CU_add_test(s, "missing: FILE, --json, errors", test_missing);
    CU_add_test(s, "list: last line, --long, filters, --json", test_list);
    CU_add_test(s, "list: overlong line, errors, operands", test_list_refusals);
    CU_add_test(s, "list: a listing that left backends out fails unless --allow-partial",
                test_list_incomplete);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    capture_fini();
    fake_stop();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
