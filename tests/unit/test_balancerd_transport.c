/*
 * test_balancerd_transport.c - balancerd's transport layer against a fake
 * backend in this process (a thread on a loopback port that answers each
 * connection with a canned response): the libcurl reader (bstream.c) and
 * the pooled reader (upconn, upstream.c) read the same head alike,
 * X-CAS-GC included (the libcurl path used to drop it, so a balancer in
 * front of https:// backends never learned a GC cycle from an answer);
 * conflicting lengths and transfer codings are marked; small parallel
 * requests (upstream_run) and a fan-out (fanout.c) report each backend's
 * answer by index.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "bstream.h"
#include "fanout.h"
#include "upstream.h"
#include "fake_backend.h"
#include "fake_balancer.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the balancer the transport is called with ------------------------- */

static char dir[] = "/tmp/cas-test-baltransport-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct view *v;
static struct fake fa, fb;
static char url_a[64], url_b[64];

static int setup(void)
{
    if (fake_start(&fa) < 0 || fake_start(&fb) < 0)
        return -1;
    snprintf(url_a, sizeof(url_a), "http://127.0.0.1:%d", fa.port);
    snprintf(url_b, sizeof(url_b), "http://127.0.0.1:%d", fb.port);
    const char *urls[] = {url_a, url_b};
    struct balancer_options o = {.first_byte_timeout_ms = 5000, .io_timeout_ms = 5000};
    return fake_balancer_init(&bal, &v, cfg_path, 2, urls, 2, o, err, sizeof(err));
}

static int teardown(void)
{
    fake_balancer_stop(&bal, v);
    fake_stop(&fa);
    fake_stop(&fb);
    return 0;
}

/* Opens url_a/path through libcurl, reads the whole body into body. */
static int via_bstream(const char *answer, struct bstream_head *head, char *body, size_t max)
{
    fake_answer(&fa, answer);
    char url[128];
    snprintf(url, sizeof(url), "%s/x", url_a);
    struct bstream *s;
    int rc = bstream_open(&bal, v, url, "GET", NULL, &s, head, err, sizeof(err));
    if (rc < 0)
        return rc;
    size_t len = 0;
    ssize_t n;
    while ((n = bstream_read(s, body + len, max - 1 - len, err, sizeof(err))) > 0)
        len += (size_t)n;
    body[len] = '\0';
    bstream_close(s);
    return n < 0 ? (int)n : 0;
}

/* The same through the pooled reader. */
static int via_upconn(const char *answer, struct bstream_head *head)
{
    fake_answer(&fa, answer);
    struct upconn *c;
    int rc = upconn_open(&bal, v, url_a, "/x", "GET", NULL, &c, head, err, sizeof(err));
    if (rc < 0)
        return rc;
    char buf[256];
    while (upconn_read(c, buf, sizeof(buf), err, sizeof(err)) > 0)
        ;
    upconn_close(c);
    return 0;
}

static void test_gc_header_both_readers(void)
{
    const char *a = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-CAS-GC: 42\r\n"
                    "ETag: \"e\"\r\nConnection: close\r\n\r\nhello";
    struct bstream_head h;
    char body[64];
    CU_ASSERT_EQUAL_FATAL(via_bstream(a, &h, body, sizeof(body)), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.gc_id, 42);
    CU_ASSERT_EQUAL(h.content_length, 5);
    CU_ASSERT_STRING_EQUAL(h.etag, "\"e\"");
    CU_ASSERT_STRING_EQUAL(body, "hello");
    memset(&h, 0, sizeof(h));
    CU_ASSERT_EQUAL_FATAL(via_upconn(a, &h), 0);
    CU_ASSERT_EQUAL(h.gc_id, 42);

    /* Not a number, or none: no cycle, on both. */
    const char *junk = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-CAS-GC: 4x2\r\n"
                       "Connection: close\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(via_bstream(junk, &h, body, sizeof(body)), 0);
    CU_ASSERT_EQUAL(h.gc_id, 0);
    CU_ASSERT_EQUAL_FATAL(via_upconn(junk, &h), 0);
    CU_ASSERT_EQUAL(h.gc_id, 0);
    const char *none = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(via_bstream(none, &h, body, sizeof(body)), 0);
    CU_ASSERT_EQUAL(h.gc_id, 0);

    /* A cycle named in a 100 Continue's head is not the answer's. */
    const char *cont = "HTTP/1.1 100 Continue\r\nX-CAS-GC: 9\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(via_bstream(cont, &h, body, sizeof(body)), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.gc_id, 0);
}

static void test_framing_marked(void)
{
    struct bstream_head h;
    char body[64];
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n"
                      "Connection: close\r\n\r\nabcd";
    via_bstream(two, &h, body, sizeof(body)); /* curl itself may refuse it */
    CU_ASSERT(h.dup_length != 0 || h.status == 0);
    CU_ASSERT(via_upconn(two, &h) < 0);
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    CU_ASSERT_EQUAL(via_bstream(chunked, &h, body, sizeof(body)), 0);
    CU_ASSERT_TRUE(h.chunked);
    /* The pooled reader marks it too (the caller refuses such an answer). */
    memset(&h, 0, sizeof(h));
    CU_ASSERT_EQUAL(via_upconn(chunked, &h), 0);
    CU_ASSERT_TRUE(h.chunked);
}

static void test_upstream_run_by_index(void)
{
    fake_answer(&fa, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    fake_answer(&fb, "HTTP/1.1 503 Busy\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
                     "{\"error\":\"full\"}\n");
    struct upstream_call c[2] = {{.method = "GET", .backend = 7}, {.method = "GET", .backend = 9}};
    snprintf(c[0].url, sizeof(c[0].url), "%s/status", url_a);
    snprintf(c[1].url, sizeof(c[1].url), "%s/status", url_b);
    upstream_run(&bal, v, c, 2, 5000);
    CU_ASSERT_EQUAL(c[0].status, 200);
    CU_ASSERT_EQUAL(c[0].backend, 7);
    CU_ASSERT_EQUAL(c[0].resp.len, 2);
    CU_ASSERT_EQUAL(c[1].status, 503);
    CU_ASSERT_EQUAL(c[1].backend, 9);
    char why[256];
    upstream_describe(&c[1], why, sizeof(why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "full"));
    upstream_calls_free(c, 2);
    /* A refused connection is a failed call with a reason, not an answer. */
    struct upstream_call d = {.method = "GET"};
    snprintf(d.url, sizeof(d.url), "http://127.0.0.1:1/status");
    upstream_run(&bal, v, &d, 1, 5000);
    CU_ASSERT_EQUAL(d.status, 0);
    CU_ASSERT(d.err[0] != '\0');
    upstream_calls_free(&d, 1);
}

static void test_fanout_results(void)
{
    fake_answer(&fa, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    fake_answer(&fb, "HTTP/1.1 507 Full\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    char ua[128], ub[128];
    snprintf(ua, sizeof(ua), "%s/obj", url_a);
    snprintf(ub, sizeof(ub), "%s/obj", url_b);
    char *urls[2] = {ua, ub};
    size_t backends[2] = {1, 0};
    struct fanout *f;
    CU_ASSERT_EQUAL_FATAL(fanout_start(&bal, v, "PUT", urls, backends, 2, 10, &f), 0);
    CU_ASSERT_EQUAL(fanout_count(f), 2);
    fanout_feed(f, "0123456789", 10);
    fanout_finish(f);
    long st[2] = {0, 0};
    for (size_t i = 0; i < fanout_count(f); i++) {
        const struct fanout_result *r = fanout_result(f, i);
        CU_ASSERT_FATAL(r->backend < 2);
        st[r->backend] = r->status;
    }
    CU_ASSERT_EQUAL(st[1], 201); /* url_a was given as backend 1 */
    CU_ASSERT_EQUAL(st[0], 507);
    fanout_free(f);
    CU_ASSERT_EQUAL(fake_requests(&fa), 1);
    CU_ASSERT_EQUAL(fake_requests(&fb), 1);
}

/* A fan-out with a quorum of one drops a target that says nothing once the
 * other has answered (after straggler_ms); without a quorum, a target
 * whose backend the probes mark down is dropped too. Neither waits for the
 * 600 s answer timeout: the hung fake never answers, so only the drop ends
 * these fan-outs. */
static void test_fanout_drops_hung_targets(void)
{
    fake_answer(&fa, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    fake_answer(&fb, ""); /* hung */
    char ua[128], ub[128];
    snprintf(ua, sizeof(ua), "%s/obj", url_a);
    snprintf(ub, sizeof(ub), "%s/obj", url_b);
    char *urls[2] = {ua, ub};
    size_t backends[2] = {0, 1};
    struct fanout *f;
    CU_ASSERT_EQUAL_FATAL(fanout_start(&bal, v, "PUT", urls, backends, 2, 4, &f), 0);
    fanout_set_quorum(f, 1, 50);
    fanout_feed(f, "abcd", 4);
    fanout_finish(f);
    for (size_t i = 0; i < fanout_count(f); i++) {
        const struct fanout_result *r = fanout_result(f, i);
        if (r->backend == 0) {
            CU_ASSERT_EQUAL(r->status, 201);
        } else {
            CU_ASSERT_EQUAL(r->status, 0);
            CU_ASSERT(r->err[0] != '\0');
        }
    }
    fanout_free(f);

    /* No quorum (every target needed), but b is known down. */
    pthread_mutex_lock(&bal.lock);
    v->b[1]->probed = true;
    v->b[1]->up = false;
    pthread_mutex_unlock(&bal.lock);
    CU_ASSERT_EQUAL_FATAL(fanout_start(&bal, v, "PUT", urls, backends, 2, 4, &f), 0);
    fanout_feed(f, "abcd", 4);
    fanout_finish(f);
    for (size_t i = 0; i < fanout_count(f); i++) {
        const struct fanout_result *r = fanout_result(f, i);
        if (r->backend == 1) {
            CU_ASSERT_EQUAL(r->status, 0);
            CU_ASSERT_PTR_NOT_NULL(strstr(r->err, "down"));
        } else {
            CU_ASSERT_EQUAL(r->status, 201);
        }
    }
    fanout_free(f);
    pthread_mutex_lock(&bal.lock);
    v->b[1]->probed = false;
    v->b[1]->up = true;
    pthread_mutex_unlock(&bal.lock);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_transport", setup, teardown);
    CU_add_test(s, "X-CAS-GC read by both readers", test_gc_header_both_readers);
    CU_add_test(s, "conflicting lengths and codings marked", test_framing_marked);
    CU_add_test(s, "parallel requests reported by index", test_upstream_run_by_index);
    CU_add_test(s, "fan-out results by backend", test_fanout_results);
    CU_add_test(s, "fan-out drops hung targets", test_fanout_drops_hung_targets);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    curl_global_cleanup();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
