/*
 * gcdebt.c - unmarks that did not reach a backend during a GC cycle.
 *
 * During a cycle every object the balancer serves is unmarked on every
 * backend (gctouch.c, gc_touch). A backend that is down, hung or restarting
 * at that moment misses the unmark, yet keeps the cycle and its marks
 * (SPEC: a storaged restarted mid-cycle keeps both), so `end` would later
 * remove a copy that was used. The missed unmarks are kept here, by backend
 * URL, as the "<hex>\n" lines gc/mark takes, and delivered again:
 *   - by the probe thread, once per probe round, to each backend that is
 *     up again (gcdebt_settle);
 *   - by gc/end before anything is ended; end is refused (503, nothing
 *     changed) while any of them cannot be delivered.
 * The debt belongs to one cycle: a new cycle (begin marks everything
 * again) clears it. It is bounded (GCDEBT_MAX_BYTES); past that the
 * balancer remembers only that it overflowed, and refuses to end that cycle
 * at all: better a cycle that must be begun again than a used object lost.
 * The debt lives in this balancer's memory: a balancer that restarts loses
 * it (OPERATIONS.md says what that means).
 */
#define _GNU_SOURCE
#include "gcdebt.h"
#include "upstream.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GCDEBT_MAX_BYTES (64u * 1024 * 1024)

struct gcdebt_entry {
    char *url;
    struct cas_buf keys;
};

struct gcdebt {
    pthread_mutex_t lock;
    uint64_t cycle;
    struct gcdebt_entry *e;
    size_t n;
    size_t bytes;
    bool overflow;
};

int gcdebt_init(struct balancer *bal)
{
    struct gcdebt *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    bal->gcdebt = d;
    return 0;
}

static void clear_locked(struct gcdebt *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->e[i].url);
        cas_buf_free(&d->e[i].keys);
    }
    free(d->e);
    d->e = NULL;
    d->n = 0;
    d->bytes = 0;
    d->overflow = false;
}

void gcdebt_free(struct balancer *bal)
{
    struct gcdebt *d = bal->gcdebt;
    if (!d)
        return;
    clear_locked(d);
    pthread_mutex_destroy(&d->lock);
    free(d);
    bal->gcdebt = NULL;
}

void gcdebt_add(struct balancer *bal, uint64_t cycle, const char *url, const char *lines,
                size_t len)
{
    struct gcdebt *d = bal->gcdebt;
    if (!d || !cycle || !len)
        return;
    pthread_mutex_lock(&d->lock);
    if (d->cycle != cycle) {
        clear_locked(d);
        d->cycle = cycle;
    }
    if (d->bytes + len > GCDEBT_MAX_BYTES) {
        if (!d->overflow)
            log_error("GC cycle %" PRIu64 ": more than %u MiB of unmarks could not be delivered; "
                      "this balancer will refuse to end the cycle (begin a new one)",
                      cycle, GCDEBT_MAX_BYTES >> 20);
        d->overflow = true;
        pthread_mutex_unlock(&d->lock);
        return;
    }
    struct gcdebt_entry *e = NULL;
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->e[i].url, url))
            e = &d->e[i];
    if (!e) {
        struct gcdebt_entry *ne = realloc(d->e, (d->n + 1) * sizeof(*ne));
        char *u = strdup(url);
        if (!ne || !u) {
            if (ne)
                d->e = ne;
            free(u);
            d->overflow = true; /* out of memory: same verdict as too much */
            pthread_mutex_unlock(&d->lock);
            return;
        }
        d->e = ne;
        e = &d->e[d->n++];
        e->url = u;
        cas_buf_init(&e->keys);
    }
    cas_buf_append(&e->keys, lines, len);
    d->bytes += len;
    pthread_mutex_unlock(&d->lock);
}

void gcdebt_new_cycle(struct balancer *bal, uint64_t cycle)
{
    struct gcdebt *d = bal->gcdebt;
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    if (d->cycle != cycle) {
        clear_locked(d);
        d->cycle = cycle;
    }
    pthread_mutex_unlock(&d->lock);
}

/* Takes the debt of one backend out of the table (the caller delivers it
 * or puts it back). */
static bool take_one(struct gcdebt *d, size_t i, char **url, struct cas_buf *keys)
{
    if (i >= d->n)
        return false;
    *url = d->e[i].url;
    *keys = d->e[i].keys;
    d->bytes -= keys->len;
    d->e[i] = d->e[--d->n];
    return true;
}

int gcdebt_settle(struct balancer *bal, const struct view *v, uint64_t cycle, char *err,
                  size_t errlen)
{
    struct gcdebt *d = bal->gcdebt;
    if (err && errlen)
        err[0] = '\0';
    if (!d)
        return 0;
    pthread_mutex_lock(&d->lock);
    if (d->cycle != cycle) {
        /* Debts of another cycle are void: begin marked everything anew. */
        clear_locked(d);
        d->cycle = cycle;
    }
    if (d->overflow) {
        pthread_mutex_unlock(&d->lock);
        snprintf(err, errlen,
                 "too many unmarks of GC cycle %" PRIu64 " could not be delivered while "
                 "backends were unreachable; begin a new cycle",
                 cycle);
        return -EOVERFLOW;
    }
    size_t n = d->n;
    struct gcdebt_entry todo[n ? n : 1];
    for (size_t i = 0; i < n; i++)
        take_one(d, 0, &todo[i].url, &todo[i].keys);
    pthread_mutex_unlock(&d->lock);

    bool down[v->n ? v->n : 1];
    backend_known_down(bal, v, down);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        long status = 0;
        char why[256] = "";
        bool configured = false;
        for (size_t b = 0; b < v->n; b++) {
            if (strcmp(v->b[b]->url, todo[i].url))
                continue;
            configured = true;
            if (down[b]) {
                snprintf(why, sizeof(why), "down (probes)");
                break;
            }
            struct upstream_call c = {
                .method = "POST", .body = todo[i].keys.data, .body_len = todo[i].keys.len};
            snprintf(c.url, sizeof(c.url), "%s/gc/mark", todo[i].url);
            upstream_run(bal, v, &c, 1, v->cfg->fanout_ms);
            status = c.status;
            upstream_describe(&c, why, sizeof(why));
            upstream_calls_free(&c, 1);
            break;
        }
        if (!configured) {
            /* Taken out of the config: it takes no part in `end` any more. */
            log_info("GC cycle %" PRIu64 ": dropping unmarks for %s, no longer configured", cycle,
                     todo[i].url);
            status = 200;
        }
        if (status == 200) {
            if (configured)
                log_info("GC cycle %" PRIu64 ": delivered %zu bytes of missed unmarks to %s", cycle,
                         todo[i].keys.len, todo[i].url);
            free(todo[i].url);
            cas_buf_free(&todo[i].keys);
            continue;
        }
        if (rc == 0)
            snprintf(err, errlen,
                     "unmarks missed by %s during GC cycle %" PRIu64 " cannot be delivered yet: %s",
                     todo[i].url, cycle, why);
        rc = -EAGAIN;
        gcdebt_add(bal, cycle, todo[i].url, todo[i].keys.data, todo[i].keys.len);
        free(todo[i].url);
        cas_buf_free(&todo[i].keys);
    }
    return rc;
}

size_t gcdebt_pending_bytes(struct balancer *bal)
{
    struct gcdebt *d = bal->gcdebt;
    if (!d)
        return 0;
    pthread_mutex_lock(&d->lock);
    size_t n = d->overflow ? GCDEBT_MAX_BYTES : d->bytes;
    pthread_mutex_unlock(&d->lock);
    return n;
}

void gcdebt_probe_round(struct balancer *bal, uint64_t gc_id)
{
    if (!gcdebt_pending_bytes(bal))
        return;
    /* Unmarks a backend missed while it was away: deliver them as soon as
     * it is back, not only at gc/end. */
    char err[512];
    struct view *v = view_get(bal);
    gcdebt_settle(bal, v, gc_id, err, sizeof(err));
    view_put(v);
}
