/*
 * probe.c - the probe thread: asks every backend, in parallel, for
 * /status (up, read-only), /gc, /capacity and /compact each interval, and
 * for /ring until it knows the backend's node id and tokens (and again
 * every minute, so a node that changed behind a URL is noticed). When a
 * backend's tokens change, a new view with a new ring is published. View
 * layer (probe.h): what it learns about GC cycles goes up only through
 * bal->hooks.
 */
#include "probe.h"
#include "json.h"
#include "log.h"
#include "ringjson.h"
#include "upstream.h"
#include "view.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- probes ------------------------------------------------------------- */

/* Parses a GET /ring answer (common/ringjson.c, the parser `ca-cas
 * rebalance` uses too) into b's fields. Returns true when something
 * changed. An answer refused (err set) takes b out of the ring: its old
 * tokens no longer describe what it says it is. Caller holds the lock. */
static bool apply_ring(struct backend *b, const char *json, size_t len, char *err, size_t errlen)
{
    char node[sizeof(b->node)];
    const struct cas_hash_algo *algo;
    uint64_t *tok;
    size_t n;
    if (ringjson_parse(json, len, node, sizeof(node), &algo, &tok, &n, err, errlen) < 0) {
        if (!b->ntokens)
            return false;
        log_warn("backend %s taken out of the ring: %s", b->url, err);
        free(b->tokens);
        b->tokens = NULL;
        b->ntokens = 0;
        return true;
    }
    bool changed = strcmp(b->node, node) != 0 || b->algo != algo || b->ntokens != n ||
                   memcmp(b->tokens, tok, n * sizeof(*tok)) != 0;
    if (!changed) {
        free(tok);
        return false;
    }
    if (b->node[0] && strcmp(b->node, node))
        log_warn("backend %s is now node %s (was %s)", b->url, node, b->node);
    snprintf(b->node, sizeof(b->node), "%s", node);
    b->algo = algo;
    free(b->tokens);
    b->tokens = tok;
    b->ntokens = n;
    return true;
}

enum { P_STATUS, P_GC, P_CAPACITY, P_COMPACT, P_RING, P_KINDS };
static const char *const probe_paths[P_KINDS] = {"/status", "/gc", "/capacity", "/compact",
                                                 "/ring"};

void backend_probe_all(struct balancer *bal)
{
    struct view *v = view_get(bal);
    size_t n = v->n;
    struct upstream_call *calls = calloc(n * P_KINDS, sizeof(*calls));
    if (!calls) {
        view_put(v);
        return;
    }
    uint64_t now = cas_now_ns();
    size_t nc = 0;
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < n; i++) {
        struct backend *b = v->b[i];
        bool want_ring = !b->ntokens || !b->up || (now - b->last_ok_ns) > 60000000000ull;
        for (int k = 0; k < P_KINDS; k++) {
            if (k == P_RING && !want_ring)
                continue;
            struct upstream_call *c = &calls[nc++];
            snprintf(c->url, sizeof(c->url), "%s%s", b->url, probe_paths[k]);
            c->method = "GET";
            c->backend = i * P_KINDS + (size_t)k;
        }
    }
    pthread_mutex_unlock(&bal->lock);
    /* A probe is a fan-out like any other: bounded by timeouts.fanout_ms
     * (whose default, 5 s, is what probes always allowed), so a hung
     * backend is found down within two of these. */
    upstream_run(bal, v, calls, nc, (long)v->cfg->fanout_ms);

    bool rebuild = false;
    bool any_gc = false;
    uint64_t gc_id = 0;
    pthread_mutex_lock(&bal->lock);
    for (size_t c = 0; c < nc; c++) {
        struct upstream_call *call = &calls[c];
        struct backend *b = v->b[call->backend / P_KINDS];
        int kind = (int)(call->backend % P_KINDS);
        const char *json = call->resp.data ? call->resp.data : "";
        if (kind == P_STATUS) {
            b->probed = true;
            if (call->status == 200) {
                if (!b->up)
                    log_info("backend %s (%s) is up", b->url, b->domain);
                b->up = true;
                __atomic_store_n(&b->stalled_since_ns, 0, __ATOMIC_RELAXED);
                b->probed_ok = true;
                b->failures = 0;
                b->latency_ms = call->ms;
                b->last_ok_ns = now;
                b->last_error[0] = '\0';
                bool ro = false;
                cas_json_get_bool(json, "read_only", &ro);
                b->read_only = ro;
            } else {
                char why[256];
                upstream_describe(call, why, sizeof(why));
                snprintf(b->last_error, sizeof(b->last_error), "%s", why);
                /* A refused connection is a dead process; a slow answer
                 * may be a busy one: give it a second chance. */
                bool refused = call->status == 0 && call->curl_code == CURLE_COULDNT_CONNECT;
                if (++b->failures >= 2 || refused || !b->probed_ok) {
                    if (b->up)
                        log_warn("backend %s (%s) is down: %s", b->url, b->domain, why);
                    b->up = false;
                }
            }
        } else if (call->status != 200) {
            continue;
        } else if (kind == P_GC) {
            bool active = false;
            cas_json_get_bool(json, "active", &active);
            b->gc_active = active;
            cas_json_get_u64(json, "id", &b->gc_id);
            cas_json_get_u64(json, "objects", &b->gc_objects);
            cas_json_get_u64(json, "bytes", &b->gc_bytes);
            if (active) {
                any_gc = true;
                gc_id = b->gc_id;
            }
        } else if (kind == P_CAPACITY) {
            struct backend_capacity *cp = &b->cap;
            cas_json_get_u64(json, "total", &cp->total);
            cas_json_get_u64(json, "available", &cp->available);
            cas_json_get_u64(json, "unreclaimed", &cp->unreclaimed);
            cas_json_get_u64(json, "garbage", &cp->garbage);
            cas_json_get_u64(json, "objects", &cp->objects);
            cas_json_get_u64(json, "bytes", &cp->bytes);
            b->cap_known = true;
        } else if (kind == P_COMPACT) {
            bool running = false;
            cas_json_get_bool(json, "running", &running);
            b->compact_running = running;
            cas_json_get_u64(json, "done_bytes", &b->compact_done);
            cas_json_get_u64(json, "total_bytes", &b->compact_total);
        } else if (kind == P_RING) {
            char err[256] = "";
            if (apply_ring(b, json, call->resp.len, err, sizeof(err)))
                rebuild = true;
            if (err[0])
                snprintf(b->last_error, sizeof(b->last_error), "%s", err);
        }
    }
    /* Backends with another hash than the cluster's are refused by name. */
    const struct cas_hash_algo *algo = view_cluster_algo(v->b, n);
    for (size_t i = 0; i < n; i++) {
        struct backend *b = v->b[i];
        bool refused = b->algo && algo && b->algo != algo;
        if (refused) {
            snprintf(b->last_error, sizeof(b->last_error),
                     "refused: its keys are %s, the cluster's are %s", b->algo->name, algo->name);
            if (!b->hash_refused)
                log_error("backend %s refused: its keys are %s, the cluster's (most backends') are "
                          "%s; it takes no reads or writes until it is replaced or the others "
                          "are",
                          b->url, b->algo->name, algo->name);
        } else if (b->hash_refused) {
            log_info("backend %s: its hash is the cluster's again", b->url);
        }
        b->hash_refused = refused;
        for (size_t j = 0; j < i; j++)
            if (b->ntokens && v->b[j]->ntokens && !strcmp(b->node, v->b[j]->node))
                snprintf(b->last_error, sizeof(b->last_error),
                         "refused: same node %s as %s", b->node, v->b[j]->url);
    }
    if (algo != v->algo)
        rebuild = true;
    bool new_cycle = false;
    if (any_gc) {
        if (!bal->gc_active || bal->gc_id != gc_id)
            new_cycle = bal->gc_seen_id != gc_id;
        bal->gc_active = true;
        bal->gc_id = gc_id;
    } else {
        bal->gc_active = false;
    }
    if (rebuild && bal->view == v)
        view_rebuild_locked(bal);
    pthread_mutex_unlock(&bal->lock);
    if (new_cycle) {
        /* A cycle another balancer began: what we served since it began
         * must survive it. */
        log_info("GC cycle %" PRIu64 " is active; unmarking recently used objects", gc_id);
        if (bal->hooks.gc_cycle_noticed)
            bal->hooks.gc_cycle_noticed(bal, v, gc_id);
    }
    upstream_calls_free(calls, nc);
    free(calls);
    view_put(v);
}

static void *probe_main(void *arg)
{
    struct balancer *bal = arg;
    for (;;) {
        backend_probe_all(bal);
        pthread_mutex_lock(&bal->lock);
        bool gc = bal->gc_active;
        uint64_t gc_id = bal->gc_id;
        pthread_mutex_unlock(&bal->lock);
        if (gc && bal->hooks.gc_probe_round)
            bal->hooks.gc_probe_round(bal, gc_id);
        pthread_mutex_lock(&bal->lock);
        if (bal->stopping) {
            pthread_mutex_unlock(&bal->lock);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)bal->opt.probe_interval_ms * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&bal->probe_cond, &bal->lock, &ts);
        bool stop = bal->stopping;
        pthread_mutex_unlock(&bal->lock);
        if (stop)
            break;
    }
    return NULL;
}

int probe_start(struct balancer *bal, char *err, size_t errlen)
{
    int rc = pthread_create(&bal->probe_thread, NULL, probe_main, bal);
    if (rc) {
        snprintf(err, errlen, "cannot start the probe thread: %s", strerror(rc));
        return -rc;
    }
    bal->probe_started = true;
    return 0;
}

void probe_wake(struct balancer *bal)
{
    pthread_mutex_lock(&bal->lock);
    pthread_cond_broadcast(&bal->probe_cond);
    pthread_mutex_unlock(&bal->lock);
}

void probe_stop(struct balancer *bal)
{
    pthread_mutex_lock(&bal->lock);
    bal->stopping = true;
    pthread_cond_broadcast(&bal->probe_cond);
    pthread_mutex_unlock(&bal->lock);
    if (bal->probe_started)
        pthread_join(bal->probe_thread, NULL);
    bal->probe_started = false;
}
