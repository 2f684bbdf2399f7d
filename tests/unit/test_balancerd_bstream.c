/*
 * test_balancerd_bstream.c - balancerd/bstream.c, the libcurl reader of a
 * backend's answer, against fake backends in this process: a Range is sent
 * and the Content-Range read back; a body is delivered whole and in order
 * however the reader slices it; a body cut short, a refused connection, a
 * backend that never answers or stops half-way, and a read budget that runs
 * out each end in an error with a reason and never in a complete-looking
 * body. (test_balancerd_transport.c checks the head fields both readers
 * share.) The timeouts are short (the balancer's io/first-byte timeouts are
 * set to 300 ms here) and every wait is on a backend that will never send
 * more, so no test depends on timing luck.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "bstream.h"
#include "fake_backend.h"
#include "fake_balancer.h"
#include "fake_staller.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balbstream-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct view *v;
static struct fake fa;
static char url_a[64];

#define TIMEOUT_MS 300

/* ---- the balancer ------------------------------------------------------- */

static int setup(void)
{
    if (fake_start(&fa) < 0)
        return -1;
    snprintf(url_a, sizeof(url_a), "http://127.0.0.1:%d", fa.port);
    const char *urls[] = {url_a};
    struct balancer_options o = {.first_byte_timeout_ms = TIMEOUT_MS, .io_timeout_ms = TIMEOUT_MS};
    return fake_balancer_init(&bal, &v, cfg_path, 1, urls, 1, o, err, sizeof(err));
}

static int teardown(void)
{
    fake_balancer_stop(&bal, v);
    fake_stop(&fa);
    return 0;
}

static void test_range_sent_content_range_read(void)
{
    fake_answer(&fa, "HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n"
                     "Content-Range: bytes 2-5/10\r\nContent-Type: application/octet-stream\r\n"
                     "Connection: close\r\n\r\ncdef");
    char url[128];
    snprintf(url, sizeof(url), "%s/objects/k", url_a);
    struct bstream *s;
    struct bstream_head h;
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", "bytes=2-5", &s, &h, err, sizeof(err)),
                          0);
    CU_ASSERT_EQUAL(h.status, 206);
    CU_ASSERT_STRING_EQUAL(h.content_range, "bytes 2-5/10");
    CU_ASSERT_STRING_EQUAL(h.content_type, "application/octet-stream");
    CU_ASSERT_EQUAL(h.content_length, 4);
    char body[16];
    size_t len = 0;
    ssize_t n;
    while ((n = bstream_read(s, body + len, sizeof(body) - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT(memcmp(body, "cdef", 4) == 0);
    bstream_close(s);
    pthread_mutex_lock(&fa.lock);
    CU_ASSERT(strncmp(fa.last_head, "GET /objects/k HTTP/1.1\r\n", 25) == 0);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(fa.last_head, "\r\nRange: bytes=2-5\r\n"));
    pthread_mutex_unlock(&fa.lock);
    /* Without a range, none is sent. */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), 0);
    bstream_close(s);
    pthread_mutex_lock(&fa.lock);
    CU_ASSERT_PTR_NULL(strcasestr(fa.last_head, "\r\nRange:"));
    pthread_mutex_unlock(&fa.lock);
}

/* A body four times the reader's buffer, read in odd slices: every byte, in
 * order, then 0. */
static void test_big_body_whole_in_order(void)
{
    const size_t size = 2u << 20;
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", size);
    char *answer = malloc((size_t)hl + size + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(answer);
    memcpy(answer, head, (size_t)hl);
    for (size_t i = 0; i < size; i++)
        answer[hl + i] = (char)('a' + (i * 7 + i / 4093) % 26);
    answer[(size_t)hl + size] = '\0';
    fake_answer(&fa, answer);
    char url[128];
    snprintf(url, sizeof(url), "%s/big", url_a);
    struct bstream *s;
    struct bstream_head h;
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.content_length, (long long)size);
    char *got = malloc(size + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    size_t len = 0;
    ssize_t n;
    size_t slice = 1;
    while (len <= size &&
           (n = bstream_read(s, got + len, slice < size + 1 - len ? slice : size + 1 - len, err,
                             sizeof(err))) > 0) {
        len += (size_t)n;
        slice = slice * 3 % 70001 + 1; /* 1, 4, 13, ... up to 70 KiB */
    }
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(len, size);
    CU_ASSERT(memcmp(got, answer + hl, size) == 0);
    bstream_close(s);
    free(got);
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    free(answer);
}

static void test_body_cut_short(void)
{
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabcde");
    char url[128];
    snprintf(url, sizeof(url), "%s/cut", url_a);
    struct bstream *s;
    struct bstream_head h;
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), 0);
    char body[32];
    size_t len = 0;
    ssize_t n;
    while ((n = bstream_read(s, body + len, sizeof(body) - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    /* the five bytes that came, then an error: never a clean end */
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT_EQUAL(n, -EIO);
    CU_ASSERT(strlen(err) > 0);
    bstream_close(s);
}

static void test_no_answer(void)
{
    struct bstream *s = (struct bstream *)1;
    struct bstream_head h;
    /* nobody listening */
    err[0] = '\0';
    CU_ASSERT_EQUAL(
        bstream_open(&bal, v, "http://127.0.0.1:1/x", "GET", NULL, &s, &h, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(strlen(err) > 0);
    /* a backend that closes without a status line */
    fake_answer(&fa, "\r\n");
    char url[128];
    snprintf(url, sizeof(url), "%s/x", url_a);
    err[0] = '\0';
    CU_ASSERT_EQUAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), -EIO);
    CU_ASSERT(strlen(err) > 0);
    /* one that accepts and never answers: the first-byte timeout */
    fake_answer(&fa, "");
    uint64_t t0 = cas_now_ns();
    CU_ASSERT_EQUAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no data for 300 ms"));
    CU_ASSERT(cas_now_ns() - t0 < 10ull * 1000000000);
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/* A backend that sends the head and 5 of 100 bytes, then nothing. */
static void test_stalled_body(void)
{
    struct staller st;
    CU_ASSERT_EQUAL_FATAL(
        staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-CAS-GC: 12 \r\n\r\nhello"),
        0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", st.port);
    struct bstream *s;
    struct bstream_head h;
    char body[128];
    /* the I/O timeout: no byte for 300 ms */
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.gc_id, 12); /* trailing space ignored */
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no data for 300 ms"));
    bstream_close(s);
    /* the read budget (50 ms, below the I/O timeout) runs out first, and
     * stays spent: the next read fails at once */
    CU_ASSERT_EQUAL_FATAL(bstream_open(&bal, v, url, "GET", NULL, &s, &h, err, sizeof(err)), 0);
    bstream_set_read_budget(s, 50ull * 1000000);
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read deadline"));
    err[0] = '\0';
    CU_ASSERT_EQUAL(bstream_read(s, body, sizeof(body), err, sizeof(err)), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read deadline")); /* not "no data": no new wait */
    bstream_close(s);
    staller_stop(&st);
}

/* GET url_a/path through a bstream; the body into out (NUL-terminated). */
static int get_body(const char *path, char *out, size_t max)
{
    char url[128], e[256];
    snprintf(url, sizeof(url), "%s%s", url_a, path);
    struct bstream *s;
    struct bstream_head h;
    int rc = bstream_open(&bal, v, url, "GET", NULL, &s, &h, e, sizeof(e));
    if (rc < 0)
        return rc;
    size_t len = 0;
    ssize_t n;
    while ((n = bstream_read(s, out + len, max - 1 - len, e, sizeof(e))) > 0)
        len += (size_t)n;
    out[len] = '\0';
    bstream_close(s);
    return n < 0 ? (int)n : 0;
}

static void *two_gets(void *arg)
{
    char(*bodies)[64] = arg;
    if (get_body("/long", bodies[0], sizeof(bodies[0])) < 0 ||
        get_body("/short", bodies[1], sizeof(bodies[1])) < 0)
        return (void *)1;
    return NULL;
}

/* Each thread keeps its multi handle and buffer for its next bstream: a
 * second request on the thread sees none of the first one's bytes, and the
 * cache is freed when the thread exits (the sanitizer build checks). */
static void test_thread_cache(void)
{
    fake_route(&fa, 0, "/long",
               "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
               "a long first answer.");
    fake_route(&fa, 1, "/short",
               "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    for (int round = 0; round < 2; round++) {
        pthread_t t[2];
        char bodies[2][2][64];
        memset(bodies, 0, sizeof(bodies));
        for (int i = 0; i < 2; i++)
            CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, two_gets, bodies[i]), 0);
        for (int i = 0; i < 2; i++) {
            void *rv = (void *)1;
            pthread_join(t[i], &rv);
            CU_ASSERT_PTR_NULL(rv);
            CU_ASSERT_STRING_EQUAL(bodies[i][0], "a long first answer.");
            CU_ASSERT_STRING_EQUAL(bodies[i][1], "x");
        }
    }
    fake_route(&fa, 0, NULL, NULL);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_bstream", setup, teardown);
    CU_add_test(s, "Range sent, Content-Range read", test_range_sent_content_range_read);
    CU_add_test(s, "a big body whole and in order", test_big_body_whole_in_order);
    CU_add_test(s, "a body cut short is an error", test_body_cut_short);
    CU_add_test(s, "no answer: refused, empty, silent", test_no_answer);
    CU_add_test(s, "a body that stalls: I/O timeout, read budget", test_stalled_body);
    CU_add_test(s, "a thread's cache: no leftovers, freed at exit", test_thread_cache);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    curl_global_cleanup();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
