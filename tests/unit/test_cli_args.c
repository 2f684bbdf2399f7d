/*
 * test_cli_args.c - the ca-cas command line (ca-cas/args.c, commands.c,
 * keylist.c): options mixed with operands, global options before or after
 * the command, the server and token resolution, and keys read in batches.
 */
#include "cli.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_options_and_operands(void)
{
    const char *out = NULL;
    uint64_t offset = 0, size = UINT64_MAX;
    bool flag = false;
    double dur = 0;
    const struct cli_opt opts[] = {
        {"output", 'o', CLI_OPT_STRING, &out, "FILE", ""},
        {"offset", 0, CLI_OPT_SIZE, &offset, "N", ""},
        {"size", 0, CLI_OPT_UINT, &size, "N", ""},
        {"long", 'l', CLI_OPT_FLAG, &flag, NULL, ""},
        {"duration", 0, CLI_OPT_DURATION, &dur, "T", ""},
    };
    char *argv[] = {"get", "k1",         "-o", "f",  "--offset=1K", "k2",     "-l", "--size",
                    "10",  "--duration", "2m", "--", "-k3",         "--long", NULL};
    char *pos[16];
    int npos;
    char err[CLI_ERR_MAX];
    CU_ASSERT_EQUAL(cli_args_parse(opts, 5, 14, argv, pos, &npos, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(npos, 4);
    CU_ASSERT_STRING_EQUAL(pos[0], "k1");
    CU_ASSERT_STRING_EQUAL(pos[1], "k2");
    CU_ASSERT_STRING_EQUAL(pos[2], "-k3");
    CU_ASSERT_STRING_EQUAL(pos[3], "--long");
    CU_ASSERT_STRING_EQUAL(out, "f");
    CU_ASSERT_EQUAL(offset, 1024);
    CU_ASSERT_EQUAL(size, 10);
    CU_ASSERT(flag);
    CU_ASSERT_DOUBLE_EQUAL(dur, 120, 1e-9);

    char *argv2[] = {"get", "-oFILE", "-", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 5, 3, argv2, pos, &npos, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(out, "FILE");
    CU_ASSERT_EQUAL(npos, 1);
    CU_ASSERT_STRING_EQUAL(pos[0], "-");
}

static void test_option_errors(void)
{
    uint64_t n = 0;
    bool flag = false;
    const struct cli_opt opts[] = {
        {"count", 'n', CLI_OPT_UINT, &n, "N", ""},
        {"long", 0, CLI_OPT_FLAG, &flag, NULL, ""},
    };
    char *pos[8];
    int npos;
    char err[CLI_ERR_MAX];
    char *a1[] = {"x", "--bogus", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 2, a1, pos, &npos, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--bogus"));
    char *a2[] = {"x", "--count", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 2, a2, pos, &npos, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs a value"));
    char *a3[] = {"x", "--count", "10K", NULL}; /* a count is a plain number */
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 3, a3, pos, &npos, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a number"));
    char *a4[] = {"x", "--long=yes", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 2, a4, pos, &npos, err, sizeof(err)), -EINVAL);
    char *a5[] = {"x", "-z", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 2, a5, pos, &npos, err, sizeof(err)), -EINVAL);
    char *a6[] = {"x", "k", "--help", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 3, a6, pos, &npos, err, sizeof(err)), 1);
    char *a7[] = {"x", "-n", "7", NULL};
    CU_ASSERT_EQUAL(cli_args_parse(opts, 2, 3, a7, pos, &npos, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 7);
}

static void test_globals(void)
{
    struct cli_globals g;
    char *rest[16];
    int nrest;
    char err[CLI_ERR_MAX];
    char *a1[] = {"ca-cas", "--server",       "h:1", "get", "k", "--json", "-o",
                  "f",      "--token-file=t", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(9, a1, &g, rest, &nrest, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(g.server, "h:1");
    CU_ASSERT_STRING_EQUAL(g.token_file, "t");
    CU_ASSERT(g.json);
    CU_ASSERT_EQUAL(nrest, 4);
    CU_ASSERT_STRING_EQUAL(rest[0], "get");
    CU_ASSERT_STRING_EQUAL(rest[1], "k");
    CU_ASSERT_STRING_EQUAL(rest[2], "-o");
    CU_ASSERT_STRING_EQUAL(rest[3], "f");

    /* after "--", even --json is an operand */
    char *a2[] = {"ca-cas", "put", "--", "--json", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(4, a2, &g, rest, &nrest, err, sizeof(err)), 0);
    CU_ASSERT(!g.json);
    CU_ASSERT_EQUAL(nrest, 3);
    CU_ASSERT_STRING_EQUAL(rest[2], "--json");

    char *a3[] = {"ca-cas", "--nope", "put", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(3, a3, &g, rest, &nrest, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--nope"));
    char *a4[] = {"ca-cas", "status", "--server", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(3, a4, &g, rest, &nrest, err, sizeof(err)), -EINVAL);
    char *a5[] = {"ca-cas", "--help", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(2, a5, &g, rest, &nrest, err, sizeof(err)), 0);
    CU_ASSERT(g.help);
    CU_ASSERT_EQUAL(nrest, 0);
    /* a command's own --help stays with the command */
    char *a6[] = {"ca-cas", "put", "--help", NULL};
    CU_ASSERT_EQUAL(cli_globals_parse(3, a6, &g, rest, &nrest, err, sizeof(err)), 0);
    CU_ASSERT(!g.help);
    CU_ASSERT_EQUAL(nrest, 2);
}

static void test_ctx_setup(void)
{
    struct cli_globals g = {0};
    struct cli_ctx ctx;
    char err[CLI_ERR_MAX];
    unsetenv("CA_CAS_SERVER");
    unsetenv("CA_CAS_TOKEN_FILE");
    unsetenv("CAS_TOKEN_FILE");
    CU_ASSERT_EQUAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(ctx.server, CLI_DEFAULT_SERVER);
    CU_ASSERT_PTR_NULL(ctx.token);

    setenv("CA_CAS_SERVER", "10.1.2.3:7000", 1);
    CU_ASSERT_EQUAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(ctx.server, "http://10.1.2.3:7000");
    g.server = "https://other/";
    CU_ASSERT_EQUAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(ctx.server, "https://other"); /* the flag wins */
    unsetenv("CA_CAS_SERVER");

    char path[] = "/tmp/test_cli_tokenXXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "s3cret\n", 7), 7);
    close(fd);
    setenv("CAS_TOKEN_FILE", path, 1);
    CU_ASSERT_EQUAL_FATAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(ctx.token, "s3cret");
    free(ctx.token);
    /* Spaces around a token are refused, not trimmed (common/token.c):
     * the daemons read the same file and must agree on the token. */
    fd = open(path, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "  s3cret \n", 10), 10);
    close(fd);
    ctx.token = NULL;
    CU_ASSERT(cli_ctx_setup(&g, &ctx, err, sizeof(err)) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "space"));
    unsetenv("CAS_TOKEN_FILE");

    g.token_file = "/nonexistent/token";
    CU_ASSERT_EQUAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/token"));
    g.token_file = NULL;
    g.server = "gopher://x";
    CU_ASSERT_EQUAL(cli_ctx_setup(&g, &ctx, err, sizeof(err)), -EINVAL);
    unlink(path);
}

struct batches {
    int calls;
    size_t keys;
    size_t largest;
    char first[64];
};

static int count_batch(void *cls, const char *body, size_t len, size_t count, char *err,
                       size_t errlen)
{
    struct batches *b = cls;
    if (b->calls++ == 0)
        snprintf(b->first, sizeof(b->first), "%.*s", (int)strcspn(body, "\n"), body);
    b->keys += count;
    if (count > b->largest)
        b->largest = count;
    CU_ASSERT_EQUAL(len, count * 41); /* 40 hex digits and a newline each */
    return 0;
}

static void test_keylist_batches(void)
{
    /* 2500 keys, some upper case, some prefixed, some as "<key> <size>",
     * with blank lines between, in batches of 1000 */
    char *text = NULL;
    size_t tlen = 0;
    FILE *w = open_memstream(&text, &tlen);
    for (int i = 0; i < 2500; i++) {
        if (i % 3 == 0)
            fprintf(w, "sha1:%040x\n", i);
        else if (i % 3 == 1)
            fprintf(w, "%040X 123\n\n", i * 7);
        else
            fprintf(w, "  %040x\r\n", i);
    }
    fclose(w);
    struct batches b = {0};
    struct cli_keylist kl;
    char err[CLI_ERR_MAX];
    cli_keylist_init(&kl, 1000, count_batch, &b);
    FILE *r = fmemopen(text, tlen, "r");
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, r, "stdin", err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    fclose(r);
    CU_ASSERT_EQUAL(b.calls, 3);
    CU_ASSERT_EQUAL(b.keys, 2500);
    CU_ASSERT_EQUAL(b.largest, 1000);
    CU_ASSERT_EQUAL(kl.total, 2500);
    CU_ASSERT_STRING_EQUAL(b.first, "0000000000000000000000000000000000000000");
    cli_keylist_free(&kl);
    free(text);

    /* a bad line is named with its number */
    const char *bad = "0000000000000000000000000000000000000000\n\nnot-a-key\n";
    cli_keylist_init(&kl, 1000, count_batch, &b);
    r = fmemopen((void *)bad, strlen(bad), "r");
    CU_ASSERT_EQUAL(cli_keylist_add_stream(&kl, r, "keys.txt", err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "keys.txt line 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not-a-key"));
    fclose(r);
    cli_keylist_free(&kl);

    char *args[] = {"DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "xyz"};
    memset(&b, 0, sizeof(b));
    cli_keylist_init(&kl, 10, count_batch, &b);
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, args, 1, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cli_keylist_flush(&kl, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(b.first, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    CU_ASSERT_EQUAL(cli_keylist_add_args(&kl, args + 1, 1, err, sizeof(err)), -EINVAL);
    cli_keylist_free(&kl);
}

static void test_command_table(void)
{
    CU_ASSERT_PTR_NOT_NULL(cli_command_find("put"));
    CU_ASSERT_PTR_NOT_NULL(cli_command_find("mark-gc"));
    CU_ASSERT_PTR_NOT_NULL(cli_command_find("fsck"));
    CU_ASSERT_PTR_NOT_NULL(cli_command_find("bench"));
    CU_ASSERT_PTR_NULL(cli_command_find("nope"));
    /* every command answers --help with exit 0 and without a server */
    for (const struct cli_command *c = cli_commands; c->name; c++) {
        if (strcmp(c->name, "fsck") == 0 || strcmp(c->name, "rebalance") == 0)
            continue; /* written elsewhere */
        char *argv[] = {(char *)c->name, "--help", NULL};
        struct cli_ctx ctx = {.server = "http://127.0.0.1:1"};
        FILE *saved = stdout;
        stdout = fopen("/dev/null", "w");
        int rc = c->run(2, argv, &ctx);
        fclose(stdout);
        stdout = saved;
        CU_ASSERT_EQUAL(rc, CLI_EXIT_OK);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("cli_args", NULL, NULL);
    CU_add_test(s, "options and operands", test_options_and_operands);
    CU_add_test(s, "option errors", test_option_errors);
    CU_add_test(s, "global options", test_globals);
    CU_add_test(s, "server and token", test_ctx_setup);
    CU_add_test(s, "keys in batches", test_keylist_batches);
    CU_add_test(s, "command table", test_command_table);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
