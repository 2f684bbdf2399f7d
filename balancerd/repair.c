/*
 * repair.c - read repair and quarantine repair.
 *
 * Read repair: when a home backend answered 404 for an object, or served a
 * copy that failed its digest, the request that noticed queues (key, URL of
 * the backend to fix) here, after serving its client. One worker thread
 * takes entries in order, reads the object from another backend (in read
 * order) and PUTs it to the one that lacked it as a copy between replicas
 * (PUT ?replica=1, through common/copy.c, the copy path the rebalance and
 * anti-entropy use too): the copier and the storaged both check the digest, and
 * refuses the copy (410) when a client deleted the key there, so a repair
 * racing a DELETE never brings the object back. The queue is bounded: when
 * it is full, new entries are dropped and counted, never waited for.
 *
 * Quarantine repair: a thread asks every backend that is up and writable, every
 * `quarantine_interval` (default 15 s), for the keys of the copies it took
 * out of service as corrupt (GET /quarantine) and queues a repair of each;
 * the storaged forgets the key once a good copy is stored. With several
 * balancers each may copy the same key: the second PUT finds the object
 * stored and changes nothing.
 *
 * Repair layer (repair.h): it uses the transport and the view; the GC touch
 * log that used to live here is gctouch.c.
 */
#define _GNU_SOURCE
#include "repair.h"
#include "upstream.h"
#include "view.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPAIR_QUEUE_MAX 1024

struct repair_entry {
    struct cas_key key;
    char url[512];
};

struct repair_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct repair_entry *q;
    size_t head, len;
    bool stop;
    volatile int halt; /* stop, for a copy in flight (copy.h's stop flag) */
    pthread_t thread;
    bool started;
    pthread_t qthread; /* the quarantine poller */
    bool qstarted;
    uint64_t qpolls, qfound; /* polls done; quarantined copies seen (under lock) */
};

/* copy.h's target_down for repair_copy: the probes' verdict on the
 * target's backend. */
struct target_health {
    struct balancer *bal;
    const struct view *v;
    size_t backend;
};

static bool target_known_down(void *cls)
{
    struct target_health *h = cls;
    bool down[h->v->n ? h->v->n : 1];
    backend_known_down(h->bal, h->v, down);
    return down[h->backend];
}

int repair_copy(struct balancer *bal, const struct view *v, struct cas_copier *cp,
                const char *src_url, const char *dst_url, const struct cas_key *key,
                bool client_write, bool no_sync, const char *put_header, volatile int *stop,
                struct cas_copy_result *res)
{
    /* The view's way to its backends (token, TLS), as upstream.c's. */
    const struct view_conf *tc = v->conf;
    struct cas_ctl_opts ctl = {
        .token = v->token,
        .connect_timeout_ms = (long)bal->opt.connect_timeout_ms,
        .user_agent = "ca-cas-balancerd/" CAS_VERSION,
    };
    if (tc) {
        ctl.ca_pem = tc->ca_pem;
        ctl.ca_len = tc->ca_len;
        ctl.cert_pem = tc->client_cert_pem;
        ctl.cert_len = tc->client_cert_len;
        ctl.key_pem = tc->client_key_pem;
        ctl.key_len = tc->client_key_len;
    }
    struct cas_copy_options o = {
        .algo = key->algo,
        .ctl = &ctl,
        .stall_timeout_ms = bal->opt.io_timeout_ms,
        .head_timeout_ms = bal->opt.first_byte_timeout_ms,
        .stop = stop,
        .client_write = client_write,
        .no_sync = no_sync,
        .put_header = put_header,
    };
    /* A target the probes find down is given up (as fanout.c drops one). */
    struct target_health th = {bal, v, v->n};
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->b[i]->url, dst_url))
            th.backend = i;
    if (th.backend < v->n) {
        o.target_down = target_known_down;
        o.target_down_cls = &th;
    }
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(key, hex);
    return cas_copy_object(cp, &o, src_url, dst_url, hex, -1, res);
}

/* Copies key from some backend other than target_url to target_url
 * (repair_copy). A failure on the source's side (it lacks the copy, sent
 * wrong bytes, stalled) moves on to the next source in read order; an
 * answer from the target ends the attempt. */
static int repair_one(struct balancer *bal, struct repair_queue *rq, struct cas_copier *cp,
                      const struct repair_entry *e, char *err, size_t errlen)
{
    struct view *v = view_get(bal);
    size_t order[v->n ? v->n : 1], nhome = 0;
    size_t n = ring_read_order(v->ring, ring_position(&e->key), v->cfg->replicas, order, &nhome);
    bool up[v->n ? v->n : 1];
    backend_health(bal, v, NULL, up);
    int target = -1;
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->b[i]->url, e->url))
            target = (int)i;
    if (target < 0) {
        view_put(v);
        snprintf(err, errlen, "backend no longer configured");
        return -ENOENT;
    }
    int rc = -ENOENT;
    snprintf(err, errlen, "no other backend has it");
    for (size_t i = 0; i < n; i++) {
        size_t b = order[i];
        if ((int)b == target || !up[b])
            continue;
        struct cas_copy_result res;
        rc = repair_copy(bal, v, cp, v->b[b]->url, e->url, &e->key, false, false, NULL, &rq->halt,
                         &res);
        if (rc < 0)
            snprintf(err, errlen, "%s", res.error);
        if (rc == 0 || res.side != CAS_COPY_SOURCE)
            break;
    }
    view_put(v);
    return rc;
}

static void *repair_main(void *arg)
{
    struct balancer *bal = arg;
    struct repair_queue *rq = bal->repair;
    struct cas_copier *cp = cas_copier_new(); /* NULL: each copy makes its own */
    for (;;) {
        pthread_mutex_lock(&rq->lock);
        while (!rq->stop && rq->len == 0)
            pthread_cond_wait(&rq->cond, &rq->lock);
        if (rq->stop) {
            pthread_mutex_unlock(&rq->lock);
            cas_copier_free(cp);
            return NULL;
        }
        struct repair_entry e = rq->q[rq->head];
        pthread_mutex_unlock(&rq->lock);

        char err[512] = "";
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&e.key, hex);
        int rc = repair_one(bal, rq, cp, &e, err, sizeof(err));
        if (rc == 0) {
            __atomic_add_fetch(&bal->ctr.repairs_done, 1, __ATOMIC_RELAXED);
            log_info("read repair: copied %s to %s", hex, e.url);
        } else if (rc == -ECANCELED) {
            log_info("read repair: %s not copied to %s: %s", hex, e.url, err);
        } else {
            __atomic_add_fetch(&bal->ctr.repairs_failed, 1, __ATOMIC_RELAXED);
            log_warn("read repair: could not copy %s to %s: %s", hex, e.url, err);
        }
        /* The entry leaves the queue only once done, so the queue length
         * counts work in progress too. */
        pthread_mutex_lock(&rq->lock);
        rq->head = (rq->head + 1) % REPAIR_QUEUE_MAX;
        rq->len--;
        pthread_mutex_unlock(&rq->lock);
    }
}

/* ---- quarantine repair -------------------------------------------------- */

#define QUARANTINE_TIMEOUT_MS 5000 /* per poll; also bounds how long a shutdown waits */

/* Asks every backend that can take a copy (up and writable) for its
 * quarantined keys and queues a repair of each; returns how many keys
 * were listed. */
static size_t quarantine_poll(struct balancer *bal)
{
    struct view *v = view_get(bal);
    size_t found = 0;
    bool up[v->n ? v->n : 1];
    backend_health(bal, v, up, NULL);
    struct upstream_call *calls = calloc(v->n ? v->n : 1, sizeof(*calls));
    size_t m = 0;
    for (size_t i = 0; calls && i < v->n; i++) {
        if (!up[i])
            continue;
        snprintf(calls[m].url, sizeof(calls[m].url), "%s/quarantine", v->b[i]->url);
        calls[m].method = "GET";
        calls[m].backend = i;
        m++;
    }
    if (m)
        upstream_run(bal, v, calls, m, QUARANTINE_TIMEOUT_MS);
    for (size_t c = 0; c < m; c++) {
        const struct upstream_call *call = &calls[c];
        const char *url = v->b[call->backend]->url;
        if (call->status == 404)
            continue; /* a storaged from before quarantine listing */
        if (call->status != 200) {
            char why[300];
            upstream_describe(call, why, sizeof(why));
            log_debug("quarantine: cannot list %s: %s", url, why);
            continue;
        }
        const char *p = call->resp.data, *end = p ? p + call->resp.len : NULL;
        while (p && p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            struct cas_key k;
            char err[256];
            if (len && view_parse_key(v, p, len, &k, err, sizeof(err)) == 0) {
                char hex[CAS_MAX_HEX + 1];
                cas_key_hex(&k, hex);
                log_info("quarantine: %s holds a corrupt copy of %s taken out of service; "
                         "repairing it",
                         url, hex);
                repair_enqueue(bal, &k, url);
                found++;
            } else if (len) {
                log_warn("quarantine: %s listed a bad key: %s", url, err);
            }
            p += len + 1;
        }
    }
    if (calls)
        upstream_calls_free(calls, m);
    free(calls);
    view_put(v);
    return found;
}

static void *quarantine_main(void *arg)
{
    struct balancer *bal = arg;
    struct repair_queue *rq = bal->repair;
    /* The first poll once the probes have had time to find the backends. */
    uint64_t next = cas_now_ns() + 2ull * bal->opt.probe_interval_ms * 1000000ull;
    for (;;) {
        pthread_mutex_lock(&rq->lock);
        while (!rq->stop && cas_now_ns() < next) {
            uint64_t wait = next - cas_now_ns();
            if (wait > 1000000000ull)
                wait = 1000000000ull;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + wait;
            ts.tv_sec += (time_t)(ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&rq->cond, &rq->lock, &ts);
        }
        bool stop = rq->stop;
        pthread_mutex_unlock(&rq->lock);
        if (stop)
            return NULL;
        size_t found = quarantine_poll(bal);
        struct view *v = view_get(bal);
        uint64_t interval = v->cfg->quarantine_interval_s ? v->cfg->quarantine_interval_s
                                                          : CONFIG_QUARANTINE_INTERVAL;
        view_put(v);
        pthread_mutex_lock(&rq->lock);
        rq->qpolls++;
        rq->qfound += found;
        pthread_mutex_unlock(&rq->lock);
        next = cas_now_ns() + interval * 1000000000ull;
    }
}

void repair_quarantine_stats(struct balancer *bal, uint64_t *polls, uint64_t *found)
{
    struct repair_queue *rq = bal->repair;
    *polls = *found = 0;
    if (!rq)
        return;
    pthread_mutex_lock(&rq->lock);
    *polls = rq->qpolls;
    *found = rq->qfound;
    pthread_mutex_unlock(&rq->lock);
}

int repair_init(struct balancer *bal)
{
    struct repair_queue *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->q = calloc(REPAIR_QUEUE_MAX, sizeof(*rq->q));
    if (!rq->q) {
        free(rq);
        return -ENOMEM;
    }
    pthread_mutex_init(&rq->lock, NULL);
    pthread_cond_init(&rq->cond, NULL);
    bal->repair = rq;
    int rc = pthread_create(&rq->thread, NULL, repair_main, bal);
    if (rc)
        return -rc;
    rq->started = true;
    rc = pthread_create(&rq->qthread, NULL, quarantine_main, bal);
    if (rc)
        return -rc;
    rq->qstarted = true;
    return 0;
}

void repair_stop(struct balancer *bal)
{
    struct repair_queue *rq = bal->repair;
    if (!rq)
        return;
    pthread_mutex_lock(&rq->lock);
    rq->stop = true;
    rq->halt = 1;
    pthread_cond_broadcast(&rq->cond);
    pthread_mutex_unlock(&rq->lock);
    if (rq->started)
        pthread_join(rq->thread, NULL);
    if (rq->qstarted)
        pthread_join(rq->qthread, NULL);
    free(rq->q);
    free(rq);
    bal->repair = NULL;
}

void repair_enqueue(struct balancer *bal, const struct cas_key *key, const char *url)
{
    struct repair_queue *rq = bal->repair;
    if (!rq)
        return;
    pthread_mutex_lock(&rq->lock);
    for (size_t i = 0; i < rq->len; i++) {
        struct repair_entry *e = &rq->q[(rq->head + i) % REPAIR_QUEUE_MAX];
        if (cas_key_equal(&e->key, key) && !strcmp(e->url, url)) {
            pthread_mutex_unlock(&rq->lock);
            return; /* already queued */
        }
    }
    if (rq->len == REPAIR_QUEUE_MAX) {
        pthread_mutex_unlock(&rq->lock);
        __atomic_add_fetch(&bal->ctr.repairs_dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    struct repair_entry *e = &rq->q[(rq->head + rq->len) % REPAIR_QUEUE_MAX];
    e->key = *key;
    snprintf(e->url, sizeof(e->url), "%s", url);
    rq->len++;
    pthread_cond_broadcast(&rq->cond); /* the quarantine poller waits on it too */
    pthread_mutex_unlock(&rq->lock);
    __atomic_add_fetch(&bal->ctr.repairs_queued, 1, __ATOMIC_RELAXED);
}

size_t repair_queue_length(struct balancer *bal)
{
    struct repair_queue *rq = bal->repair;
    if (!rq)
        return 0;
    pthread_mutex_lock(&rq->lock);
    size_t n = rq->len;
    pthread_mutex_unlock(&rq->lock);
    return n;
}
