/*
 * test_balancerd_upconn.c - balancerd's pooled reader of object answers
 * (upconn in balancerd/upstream.c) on the network, against fake backends in
 * this process (test_upstream.c checks its head parser alone). Each way a
 * backend can fail before or during an answer ends in an error with a
 * reason, never in a body taken as complete: a URL this reader cannot use,
 * a refused connection, a connection closed before or in the middle of the
 * head, a head too long, more bytes than the answer holds (which would
 * desynchronise a pooled connection), no answer within the first-byte
 * timeout, a body that stops, a read budget spent. A good answer read to
 * its end goes back to the pool and serves the next request. The
 * non-blocking steps of hedged reads (upconn_head_step,
 * upconn_read_nowait) count only a complete head as an answer. Timeouts are
 * 300 ms and every wait is on a backend that will never send more.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "upstream.h"
#include "fake_backend.h"
#include "fake_balancer.h"
#include "fake_staller.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balupconn-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct view *v;
static struct fake fa;
static char url_a[64];

#define TIMEOUT_MS 300

static int setup(void)
{
    if (fake_start(&fa) < 0)
        return -1;
    snprintf(url_a, sizeof(url_a), "http://127.0.0.1:%d", fa.port);
    const char *urls[] = {url_a};
    struct balancer_options o = {.first_byte_timeout_ms = TIMEOUT_MS,
                                 .io_timeout_ms = TIMEOUT_MS,
                                 .connect_timeout_ms = TIMEOUT_MS};
    return fake_balancer_init(&bal, &v, cfg_path, 1, urls, 1, o, err, sizeof(err));
}

static int teardown(void)
{
    fake_balancer_stop(&bal, v);
    fake_stop(&fa);
    return 0;
}

/* upconn_open of GET path at base; -errno, or 0 with *c open. */
static int open_at(const char *base, const char *path, struct upconn **c, struct bstream_head *h)
{
    err[0] = '\0';
    *c = NULL;
    int rc = upconn_open(&bal, v, base, path, "GET", NULL, c, h, err, sizeof(err));
    if (rc < 0)
        CU_ASSERT_PTR_NULL(*c);
    return rc;
}

static void test_urls_it_cannot_use(void)
{
    struct upconn *c;
    struct bstream_head h;
    const char *bad[] = {"https://127.0.0.1:1", "http://127.0.0.1",     "http://[::1",
                         "http://[::1]",        "http://[]:80",         "http://:80",
                         "http://127.0.0.1:",   "http://127.0.0.1:80/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(open_at(bad[i], "/objects/k", &c, &h), -ENOTSUP);
        if (!strstr(err, "not an http:// or https:// backend")) {
            printf("\n  %s: \"%s\"\n", bad[i], err);
            CU_FAIL("message");
        }
    }
    /* Nobody listening: the address named. */
    CU_ASSERT(open_at("http://127.0.0.1:1", "/x", &c, &h) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "connect to 127.0.0.1:1: "));
}

static void test_good_answer_pooled(void)
{
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"k\"\r\n\r\nhello");
    struct upconn *c;
    struct bstream_head h;
    CU_ASSERT_EQUAL_FATAL(open_at(url_a, "/objects/k", &c, &h), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.content_length, 5);
    char body[16];
    size_t len = 0;
    ssize_t n;
    while ((n = upconn_read(c, body + len, sizeof(body) - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT(memcmp(body, "hello", 5) == 0);
    upconn_close(c);
    /* The fake closes every connection after its answer: the pooled one is
     * found closed and replaced once, and the next request still works. */
    CU_ASSERT_EQUAL_FATAL(open_at(url_a, "/objects/k", &c, &h), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    len = 0;
    while ((n = upconn_read(c, body + len, sizeof(body) - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    CU_ASSERT_EQUAL(len, 5);
    upconn_close(c);
}

static void test_bad_answers(void)
{
    struct upconn *c;
    struct bstream_head h;
    /* the connection closed in the middle of the head */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Len");
    CU_ASSERT(open_at(url_a, "/a", &c, &h) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "closed the connection before answering"));
    /* more bytes than the answer holds (a backend that answered twice in
     * one write): the answer is its Content-Length bytes, the rest is
     * dropped with the connection, never handed to the next request */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabcdef");
    CU_ASSERT_EQUAL_FATAL(open_at(url_a, "/b", &c, &h), 0);
    char two[8];
    size_t got = 0;
    ssize_t r;
    while ((r = upconn_read(c, two + got, sizeof(two) - got, err, sizeof(err))) > 0)
        got += (size_t)r;
    CU_ASSERT_EQUAL(r, 0);
    CU_ASSERT_EQUAL(got, 2);
    CU_ASSERT(memcmp(two, "ab", 2) == 0);
    upconn_close(c);
    /* a head that never ends */
    static char huge[256 * 1024];
    size_t off = (size_t)snprintf(huge, sizeof(huge), "HTTP/1.1 200 OK\r\n");
    while (off + 40 < sizeof(huge))
        off += (size_t)snprintf(huge + off, sizeof(huge) - off, "X-Padding: %030zu\r\n", off);
    fake_answer(&fa, huge);
    CU_ASSERT(open_at(url_a, "/c", &c, &h) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "response head too long"));
    /* a malformed head */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab");
    CU_ASSERT(open_at(url_a, "/d", &c, &h) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "malformed response head"));
    /* the body cut short: the bytes that came, then an error */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    CU_ASSERT_EQUAL_FATAL(open_at(url_a, "/e", &c, &h), 0);
    char body[32];
    size_t len = 0;
    ssize_t n;
    while ((n = upconn_read(c, body + len, sizeof(body) - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    CU_ASSERT_EQUAL(len, 3);
    CU_ASSERT(n < 0);
    upconn_close(c);
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

static void test_silence(void)
{
    struct upconn *c;
    struct bstream_head h;
    /* accepted, never answered */
    fake_answer(&fa, "");
    CU_ASSERT_EQUAL(open_at(url_a, "/f", &c, &h), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no response in 300 ms"));
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

    /* half a head, then nothing */
    struct staller st;
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Le"), 0);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    CU_ASSERT_EQUAL(open_at(base, "/g", &c, &h), -ETIMEDOUT);
    CU_ASSERT(strstr(err, "no complete response head in 300 ms") ||
              strstr(err, "no response in 300 ms"));
    staller_stop(&st);

    /* the head and 5 of 100 bytes, then nothing: the I/O timeout, and the
     * read budget (50 ms) when set */
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello"),
                          0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    char body[128];
    CU_ASSERT_EQUAL_FATAL(open_at(base, "/h", &c, &h), 0);
    CU_ASSERT_EQUAL(upconn_read(c, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT_EQUAL(upconn_read(c, body, sizeof(body), err, sizeof(err)), -ETIMEDOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no data for 300 ms"));
    upconn_close(c);
    CU_ASSERT_EQUAL_FATAL(open_at(base, "/i", &c, &h), 0);
    upconn_set_read_budget(c, 50ull * 1000000);
    CU_ASSERT_EQUAL(upconn_read(c, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT_EQUAL(upconn_read(c, body, sizeof(body), err, sizeof(err)), -ETIMEDOUT);
    err[0] = '\0';
    CU_ASSERT(upconn_read(c, body, sizeof(body), err, sizeof(err)) < 0);
    CU_ASSERT(strlen(err) > 0);
    upconn_close(c);
    staller_stop(&st);
}

/* Polls c and steps its head until upconn_head_step gives a result other
 * than 0, or ms pass (then 0). */
static int step_until(struct upconn *c, struct bstream_head *h, int ms)
{
    uint64_t end = cas_now_ns() + (uint64_t)ms * 1000000;
    for (;;) {
        int rc = upconn_head_step(&bal, c, h, err, sizeof(err));
        uint64_t now = cas_now_ns();
        if (rc != 0 || now >= end)
            return rc;
        struct pollfd p = {.fd = upconn_fd(c), .events = POLLIN};
        poll(&p, 1, (int)((end - now) / 1000000) + 1);
    }
}

static struct upconn *start_at(const char *base, const char *path, struct bstream_head *h)
{
    struct upconn *c = NULL;
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    CU_ASSERT_EQUAL(upconn_start(&bal, v, base, path, "GET", NULL, &c, err, sizeof(err)), 0);
    return c;
}

static void test_head_step(void)
{
    struct bstream_head h;
    char base[64], body[128];
    /* the status line alone, then silence: never an answer */
    struct staller st;
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\n"), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    struct upconn *c = start_at(base, "/j", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(step_until(c, &h, 200), 0);
    CU_ASSERT_EQUAL(h.status, 0);
    upconn_abandon(c);
    staller_stop(&st);

    /* a whole head and 5 of 100 bytes, then silence: the head is an
     * answer; the body gives its 5 bytes, then -EAGAIN, never a wait */
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello"),
                          0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    c = start_at(base, "/k", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(step_until(c, &h, 1000), 1);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.content_length, 100);
    CU_ASSERT_EQUAL(upconn_read_nowait(c, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT_EQUAL(upconn_read_nowait(c, body, sizeof(body), err, sizeof(err)), -EAGAIN);
    upconn_abandon(c);
    staller_stop(&st);

    /* a whole head, no body yet: nothing to prefetch; with 5 bytes of
     * body: they are kept for upconn_read */
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    c = start_at(base, "/k2", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(step_until(c, &h, 1000), 1);
    CU_ASSERT_EQUAL(upconn_prefetch_nowait(c, err, sizeof(err)), -EAGAIN);
    upconn_abandon(c);
    staller_stop(&st);
    CU_ASSERT_EQUAL_FATAL(staller_start(&st, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello"),
                          0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", st.port);
    c = start_at(base, "/k3", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(step_until(c, &h, 1000), 1);
    ssize_t pre = -EAGAIN;
    for (int i = 0; i < 100 && pre == -EAGAIN; i++) { /* the body may follow the head */
        struct pollfd p = {.fd = upconn_fd(c), .events = POLLIN};
        if ((pre = upconn_prefetch_nowait(c, err, sizeof(err))) == -EAGAIN)
            poll(&p, 1, 10);
    }
    CU_ASSERT_EQUAL(pre, 5);
    CU_ASSERT_EQUAL(upconn_prefetch_nowait(c, err, sizeof(err)), 5); /* kept, not read */
    CU_ASSERT_EQUAL(upconn_read(c, body, sizeof(body), err, sizeof(err)), 5);
    CU_ASSERT(memcmp(body, "hello", 5) == 0);
    upconn_abandon(c);
    staller_stop(&st);

    /* half a head, then the connection closed: a failure saying so */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Len");
    c = start_at(url_a, "/l", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT(step_until(c, &h, 1000) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "in the middle of the response head"));
    upconn_abandon(c);

    /* a good answer: the head, the body without waiting, then its end */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    c = start_at(url_a, "/m", &h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(step_until(c, &h, 1000), 1);
    size_t len = 0;
    ssize_t n;
    while (len < 5 && (n = upconn_read_nowait(c, body + len, 5 - len, err, sizeof(err))) != 0) {
        if (n == -EAGAIN) {
            struct pollfd p = {.fd = upconn_fd(c), .events = POLLIN};
            poll(&p, 1, 1000);
            continue;
        }
        if (n < 0)
            break;
        len += (size_t)n;
    }
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT(memcmp(body, "hello", 5) == 0);
    CU_ASSERT_EQUAL(upconn_read_nowait(c, body, sizeof(body), err, sizeof(err)), 0);
    upconn_abandon(c); /* not pooled: the fake waits for the close */
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_upconn", setup, teardown);
    CU_add_test(s, "URLs it cannot use, nobody listening", test_urls_it_cannot_use);
    CU_add_test(s, "a good answer, pooled, the next one", test_good_answer_pooled);
    CU_add_test(s, "bad answers: cut, too long, too many bytes", test_bad_answers);
    CU_add_test(s, "silence: no answer, half a head, a body that stops", test_silence);
    CU_add_test(s, "head step: only a whole head is an answer", test_head_step);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    curl_global_cleanup();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
