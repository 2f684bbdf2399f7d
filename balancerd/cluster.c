/*
 * cluster.c - the operations that span every backend: GC, listing,
 * missing keys, capacity and compaction.
 *
 * GC: `begin` picks one id above every id the backends have begun (ids only
 * grow) and starts that same id on every backend; when one of them does not
 * answer or refuses, the id is cancelled on every backend but those that
 * refused it (POST /gc/cancel?id=N), the slow ones too, and the call fails
 * with 503 (409 when refused). A cycle left on some backends only (a late
 * begin) is never ended through a balancer: `end` needs every backend in
 * the cycle or done with it. `mark` streams its body to every backend; `end`
 * first unmarks what this balancer served recently if it had not yet seen
 * the cycle (it may have been begun elsewhere), then ends it everywhere.
 * Because the id is the same everywhere, any balancer can mark and end a
 * cycle another one began.
 *
 * list merges the backends' listings, each in ascending key order, into
 * one in that order, each key once: every backend's stream is open at once
 * and only its current line is held, so a listing's memory is a window per
 * backend whatever the number of objects (OPERATIONS.md "Listing order and
 * memory"); a stream out of order cuts the listing. missing asks the
 * backends in turn about the keys no earlier backend had, a batch at a
 * time. compact runs on one failure domain at a time, so that at most one
 * copy of any object is being moved at any moment.
 */
#define _GNU_SOURCE
#include "cluster.h"
#include "bstream.h"
#include "fanout.h"
#include "gcagree.h"
#include "gcdebt.h"
#include "gctouch.h"
#include "upstream.h"
#include "view.h"
#include "log.h"
#include "num.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/*
 * Runs method on path (with ?query) on every backend the probes do not say
 * is down, each bounded by timeout_ms (0: none); calls[] has v->n slots, by
 * backend index. A backend known down is not asked: its slot has status 0,
 * skipped set and err "down (probes), not asked", so a hung backend costs
 * the caller nothing once the probes have noticed it, and at most
 * timeout_ms before.
 */
static struct upstream_call *on_every_backend(struct balancer *bal, const struct view *v,
                                              const char *method, const char *path,
                                              long timeout_ms)
{
    size_t n = v->n ? v->n : 1;
    struct upstream_call *calls = calloc(n, sizeof(*calls));
    struct upstream_call *run = calloc(n, sizeof(*run));
    if (!calls || !run) {
        free(calls);
        free(run);
        return NULL;
    }
    bool down[n];
    backend_known_down(bal, v, down);
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        calls[i].method = method;
        calls[i].backend = i;
        snprintf(calls[i].url, sizeof(calls[i].url), "%s%s", v->b[i]->url, path);
        if (down[i]) {
            calls[i].skipped = true;
            snprintf(calls[i].err, sizeof(calls[i].err), "down (probes), not asked");
            continue;
        }
        run[k++] = calls[i];
    }
    upstream_run(bal, v, run, k, timeout_ms);
    for (size_t j = 0; j < k; j++)
        calls[run[j].backend] = run[j]; /* moves each answer's buffer */
    free(run);
    return calls;
}

static void free_calls(struct upstream_call *calls, size_t n)
{
    upstream_calls_free(calls, n);
    free(calls);
}

/* ---- GC ----------------------------------------------------------------- */

/*
 * Takes cycle id as the active one. The first time this balancer sees it
 * (begun through another balancer and not yet noticed by a probe), the
 * objects it served in the last moments are unmarked everywhere first, so
 * that what it answered survives the cycle. Returns true that first time.
 */
static bool gc_adopt_cycle(struct balancer *bal, const struct view *v, uint64_t id)
{
    pthread_mutex_lock(&bal->lock);
    bool seen = bal->gc_seen_id == id;
    bal->gc_active = true;
    bal->gc_id = id;
    pthread_mutex_unlock(&bal->lock);
    if (seen)
        return false;
    gc_touch_flush_recent(bal, v);
    pthread_mutex_lock(&bal->lock);
    bal->gc_seen_id = id;
    pthread_mutex_unlock(&bal->lock);
    return true;
}

/* Names the backends the probes say are down ("url, url"); 0 when none. */
static size_t down_backends(struct balancer *bal, const struct view *v, struct cas_buf *names)
{
    bool down[v->n ? v->n : 1];
    backend_known_down(bal, v, down);
    size_t n = 0;
    for (size_t i = 0; i < v->n; i++)
        if (down[i]) {
            cas_buf_printf(names, "%s%s", n ? ", " : "", v->b[i]->url);
            n++;
        }
    return n;
}

/*
 * Asks every backend for GET /gc before a begin: fills *max_id with the
 * highest id any of them has begun (last_id) or is in, so that a new id
 * can be chosen above it (storageds refuse one that is not: ids only
 * grow, docs/API.md). Returns 0, or -1 with the answer set (503: a backend
 * did not answer; nothing was started).
 */
static int gc_begin_check(struct http_req *req, struct balancer *bal, const struct view *v,
                          uint64_t *max_id)
{
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/gc", v->cfg->fanout_ms);
    if (!calls) {
        http_error(req, 500, "out of memory");
        return -1;
    }
    struct cas_buf silent;
    cas_buf_init(&silent);
    *max_id = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (calls[i].status != 200) {
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_buf_printf(&silent, "%s%s: %s", silent.len ? "; " : "", v->b[i]->url, d);
            continue;
        }
        uint64_t last = 0, cur = 0;
        cas_json_get_u64(calls[i].resp.data, "last_id", &last);
        cas_json_get_u64(calls[i].resp.data, "id", &cur);
        if (last > *max_id)
            *max_id = last;
        if (cur > *max_id)
            *max_id = cur;
    }
    int rc = 0;
    if (silent.len) {
        http_error(req, 503, "GC not started (nothing changed): %s", silent.data);
        rc = -1;
    }
    cas_buf_free(&silent);
    free_calls(calls, v->n);
    return rc;
}

/*
 * A begin that failed somewhere starts nothing anywhere: cancel the id on
 * every backend but those that refused it (409: nothing begun there by
 * this request), including those that did not answer in time. Such a
 * backend may still run the begin late; if the cancel reaches it first,
 * the storaged refuses the late begin (a cancel of an id not begun yet
 * burns it), and if the begin comes first the cancel ends it. Either way
 * an `end` of this id is refused, since not every backend is in it
 * (gc_end_check).
 */
/* A begin of id that failed (nothing started anywhere) is not this
 * balancer's cycle: if a job begins that id later through another
 * balancer, this one must treat it as anyone else's cycle (unmark what it
 * served lately) when it meets it. seen_before: gc_seen_id before the
 * begin claimed id. */
static void gc_begin_disown(struct balancer *bal, uint64_t id, uint64_t seen_before)
{
    pthread_mutex_lock(&bal->lock);
    if (bal->gc_seen_id == id)
        bal->gc_seen_id = seen_before;
    if (bal->gc_active && bal->gc_id == id)
        bal->gc_active = false; /* a probe met it on a backend: cancelled there now */
    pthread_mutex_unlock(&bal->lock);
}

static void gc_begin_undo(struct balancer *bal, const struct view *v, uint64_t id,
                          const struct upstream_call *began)
{
    char path[64];
    snprintf(path, sizeof(path), "/gc/cancel?id=%" PRIu64, id);
    size_t nb = v->n ? v->n : 1, k = 0;
    struct upstream_call *calls = calloc(nb, sizeof(*calls));
    if (!calls)
        return;
    for (size_t i = 0; i < v->n; i++) {
        if (began[i].status == 409)
            continue;
        calls[k].method = "POST";
        calls[k].backend = i;
        snprintf(calls[k].url, sizeof(calls[k].url), "%s%s", v->b[i]->url, path);
        k++;
    }
    upstream_run(bal, v, calls, k, v->cfg->fanout_ms);
    for (size_t i = 0; i < k; i++) {
        /* 409: the cycle is not there (never began, or the cancel came
         * first and burnt the id): nothing to undo. */
        if (calls[i].status == 200 || calls[i].status == 204 || calls[i].status == 409)
            continue;
        char d[300];
        upstream_describe(&calls[i], d, sizeof(d));
        log_warn("GC %" PRIu64 ": could not cancel on %s (%s); if the begin ran there the cycle "
                 "stays open until the next begin, and no end through a balancer accepts it",
                 id, v->b[calls[i].backend]->url, d);
    }
    upstream_calls_free(calls, k);
    free(calls);
}

void cluster_gc_begin(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    uint64_t id = 0;
    const char *given = http_query(req, "id");
    if (given && cas_parse_id(given, &id) < 0) {
        view_put(v);
        http_error(req, 400, "GC id \"%s\" is not a number from 1 to 18446744073709551615",
                   given);
        return;
    }
    /* A backend that is down would miss the marks; its objects would then
     * outlive the cycle, but it could not take part in `end` either:
     * refuse now rather than start a cycle that cannot end cleanly. */
    struct cas_buf downs;
    cas_buf_init(&downs);
    if (down_backends(bal, v, &downs)) {
        http_error(req, 503, "GC not started: backends down: %s", downs.data);
        cas_buf_free(&downs);
        view_put(v);
        return;
    }
    cas_buf_free(&downs);
    uint64_t max_id;
    if (gc_begin_check(req, bal, v, &max_id) < 0) {
        view_put(v);
        return;
    }
    if (given && id <= max_id) {
        view_put(v);
        http_error(req, 409,
                   "GC id %" PRIu64 " is not above the last one begun on the backends (%" PRIu64
                   "): a new cycle needs a new id (ids only grow; begin without ?id to get one)",
                   id, max_id);
        return;
    }
    if (!given) {
        /* Microseconds since the epoch plus a random part (two balancers
         * beginning at once rarely pick one id), above every id the
         * backends have seen; below 2^53 for centuries, so exact in JSON
         * readers using doubles. */
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = cas_now_ns();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        if (id <= max_id)
            id = max_id + 1;
        id += r % 1000;
    }
    char path[64];
    snprintf(path, sizeof(path), "/gc/begin?id=%" PRIu64, id);
    uint64_t began_ns = cas_now_ns();
    /* This cycle is ours: a probe that meets it on a backend that has
     * begun while others are still beginning must not take it for another
     * balancer's and unmark everything served in the last GCTOUCH_WINDOW_NS
     * (objects read before the begin would survive it). What is served
     * from now on is unmarked below, once the begin is through. */
    pthread_mutex_lock(&bal->lock);
    uint64_t seen_before = bal->gc_seen_id;
    bal->gc_seen_id = id;
    pthread_mutex_unlock(&bal->lock);
    struct upstream_call *calls = on_every_backend(bal, v, "POST", path, v->cfg->gc_ms);
    if (!calls) {
        gc_begin_disown(bal, id, seen_before);
        view_put(v);
        http_error(req, 500, "out of memory");
        return;
    }
    uint64_t objects = 0, bytes = 0;
    struct cas_buf why;
    cas_buf_init(&why);
    bool refused = false;
    for (size_t i = 0; i < v->n; i++) {
        if (calls[i].status == 200) {
            uint64_t o = 0, b = 0;
            cas_json_get_u64(calls[i].resp.data, "objects", &o);
            cas_json_get_u64(calls[i].resp.data, "bytes", &b);
            objects += o;
            bytes += b;
        } else {
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", v->b[i]->url, d);
            refused |= calls[i].status == 409;
        }
    }
    if (why.len) {
        gc_begin_undo(bal, v, id, calls);
        gc_begin_disown(bal, id, seen_before);
        http_error(req, refused ? 409 : 503, "GC not started (cancelled everywhere): %s",
                   why.data);
    } else {
        pthread_mutex_lock(&bal->lock);
        bal->gc_active = true;
        bal->gc_id = id;
        bal->gc_seen_id = id;
        pthread_mutex_unlock(&bal->lock);
        gcdebt_new_cycle(bal, id);
        /* Served while the backends were beginning, before gc_active was
         * set here: unmarked only where it was served. */
        gc_touch_flush_since(bal, v, began_ns);
        log_info("GC cycle %" PRIu64 " begun on %zu backends: %" PRIu64 " objects marked", id,
                 v->n, objects);
        struct cas_buf b;
        cas_buf_init(&b);
        cas_buf_printf(&b, "{\"id\":\"%" PRIu64 "\",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                       id, objects, bytes);
        http_reply_json(req, 200, &b);
    }
    cas_buf_free(&why);
    free_calls(calls, v->n);
    view_put(v);
}

struct mark_ctx {
    struct view *v;
    struct fanout *f;
};

static void mark_cleanup(struct http_req *req)
{
    struct mark_ctx *m = req->ctx;
    if (!m)
        return;
    fanout_free(m->f);
    view_put(m->v);
    free(m);
}

static int mark_body(struct http_req *req, const char *data, size_t len)
{
    struct mark_ctx *m = req->ctx;
    fanout_feed(m->f, data, len);
    return 0;
}

static void mark_done(struct http_req *req)
{
    struct mark_ctx *m = req->ctx;
    fanout_finish(m->f);
    uint64_t unmarked = 0;
    struct cas_buf why;
    cas_buf_init(&why);
    long status = 200;
    for (size_t i = 0; i < fanout_count(m->f); i++) {
        const struct fanout_result *r = fanout_result(m->f, i);
        if (r->status == 200) {
            uint64_t u = 0;
            cas_json_get_u64(r->resp.data ? r->resp.data : "", "unmarked", &u);
            unmarked += u;
            continue;
        }
        char msg[200] = "";
        if (r->status && r->resp.data)
            cas_json_get_string(r->resp.data, "error", msg, sizeof(msg));
        cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", m->v->b[r->backend]->url,
                       r->status ? (msg[0] ? msg : "error") : r->err);
        if (r->status == 400)
            status = 400;
        else if (status != 400)
            status = 503;
    }
    if (status != 200) {
        http_error(req, (unsigned)status, "gc/mark did not reach every backend: %s", why.data);
    } else {
        struct cas_buf b;
        cas_buf_init(&b);
        cas_buf_printf(&b, "{\"unmarked\":%" PRIu64 "}", unmarked);
        http_reply_json(req, 200, &b);
    }
    cas_buf_free(&why);
}

void cluster_gc_mark(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct mark_ctx *m = calloc(1, sizeof(*m));
    if (!m) {
        http_error(req, 500, "out of memory");
        return;
    }
    m->v = view_get(bal);
    req->ctx = m;
    req->cleanup = mark_cleanup;
    struct view *v = m->v;
    char *urls[v->n ? v->n : 1];
    size_t backends[v->n ? v->n : 1];
    for (size_t i = 0; i < v->n; i++) {
        backends[i] = i;
        if (asprintf(&urls[i], "%s/gc/mark", v->b[i]->url) < 0)
            urls[i] = NULL;
    }
    int rc = fanout_start(bal, v, "POST", urls, backends, v->n,
                          req->has_length ? (int64_t)req->content_length : -1, &m->f);
    for (size_t i = 0; i < v->n; i++)
        free(urls[i]);
    if (rc < 0) {
        http_error(req, 500, "out of memory");
        return;
    }
    /* The backends answer once they have applied the whole body. */
    fanout_set_answer_timeout(m->f, v->cfg->gc_ms);
    req->on_body = mark_body;
    req->on_done = mark_done;
}

/*
 * Asks every backend for its GC state (GET /gc) and checks that cycle id
 * can be ended: every backend reachable, each in this cycle or done with it
 * (its ended_id: an earlier end that failed elsewhere), at least one in it.
 * A backend without the cycle that did not end it refuses the end: a begin
 * answered 503 may have run late on some backends, and ending it there
 * would remove what no client could have kept. has[i] says which backends
 * are in it. On refusal sets the answer (409: not the current cycle; 503: a
 * backend down or silent) and returns -1. Nothing is changed anywhere.
 */
static int gc_end_check(struct http_req *req, struct balancer *bal, const struct view *v,
                        uint64_t id, bool *has)
{
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/gc", v->cfg->fanout_ms);
    if (!calls) {
        http_error(req, 500, "out of memory");
        return -1;
    }
    struct cas_buf silent, other;
    cas_buf_init(&silent);
    cas_buf_init(&other);
    size_t in_cycle = 0;
    for (size_t i = 0; i < v->n; i++) {
        has[i] = false;
        if (calls[i].status != 200) {
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_buf_printf(&silent, "%s%s: %s", silent.len ? "; " : "", v->b[i]->url, d);
            continue;
        }
        bool active = false;
        uint64_t cur = 0;
        cas_json_get_bool(calls[i].resp.data, "active", &active);
        cas_json_get_u64(calls[i].resp.data, "id", &cur);
        uint64_t ended = 0;
        cas_json_get_u64(calls[i].resp.data, "ended_id", &ended);
        if (active && cur == id) {
            has[i] = true;
            in_cycle++;
        } else if (active) {
            cas_buf_printf(&other, "%s%s is in cycle %" PRIu64, other.len ? "; " : "", v->b[i]->url,
                           cur);
        } else if (ended != id) {
            /* Neither in the cycle nor done with it by an earlier, partly
             * failed end: the cycle never began there or was cancelled
             * (a begin that failed, run late by a stalled backend). */
            cas_buf_printf(&other, "%s%s is not in it (never begun there, or cancelled)",
                           other.len ? "; " : "", v->b[i]->url);
        }
    }
    int rc = -1;
    if (other.len)
        http_error(req, 409, "GC cycle %" PRIu64 " is not the current one: %s", id, other.data);
    else if (silent.len)
        http_error(req, 503,
                   "GC cycle %" PRIu64 " not ended (nothing changed; end it again once every "
                   "backend answers): %s",
                   id, silent.data);
    else if (!in_cycle)
        http_error(req, 409, "GC cycle %" PRIu64 " is not the current one (no backend is in it)",
                   id);
    else
        rc = 0;
    cas_buf_free(&silent);
    cas_buf_free(&other);
    free_calls(calls, v->n);
    return rc;
}

/*
 * gc/end through the balancer. A rejected end changes nothing (SPEC): the
 * id is checked, then every backend's state (gc_end_check), then the
 * unmarks backends missed during the cycle are delivered (gcdebt.c), and
 * only then does anything happen: this balancer's recently served objects
 * are unmarked if it had not seen the cycle, every garbage copy of an
 * object another backend holds live is unmarked (gcagree.c), and the
 * cycle is ended on
 * every backend that is in it. Backends with no cycle (one that ended
 * there by an earlier, partly failed end) are left alone, so ending again
 * with the same id finishes a partial end.
 */
void cluster_gc_end(struct http_req *req)
{
    struct balancer *bal = req->app;
    const char *given = http_query(req, "id");
    uint64_t id = 0;
    if (!given || cas_parse_id(given, &id) < 0) {
        http_error(req, 400, "gc/end needs ?id=N, the id gc/begin answered%s%s%s",
                   given ? " (not \"" : "", given ? given : "", given ? "\")" : "");
        return;
    }
    struct view *v = view_get(bal);
    bool has[v->n ? v->n : 1];
    if (gc_end_check(req, bal, v, id, has) < 0) {
        view_put(v);
        return;
    }
    char err[600];
    if (gcdebt_settle(bal, v, id, err, sizeof(err)) < 0) {
        http_error(req, 503, "GC cycle %" PRIu64 " not ended (nothing changed): %s", id, err);
        view_put(v);
        return;
    }
    if (gc_adopt_cycle(bal, v, id)) {
        /* Begun elsewhere and not noticed yet: what we served must survive. */
        if (gcdebt_settle(bal, v, id, err, sizeof(err)) < 0) {
            http_error(req, 503, "GC cycle %" PRIu64 " not ended: %s", id, err);
            view_put(v);
            return;
        }
    }
    /* A use one replica saw while another holder was down may be owed
     * by a balancer other than this one: agree from the backends' own
     * state, so that what any replica holds live is kept on every one. */
    struct gcagree_stats ag;
    if (gcagree_settle(bal, v, id, &ag, err, sizeof(err)) < 0) {
        http_error(req, 503,
                   "GC cycle %" PRIu64 " not ended (nothing removed; end it again): comparing "
                   "the backends' garbage: %s",
                   id, err);
        view_put(v);
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "/gc/end?id=%" PRIu64, id);
    size_t nb = v->n ? v->n : 1;
    struct upstream_call *calls = calloc(nb, sizeof(*calls));
    if (!calls) {
        view_put(v);
        http_error(req, 500, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (!has[i])
            continue;
        snprintf(calls[k].url, sizeof(calls[k].url), "%s%s", v->b[i]->url, path);
        calls[k].method = "POST";
        calls[k].backend = i;
        k++;
    }
    upstream_run(bal, v, calls, k, v->cfg->gc_ms);
    uint64_t removed = 0, bytes = 0;
    size_t ok = 0;
    struct cas_buf why;
    cas_buf_init(&why);
    for (size_t i = 0; i < k; i++) {
        if (calls[i].status == 200) {
            uint64_t r = 0, b = 0;
            cas_json_get_u64(calls[i].resp.data, "removed", &r);
            cas_json_get_u64(calls[i].resp.data, "bytes", &b);
            removed += r;
            bytes += b;
            ok++;
            continue;
        }
        char d[300];
        upstream_describe(&calls[i], d, sizeof(d));
        cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", v->b[calls[i].backend]->url, d);
    }
    if (ok == k) {
        pthread_mutex_lock(&bal->lock);
        if (bal->gc_id == id)
            bal->gc_active = false;
        pthread_mutex_unlock(&bal->lock);
        log_info("GC cycle %" PRIu64 " ended: %" PRIu64 " objects, %" PRIu64 " bytes removed", id,
                 removed, bytes);
        struct cas_buf b;
        cas_buf_init(&b);
        cas_buf_printf(&b, "{\"removed\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", removed, bytes);
        http_reply_json(req, 200, &b);
    } else {
        /* A backend failed between the check and the end: those that ended
         * are done; ending again with the same id finishes the others. */
        http_error(req, 503,
                   "GC cycle %" PRIu64 " ended on %zu of %zu backends (end it again with the same "
                   "id to finish): %s",
                   id, ok, k, why.data);
    }
    cas_buf_free(&why);
    upstream_calls_free(calls, k);
    free(calls);
    view_put(v);
}

void cluster_gc_json(struct balancer *bal, const struct view *v, struct cas_json *j)
{
    /* Active only when every backend that is up is in one and the same
     * cycle: a cycle on some only (a failed begin run late) cannot be
     * ended through a balancer, so it is not reported as one. */
    bool active = false, split = false;
    uint64_t id = 0, objects = 0, bytes = 0;
    pthread_mutex_lock(&bal->lock);
    size_t up = 0, in = 0;
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *b = v->b[i];
        if (!b->up)
            continue;
        up++;
        if (!b->gc_active || (in && b->gc_id != id))
            continue;
        in++;
        active = true;
        id = b->gc_id;
        objects += b->gc_objects;
        bytes += b->gc_bytes;
    }
    split = active && in < up;
    pthread_mutex_unlock(&bal->lock);
    if (split)
        active = false, id = objects = bytes = 0;
    cas_json_begin_object(j);
    cas_json_key(j, "active");
    cas_json_bool(j, active);
    cas_json_key(j, "id");
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRIu64, id);
    cas_json_string(j, ids);
    cas_json_key(j, "objects");
    cas_json_u64(j, objects);
    cas_json_key(j, "bytes");
    cas_json_u64(j, bytes);
    if (split) {
        cas_json_key(j, "partial");
        cas_json_bool(j, true);
    }
    cas_json_end_object(j);
}

void cluster_gc_status(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    /* Fresh figures rather than the last probe's, from every backend not
     * known down (a full probe would wait on a hung one every time). */
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/gc", v->cfg->fanout_ms);
    if (calls) {
        pthread_mutex_lock(&bal->lock);
        for (size_t i = 0; i < v->n; i++) {
            struct backend *be = v->b[i];
            const char *js = calls[i].resp.data;
            if (calls[i].status != 200 || !js)
                continue;
            bool active = false;
            cas_json_get_bool(js, "active", &active);
            be->gc_active = active;
            cas_json_get_u64(js, "id", &be->gc_id);
            cas_json_get_u64(js, "objects", &be->gc_objects);
            cas_json_get_u64(js, "bytes", &be->gc_bytes);
        }
        pthread_mutex_unlock(&bal->lock);
        free_calls(calls, v->n);
    }
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cluster_gc_json(bal, v, &j);
    http_reply_json(req, 200, &b);
    view_put(v);
}

/* ---- list --------------------------------------------------------------- */

/* Body bytes a backend's listing may have waiting in the balancer (its
 * bstream window), and the read buffer beside it. */
#define LIST_WINDOW (64 * 1024)
#define LIST_READ (8 * 1024)
/* The longest line a listing may hold: a 64-hex key, a space, 20 digits. */
#define LIST_LINE_MAX 128
/* Bytes of merged lines made ready per turn for the HTTP layer. */
#define LIST_OUT (32 * 1024)

/* One backend's listing: its stream and its current line's key and size. */
struct list_src {
    const char *url;
    struct bstream *s;
    struct bstream_head head;
    char buf[LIST_READ];
    size_t start, end; /* unread bytes of buf */
    char line[LIST_LINE_MAX];
    size_t line_len;
    bool has_key; /* key and size hold the current line's; false at the end */
    unsigned char key[CAS_MAX_DIGEST];
    uint64_t size;
};

struct list_ctx {
    struct balancer *bal;
    struct view *v;
    char query[512];
    struct list_src *src; /* the listings that started, nsrc of them */
    size_t nsrc;
    bool primed;              /* every source's first line has been read */
    uint64_t slowest_head_ns; /* of the backends' listings opened so far */
    size_t left_out;          /* backends known down, or whose listing did not start */
    size_t dlen;
    struct cas_buf out;
    size_t out_pos;
};

static void list_free(void *cls)
{
    struct list_ctx *l = cls;
    for (size_t i = 0; i < l->nsrc; i++)
        bstream_close(l->src[i].s);
    free(l->src);
    cas_buf_free(&l->out);
    view_put(l->v);
    free(l);
}

/* How long a listing waits for a backend's response head (ms): 4x
 * --stall-ms, or 8x the slowest head of this listing so far if longer, at
 * most --first-byte-timeout-ms. A storaged answers a listing's head before
 * it reads anything, so a backend silent that long is hung on object
 * routes (its probes may still answer) and is left out, as one known down
 * is (OPERATIONS.md "Stalled and dripping backends"). */
static unsigned list_head_ms(const struct list_ctx *l)
{
    const struct balancer_options *o = &l->bal->opt;
    uint64_t ms = 4 * (uint64_t)o->stall_ms;
    if (8 * (l->slowest_head_ns / 1000000) > ms)
        ms = 8 * (l->slowest_head_ns / 1000000);
    return ms < o->first_byte_timeout_ms ? (unsigned)ms : o->first_byte_timeout_ms;
}

/* Opens every backend's listing but those known down, which are left out
 * (counted in left_out), as are those whose listing does not start (in
 * time, or with a 200). *status is 400 when a backend refused the
 * parameters, else 0. */
static void list_open_all(struct list_ctx *l, long *status)
{
    bool down[l->v->n ? l->v->n : 1];
    backend_known_down(l->bal, l->v, down);
    *status = 0;
    for (size_t b = 0; b < l->v->n; b++) {
        if (down[b]) {
            log_warn("list: skipping %s, which is down", l->v->b[b]->url);
            l->left_out++;
            continue;
        }
        struct list_src *src = &l->src[l->nsrc];
        char url[1200], err[256];
        snprintf(url, sizeof(url), "%s/objects%s", l->v->b[b]->url, l->query);
        uint64_t t0 = cas_now_ns();
        if (bstream_open_window(l->bal, l->v, url, "GET", NULL, list_head_ms(l), LIST_WINDOW,
                                &src->s, &src->head, err, sizeof(err)) < 0) {
            log_warn("list: skipping %s: %s", l->v->b[b]->url, err);
            l->left_out++;
            continue;
        }
        if (cas_now_ns() - t0 > l->slowest_head_ns)
            l->slowest_head_ns = cas_now_ns() - t0;
        if (src->head.status == 200) {
            src->url = l->v->b[b]->url;
            l->nsrc++;
            continue;
        }
        bstream_close(src->s);
        src->s = NULL;
        if (src->head.status == 400) {
            *status = 400;
            return;
        }
        log_warn("list: skipping %s: HTTP %ld", l->v->b[b]->url, src->head.status);
        l->left_out++;
    }
}

/* Takes src's current line as its key and size. -EPROTO for a line that
 * is not "<key> <size>" or a key not above the one before it. */
static int list_src_parse(struct list_ctx *l, struct list_src *src)
{
    char err[256];
    const char *line = src->line, *sp = memchr(line, ' ', src->line_len);
    struct cas_key k;
    uint64_t size;
    if (!sp || view_parse_key(l->v, line, (size_t)(sp - line), &k, err, sizeof(err)) < 0 ||
        cas_parse_u64_n(sp + 1, src->line_len - (size_t)(sp - line) - 1, &size) < 0) {
        log_error("list: %s sent a line that is not \"<key> <size>\" (\"%.*s\"): listing cut",
                  src->url, (int)(src->line_len < 100 ? src->line_len : 100), line);
        return -EPROTO;
    }
    if (!l->dlen)
        l->dlen = k.algo->digest_len;
    if (k.algo->digest_len != l->dlen) {
        log_error("list: %s listed a %s key in a cluster of %zu-byte keys: listing cut", src->url,
                  k.algo->name, l->dlen);
        return -EPROTO;
    }
    if (src->has_key && memcmp(k.digest, src->key, l->dlen) <= 0) {
        char was[CAS_MAX_HEX + 1], now[CAS_MAX_HEX + 1];
        cas_hex_encode(src->key, l->dlen, was);
        cas_hex_encode(k.digest, l->dlen, now);
        log_error("list: %s listed %s after %s, not in ascending key order (a storaged from "
                  "before ordered listings?): listing cut",
                  src->url, now, was);
        return -EPROTO;
    }
    memcpy(src->key, k.digest, l->dlen);
    src->size = size;
    src->has_key = true;
    return 0;
}

/* Reads src's next line: 0 with src->has_key set, or cleared at the end of
 * its listing; -errno when the stream fails or breaks the format (logged:
 * the listing is cut). */
static int list_src_next(struct list_ctx *l, struct list_src *src)
{
    src->line_len = 0;
    for (;;) {
        const char *p = src->buf + src->start;
        const char *nl = memchr(p, '\n', src->end - src->start);
        size_t take = nl ? (size_t)(nl - p) : src->end - src->start;
        if (src->line_len + take > sizeof(src->line)) {
            log_error("list: %s sent a line over %zu bytes: listing cut", src->url,
                      sizeof(src->line));
            return -EPROTO;
        }
        memcpy(src->line + src->line_len, p, take);
        src->line_len += take;
        src->start += take;
        if (nl) {
            src->start++;
            return list_src_parse(l, src);
        }
        char err[256];
        ssize_t n = bstream_read(src->s, src->buf, sizeof(src->buf), err, sizeof(err));
        if (n < 0) {
            log_warn("list: %s: backend stream failed: %s", src->url, err);
            return (int)n;
        }
        if (n == 0) {
            if (src->line_len) {
                log_error("list: %s ended its listing in the middle of a line: listing cut",
                          src->url);
                return -EPROTO;
            }
            src->has_key = false;
            return 0;
        }
        src->start = 0;
        src->end = (size_t)n;
    }
}

/* Appends "<hex> <size>\n" (by hand: printf was a tenth of a listing's
 * CPU). */
static void list_put_line(struct cas_buf *out, const unsigned char *key, size_t dlen, uint64_t size)
{
    char line[CAS_MAX_HEX + 24], digits[20];
    cas_hex_encode(key, dlen, line);
    size_t len = 2 * dlen, nd = 0;
    line[len++] = ' ';
    do
        digits[nd++] = (char)('0' + size % 10);
    while ((size /= 10) != 0);
    while (nd)
        line[len++] = digits[--nd];
    line[len++] = '\n';
    cas_buf_append(out, line, len);
}

/* The k-way merge: the smallest current key of all sources goes out, once,
 * and every source on that key moves to its next line. Backends are few, so
 * the smallest is found by looking at each. */
static ssize_t list_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct list_ctx *l = cls;
    if (!l->primed) {
        l->primed = true;
        for (size_t i = 0; i < l->nsrc; i++)
            if (list_src_next(l, &l->src[i]) < 0)
                return HTTP_STREAM_ERROR;
    }
    if (l->out_pos == l->out.len) {
        cas_buf_reset(&l->out);
        l->out_pos = 0;
        while (l->out.len < LIST_OUT) {
            struct list_src *min = NULL;
            for (size_t i = 0; i < l->nsrc; i++)
                if (l->src[i].has_key && (!min || memcmp(l->src[i].key, min->key, l->dlen) < 0))
                    min = &l->src[i];
            if (!min)
                break;
            unsigned char key[CAS_MAX_DIGEST];
            memcpy(key, min->key, l->dlen);
            list_put_line(&l->out, key, l->dlen, min->size);
            for (size_t i = 0; i < l->nsrc; i++)
                if (l->src[i].has_key && !memcmp(l->src[i].key, key, l->dlen) &&
                    list_src_next(l, &l->src[i]) < 0)
                    return HTTP_STREAM_ERROR;
        }
        if (l->out.len == 0)
            return HTTP_STREAM_END;
    }
    size_t n = l->out.len - l->out_pos;
    if (n > max)
        n = max;
    memcpy(buf, l->out.data + l->out_pos, n);
    l->out_pos += n;
    return (ssize_t)n;
}

/*
 * Before listing garbage: the objects this balancer served recently are
 * unmarked on every backend when it first sees a cycle (gctouch.c, the GC
 * touch log), at the latest by gc/end through it. Do that now if the
 * backends are in a cycle this balancer has not flushed for, and deliver
 * the unmarks backends missed (gcdebt.c), so that the listing is what `end`
 * through this balancer will remove.
 */
static void list_garbage_settle(struct balancer *bal, const struct view *v)
{
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/gc", v->cfg->fanout_ms);
    if (!calls)
        return;
    uint64_t id = 0;
    for (size_t i = 0; i < v->n; i++) {
        bool active = false;
        if (calls[i].status == 200 && !cas_json_get_bool(calls[i].resp.data, "active", &active) &&
            active)
            cas_json_get_u64(calls[i].resp.data, "id", &id);
    }
    free_calls(calls, v->n);
    if (!id)
        return;
    gc_adopt_cycle(bal, v, id);
    char err[512];
    gcdebt_settle(bal, v, id, err, sizeof(err));
}

void cluster_list(struct http_req *req)
{
    struct balancer *bal = req->app;
    if (!http_client_can_frame_unknown_length(req)) {
        /* Before any backend is asked: the answer could not show a cut. */
        http_refuse_http10(req);
        return;
    }
    struct list_ctx *l = calloc(1, sizeof(*l));
    if (!l) {
        http_error(req, 500, "out of memory");
        return;
    }
    l->bal = bal;
    l->v = view_get(bal);
    l->dlen = l->v->algo ? l->v->algo->digest_len : 0; /* else the first key's */
    cas_buf_init(&l->out);
    static const char *const params[] = {"state", "min_size", "max_size"};
    size_t qn = 0;
    for (size_t i = 0; i < 3; i++) {
        const char *val = http_query(req, params[i]);
        if (!val)
            continue;
        uint64_t num;
        bool ok = i == 0 ? !strcmp(val, "live") || !strcmp(val, "garbage")
                         : cas_parse_u64(val, &num) == 0;
        if (!ok) {
            http_error(req, 400, "bad %s \"%s\" (%s)", params[i], val,
                       i == 0 ? "want live or garbage" : "want a number from 0 to 2^64-1");
            list_free(l);
            return;
        }
        qn += (size_t)snprintf(l->query + qn, sizeof(l->query) - qn, "%c%s=%s", qn ? '&' : '?',
                               params[i], val);
    }
    const char *state = http_query(req, "state");
    if (state && !strcmp(state, "garbage"))
        list_garbage_settle(bal, l->v);
    l->src = calloc(l->v->n ? l->v->n : 1, sizeof(*l->src));
    if (!l->src) {
        http_error(req, 500, "out of memory");
        list_free(l);
        return;
    }
    long st = 0;
    list_open_all(l, &st);
    if (st == 400) {
        http_error(req, 400, "bad listing parameters");
        list_free(l);
        return;
    }
    http_reply_stream(req, 200, "text/plain", HTTP_SIZE_UNKNOWN, list_read, l, list_free);
    /* The listing leaves out what only a backend known down holds, or one
     * whose listing did not start (in time): all are known by now. */
    char n[24];
    snprintf(n, sizeof(n), "%zu", l->left_out);
    http_add_header(req, "X-CAS-Backends-Skipped", n);
}

/* ---- missing ------------------------------------------------------------ */

#define MISSING_BATCH 8192

struct missing_ctx {
    struct balancer *bal;
    struct view *v;
    struct cas_buf batch; /* keys, one per line, not yet asked about */
    size_t nbatch;
    char line[256];
    size_t line_len;
    size_t line_no;
    bool bad;
    FILE *out; /* answers, spooled */
    uint64_t out_len;
};

static void missing_cleanup(struct http_req *req)
{
    struct missing_ctx *m = req->ctx;
    if (!m)
        return;
    cas_buf_free(&m->batch);
    if (m->out)
        fclose(m->out);
    view_put(m->v);
    free(m);
}

/* Asks each backend in turn about the keys the previous ones lacked. */
static int missing_flush(struct missing_ctx *m, char *err, size_t errlen)
{
    if (!m->nbatch)
        return 0;
    bool up[m->v->n ? m->v->n : 1];
    backend_health(m->bal, m->v, NULL, up);
    struct cas_buf left = m->batch;
    cas_buf_init(&m->batch);
    /* During a GC cycle the keys found count as used (SPEC): the backend
     * that found one unmarked its own copy; the other holders were not
     * asked, so unmark the batch everywhere (absent keys are no-ops). */
    gc_unmark_everywhere(m->bal, m->v, left.data, left.len);
    for (size_t i = 0; i < m->v->n && left.len; i++) {
        if (!up[i])
            continue;
        struct upstream_call c = {.method = "POST", .body = left.data, .body_len = left.len};
        snprintf(c.url, sizeof(c.url), "%s/objects/missing", m->v->b[i]->url);
        upstream_run(m->bal, m->v, &c, 1, m->v->cfg->fanout_ms);
        if (c.status == 200) {
            cas_buf_free(&left);
            left = c.resp;
            cas_buf_init(&c.resp);
        } else {
            char d[300];
            upstream_describe(&c, d, sizeof(d));
            log_warn("missing: %s did not answer: %s", m->v->b[i]->url, d);
            if (c.status == 400) {
                snprintf(err, errlen, "%s", d);
                upstream_calls_free(&c, 1);
                cas_buf_free(&left);
                return -EINVAL;
            }
        }
        upstream_calls_free(&c, 1);
    }
    if (left.len)
        fwrite(left.data, 1, left.len, m->out);
    m->out_len += left.len;
    cas_buf_free(&left);
    m->nbatch = 0;
    return 0;
}

static int missing_line(struct http_req *req, struct missing_ctx *m)
{
    m->line_no++;
    size_t n = m->line_len;
    while (n && (m->line[n - 1] == '\r' || m->line[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    struct cas_key k;
    char err[400];
    if (n >= sizeof(m->line) || view_parse_key(m->v, m->line, n, &k, err, sizeof(err)) < 0) {
        http_error(req, 400, "line %zu: %s", m->line_no,
                   n >= sizeof(m->line) ? "line too long for a key" : err);
        return -1;
    }
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&k, hex);
    cas_buf_printf(&m->batch, "%s\n", hex);
    if (++m->nbatch >= MISSING_BATCH && missing_flush(m, err, sizeof(err)) < 0) {
        http_error(req, 400, "%s", err);
        return -1;
    }
    return 0;
}

static int missing_body(struct http_req *req, const char *data, size_t len)
{
    struct missing_ctx *m = req->ctx;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (missing_line(req, m) < 0)
                return -1;
            m->line_len = 0;
        } else if (m->line_len < sizeof(m->line)) {
            m->line[m->line_len++] = data[i];
        }
    }
    return 0;
}

static ssize_t file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    FILE *f = cls;
    if (fseeko(f, (off_t)pos, SEEK_SET) < 0)
        return HTTP_STREAM_ERROR;
    size_t n = fread(buf, 1, max, f);
    return n ? (ssize_t)n : HTTP_STREAM_END;
}

static void file_close(void *cls)
{
    fclose(cls);
}

static void missing_done(struct http_req *req)
{
    struct missing_ctx *m = req->ctx;
    if (m->line_len && missing_line(req, m) < 0)
        return;
    char err[300];
    if (missing_flush(m, err, sizeof(err)) < 0) {
        http_error(req, 400, "%s", err);
        return;
    }
    fflush(m->out);
    FILE *f = m->out;
    m->out = NULL;
    http_reply_stream(req, 200, "text/plain", m->out_len, file_read, f, file_close);
}

void cluster_missing(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct missing_ctx *m = calloc(1, sizeof(*m));
    if (!m) {
        http_error(req, 500, "out of memory");
        return;
    }
    m->bal = bal;
    m->v = view_get(bal);
    cas_buf_init(&m->batch);
    req->ctx = m;
    req->cleanup = missing_cleanup;
    char path[1024];
    snprintf(path, sizeof(path), "%s/ca-cas-missing-XXXXXX", bal->opt.spool_dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
        m->out = fdopen(fd, "w+");
    }
    if (!m->out) {
        if (fd >= 0)
            close(fd);
        http_error(req, 500, "cannot create a spool file in %s", bal->opt.spool_dir);
        return;
    }
    req->on_body = missing_body;
    req->on_done = missing_done;
}

/* ---- capacity ----------------------------------------------------------- */

void cluster_capacity_sum(struct balancer *bal, const struct view *v,
                          struct backend_capacity *sum)
{
    memset(sum, 0, sizeof(*sum));
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++) {
        const struct backend_capacity *c = &v->b[i]->cap;
        if (!v->b[i]->cap_known)
            continue;
        sum->total += c->total;
        sum->available += c->available;
        sum->unreclaimed += c->unreclaimed;
        sum->garbage += c->garbage;
        sum->objects += c->objects;
        sum->bytes += c->bytes;
    }
    pthread_mutex_unlock(&bal->lock);
}

static void capacity_members(struct cas_json *j, const struct backend_capacity *c)
{
    cas_json_key(j, "total");
    cas_json_u64(j, c->total);
    cas_json_key(j, "available");
    cas_json_u64(j, c->available);
    cas_json_key(j, "unreclaimed");
    cas_json_u64(j, c->unreclaimed);
    cas_json_key(j, "garbage");
    cas_json_u64(j, c->garbage);
    cas_json_key(j, "objects");
    cas_json_u64(j, c->objects);
    cas_json_key(j, "bytes");
    cas_json_u64(j, c->bytes);
}

void cluster_capacity(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/capacity", v->cfg->fanout_ms);
    if (!calls) {
        view_put(v);
        http_error(req, 500, "out of memory");
        return;
    }
    struct backend_capacity sum = {0}, each[v->n ? v->n : 1];
    memset(each, 0, sizeof(each));
    size_t answered = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (calls[i].status != 200)
            continue;
        const char *js = calls[i].resp.data;
        struct backend_capacity *c = &each[i];
        cas_json_get_u64(js, "total", &c->total);
        cas_json_get_u64(js, "available", &c->available);
        cas_json_get_u64(js, "unreclaimed", &c->unreclaimed);
        cas_json_get_u64(js, "garbage", &c->garbage);
        cas_json_get_u64(js, "objects", &c->objects);
        cas_json_get_u64(js, "bytes", &c->bytes);
        sum.total += c->total;
        sum.available += c->available;
        sum.unreclaimed += c->unreclaimed;
        sum.garbage += c->garbage;
        sum.objects += c->objects;
        sum.bytes += c->bytes;
        answered++;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    capacity_members(&j, &sum);
    /* The sums cover the backends that answered; "partial" says when some
     * did not, and each of those shows its last probed figures as stale. */
    cas_json_key(&j, "backends_up");
    cas_json_u64(&j, answered);
    cas_json_key(&j, "partial");
    cas_json_bool(&j, answered < v->n);
    cas_json_key(&j, "backends");
    cas_json_begin_array(&j);
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < v->n; i++) {
        cas_json_begin_object(&j);
        cas_json_key(&j, "url");
        cas_json_string(&j, v->b[i]->url);
        cas_json_key(&j, "failure_domain");
        cas_json_string(&j, v->b[i]->domain);
        cas_json_key(&j, "up");
        cas_json_bool(&j, calls[i].status == 200);
        if (calls[i].status == 200) {
            capacity_members(&j, &each[i]);
        } else {
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_json_key(&j, "error");
            cas_json_string(&j, d);
            cas_json_key(&j, "skipped");
            cas_json_bool(&j, calls[i].skipped);
            pthread_mutex_lock(&bal->lock);
            struct backend_capacity last = v->b[i]->cap;
            bool known = v->b[i]->cap_known;
            uint64_t ok_ns = v->b[i]->last_ok_ns;
            pthread_mutex_unlock(&bal->lock);
            cas_json_key(&j, "stale");
            cas_json_bool(&j, true);
            if (known) {
                capacity_members(&j, &last);
                cas_json_key(&j, "age_s");
                cas_json_u64(&j, ok_ns ? (now - ok_ns) / 1000000000ull : 0);
            }
        }
        cas_json_end_object(&j);
    }
    cas_json_end_array(&j);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
    free_calls(calls, v->n);
    view_put(v);
}

/* ---- compaction --------------------------------------------------------- */

struct compact_job {
    struct balancer *bal;
    struct view *v;
};

/* Compacts every backend, one failure domain at a time; returns 0 when
 * every backend finished. */
static int compact_run(struct balancer *bal, struct view *v, char *err, size_t errlen)
{
    int rc = 0;
    bool done_domain[v->n ? v->n : 1];
    memset(done_domain, 0, sizeof(done_domain));
    struct cas_buf why;
    cas_buf_init(&why);
    for (size_t i = 0; i < v->n; i++) {
        if (done_domain[i])
            continue;
        const char *domain = v->b[i]->domain;
        pthread_mutex_lock(&bal->lock);
        snprintf(bal->compact_domain, sizeof(bal->compact_domain), "%s", domain);
        pthread_mutex_unlock(&bal->lock);
        struct upstream_call calls[v->n];
        size_t nc = 0;
        bool down[v->n];
        backend_known_down(bal, v, down);
        for (size_t k = i; k < v->n; k++) {
            if (strcmp(v->b[k]->domain, domain))
                continue;
            done_domain[k] = true;
            if (down[k]) {
                /* Not waited on: reported, and the other domains go on. */
                cas_buf_printf(&why, "%s%s: down (probes), not compacted", why.len ? "; " : "",
                               v->b[k]->url);
                rc = -EIO;
                continue;
            }
            memset(&calls[nc], 0, sizeof(calls[nc]));
            snprintf(calls[nc].url, sizeof(calls[nc].url), "%s/compact?wait=1", v->b[k]->url);
            calls[nc].method = "POST";
            calls[nc].backend = k;
            nc++;
        }
        log_info("compaction: failure domain %s (%zu backend%s)", domain, nc,
                 nc == 1 ? "" : "s");
        upstream_run(bal, v, calls, nc, 0);
        for (size_t c = 0; c < nc; c++) {
            if (calls[c].status == 200 || calls[c].status == 202)
                continue;
            char d[300];
            upstream_describe(&calls[c], d, sizeof(d));
            cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", v->b[calls[c].backend]->url,
                           d);
            rc = -EIO;
        }
        upstream_calls_free(calls, nc);
    }
    snprintf(err, errlen, "%s", why.data ? why.data : "");
    cas_buf_free(&why);
    return rc;
}

static void compact_finish(struct balancer *bal, int rc, const char *err)
{
    pthread_mutex_lock(&bal->lock);
    bal->compact_running = false;
    bal->compact_domain[0] = '\0';
    snprintf(bal->compact_last, sizeof(bal->compact_last), "%s",
             rc == 0 ? "ok" : err);
    pthread_mutex_unlock(&bal->lock);
    if (rc == 0)
        log_info("compaction finished on every backend");
    else
        log_warn("compaction finished with errors: %s", err);
}

static void *compact_main(void *arg)
{
    struct compact_job *job = arg;
    char err[1024];
    int rc = compact_run(job->bal, job->v, err, sizeof(err));
    compact_finish(job->bal, rc, err);
    view_put(job->v);
    free(job);
    return NULL;
}

void cluster_compact(struct http_req *req)
{
    struct balancer *bal = req->app;
    const char *w = http_query(req, "wait");
    bool wait = false;
    if (w && cas_parse_bit(w, &wait) < 0) {
        http_error(req, 400, "wait=\"%s\": want 0 or 1", w);
        return;
    }
    pthread_mutex_lock(&bal->lock);
    if (bal->compact_running) {
        pthread_mutex_unlock(&bal->lock);
        http_error(req, 409, "compaction is already running (failure domain %s)",
                   bal->compact_domain);
        return;
    }
    bal->compact_running = true;
    bool join = bal->compact_thread_joinable;
    bal->compact_thread_joinable = false;
    pthread_t old = bal->compact_thread;
    pthread_mutex_unlock(&bal->lock);
    if (join)
        pthread_join(old, NULL);
    struct view *v = view_get(bal);
    if (wait) {
        char err[1024];
        int rc = compact_run(bal, v, err, sizeof(err));
        compact_finish(bal, rc, err);
        view_put(v);
        if (rc == 0) {
            struct cas_buf b;
            cas_buf_init(&b);
            cas_buf_puts(&b, "{\"done\":true}");
            http_reply_json(req, 200, &b);
        } else {
            http_error(req, 503, "compaction failed on some backends: %s", err);
        }
        return;
    }
    struct compact_job *job = calloc(1, sizeof(*job));
    if (!job) {
        compact_finish(bal, -ENOMEM, "out of memory");
        view_put(v);
        http_error(req, 500, "out of memory");
        return;
    }
    job->bal = bal;
    job->v = v;
    pthread_t t;
    if (pthread_create(&t, NULL, compact_main, job) != 0) {
        compact_finish(bal, -EAGAIN, "cannot start a thread");
        view_put(v);
        free(job);
        http_error(req, 500, "cannot start a thread");
        return;
    }
    pthread_mutex_lock(&bal->lock);
    bal->compact_thread = t;
    bal->compact_thread_joinable = true;
    pthread_mutex_unlock(&bal->lock);
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, "{\"started\":true}");
    http_reply_json(req, 202, &b);
}

void cluster_compact_status(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    struct upstream_call *calls = on_every_backend(bal, v, "GET", "/compact", v->cfg->fanout_ms);
    if (!calls) {
        view_put(v);
        http_error(req, 500, "out of memory");
        return;
    }
    bool running = false;
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (calls[i].status != 200)
            continue;
        bool r = false;
        uint64_t d = 0, t = 0;
        cas_json_get_bool(calls[i].resp.data, "running", &r);
        cas_json_get_u64(calls[i].resp.data, "done_bytes", &d);
        cas_json_get_u64(calls[i].resp.data, "total_bytes", &t);
        running |= r;
        done += d;
        total += t;
    }
    pthread_mutex_lock(&bal->lock);
    running |= bal->compact_running;
    char domain[128], last[256];
    snprintf(domain, sizeof(domain), "%s", bal->compact_domain);
    snprintf(last, sizeof(last), "%s", bal->compact_last);
    pthread_mutex_unlock(&bal->lock);
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "running");
    cas_json_bool(&j, running);
    cas_json_key(&j, "done_bytes");
    cas_json_u64(&j, done);
    cas_json_key(&j, "total_bytes");
    cas_json_u64(&j, total);
    cas_json_key(&j, "failure_domain");
    cas_json_string(&j, domain);
    cas_json_key(&j, "last_result");
    cas_json_string(&j, last);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
    free_calls(calls, v->n);
    view_put(v);
}
