/*
 * state.h - the balancer's shared state: the bottom layer of balancerd.
 *
 * The balancer is stateless towards data: everything it knows about the
 * cluster is the config plus what it learns by probing the backends. That
 * knowledge is published as a "view": an immutable, reference-counted
 * snapshot of the config, the backend table and the ring built from the
 * backends' tokens. A request takes the current view once and uses it to the
 * end, so a SIGHUP or a backend's tokens arriving never change placement in
 * the middle of a request. The backends' health (up, read-only, latency,
 * GC and capacity figures) changes between probes and is read under the
 * balancer's lock.
 *
 * This header holds the types every layer reads (struct balancer, struct
 * view, struct backend) and state.c the few functions that only read or
 * release them (a view's reference count, the health snapshot): the
 * transport layer needs both, so they sit below it. Building views (config,
 * ring, probes) is the view layer above the transport (view.h, probe.h).
 *
 * The layers of balancerd, each calling only into its own or a lower one
 * (scripts/check-layers.sh checks it on the object files):
 *   state       state.c                    this header
 *   transport   upstream.c, then bstream.c and fanout.c
 *   view        view.c (config, views, ring, key parsing), then probe.c
 *   GC          gcdebt.c, then gctouch.c (the touch log; the probe reaches
 *               it through bal->hooks)
 *   repair      repair.c
 *   reads       hedge.c (the numbers behind hedged reads), tagcache.c (block
 *               tags of verified objects)
 *   handlers    proxy.c, cluster.c, antientropy.c
 *   front       routes.c (route table, /status, /metrics), page.c
 *   root        balancer.c: balancer_init/start/reload/stop (main.c)
 */
#ifndef CAS_BAL_STATE_H
#define CAS_BAL_STATE_H

#include "config.h"
#include "httpd.h"
#include "key.h"
#include "ring.h"
#include "tls_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct balancer;

/* ---- backends and views ------------------------------------------------- */

struct backend_capacity {
    uint64_t total, available, unreclaimed, garbage, objects, bytes;
};

struct backend {
    int refs; /* shared by successive views */
    char *url;
    char *domain;
    /* Learned by probing; read and written under balancer.lock. */
    char node[128];
    const struct cas_hash_algo *algo;
    uint64_t *tokens;
    size_t ntokens;
    bool probed; /* at least one probe finished */
    bool up;
    unsigned failures; /* consecutive failed probes */
    bool probed_ok;    /* has answered at least once */
    bool read_only;
    /* Refused for another hash than the cluster's: logged once when it
     * starts and once when it ends (probe.c). */
    bool hash_refused;
    char last_error[256];
    double latency_ms;
    uint64_t last_ok_ns;
    bool gc_active;
    uint64_t gc_id, gc_objects, gc_bytes;
    bool cap_known;
    struct backend_capacity cap;
    bool compact_running;
    uint64_t compact_done, compact_total;
    /* Hedged reads (proxy.c): when a read to this backend was dropped
     * unanswered while a later request to another copy had answered, the
     * time that read was sent; 0 once it answers anything (or a probe
     * does). Atomic, outside the lock. */
    uint64_t stalled_since_ns;
};

/* The config and token a view was built from; shared by the views that
 * differ only in their ring. */
struct view_conf {
    int refs;
    struct config *cfg;
    char *token;
    /* TLS to https:// backends: the PEM texts of the config's ca_file,
     * tls_client_cert and tls_client_key, read whole when the config is
     * loaded (NULL when not set); given to libcurl as blobs. */
    char *ca_pem, *client_cert_pem, *client_key_pem;
    size_t ca_len, client_cert_len, client_key_len;
    /* The same, as GnuTLS credentials for the pooled object reads from
     * https:// backends (upstream.c); NULL when no backend is https://. */
    struct cas_tls_client *tls;
};

struct view {
    int refs;
    struct view_conf *conf;
    struct config *cfg;   /* conf->cfg */
    size_t n;
    struct backend **b;
    struct ring *ring;                    /* over b[], by index */
    const struct cas_hash_algo *algo;     /* the cluster's; NULL until a backend answered */
    const char *token;                    /* conf->token: sent to backends; NULL for none */
    uint64_t generation;
};

/* A reference to the current view (take once per request; view_put when
 * done). */
struct view *view_get(struct balancer *bal);
void view_put(struct view *v);
/* Drops a reference to backend b (NULL: nothing); frees it at the last. */
void backend_put(struct backend *b);
/* Frees the TLS texts of conf (the client key wiped first). */
void view_conf_free_tls(struct view_conf *conf);

/* Snapshot of the health of v's backends: available for writes (up, not
 * read-only, same hash as the cluster, tokens known) and up. */
void backend_health(struct balancer *bal, const struct view *v, bool *writable, bool *up);

/* down[i]: the probes have marked v's backend i down (a backend not probed
 * yet is not known down). Fan-outs skip these rather than wait on them. */
void backend_known_down(struct balancer *bal, const struct view *v, bool *down);

/* Records the outcome of a request to a backend outside the probes. */
void backend_note_failure(struct balancer *bal, struct backend *b, const char *what);

/* ---- the balancer ------------------------------------------------------- */

struct balancer_options {
    const char *config_path;
    const char *listen; /* overrides the config; NULL: config, then 127.0.0.1:6001 */
    const char *spool_dir;
    unsigned connect_timeout_ms;
    unsigned first_byte_timeout_ms;
    unsigned io_timeout_ms;
    unsigned probe_interval_ms;
    /* Kept for old command lines: every whole-object GET is hashed as it
     * is relayed, whatever its size. */
    bool verify_streamed;
    /* A GET body may keep the balancer waiting on its backend for at most
     * first_byte + io timeouts plus its size at this rate (KiB/s), or the
     * read fails over (before the first byte) or is aborted (after it).
     * 0: no total deadline. */
    unsigned min_read_kbps;
    /* Hedged reads: ask the next copy when no answer head has come after
     * the p95 of recent first-byte latencies, clamped to [min, max] ms;
     * hedge_max_ms 0 turns hedging off. */
    unsigned hedge_min_ms, hedge_max_ms;
    /* A read whose copies have said "not here" (404) waits at most this,
     * or 4x the slowest of those answers, for a copy that has not sent its
     * whole answer head (an absent key with one backend hung on object
     * routes); a listing waits 4x this for each backend's head
     * (OPERATIONS.md "Stalled and dripping backends"). 0: 250. */
    unsigned stall_ms;
    /* Object reads need the token too (--auth-reads; the config's
     * auth_reads: true does the same). */
    bool auth_reads;
    /* Client connection guards (common/httpd.h; 0: the default). */
    unsigned max_connections, max_client_connections, header_timeout_s, idle_timeout_s;
    /* Largest object a PUT or POST may carry (--max-object-size); 0: none.
     * Bounds what a client can make the balancer spool or relay. */
    uint64_t max_object_size;
    /* Serve HTTPS with the credentials loaded by cas_tls_load (--tls-cert). */
    bool tls;
    /* Memory for block tags of verified objects (tagcache.h), bytes; 0:
     * none kept, every large GET is hashed (--tag-cache-mb). */
    uint64_t tag_cache_bytes;
};

/* Counters shown in /metrics. Atomics. */
struct balancer_counters {
    uint64_t repairs_queued, repairs_done, repairs_failed, repairs_dropped;
    uint64_t failovers, aborted_streams, corrupt_copies;
    uint64_t hedged_reads, hedge_wins; /* extra requests sent by hedging; those served */
    uint64_t gc_touches;
    /* Writes answered with fewer than `replicas` copies (X-CAS-Copies). */
    uint64_t under_replicated_writes;
};

struct repair_queue;
struct tag_cache;
struct gcdebt;
struct gctouch;

/* Calls from the view layer (the probe thread) up into the GC layer, set
 * by the composition root (balancer.c) before the probe thread starts;
 * NULL members are skipped. They keep the probe below the GC touch log. */
struct balancer_hooks {
    /* The probe found GC cycle id active that this balancer had not
     * flushed its touch log for (another balancer began it): unmark what
     * was served recently. Called without the lock. */
    void (*gc_cycle_noticed)(struct balancer *bal, const struct view *v, uint64_t id);
    /* After each probe round, while cycle gc_id is active: deliver the
     * unmarks a backend missed as soon as it is back. */
    void (*gc_probe_round)(struct balancer *bal, uint64_t gc_id);
};

struct balancer {
    struct balancer_options opt;
    pthread_mutex_t lock;
    struct view *view; /* current, under lock */
    uint64_t generation;
    uint64_t start_ns;
    char listen[128];
    struct http_server *srv;

    pthread_t probe_thread;
    pthread_cond_t probe_cond;
    bool stopping;
    /* Set on SIGTERM before the server stops: /healthz answers 503 so that
     * a load balancer in front takes this balancer out while it still
     * serves (balancerd/main.c drains for --drain-ms). */
    atomic_bool draining;
    bool probe_started;
    struct balancer_hooks hooks;

    /* Cluster GC as this balancer knows it (under lock). */
    bool gc_active;
    uint64_t gc_id;
    uint64_t gc_seen_id; /* cycle whose touch log has been flushed, or that this balancer begins */

    struct repair_queue *repair;
    struct tag_cache *tags; /* NULL when opt.tag_cache_bytes is 0 */
    struct gcdebt *gcdebt;
    struct gctouch *gctouch; /* the GC touch log (gctouch.c) */

    /* Cluster-wide compaction job (under lock). */
    bool compact_running;
    char compact_domain[128];
    char compact_last[256];
    pthread_t compact_thread;
    bool compact_thread_joinable;

    struct balancer_counters ctr;
};

#endif