/*
 * test_opts.c - options from argv and CAS_* environment variables
 * (common/opts.c): flags, --name=value and --name value, the environment
 * as a fallback with the flag winning, sizes with K/M/G/T and KiB suffixes,
 * bad numbers and unknown options.
 */
#include "num.h"
#include "opts.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *o_dir, *o_listen;
static uint64_t o_max, o_threads;
static bool o_ro;

static const struct cas_opt table[] = {
    {"dir", CAS_OPT_STRING, &o_dir, "PATH", "store directory"},
    {"listen", CAS_OPT_STRING, &o_listen, "ADDR:PORT", "listen address"},
    {"max-object-size", CAS_OPT_SIZE, &o_max, "BYTES", "largest object"},
    {"threads", CAS_OPT_UINT, &o_threads, "N", "worker threads"},
    {"read-only", CAS_OPT_FLAG, &o_ro, NULL, "refuse writes"},
};
#define NOPTS (sizeof(table) / sizeof(table[0]))

static char err[512];

static void reset(void)
{
    o_dir = o_listen = NULL;
    o_max = o_threads = 0;
    o_ro = false;
    err[0] = '\0';
    unsetenv("CAS_DIR");
    unsetenv("CAS_LISTEN");
    unsetenv("CAS_MAX_OBJECT_SIZE");
    unsetenv("CAS_THREADS");
    unsetenv("CAS_READ_ONLY");
}

#define PARSE(...)                                                                                 \
    ({                                                                                             \
        char *argv_[] = {"prog", __VA_ARGS__, NULL};                                               \
        cas_opts_parse(table, NOPTS, (int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_,           \
                       "prog [options]", err, sizeof(err));                                        \
    })

static void test_defaults_untouched(void)
{
    reset();
    o_dir = "default";
    o_max = 7;
    char *argv[] = {"prog", NULL};
    CU_ASSERT_EQUAL(cas_opts_parse(table, NOPTS, 1, argv, "u", err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(o_dir, "default");
    CU_ASSERT_EQUAL(o_max, 7);
    CU_ASSERT_FALSE(o_ro);
}

static void test_flags(void)
{
    reset();
    CU_ASSERT_EQUAL(PARSE("--read-only"), 0);
    CU_ASSERT_TRUE(o_ro);
    reset();
    CU_ASSERT_EQUAL(PARSE("--read-only=1"), 0);
    CU_ASSERT_TRUE(o_ro);
    reset();
    o_ro = true;
    CU_ASSERT_EQUAL(PARSE("--read-only=false"), 0);
    CU_ASSERT_FALSE(o_ro);
    reset();
    CU_ASSERT_EQUAL(PARSE("--read-only=yes"), 0);
    CU_ASSERT_TRUE(o_ro);
    reset();
    CU_ASSERT_EQUAL(PARSE("--read-only=maybe"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "maybe"));
}

static void test_values(void)
{
    reset();
    CU_ASSERT_EQUAL(PARSE("--dir", "/srv/a", "--listen=127.0.0.1:7000", "--max-object-size=1G",
                          "--threads", "16"),
                    0);
    CU_ASSERT_STRING_EQUAL(o_dir, "/srv/a");
    CU_ASSERT_STRING_EQUAL(o_listen, "127.0.0.1:7000");
    CU_ASSERT_EQUAL(o_max, UINT64_C(1) << 30);
    CU_ASSERT_EQUAL(o_threads, 16);
    /* The last occurrence wins; "=" values may contain '='. */
    reset();
    CU_ASSERT_EQUAL(PARSE("--dir=/a", "--dir=/b=c"), 0);
    CU_ASSERT_STRING_EQUAL(o_dir, "/b=c");
    /* An empty value is a value. */
    reset();
    CU_ASSERT_EQUAL(PARSE("--dir="), 0);
    CU_ASSERT_STRING_EQUAL(o_dir, "");
}

static void test_env_fallback(void)
{
    reset();
    setenv("CAS_DIR", "/from/env", 1);
    setenv("CAS_MAX_OBJECT_SIZE", "512MiB", 1);
    setenv("CAS_READ_ONLY", "true", 1);
    setenv("CAS_THREADS", "3", 1);
    char *argv[] = {"prog", NULL};
    CU_ASSERT_EQUAL(cas_opts_parse(table, NOPTS, 1, argv, "u", err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(o_dir, "/from/env");
    CU_ASSERT_EQUAL(o_max, UINT64_C(512) << 20);
    CU_ASSERT_TRUE(o_ro);
    CU_ASSERT_EQUAL(o_threads, 3);
    reset();
}

static void test_flag_wins_over_env(void)
{
    reset();
    setenv("CAS_DIR", "/from/env", 1);
    setenv("CAS_MAX_OBJECT_SIZE", "1T", 1);
    setenv("CAS_READ_ONLY", "1", 1);
    setenv("CAS_LISTEN", "127.0.0.1:1", 1);
    CU_ASSERT_EQUAL(PARSE("--dir", "/from/flag", "--max-object-size=2K", "--read-only=0"), 0);
    CU_ASSERT_STRING_EQUAL(o_dir, "/from/flag");
    CU_ASSERT_EQUAL(o_max, 2048);
    CU_ASSERT_FALSE(o_ro);
    CU_ASSERT_STRING_EQUAL(o_listen, "127.0.0.1:1"); /* not given as a flag */
    reset();
}

static void test_bad_env(void)
{
    reset();
    setenv("CAS_MAX_OBJECT_SIZE", "lots", 1);
    char *argv[] = {"prog", NULL};
    CU_ASSERT_EQUAL(cas_opts_parse(table, NOPTS, 1, argv, "u", err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CAS_MAX_OBJECT_SIZE"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lots"));
    reset();
}

static void test_sizes(void)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"123", 123},
        {"1K", 1024},
        {"1k", 1024},
        {"10M", UINT64_C(10) << 20},
        {"2G", UINT64_C(2) << 30},
        {"3T", UINT64_C(3) << 40},
        {"1KiB", 1024},
        {"512MiB", UINT64_C(512) << 20},
        {"4gib", UINT64_C(4) << 30},
        {"1GB", UINT64_C(1) << 30},
        {"18446744073709551615", UINT64_MAX},
        {"16777215T", UINT64_C(16777215) << 40},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        CU_ASSERT_EQUAL(cas_parse_size(ok[i].s, &v), 0);
        CU_ASSERT_EQUAL(v, ok[i].v);
        if (v != ok[i].v)
            printf("\n  size %s -> %llu\n", ok[i].s, (unsigned long long)v);
    }
    static const char *bad[] = {"",
                                "abc",
                                "-1",
                                "1.5G",
                                "1X",
                                "G",
                                "10 G",
                                " 10",
                                "1KiBx",
                                "1Ki",
                                "1KB2",
                                "0x10",
                                "+5",
                                "1e3",
                                "18446744073709551616",
                                "16777216T",
                                "99999999999999999999K"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 77;
        CU_ASSERT_EQUAL(cas_parse_size(bad[i], &v), -EINVAL);
        CU_ASSERT_EQUAL(v, 77);
        if (v != 77)
            printf("\n  bad size \"%s\" accepted\n", bad[i]);
    }
    uint64_t v;
    CU_ASSERT_EQUAL(cas_parse_size(NULL, &v), -EINVAL);
}

static void test_bad_numbers(void)
{
    reset();
    CU_ASSERT_EQUAL(PARSE("--max-object-size", "big"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "big"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "max-object-size"));
    reset();
    CU_ASSERT_EQUAL(PARSE("--threads=x"), -EINVAL);
    reset();
    CU_ASSERT_EQUAL(PARSE("--threads=-2"), -EINVAL);
    reset();
    CU_ASSERT_EQUAL(PARSE("--threads", "4K"), -EINVAL); /* a count is not a size */
    reset();
    CU_ASSERT_EQUAL(PARSE("--threads="), -EINVAL);
    reset();
    CU_ASSERT_EQUAL(PARSE("--max-object-size="), -EINVAL);
}

/* The strict parser every request, option and config number goes through
 * (common/num.c): no sign, no space, no overflow, no inf/nan/hex. */
static void test_strict_numbers(void)
{
    uint64_t v = 7;
    CU_ASSERT_EQUAL(cas_parse_u64("0", &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(cas_parse_u64("18446744073709551615", &v), 0);
    CU_ASSERT_EQUAL(v, UINT64_MAX);
    CU_ASSERT_EQUAL(cas_parse_u64("007", &v), 0);
    CU_ASSERT_EQUAL(v, 7);
    v = 42;
    CU_ASSERT_EQUAL(cas_parse_u64("18446744073709551616", &v), -ERANGE);
    CU_ASSERT_EQUAL(cas_parse_u64("99999999999999999999999", &v), -ERANGE);
    const char *bad[] = {"",     "-1",  " -1", "+1",  " 1",  "1 ", "1\n",
                         "0x10", "1.0", "1e3", "inf", "nan", "-0", "99999999999999999999x",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        CU_ASSERT_EQUAL(cas_parse_u64(bad[i], &v), -EINVAL);
        CU_ASSERT_EQUAL(cas_parse_id(bad[i], &v), -EINVAL);
    }
    CU_ASSERT_EQUAL(v, 42); /* untouched by every refusal */
    CU_ASSERT_EQUAL(cas_parse_u64(NULL, &v), -EINVAL);
    CU_ASSERT_EQUAL(cas_parse_u64_n("123abc", 3, &v), 0);
    CU_ASSERT_EQUAL(v, 123);
    CU_ASSERT_EQUAL(cas_parse_u64_n("123", 0, &v), -EINVAL);
    CU_ASSERT_EQUAL(cas_parse_id("0", &v), -EINVAL);
    CU_ASSERT_EQUAL(cas_parse_id("1", &v), 0);
    CU_ASSERT_EQUAL(v, 1);

    double d = 0;
    CU_ASSERT_EQUAL(cas_parse_real("12.5", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 12.5, 1e-12);
    CU_ASSERT_EQUAL(cas_parse_real("1e3", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 1000, 1e-9);
    CU_ASSERT_EQUAL(cas_parse_real("2E-1", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 0.2, 1e-12);
    CU_ASSERT_EQUAL(cas_parse_real("1e400", &d), -ERANGE);
    const char *badr[] = {"",   "inf", "INF", "nan",   "infinity", "-1",  "+1",  " 1",
                          "1 ", ".5",  "5.",  "0x1p3", "1e",       "1e+", "1,5", NULL};
    for (int i = 0; badr[i]; i++)
        CU_ASSERT_EQUAL(cas_parse_real(badr[i], &d), -EINVAL);

    bool b = false;
    CU_ASSERT_EQUAL(cas_parse_bit("1", &b), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(cas_parse_bit("0", &b), 0);
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(cas_parse_bit("yes", &b), -EINVAL);
    CU_ASSERT_EQUAL(cas_parse_bit("01", &b), -EINVAL);
    CU_ASSERT_EQUAL(cas_parse_bit("", &b), -EINVAL);
}

/* Options go through the same parser: no sign, space or overflow. */
static void test_options_strict(void)
{
    char *bad[] = {"--threads=+4",
                   "--threads= 4",
                   "--threads=4 ",
                   "--threads=18446744073709551616",
                   "--max-object-size=-1",
                   "--max-object-size= 1G",
                   "--max-object-size=+1G",
                   "--max-object-size=99999999999999999999",
                   "--max-object-size=16384P",
                   NULL};
    for (int i = 0; bad[i]; i++) {
        reset();
        CU_ASSERT_EQUAL(PARSE(bad[i]), -EINVAL);
    }
    reset();
    CU_ASSERT_EQUAL(PARSE("--threads=18446744073709551615"), 0);
    CU_ASSERT_EQUAL(o_threads, UINT64_MAX);
}

static void test_unknown_and_missing(void)
{
    reset();
    CU_ASSERT_EQUAL(PARSE("--frobnicate"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--frobnicate"));
    reset();
    CU_ASSERT_EQUAL(PARSE("--di", "/x"), -EINVAL); /* no prefix matching */
    reset();
    CU_ASSERT_EQUAL(PARSE("--dir-x=/x"), -EINVAL);
    reset();
    CU_ASSERT_EQUAL(PARSE("-d", "/x"), -EINVAL);
    reset();
    CU_ASSERT_EQUAL(PARSE("stray"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stray"));
    reset();
    CU_ASSERT_EQUAL(PARSE("--dir"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dir"));
    /* A flag takes no separate value: the next word is a stray argument. */
    reset();
    CU_ASSERT_EQUAL(PARSE("--read-only", "false"), -EINVAL);
}

static void test_help(void)
{
    reset();
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = PARSE("--dir", "/x", "--help");
    fclose(stdout);
    stdout = saved;
    CU_ASSERT_EQUAL(rc, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    cas_opts_usage(m, table, NOPTS, "prog [options]");
    fclose(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--max-object-size BYTES"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--read-only"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "CAS_"));
    free(buf);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("opts", NULL, NULL);
    CU_add_test(s, "defaults untouched", test_defaults_untouched);
    CU_add_test(s, "flags", test_flags);
    CU_add_test(s, "--x y and --x=y", test_values);
    CU_add_test(s, "environment fallback", test_env_fallback);
    CU_add_test(s, "flag wins over environment", test_flag_wins_over_env);
    CU_add_test(s, "bad environment value", test_bad_env);
    CU_add_test(s, "sizes", test_sizes);
    CU_add_test(s, "bad numbers", test_bad_numbers);
    CU_add_test(s, "strict numbers (common/num.c)", test_strict_numbers);
    CU_add_test(s, "options: no sign, space or overflow", test_options_strict);
    CU_add_test(s, "unknown option, missing value", test_unknown_and_missing);
    CU_add_test(s, "help", test_help);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
