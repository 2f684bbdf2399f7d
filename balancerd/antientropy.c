/*
 * antientropy.c - the background rebalance loop (see antientropy.h).
 *
 * Each pass builds an rb_cluster from the current view: every backend with
 * the tokens the balancer places by (so homes are exactly the balancer's,
 * including for a backend that is down now but whose ring was learned
 * earlier), its health from the last probe, and the view's token. The
 * engine then lists, plans, copies and removes under its safety rules. The
 * figures of the pass in progress and of the last one are kept here for
 * /status and /metrics. One balancer per process, so the state is static.
 */
#include "antientropy.h"
#include "log.h"
#include "rebalance.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ae_state {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool started;
    volatile int stop;
    /* What the config says (refreshed each check). */
    uint64_t interval_s;
    double max_mbps;
    /* The pass in progress, or the last one. */
    bool running;
    uint64_t passes;
    double last_start; /* unix seconds; 0: never */
    double last_end;
    struct rb_stats cur, last;
    char last_error[256];
    /* Totals over every pass. */
    uint64_t copies_total, removals_total, copy_failures_total, bytes_total, objects_total;
};

static struct ae_state ae = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_progress(void *cls, const struct rb_stats *s)
{
    (void)cls;
    pthread_mutex_lock(&ae.lock);
    ae.cur = *s;
    pthread_mutex_unlock(&ae.lock);
}

static void on_event(void *cls, bool warning, const char *msg)
{
    (void)cls;
    if (warning)
        log_warn("anti-entropy: %s", msg);
    else
        log_debug("anti-entropy: %s", msg);
}

/* The cluster as the view sees it; NULL with err when it cannot be built. */
static struct rb_cluster *cluster_from_view(struct balancer *bal, const struct view *v, char *err,
                                            size_t errlen)
{
    struct rb_cluster *c = rb_cluster_new(v->n, v->cfg->replicas, v->token);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = 0;
    /* TLS to https:// backends, as the view's own requests (upstream.c). */
    const struct view_conf *tc = v->conf;
    if (tc && tc->ca_pem && !(c->ca_pem = strndup(tc->ca_pem, tc->ca_len)))
        rc = -ENOMEM;
    c->ca_len = tc && c->ca_pem ? tc->ca_len : 0;
    if (tc && tc->client_cert_pem && tc->client_key_pem) {
        c->cert_pem = strndup(tc->client_cert_pem, tc->client_cert_len);
        c->key_pem = strndup(tc->client_key_pem, tc->client_key_len);
        c->cert_len = tc->client_cert_len;
        c->key_len = tc->client_key_len;
        if (!c->cert_pem || !c->key_pem)
            rc = -ENOMEM;
    }
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n && rc == 0; i++) {
        const struct backend *b = v->b[i];
        bool member = ring_backend_tokens(v->ring, i) > 0;
        bool same_hash = b->algo == v->algo;
        bool up = b->up && same_hash;
        const char *why = !b->up ? b->last_error : !same_hash ? "another hash" : "";
        if (up && b->read_only)
            why = "read-only";
        rc = rb_cluster_set(c, i, b->url, b->domain, b->node, member ? b->tokens : NULL,
                            member ? b->ntokens : 0, up, up && !b->read_only, why);
    }
    pthread_mutex_unlock(&bal->lock);
    c->algo = v->algo;
    if (rc == 0)
        rc = rb_cluster_finish(c, err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    if (rc < 0) {
        rb_cluster_free(c);
        return NULL;
    }
    return c;
}

static void run_pass(struct balancer *bal, double max_mbps)
{
    struct view *v = view_get(bal);
    char err[512] = "";
    struct rb_stats st;
    memset(&st, 0, sizeof(st));
    pthread_mutex_lock(&ae.lock);
    ae.running = true;
    ae.last_start = unix_now();
    memset(&ae.cur, 0, sizeof(ae.cur));
    pthread_mutex_unlock(&ae.lock);

    int rc = -EAGAIN;
    struct rb_cluster *c = v->algo ? cluster_from_view(bal, v, err, sizeof(err)) : NULL;
    if (!v->algo)
        snprintf(err, sizeof(err), "no backend has answered yet");
    if (c) {
        struct rb_options o = {
            .concurrency = AE_CONCURRENCY,
            .max_mbps = max_mbps,
            .connect_timeout_ms = bal->opt.connect_timeout_ms,
            .io_timeout_ms = bal->opt.io_timeout_ms,
            .stop = &ae.stop,
            .progress = on_progress,
            .event = on_event,
        };
        rc = rebalance_run(c, &o, &st, err, sizeof(err));
        rb_cluster_free(c);
    }
    view_put(v);

    pthread_mutex_lock(&ae.lock);
    ae.running = false;
    ae.passes++;
    ae.last_end = unix_now();
    ae.last = st;
    snprintf(ae.last_error, sizeof(ae.last_error), "%s", rc < 0 ? err : "");
    ae.copies_total += st.copies_made;
    ae.removals_total += st.removals_made;
    ae.copy_failures_total += st.copies_failed;
    ae.bytes_total += st.bytes_copied;
    ae.objects_total += st.objects;
    pthread_mutex_unlock(&ae.lock);
    if (rc < 0 && rc != -EINTR)
        log_warn("anti-entropy pass failed: %s", err);
    else if (st.copies_made || st.removals_made || st.copies_failed)
        log_info("anti-entropy pass: %" PRIu64 " objects, %" PRIu64 " copies made, %" PRIu64
                 " removed, %" PRIu64 " copies failed, %.1f s",
                 st.objects, st.copies_made, st.removals_made, st.copies_failed, st.seconds);
}

/* Waits up to secs (or until stopped); returns true when stopping. */
static bool wait_s(double secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(secs * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&ae.lock);
    if (!ae.stop)
        pthread_cond_timedwait(&ae.cond, &ae.lock, &ts);
    bool stop = ae.stop;
    pthread_mutex_unlock(&ae.lock);
    return stop;
}

static void *ae_main(void *arg)
{
    struct balancer *bal = arg;
    double next = 0; /* monotonic-ish: unix seconds of the next pass */
    bool first = true;
    for (;;) {
        struct view *v = view_get(bal);
        uint64_t interval = v->cfg->ae_interval_s;
        double mbps = v->cfg->ae_max_mbps > 0 ? v->cfg->ae_max_mbps : AE_DEFAULT_MAX_MBPS;
        view_put(v);
        pthread_mutex_lock(&ae.lock);
        ae.interval_s = interval;
        ae.max_mbps = interval ? mbps : 0;
        pthread_mutex_unlock(&ae.lock);
        double now = unix_now();
        if (interval && first) {
            /* Let the first probes learn every backend's ring. */
            first = false;
            next = now + 3.0 * bal->opt.probe_interval_ms / 1000.0;
        }
        if (interval && now >= next) {
            next = now + (double)interval;
            run_pass(bal, mbps);
            continue;
        }
        if (!interval)
            first = true;
        double wait = interval ? next - now : 1.0;
        if (wait_s(wait > 1.0 ? 1.0 : wait))
            break;
    }
    return NULL;
}

int antientropy_start(struct balancer *bal, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ae.cond, &ca);
    pthread_condattr_destroy(&ca);
    ae.stop = 0;
    int rc = pthread_create(&ae.thread, NULL, ae_main, bal);
    if (rc) {
        snprintf(err, errlen, "cannot start the anti-entropy thread: %s", strerror(rc));
        return -rc;
    }
    ae.started = true;
    return 0;
}

void antientropy_stop(struct balancer *bal)
{
    (void)bal;
    if (!ae.started)
        return;
    pthread_mutex_lock(&ae.lock);
    ae.stop = 1;
    pthread_cond_broadcast(&ae.cond);
    pthread_mutex_unlock(&ae.lock);
    pthread_join(ae.thread, NULL);
    ae.started = false;
}

static void stats_json(struct cas_json *j, const struct rb_stats *s)
{
#define U64(name, v)                                                                               \
    do {                                                                                           \
        cas_json_key(j, name);                                                                     \
        cas_json_u64(j, v);                                                                        \
    } while (0)
    U64("objects_checked", s->objects);
    U64("copies_made", s->copies_made);
    U64("bytes_copied", s->bytes_copied);
    U64("copies_removed", s->removals_made);
    U64("copies_failed", s->copies_failed);
    U64("removals_failed", s->removals_failed);
    U64("copies_kept", s->removals_held + s->removals_skipped);
    U64("backends_down", s->backends_down);
#undef U64
    cas_json_key(j, "seconds");
    cas_json_double(j, s->seconds);
}

void antientropy_status_json(struct balancer *bal, struct cas_json *j)
{
    (void)bal;
    pthread_mutex_lock(&ae.lock);
    cas_json_key(j, "anti_entropy");
    cas_json_begin_object(j);
    cas_json_key(j, "enabled");
    cas_json_bool(j, ae.started && ae.interval_s > 0);
    cas_json_key(j, "interval");
    cas_json_u64(j, ae.interval_s);
    cas_json_key(j, "max_mbps");
    cas_json_double(j, ae.max_mbps);
    cas_json_key(j, "running");
    cas_json_bool(j, ae.running);
    cas_json_key(j, "passes");
    cas_json_u64(j, ae.passes);
    if (ae.running) {
        cas_json_key(j, "current_pass");
        cas_json_begin_object(j);
        cas_json_key(j, "started");
        cas_json_u64(j, (uint64_t)ae.last_start);
        stats_json(j, &ae.cur);
        cas_json_end_object(j);
    }
    cas_json_key(j, "last_pass");
    if (ae.passes) {
        cas_json_begin_object(j);
        cas_json_key(j, "ended");
        cas_json_u64(j, (uint64_t)ae.last_end);
        stats_json(j, &ae.last);
        cas_json_key(j, "error");
        if (ae.last_error[0])
            cas_json_string(j, ae.last_error);
        else
            cas_json_null(j);
        cas_json_end_object(j);
    } else {
        cas_json_null(j);
    }
    cas_json_end_object(j);
    pthread_mutex_unlock(&ae.lock);
}

void antientropy_metrics(struct balancer *bal, struct cas_buf *out)
{
    (void)bal;
    pthread_mutex_lock(&ae.lock);
#define METRIC(name, type, help, fmt, v)                                                           \
    cas_buf_printf(out, "# HELP " name " " help "\n# TYPE " name " " type "\n" name " " fmt "\n", v)
    METRIC("cas_balancer_antientropy_enabled", "gauge", "Whether background anti-entropy is on.",
           "%d", ae.started && ae.interval_s > 0 ? 1 : 0);
    METRIC("cas_balancer_antientropy_running", "gauge", "Whether an anti-entropy pass runs now.",
           "%d", ae.running ? 1 : 0);
    METRIC("cas_balancer_antientropy_passes_total", "counter", "Anti-entropy passes finished.",
           "%" PRIu64, ae.passes);
    METRIC("cas_balancer_antientropy_last_pass_timestamp_seconds", "gauge",
           "When the last anti-entropy pass ended (unix time; 0: never).", "%.3f", ae.last_end);
    METRIC("cas_balancer_antientropy_last_pass_seconds", "gauge",
           "How long the last anti-entropy pass took.", "%.3f", ae.last.seconds);
    METRIC("cas_balancer_antientropy_last_pass_objects", "gauge",
           "Objects checked by the last anti-entropy pass.", "%" PRIu64, ae.last.objects);
    METRIC("cas_balancer_antientropy_last_pass_copies_made", "gauge",
           "Copies made by the last anti-entropy pass.", "%" PRIu64, ae.last.copies_made);
    METRIC("cas_balancer_antientropy_last_pass_copies_removed", "gauge",
           "Copies removed by the last anti-entropy pass.", "%" PRIu64, ae.last.removals_made);
    METRIC("cas_balancer_antientropy_objects_checked_total", "counter",
           "Objects checked by anti-entropy, every pass counted.", "%" PRIu64, ae.objects_total);
    METRIC("cas_balancer_antientropy_copies_made_total", "counter", "Copies made by anti-entropy.",
           "%" PRIu64, ae.copies_total);
    METRIC("cas_balancer_antientropy_copies_removed_total", "counter",
           "Copies outside their home removed by anti-entropy.", "%" PRIu64, ae.removals_total);
    METRIC("cas_balancer_antientropy_copy_failures_total", "counter",
           "Anti-entropy copies that failed.", "%" PRIu64, ae.copy_failures_total);
    METRIC("cas_balancer_antientropy_bytes_copied_total", "counter",
           "Bytes copied by anti-entropy.", "%" PRIu64, ae.bytes_total);
#undef METRIC
    pthread_mutex_unlock(&ae.lock);
}
