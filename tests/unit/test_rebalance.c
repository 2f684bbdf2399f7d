/*
 * test_rebalance.c - the pure parts of the rebalance engine
 * (common/rebalance.c): plans under every safety rule, the object table,
 * GET /ring parsing, and the token bucket's pace; and the cluster probe
 * (rb_cluster_probe, rebalance_io.c) against fake backends on loopback
 * ports: who is up, writable, refused, and why, in the control layer's
 * words.
 */
#define _GNU_SOURCE
#include "rebalance.h"
#include "fake_backend.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * n backends, domains from the string (one letter each, e.g. "abcd"),
 * 64 tokens each; up/writable/tokens as given (NULL: all true).
 */
static struct rb_cluster *cluster(const char *domains, unsigned replicas, const bool *up,
                                  const bool *writable, const bool *has_tokens)
{
    size_t n = strlen(domains);
    struct rb_cluster *c = rb_cluster_new(n, replicas, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    rng_state = 42;
    for (size_t i = 0; i < n; i++) {
        uint64_t tok[64];
        for (size_t t = 0; t < 64; t++)
            tok[t] = rng_next();
        char url[64], node[32], dom[2] = {domains[i], 0};
        snprintf(url, sizeof(url), "http://127.0.0.1:%zu", 7000 + i);
        snprintf(node, sizeof(node), "node-%zu", i);
        bool u = up ? up[i] : true;
        bool w = writable ? writable[i] : true;
        bool t = has_tokens ? has_tokens[i] : true;
        CU_ASSERT_EQUAL(rb_cluster_set(c, i, url, dom, node, tok, t ? 64 : 0, u, w, NULL), 0);
    }
    char err[256];
    CU_ASSERT_EQUAL_FATAL(rb_cluster_finish(c, err, sizeof(err)), 0);
    c->algo = cas_hash_by_name("sha1");
    return c;
}

static bool in(const size_t *a, size_t n, size_t x)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == x)
            return true;
    return false;
}

/* Homes are ring_home's; holders exactly at home mean nothing to do. */
static void test_plan_at_home_is_nothing(void)
{
    struct rb_cluster *c = cluster("abcd", 2, NULL, NULL, NULL);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 7;
    for (int k = 0; k < 1000; k++) {
        uint64_t pos = rng_next();
        size_t home[4];
        size_t nh = ring_home(c->ring, pos, 2, home);
        bool holders[4] = {false};
        for (size_t i = 0; i < nh; i++)
            holders[home[i]] = true;
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_EQUAL(p.nhome, 2);
        CU_ASSERT_EQUAL(memcmp(p.home, home, nh * sizeof(size_t)), 0);
        CU_ASSERT_EQUAL(p.ncopy, 0);
        CU_ASSERT_EQUAL(p.nremove, 0);
        CU_ASSERT_TRUE(p.removals_allowed);
        CU_ASSERT_FALSE(p.home_unavailable);
    }
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* A copy outside the home and a missing home copy: copy then remove. */
static void test_plan_copy_and_remove(void)
{
    struct rb_cluster *c = cluster("abcd", 2, NULL, NULL, NULL);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 9;
    for (int k = 0; k < 500; k++) {
        uint64_t pos = rng_next();
        size_t home[4];
        ring_home(c->ring, pos, 2, home);
        bool holders[4] = {false};
        size_t outside[2], no = 0;
        for (size_t i = 0; i < 4; i++)
            if (!in(home, 2, i))
                outside[no++] = i;
        holders[home[0]] = true;
        holders[outside[0]] = true;
        holders[outside[1]] = true;
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_EQUAL(p.ncopy, 1);
        CU_ASSERT_EQUAL(p.copy_to[0], home[1]);
        CU_ASSERT_EQUAL(p.nremove, 2);
        CU_ASSERT_TRUE(in(p.remove, p.nremove, outside[0]));
        CU_ASSERT_TRUE(in(p.remove, p.nremove, outside[1]));
        CU_ASSERT_TRUE(p.removals_allowed);
        /* Never a home copy among the removals. */
        for (size_t i = 0; i < p.nremove; i++)
            CU_ASSERT_FALSE(in(home, 2, p.remove[i]));
    }
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* A home backend down: nothing copied to it, nothing removed. */
static void test_plan_home_down_blocks_removals(void)
{
    bool up[4] = {true, true, true, false};
    struct rb_cluster *c = cluster("abcd", 2, up, NULL, NULL);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 11;
    int seen = 0;
    for (int k = 0; k < 1000; k++) {
        uint64_t pos = rng_next();
        size_t home[4];
        ring_home(c->ring, pos, 2, home);
        if (!in(home, 2, 3))
            continue;
        seen++;
        bool holders[4] = {true, true, true, false}; /* 3 is down: not listed */
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_TRUE(p.home_unavailable);
        CU_ASSERT_FALSE(p.removals_allowed);
        CU_ASSERT_FALSE(in(p.copy_to, p.ncopy, 3));
        CU_ASSERT_EQUAL(p.ncopy, 0);
        CU_ASSERT_FALSE(in(p.remove, p.nremove, 3));
    }
    CU_ASSERT(seen > 100);
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* A read-only home: it is not written; holding the object, it counts. */
static void test_plan_read_only_home(void)
{
    bool writable[4] = {false, true, true, true};
    struct rb_cluster *c = cluster("abcd", 2, NULL, writable, NULL);
    CU_ASSERT_TRUE(c->b[0].up);
    CU_ASSERT_FALSE(c->b[0].writable);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 12;
    for (int k = 0; k < 1000; k++) {
        uint64_t pos = rng_next();
        size_t home[4];
        ring_home(c->ring, pos, 2, home);
        if (!in(home, 2, 0))
            continue;
        bool holders[4] = {false};
        for (size_t i = 0; i < 4; i++)
            holders[i] = !in(home, 2, i);
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_TRUE(p.home_unavailable);
        CU_ASSERT_FALSE(p.removals_allowed);
        CU_ASSERT_EQUAL(p.ncopy, 1);
        CU_ASSERT_FALSE(in(p.copy_to, p.ncopy, 0));
        holders[0] = true;
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_FALSE(p.home_unavailable);
        CU_ASSERT_TRUE(p.removals_allowed);
    }
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* A backend whose ring is unknown: homes may be wrong, so no removals. */
static void test_plan_unknown_ring_blocks_removals(void)
{
    bool tokens[4] = {true, true, true, false};
    bool up[4] = {true, true, true, false};
    struct rb_cluster *c = cluster("abcd", 2, up, NULL, tokens);
    CU_ASSERT_FALSE(c->complete);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 13;
    for (int k = 0; k < 200; k++) {
        uint64_t pos = rng_next();
        bool holders[4] = {true, true, true, false};
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_EQUAL(p.nhome, 2);
        CU_ASSERT_FALSE(in(p.home, p.nhome, 3));
        CU_ASSERT_EQUAL(p.nremove, 1);
        CU_ASSERT_FALSE(p.removals_allowed);
    }
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* Fewer failure domains than replicas: never below replicas by removal. */
static void test_plan_short_home_blocks_removals(void)
{
    struct rb_cluster *c = cluster("aabb", 3, NULL, NULL, NULL);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    bool holders[4] = {true, true, true, true};
    rb_plan_object(c, 12345, holders, &p);
    CU_ASSERT_EQUAL(p.nhome, 2);
    CU_ASSERT_EQUAL(p.nremove, 2);
    CU_ASSERT_FALSE(p.removals_allowed);
    /* Distinct domains in the home. */
    CU_ASSERT_NOT_EQUAL(c->b[p.home[0]].domain[0], c->b[p.home[1]].domain[0]);
    rb_plan_free(&p);
    rb_cluster_free(c);
}

/* A down backend holding a copy outside the home is left alone. */
static void test_plan_down_holder_left_alone(void)
{
    bool up[5] = {true, true, true, true, false};
    struct rb_cluster *c = cluster("abcde", 2, up, NULL, NULL);
    struct rb_plan p;
    CU_ASSERT_EQUAL_FATAL(rb_plan_init(&p, c->n), 0);
    rng_state = 14;
    for (int k = 0; k < 200; k++) {
        uint64_t pos = rng_next();
        bool holders[5] = {true, true, true, true, true};
        rb_plan_object(c, pos, holders, &p);
        CU_ASSERT_FALSE(in(p.remove, p.nremove, 4));
    }
    rb_plan_free(&p);
    rb_cluster_free(c);
}

static void test_objects_table(void)
{
    struct rb_objects *t = rb_objects_new(130); /* three words of holder bits */
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    unsigned char d[20];
    rng_state = 5;
    for (int i = 0; i < 20000; i++) {
        uint64_t a = rng_next(), b = rng_next(), c = rng_next();
        memcpy(d, &a, 8);
        memcpy(d + 8, &b, 8);
        memcpy(d + 16, &c, 4);
        CU_ASSERT_EQUAL(rb_objects_add(t, d, 20, (uint64_t)i, (size_t)(i % 130)), 0);
        CU_ASSERT_EQUAL(rb_objects_add(t, d, 20, (uint64_t)i, 129), 0);
    }
    CU_ASSERT_EQUAL(rb_objects_count(t), 20000);
    rng_state = 5;
    for (size_t i = 0; i < 20000; i++) {
        uint64_t size;
        const unsigned char *got = rb_objects_digest(t, i, &size);
        uint64_t a = rng_next();
        rng_next();
        rng_next();
        CU_ASSERT_EQUAL(memcmp(got, &a, 8), 0);
        CU_ASSERT_EQUAL(size, i);
        for (size_t b = 0; b < 130; b++)
            CU_ASSERT_EQUAL(rb_objects_holds(t, i, b), b == i % 130 || b == 129);
    }
    rb_objects_set_holds(t, 3, 129, false);
    CU_ASSERT_FALSE(rb_objects_holds(t, 3, 129));
    rb_objects_set_holds(t, 3, 64, true);
    CU_ASSERT_TRUE(rb_objects_holds(t, 3, 64));
    CU_ASSERT_EQUAL(rb_objects_add(t, d, 20, 1, 130), -EINVAL);
    rb_objects_free(t);
}

static void test_parse_ring(void)
{
    /* The parser itself is tested in test_ringjson.c; here, that
     * rb_parse_ring hands its result through. */
    char ok[128 + 64 * 20];
    size_t len = (size_t)snprintf(ok, 128,
                                  "{\"node\":\"00000000000000a1\",\"hash\":\"sha256\","
                                  "\"tokens\":[\"00000000000000ff\",\"ffffffffffffffff\"");
    for (int i = 2; i < 64; i++)
        len += (size_t)snprintf(ok + len, sizeof(ok) - len, ",\"%016x\"", i);
    snprintf(ok + len, sizeof(ok) - len, "]}");
    char node[64], err[256];
    const struct cas_hash_algo *algo;
    uint64_t *tok;
    size_t n;
    CU_ASSERT_EQUAL_FATAL(rb_parse_ring(ok, node, sizeof(node), &algo, &tok, &n, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(node, "00000000000000a1");
    CU_ASSERT_STRING_EQUAL(algo->name, "sha256");
    CU_ASSERT_EQUAL(n, 64);
    CU_ASSERT_EQUAL(tok[0], 0xff);
    CU_ASSERT_EQUAL(tok[1], UINT64_MAX);
    CU_ASSERT_EQUAL(tok[2], 2);
    free(tok);
    CU_ASSERT_EQUAL(rb_parse_ring("{\"node\":\"n\",\"hash\":\"md5\",\"tokens\":[\"1\"]}", node,
                                  sizeof(node), &algo, &tok, &n, err, sizeof(err)),
                    -EPROTO);
    CU_ASSERT_EQUAL(rb_parse_ring("{\"node\":\"n\",\"hash\":\"sha1\",\"tokens\":[]}", node,
                                  sizeof(node), &algo, &tok, &n, err, sizeof(err)),
                    -EPROTO);
    CU_ASSERT_EQUAL(rb_parse_ring("{}", node, sizeof(node), &algo, &tok, &n, err, sizeof(err)),
                    -EPROTO);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* 1 MB/s, burst 256 KiB: the burst is free, then 1 MB more is a debt of
 * 1 s less what refilled meanwhile (at most the time the test took). */
static void test_bucket_pace(void)
{
    struct rb_bucket *b = rb_bucket_new(1e6);
    uint64_t t0 = mono_ns();
    CU_ASSERT_EQUAL(rb_bucket_charge(b, 256 * 1024), 0);
    uint64_t wait = 0;
    for (int i = 0; i < 10; i++)
        wait = rb_bucket_charge(b, 100000);
    uint64_t took = mono_ns() - t0;
    CU_ASSERT(wait <= 1000000000ull);
    CU_ASSERT(wait + took >= 1000000000ull - 1000);
    rb_bucket_free(b);
    /* Unlimited: never a wait, however much is taken. */
    b = rb_bucket_new(0);
    CU_ASSERT_EQUAL(rb_bucket_charge(b, 1ull << 40), 0);
    rb_bucket_free(b);
    CU_ASSERT_EQUAL(rb_bucket_charge(NULL, 1), 0);
}

/* ---- the cluster probe ----------------------------------------------- */

/* A whole HTTP answer with a JSON body, in buf. */
static const char *answer(char *buf, size_t len, const char *status, const char *body)
{
    snprintf(buf, len, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
             strlen(body), body);
    return buf;
}

/* GET /ring of node id node (16 hex digits), 64 tokens. */
static const char *ring_answer(char *buf, size_t len, const char *node)
{
    char body[64 * 20 + 128];
    size_t n = (size_t)snprintf(body, sizeof(body),
                                "{\"node\":\"%s\",\"hash\":\"sha1\",\"tokens\":[", node);
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%016llx\"", i ? "," : "",
                              (unsigned long long)(i + 1) << 57 | (unsigned long long)node[14]);
    snprintf(body + n, sizeof(body) - n, "]}");
    return answer(buf, len, "200 OK", body);
}

static int refused_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &al) < 0)
        return 1;
    close(s);
    return ntohs(a.sin_port);
}

static void test_cluster_probe(void)
{
    /* a: up; b: answers 503; c: refuses connections; d: the same node as
     * a; e: up but read-only. */
    static char ring_a[2048], ring_e[2048], busy[256], st_ok[256], st_ro[256];
    ring_answer(ring_a, sizeof(ring_a), "00000000000000a1");
    ring_answer(ring_e, sizeof(ring_e), "00000000000000e1");
    answer(busy, sizeof(busy), "503 Busy", "{\"error\":\"busy\"}");
    answer(st_ok, sizeof(st_ok), "200 OK", "{\"read_only\":false}");
    answer(st_ro, sizeof(st_ro), "200 OK", "{\"read_only\":true}");
    struct fake fa, fb, fd, fe;
    CU_ASSERT_EQUAL_FATAL(fake_start(&fa), 0);
    CU_ASSERT_EQUAL_FATAL(fake_start(&fb), 0);
    CU_ASSERT_EQUAL_FATAL(fake_start(&fd), 0);
    CU_ASSERT_EQUAL_FATAL(fake_start(&fe), 0);
    fake_route(&fa, 0, "/ring", ring_a);
    fake_route(&fa, 1, "/status", st_ok);
    fake_answer(&fb, busy);
    fake_route(&fd, 0, "/ring", ring_a);
    fake_route(&fd, 1, "/status", st_ok);
    fake_route(&fe, 0, "/ring", ring_e);
    fake_route(&fe, 1, "/status", st_ro);
    int pc = refused_port();
    char text[1024], err[1024] = "";
    snprintf(text, sizeof(text),
             "replicas: 1\nmin_replicas: 1\nbackends:\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: a\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: b\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: c\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: d\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: e\n",
             fa.port, fb.port, pc, fd.port, fe.port);
    struct config *cfg = NULL;
    CU_ASSERT_EQUAL_FATAL(config_parse(text, strlen(text), "cluster.yaml", &cfg, err, sizeof(err)),
                          0);
    struct rb_cluster *c = NULL;
    int rc = rb_cluster_probe(cfg, NULL, 2000, &c, err, sizeof(err));
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(c->n, 5);
    CU_ASSERT_TRUE(c->b[0].up && c->b[0].writable);
    CU_ASSERT_EQUAL(c->b[0].ntokens, 64);
    CU_ASSERT_STRING_EQUAL(c->b[0].node, "00000000000000a1");
    char want[256];
    snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/ring: HTTP 503: busy", fb.port);
    CU_ASSERT_FALSE(c->b[1].up);
    CU_ASSERT_STRING_EQUAL(c->b[1].error, want);
    CU_ASSERT_FALSE(c->b[2].up);
    snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/ring: ", pc);
    CU_ASSERT_EQUAL(strncmp(c->b[2].error, want, strlen(want)), 0);
    CU_ASSERT(strlen(c->b[2].error) > strlen(want)); /* and curl's reason */
    CU_ASSERT_FALSE(c->b[3].up);
    CU_ASSERT_PTR_NOT_NULL(strstr(c->b[3].error, "refused: same node 00000000000000a1"));
    CU_ASSERT_EQUAL(c->b[3].ntokens, 0);
    CU_ASSERT_TRUE(c->b[4].up);
    CU_ASSERT_FALSE(c->b[4].writable);
    CU_ASSERT_STRING_EQUAL(c->b[4].error, "read-only");
    CU_ASSERT_FALSE(c->complete); /* b, c, d: tokens unknown */
    /* Only a and e were asked for their status; each /ring once. */
    CU_ASSERT_EQUAL(fake_requests(&fa), 2);
    CU_ASSERT_EQUAL(fake_requests(&fb), 1);
    CU_ASSERT_EQUAL(fake_requests(&fd), 1);
    CU_ASSERT_EQUAL(fake_requests(&fe), 2);
    rb_cluster_free(c);
    config_free(cfg);

    /* Nobody answers: an error naming the first backend and why. */
    snprintf(text, sizeof(text),
             "replicas: 1\nmin_replicas: 1\nbackends:\n"
             "  - url: http://127.0.0.1:%d\n    failure_domain: a\n",
             pc);
    CU_ASSERT_EQUAL_FATAL(config_parse(text, strlen(text), "down.yaml", &cfg, err, sizeof(err)), 0);
    c = NULL;
    CU_ASSERT_EQUAL(rb_cluster_probe(cfg, NULL, 2000, &c, err, sizeof(err)), -EHOSTUNREACH);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(err, "no backend of down.yaml answered (first: http://127.0.0.1:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/ring: "));
    config_free(cfg);
    fake_stop(&fa);
    fake_stop(&fb);
    fake_stop(&fd);
    fake_stop(&fe);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("rebalance", NULL, NULL);
    CU_add_test(s, "plan: at home, nothing to do", test_plan_at_home_is_nothing);
    CU_add_test(s, "plan: copy, then remove outside", test_plan_copy_and_remove);
    CU_add_test(s, "plan: home down blocks removals", test_plan_home_down_blocks_removals);
    CU_add_test(s, "plan: read-only home", test_plan_read_only_home);
    CU_add_test(s, "plan: unknown ring blocks removals", test_plan_unknown_ring_blocks_removals);
    CU_add_test(s, "plan: short home blocks removals", test_plan_short_home_blocks_removals);
    CU_add_test(s, "plan: down holder left alone", test_plan_down_holder_left_alone);
    CU_add_test(s, "object table", test_objects_table);
    CU_add_test(s, "GET /ring parsing", test_parse_ring);
    CU_add_test(s, "token bucket pace", test_bucket_pace);
    CU_add_test(s, "cluster probe: up, down, refused, read-only, and why", test_cluster_probe);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
