/*
 * repair.c - read repair and the GC touch log.
 *
 * Read repair: when a home backend answered 404 for an object, or served a
 * copy that failed its digest, the request that noticed queues (key, URL of
 * the backend to fix) here, after serving its client. One worker thread
 * takes entries in order, reads the object from another backend (in read
 * order) and PUTs it to the one that lacked it; the storaged checks the
 * digest as for any PUT. The queue is bounded: when it is full, new entries
 * are dropped and counted, never waited for.
 *
 * GC touches: during a GC cycle, an object the balancer reads or writes has
 * to be unmarked on every backend that holds it, not only on the one that
 * served it, or `end` would remove the other copies. gc_touch does that
 * synchronously when the balancer knows a cycle is active. A cycle begun
 * through another balancer is noticed by the next probe; to cover the
 * moments before that, every touched key is also kept in a small ring of
 * recent keys, unmarked everywhere once the new cycle is noticed.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPAIR_QUEUE_MAX 1024
#define RECENT_MAX 16384
#define RECENT_WINDOW_NS (120ull * 1000000000ull)

struct repair_entry {
    struct cas_key key;
    char url[512];
};

struct recent_entry {
    uint64_t t_ns;
    struct cas_key key;
};

struct repair_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct repair_entry *q;
    size_t head, len;
    bool stop;
    pthread_t thread;
    bool started;
    struct recent_entry *recent;
    size_t recent_next, recent_len;
};

/* Copies key from some backend other than target_url to target_url. */
static int repair_one(struct balancer *bal, const struct repair_entry *e, char *err, size_t errlen)
{
    struct view *v = view_get(bal);
    size_t order[v->n ? v->n : 1], nhome = 0;
    size_t n = ring_read_order(v->ring, ring_position(&e->key), v->cfg->replicas, order, &nhome);
    bool up[v->n ? v->n : 1];
    backend_health(bal, v, NULL, up);
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&e->key, hex);
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
        char url[1200];
        snprintf(url, sizeof(url), "%s/objects/%s", v->b[b]->url, hex);
        struct bstream *s;
        struct bstream_head head;
        if (bstream_open(bal, v, url, "GET", NULL, &s, &head, err, errlen) < 0)
            continue;
        if (head.status != 200 || head.content_length < 0) {
            bstream_close(s);
            snprintf(err, errlen, "%s answered %ld", v->b[b]->url, head.status);
            continue;
        }
        char *dst = NULL;
        if (asprintf(&dst, "%s/objects/%s", e->url, hex) < 0) {
            bstream_close(s);
            view_put(v);
            return -ENOMEM;
        }
        struct fanout *f;
        size_t tb = (size_t)target;
        rc = fanout_start(bal, v, "PUT", &dst, &tb, 1, head.content_length, &f);
        free(dst);
        if (rc < 0) {
            bstream_close(s);
            break;
        }
        char buf[128 * 1024];
        ssize_t got;
        int64_t total = 0;
        while ((got = bstream_read(s, buf, sizeof(buf), err, errlen)) > 0) {
            total += got;
            if (fanout_feed(f, buf, (size_t)got) == 0)
                break;
        }
        bstream_close(s);
        if (got < 0 || total != head.content_length) {
            fanout_free(f); /* aborts the PUT: the target keeps nothing partial */
            rc = -EIO;
            continue;
        }
        fanout_finish(f);
        const struct fanout_result *r = fanout_result(f, 0);
        if (r->status == 200 || r->status == 201) {
            rc = 0;
        } else {
            rc = -EIO;
            if (r->status)
                snprintf(err, errlen, "%s answered %ld to the copy", e->url, r->status);
            else
                snprintf(err, errlen, "%s: %s", e->url, r->err);
        }
        fanout_free(f);
        break;
    }
    view_put(v);
    return rc;
}

static void *repair_main(void *arg)
{
    struct balancer *bal = arg;
    struct repair_queue *rq = bal->repair;
    for (;;) {
        pthread_mutex_lock(&rq->lock);
        while (!rq->stop && rq->len == 0)
            pthread_cond_wait(&rq->cond, &rq->lock);
        if (rq->stop) {
            pthread_mutex_unlock(&rq->lock);
            return NULL;
        }
        struct repair_entry e = rq->q[rq->head];
        pthread_mutex_unlock(&rq->lock);

        char err[512] = "";
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&e.key, hex);
        int rc = repair_one(bal, &e, err, sizeof(err));
        if (rc == 0) {
            __atomic_add_fetch(&bal->ctr.repairs_done, 1, __ATOMIC_RELAXED);
            log_info("read repair: copied %s to %s", hex, e.url);
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

int repair_init(struct balancer *bal)
{
    struct repair_queue *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->q = calloc(REPAIR_QUEUE_MAX, sizeof(*rq->q));
    rq->recent = calloc(RECENT_MAX, sizeof(*rq->recent));
    if (!rq->q || !rq->recent) {
        free(rq->q);
        free(rq->recent);
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
    return 0;
}

void repair_stop(struct balancer *bal)
{
    struct repair_queue *rq = bal->repair;
    if (!rq)
        return;
    pthread_mutex_lock(&rq->lock);
    rq->stop = true;
    pthread_cond_broadcast(&rq->cond);
    pthread_mutex_unlock(&rq->lock);
    if (rq->started)
        pthread_join(rq->thread, NULL);
    free(rq->q);
    free(rq->recent);
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
    pthread_cond_signal(&rq->cond);
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

/* ---- GC touches --------------------------------------------------------- */

/* Sends "hex\n..." as POST /gc/mark to every backend. A backend known down
 * is not asked, and one that does not answer within the fan-out deadline
 * is given up on: either way its share is kept as GC debt (gcdebt.c) and
 * delivered before the cycle can end. */
static void mark_everywhere(struct balancer *bal, const struct view *v, const char *body,
                            size_t len)
{
    pthread_mutex_lock(&bal->lock);
    uint64_t cycle = bal->gc_active ? bal->gc_id : 0;
    pthread_mutex_unlock(&bal->lock);
    struct upstream_call *calls = calloc(v->n ? v->n : 1, sizeof(*calls));
    bool down[v->n ? v->n : 1];
    if (!calls) {
        for (size_t i = 0; i < v->n; i++)
            gcdebt_add(bal, cycle, v->b[i]->url, body, len);
        return;
    }
    backend_known_down(bal, v, down);
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (down[i]) {
            gcdebt_add(bal, cycle, v->b[i]->url, body, len);
            continue;
        }
        snprintf(calls[k].url, sizeof(calls[k].url), "%s/gc/mark", v->b[i]->url);
        calls[k].method = "POST";
        calls[k].body = body;
        calls[k].body_len = len;
        calls[k].backend = i;
        k++;
    }
    upstream_run(bal, v, calls, k, v->cfg->fanout_ms);
    for (size_t i = 0; i < k; i++)
        if (calls[i].status != 200) {
            char why[256];
            upstream_describe(&calls[i], why, sizeof(why));
            log_warn("gc/mark on %s failed (kept to deliver before gc/end): %s",
                     v->b[calls[i].backend]->url, why);
            gcdebt_add(bal, cycle, v->b[calls[i].backend]->url, body, len);
        }
    upstream_calls_free(calls, k);
    free(calls);
}

void gc_unmark_everywhere(struct balancer *bal, const struct view *v, const char *lines, size_t len)
{
    pthread_mutex_lock(&bal->lock);
    bool active = bal->gc_active;
    pthread_mutex_unlock(&bal->lock);
    if (active && len)
        mark_everywhere(bal, v, lines, len);
}

void gc_touch(struct balancer *bal, const struct view *v, const struct cas_key *key)
{
    struct repair_queue *rq = bal->repair;
    if (rq) {
        pthread_mutex_lock(&rq->lock);
        struct recent_entry *e = &rq->recent[rq->recent_next];
        e->t_ns = cas_now_ns();
        e->key = *key;
        rq->recent_next = (rq->recent_next + 1) % RECENT_MAX;
        if (rq->recent_len < RECENT_MAX)
            rq->recent_len++;
        pthread_mutex_unlock(&rq->lock);
    }
    pthread_mutex_lock(&bal->lock);
    bool active = bal->gc_active;
    pthread_mutex_unlock(&bal->lock);
    if (!active)
        return;
    char line[CAS_MAX_HEX + 2];
    cas_key_hex(key, line);
    size_t len = strlen(line);
    line[len++] = '\n';
    mark_everywhere(bal, v, line, len);
    __atomic_add_fetch(&bal->ctr.gc_touches, 1, __ATOMIC_RELAXED);
}

void gc_touch_flush_recent(struct balancer *bal, const struct view *v)
{
    uint64_t now = cas_now_ns();
    gc_touch_flush_since(bal, v, now > RECENT_WINDOW_NS ? now - RECENT_WINDOW_NS : 0);
}

void gc_touch_flush_since(struct balancer *bal, const struct view *v, uint64_t since_ns)
{
    struct repair_queue *rq = bal->repair;
    if (!rq)
        return;
    struct cas_buf body;
    cas_buf_init(&body);
    pthread_mutex_lock(&rq->lock);
    for (size_t i = 0; i < rq->recent_len; i++) {
        const struct recent_entry *e = &rq->recent[i];
        if (e->t_ns < since_ns)
            continue;
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&e->key, hex);
        cas_buf_printf(&body, "%s\n", hex);
    }
    pthread_mutex_unlock(&rq->lock);
    if (body.len)
        mark_everywhere(bal, v, body.data, body.len);
    cas_buf_free(&body);
}

void gc_learn(struct balancer *bal, const struct view *v, const struct cas_key *key, uint64_t id)
{
    pthread_mutex_lock(&bal->lock);
    bool known = bal->gc_active && bal->gc_id == id;
    if (!known) {
        bal->gc_active = true;
        bal->gc_id = id;
    }
    bool flushed = bal->gc_seen_id == id;
    pthread_mutex_unlock(&bal->lock);
    if (known)
        return; /* gc_touch before the read already unmarked it everywhere */
    log_info("GC cycle %" PRIu64 " is active (a backend says so); unmarking recently used objects",
             id);
    gc_touch(bal, v, key);
    if (!flushed) {
        gc_touch_flush_recent(bal, v);
        pthread_mutex_lock(&bal->lock);
        bal->gc_seen_id = id;
        pthread_mutex_unlock(&bal->lock);
    }
}
