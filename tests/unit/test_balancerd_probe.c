/*
 * test_balancerd_probe.c - balancerd's probe (balancerd/probe.c) against
 * fake backends in this process (fake_backend.h): one round learns health,
 * read-only, capacity, node ids and tokens (and publishes a view whose ring
 * has them); a GC cycle a backend reports is passed up through the hook
 * bal->hooks.gc_cycle_noticed once, not at every round; a busy backend gets
 * a second chance before it is marked down; a backend whose ring answer is
 * refused, or whose hash is not the cluster's, stays out of the ring.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "fake_backend.h"
#include "probe.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balprobe-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct fake fa, fb;

static char ring_a[4096], ring_b[4096], ring_b256[4096];

static void ring_answer(char *out, size_t cap, const char *node, const char *hash, unsigned seed)
{
    char body[3800];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"node\":\"%s\",\"hash\":\"%s\",\"tokens\":[",
                                node, hash);
    for (unsigned i = 0; i < 64; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%016llx\"", i ? "," : "",
                              (unsigned long long)((0x0400000000000000ull * i) + seed));
    n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
    snprintf(out, cap, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", n,
             body);
}

#define ANSWER(json)                                                                               \
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" json

static int noticed_calls;
static uint64_t noticed_id;
static void on_cycle_noticed(struct balancer *b, const struct view *v, uint64_t id)
{
    (void)v;
    noticed_calls++;
    noticed_id = id;
    pthread_mutex_lock(&b->lock);
    b->gc_seen_id = id;
    pthread_mutex_unlock(&b->lock);
}

static int setup(void)
{
    if (fake_start(&fa) < 0 || fake_start(&fb) < 0)
        return -1;
    ring_answer(ring_a, sizeof(ring_a), "00000000000000a1", "sha1", 1);
    ring_answer(ring_b, sizeof(ring_b), "00000000000000b2", "sha1", 2);
    ring_answer(ring_b256, sizeof(ring_b256), "00000000000000b2", "sha256", 2);
    fake_route(&fa, 0, "/status", ANSWER("{\"read_only\":false}"));
    fake_route(&fa, 1, "/gc", ANSWER("{\"active\":true,\"id\":\"77\",\"objects\":3,\"bytes\":10}"));
    fake_route(&fa, 2, "/capacity", ANSWER("{\"total\":1000,\"available\":600,\"objects\":3}"));
    fake_route(&fa, 3, "/compact", ANSWER("{\"running\":false}"));
    fake_route(&fa, 4, "/ring", ring_a);
    fake_route(&fb, 0, "/status", ANSWER("{\"read_only\":true}"));
    fake_route(&fb, 1, "/gc", ANSWER("{\"active\":true,\"id\":\"77\"}"));
    fake_route(&fb, 2, "/capacity", ANSWER("{\"total\":2000,\"available\":100}"));
    fake_route(&fb, 3, "/compact", ANSWER("{\"running\":true,\"done_bytes\":5,\"total_bytes\":9}"));
    fake_route(&fb, 4, "/ring", ring_b);
    FILE *f = fopen(cfg_path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "replicas: 2\nbackends:\n"
            "  - url: http://127.0.0.1:%d\n    failure_domain: a\n"
            "  - url: http://127.0.0.1:%d\n    failure_domain: b\n",
            fa.port, fb.port);
    fclose(f);
    struct balancer_options o = {.config_path = cfg_path};
    if (balancer_init(&bal, &o, err, sizeof(err)) < 0)
        return -1;
    bal.hooks.gc_cycle_noticed = on_cycle_noticed;
    return 0;
}

static int teardown(void)
{
    balancer_stop(&bal);
    fake_stop(&fa);
    fake_stop(&fb);
    return 0;
}

static void test_first_round(void)
{
    uint64_t gen = bal.view->generation;
    backend_probe_all(&bal);
    struct view *v = view_get(&bal);
    CU_ASSERT(v->generation > gen); /* tokens learned: a new view */
    CU_ASSERT_PTR_EQUAL(v->algo, cas_hash_by_name("sha1"));
    CU_ASSERT_TRUE(v->b[0]->up);
    CU_ASSERT_TRUE(v->b[1]->up);
    CU_ASSERT_FALSE(v->b[0]->read_only);
    CU_ASSERT_TRUE(v->b[1]->read_only);
    CU_ASSERT_STRING_EQUAL(v->b[0]->node, "00000000000000a1");
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 0), 64);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 1), 64);
    CU_ASSERT_EQUAL(v->b[0]->cap.total, 1000);
    CU_ASSERT_EQUAL(v->b[1]->cap.available, 100);
    CU_ASSERT_TRUE(v->b[1]->compact_running);
    CU_ASSERT_EQUAL(v->b[1]->compact_total, 9);
    CU_ASSERT_EQUAL(v->b[0]->gc_objects, 3);
    /* The cycle went up through the hook, once. */
    CU_ASSERT_TRUE(bal.gc_active);
    CU_ASSERT_EQUAL(bal.gc_id, 77);
    CU_ASSERT_EQUAL(noticed_calls, 1);
    CU_ASSERT_EQUAL(noticed_id, 77);
    view_put(v);
    backend_probe_all(&bal);
    CU_ASSERT_EQUAL(noticed_calls, 1);
    /* The cycle ends: no longer active, nothing noticed. */
    fake_route(&fa, 1, "/gc", ANSWER("{\"active\":false}"));
    fake_route(&fb, 1, "/gc", ANSWER("{\"active\":false}"));
    backend_probe_all(&bal);
    CU_ASSERT_FALSE(bal.gc_active);
    CU_ASSERT_EQUAL(noticed_calls, 1);
    /* Without a hook (nothing set), a new cycle is still recorded. */
    bal.hooks.gc_cycle_noticed = NULL;
    fake_route(&fa, 1, "/gc", ANSWER("{\"active\":true,\"id\":\"78\"}"));
    backend_probe_all(&bal);
    CU_ASSERT_TRUE(bal.gc_active);
    CU_ASSERT_EQUAL(bal.gc_id, 78);
    bal.hooks.gc_cycle_noticed = on_cycle_noticed;
}

static void test_second_chance(void)
{
    fake_route(&fa, 0, "/status",
               "HTTP/1.1 500 Busy\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    backend_probe_all(&bal);
    struct view *v = view_get(&bal);
    CU_ASSERT_TRUE(v->b[0]->up); /* one failed probe: still up */
    CU_ASSERT(v->b[0]->last_error[0] != '\0');
    backend_probe_all(&bal);
    CU_ASSERT_FALSE(v->b[0]->up); /* two: down */
    bool down[2];
    backend_known_down(&bal, v, down);
    CU_ASSERT_TRUE(down[0]);
    CU_ASSERT_FALSE(down[1]);
    fake_route(&fa, 0, "/status", ANSWER("{\"read_only\":false}"));
    backend_probe_all(&bal);
    CU_ASSERT_TRUE(v->b[0]->up);
    CU_ASSERT_EQUAL(v->b[0]->last_error[0], '\0');
    view_put(v);
}

/* The ring is asked again only of a backend down, or without tokens, or
 * once a minute: takes f's backend down for two rounds (a second chance
 * first), then up with its /status answer status, asking its ring. */
static void reask_ring(struct fake *f, const char *status)
{
    fake_route(f, 0, "/status",
               "HTTP/1.1 500 Busy\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    backend_probe_all(&bal);
    backend_probe_all(&bal);
    fake_route(f, 0, "/status", status);
    backend_probe_all(&bal);
}

static void test_refused_rings(void)
{
    /* Another hash than the cluster's (the first backend's): refused by
     * name and out of the ring. */
    fake_route(&fb, 4, "/ring", ring_b256);
    reask_ring(&fb, ANSWER("{\"read_only\":true}"));
    struct view *v = view_get(&bal);
    CU_ASSERT_TRUE(v->b[1]->up);
    CU_ASSERT_PTR_NOT_NULL(strstr(v->b[1]->last_error, "refused"));
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 1), 0);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 0), 64);
    view_put(v);
    fake_route(&fb, 4, "/ring", ring_b);
    reask_ring(&fb, ANSWER("{\"read_only\":true}"));
    v = view_get(&bal);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 1), 64);
    view_put(v);
    /* A ring answer that does not parse takes a backend out too. */
    fake_route(&fa, 4, "/ring", ANSWER("{\"node\":\"zz\"}"));
    reask_ring(&fa, ANSWER("{\"read_only\":false}"));
    v = view_get(&bal);
    CU_ASSERT_EQUAL(v->b[0]->ntokens, 0);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 0), 0);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 1), 64); /* b is the cluster now */
    CU_ASSERT_PTR_EQUAL(v->algo, cas_hash_by_name("sha1"));
    view_put(v);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    /* In order, on one balancer: each test starts where the last left. */
    CU_pSuite s = CU_add_suite("balancerd_probe", setup, teardown);
    CU_add_test(s, "a round learns health, tokens, the GC cycle", test_first_round);
    CU_add_test(s, "a busy backend gets a second chance", test_second_chance);
    CU_add_test(s, "refused rings stay out", test_refused_rings);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    curl_global_cleanup();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
