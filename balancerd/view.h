/*
 * view.h - building the balancer's views: the view layer (above the
 * transport).
 *
 * view.c loads the config (and the token and TLS files it names) into a new
 * view, reusing what was learned about the backends whose URL stays;
 * rebuilds the ring when the probes learn tokens; and parses keys against
 * the cluster's hash (every layer above that takes a key from a client or
 * a backend's list uses view_parse_key). The types are in state.h; the
 * probe thread that fills the backends' health is probe.c.
 */
#ifndef CAS_BAL_VIEW_H
#define CAS_BAL_VIEW_H

#include "state.h"

#include <stddef.h>

/* Loads bal->opt.config_path and publishes a new view over it, carrying
 * over what was learned about backends whose URL and domain stay. On error
 * the current view stays. Returns 0 or -errno with "file:line:col:
 * message" (or "out of memory") in err. */
int view_load(struct balancer *bal, char *err, size_t errlen);

/* The cluster's hash: the one most backends whose tokens are known use
 * (ties: config order; common/hash.h cas_hash_of_cluster); NULL before
 * any. Caller holds bal->lock. */
const struct cas_hash_algo *view_cluster_algo(struct backend **b, size_t n);

/* Replaces the current view with one over the same config and backends
 * (their tokens changed). Caller holds bal->lock. On out of memory the
 * current view stays. */
void view_rebuild_locked(struct balancer *bal);

/* Parses key s[0..len) against the cluster's algorithm, or guesses it by
 * form ("name:hex", or the hex length; sha1 when nothing fits) before any
 * backend has answered. 0, or -EINVAL with err set (key.h rules). */
int view_parse_key(const struct view *v, const char *s, size_t len, struct cas_key *k, char *err,
                   size_t errlen);

#endif
