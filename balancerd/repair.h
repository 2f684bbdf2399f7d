/*
 * repair.h - read repair and quarantine repair (repair layer, above the
 * GC layer): copies of an object a backend lacks, made in the background.
 */
#ifndef CAS_BAL_REPAIR_H
#define CAS_BAL_REPAIR_H

#include "state.h"

#include <stddef.h>
#include <stdint.h>

/* Starts the repair worker and the quarantine poller. 0 or -errno. */
int repair_init(struct balancer *bal);
void repair_stop(struct balancer *bal);
/* Queues a copy of key to backend b (by URL); drops it when the queue is
 * full. Never blocks. */
void repair_enqueue(struct balancer *bal, const struct cas_key *key, const char *url);
size_t repair_queue_length(struct balancer *bal);
/* Quarantine polls done and quarantined copies they found (for /metrics). */
void repair_quarantine_stats(struct balancer *bal, uint64_t *polls, uint64_t *found);

#endif
