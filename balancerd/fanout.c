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
 * gc/mark bodies and read-repair copies.
 */
#include "balancer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After the body is sent the backend syncs to disk before answering:
 * allow it much longer than a stall in the middle of the body. */
#define FANOUT_ANSWER_TIMEOUT_MS (600u * 1000)

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
    f->n = n;
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < n; i++) {
        struct fanout_target *t = &f->t[i];
        t->f = f;
        t->res.backend = backends[i];
        t->last_progress_ns = now;
        cas_buf_init(&t->res.resp);
        t->easy = upstream_easy(v, urls[i], "GET", &bal->opt, &t->hdrs);
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
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish_target(f, t, msg->data.result, NULL);
        }
        if (!pending(f))
            break;
        uint64_t now = cas_now_ns();
        for (size_t i = 0; i < f->n; i++) {
            struct fanout_target *t = &f->t[i];
            if (t->done)
                continue;
            bool waiting_answer = f->eof && t->off >= f->chunk_len;
            unsigned limit = waiting_answer ? FANOUT_ANSWER_TIMEOUT_MS : f->io_timeout_ms;
            if ((now - t->last_progress_ns) / 1000000 > limit)
                finish_target(f, t, CURLE_OPERATION_TIMEDOUT, "backend stopped taking data");
        }
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
