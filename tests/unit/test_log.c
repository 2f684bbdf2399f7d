/*
 * test_log.c - CUnit suite for common/log.c: one line per event on stderr
 * ("<UTC time> <program> <level>: <message>\n"), levels below the minimum
 * dropped, unknown level names refused without changing the level, and an
 * over-long message cut but still one whole line.
 */
#include "log.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/cas-test-log-XXXXXX";
static int saved_stderr = -1;

/* stderr goes to a fresh temp file for each capture. */
static void capture_begin(void)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    CU_ASSERT_FATAL(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_end(size_t *len)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_line_format(void)
{
    cas_log_init("ca-cas-test");
    CU_ASSERT_EQUAL(cas_log_set_level("info"), 0);
    capture_begin();
    log_info("stored %d objects in %s", 3, "/srv/cas");
    log_error("disk full");
    char *out = capture_end(NULL);
    regex_t re;
    CU_ASSERT_EQUAL_FATAL(regcomp(&re,
                                  "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                                  "ca-cas-test info: stored 3 objects in /srv/cas\n"
                                  "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z ca-cas-test error: disk full\n$",
                                  REG_EXTENDED),
                          0);
    CU_ASSERT_EQUAL(regexec(&re, out, 0, NULL, 0), 0);
    regfree(&re);
    free(out);
}

static void test_levels(void)
{
    cas_log_init("t");
    CU_ASSERT_EQUAL(cas_log_set_level("warn"), 0);
    CU_ASSERT_FALSE(cas_log_enabled(CAS_LOG_DEBUG));
    CU_ASSERT_FALSE(cas_log_enabled(CAS_LOG_INFO));
    CU_ASSERT_TRUE(cas_log_enabled(CAS_LOG_WARN));
    CU_ASSERT_TRUE(cas_log_enabled(CAS_LOG_ERROR));
    capture_begin();
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    char *out = capture_end(NULL);
    CU_ASSERT_EQUAL(count_lines(out), 2);
    CU_ASSERT_PTR_NULL(strstr(out, " t debug: "));
    CU_ASSERT_PTR_NULL(strstr(out, " t info: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " t warn: w\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " t error: e\n"));
    free(out);

    CU_ASSERT_EQUAL(cas_log_set_level("debug"), 0);
    CU_ASSERT_TRUE(cas_log_enabled(CAS_LOG_DEBUG));
    capture_begin();
    log_debug("d");
    out = capture_end(NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " t debug: d\n"));
    free(out);
    CU_ASSERT_EQUAL(cas_log_set_level("error"), 0);
    CU_ASSERT_FALSE(cas_log_enabled(CAS_LOG_WARN));
    CU_ASSERT_EQUAL(cas_log_set_level("info"), 0);
}

static void test_bad_level_changes_nothing(void)
{
    CU_ASSERT_EQUAL(cas_log_set_level("warn"), 0);
    const char *bad[] = {"", "WARN", "warning", "info ", "err", "verbose"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(cas_log_set_level(bad[i]), -EINVAL);
        CU_ASSERT_FALSE(cas_log_enabled(CAS_LOG_INFO));
        CU_ASSERT_TRUE(cas_log_enabled(CAS_LOG_WARN));
    }
    CU_ASSERT_EQUAL(cas_log_set_level("info"), 0);
}

static void test_long_message_one_line(void)
{
    cas_log_init("t");
    CU_ASSERT_EQUAL(cas_log_set_level("info"), 0);
    size_t big = 10000;
    char *msg = malloc(big + 1);
    memset(msg, 'x', big);
    msg[big] = '\0';
    capture_begin();
    log_info("%s", msg);
    log_info("after");
    size_t len;
    char *out = capture_end(&len);
    /* Two lines: the long one cut (below 2 KiB) but ending in '\n'. */
    CU_ASSERT_EQUAL(count_lines(out), 2);
    char *nl = strchr(out, '\n');
    CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
    CU_ASSERT((size_t)(nl - out) < 2048);
    CU_ASSERT((size_t)(nl - out) > 2000);
    CU_ASSERT_EQUAL(nl[-1], 'x');
    CU_ASSERT_PTR_NOT_NULL(strstr(nl + 1, " t info: after\n"));
    CU_ASSERT_EQUAL(out[len - 1], '\n');
    free(out);
    free(msg);
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    saved_stderr = dup(STDERR_FILENO);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("log", NULL, NULL);
    CU_add_test(s, "line format", test_line_format);
    CU_add_test(s, "levels", test_levels);
    CU_add_test(s, "unknown level refused, level kept", test_bad_level_changes_nothing);
    CU_add_test(s, "long message cut, one line", test_long_message_one_line);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    unlink(path);
    return failed ? 1 : 0;
}
