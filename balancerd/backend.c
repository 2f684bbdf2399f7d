/*
 * backend.c - the backend table, the views built from it, and the probes.
 *
 * Backends are created from the config and shared by successive views; a
 * SIGHUP builds new backend objects but carries over what was learned about
 * each URL that stays. The probe thread asks every backend, in parallel,
 * for /status (up, read-only), /gc, /capacity and /compact each interval,
 * and for /ring until it knows the backend's node id and tokens (and again
 * every minute, so a node that changed behind a URL is noticed). When a
 * backend's tokens change, a new view with a new ring is published.
 */
#include "balancer.h"
#include "log.h"
#include "ringjson.h"
#include "tls.h"
#include "token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- views -------------------------------------------------------------- */

static void backend_put(struct backend *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(b->url);
    free(b->domain);
    free(b->tokens);
    free(b);
}

struct view *view_get(struct balancer *bal)
{
    pthread_mutex_lock(&bal->lock);
    struct view *v = bal->view;
    __atomic_add_fetch(&v->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&bal->lock);
    return v;
}

static void view_conf_free_tls(struct view_conf *conf)
{
    free(conf->ca_pem);
    free(conf->client_cert_pem);
    if (conf->client_key_pem)
        explicit_bzero(conf->client_key_pem, conf->client_key_len);
    free(conf->client_key_pem);
}

/* Reads the config's TLS files whole (tls.h: cas_pem_read; the client key
 * must not be readable by group or others). 0 or -errno with a message. */
static int read_tls_files(const struct config *cfg, struct view_conf *conf, char *err,
                          size_t errlen)
{
    char msg[1024];
    int rc = 0;
    if (cfg->ca_file)
        rc = cas_pem_read_ca(cfg->ca_file, "ca_file", &conf->ca_pem, &conf->ca_len, msg,
                             sizeof(msg));
    if (rc == 0 && cfg->tls_client_cert)
        rc = cas_pem_read(cfg->tls_client_cert, "tls_client_cert", false, &conf->client_cert_pem,
                          &conf->client_cert_len, msg, sizeof(msg));
    if (rc == 0 && cfg->tls_client_key)
        rc = cas_pem_read(cfg->tls_client_key, "tls_client_key", true, &conf->client_key_pem,
                          &conf->client_key_len, msg, sizeof(msg));
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", cfg->path, msg);
    return rc;
}

void view_put(struct view *v)
{
    if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < v->n; i++)
        backend_put(v->b[i]);
    free(v->b);
    ring_free(v->ring);
    if (__atomic_sub_fetch(&v->conf->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        config_free(v->conf->cfg);
        free(v->conf->token);
        view_conf_free_tls(v->conf);
        free(v->conf);
    }
    free(v);
}

/* The cluster's hash: the first backend in config order that told us. */
static const struct cas_hash_algo *cluster_algo(struct backend **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]->algo && b[i]->ntokens)
            return b[i]->algo;
    return NULL;
}

/* Is b a ring member: tokens known, the cluster's hash, and no earlier
 * backend claiming the same node id? Caller holds the lock. */
static bool ring_member(struct backend **b, size_t n, size_t i, const struct cas_hash_algo *algo)
{
    if (!b[i]->ntokens || b[i]->algo != algo)
        return false;
    for (size_t j = 0; j < i; j++)
        if (b[j]->ntokens && !strcmp(b[j]->node, b[i]->node))
            return false;
    (void)n;
    return true;
}

/* Builds a view over backends b and conf (references taken on both).
 * Caller holds bal->lock. */
static struct view *view_build(struct balancer *bal, struct view_conf *conf, struct backend **b,
                               size_t n)
{
    struct view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->refs = 1;
    v->conf = conf;
    v->cfg = conf->cfg;
    v->token = conf->token;
    v->n = n;
    v->b = calloc(n ? n : 1, sizeof(*v->b));
    v->ring = ring_new(n);
    if (!v->b || !v->ring) {
        free(v->b);
        ring_free(v->ring);
        free(v);
        return NULL;
    }
    v->algo = cluster_algo(b, n);
    for (size_t i = 0; i < n; i++) {
        v->b[i] = b[i];
        __atomic_add_fetch(&b[i]->refs, 1, __ATOMIC_ACQ_REL);
        bool member = ring_member(b, n, i, v->algo);
        ring_add_backend(v->ring, i, b[i]->node, b[i]->domain, member ? b[i]->tokens : NULL,
                         member ? b[i]->ntokens : 0);
    }
    ring_finish(v->ring);
    __atomic_add_fetch(&conf->refs, 1, __ATOMIC_ACQ_REL);
    v->generation = ++bal->generation;
    return v;
}

/* Replaces the current view with one over the same config and backends,
 * after tokens changed. Caller holds the lock. */
static void view_rebuild_locked(struct balancer *bal)
{
    struct view *old = bal->view;
    struct view *v = view_build(bal, old->conf, old->b, old->n);
    if (!v)
        return;
    bal->view = v;
    view_put(old);
}

void backend_health(struct balancer *bal, const struct view *v, bool *writable, bool *up)
{
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *b = v->b[i];
        bool ok = b->up && b->algo == v->algo && ring_backend_tokens(v->ring, i) > 0;
        if (up)
            up[i] = b->up;
        if (writable)
            writable[i] = ok && !b->read_only;
    }
    pthread_mutex_unlock(&bal->lock);
}

void backend_known_down(struct balancer *bal, const struct view *v, bool *down)
{
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++)
        down[i] = v->b[i]->probed && !v->b[i]->up;
    pthread_mutex_unlock(&bal->lock);
}

void backend_note_failure(struct balancer *bal, struct backend *b, const char *what)
{
    pthread_mutex_lock(&bal->lock);
    snprintf(b->last_error, sizeof(b->last_error), "%s", what);
    pthread_mutex_unlock(&bal->lock);
}

/* ---- config ------------------------------------------------------------- */

static int read_token(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path)
        return 0;
    return cas_token_read(path, out, err, errlen);
}

/* Loads the config and makes a new view, reusing old backends' knowledge
 * for the URLs that remain. */
static int load_view(struct balancer *bal, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    int rc = config_load(bal->opt.config_path, &cfg, err, errlen);
    if (rc < 0)
        return rc;
    char *token = NULL;
    rc = read_token(cfg->token_file, &token, err, errlen);
    if (rc < 0) {
        config_free(cfg);
        return rc;
    }
    struct backend **b = calloc(cfg->nbackends, sizeof(*b));
    struct view_conf *conf = calloc(1, sizeof(*conf));
    if (!b || !conf) {
        free(b);
        free(conf);
        config_free(cfg);
        free(token);
        return -ENOMEM;
    }
    conf->cfg = cfg;
    conf->token = token;
    if ((rc = read_tls_files(cfg, conf, err, errlen)) < 0) {
        view_conf_free_tls(conf);
        free(b);
        free(conf);
        config_free(cfg);
        free(token);
        return rc;
    }
    pthread_mutex_lock(&bal->lock);
    struct view *old = bal->view;
    for (size_t i = 0; i < cfg->nbackends; i++) {
        struct backend *prev = NULL;
        for (size_t j = 0; old && j < old->n; j++)
            if (!strcmp(old->b[j]->url, cfg->backends[i].url))
                prev = old->b[j];
        if (prev && !strcmp(prev->domain, cfg->backends[i].domain)) {
            b[i] = prev;
            __atomic_add_fetch(&prev->refs, 1, __ATOMIC_ACQ_REL);
            continue;
        }
        b[i] = calloc(1, sizeof(**b));
        if (!b[i] || !(b[i]->url = strdup(cfg->backends[i].url)) ||
            !(b[i]->domain = strdup(cfg->backends[i].domain))) {
            pthread_mutex_unlock(&bal->lock);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM; /* leaks on OOM at startup: main exits */
        }
        b[i]->refs = 1;
        snprintf(b[i]->last_error, sizeof(b[i]->last_error), "not probed yet");
        if (prev) {
            /* Same URL, new failure domain: keep what it told us. */
            snprintf(b[i]->node, sizeof(b[i]->node), "%s", prev->node);
            b[i]->algo = prev->algo;
            b[i]->up = prev->up;
            b[i]->probed = prev->probed;
            if (prev->ntokens && (b[i]->tokens = malloc(prev->ntokens * sizeof(uint64_t)))) {
                memcpy(b[i]->tokens, prev->tokens, prev->ntokens * sizeof(uint64_t));
                b[i]->ntokens = prev->ntokens;
            }
        }
    }
    struct view *v = view_build(bal, conf, b, cfg->nbackends);
    for (size_t i = 0; i < cfg->nbackends; i++)
        backend_put(b[i]); /* the view holds its own references */
    free(b);
    if (!v) {
        pthread_mutex_unlock(&bal->lock);
        config_free(cfg);
        free(token);
        view_conf_free_tls(conf);
        free(conf);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    bal->view = v;
    pthread_mutex_unlock(&bal->lock);
    view_put(old);
    return 0;
}

int balancer_reload(struct balancer *bal, char *err, size_t errlen)
{
    int rc = load_view(bal, err, errlen);
    if (rc == 0) {
        pthread_mutex_lock(&bal->lock);
        pthread_cond_broadcast(&bal->probe_cond); /* probe the new backends now */
        pthread_mutex_unlock(&bal->lock);
    }
    return rc;
}

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
    const struct cas_hash_algo *algo = cluster_algo(v->b, n);
    for (size_t i = 0; i < n; i++) {
        struct backend *b = v->b[i];
        if (b->algo && algo && b->algo != algo) {
            snprintf(b->last_error, sizeof(b->last_error),
                     "refused: its keys are %s, the cluster's are %s", b->algo->name, algo->name);
        }
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
        gc_touch_flush_recent(bal, v);
        pthread_mutex_lock(&bal->lock);
        bal->gc_seen_id = gc_id;
        pthread_mutex_unlock(&bal->lock);
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
        if (gc && gcdebt_pending_bytes(bal)) {
            /* Unmarks a backend missed while it was away: deliver them as
             * soon as it is back, not only at gc/end. */
            char err[512];
            struct view *v = view_get(bal);
            gcdebt_settle(bal, v, gc_id, err, sizeof(err));
            view_put(v);
        }
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

/* ---- lifetime ----------------------------------------------------------- */

int balancer_init(struct balancer *bal, const struct balancer_options *opt, char *err,
                  size_t errlen)
{
    memset(bal, 0, sizeof(*bal));
    bal->opt = *opt;
    if (!bal->opt.connect_timeout_ms)
        bal->opt.connect_timeout_ms = 2000;
    if (!bal->opt.first_byte_timeout_ms)
        bal->opt.first_byte_timeout_ms = 10000;
    if (!bal->opt.io_timeout_ms)
        bal->opt.io_timeout_ms = 30000;
    if (!bal->opt.probe_interval_ms)
        bal->opt.probe_interval_ms = 1000;
    if (!bal->opt.spool_dir)
        bal->opt.spool_dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    bal->start_ns = cas_now_ns();
    pthread_mutex_init(&bal->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&bal->probe_cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = load_view(bal, err, errlen);
    if (rc < 0)
        return rc;
    const char *listen = opt->listen ? opt->listen
                         : bal->view->cfg->listen ? bal->view->cfg->listen
                                                  : "127.0.0.1:6001";
    snprintf(bal->listen, sizeof(bal->listen), "%s", listen);
    return 0;
}

int balancer_start(struct balancer *bal, char *err, size_t errlen)
{
    int rc = gcdebt_init(bal);
    if (rc == 0)
        rc = repair_init(bal);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the repair thread: %s", strerror(-rc));
        return rc;
    }
    rc = pthread_create(&bal->probe_thread, NULL, probe_main, bal);
    if (rc) {
        snprintf(err, errlen, "cannot start the probe thread: %s", strerror(rc));
        return -rc;
    }
    bal->probe_started = true;
    return routes_start_server(bal, err, errlen);
}

void balancer_stop(struct balancer *bal)
{
    if (bal->srv)
        http_server_stop(bal->srv, 10000);
    bal->srv = NULL;
    pthread_mutex_lock(&bal->lock);
    bal->stopping = true;
    pthread_cond_broadcast(&bal->probe_cond);
    pthread_mutex_unlock(&bal->lock);
    if (bal->probe_started)
        pthread_join(bal->probe_thread, NULL);
    repair_stop(bal);
    gcdebt_free(bal);
    if (bal->compact_thread_joinable)
        pthread_join(bal->compact_thread, NULL);
    view_put(bal->view);
    bal->view = NULL;
}
