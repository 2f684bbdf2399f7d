/*
 * gctouch.h - the GC touch log (GC layer, above gcdebt.h).
 *
 * During a GC cycle, an object the balancer reads or writes has to be
 * unmarked on every backend that holds it, not only on the one that served
 * it, or `end` would remove the other copies. gc_touch does that
 * synchronously when the balancer knows a cycle is active. A cycle begun
 * through another balancer is noticed by the next probe (through the hook
 * gctouch_cycle_noticed) or by a backend's X-CAS-GC header (gc_learn); to
 * cover the moments before that, every touched key is also kept in a ring
 * of recent keys (the last GCTOUCH_RECENT_MAX, for GCTOUCH_WINDOW_NS),
 * unmarked everywhere once the new cycle is noticed.
 */
#ifndef CAS_BAL_GCTOUCH_H
#define CAS_BAL_GCTOUCH_H

#include "state.h"

#include <stddef.h>
#include <stdint.h>

/* Keys kept, and for how long a flush of the recent ones reaches back. */
#define GCTOUCH_RECENT_MAX 16384
#define GCTOUCH_WINDOW_NS (120ull * 1000000000ull)

/* The touch log of bal (bal->gctouch). Before gctouch_init, or after
 * gctouch_free, gc_touch records nothing (but still unmarks during a known
 * cycle). 0 or -ENOMEM. */
int gctouch_init(struct balancer *bal);
void gctouch_free(struct balancer *bal);

/* Records that key was read or written; during a GC cycle, also unmarks it
 * on every backend before returning. */
void gc_touch(struct balancer *bal, const struct view *v, const struct cas_key *key);
/* During a GC cycle, unmarks lines ("<hex>\n"...) on every backend (what a
 * backend misses is kept as GC debt); nothing when no cycle is known. */
void gc_unmark_everywhere(struct balancer *bal, const struct view *v, const char *lines,
                          size_t len);
/* Unmarks everything read or written recently (a cycle this balancer did
 * not start has just been noticed, or is about to end). */
void gc_touch_flush_recent(struct balancer *bal, const struct view *v);
/* Unmarks on every backend what was read or written since since_ns
 * (cas_now_ns clock): gc/begin uses it for what was served while the
 * backends were beginning, before this balancer knew the cycle. */
void gc_touch_flush_since(struct balancer *bal, const struct view *v, uint64_t since_ns);
/* A backend's answer named GC cycle id (X-CAS-GC). When this balancer did
 * not know of it yet (another balancer began it since the last probe),
 * learns it now and unmarks key and the recently used objects on every
 * backend before the caller answers. */
void gc_learn(struct balancer *bal, const struct view *v, const struct cas_key *key, uint64_t id);
/* The probe's hook (bal->hooks.gc_cycle_noticed): flushes the recent keys
 * and records cycle id as flushed. */
void gctouch_cycle_noticed(struct balancer *bal, const struct view *v, uint64_t id);

/* For tests: the keys recorded at or after since_ns, as "<hex>\n" lines
 * appended to out (cas_buf). Returns how many. */
struct cas_buf;
size_t gctouch_recent_lines(struct balancer *bal, uint64_t since_ns, struct cas_buf *out);

#endif
