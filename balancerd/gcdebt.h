/*
 * gcdebt.h - unmarks a backend missed during a GC cycle, kept and delivered
 * again before `end` (GC layer, below the touch log).
 */
#ifndef CAS_BAL_GCDEBT_H
#define CAS_BAL_GCDEBT_H

#include "state.h"

#include <stddef.h>
#include <stdint.h>

int gcdebt_init(struct balancer *bal);
void gcdebt_free(struct balancer *bal);
/* Keeps lines ("<hex>\n"...) that gc/mark could not deliver to the backend
 * at url during cycle; a different cycle than the one kept clears the rest. */
void gcdebt_add(struct balancer *bal, uint64_t cycle, const char *url, const char *lines,
                size_t len);
/* A new cycle began (begin re-marks everything): the old debt is void. */
void gcdebt_new_cycle(struct balancer *bal, uint64_t cycle);
/* Delivers the debt of cycle to every backend that owes it. 0 when nothing
 * is left; -EAGAIN (a backend still unreachable) or -EOVERFLOW (too much
 * was missed: the cycle must not be ended) with err set. */
int gcdebt_settle(struct balancer *bal, const struct view *v, uint64_t cycle, char *err,
                  size_t errlen);
/* Bytes of unmarks waiting (for /status and /metrics). */
size_t gcdebt_pending_bytes(struct balancer *bal);
/* The probe's hook (bal->hooks.gc_probe_round): while cycle gc_id is
 * active and debt is waiting, delivers it now rather than only at end. */
void gcdebt_probe_round(struct balancer *bal, uint64_t gc_id);

#endif
