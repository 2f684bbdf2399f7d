/*
 * test_cli_progress.c - CUnit suite for ca-cas/progress.c: the bar is drawn on
 * stderr only when enabled, not in its first 0.3 s, at most every 0.1 s,
 * as one "\r"-led line padded to the terminal width (80 columns when stderr
 * is no terminal), and cleared at the end only if it was drawn. The clock
 * fields of struct cli_progress are set by hand: nothing here sleeps.
 */
#include "cli.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/cas-test-progress-XXXXXX";
static int saved_stderr = -1;

static void capture_begin(void)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    CU_ASSERT_FATAL(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

static char *capture_end(size_t *len)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *buf = calloc(1, 8192);
    *len = fread(buf, 1, 8191, f);
    fclose(f);
    return buf;
}

/* A bar started long enough ago to be drawn, never drawn yet. */
static void start_old(struct cli_progress *p, bool enabled, uint64_t total, bool bytes)
{
    cli_progress_start(p, enabled, "put", total, bytes);
    p->start = cli_now() - 10;
    p->last_draw = 0;
}

static void test_draws_one_padded_line(void)
{
    struct cli_progress p;
    size_t len;
    start_old(&p, true, 1000, false);
    capture_begin();
    cli_progress_set(&p, 250);
    char *out = capture_end(&len);
    CU_ASSERT_TRUE(p.drawn);
    CU_ASSERT(p.last_draw > 0);
    /* "\r" then the line padded (or cut) to 79 columns, no newline. */
    CU_ASSERT_EQUAL(len, 1 + 79);
    CU_ASSERT_EQUAL(out[0], '\r');
    CU_ASSERT_PTR_NULL(strchr(out, '\n'));
    CU_ASSERT_EQUAL(strncmp(out + 1, "put [", 5), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " 25% 250/1000 "));
    free(out);

    /* The end clears the line it drew. */
    capture_begin();
    cli_progress_end(&p);
    out = capture_end(&len);
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT_EQUAL(memcmp(out, "\r\033[K", 4), 0);
    CU_ASSERT_FALSE(p.drawn);
    free(out);

    /* A second end draws nothing. */
    capture_begin();
    cli_progress_end(&p);
    out = capture_end(&len);
    CU_ASSERT_EQUAL(len, 0);
    free(out);
}

static void test_add_accumulates(void)
{
    struct cli_progress p;
    size_t len;
    start_old(&p, true, 0, true);
    capture_begin();
    cli_progress_add(&p, 1024);
    p.last_draw = 0;
    cli_progress_add(&p, 512);
    cli_progress_end(&p);
    char *out = capture_end(&len);
    CU_ASSERT_EQUAL(p.done, 1536);
    /* Unknown total: label, amount, rate; the second drawing shows 1.50 KiB,
     * then the end clears the line. */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\rput 1.00 KiB "));
    char *last = strstr(out, "\rput 1.50 KiB ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT_PTR_NOT_NULL(strstr(last, "/s"));
    CU_ASSERT_EQUAL(memcmp(out + len - 4, "\r\033[K", 4), 0);
    free(out);
}

static void test_not_drawn(void)
{
    struct cli_progress p;
    size_t len;
    capture_begin();
    /* Disabled (stderr not a terminal): counts, never draws. */
    start_old(&p, false, 100, false);
    cli_progress_set(&p, 50);
    CU_ASSERT_EQUAL(p.done, 50);
    CU_ASSERT_FALSE(p.drawn);
    cli_progress_end(&p);
    /* Within its first 0.3 s: no bar for short work. */
    cli_progress_start(&p, true, "get", 100, false);
    p.start = cli_now() + 3600;
    cli_progress_set(&p, 10);
    CU_ASSERT_FALSE(p.drawn);
    cli_progress_end(&p);
    /* Drawn less than 0.1 s ago: not again. */
    start_old(&p, true, 100, false);
    p.last_draw = cli_now() + 3600;
    cli_progress_set(&p, 20);
    CU_ASSERT_FALSE(p.drawn);
    CU_ASSERT_EQUAL(p.done, 20);
    cli_progress_end(&p);
    char *out = capture_end(&len);
    CU_ASSERT_EQUAL(len, 0);
    free(out);
}

static void test_format_edges(void)
{
    struct cli_progress p;
    char out[512];
    /* Done beyond total (a server sent more than announced): 100%, no eta,
     * bar full. */
    cli_progress_start(&p, false, "x", 100, false);
    p.done = 150;
    cli_progress_format(&p, p.start + 1, 79, out, sizeof(out));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "100% 150/100"));
    CU_ASSERT_PTR_NULL(strstr(out, "eta"));
    CU_ASSERT_PTR_NULL(strchr(out, '.'));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "[########"));
    /* Halfway after 10 s: eta 10 s. */
    p.done = 50;
    cli_progress_format(&p, p.start + 10, 79, out, sizeof(out));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " 50% 50/100 5/s eta 10"));
    /* Nothing done yet, no time passed: rate 0, no eta, no division. */
    p.done = 0;
    cli_progress_format(&p, p.start, 79, out, sizeof(out));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "  0% 0/100 0/s"));
    CU_ASSERT_PTR_NULL(strstr(out, "eta"));
    /* Too narrow for a bar: label and figures only. */
    p.done = 50;
    cli_progress_format(&p, p.start + 10, 20, out, sizeof(out));
    CU_ASSERT_PTR_NULL(strchr(out, '['));
    CU_ASSERT_EQUAL(strncmp(out, "x  50%", 6), 0);
    /* Wide terminal: the bar stops at 40 cells. */
    cli_progress_format(&p, p.start + 10, 300, out, sizeof(out));
    char *lb = strchr(out, '['), *rb = strchr(out, ']');
    CU_ASSERT_PTR_NOT_NULL_FATAL(lb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
    CU_ASSERT_EQUAL(rb - lb - 1, 40);
    /* A small out buffer is cut, still terminated. */
    char small[8];
    cli_progress_format(&p, p.start + 10, 79, small, sizeof(small));
    CU_ASSERT_EQUAL(strlen(small), 7);
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
    CU_pSuite s = CU_add_suite("progress", NULL, NULL);
    CU_add_test(s, "drawn as one padded line, cleared at the end", test_draws_one_padded_line);
    CU_add_test(s, "add accumulates", test_add_accumulates);
    CU_add_test(s, "disabled, too early, too soon: not drawn", test_not_drawn);
    CU_add_test(s, "format: past total, eta, zero rate, widths", test_format_edges);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    unlink(path);
    return failed ? 1 : 0;
}
