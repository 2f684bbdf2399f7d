/*
 * test_config.c - the balancer's YAML config (common/config.c): both
 * spellings, defaults, and an error with file, line and column for each
 * rule.
 */
#include "config.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config *parse_ok(const char *text)
{
    struct config *c = NULL;
    char err[512] = "";
    int rc = config_parse(text, strlen(text), "t.yaml", &c, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "unexpected error: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    return c;
}

/* Parses text expecting an error whose message starts with want_prefix
 * ("t.yaml:LINE:COL:") and contains want_text. */
static void parse_bad(const char *text, const char *want_prefix, const char *want_text)
{
    struct config *c = NULL;
    char err[512] = "";
    int rc = config_parse(text, strlen(text), "t.yaml", &c, err, sizeof(err));
    CU_ASSERT_TRUE(rc < 0);
    CU_ASSERT_PTR_NULL(c);
    bool ok = strncmp(err, want_prefix, strlen(want_prefix)) == 0 && strstr(err, want_text);
    if (!ok)
        fprintf(stderr, "\n  got \"%s\", want \"%s...%s\"\n", err, want_prefix, want_text);
    CU_ASSERT_TRUE(ok);
    config_free(c);
}

/* parse_bad of head followed by tail (the test's backends section). */
static void parse_bad_then(const char *head, const char *tail, const char *want_prefix,
                           const char *want_text)
{
    char text[4096];
    snprintf(text, sizeof(text), "%s%s", head, tail);
    parse_bad(text, want_prefix, want_text);
}

static void test_spec_example(void)
{
    struct config *c = parse_ok("listen: 127.0.0.1:6001\n"
                                "replicas: 3\n"
                                "min_replicas: 2\n"
                                "token_file: /etc/ca-cas/token\n"
                                "backends:\n"
                                "  - url: http://10.0.0.11:6010\n"
                                "    failure_domain: rack-a\n"
                                "  - url: http://10.0.0.12:6010/\n"
                                "    failure_domain: rack-b\n"
                                "  - url: http://10.0.0.13:6010\n"
                                "    failure_domain: rack-c\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(c->listen, "127.0.0.1:6001");
    CU_ASSERT_STRING_EQUAL(c->token_file, "/etc/ca-cas/token");
    CU_ASSERT_EQUAL(c->replicas, 3);
    CU_ASSERT_EQUAL(c->min_replicas, 2);
    CU_ASSERT_EQUAL(c->nbackends, 3);
    CU_ASSERT_EQUAL(c->ndomains, 3);
    CU_ASSERT_STRING_EQUAL(c->backends[1].url, "http://10.0.0.12:6010");
    CU_ASSERT_STRING_EQUAL(c->backends[1].domain, "rack-b");
    CU_ASSERT_EQUAL(c->backends[1].line, 8);
    config_free(c);
}

static void test_cantera_spelling(void)
{
    struct config *c = parse_ok("replicas: 2\n"
                                "backends:\n"
                                "- addr: 10.0.0.11:6010\n"
                                "  failure-domain: 1\n"
                                "- {addr: '10.0.0.12:6010', failure-domain: 2}\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(c->backends[0].url, "http://10.0.0.11:6010");
    CU_ASSERT_STRING_EQUAL(c->backends[0].domain, "1");
    CU_ASSERT_STRING_EQUAL(c->backends[1].domain, "2");
    CU_ASSERT_EQUAL(c->min_replicas, 2); /* defaults to replicas */
    CU_ASSERT_PTR_NULL(c->listen);
    config_free(c);
}

static void test_defaults_and_anti_entropy(void)
{
    struct config *c = parse_ok("backends:\n"
                                "  - {url: 'http://a:1', failure_domain: x}\n"
                                "  - {url: 'http://b:1', failure_domain: y}\n"
                                "anti_entropy:\n"
                                "  interval: 6h\n"
                                "  max_mbps: 12.5\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->replicas, 2); /* 3, capped by two failure domains */
    CU_ASSERT_EQUAL(c->min_replicas, 2);
    CU_ASSERT_EQUAL(c->ae_interval_s, 6 * 3600);
    CU_ASSERT_DOUBLE_EQUAL(c->ae_max_mbps, 12.5, 1e-9);
    config_free(c);
}

/* quarantine_interval: a duration, 15 s when absent; 0 or junk refused. */
static void test_quarantine_interval(void)
{
    struct config *c = parse_ok("backends:\n  - {url: 'http://a:1', failure_domain: x}\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->quarantine_interval_s, 15);
    config_free(c);
    c = parse_ok(
        "quarantine_interval: 2m\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->quarantine_interval_s, 120);
    config_free(c);
    parse_bad("quarantine_interval: 0\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n",
              "t.yaml:1:22:", "quarantine_interval must be a duration");
    parse_bad("quarantine_interval: soon\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n",
              "t.yaml:1:22:", "quarantine_interval must be a duration");
}

/* gc_agree_max_keys: 2^20 when absent; 1 to 2^26; 0, signs and junk refused. */
static void test_gc_agree_max_keys(void)
{
    struct config *c = parse_ok("backends:\n  - {url: 'http://a:1', failure_domain: x}\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->gc_agree_max_keys, 1u << 20);
    config_free(c);
    c = parse_ok("gc_agree_max_keys: 4\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->gc_agree_max_keys, 4);
    config_free(c);
    const char *bad[] = {"0", "-1", "' 4'", "67108865", "4k", "inf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char yaml[200];
        snprintf(yaml, sizeof(yaml),
                 "gc_agree_max_keys: %s\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n",
                 bad[i]);
        parse_bad(yaml, "t.yaml:1:20:", "gc_agree_max_keys must be a whole number from 1 to 67108864");
    }
}

static void test_errors_name_line_and_column(void)
{
    parse_bad("replicas: 1\nbogus: 3\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n",
              "t.yaml:2:1:", "unknown key \"bogus\"");
    parse_bad("replicas: 1\nbackends:\n  - url: http://a:1\n    failure_domain: x\n    port: 3\n",
              "t.yaml:5:5:", "unknown backend key \"port\"");
    parse_bad("replicas: 1\n", "t.yaml:1:1:", "no backends");
    parse_bad("replicas: 1\nbackends: []\n", "t.yaml:2:11:", "backends is empty");
    parse_bad("replicas: 2\nmin_replicas: 3\nbackends:\n"
              "  - {url: 'http://a:1', failure_domain: x}\n"
              "  - {url: 'http://b:1', failure_domain: y}\n"
              "  - {url: 'http://c:1', failure_domain: z}\n",
              "t.yaml:2:15:", "min_replicas (3) is more than replicas (2)");
    parse_bad("replicas: 3\nbackends:\n"
              "  - {url: 'http://a:1', failure_domain: x}\n"
              "  - {url: 'http://b:1', failure_domain: x}\n"
              "  - {url: 'http://c:1', failure_domain: y}\n",
              "t.yaml:1:11:", "only 2 failure domains");
    parse_bad("replicas: 1\nbackends:\n"
              "  - {url: 'http://a:1', failure_domain: x}\n"
              "  - {url: 'http://a:1/', failure_domain: y}\n",
              "t.yaml:4:5:", "duplicate backend http://a:1 (first at line 3)");
    parse_bad("replicas: 1\nbackends:\n"
              "  - {addr: 'a:1', failure-domain: 1}\n"
              "  - {url: 'http://a:1', failure_domain: 2}\n",
              "t.yaml:4:5:", "duplicate backend");
    parse_bad("replicas: three\nbackends:\n  - {url: 'http://a:1', failure_domain: x}\n",
              "t.yaml:1:11:", "whole number");
    parse_bad("backends:\n  - {url: 'ftp://a:1', failure_domain: x}\n", "t.yaml:2:11:",
              "not of the form http://host:port");
    parse_bad("backends:\n  - {url: 'http://a:1'}\n", "t.yaml:2:5:", "no failure_domain");
    parse_bad("backends:\n  - failure_domain: x\n", "t.yaml:2:5:", "no url");
    parse_bad("backends:\n  - {url: 'http://a:1', failure_domain: x}\nanti_entropy: {every: 3}\n",
              "t.yaml:3:16:", "unknown anti_entropy key");
    parse_bad("backends: [\n", "t.yaml:2:1:", "");
    parse_bad("- a\n- b\n", "t.yaml:1:1:", "must be a mapping");
}

/* Numbers in a config go through common/num.c: no sign, space, overflow,
 * inf or nan (max_mbps: inf made GET /status print invalid JSON). */
static void test_numbers_strict(void)
{
    const char *be = "backends:\n  - {url: 'http://a:1', failure_domain: x}\n";
    const char *bad_mbps[] = {"inf", "nan",  "-inf", ".inf", "1e400", "-5",
                              "0",   "' 5'", "'5 '", "+5",   "0x10",  NULL};
    for (int i = 0; bad_mbps[i]; i++) {
        char text[256];
        snprintf(text, sizeof(text), "%santi_entropy:\n  max_mbps: %s\n", be, bad_mbps[i]);
        parse_bad(text, "t.yaml:4:13:", "max_mbps must be a finite number above 0");
    }
    const char *bad_int[] = {"-1",  "+1",  "' 1'", "'1 '", "18446744073709551617",
                             "1.0", "0x1", NULL};
    for (int i = 0; bad_int[i]; i++) {
        char text[256];
        snprintf(text, sizeof(text), "replicas: %s\n%s", bad_int[i], be);
        parse_bad(text, "t.yaml:1:11:", "whole number");
    }
    const char *bad_dur[] = {"-1h",  "+1h", "' 1h'", "99999999999999999999s",
                             "1.5h", "0h",  "h",     NULL};
    for (int i = 0; bad_dur[i]; i++) {
        char text[256];
        snprintf(text, sizeof(text), "%santi_entropy:\n  interval: %s\n", be, bad_dur[i]);
        parse_bad(text, "t.yaml:4:13:", "duration");
    }
}

/* timeouts: both keys, their defaults, and the errors (a zero, a word, an
 * unknown key), each naming line and column. */
static void test_timeouts(void)
{
    const char *be = "backends:\n  - url: http://h:1\n    failure_domain: a\n";
    char text[512];
    snprintf(text, sizeof(text), "%s", be);
    struct config *c = parse_ok(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->fanout_ms, CONFIG_FANOUT_MS_DEFAULT);
    CU_ASSERT_EQUAL(c->write_straggler_ms, CONFIG_STRAGGLER_MS_DEFAULT);
    CU_ASSERT_EQUAL(c->gc_ms, CONFIG_GC_MS_DEFAULT);
    config_free(c);
    snprintf(text, sizeof(text),
             "timeouts:\n  fanout_ms: 700\n  write_straggler_ms: 300\n  gc_ms: 900\n%s", be);
    c = parse_ok(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->fanout_ms, 700);
    CU_ASSERT_EQUAL(c->write_straggler_ms, 300);
    CU_ASSERT_EQUAL(c->gc_ms, 900);
    config_free(c);
    parse_bad_then("timeouts:\n  fanout_ms: 0\n", be,
                   "t.yaml:2:14:", "timeouts.fanout_ms must be a whole number");
    parse_bad_then("timeouts:\n  write_straggler_ms: soon\n", be,
                   "t.yaml:2:23:", "timeouts.write_straggler_ms");
    parse_bad_then("timeouts:\n  fanout: 5\n", be,
                   "t.yaml:2:3:", "unknown timeouts key \"fanout\"");
    parse_bad_then("timeouts: 5\n", be, "t.yaml:1:11:", "timeouts must be a mapping");
}

static void test_load_file(void)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    const char *text = "backends:\n  - url: http://127.0.0.1:7000\n    failure_domain: a\n"
                       "nope: 1\n";
    CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct config *c = NULL;
    char err[512];
    CU_ASSERT_TRUE(config_load(path, &c, err, sizeof(err)) < 0);
    char want[128];
    snprintf(want, sizeof(want), "%s:4:1:", path);
    CU_ASSERT_EQUAL(strncmp(err, want, strlen(want)), 0);
    unlink(path);
    CU_ASSERT_TRUE(config_load(path, &c, err, sizeof(err)) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
}

/* TLS to https:// backends: paths only (the balancer reads the files). */
static void test_tls_keys(void)
{
    struct config *c = parse_ok("ca_file: /etc/ca-cas/ca.pem\n"
                                "tls_client_cert: /etc/ca-cas/bal.pem\n"
                                "tls_client_key: /etc/ca-cas/bal.key\n"
                                "backends:\n  - {url: 'https://a:1', failure_domain: x}\n");
    if (c) {
        CU_ASSERT_STRING_EQUAL(c->ca_file, "/etc/ca-cas/ca.pem");
        CU_ASSERT_STRING_EQUAL(c->tls_client_cert, "/etc/ca-cas/bal.pem");
        CU_ASSERT_STRING_EQUAL(c->tls_client_key, "/etc/ca-cas/bal.key");
        CU_ASSERT_STRING_EQUAL(c->backends[0].url, "https://a:1");
    }
    config_free(c);
    c = parse_ok("backends:\n  - {url: 'https://a:1', failure_domain: x}\n");
    if (c) {
        CU_ASSERT_PTR_NULL(c->ca_file);
        CU_ASSERT_PTR_NULL(c->tls_client_cert);
        CU_ASSERT_PTR_NULL(c->tls_client_key);
    }
    config_free(c);
    const char *be = "backends:\n  - {url: 'https://a:1', failure_domain: x}\n";
    parse_bad_then(be, "tls_client_cert: /c.pem\n",
                   "t.yaml:3:1:", "tls_client_cert and tls_client_key go together");
    parse_bad_then(be, "tls_client_key: /c.key\n", "t.yaml:3:1:", "go together");
    parse_bad_then(be, "ca_file: ''\n", "t.yaml:3:10:", "ca_file must be a non-empty string");
    parse_bad_then(be, "ca_file: [a]\n", "t.yaml:3:10:", "ca_file must be");
}

/* The shape of the document: each structural mistake refused with a
 * message saying what is wrong where (the file name and position first). */
static void test_structure_errors(void)
{
    static const char B[] = "  - {url: 'http://a:1', failure_domain: x}\n";
    char text[512];
    parse_bad("", "t.yaml", "the config is empty");
    parse_bad("backends:\n  - 7\n", "t.yaml:2:5:", "a backend must be a mapping");
    parse_bad("backends:\n  - {url: [1], failure_domain: x}\n", "t.yaml:2:", "url must be a string");
    parse_bad("backends:\n  - {url: 'http://a:1', addr: 'a:1', failure_domain: x}\n", "t.yaml:2:",
              "both url and addr");
    parse_bad("backends:\n  - {url: 'http://a:1', failure_domain: x, failure_domain: y}\n",
              "t.yaml:2:", "failure_domain twice");
    parse_bad("backends:\n  - {addr: 'nocolon', failure_domain: x}\n", "t.yaml:2:",
              "addr \"nocolon\" is not of the form host:port");
    parse_bad("backends:\n  - {[x]: 1, failure_domain: x}\n", "t.yaml:2:",
              "backend keys must be strings");
    snprintf(text, sizeof(text), "backends:\n%sbackends:\n%s", B, B);
    parse_bad(text, "t.yaml:3:1:", "backends given twice");
    parse_bad_then("[replicas]: 1\nbackends:\n", B, "t.yaml:1:", "keys must be strings");
    parse_bad_then("anti_entropy: 5\nbackends:\n", B,
                   "t.yaml:1:", "anti_entropy must be a mapping");
    /* Any key given twice is refused, not silently the last one. */
    snprintf(text, sizeof(text), "replicas: 1\nbackends:\n%sreplicas: 1\n", B);
    parse_bad(text, "t.yaml:4:1:", "replicas given twice (first at line 1)");
    parse_bad_then("listen: '127.0.0.1:1'\nlisten: '127.0.0.1:2'\nbackends:\n", B,
                   "t.yaml:2:1:", "listen given twice");
    parse_bad_then("timeouts: {gc_ms: 5, gc_ms: 6}\nbackends:\n", B,
                   "t.yaml:1:", "timeouts.gc_ms given twice");
    parse_bad_then("anti_entropy: {interval: 1h, max_mbps: 5, interval: 2h}\nbackends:\n", B,
                   "t.yaml:1:", "anti_entropy.interval given twice");
    /* listen is checked as the server will bind it. */
    parse_bad_then("listen: 127.0.0.1\nbackends:\n", B,
                   "t.yaml:1:9:", "listen: bad listen address \"127.0.0.1\": want ADDR:PORT");
    parse_bad_then("listen: '127.0.0.1:70000'\nbackends:\n", B,
                   "t.yaml:1:9:", "the port must be a number from 0 to 65535");
    /* An anti_entropy section without interval would leave it off. */
    parse_bad_then("anti_entropy:\n  max_mbps: 5\nbackends:\n", B,
                   "t.yaml:2:", "anti_entropy needs an interval");
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "the documented example", test_spec_example);
    CU_add_test(s, "Cantera spelling", test_cantera_spelling);
    CU_add_test(s, "defaults and anti_entropy", test_defaults_and_anti_entropy);
    CU_add_test(s, "quarantine_interval", test_quarantine_interval);
    CU_add_test(s, "gc_agree_max_keys", test_gc_agree_max_keys);
    CU_add_test(s, "errors name line and column", test_errors_name_line_and_column);
    CU_add_test(s, "structure errors", test_structure_errors);
    CU_add_test(s, "numbers are strict", test_numbers_strict);
    CU_add_test(s, "load a file", test_load_file);
    CU_add_test(s, "timeouts", test_timeouts);
    CU_add_test(s, "ca_file, tls_client_cert, tls_client_key", test_tls_keys);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
