/*
 * balancer.h - the inside of ca-cas-balancerd, shared by its modules.
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
 * Modules:
 *   backend.c   backend table, views, the probe thread, config reload
 *   upstream.c  libcurl plumbing: small parallel requests to backends
 *   bstream.c   a backend response body read on demand (pull)
 *   fanout.c    one request body streamed to several backends (push)
 *   proxy.c     object routes: PUT, POST, GET, HEAD, DELETE
 *   repair.c    read repair queue, quarantine repair, the GC touch log
 *   gcdebt.c    GC unmarks a backend missed, delivered again before `end`
 *   cluster.c   GC, list, missing, capacity, compaction across backends
 *   routes.c    the route table, /status, /metrics, /ring, /healthz
 *   page.c      the HTML page at GET /
 */
#ifndef CAS_BALANCER_H
#define CAS_BALANCER_H

#include "buf.h"
#include "config.h"
#include "httpd.h"
#include "json.h"
#include "key.h"
#include "ring.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct balancer;

/* ---- backends and views (backend.c) ------------------------------------ */

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

struct view *view_get(struct balancer *bal);
void view_put(struct view *v);

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
struct gcdebt;

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

    /* Cluster GC as this balancer knows it (under lock). */
    bool gc_active;
    uint64_t gc_id;
    uint64_t gc_seen_id; /* cycle whose touch log has been flushed */

    struct repair_queue *repair;
    struct gcdebt *gcdebt;

    /* Cluster-wide compaction job (under lock). */
    bool compact_running;
    char compact_domain[128];
    char compact_last[256];
    pthread_t compact_thread;
    bool compact_thread_joinable;

    struct balancer_counters ctr;
};

/* Loads the config and builds the first view; starts nothing.
 * Returns 0 or -errno with "file:line:col: message" in err. */
int balancer_init(struct balancer *bal, const struct balancer_options *opt, char *err,
                  size_t errlen);
/* Starts the probe and repair threads and the HTTP server. */
int balancer_start(struct balancer *bal, char *err, size_t errlen);
/* Re-reads the config; on error the old one stays and err says why. */
int balancer_reload(struct balancer *bal, char *err, size_t errlen);
void balancer_stop(struct balancer *bal);

/* Probes every backend once, now (the probe thread calls it periodically). */
void backend_probe_all(struct balancer *bal);

/* ---- upstream.c: requests to backends ---------------------------------- */

struct upstream_call {
    /* in */
    char url[1024];
    const char *method;
    const char *body; /* NULL: none */
    size_t body_len;
    size_t backend; /* index in the view, for the caller */
    /* out */
    long status;      /* 0 when the request failed */
    int curl_code;    /* CURLcode of a failed request */
    struct cas_buf resp; /* the body, cut at 16 MiB */
    char err[256];
    double ms;
    bool skipped; /* not asked: the probes say the backend is down */
};

/* A configured easy handle: URL, method, token, connect timeout, no
 * signals, no Expect: 100-continue. *hdrs gets the header list to free. */
CURL *upstream_easy(const struct view *v, const char *url, const char *method,
                    const struct balancer_options *opt, struct curl_slist **hdrs);

/* Same on a handle from an earlier request (reset first), or a new one
 * when e is NULL. */
CURL *upstream_easy_reuse(CURL *e, const struct view *v, const char *url, const char *method,
                          const struct balancer_options *opt, struct curl_slist **hdrs);

/* A multi handle whose share of the process-wide connection pool is large
 * enough for many concurrent requests. */
CURLM *upstream_multi_new(void);

/* Runs n small requests in parallel, each bounded by timeout_ms (0: none). */
void upstream_run(struct balancer *bal, const struct view *v, struct upstream_call *calls,
                  size_t n, long timeout_ms);
void upstream_calls_free(struct upstream_call *calls, size_t n);
/* Error text of a failed call or a non-2xx answer ({"error":...}). */
void upstream_describe(const struct upstream_call *c, char *out, size_t outlen);

/* ---- bstream.c: pulling a backend's response --------------------------- */

struct bstream;

struct bstream_head {
    long status;
    int64_t content_length; /* -1 unknown */
    uint64_t gc_id;         /* X-CAS-GC: the backend's active GC cycle; 0 none */
    bool chunked;           /* a Transfer-Encoding: a framing never relayed as an object */
    int dup_length;         /* bstream: conflicting Content-Length headers seen */
    char content_range[128];
    char content_type[128];
    char etag[160]; /* as sent, quotes included; "" when none */
};

/* Sends method to url with an optional Range header and waits for the
 * response headers (at most first_byte_timeout_ms). Returns 0 with the
 * head filled, or -errno with err set (nothing received: try another
 * backend). */
int bstream_open(struct balancer *bal, const struct view *v, const char *url, const char *method,
                 const char *range, struct bstream **out, struct bstream_head *head, char *err,
                 size_t errlen);
/* Limits the total time bstream_read may spend waiting for the backend
 * over the rest of the body to budget_ns (0: no limit); past it a read
 * fails with -ETIMEDOUT. Time the caller spends elsewhere (a slow client)
 * is not counted: the limit is on the backend's slowness. */
void bstream_set_read_budget(struct bstream *s, uint64_t budget_ns);
/* Up to max bytes of body: > 0, 0 at the end, -errno on failure. */
ssize_t bstream_read(struct bstream *s, char *buf, size_t max, char *err, size_t errlen);
void bstream_close(struct bstream *s);

/* ---- upstream.c: object reads on pooled keep-alive connections ---------- */

struct upconn;

/* Sends method (GET or HEAD) for path to the backend at base
 * ("http://host:port") on a pooled keep-alive connection, or a new one, and
 * reads the response head (first_byte_timeout_ms). Returns 0 with head
 * filled, -ENOTSUP when this reader cannot do it (https, a chunked answer:
 * use a bstream), or -errno with err set. */
int upconn_open(struct balancer *bal, const struct view *v, const char *base, const char *path,
                const char *method, const char *range, struct upconn **out,
                struct bstream_head *head, char *err, size_t errlen);
/* upconn_open in two steps, so that several backends can be asked at once
 * (hedged reads): upconn_start takes a pooled connection (or makes one)
 * and sends the request; upconn_fd is what to poll for the answer;
 * upconn_finish reads the head (first_byte_timeout_ms from the start; a
 * pooled connection found closed is replaced once) and gives the
 * connection to read the body from in *out, or frees it and returns
 * -errno; upconn_abandon drops a request whose answer is not wanted. */
int upconn_start(struct balancer *bal, const struct view *v, const char *base, const char *path,
                 const char *method, const char *range, struct upconn **out, char *err,
                 size_t errlen);
int upconn_fd(const struct upconn *c);
int upconn_finish(struct balancer *bal, struct upconn *c, struct upconn **out,
                  struct bstream_head *head, char *err, size_t errlen);
void upconn_abandon(struct upconn *c);
/* Up to max bytes of body: > 0, 0 at the end, -errno on failure
 * (io_timeout_ms without data, or the peer closed before the end). */
ssize_t upconn_read(struct upconn *c, char *buf, size_t max, char *err, size_t errlen);
/* As bstream_set_read_budget. */
void upconn_set_read_budget(struct upconn *c, uint64_t budget_ns);
/* Back to the pool when the response was read to its end, else closed. */
void upconn_close(struct upconn *c);

/* How a response's body is framed, from its head (upstream_parse_head). */
struct upstream_framing {
    bool informational; /* 1xx: the real head follows */
    bool keep_alive;    /* the connection may carry another request after this one */
    bool until_close;   /* no usable length (none, or a transfer coding): read to EOF */
    int64_t body;       /* body bytes after the head, when !until_close */
};

/* Length of the response head at the start of buf[0..len) including the
 * empty line that ends it (CRLF or bare LF line ends), 0 when incomplete. */
size_t upstream_head_end(const char *buf, size_t len);

/* Parses a response head buf[0..hlen) (as measured by upstream_head_end)
 * of a request whose method was HEAD when is_head. Fills head (status,
 * Content-Length, Content-Range, ETag, a transfer coding, X-CAS-GC) and fr.
 * Returns 0, or -EPROTO with err saying why: a malformed status line or
 * header line, obs-fold (a folded header line), a Content-Length that is
 * not plain digits, or two Content-Length headers that disagree
 * (RFC 9112 6.3). Connection tokens are compared without case. */
int upstream_parse_head(const char *buf, size_t hlen, bool is_head, struct bstream_head *head,
                        struct upstream_framing *fr, char *err, size_t errlen);

/* ---- fanout.c: pushing one body to several backends -------------------- */

struct fanout;

struct fanout_result {
    size_t backend; /* index in the view */
    long status;    /* 0: failed before an answer */
    char err[256];
    struct cas_buf resp;
};

/* Starts method on every url (body of content_length bytes, or chunked
 * when content_length < 0). */
int fanout_start(struct balancer *bal, const struct view *v, const char *method, char **urls,
                 const size_t *backends, size_t n, int64_t content_length, struct fanout **out);
/* Lets the fan-out drop a target that lags behind `need` others (they took
 * the chunk it has not, or answered 2xx at the end) for straggler_ms; by
 * default need is every target (nothing is dropped for lagging). A
 * target whose backend the probes mark down is dropped in any case. */
void fanout_set_quorum(struct fanout *f, size_t need, unsigned straggler_ms);
/* Longest wait for an answer once the body is sent (default 600 s: a
 * backend syncs before answering). */
void fanout_set_answer_timeout(struct fanout *f, unsigned ms);
/* Streams the next len bytes to every target still alive; returns how many
 * are alive (0: all have answered or failed). */
size_t fanout_feed(struct fanout *f, const char *data, size_t len);
/* Ends the body and waits for every answer. */
void fanout_finish(struct fanout *f);
size_t fanout_count(const struct fanout *f);
const struct fanout_result *fanout_result(const struct fanout *f, size_t i);
void fanout_free(struct fanout *f);

/* ---- proxy.c, cluster.c, routes.c, page.c: handlers --------------------- */

/* Parses a key against the cluster's algorithm (or guesses it by length
 * before any backend has answered). */
int proxy_parse_key(const struct view *v, const char *s, size_t len, struct cas_key *k, char *err,
                    size_t errlen);

void proxy_get(struct http_req *req);
void proxy_put(struct http_req *req);
void proxy_post(struct http_req *req);
void proxy_post_cask(struct http_req *req);
void proxy_delete(struct http_req *req);

void cluster_gc_begin(struct http_req *req);
void cluster_gc_mark(struct http_req *req);
void cluster_gc_end(struct http_req *req);
void cluster_gc_status(struct http_req *req);
void cluster_list(struct http_req *req);
void cluster_missing(struct http_req *req);
void cluster_capacity(struct http_req *req);
void cluster_compact(struct http_req *req);
void cluster_compact_status(struct http_req *req);
/* Cluster GC and compaction figures as JSON members (for /status). */
void cluster_gc_json(struct balancer *bal, const struct view *v, struct cas_json *j);
void cluster_capacity_sum(struct balancer *bal, const struct view *v,
                          struct backend_capacity *sum);

void page_index(struct http_req *req);

int routes_start_server(struct balancer *bal, char *err, size_t errlen);

/* ---- repair.c: read repair and GC touches ------------------------------- */

int repair_init(struct balancer *bal);
void repair_stop(struct balancer *bal);
/* Queues a copy of key to backend b (by URL); drops it when the queue is
 * full. Never blocks. */
void repair_enqueue(struct balancer *bal, const struct cas_key *key, const char *url);
size_t repair_queue_length(struct balancer *bal);
/* Quarantine polls done and quarantined copies they found (for /metrics). */
void repair_quarantine_stats(struct balancer *bal, uint64_t *polls, uint64_t *found);

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

/* ---- gcdebt.c: unmarks a backend missed during a GC cycle ------------- */

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

#endif
