/*
 * repair.h - read repair and quarantine repair (repair layer, above the
 * GC layer): copies of an object a backend lacks, made in the background.
 */
#ifndef CAS_BAL_REPAIR_H
#define CAS_BAL_REPAIR_H

#include "copy.h"
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
/*
 * Copies key from the backend at src_url to the one at dst_url with the
 * one copy path (common/copy.h), with v's token and TLS and the balancer's
 * connect, first-byte (for the source's answer) and io (as the stall
 * limit) timeouts; a target the probes find down is given up at once
 * (-EHOSTDOWN), as fanout.c drops one. cp: the calling
 * thread's handles (NULL: made for this copy). client_write and no_sync as
 * in copy.h (read repair: false, false); put_header: copy.h's (a client
 * write's X-CAS-Timestamp; NULL: none). stop: NULL or a flag that cuts
 * the copy. Returns 0 or copy.h's -errno, res saying what happened.
 */
int repair_copy(struct balancer *bal, const struct view *v, struct cas_copier *cp,
                const char *src_url, const char *dst_url, const struct cas_key *key,
                bool client_write, bool no_sync, const char *put_header, volatile int *stop,
                struct cas_copy_result *res);
/* Quarantine polls done and quarantined copies they found (for /metrics). */
void repair_quarantine_stats(struct balancer *bal, uint64_t *polls, uint64_t *found);

#endif
