/*
 * test_cli_rebalance.c - CUnit suite for ca-cas/rebalance.c (the
 * `rebalance` command; the engine is common/rebalance*.c, test_rebalance.c):
 * bad options are refused before any backend is asked (exit 2), a config
 * that does not load is named, and --dry-run prints the plan without
 * writing or deleting anything, here against one scripted backend
 * (fakesrv.h) that answers GET /ring and GET /objects.
 */
#include "fakesrv.h"

#include <errno.h>

#define K1 "0123456789abcdef0123456789abcdef01234567"
#define K2 "da39a3ee5e6b4b0d3255bfef95601890afd80709"

static char dir[] = "/tmp/cas-test-cli-rebalance-XXXXXX";
static char config[300];

static int write_config(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_usage_refused(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    static const struct {
        const char *a1, *a2, *want;
    } cases[] = {
        {"--max-mbps", "fast", "--max-mbps \"fast\" is not a number of MB/s"},
        {"--max-mbps", "-5", "--max-mbps \"-5\" is not a number of MB/s"},
        {"--concurrency", "0", "--concurrency must be from 1 to 256"},
        {"--concurrency", "257", "--concurrency must be from 1 to 256"},
        {"extra", NULL, "unexpected operand \"extra\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = run_cmd(cmd_rebalance, &ctx, &out, &err, "rebalance", "--config", config,
                         cases[i].a1, cases[i].a2, NULL);
        CU_ASSERT_EQUAL(rc, CLI_EXIT_USAGE);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
        if (!strstr(err, cases[i].want))
            printf("\n  case %zu: %s\n", i, err);
        free(out);
        free(err);
    }
    CU_ASSERT_EQUAL(run_cmd(cmd_rebalance, &ctx, &out, &err, "rebalance", NULL), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--config FILE is required"));
    free(out);
    free(err);
    /* A config that does not load: named, nothing asked. */
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);
    CU_ASSERT_EQUAL_FATAL(write_config(bad, "replicas: many\nbackends: 7\n"), 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_rebalance, &ctx, &out, &err, "rebalance", "-c", bad, NULL),
                    CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "rebalance: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, bad));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(fake.nreqs, 0);
}

/* GET /ring of one node with 64 tokens (a node has 64 at least). */
static const char *ring_json(void)
{
    static char ring[64 * 20 + 128];
    size_t n = (size_t)snprintf(ring, sizeof(ring),
                                "{\"node\":\"0123456789abcdef\",\"hash\":\"sha1\",\"tokens\":[");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(ring + n, sizeof(ring) - n, "%s\"%016llx\"", i ? "," : "",
                              (unsigned long long)(i + 1) << 57);
    snprintf(ring + n, sizeof(ring) - n, "]}");
    return ring;
}

static void test_dry_run_plan(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    fake_reset();
    fake_on("GET", "/ring", 200, ring_json(), 0);
    fake_on("GET", "/objects", 200, K1 " 1024\n" K2 " 0\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_rebalance, &ctx, &out, &err, "rebalance", "--config", config,
                            "--dry-run", NULL),
                    CLI_EXIT_OK);
    /* One backend, one replica: both objects are at home, nothing to do. */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "backends:           1 (0 down)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "objects:            2 (1.00 KiB)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "already at home:    2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "copies to make:     0\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "copies to remove:   0 (0 B)\n"));
    if (!strstr(out, "already at home:    2\n"))
        printf("\n  out: %s\n  err: %s\n", out, err);
    /* Only reads were sent. */
    for (int i = 0; i < fake.nreqs; i++)
        CU_ASSERT_STRING_EQUAL(fake.reqs[i].method, "GET");
    free(out);
    free(err);
}

/* A listing that fails or is cut in the middle of a line is not taken for
 * the backend's content: the backend is left alone, and with no backend
 * listed the pass fails (nothing planned, nothing written). */
static void test_bad_listing_left_alone(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    static const struct {
        unsigned status;
        const char *body, *want;
    } cases[] = {
        {200, K1 " 1024\n" K2, "listing cut in the middle of a line"},
        {500, "{\"error\":\"disk error\"}", "listing"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_reset();
        fake_on("GET", "/ring", 200, ring_json(), 0);
        fake_on("GET", "/objects", cases[i].status, cases[i].body, 0);
        CU_ASSERT_EQUAL(run_cmd(cmd_rebalance, &ctx, &out, &err, "rebalance", "--config", config,
                                NULL),
                        CLI_EXIT_FAIL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "no backend could be listed"));
        if (!strstr(err, "no backend could be listed"))
            printf("\n  err: %s\n", err);
        for (int k = 0; k < fake.nreqs; k++)
            CU_ASSERT_STRING_EQUAL(fake.reqs[k].method, "GET");
        free(out);
        free(err);
    }
}

int main(void)
{
    if (!mkdtemp(dir) || fake_start() < 0)
        return 1;
    capture_init();
    snprintf(config, sizeof(config), "%s/cluster.yaml", dir);
    char text[512];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:0\nreplicas: 1\nmin_replicas: 1\nbackends:\n"
             "  - url: %s\n    failure_domain: a\n",
             fake.url);
    if (write_config(config, text) != 0)
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("cli rebalance", NULL, NULL);
    CU_add_test(s, "bad options and config refused, nothing asked", test_usage_refused);
    CU_add_test(s, "--dry-run prints the plan, reads only", test_dry_run_plan);
    CU_add_test(s, "a failed or cut listing: backend left alone", test_bad_listing_left_alone);
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
