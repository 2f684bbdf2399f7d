/*
 * test_balancerd_gc.c - balancerd's GC layer without a network
 * (balancerd/gctouch.c, gcdebt.c): the touch log records every key read or
 * written and keeps the last GCTOUCH_RECENT_MAX; a cycle learned from a
 * backend's X-CAS-GC (gc_learn) or noticed by the probe's hook unmarks the
 * key and the recent ones everywhere, once per cycle; what a backend known
 * down cannot take is kept as GC debt for that backend and cycle, voided by
 * a new cycle, dropped for a backend no longer configured, kept (-EAGAIN)
 * while its backend is down. Every backend of the view is "known down"
 * (probed, not up), so no request leaves the process.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "buf.h"
#include "gcdebt.h"
#include "gctouch.h"
#include "fake_backend.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balgc-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct view *v;

#define LINE 41 /* a sha1 key's hex and its newline */

static void key_of(unsigned i, struct cas_key *k)
{
    char text[32];
    snprintf(text, sizeof(text), "object %u", i);
    k->algo = cas_hash_by_name("sha1");
    cas_hash_buffer(k->algo, text, strlen(text), k->digest);
}

/* A balancer over three backends the probes found down, with the GC layer
 * set up as balancer_start would, but no thread and no server. */
static int setup(void)
{
    FILE *f = fopen(cfg_path, "w");
    if (!f)
        return -1;
    fputs("replicas: 2\nbackends:\n"
          "  - url: http://127.0.0.1:1\n    failure_domain: a\n"
          "  - url: http://127.0.0.1:2\n    failure_domain: b\n"
          "  - url: http://127.0.0.1:3\n    failure_domain: c\n",
          f);
    fclose(f);
    struct balancer_options o = {.config_path = cfg_path};
    if (balancer_init(&bal, &o, err, sizeof(err)) < 0 || gcdebt_init(&bal) < 0 ||
        gctouch_init(&bal) < 0)
        return -1;
    v = view_get(&bal);
    for (size_t i = 0; i < v->n; i++) {
        v->b[i]->probed = true;
        v->b[i]->up = false;
    }
    return 0;
}

static int teardown(void)
{
    view_put(v);
    balancer_stop(&bal); /* frees the touch log and the debt */
    return 0;
}

static uint64_t touches(void)
{
    return __atomic_load_n(&bal.ctr.gc_touches, __ATOMIC_RELAXED);
}

static void test_touch_log_without_cycle(void)
{
    struct cas_key k1, k2;
    key_of(1, &k1);
    key_of(2, &k2);
    uint64_t t0 = cas_now_ns();
    gc_touch(&bal, v, &k1);
    gc_touch(&bal, v, &k2);
    /* No cycle: recorded, nothing unmarked, nothing owed. */
    CU_ASSERT_EQUAL(touches(), 0);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 0);
    struct cas_buf out;
    cas_buf_init(&out);
    CU_ASSERT_EQUAL(gctouch_recent_lines(&bal, t0, &out), 2);
    char hex[CAS_MAX_HEX + 1], want[2 * LINE + 1];
    cas_key_hex(&k1, hex);
    snprintf(want, sizeof(want), "%s\n", hex);
    cas_key_hex(&k2, hex);
    snprintf(want + LINE, sizeof(want) - LINE, "%s\n", hex);
    CU_ASSERT_EQUAL(out.len, 2 * LINE);
    CU_ASSERT_NSTRING_EQUAL(out.data, want, 2 * LINE);
    cas_buf_free(&out);
    /* Nothing is younger than now. */
    cas_buf_init(&out);
    CU_ASSERT_EQUAL(gctouch_recent_lines(&bal, cas_now_ns() + 1000000000ull, &out), 0);
    CU_ASSERT_EQUAL(out.len, 0);
    cas_buf_free(&out);
    /* Unmarks outside a cycle are not sent, so not owed either. */
    gc_unmark_everywhere(&bal, v, want, 2 * LINE);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 0);
}

static void test_learn_cycle_once(void)
{
    struct cas_key k3;
    key_of(3, &k3);
    /* The log holds objects 1 and 2 (previous test). A backend's answer
     * names cycle 5, unknown here: object 3 is unmarked, then the recent
     * ones (1, 2, 3); every backend is down, so each owes all of it. */
    gc_learn(&bal, v, &k3, 5);
    pthread_mutex_lock(&bal.lock);
    CU_ASSERT_TRUE(bal.gc_active);
    CU_ASSERT_EQUAL(bal.gc_id, 5);
    CU_ASSERT_EQUAL(bal.gc_seen_id, 5);
    pthread_mutex_unlock(&bal.lock);
    CU_ASSERT_EQUAL(touches(), 1);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), (1 + 3) * LINE * 3);
    /* The same cycle again: already known, the touch before the read did
     * the work; nothing more is sent or owed. */
    struct cas_key k1;
    key_of(1, &k1);
    gc_learn(&bal, v, &k1, 5);
    CU_ASSERT_EQUAL(touches(), 1);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), (1 + 3) * LINE * 3);
    /* While the cycle is known, each touch unmarks at once. */
    gc_touch(&bal, v, &k1);
    CU_ASSERT_EQUAL(touches(), 2);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), (2 + 3) * LINE * 3);
}

static void test_debt_settle_and_void(void)
{
    /* The backends are still down: nothing can be delivered, all is kept. */
    size_t owed = gcdebt_pending_bytes(&bal);
    CU_ASSERT(owed > 0);
    err[0] = '\0';
    CU_ASSERT_EQUAL(gcdebt_settle(&bal, v, 5, err, sizeof(err)), -EAGAIN);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "down"));
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), owed);
    /* The probe's round hook tries the same and keeps it too. */
    gcdebt_probe_round(&bal, 5);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), owed);
    /* A new cycle re-marks everything: the old debt is void. */
    gcdebt_new_cycle(&bal, 6);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 0);
    /* Debt of a backend taken out of the config is dropped at settle. */
    gcdebt_add(&bal, 6, "http://127.0.0.1:9", "ab\n", 3);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 3);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal, v, 6, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 0);
    /* Debt added for another cycle than the one kept clears the rest. */
    gcdebt_add(&bal, 6, v->b[0]->url, "ab\n", 3);
    gcdebt_add(&bal, 7, v->b[1]->url, "cd\n", 3);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), 3);
}

static void test_probe_hook_flushes_recent(void)
{
    /* The probe noticed cycle 9 (begun through another balancer): the
     * recent keys go to every backend and the cycle counts as flushed. */
    gcdebt_new_cycle(&bal, 9);
    pthread_mutex_lock(&bal.lock);
    bal.gc_active = true;
    bal.gc_id = 9;
    pthread_mutex_unlock(&bal.lock);
    struct cas_buf out;
    cas_buf_init(&out);
    size_t recent = gctouch_recent_lines(&bal, cas_now_ns() - GCTOUCH_WINDOW_NS, &out);
    cas_buf_free(&out);
    CU_ASSERT(recent >= 3);
    gctouch_cycle_noticed(&bal, v, 9);
    pthread_mutex_lock(&bal.lock);
    CU_ASSERT_EQUAL(bal.gc_seen_id, 9);
    pthread_mutex_unlock(&bal.lock);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal), recent * LINE * 3);
}

static void test_touch_log_keeps_the_last(void)
{
    pthread_mutex_lock(&bal.lock);
    bal.gc_active = false;
    pthread_mutex_unlock(&bal.lock);
    uint64_t t0 = cas_now_ns();
    struct cas_key k;
    for (unsigned i = 0; i < GCTOUCH_RECENT_MAX + 100; i++) {
        key_of(1000 + i, &k);
        gc_touch(&bal, v, &k);
    }
    struct cas_buf out;
    cas_buf_init(&out);
    CU_ASSERT_EQUAL(gctouch_recent_lines(&bal, t0, &out), GCTOUCH_RECENT_MAX);
    /* The oldest 100 were overwritten; the newest is there. */
    char hex[CAS_MAX_HEX + 1];
    key_of(1000, &k);
    cas_key_hex(&k, hex);
    CU_ASSERT_PTR_NULL(memmem(out.data, out.len, hex, strlen(hex)));
    key_of(1000 + GCTOUCH_RECENT_MAX + 99, &k);
    cas_key_hex(&k, hex);
    CU_ASSERT_PTR_NOT_NULL(memmem(out.data, out.len, hex, strlen(hex)));
    cas_buf_free(&out);
}

/* ---- delivery: a second balancer whose backends answer ------------------
 *
 * Two fake backends (fake_backend.h) that the probes have not judged, so
 * gcdebt_settle sends each its debt as one POST /gc/mark: what a backend
 * answers 200 to is paid, anything else is kept for the next try; a debt
 * past GCDEBT_MAX_BYTES (gcdebt.c: 64 MiB) makes the cycle unendable. */

#define GCDEBT_MAX_BYTES (64u * 1024 * 1024) /* as in gcdebt.c */

static struct balancer bal2;
static struct view *v2;
static struct fake fa, fb;
static char cfg2_path[300];

/* Connection: close, or libcurl would keep the connection and the fake's
 * thread would wait on it at teardown. */
static const char ok_answer[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"unmarked\":2}\n";
static const char busy_answer[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\n"
                                  "Connection: close\r\n\r\n{\"error\":\"read-only\"}";

static int setup_delivery(void)
{
    if (fake_start(&fa) < 0 || fake_start(&fb) < 0)
        return -1;
    FILE *f = fopen(cfg2_path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "replicas: 2\nbackends:\n"
            "  - url: http://127.0.0.1:%d\n    failure_domain: a\n"
            "  - url: http://127.0.0.1:%d\n    failure_domain: b\n",
            fa.port, fb.port);
    fclose(f);
    struct balancer_options o = {.config_path = cfg2_path};
    if (balancer_init(&bal2, &o, err, sizeof(err)) < 0 || gcdebt_init(&bal2) < 0)
        return -1;
    v2 = view_get(&bal2);
    return 0;
}

static int teardown_delivery(void)
{
    view_put(v2);
    balancer_stop(&bal2);
    fake_stop(&fa);
    fake_stop(&fb);
    return 0;
}

static void test_settle_pays_what_is_taken(void)
{
    fake_answer(&fa, ok_answer);
    fake_answer(&fb, busy_answer);
    const char *ka = v2->b[0]->url, *kb = v2->b[1]->url;
    gcdebt_new_cycle(&bal2, 20);
    gcdebt_add(&bal2, 20, ka, "aa\nbb\n", 6);
    gcdebt_add(&bal2, 20, ka, "cc\n", 3); /* same backend: one entry, one request */
    gcdebt_add(&bal2, 20, kb, "dd\n", 3);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 12);
    /* a: 200, paid, one POST /gc/mark with the 9 bytes; b: 503, kept */
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 20, err, sizeof(err)), -EAGAIN);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, kb));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "HTTP 503: read-only"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cycle 20"));
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 3);
    CU_ASSERT_EQUAL(fake_requests(&fa), 1);
    CU_ASSERT_EQUAL(fake_requests(&fb), 1);
    pthread_mutex_lock(&fa.lock);
    CU_ASSERT(strncmp(fa.last_head, "POST /gc/mark ", 14) == 0);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(fa.last_head, "Content-Length: 9\r\n"));
    pthread_mutex_unlock(&fa.lock);
    /* b is back: the probe's round delivers the rest without waiting for end */
    fake_answer(&fa, ok_answer);
    fake_answer(&fb, ok_answer);
    gcdebt_probe_round(&bal2, 20);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 0);
    CU_ASSERT_EQUAL(fake_requests(&fa), 0);
    CU_ASSERT_EQUAL(fake_requests(&fb), 1);
    pthread_mutex_lock(&fb.lock);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(fb.last_head, "Content-Length: 3\r\n"));
    pthread_mutex_unlock(&fb.lock);
    /* nothing owed: settle succeeds without a request, probe round too */
    fake_answer(&fa, ok_answer);
    fake_answer(&fb, ok_answer);
    err[0] = 'x';
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 20, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    gcdebt_probe_round(&bal2, 20);
    CU_ASSERT_EQUAL(fake_requests(&fa) + fake_requests(&fb), 0);
}

static void test_unreachable_is_kept(void)
{
    /* A backend that hangs up without answering: no status, kept. */
    fake_answer(&fa, "HTTP/1.1 2");
    gcdebt_add(&bal2, 20, v2->b[0]->url, "ee\n", 3);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 20, err, sizeof(err)), -EAGAIN);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, v2->b[0]->url));
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 3);
    /* Settling for another cycle voids it without a request. */
    fake_answer(&fa, ok_answer);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 21, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 0);
    CU_ASSERT_EQUAL(fake_requests(&fa), 0);
    /* Nothing is kept for cycle 0 (no cycle) or for no bytes. */
    gcdebt_add(&bal2, 0, v2->b[0]->url, "ff\n", 3);
    gcdebt_add(&bal2, 21, v2->b[0]->url, "ff\n", 0);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 0);
}

static void test_overflow_refuses_the_cycle(void)
{
    fake_answer(&fa, ok_answer);
    fake_answer(&fb, ok_answer);
    char *big = malloc(GCDEBT_MAX_BYTES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'a', GCDEBT_MAX_BYTES);
    gcdebt_new_cycle(&bal2, 30);
    /* exactly the bound is still kept */
    gcdebt_add(&bal2, 30, v2->b[0]->url, big, GCDEBT_MAX_BYTES);
    free(big);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), GCDEBT_MAX_BYTES);
    /* one byte more: the cycle can no longer be ended by this balancer */
    gcdebt_add(&bal2, 30, v2->b[1]->url, "b", 1);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), GCDEBT_MAX_BYTES);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 30, err, sizeof(err)), -EOVERFLOW);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "begin a new cycle"));
    CU_ASSERT_EQUAL(fake_requests(&fa) + fake_requests(&fb), 0);
    /* and stays so: delivering later does not make it endable */
    gcdebt_probe_round(&bal2, 30);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 30, err, sizeof(err)), -EOVERFLOW);
    CU_ASSERT_EQUAL(fake_requests(&fa) + fake_requests(&fb), 0);
    /* a new cycle starts clean */
    gcdebt_new_cycle(&bal2, 31);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&bal2), 0);
    gcdebt_add(&bal2, 31, v2->b[1]->url, "b\n", 2);
    CU_ASSERT_EQUAL(gcdebt_settle(&bal2, v2, 31, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(fake_requests(&fb), 1);
}

static void test_without_debt_table(void)
{
    /* A balancer whose GC layer was never set up (or already freed): every
     * call is a no-op, and settle has nothing to refuse. */
    struct balancer none;
    memset(&none, 0, sizeof(none));
    gcdebt_add(&none, 1, "http://x", "a\n", 2);
    gcdebt_new_cycle(&none, 2);
    CU_ASSERT_EQUAL(gcdebt_pending_bytes(&none), 0);
    CU_ASSERT_EQUAL(gcdebt_settle(&none, v2, 2, err, sizeof(err)), 0);
    gcdebt_free(&none);
    CU_ASSERT_PTR_NULL(none.gcdebt);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    /* The tests run in order on one balancer: each starts from the state
     * the one before left. */
    CU_pSuite s = CU_add_suite("balancerd_gc", setup, teardown);
    CU_add_test(s, "touch log without a cycle", test_touch_log_without_cycle);
    CU_add_test(s, "a cycle learned once", test_learn_cycle_once);
    CU_add_test(s, "GC debt kept, voided, dropped", test_debt_settle_and_void);
    CU_add_test(s, "the probe's hook flushes the recent keys", test_probe_hook_flushes_recent);
    CU_add_test(s, "touch log keeps the last keys", test_touch_log_keeps_the_last);
    snprintf(cfg2_path, sizeof(cfg2_path), "%s/balancer2.yaml", dir);
    CU_pSuite s2 = CU_add_suite("balancerd_gcdebt_delivery", setup_delivery, teardown_delivery);
    CU_add_test(s2, "settle pays what a backend takes, keeps the rest",
                test_settle_pays_what_is_taken);
    CU_add_test(s2, "no answer is kept; another cycle voids", test_unreachable_is_kept);
    CU_add_test(s2, "past the bound the cycle is refused", test_overflow_refuses_the_cycle);
    CU_add_test(s2, "no debt table: no-ops", test_without_debt_table);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    unlink(cfg_path);
    unlink(cfg2_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
