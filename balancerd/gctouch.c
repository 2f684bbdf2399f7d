/*
 * gctouch.c - the GC touch log: unmarks, on every backend, what the
 * balancer reads or writes during a GC cycle, and remembers recently
 * touched keys for a cycle noticed late (gctouch.h says why). GC layer:
 * what a backend misses goes to gcdebt.c.
 */
#include "gctouch.h"
#include "buf.h"
#include "gcdebt.h"
#include "log.h"
#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECENT_MAX GCTOUCH_RECENT_MAX
#define RECENT_WINDOW_NS GCTOUCH_WINDOW_NS

struct recent_entry {
    uint64_t t_ns;
    struct cas_key key;
};

struct gctouch {
    pthread_mutex_t lock;
    struct recent_entry *recent; /* a ring of RECENT_MAX */
    size_t next, len;
};

int gctouch_init(struct balancer *bal)
{
    struct gctouch *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->recent = calloc(RECENT_MAX, sizeof(*t->recent));
    if (!t->recent) {
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    bal->gctouch = t;
    return 0;
}

void gctouch_free(struct balancer *bal)
{
    struct gctouch *t = bal->gctouch;
    if (!t)
        return;
    bal->gctouch = NULL;
    pthread_mutex_destroy(&t->lock);
    free(t->recent);
    free(t);
}

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
    struct gctouch *t = bal->gctouch;
    if (t) {
        pthread_mutex_lock(&t->lock);
        struct recent_entry *e = &t->recent[t->next];
        e->t_ns = cas_now_ns();
        e->key = *key;
        t->next = (t->next + 1) % RECENT_MAX;
        if (t->len < RECENT_MAX)
            t->len++;
        pthread_mutex_unlock(&t->lock);
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

size_t gctouch_recent_lines(struct balancer *bal, uint64_t since_ns, struct cas_buf *out)
{
    struct gctouch *t = bal->gctouch;
    size_t n = 0;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len; i++) {
        const struct recent_entry *e = &t->recent[i];
        if (e->t_ns < since_ns)
            continue;
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&e->key, hex);
        cas_buf_printf(out, "%s\n", hex);
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

void gc_touch_flush_since(struct balancer *bal, const struct view *v, uint64_t since_ns)
{
    struct cas_buf body;
    cas_buf_init(&body);
    gctouch_recent_lines(bal, since_ns, &body);
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
    if (!flushed)
        gctouch_cycle_noticed(bal, v, id);
}

void gctouch_cycle_noticed(struct balancer *bal, const struct view *v, uint64_t id)
{
    gc_touch_flush_recent(bal, v);
    pthread_mutex_lock(&bal->lock);
    bal->gc_seen_id = id;
    pthread_mutex_unlock(&bal->lock);
}
