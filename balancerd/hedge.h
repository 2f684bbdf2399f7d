/*
 * hedge.h - the numbers behind hedged reads (hedge.c), for proxy.c.
 *
 * The delay is the 95th percentile of recent first-byte latencies (the
 * time from sending a request to having its head; the last HEDGE_SAMPLES,
 * recomputed every 32), clamped to [--hedge-min-ms, --hedge-max-ms]: about
 * one read in twenty asks a second backend while all are healthy, and a
 * hung one costs at most the delay. Before anything is measured the delay
 * is the maximum.
 *
 * The budget is in thousandths of a request: each read earns HEDGE_EARN, a
 * hedge spends 1000, at most HEDGE_BURST saved. Hedging can thus never add
 * more than HEDGE_EARN/1000 of the reads in extra backend requests (a
 * saturated backend is made no busier by its own slowness); a hung one is
 * soon read last (backend_stalled) and costs no more.
 */
#ifndef CAS_BAL_HEDGE_H
#define CAS_BAL_HEDGE_H

#include "state.h"

#include <stdbool.h>
#include <stdint.h>

#define HEDGE_SAMPLES 256
#define HEDGE_EARN 50
#define HEDGE_BURST 64000

/* Has backend b left a read unanswered (b->stalled_since_ns) for longer
 * than twice --hedge-max-ms (50 ms when hedging is off) at now (ns,
 * cas_now_ns clock)? Such a backend is read last. */
bool backend_stalled(const struct balancer *bal, struct backend *b, uint64_t now);
/* Records one first-byte latency in ns (dropped when another thread is
 * recording: one sample fewer changes nothing). */
void hedge_note(uint64_t ns);
/* The current hedge delay in ns; 0 when hedging is off (hedge_max_ms 0). */
uint64_t hedge_delay_ns(const struct balancer *bal);
/* A read earns its share of the budget. */
void hedge_earn(void);
/* Takes one hedge from the budget: false when it is spent. */
bool hedge_spend(void);
/* Forgets the samples and refills the budget (tests). */
void hedge_reset(void);

#endif
