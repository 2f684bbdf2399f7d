/*
 * antientropy.h - the balancer's background rebalance (anti-entropy).
 *
 * With `anti_entropy: {interval: 1h, max_mbps: 20}` in the config, a
 * thread runs the rebalance engine (common/rebalance.h, the same code and
 * safety rules as `ca-cas rebalance`) over the balancer's current view, one
 * pass every `interval` (start to start; a pass longer than that is
 * followed by the next at once). Without the section it stays idle; a
 * SIGHUP that adds or removes it takes effect at the next check (within a
 * second). One balancer per cluster should have it on: two would only
 * double the listing work (they are safe together).
 *
 * Handler layer (beside proxy.c and cluster.c): it reads the view and runs
 * common/rebalance; balancer.c starts and stops it.
 */
#ifndef CAS_ANTIENTROPY_H
#define CAS_ANTIENTROPY_H

#include "buf.h"
#include "json.h"
#include "state.h"

#define AE_CONCURRENCY 2
#define AE_DEFAULT_MAX_MBPS 20.0

int antientropy_start(struct balancer *bal, char *err, size_t errlen);
/* Cuts a pass in progress and joins the thread. */
void antientropy_stop(struct balancer *bal);
/* The "anti_entropy" member of /status (a key and an object). */
void antientropy_status_json(struct balancer *bal, struct cas_json *j);
/* The anti-entropy lines of /metrics. */
void antientropy_metrics(struct balancer *bal, struct cas_buf *out);

#endif
