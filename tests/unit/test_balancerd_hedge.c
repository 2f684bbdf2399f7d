/*
 * test_balancerd_hedge.c - the numbers behind hedged reads
 * (balancerd/hedge.c): the delay is the 95th percentile of the recorded
 * first-byte latencies, recomputed every 32, clamped to [hedge_min_ms,
 * hedge_max_ms] (the maximum before anything is measured; 0 with hedging
 * off); the budget allows HEDGE_BURST/1000 hedges at once and earns one
 * more per 1000/HEDGE_EARN reads; a backend stalled for more than twice
 * hedge_max_ms is read last.
 */
#include "hedge.h"

#include <CUnit/Basic.h>
#include <string.h>

#define MS 1000000ull

static struct balancer bal;

static void notes(unsigned n, uint64_t ns)
{
    for (unsigned i = 0; i < n; i++)
        hedge_note(ns);
}

static void test_delay_clamped_percentile(void)
{
    hedge_reset();
    bal.opt.hedge_min_ms = 2;
    bal.opt.hedge_max_ms = 50;
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 50 * MS); /* nothing measured yet */
    notes(31, 10 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 50 * MS); /* recomputed at 32 only */
    notes(1, 10 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 10 * MS);
    /* 64 samples: the 95th percentile is the 61st smallest. */
    hedge_reset();
    notes(60, 1 * MS);
    notes(4, 40 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 40 * MS);
    hedge_reset();
    notes(61, 1 * MS);
    notes(3, 40 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 2 * MS); /* 1 ms, clamped up to the minimum */
    hedge_reset();
    notes(32, 900 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 50 * MS); /* clamped down to the maximum */
    /* Only the last HEDGE_SAMPLES count. */
    hedge_reset();
    notes(HEDGE_SAMPLES, 30 * MS);
    notes(HEDGE_SAMPLES, 5 * MS);
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 5 * MS);
    /* Hedging off. */
    bal.opt.hedge_max_ms = 0;
    CU_ASSERT_EQUAL(hedge_delay_ns(&bal), 0);
}

static void test_budget(void)
{
    hedge_reset();
    unsigned spent = 0;
    while (hedge_spend() && spent < 1000000)
        spent++;
    CU_ASSERT_EQUAL(spent, HEDGE_BURST / 1000);
    CU_ASSERT_FALSE(hedge_spend());
    for (unsigned i = 0; i < 1000 / HEDGE_EARN - 1; i++)
        hedge_earn();
    CU_ASSERT_FALSE(hedge_spend()); /* one read short of a hedge */
    hedge_earn();
    CU_ASSERT_TRUE(hedge_spend());
    CU_ASSERT_FALSE(hedge_spend());
    /* Earning stops at the burst. */
    for (unsigned i = 0; i < 10 * HEDGE_BURST / HEDGE_EARN; i++)
        hedge_earn();
    spent = 0;
    while (hedge_spend() && spent < 1000000)
        spent++;
    CU_ASSERT(spent <= HEDGE_BURST / 1000 + 1);
    CU_ASSERT(spent >= HEDGE_BURST / 1000);
}

static void test_stalled(void)
{
    struct backend b;
    memset(&b, 0, sizeof(b));
    bal.opt.hedge_max_ms = 50;
    uint64_t now = 10000 * MS;
    CU_ASSERT_FALSE(backend_stalled(&bal, &b, now)); /* never left a read unanswered */
    b.stalled_since_ns = now - 99 * MS;
    CU_ASSERT_FALSE(backend_stalled(&bal, &b, now)); /* within twice the maximum delay */
    b.stalled_since_ns = now - 101 * MS;
    CU_ASSERT_TRUE(backend_stalled(&bal, &b, now));
    bal.opt.hedge_max_ms = 0; /* hedging off: 50 ms stands in */
    CU_ASSERT_TRUE(backend_stalled(&bal, &b, now));
    b.stalled_since_ns = now - 60 * MS;
    CU_ASSERT_FALSE(backend_stalled(&bal, &b, now));
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_hedge", NULL, NULL);
    CU_add_test(s, "delay: clamped 95th percentile", test_delay_clamped_percentile);
    CU_add_test(s, "budget bounds the extra requests", test_budget);
    CU_add_test(s, "stalled backends", test_stalled);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
