/*
 * fanout.c - one request body streamed to several backends at once.
 *
 * A PUT through the balancer goes to every home backend in parallel, and
 * the body must never be held whole. The caller hands the body over chunk
 * by chunk (fanout_feed), as the client sends it; each chunk is offered to
 * every transfer's read callback, which pauses its transfer once it has
 * taken the whole chunk. fanout_feed returns when every live transfer has
 * taken the chunk, so memory is one chunk, and the slowest live backend
 * sets the pace. A backend that stops taking data for io_timeout_ms is
 * dropped, so one stuck disk cannot hold the others. The same code carries
 * gc/mark bodies (copies between backends go through common/copy.c).
 *
 * A hung backend (SIGSTOPped, a dead disk: the kernel still accepts the
 * connection and buffers some of the body) must cost no more than a dead
 * one. So a target is also dropped, without waiting for those limits:
 *   - at once, when the probes have marked its backend down;
 *   - with a quorum set (fanout_set_quorum: a PUT's min_replicas), when at
 *     least `need` other targets are ahead of it (they have taken the
 *     current chunk, or answered 2xx at the end) and it has not moved for
 *     straggler_ms. A write thus answers once its quorum is durable plus at
 *     most straggler_ms, and the others never wait on the laggard;
 *   - with a straggler time set, once the whole body is sent and one target
 *     has answered 2xx, a target still waiting for its answer after
 *     ANSWER_GRACE_MIN_MS or ten times the first answer's wait (whichever
 *     is longer): a backend that takes a body and never answers (its probes
 *     still fine) costs a write that much, not the 600 s answer timeout,
 *     and the write walks on to the next backend of the ring.
 * A dropped target's transfer is cut (the backend keeps no partial copy);
 * its result says why, with status 0.
 */
#include "fanout.h"
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After the body is sent the backend syncs to disk before answering:
 * allow it much longer than a stall in the middle of the body. */
#define FANOUT_ANSWER_TIMEOUT_MS (600u * 1000)
/* Once another copy answered: how long a target may still take (ms). */
#define ANSWER_GRACE_MIN_MS 10000u

struct fanout_target {
    struct fanout *f;
    CURL *easy;
    struct curl_slist *hdrs;
    size_t off; /* bytes of the current chunk taken */
    bool paused;
    bool done;
    uint64_t last_progress_ns;
    struct fanout_result res;
};

struct fanout {
    struct balancer *bal;
    const struct view *v;
    size_t need;           /* quorum for the straggler rule; n: none */
    unsigned straggler_ms; /* see the top of the file */
    unsigned answer_timeout_ms;
    uint64_t quorum_ns; /* when `need` targets had answered 2xx; 0 not yet */
    uint64_t eof_ns;      /* when the whole body was handed over; 0 not yet */
    uint64_t first_ok_ns; /* when the first target answered 2xx after it; 0 not yet */
    uint64_t health_ns; /* last look at the probes' verdicts */
    CURLM *multi;
    struct fanout_target *t;
    size_t n;
    size_t alive;
    const char *chunk;
    size_t chunk_len;
    bool eof;
    unsigned io_timeout_ms;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *cls)
{
    struct fanout_target *t = cls;
    struct fanout *f = t->f;
    size_t max = size * nitems;
    if (t->off < f->chunk_len) {
        size_t n = f->chunk_len - t->off;
        if (n > max)
            n = max;
        memcpy(buf, f->chunk + t->off, n);
        t->off += n;
        t->last_progress_ns = cas_now_ns();
        return n;
    }
    if (f->eof)
        return 0;
    t->paused = true;
    return CURL_READFUNC_PAUSE;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *cls)
{
    struct fanout_target *t = cls;
    size_t n = size * nmemb;
    if (t->res.resp.len < 64 * 1024)
        cas_buf_append(&t->res.resp, data, n);
    t->last_progress_ns = cas_now_ns();
    return n;
}

static void finish_target(struct fanout *f, struct fanout_target *t, CURLcode rc, const char *why)
{
    if (t->done)
        return;
    t->done = true;
    f->alive--;
    if (rc == CURLE_OK && !why) {
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->res.status);
    } else {
        t->res.status = 0;
        snprintf(t->res.err, sizeof(t->res.err), "%s", why ? why : curl_easy_strerror(rc));
    }
    curl_multi_remove_handle(f->multi, t->easy);
}

int fanout_start(struct balancer *bal, const struct view *v, const char *method, char **urls,
                 const size_t *backends, size_t n, int64_t content_length, struct fanout **out)
{
    return fanout_start_with(bal, v, method, urls, backends, n, content_length, NULL, out);
}

int fanout_start_with(struct balancer *bal, const struct view *v, const char *method, char **urls,
                      const size_t *backends, size_t n, int64_t content_length, const char *header,
                      struct fanout **out)
{
    struct fanout *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->t = calloc(n ? n : 1, sizeof(*f->t));
    f->multi = upstream_multi_new();
    if (!f->t || !f->multi) {
        fanout_free(f);
        return -ENOMEM;
    }
    f->io_timeout_ms = bal->opt.io_timeout_ms;
    f->answer_timeout_ms = FANOUT_ANSWER_TIMEOUT_MS;
    f->bal = bal;
    f->v = v;
    f->n = n;
    f->need = n;
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < n; i++) {
        struct fanout_target *t = &f->t[i];
        t->f = f;
        t->res.backend = backends[i];
        t->last_progress_ns = now;
        cas_buf_init(&t->res.resp);
        t->easy = upstream_easy(v, urls[i], "GET", &bal->opt, &t->hdrs);
        if (t->easy && header && cas_ctl_add_header(t->easy, &t->hdrs, header) < 0) {
            curl_easy_cleanup(t->easy);
            curl_slist_free_all(t->hdrs);
            t->hdrs = NULL;
            t->easy = NULL;
        }
        if (!t->easy) {
            t->done = true;
            snprintf(t->res.err, sizeof(t->res.err), "out of memory");
            continue;
        }
        curl_easy_setopt(t->easy, CURLOPT_UPLOAD, 1L);
        if (strcmp(method, "PUT") != 0)
            curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, method);
        if (content_length >= 0)
            curl_easy_setopt(t->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)content_length);
        curl_easy_setopt(t->easy, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(t->easy, CURLOPT_READDATA, t);
        curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
        curl_easy_setopt(t->easy, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
        curl_multi_add_handle(f->multi, t->easy);
        f->alive++;
    }
    *out = f;
    return 0;
}

/* True while some live target has not taken the whole chunk (or, at the
 * end, has not answered). */
static bool pending(const struct fanout *f)
{
    for (size_t i = 0; i < f->n; i++) {
        const struct fanout_target *t = &f->t[i];
        if (!t->done && (f->eof || t->off < f->chunk_len))
            return true;
    }
    return false;
}

void fanout_set_quorum(struct fanout *f, size_t need, unsigned straggler_ms)
{
    f->need = need ? need : 1;
    f->straggler_ms = straggler_ms;
}

void fanout_set_answer_timeout(struct fanout *f, unsigned ms)
{
    f->answer_timeout_ms = ms;
}

/* True when target t is ahead: it has taken the current chunk, or (at the
 * end) answered 2xx. */
static bool target_ahead(const struct fanout *f, const struct fanout_target *t)
{
    if (t->done)
        return t->res.status >= 200 && t->res.status < 300;
    return !f->eof && t->off >= f->chunk_len;
}

/* Drops the targets that hold the others up: backends the probes have
 * marked down, stragglers behind a quorum, and stalls past the limits. */
static void drop_laggards(struct fanout *f, uint64_t now)
{
    size_t ahead = 0;
    for (size_t i = 0; i < f->n; i++)
        ahead += target_ahead(f, &f->t[i]);
    if (f->eof && ahead >= f->need && f->need < f->n && !f->quorum_ns)
        f->quorum_ns = now;
    if (f->eof && ahead >= 1 && !f->first_ok_ns)
        f->first_ok_ns = now;
    uint64_t grace_ms = ANSWER_GRACE_MIN_MS;
    if (f->first_ok_ns && f->eof_ns && (f->first_ok_ns - f->eof_ns) / 100000 > grace_ms)
        grace_ms = (unsigned)((f->first_ok_ns - f->eof_ns) / 100000); /* 10 x, in ms */
    bool look_health = now - f->health_ns > 100 * 1000000ull;
    bool down[f->v->n ? f->v->n : 1];
    if (look_health) {
        f->health_ns = now;
        backend_known_down(f->bal, f->v, down);
    }
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_target *t = &f->t[i];
        if (t->done || target_ahead(f, t))
            continue;
        uint64_t idle_ms = (now - t->last_progress_ns) / 1000000;
        bool waiting_answer = f->eof && t->off >= f->chunk_len;
        if (look_health && idle_ms >= 100 && t->res.backend < f->v->n && down[t->res.backend]) {
            finish_target(f, t, CURLE_OPERATION_TIMEDOUT, "backend is down (probes)");
            continue;
        }
        if (f->need < f->n && f->straggler_ms) {
            /* At the end, the clock starts when the quorum was reached. */
            uint64_t since =
                f->eof && f->quorum_ns > t->last_progress_ns ? f->quorum_ns : t->last_progress_ns;
            if (ahead >= f->need && (now - since) / 1000000 >= f->straggler_ms) {
                finish_target(f, t, CURLE_OPERATION_TIMEDOUT,
                              waiting_answer
                                  ? "no answer in time once the other copies were durable"
                                  : "fell behind the other copies");
                continue;
            }
        }
        if (waiting_answer && f->straggler_ms && f->first_ok_ns) {
            uint64_t since =
                f->first_ok_ns > t->last_progress_ns ? f->first_ok_ns : t->last_progress_ns;
            if ((now - since) / 1000000 >= grace_ms) {
                finish_target(f, t, CURLE_OPERATION_TIMEDOUT,
                              "no answer in time once another copy was durable");
                continue;
            }
        }
        unsigned limit = waiting_answer ? f->answer_timeout_ms : f->io_timeout_ms;
        if (idle_ms > limit)
            finish_target(f, t, CURLE_OPERATION_TIMEDOUT,
                          waiting_answer ? "backend did not answer in time"
                                         : "backend stopped taking data");
    }
}

static void drive(struct fanout *f)
{
    while (pending(f)) {
        int running = 0;
        curl_multi_perform(f->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(f->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct fanout_target *t = NULL;
            CURL *e = msg->easy_handle;
            CURLcode result = msg->data.result;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
            if (result == CURLE_ABORTED_BY_CALLBACK && cas_ctl_refused_reuse(e)) {
                /* The pooled connection had bytes waiting after its last
                 * answer (common/ctl_reuse.c); the request was stopped
                 * before a byte of it was sent (nothing of the body read):
                 * the same request on a new connection. */
                curl_multi_remove_handle(f->multi, e);
                curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
                if (curl_multi_add_handle(f->multi, e) == CURLM_OK)
                    continue;
            }
            finish_target(f, t, result, NULL);
        }
        if (!pending(f))
            break;
        drop_laggards(f, cas_now_ns());
        if (!pending(f))
            break;
        curl_multi_poll(f->multi, NULL, 0, 100, NULL);
    }
}

/* Offers the current chunk (or the end) to every paused target. */
static void resume_all(struct fanout *f)
{
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_target *t = &f->t[i];
        t->off = 0;
        t->last_progress_ns = now;
        if (!t->done && t->paused) {
            t->paused = false;
            curl_easy_pause(t->easy, CURLPAUSE_CONT);
        }
    }
}

size_t fanout_feed(struct fanout *f, const char *data, size_t len)
{
    if (len == 0 || f->alive == 0)
        return f->alive;
    f->chunk = data;
    f->chunk_len = len;
    resume_all(f);
    drive(f);
    f->chunk = NULL;
    f->chunk_len = 0;
    return f->alive;
}

void fanout_finish(struct fanout *f)
{
    f->eof = true;
    f->eof_ns = cas_now_ns();
    f->chunk = NULL;
    f->chunk_len = 0;
    resume_all(f);
    drive(f);
}

size_t fanout_count(const struct fanout *f)
{
    return f->n;
}

const struct fanout_result *fanout_result(const struct fanout *f, size_t i)
{
    return &f->t[i].res;
}

void fanout_free(struct fanout *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->t && i < f->n; i++) {
        struct fanout_target *t = &f->t[i];
        if (t->easy) {
            if (!t->done)
                curl_multi_remove_handle(f->multi, t->easy);
            curl_easy_cleanup(t->easy);
        }
        curl_slist_free_all(t->hdrs);
        cas_buf_free(&t->res.resp);
    }
    if (f->multi)
        curl_multi_cleanup(f->multi);
    free(f->t);
    free(f);
}
