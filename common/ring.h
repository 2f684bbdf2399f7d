/*
 * ring.h - object placement: which backends hold an object.
 *
 * The ring is the union of every backend's tokens (random 64-bit values a
 * storaged generates once, in proportion to its capacity). An object's
 * position is the first 8 bytes of its digest read as a big-endian integer.
 * Walking the ring upward from that position (wrapping at the top) and
 * noting each backend the first time one of its tokens appears gives the
 * object's "walk order" over all backends. The home of the object is the
 * first `replicas` backends of that walk in distinct failure domains: a
 * backend whose failure domain has already been taken is skipped.
 *
 * This module is the single implementation of that rule: the balancer and
 * `ca-cas rebalance` both call it, so they always agree. A ring is built
 * once (ring_new, ring_add_backend, ring_finish) and is then immutable and
 * safe to share between threads.
 *
 * Backends are identified by index (their order in the caller's table) but
 * ordered on the ring by token and then by node id, so the placement does
 * not depend on the order of the config file nor on a backend's URL.
 */
#ifndef CAS_RING_H
#define CAS_RING_H

#include "key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ring;

/* An empty ring for nbackends backends (indices 0..nbackends-1). */
struct ring *ring_new(size_t nbackends);
void ring_free(struct ring *r);

/*
 * Describes backend idx: its node id (from GET /ring), its failure domain
 * and its tokens (copied). A backend whose tokens are not known yet (it has
 * never answered) is added with ntokens = 0: it holds no position on the
 * ring, and appears only at the end of read orders.
 * Returns 0, -EINVAL for a bad index or a backend described twice, -ENOMEM.
 */
int ring_add_backend(struct ring *r, size_t idx, const char *node, const char *domain,
                     const uint64_t *tokens, size_t ntokens);

/* Sorts the tokens; call once every backend has been added. */
int ring_finish(struct ring *r);

size_t ring_backend_count(const struct ring *r);
size_t ring_token_count(const struct ring *r);
size_t ring_backend_tokens(const struct ring *r, size_t idx);
/* Number of distinct failure domains among all backends. */
size_t ring_domain_count(const struct ring *r);
/* Failure domain number of a backend (0..ring_domain_count()-1). */
size_t ring_backend_domain(const struct ring *r, size_t idx);

/*
 * Every backend in walk order from pos: each backend with tokens in the
 * order its first token appears, then backends without tokens in index
 * order. out needs ring_backend_count() slots; returns how many were written
 * (always ring_backend_count()).
 */
size_t ring_walk(const struct ring *r, uint64_t pos, size_t *out);

/*
 * The home of an object at pos: up to `replicas` backends, in walk order,
 * in distinct failure domains. Returns how many were written to out (fewer
 * than replicas only when there are fewer failure domains with tokens).
 */
size_t ring_home(const struct ring *r, uint64_t pos, size_t replicas, size_t *out);

/*
 * Where a write goes: the same walk as ring_home but skipping backends for
 * which available[idx] is false (down or read-only), so a write lands on
 * the next backends of the walk. Returns the count written to out.
 */
size_t ring_write_set(const struct ring *r, uint64_t pos, size_t replicas, const bool *available,
                      size_t *out);

/*
 * Where a read looks: the home backends in ring order, then every other
 * backend in walk order. out needs ring_backend_count() slots; returns the
 * count written (ring_backend_count()). *nhome gets the size of the home.
 */
size_t ring_read_order(const struct ring *r, uint64_t pos, size_t replicas, size_t *out,
                       size_t *nhome);

/* Convenience: the ring position of a key (cas_key_position). */
static inline uint64_t ring_position(const struct cas_key *k)
{
    return cas_key_position(k);
}

#endif
