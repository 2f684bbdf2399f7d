/*
 * hedge.c - when a read asks a second copy (hedged reads, SPEC "Partial
 * failure"): the hedge delay from recent first-byte latencies, the budget
 * that bounds the extra requests, and which backends count as stalled.
 * Process-wide state, shared by every read (proxy.c); handler layer, below
 * proxy.c, calling nothing of balancerd.
 */
#include "hedge.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Has backend b left a read unanswered for long (hedged reads: a hung
 * process answers nothing) since it last answered anything? */
bool backend_stalled(const struct balancer *bal, struct backend *b, uint64_t now)
{
    uint64_t since = __atomic_load_n(&b->stalled_since_ns, __ATOMIC_RELAXED);
    uint64_t grace = 2 * (uint64_t)(bal->opt.hedge_max_ms ? bal->opt.hedge_max_ms : 50) * 1000000;
    return since && now > since + grace;
}

static pthread_mutex_t hedge_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t hedge_us[HEDGE_SAMPLES];
static size_t hedge_count;
static uint64_t hedge_p95_ns; /* 0 until enough samples */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Records one first-byte latency; the percentile is recomputed every 32. */
void hedge_note(uint64_t ns)
{
    if (pthread_mutex_trylock(&hedge_lock) != 0)
        return; /* busy: one sample fewer changes nothing */
    uint64_t us = ns / 1000;
    hedge_us[hedge_count++ % HEDGE_SAMPLES] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (hedge_count % 32 == 0) {
        size_t n = hedge_count < HEDGE_SAMPLES ? hedge_count : HEDGE_SAMPLES;
        uint32_t sorted[HEDGE_SAMPLES];
        memcpy(sorted, hedge_us, n * sizeof(sorted[0]));
        qsort(sorted, n, sizeof(sorted[0]), cmp_u32);
        __atomic_store_n(&hedge_p95_ns, (uint64_t)sorted[n * 95 / 100] * 1000, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&hedge_lock);
}

/* The hedge budget, in thousandths of a request: each read earns
 * HEDGE_EARN, a hedge spends 1000, at most HEDGE_BURST saved. Hedging can
 * thus never add more than HEDGE_EARN/1000 of the reads in extra backend
 * requests (a saturated backend is made no busier by its own slowness);
 * a hung one is soon read last (backend_stalled) and costs no more. */
static int64_t hedge_tokens = HEDGE_BURST;

void hedge_earn(void)
{
    int64_t t = __atomic_load_n(&hedge_tokens, __ATOMIC_RELAXED);
    if (t < HEDGE_BURST)
        __atomic_add_fetch(&hedge_tokens, HEDGE_EARN, __ATOMIC_RELAXED);
}

bool hedge_spend(void)
{
    int64_t t = __atomic_load_n(&hedge_tokens, __ATOMIC_RELAXED);
    while (t >= 1000)
        if (__atomic_compare_exchange_n(&hedge_tokens, &t, t - 1000, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return true;
    return false;
}

/* The current hedge delay in ns; 0 when hedging is off. */
uint64_t hedge_delay_ns(const struct balancer *bal)
{
    if (!bal->opt.hedge_max_ms)
        return 0;
    uint64_t lo = (uint64_t)bal->opt.hedge_min_ms * 1000000;
    uint64_t hi = (uint64_t)bal->opt.hedge_max_ms * 1000000;
    uint64_t d = __atomic_load_n(&hedge_p95_ns, __ATOMIC_RELAXED);
    if (!d)
        d = hi; /* nothing measured yet */
    return d < lo ? lo : d > hi ? hi : d;
}


void hedge_reset(void)
{
    pthread_mutex_lock(&hedge_lock);
    hedge_count = 0;
    __atomic_store_n(&hedge_p95_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&hedge_tokens, HEDGE_BURST, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&hedge_lock);
}
