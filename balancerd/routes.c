/*
 * routes.c - the balancer's route table and its small informational
 * routes: /status, /metrics, /ring and /healthz.
 *
 * The table mirrors storaged's API (docs/API.md) so that a client
 * cannot tell a balancer from a single storaged, plus the Cask routes.
 */
#include "antientropy.h"
#include "bal_routes.h"
#include "cluster.h"
#include "gcdebt.h"
#include "page.h"
#include "proxy.h"
#include "repair.h"
#include "tagcache.h"
#include "log.h"
#include "prom.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One backend as the probes know it. A backend that is down keeps its last
 * figures, marked stale: "stale": true, "last_ok_age_s" (null if it never
 * answered), and latency_ms null rather than the last good probe's. */
static void json_backend(struct cas_json *j, const struct view *v, size_t i, uint64_t now)
{
    const struct backend *b = v->b[i];
    bool stale = !b->up;
    cas_json_begin_object(j);
    cas_json_key(j, "url");
    cas_json_string(j, b->url);
    cas_json_key(j, "node");
    cas_json_string(j, b->node);
    cas_json_key(j, "failure_domain");
    cas_json_string(j, b->domain);
    cas_json_key(j, "up");
    cas_json_bool(j, b->up);
    cas_json_key(j, "read_only");
    cas_json_bool(j, b->read_only);
    cas_json_key(j, "in_ring");
    cas_json_bool(j, ring_backend_tokens(v->ring, i) > 0);
    cas_json_key(j, "tokens");
    cas_json_u64(j, ring_backend_tokens(v->ring, i));
    cas_json_key(j, "last_error");
    if (b->last_error[0])
        cas_json_string(j, b->last_error);
    else
        cas_json_null(j);
    cas_json_key(j, "latency_ms");
    if (stale)
        cas_json_null(j);
    else
        cas_json_double(j, b->latency_ms);
    cas_json_key(j, "stale");
    cas_json_bool(j, stale);
    cas_json_key(j, "last_ok_age_s");
    if (b->last_ok_ns)
        cas_json_u64(j, (now - b->last_ok_ns) / 1000000000ull);
    else
        cas_json_null(j);
    if (b->cap_known) {
        cas_json_key(j, "capacity");
        cas_json_begin_object(j);
        cas_json_key(j, "total");
        cas_json_u64(j, b->cap.total);
        cas_json_key(j, "available");
        cas_json_u64(j, b->cap.available);
        cas_json_key(j, "objects");
        cas_json_u64(j, b->cap.objects);
        cas_json_key(j, "bytes");
        cas_json_u64(j, b->cap.bytes);
        cas_json_end_object(j);
    }
    cas_json_key(j, "gc_active");
    cas_json_bool(j, b->gc_active);
    cas_json_key(j, "compacting");
    cas_json_bool(j, b->compact_running);
    cas_json_end_object(j);
}

static void route_status(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    struct backend_capacity sum;
    cluster_capacity_sum(bal, v, &sum);
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "version");
    cas_json_string(&j, CAS_VERSION);
    cas_json_key(&j, "role");
    cas_json_string(&j, "balancerd");
    cas_json_key(&j, "node");
    cas_json_string(&j, bal->listen);
    cas_json_key(&j, "uptime");
    cas_json_u64(&j, (cas_now_ns() - bal->start_ns) / 1000000000u);
    cas_json_key(&j, "hash");
    cas_json_string(&j, v->algo ? v->algo->name : "");
    cas_json_key(&j, "replicas");
    cas_json_u64(&j, v->cfg->replicas);
    cas_json_key(&j, "min_replicas");
    cas_json_u64(&j, v->cfg->min_replicas);
    cas_json_key(&j, "objects");
    cas_json_u64(&j, sum.objects);
    cas_json_key(&j, "bytes");
    cas_json_u64(&j, sum.bytes);
    cas_json_key(&j, "capacity");
    cas_json_begin_object(&j);
    cas_json_key(&j, "total");
    cas_json_u64(&j, sum.total);
    cas_json_key(&j, "available");
    cas_json_u64(&j, sum.available);
    cas_json_key(&j, "unreclaimed");
    cas_json_u64(&j, sum.unreclaimed);
    cas_json_key(&j, "garbage");
    cas_json_u64(&j, sum.garbage);
    cas_json_end_object(&j);
    cas_json_key(&j, "gc");
    cluster_gc_json(bal, v, &j);
    pthread_mutex_lock(&bal->lock);
    bool compacting = bal->compact_running;
    for (size_t i = 0; i < v->n; i++)
        compacting |= v->b[i]->up && v->b[i]->compact_running;
    cas_json_key(&j, "compaction");
    cas_json_begin_object(&j);
    cas_json_key(&j, "running");
    cas_json_bool(&j, compacting);
    cas_json_key(&j, "failure_domain");
    cas_json_string(&j, bal->compact_domain);
    cas_json_end_object(&j);
    cas_json_key(&j, "read_repair_queue");
    cas_json_u64(&j, repair_queue_length(bal));
    /* Degraded states: writes answered with fewer than `replicas` copies,
     * backends down (their figures above are stale), GC unmarks waiting
     * for a backend to come back. */
    size_t ndown = 0;
    for (size_t i = 0; i < v->n; i++)
        ndown += !v->b[i]->up;
    cas_json_key(&j, "under_replicated_writes");
    cas_json_u64(&j, __atomic_load_n(&bal->ctr.under_replicated_writes, __ATOMIC_RELAXED));
    cas_json_key(&j, "backends_down");
    cas_json_u64(&j, ndown);
    cas_json_key(&j, "gc_unmarks_pending_bytes");
    cas_json_u64(&j, gcdebt_pending_bytes(bal));
    antientropy_status_json(bal, &j);
    cas_json_key(&j, "backends");
    cas_json_begin_array(&j);
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < v->n; i++)
        json_backend(&j, v, i, now);
    cas_json_end_array(&j);
    pthread_mutex_unlock(&bal->lock);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
    view_put(v);
}

static void route_healthz(struct http_req *req)
{
    struct balancer *bal = req->app;
    if (atomic_load(&bal->draining))
        http_reply(req, 503, "text/plain", "draining\n", 9);
    else
        http_reply(req, 200, "text/plain", "ok\n", 3);
}

static void route_ring(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "hash");
    cas_json_string(&j, v->algo ? v->algo->name : "");
    cas_json_key(&j, "replicas");
    cas_json_u64(&j, v->cfg->replicas);
    cas_json_key(&j, "min_replicas");
    cas_json_u64(&j, v->cfg->min_replicas);
    cas_json_key(&j, "backends");
    cas_json_begin_array(&j);
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *be = v->b[i];
        bool member = ring_backend_tokens(v->ring, i) > 0;
        cas_json_begin_object(&j);
        cas_json_key(&j, "url");
        cas_json_string(&j, be->url);
        cas_json_key(&j, "node");
        cas_json_string(&j, be->node);
        cas_json_key(&j, "failure_domain");
        cas_json_string(&j, be->domain);
        cas_json_key(&j, "tokens");
        cas_json_begin_array(&j);
        for (size_t t = 0; member && t < be->ntokens; t++) {
            char hex[17];
            snprintf(hex, sizeof(hex), "%016" PRIx64, be->tokens[t]);
            cas_json_string(&j, hex);
        }
        cas_json_end_array(&j);
        cas_json_end_object(&j);
    }
    pthread_mutex_unlock(&bal->lock);
    cas_json_end_array(&j);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
    view_put(v);
}

static void balancer_metrics(void *app, struct cas_buf *out)
{
    struct balancer *bal = app;
    struct view *v = view_get(bal);
    const struct balancer_counters *c = &bal->ctr;
#define COUNTER(name, help, field)                                                               \
    cas_buf_printf(out, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", \
                   __atomic_load_n(&c->field, __ATOMIC_RELAXED))
    COUNTER("cas_balancer_read_repairs_queued_total", "Read repairs queued.", repairs_queued);
    COUNTER("cas_balancer_read_repairs_done_total", "Read repairs that restored a copy.",
            repairs_done);
    COUNTER("cas_balancer_read_repairs_failed_total", "Read repairs that failed.", repairs_failed);
    COUNTER("cas_balancer_read_repairs_dropped_total", "Read repairs dropped (queue full).",
            repairs_dropped);
    COUNTER("cas_balancer_failovers_total", "Reads that moved on to another backend.", failovers);
    COUNTER("cas_balancer_aborted_streams_total", "Responses aborted after their first byte.",
            aborted_streams);
    COUNTER("cas_balancer_hedged_reads_total",
            "Extra backend requests sent because the first copy was slow to answer.", hedged_reads);
    COUNTER("cas_balancer_hedge_wins_total", "Hedged requests that answered first and served.",
            hedge_wins);
    COUNTER("cas_balancer_corrupt_copies_total", "Copies served by a backend that failed their digest.",
            corrupt_copies);
    COUNTER("cas_balancer_gc_touches_total", "Objects unmarked on every backend during GC.",
            gc_touches);
    COUNTER("cas_balancer_under_replicated_writes_total",
            "Writes answered with fewer copies than replicas (X-CAS-Copies).",
            under_replicated_writes);
#undef COUNTER
    uint64_t qpolls, qfound;
    repair_quarantine_stats(bal, &qpolls, &qfound);
    cas_buf_printf(out,
                   "# HELP cas_balancer_quarantine_polls_total Polls of every backend's list of "
                   "quarantined copies.\n# TYPE cas_balancer_quarantine_polls_total counter\n"
                   "cas_balancer_quarantine_polls_total %" PRIu64 "\n"
                   "# HELP cas_balancer_quarantined_copies_found_total Quarantined copies found "
                   "by those polls (each queued for repair).\n"
                   "# TYPE cas_balancer_quarantined_copies_found_total counter\n"
                   "cas_balancer_quarantined_copies_found_total %" PRIu64 "\n",
                   qpolls, qfound);
    struct tag_cache_stats ts = {0};
    if (bal->tags)
        tag_cache_stats(bal->tags, &ts);
    cas_buf_printf(out,
                   "# HELP cas_balancer_tag_cache_hits_total Whole-object GETs checked against "
                   "the block tags of an earlier verified read instead of hashed.\n"
                   "# TYPE cas_balancer_tag_cache_hits_total counter\n"
                   "cas_balancer_tag_cache_hits_total %" PRIu64 "\n"
                   "# HELP cas_balancer_tag_cache_misses_total Large whole-object GETs hashed "
                   "(no tags kept for them).\n"
                   "# TYPE cas_balancer_tag_cache_misses_total counter\n"
                   "cas_balancer_tag_cache_misses_total %" PRIu64 "\n"
                   "# HELP cas_balancer_tag_cache_evictions_total Objects whose tags were dropped "
                   "to stay within --tag-cache-mb.\n"
                   "# TYPE cas_balancer_tag_cache_evictions_total counter\n"
                   "cas_balancer_tag_cache_evictions_total %" PRIu64 "\n"
                   "# HELP cas_balancer_tag_cache_objects Objects whose block tags are kept.\n"
                   "# TYPE cas_balancer_tag_cache_objects gauge\n"
                   "cas_balancer_tag_cache_objects %" PRIu64 "\n"
                   "# HELP cas_balancer_tag_cache_bytes Memory the kept tags take.\n"
                   "# TYPE cas_balancer_tag_cache_bytes gauge\n"
                   "cas_balancer_tag_cache_bytes %" PRIu64 "\n",
                   ts.hits, ts.misses, ts.evictions, ts.objects, ts.bytes);
    cas_buf_printf(out,
                   "# HELP cas_balancer_read_repair_queue Read repairs waiting or running.\n"
                   "# TYPE cas_balancer_read_repair_queue gauge\n"
                   "cas_balancer_read_repair_queue %zu\n",
                   repair_queue_length(bal));
    cas_buf_printf(out,
                   "# HELP cas_balancer_gc_unmarks_pending_bytes GC unmarks kept for backends "
                   "that missed them.\n"
                   "# TYPE cas_balancer_gc_unmarks_pending_bytes gauge\n"
                   "cas_balancer_gc_unmarks_pending_bytes %zu\n",
                   gcdebt_pending_bytes(bal));
    /* The cluster as the balancer sees it: sums of the figures each backend
     * last reported (backends never probed are left out), under
     * cas_cluster_* so that a sum() over the storageds' own cas_* series
     * and these never mixes the two. Every copy is counted. */
    struct backend_capacity sum;
    cluster_capacity_sum(bal, v, &sum);
#define CLUSTER(name, help, fmt, value)                                                            \
    cas_buf_printf(out, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " " fmt "\n",     \
                   value)
    CLUSTER("cas_cluster_objects",
            "Copies of objects on the backends, not distinct objects: an object with N "
            "copies counts N times (sum of their cas_objects).",
            "%" PRIu64, sum.objects);
    CLUSTER("cas_cluster_object_bytes",
            "Bytes of the objects stored on the backends, every copy counted (sum of their "
            "cas_object_bytes).",
            "%" PRIu64, sum.bytes);
    CLUSTER("cas_cluster_capacity_total_bytes",
            "Size of the backends' stores (sum of their cas_capacity_total_bytes).", "%" PRIu64,
            sum.total);
    CLUSTER("cas_cluster_capacity_available_bytes",
            "Bytes still available on the backends (sum of their cas_capacity_available_bytes).",
            "%" PRIu64, sum.available);
    CLUSTER("cas_cluster_unreclaimed_bytes",
            "Bytes compaction would give back on the backends (sum of their "
            "cas_unreclaimed_bytes).",
            "%" PRIu64, sum.unreclaimed);
    CLUSTER("cas_cluster_gc_garbage_bytes",
            "Bytes the current GC cycle would remove on the backends (sum of their "
            "cas_gc_garbage_bytes).",
            "%" PRIu64, sum.garbage);
    pthread_mutex_lock(&bal->lock);
    CLUSTER("cas_cluster_gc_active",
            "1 while a cluster GC cycle begun through this balancer is active.", "%d",
            bal->gc_active ? 1 : 0);
    CLUSTER("cas_cluster_compaction_running",
            "1 while a compaction started through this balancer runs on the backends.", "%d",
            bal->compact_running ? 1 : 0);
#undef CLUSTER
    /* Per backend: the same two labels on every series. */
#define BACKEND_LABELS(b)                                                                          \
    do {                                                                                           \
        cas_buf_puts(out, "{backend=\"");                                                          \
        prom_label_value(out, (b)->url);                                                           \
        cas_buf_puts(out, "\",failure_domain=\"");                                                 \
        prom_label_value(out, (b)->domain ? (b)->domain : "");                                     \
        cas_buf_puts(out, "\"} ");                                                                 \
    } while (0)
    cas_buf_puts(out, "# HELP cas_balancer_backend_up Whether a backend answers its probes.\n"
                      "# TYPE cas_balancer_backend_up gauge\n");
    for (size_t i = 0; i < v->n; i++) {
        cas_buf_puts(out, "cas_balancer_backend_up");
        BACKEND_LABELS(v->b[i]);
        cas_buf_printf(out, "%d\n", v->b[i]->up ? 1 : 0);
    }
    cas_buf_puts(out, "# HELP cas_balancer_backend_latency_seconds Latency of the last probe "
                      "(NaN while the backend is down).\n"
                      "# TYPE cas_balancer_backend_latency_seconds gauge\n");
    for (size_t i = 0; i < v->n; i++) {
        cas_buf_puts(out, "cas_balancer_backend_latency_seconds");
        BACKEND_LABELS(v->b[i]);
        if (v->b[i]->up)
            cas_buf_printf(out, "%.6f\n", v->b[i]->latency_ms / 1000);
        else
            cas_buf_puts(out, "NaN\n");
    }
    uint64_t now = cas_now_ns();
    cas_buf_puts(out, "# HELP cas_balancer_backend_last_ok_age_seconds Time since the backend "
                      "last answered a probe (its figures are that old).\n"
                      "# TYPE cas_balancer_backend_last_ok_age_seconds gauge\n");
    for (size_t i = 0; i < v->n; i++)
        if (v->b[i]->last_ok_ns) {
            cas_buf_puts(out, "cas_balancer_backend_last_ok_age_seconds");
            BACKEND_LABELS(v->b[i]);
            cas_buf_printf(out, "%.3f\n", (double)(now - v->b[i]->last_ok_ns) / 1e9);
        }
#undef BACKEND_LABELS
    pthread_mutex_unlock(&bal->lock);
    antientropy_metrics(bal, out);
    view_put(v);
}

static void route_metrics(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct cas_buf b;
    cas_buf_init(&b);
    http_metrics_render(bal->srv, &b);
    http_reply_buf(req, 200, "text/plain; version=0.0.4", &b);
}

static const struct http_route balancer_routes[] = {
    {"PUT", "/objects/*", proxy_put, HTTP_UPLOAD, "put", NULL},
    {"GET", "/objects/*", proxy_get, HTTP_READ, "get", NULL},
    {"DELETE", "/objects/*", proxy_delete, 0, "delete", NULL},
    {"POST", "/objects/missing", cluster_missing, 0, "missing", NULL},
    {"POST", "/objects", proxy_post, HTTP_UPLOAD_FORM, "post", NULL},
    {"GET", "/objects", cluster_list, 0, "list", "state min_size max_size"},
    {"POST", "/gc/begin", cluster_gc_begin, 0, "gc_begin", NULL},
    {"POST", "/gc/mark", cluster_gc_mark, 0, "gc_mark", NULL},
    {"POST", "/gc/end", cluster_gc_end, 0, "gc_end", NULL},
    {"GET", "/gc", cluster_gc_status, HTTP_QUIET, "gc", NULL},
    {"POST", "/compact", cluster_compact, 0, "compact", NULL},
    {"GET", "/compact", cluster_compact_status, HTTP_QUIET, "compact_status", NULL},
    {"GET", "/capacity", cluster_capacity, HTTP_QUIET, "capacity", NULL},
    {"GET", "/ring", route_ring, HTTP_QUIET, "ring", NULL},
    {"GET", "/status", route_status, HTTP_QUIET, "status", NULL},
    {"GET", "/status/", route_status, HTTP_QUIET, "status", NULL},
    {"GET", "/metrics", route_metrics, HTTP_PUBLIC | HTTP_QUIET, "metrics", NULL},
    {"GET", "/healthz", route_healthz, HTTP_PUBLIC | HTTP_QUIET, "healthz", NULL},
    {"GET", "/", page_index, HTTP_PUBLIC, "index", NULL},
    {"POST", "/", proxy_post_cask, HTTP_UPLOAD_FORM, "cask_post", NULL},
    {"GET", "/file/*/", proxy_get, HTTP_READ, "cask_file", NULL},
    {"GET", "/file/*", proxy_get, HTTP_READ, "cask_file", NULL},
    /* A key with a slash in it (after URL decoding) is still a bad key:
     * 400 naming it, as a storaged answers, not 404 "no such route". */
    {"GET", "/objects/**", proxy_bad_key, HTTP_READ, "bad_key", NULL},
    {"PUT", "/objects/**", proxy_bad_key, 0, "bad_key", NULL},
    {"DELETE", "/objects/**", proxy_bad_key, 0, "bad_key", NULL},
    {"GET", "/file/**", proxy_bad_key, HTTP_READ, "bad_key", NULL},
};

int routes_start_server(struct balancer *bal, char *err, size_t errlen)
{
    struct view *v = view_get(bal);
    struct http_server_config cfg = {
        .listen = bal->listen,
        .routes = balancer_routes,
        .nroutes = sizeof(balancer_routes) / sizeof(balancer_routes[0]),
        .app = bal,
        .token = v->token,
        .metrics = balancer_metrics,
        .max_connections = bal->opt.max_connections,
        .max_client_connections = bal->opt.max_client_connections,
        .header_timeout_s = bal->opt.header_timeout_s,
        .idle_timeout_s = bal->opt.idle_timeout_s,
        .max_upload = bal->opt.max_object_size,
        .tls = bal->opt.tls,
    };
    /* The server keeps the token pointer: keep the first view's token for
     * the process's life (a changed token_file or auth_reads needs a
     * restart). A copy, never cut: tokens are up to CAS_TOKEN_MAX bytes. */
    static char *token_copy;
    if (v->token) {
        free(token_copy);
        token_copy = strdup(v->token);
        if (!token_copy) {
            view_put(v);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        cfg.token = token_copy;
    }
    /* --auth-reads (CAS_AUTH_READS) or the config's auth_reads: true. */
    cfg.auth_reads = bal->opt.auth_reads || v->cfg->auth_reads;
    if (cfg.auth_reads && !cfg.token) {
        view_put(v);
        snprintf(err, errlen, "auth_reads needs a token: set token_file in %s",
                 bal->opt.config_path);
        return -EINVAL;
    }
    view_put(v);
    int rc = http_server_start(&cfg, &bal->srv, err, errlen);
    if (rc == 0)
        log_info("listening on %s://%s", bal->opt.tls ? "https" : "http", bal->listen);
    return rc;
}
