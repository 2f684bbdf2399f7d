/*
 * rebalance_run.c - one rebalance pass (see rebalance.h): list every
 * backend that is up, plan every object, then let `concurrency` workers
 * carry the plans out while the calling thread reports progress.
 *
 * Workers take objects by number from a shared counter, so each object is
 * handled by one worker and its holder bits need no lock. Per object, the
 * copies come first; the deletions outside the home only follow when every
 * copy succeeded and every home backend confirms (HEAD) that it holds the
 * object now.
 */
#define _GNU_SOURCE
#include "rebalance.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADD(field, n) __atomic_add_fetch(&st->field, (n), __ATOMIC_RELAXED)

struct pass {
    struct rb_cluster *c;
    const struct rb_options *o;
    struct rb_stats *st;
    struct rb_objects *objs;
    struct rb_bucket *bucket;
    size_t next; /* next object number for a worker (atomic) */
    int running; /* workers still running (atomic) */
    pthread_mutex_t event_lock;
};

static bool stopped(const struct rb_options *o)
{
    return o->stop && *o->stop;
}

static void event(struct pass *p, bool warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void event(struct pass *p, bool warning, const char *fmt, ...)
{
    if (!p->o->event)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&p->event_lock);
    p->o->event(p->o->cls, warning, msg);
    pthread_mutex_unlock(&p->event_lock);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- listing ------------------------------------------------------------ */

struct lister {
    struct pass *p;
    size_t backend;
    char line[256];
    size_t len;
    int bad; /* -errno once a line did not parse */
    char err[256];
};

static int list_line(struct lister *l)
{
    l->line[l->len] = '\0';
    char *sp = strchr(l->line, ' ');
    if (!sp)
        return -EPROTO;
    struct cas_key k;
    char why[128];
    if (cas_key_parse(l->line, (size_t)(sp - l->line), l->p->c->algo, &k, why, sizeof(why)) < 0) {
        snprintf(l->err, sizeof(l->err), "bad listing line: %s", why);
        return -EPROTO;
    }
    char *end;
    uint64_t size = strtoull(sp + 1, &end, 10);
    if (end == sp + 1 || (*end && *end != '\r')) {
        snprintf(l->err, sizeof(l->err), "bad size in listing line \"%s\"", l->line);
        return -EPROTO;
    }
    return rb_objects_add(l->p->objs, k.digest, k.algo->digest_len, size, l->backend);
}

static int list_sink(void *cls, const char *d, size_t n)
{
    struct lister *l = cls;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\n') {
            int rc = l->len ? list_line(l) : 0;
            l->len = 0;
            if (rc < 0)
                return rc;
        } else if (l->len < sizeof(l->line) - 1) {
            l->line[l->len++] = d[i];
        } else {
            snprintf(l->err, sizeof(l->err), "listing line too long");
            return -EPROTO;
        }
    }
    return 0;
}

/* Lists every backend that is up; one whose listing fails is treated as
 * down for the rest of the pass. */
static int list_all(struct pass *p, struct rb_io *io, char *err, size_t errlen)
{
    struct rb_cluster *c = p->c;
    struct rb_stats *st = p->st;
    size_t listed = 0;
    for (size_t i = 0; i < c->n && !stopped(p->o); i++) {
        struct rb_backend *b = &c->b[i];
        if (!b->up)
            continue;
        struct lister l = {.p = p, .backend = i};
        char url[1200], why[512] = "";
        snprintf(url, sizeof(url), "%s/objects", b->url);
        long status = rb_io_get(io, url, list_sink, &l, why, sizeof(why));
        if (status == 200 && l.len == 0) {
            listed++;
            continue;
        }
        if (status == 200)
            snprintf(why, sizeof(why), "listing cut in the middle of a line");
        else if (l.err[0])
            snprintf(why, sizeof(why), "%s", l.err);
        event(p, true, "listing %s failed, left alone this pass: %s", b->url, why);
        snprintf(b->error, sizeof(b->error), "listing failed: %s", why);
        b->up = b->writable = false;
        ADD(list_failures, 1);
        ADD(backends_down, 1);
    }
    if (stopped(p->o)) {
        snprintf(err, errlen, "interrupted");
        return -EINTR;
    }
    if (!listed) {
        snprintf(err, errlen, "no backend could be listed");
        return -EIO;
    }
    return 0;
}

/* ---- planning ----------------------------------------------------------- */

static void holders_of(const struct pass *p, size_t i, bool *holders)
{
    for (size_t b = 0; b < p->c->n; b++)
        holders[b] = rb_objects_holds(p->objs, i, b);
}

static uint64_t position(const unsigned char *digest)
{
    uint64_t pos = 0;
    for (int k = 0; k < 8; k++)
        pos = pos << 8 | digest[k];
    return pos;
}

static int plan_all(struct pass *p)
{
    struct rb_stats *st = p->st;
    struct rb_plan plan;
    bool *holders = calloc(p->c->n ? p->c->n : 1, sizeof(bool));
    if (!holders || rb_plan_init(&plan, p->c->n) < 0) {
        free(holders);
        return -ENOMEM;
    }
    size_t n = rb_objects_count(p->objs);
    for (size_t i = 0; i < n; i++) {
        uint64_t size;
        const unsigned char *d = rb_objects_digest(p->objs, i, &size);
        holders_of(p, i, holders);
        rb_plan_object(p->c, position(d), holders, &plan);
        st->objects++;
        st->bytes += size;
        st->copies_planned += plan.ncopy;
        st->copy_bytes_planned += plan.ncopy * size;
        if (plan.removals_allowed) {
            st->removals_planned += plan.nremove;
            st->removal_bytes_planned += plan.nremove * size;
        } else {
            st->removals_held += plan.nremove;
        }
        if (plan.home_unavailable)
            st->objects_home_unavailable++;
        else if (!plan.ncopy && !plan.nremove)
            st->objects_ok++;
    }
    rb_plan_free(&plan);
    free(holders);
    return 0;
}

/* ---- doing ------------------------------------------------------------- */

/* Copies object i to backend t from some holder that is up, home holders
 * first. */
static int copy_one(struct pass *p, struct rb_io *io, size_t i, const char *hex, uint64_t size,
                    const struct rb_plan *plan, size_t t)
{
    struct rb_cluster *c = p->c;
    struct rb_stats *st = p->st;
    size_t order[c->n ? c->n : 1], n = 0;
    for (size_t h = 0; h < plan->nhome; h++)
        order[n++] = plan->home[h];
    for (size_t b = 0; b < c->n; b++) {
        bool home = false;
        for (size_t h = 0; h < plan->nhome; h++)
            home |= plan->home[h] == b;
        if (!home)
            order[n++] = b;
    }
    char err[1024] = "no backend that is up holds it";
    size_t tried = 0, gone = 0;
    for (size_t k = 0; k < n && !stopped(p->o); k++) {
        size_t s = order[k];
        if (s == t || !c->b[s].up || !rb_objects_holds(p->objs, i, s))
            continue;
        tried++;
        int rc = rb_io_copy(io, c->b[s].url, c->b[t].url, hex, size, err, sizeof(err));
        if (rc == 0) {
            rb_objects_set_holds(p->objs, i, t, true);
            ADD(copies_made, 1);
            ADD(bytes_copied, size);
            return 0;
        }
        if (rc == -EINTR)
            return rc;
        if (rc == -ECANCELED) {
            /* A client deleted it since the listing (the target holds its
             * tombstone): nothing to copy, keep or remove. */
            ADD(objects_vanished, 1);
            return -ENOENT;
        }
        if (rc == -ENOENT) { /* gone from the source since the listing */
            rb_objects_set_holds(p->objs, i, s, false);
            gone++;
        }
    }
    if (stopped(p->o))
        return -EINTR;
    if (tried && gone == tried) {
        /* Deleted (by a client, GC, another rebalance's removal of a copy
         * it had confirmed elsewhere) since the listing: not a failure. */
        ADD(objects_vanished, 1);
        return -ENOENT;
    }
    ADD(copies_failed, 1);
    event(p, true, "copy of %s to %s failed: %s", hex, c->b[t].url, err);
    return -EIO;
}

/* Is the home of the object complete right now? Asks each member. */
/* A home copy read back whole: its bytes, hashed as they arrive. */
struct verify {
    struct cas_hash *h;
    uint64_t got;
};

static int verify_sink(void *cls, const char *d, size_t n)
{
    struct verify *v = cls;
    cas_hash_update(v->h, d, n);
    v->got += n;
    return 0;
}

/*
 * Before any copy outside an object's home is removed, every home copy is
 * read back whole and hashed against the key (size bytes). A HEAD is not
 * enough: a copy that rotted unnoticed answers HEAD 200, and removing the
 * good copies elsewhere would lose the object. Costs one read of the object
 * per home copy, only for objects that have copies to remove.
 */
static bool home_confirmed(struct pass *p, struct rb_io *io, const char *hex, uint64_t size,
                           const struct cas_key *key, const struct rb_plan *plan)
{
    for (size_t h = 0; h < plan->nhome; h++) {
        const struct rb_backend *b = &p->c->b[plan->home[h]];
        char url[1200], err[512] = "";
        snprintf(url, sizeof(url), "%s/objects/%s", b->url, hex);
        struct verify v = {.h = cas_hash_new(key->algo)};
        if (!v.h) {
            event(p, false, "%s: copies outside its home kept: out of memory", hex);
            return false;
        }
        long status = rb_io_get(io, url, verify_sink, &v, err, sizeof(err));
        struct cas_key got = {.algo = key->algo};
        cas_hash_final(v.h, got.digest);
        cas_hash_free(v.h);
        if (status == 200 && (v.got != size || !cas_key_equal(&got, key))) {
            snprintf(err, sizeof(err), "the copy on %s does not match its key (%" PRIu64
                     " of %" PRIu64 " bytes read)", b->url, v.got, size);
            status = -EBADMSG;
        }
        if (status != 200) {
            if (status > 0 && !err[0])
                snprintf(err, sizeof(err), "GET %s answered %ld", url, status);
            event(p, false, "%s: copies outside its home kept: %s", hex, err);
            return false;
        }
    }
    return true;
}

static void do_object(struct pass *p, struct rb_io *io, struct rb_plan *plan, bool *holders,
                      size_t i)
{
    struct rb_stats *st = p->st;
    uint64_t size;
    const unsigned char *d = rb_objects_digest(p->objs, i, &size);
    holders_of(p, i, holders);
    rb_plan_object(p->c, position(d), holders, plan);
    if (!plan->ncopy && !plan->nremove)
        return;
    struct cas_key k = {.algo = p->c->algo};
    memcpy(k.digest, d, p->c->algo->digest_len);
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&k, hex);

    bool complete = true;
    for (size_t j = 0; j < plan->ncopy; j++) {
        int rc = copy_one(p, io, i, hex, size, plan, plan->copy_to[j]);
        if (rc == -ENOENT)
            return; /* no holder has it any more: nothing to keep or remove */
        if (rc < 0)
            complete = false;
    }
    if (!plan->nremove || !plan->removals_allowed)
        return;
    if (!complete || stopped(p->o) || !home_confirmed(p, io, hex, size, &k, plan)) {
        ADD(removals_skipped, plan->nremove);
        return;
    }
    for (size_t j = 0; j < plan->nremove; j++) {
        const struct rb_backend *b = &p->c->b[plan->remove[j]];
        char url[1200], err[512];
        /* ?replica=1: drops this copy without the tombstone a client's
         * delete leaves, so the backend can take a copy again later. */
        snprintf(url, sizeof(url), "%s/objects/%s?replica=1", b->url, hex);
        long status = rb_io_simple(io, "DELETE", url, err, sizeof(err));
        if (status == 204 || status == 200 || status == 404) {
            rb_objects_set_holds(p->objs, i, plan->remove[j], false);
            ADD(removals_made, 1);
        } else {
            if (status > 0)
                snprintf(err, sizeof(err), "DELETE %s answered %ld", url, status);
            ADD(removals_failed, 1);
            event(p, true, "removing %s from %s failed: %s", hex, b->url, err);
        }
    }
}

static void *worker_main(void *arg)
{
    struct pass *p = arg;
    struct rb_io *io = rb_io_new(p->c, p->o, p->bucket);
    if (io)
        rb_io_count_bytes(io, &p->st->bytes_streamed);
    struct rb_plan plan;
    bool *holders = calloc(p->c->n ? p->c->n : 1, sizeof(bool));
    bool ok = io && holders && rb_plan_init(&plan, p->c->n) == 0;
    size_t n = rb_objects_count(p->objs);
    while (ok && !stopped(p->o)) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= n)
            break;
        do_object(p, io, &plan, holders, i);
    }
    if (ok)
        rb_plan_free(&plan);
    else
        event(p, true, "a rebalance worker could not start: out of memory");
    free(holders);
    rb_io_free(io);
    __atomic_sub_fetch(&p->running, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

int rebalance_run(struct rb_cluster *c, const struct rb_options *o, struct rb_stats *st, char *err,
                  size_t errlen)
{
    double t0 = mono_s();
    memset(st, 0, sizeof(*st));
    struct pass p = {.c = c, .o = o, .st = st};
    pthread_mutex_init(&p.event_lock, NULL);
    st->backends = c->n;
    for (size_t i = 0; i < c->n; i++)
        if (!c->b[i].up) {
            st->backends_down++;
            event(&p, true, "backend %s (%s) is down, left alone: %s", c->b[i].url, c->b[i].domain,
                  c->b[i].error[0] ? c->b[i].error : "not answering");
        }
    if (!c->ring || !c->algo) {
        pthread_mutex_destroy(&p.event_lock);
        snprintf(err, errlen, "no backend has answered: nothing to rebalance");
        return -EHOSTUNREACH;
    }
    p.objs = rb_objects_new(c->n);
    struct rb_io *io = rb_io_new(c, o, NULL);
    int rc = p.objs && io ? 0 : -ENOMEM;
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        rc = list_all(&p, io, err, errlen);
    rb_io_free(io);
    if (rc == 0 && (rc = plan_all(&p)) < 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0 && !c->complete && st->removals_held)
        event(&p, false, "some backend's ring is unknown: nothing is removed this pass");
    if (rc == 0 && !o->dry_run && (st->copies_planned || st->removals_planned)) {
        unsigned nw = o->concurrency ? o->concurrency : RB_DEFAULT_CONCURRENCY;
        p.bucket = rb_bucket_new(o->max_mbps * 1e6);
        pthread_t *threads = calloc(nw, sizeof(*threads));
        unsigned started = 0;
        if (p.bucket && threads) {
            p.running = (int)nw;
            for (; started < nw; started++)
                if (pthread_create(&threads[started], NULL, worker_main, &p) != 0)
                    break;
            __atomic_sub_fetch(&p.running, (int)(nw - started), __ATOMIC_ACQ_REL);
        }
        if (!started) {
            snprintf(err, errlen, "cannot start the workers");
            rc = -ENOMEM;
        }
        while (__atomic_load_n(&p.running, __ATOMIC_ACQUIRE) > 0) {
            if (o->progress) {
                st->seconds = mono_s() - t0;
                o->progress(o->cls, st);
            }
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        for (unsigned i = 0; i < started; i++)
            pthread_join(threads[i], NULL);
        free(threads);
        rb_bucket_free(p.bucket);
    }
    if (rc == 0 && stopped(o)) {
        snprintf(err, errlen, "interrupted");
        rc = -EINTR;
    }
    st->interrupted = rc == -EINTR;
    st->seconds = mono_s() - t0;
    if (o->progress)
        o->progress(o->cls, st);
    rb_objects_free(p.objs);
    pthread_mutex_destroy(&p.event_lock);
    return rc;
}
