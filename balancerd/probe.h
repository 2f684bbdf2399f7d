/*
 * probe.h - the probe thread: what the balancer learns about its backends
 * (view layer, above view.h).
 *
 * Every probe_interval_ms the probe asks every backend, in parallel, for
 * /status (up, read-only), /gc, /capacity and /compact, and for /ring until
 * it knows the backend's node id and tokens (and again every minute). When
 * tokens change it publishes a new view. What it learns about GC cycles is
 * passed up to the GC layer only through bal->hooks (state.h).
 */
#ifndef CAS_BAL_PROBE_H
#define CAS_BAL_PROBE_H

#include "state.h"

#include <stddef.h>

/* Probes every backend once, now (the probe thread calls it periodically). */
void backend_probe_all(struct balancer *bal);

/* Starts the probe thread. 0 or -errno with err set. */
int probe_start(struct balancer *bal, char *err, size_t errlen);
/* Wakes the probe thread for a round now (after a reload). */
void probe_wake(struct balancer *bal);
/* Stops and joins the probe thread (nothing when it was not started). */
void probe_stop(struct balancer *bal);

#endif
