/*
 * copy.c - one object from one backend to another (see copy.h for what it
 * promises and why it is one thread on a libcurl multi handle).
 *
 * The state of a copy:
 *
 *   source (GET)  --on_get_data-->  buf[start..end)  --on_put_read-->  target (PUT)
 *                   hashes, charges                    holds the last
 *                   the throttle                       byte back until
 *                                                      the source ended
 *                                                      cleanly, verified
 *
 * The PUT is added to the multi handle only once the GET's head is in and
 * says 200 with a length that fits: a source that answers anything else
 * costs the target nothing. The loop in run() moves both transfers and
 * unpauses each side when the other has made room (or data); it is also
 * where every timeout and the stop flag are checked, so no callback ever
 * sleeps.
 */
#define _GNU_SOURCE
#include "copy.h"
#include "json.h"
#include "key.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cas_copier {
    CURLM *multi; /* its connection cache carries keep-alive between copies */
    CURL *get, *put;
    struct cas_hash *hash;
    const struct cas_hash_algo *hash_algo;
    char *buf; /* CAS_COPY_BUFFER bytes */
};

struct cas_copier *cas_copier_new(void)
{
    struct cas_copier *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return NULL;
    cp->multi = curl_multi_init();
    cp->get = curl_easy_init();
    cp->put = curl_easy_init();
    cp->buf = malloc(CAS_COPY_BUFFER);
    if (!cp->multi || !cp->get || !cp->put || !cp->buf) {
        cas_copier_free(cp);
        return NULL;
    }
    return cp;
}

void cas_copier_free(struct cas_copier *cp)
{
    if (!cp)
        return;
    if (cp->get)
        curl_easy_cleanup(cp->get);
    if (cp->put)
        curl_easy_cleanup(cp->put);
    if (cp->multi)
        curl_multi_cleanup(cp->multi);
    cas_hash_free(cp->hash);
    free(cp->buf);
    free(cp);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- one copy's state --------------------------------------------------- */

struct side {
    CURL *e;
    bool added;  /* on the multi handle */
    bool paused; /* its callback asked for a pause */
    bool done;   /* finished (result below) */
    CURLcode result;
    long status;
    char body[256]; /* the start of an error answer, for the message */
    size_t body_len;
};

struct copy {
    struct cas_copier *cp;
    const struct cas_copy_options *o;
    struct cas_copy_result *res;
    char get_url[1200], put_url[1200];
    unsigned char want[CAS_MAX_DIGEST];
    struct side get, put;
    struct cas_ctl_opts ctl; /* the caller's, less its timeouts and stop */
    struct curl_slist *hdrs, *put_hdrs;
    char errbuf_get[CURL_ERROR_SIZE], errbuf_put[CURL_ERROR_SIZE];

    bool head_done;     /* the GET's answer head is in */
    bool head_handled;  /* ... and run() has looked at it (on_source_head) */
    int64_t size;       /* bytes to copy; -1 until known */
    uint64_t got;       /* bytes read from the source */
    uint64_t sent;      /* bytes given to the target */
    size_t start, end;  /* unread bytes are buf[start..end) */
    bool verified;      /* got == size and the digest matched */
    bool source_ok;     /* ... and the GET ended cleanly with nothing more: the
                           last byte may go */
    int source_fault;   /* -errno once the source's bytes are wrong */
    char fault[256];    /* why */
    uint64_t resume_ns; /* the throttle's: no source bytes before this */
    uint64_t progress_ns, body_sent_ns;
    uint64_t target_ns; /* the PUT's last byte out or in */
    uint64_t health_ns; /* the last time target_down was asked */
};

static size_t on_get_header(char *data, size_t size, size_t nmemb, void *cls)
{
    struct copy *c = cls;
    size_t n = size * nmemb;
    if (n <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(c->get.e, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) { /* not a 1xx: the real head is complete */
            c->get.status = code;
            c->head_done = true;
        }
    }
    c->progress_ns = mono_ns();
    return n;
}

static void keep_body(struct side *s, const char *data, size_t n)
{
    size_t room = sizeof(s->body) - 1 - s->body_len;
    size_t k = n < room ? n : room;
    memcpy(s->body + s->body_len, data, k);
    s->body_len += k;
    s->body[s->body_len] = '\0';
}

static size_t on_get_data(char *data, size_t size, size_t nmemb, void *cls)
{
    struct copy *c = cls;
    struct cas_copier *cp = c->cp;
    size_t n = size * nmemb;
    if (!c->head_handled) {
        /* Bytes in the same read as the head: wait until run() has
         * decided what the answer is (and started the PUT). */
        c->get.paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (c->get.status != 200 || c->size < 0) {
        keep_body(&c->get, data, n); /* an error answer: run() reports it */
        return n;
    }
    if (c->got + n > (uint64_t)c->size) {
        c->source_fault = -EBADMSG;
        snprintf(c->fault, sizeof(c->fault), "GET %s sent more than the %lld bytes expected",
                 c->get_url, (long long)c->size);
        return 0; /* aborts the GET; run() aborts the PUT */
    }
    if (c->resume_ns && mono_ns() < c->resume_ns) {
        c->get.paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (c->start == c->end)
        c->start = c->end = 0;
    if (CAS_COPY_BUFFER - c->end < n && c->start > 0) {
        memmove(cp->buf, cp->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (CAS_COPY_BUFFER - c->end < n) {
        if (n > CAS_COPY_BUFFER) { /* cannot happen with the buffer sizes set in start_get */
            c->source_fault = -EIO;
            snprintf(c->fault, sizeof(c->fault), "GET %s: a block larger than the copy buffer",
                     c->get_url);
            return 0;
        }
        c->get.paused = true;
        return CURL_WRITEFUNC_PAUSE; /* curl offers the same bytes again */
    }
    /* The digest is checked before the last block enters the buffer: the
     * target can never be given the end of a body that does not match. */
    cas_hash_update(cp->hash, data, n);
    if (c->got + n == (uint64_t)c->size) {
        unsigned char got[CAS_MAX_DIGEST];
        cas_hash_final(cp->hash, got);
        if (memcmp(got, c->want, c->o->algo->digest_len) != 0) {
            c->source_fault = -EBADMSG;
            snprintf(c->fault, sizeof(c->fault),
                     "GET %s: the bytes do not match the key (digest mismatch), not copied",
                     c->get_url);
            return 0;
        }
        c->verified = true;
    }
    memcpy(cp->buf + c->end, data, n);
    c->end += n;
    c->got += n;
    c->progress_ns = mono_ns();
    if (c->o->throttle) {
        uint64_t wait = c->o->throttle(c->o->throttle_cls, n);
        c->resume_ns = wait ? mono_ns() + wait : 0;
    }
    return n;
}

static size_t on_put_read(char *buf, size_t size, size_t nitems, void *cls)
{
    struct copy *c = cls;
    size_t max = size * nitems;
    uint64_t left = (uint64_t)c->size - c->sent;
    if (left == 0)
        return 0;
    /* The last byte goes only once the source's answer is over, verified
     * and with nothing after the object (a source without a length could
     * send more); the last block is not even buffered before it matched
     * (on_get_data). */
    uint64_t allowed = c->source_ok ? left : left - 1;
    size_t n = c->end - c->start;
    if (n > max)
        n = max;
    if (n > allowed)
        n = (size_t)allowed;
    if (n == 0) {
        c->put.paused = true;
        return CURL_READFUNC_PAUSE;
    }
    memcpy(buf, c->cp->buf + c->start, n);
    c->start += n;
    c->sent += n;
    c->progress_ns = c->target_ns = mono_ns();
    if (c->sent == (uint64_t)c->size)
        c->body_sent_ns = c->progress_ns;
    if (c->o->counter)
        __atomic_add_fetch(c->o->counter, (uint64_t)n, __ATOMIC_RELAXED);
    return n;
}

static size_t on_put_answer(char *data, size_t size, size_t nmemb, void *cls)
{
    struct copy *c = cls;
    size_t n = size * nmemb;
    keep_body(&c->put, data, n);
    c->progress_ns = c->target_ns = mono_ns();
    return n;
}

/* Common settings of both transfers, by the control layer (ctl.h): URL,
 * token, TLS, connect timeout, user agent. *hdrs gets the header list. */
static int setup(struct copy *c, CURL *e, const char *url, const char *method, char *errbuf,
                 struct curl_slist **hdrs)
{
    if (cas_ctl_easy(&e, &c->ctl, url, method, hdrs, errbuf) < 0)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    return 0;
}

static int start_get(struct copy *c)
{
    CURL *e = c->get.e;
    if (setup(c, e, c->get_url, "GET", c->errbuf_get, &c->hdrs) < 0)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_get_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_get_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    if (curl_multi_add_handle(c->cp->multi, e) != CURLM_OK)
        return -ENOMEM;
    c->get.added = true;
    return 0;
}

static int start_put(struct copy *c)
{
    CURL *e = c->put.e;
    if (setup(c, e, c->put_url, "PUT", c->errbuf_put, &c->put_hdrs) < 0)
        return -ENOMEM;
    struct curl_slist *h = curl_slist_append(c->put_hdrs, "Content-Type: application/octet-stream");
    if (!h)
        return -ENOMEM;
    c->put_hdrs = h;
    if (c->o->put_header && !(h = curl_slist_append(c->put_hdrs, c->o->put_header)))
        return -ENOMEM;
    c->put_hdrs = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->size);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_put_read);
    curl_easy_setopt(e, CURLOPT_READDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_put_answer);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    if (curl_multi_add_handle(c->cp->multi, e) != CURLM_OK)
        return -ENOMEM;
    c->put.added = true;
    c->target_ns = mono_ns();
    if (c->size == 0)
        c->body_sent_ns = c->target_ns;
    return 0;
}

/* Takes a side off the multi handle; an unfinished transfer is cut (its
 * connection closed, so a PUT never completes). */
static void stop_side(struct copy *c, struct side *s)
{
    if (s->added)
        curl_multi_remove_handle(c->cp->multi, s->e);
    s->added = false;
}

/* ---- what happened ------------------------------------------------------ */

static int fail(struct copy *c, enum cas_copy_side side, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct copy *c, enum cas_copy_side side, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->res->error, sizeof(c->res->error), fmt, ap);
    va_end(ap);
    c->res->side = side;
    return rc;
}

/* The errno for an HTTP error status (see copy.h). */
static int status_errno(long status, bool target)
{
    switch (status) {
    case 401:
        return -EACCES;
    case 404:
        return target ? -EIO : -ENOENT;
    case 410:
        return target ? -ECANCELED : -ENOENT;
    case 422:
        return target ? -EBADMSG : -EIO;
    case 403:
    case 503:
        return target ? -EROFS : -EIO;
    case 507:
        return target ? -ENOSPC : -EIO;
    default:
        return -EIO;
    }
}

/* "GET url answered 404: no such object" from an error answer. */
static int fail_status(struct copy *c, bool target)
{
    struct side *s = target ? &c->put : &c->get;
    char msg[200] = "";
    if (s->body[0] == '{')
        cas_json_get_string(s->body, "error", msg, sizeof(msg));
    const char *what = target ? "PUT" : "GET";
    const char *url = target ? c->put_url : c->get_url;
    const char *why = "";
    if (target && s->status == 410)
        why = " (a client deleted the object there)";
    else if (!target && (s->status == 404 || s->status == 410))
        why = " (nothing to copy)";
    return fail(c, target ? CAS_COPY_TARGET : CAS_COPY_SOURCE, status_errno(s->status, target),
                "%s %s answered %ld%s%s%s", what, url, s->status, msg[0] ? ": " : "", msg, why);
}

static int fail_curl(struct copy *c, bool target)
{
    struct side *s = target ? &c->put : &c->get;
    const char *errbuf = target ? c->errbuf_put : c->errbuf_get;
    return fail(c, target ? CAS_COPY_TARGET : CAS_COPY_SOURCE,
                s->result == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO, "%s %s: %s",
                target ? "PUT" : "GET", target ? c->put_url : c->get_url,
                errbuf[0] ? errbuf : curl_easy_strerror(s->result));
}

/* Once the GET's head is in: is it something to copy? Starts the PUT. */
static int on_source_head(struct copy *c)
{
    struct cas_copy_result *res = c->res;
    res->source_status = c->get.status;
    if (c->get.status != 200)
        return 1; /* the error answer's body is read whole, then reported */
    curl_off_t cl = -1;
    curl_easy_getinfo(c->get.e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (c->size >= 0 && cl >= 0 && cl != c->size)
        return fail(c, CAS_COPY_SOURCE, -EIO, "GET %s: %lld bytes, expected %lld (not copied)",
                    c->get_url, (long long)cl, (long long)c->size);
    if (c->size < 0 && cl < 0)
        return fail(c, CAS_COPY_SOURCE, -EIO, "GET %s: the answer has no length (not copied)",
                    c->get_url);
    if (c->size < 0)
        c->size = cl;
    res->size = (uint64_t)c->size;
    if (c->size == 0)
        return 0; /* the PUT starts once the empty body is verified */
    return start_put(c) < 0 ? fail(c, CAS_COPY_LOCAL, -ENOMEM, "out of memory") : 0;
}

static unsigned or_default(unsigned v, unsigned def)
{
    return v ? v : def;
}

/* Drives both transfers to the end. 0, or -errno with res filled. */
static int run(struct copy *c)
{
    const struct cas_copy_options *o = c->o;
    uint64_t t0 = mono_ns();
    uint64_t stall_ns = or_default(o->stall_timeout_ms, CAS_COPY_DEFAULT_STALL_MS) * 1000000ull;
    uint64_t answer_ns = or_default(o->answer_timeout_ms, CAS_COPY_DEFAULT_ANSWER_MS) * 1000000ull;
    uint64_t total_ns = o->total_timeout_ms * 1000000ull;
    uint64_t head_ns = o->head_timeout_ms * 1000000ull;
    c->progress_ns = t0;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(c->cp->multi, &running) != CURLM_OK)
            return fail(c, CAS_COPY_LOCAL, -EIO, "libcurl multi failure");
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->cp->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                struct side *s = msg->easy_handle == c->get.e ? &c->get : &c->put;
                if (msg->data.result == CURLE_ABORTED_BY_CALLBACK && cas_ctl_refused_reuse(s->e)) {
                    /* A pooled connection with bytes waiting (ctl.h): the
                     * request was stopped before a byte was sent; again
                     * on a new connection. */
                    curl_multi_remove_handle(c->cp->multi, s->e);
                    curl_easy_setopt(s->e, CURLOPT_FRESH_CONNECT, 1L);
                    if (curl_multi_add_handle(c->cp->multi, s->e) == CURLM_OK)
                        continue;
                }
                s->done = true;
                s->result = msg->data.result;
                curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &s->status);
            }
        uint64_t now = mono_ns();

        /* The source, in order: wrong bytes, its head, its end. */
        if (c->source_fault)
            return fail(c, CAS_COPY_SOURCE, c->source_fault, "%s", c->fault);
        if (c->head_done && !c->head_handled) {
            c->head_handled = true;
            int rc = on_source_head(c);
            if (rc < 0)
                return rc;
        }
        if (c->get.done) {
            if (c->get.result != CURLE_OK)
                return fail_curl(c, false);
            c->res->source_status = c->get.status;
            if (c->get.status != 200)
                return fail_status(c, false);
            if (c->size < 0)
                return fail(c, CAS_COPY_SOURCE, -EIO, "GET %s: no answer", c->get_url);
            if (c->size == 0 && !c->verified) {
                unsigned char got[CAS_MAX_DIGEST];
                cas_hash_final(c->cp->hash, got);
                if (memcmp(got, c->want, o->algo->digest_len) != 0)
                    return fail(c, CAS_COPY_SOURCE, -EBADMSG,
                                "GET %s: the bytes do not match the key (digest mismatch), "
                                "not copied",
                                c->get_url);
                c->verified = c->source_ok = true;
                if (start_put(c) < 0)
                    return fail(c, CAS_COPY_LOCAL, -ENOMEM, "out of memory");
                continue;
            }
            if (c->got != (uint64_t)c->size) /* a length curl did not check */
                return fail(c, CAS_COPY_SOURCE, -EIO, "GET %s: %llu bytes, expected %lld",
                            c->get_url, (unsigned long long)c->got, (long long)c->size);
            assert(c->verified);
            c->source_ok = true;
        }

        /* The target. */
        if (c->put.done) {
            c->res->target_status = c->put.status;
            c->res->bytes = c->sent;
            if (c->put.result != CURLE_OK && !(c->put.status >= 400))
                return fail_curl(c, true);
            if (c->put.status != 200 && c->put.status != 201)
                return fail_status(c, true);
            if (!c->source_ok || c->sent != (uint64_t)c->size) /* never: the body was held back */
                return fail(c, CAS_COPY_TARGET, -EIO,
                            "PUT %s answered %ld before the whole body was sent", c->put_url,
                            c->put.status);
            return 0;
        }

        if (o->stop && *o->stop)
            return fail(c, CAS_COPY_LOCAL, -EINTR, "copy of %s interrupted", c->get_url);
        /* When time runs out, the side that holds things up is to blame:
         * the target when it has bytes to take or an answer to give, else
         * the source. */
        bool waiting_answer = c->put.added && c->source_ok && c->sent == (uint64_t)c->size;
        bool target_late = c->put.added && (c->end > c->start || waiting_answer);
        if (total_ns && now - t0 > total_ns)
            return fail(c, target_late ? CAS_COPY_TARGET : CAS_COPY_SOURCE, -ETIMEDOUT,
                        "copy %s -> %s not done within %u ms", c->get_url, c->put_url,
                        o->total_timeout_ms);
        if (o->target_down && c->put.added && now - c->target_ns >= 100000000ull &&
            now - c->health_ns >= 100000000ull) {
            c->health_ns = now;
            if (o->target_down(o->target_down_cls))
                return fail(c, CAS_COPY_TARGET, -EHOSTDOWN,
                            "PUT %s: the backend is down (its probes), given up", c->put_url);
        }
        if (!c->head_done && head_ns && now - t0 > head_ns)
            return fail(c, CAS_COPY_SOURCE, -ETIMEDOUT, "GET %s: no answer within %u ms",
                        c->get_url, o->head_timeout_ms);
        if (waiting_answer) {
            if (now - c->body_sent_ns > answer_ns)
                return fail(c, CAS_COPY_TARGET, -ETIMEDOUT,
                            "PUT %s: no answer within %u ms of the body's end", c->put_url,
                            or_default(o->answer_timeout_ms, CAS_COPY_DEFAULT_ANSWER_MS));
        } else if (now > c->progress_ns && now - c->progress_ns > stall_ns &&
                   !(c->resume_ns && now < c->resume_ns)) {
            return fail(c, target_late ? CAS_COPY_TARGET : CAS_COPY_SOURCE, -ETIMEDOUT,
                        "%s %s: nothing moved for %u ms", target_late ? "PUT" : "GET",
                        target_late ? c->put_url : c->get_url,
                        or_default(o->stall_timeout_ms, CAS_COPY_DEFAULT_STALL_MS));
        }

        /* Unpause whichever side can move now. */
        int wait_ms = 100;
        if (c->get.paused && !c->get.done) {
            bool room = CAS_COPY_BUFFER - (c->end - c->start) >= 256u * 1024;
            if (c->resume_ns && now < c->resume_ns) {
                uint64_t ms = (c->resume_ns - now) / 1000000 + 1;
                if (ms < (uint64_t)wait_ms)
                    wait_ms = (int)ms;
            } else if (room) {
                c->get.paused = false;
                c->resume_ns = 0;
                c->progress_ns = now; /* a wait we chose is not a stall */
                curl_easy_pause(c->get.e, CURLPAUSE_CONT);
                if (c->source_fault)
                    continue;
            }
        }
        if (c->put.paused && !c->put.done && (c->end > c->start || c->source_ok)) {
            c->put.paused = false;
            curl_easy_pause(c->put.e, CURLPAUSE_CONT);
        }
        curl_multi_poll(c->cp->multi, NULL, 0, wait_ms, NULL);
    }
}

int cas_copy_object(struct cas_copier *cp, const struct cas_copy_options *o, const char *src,
                    const char *dst, const char *hex, int64_t size, struct cas_copy_result *res)
{
    memset(res, 0, sizeof(*res));
    struct copy c = {.o = o, .res = res, .size = size < 0 ? -1 : size};
    if (!o->algo || !src || !dst || !hex) {
        snprintf(res->error, sizeof(res->error), "copy: no algorithm, source, target or key");
        res->side = CAS_COPY_LOCAL;
        return -EINVAL;
    }
    /* The key goes into two URLs: only a well-formed key of the cluster's
     * algorithm, in lowercase hex, ever does. */
    struct cas_key key;
    char kerr[256];
    size_t hlen = strlen(hex);
    if (cas_key_parse(hex, hlen, o->algo, &key, kerr, sizeof(kerr)) < 0 ||
        hlen != o->algo->hex_len) {
        snprintf(res->error, sizeof(res->error), "copy: %s",
                 hlen != o->algo->hex_len ? "not a bare hex key" : kerr);
        res->side = CAS_COPY_LOCAL;
        return -EINVAL;
    }
    char lower[CAS_MAX_HEX + 1];
    cas_key_hex(&key, lower);
    memcpy(c.want, key.digest, o->algo->digest_len);

    struct cas_copier *own = NULL;
    if (!cp && !(cp = own = cas_copier_new())) {
        snprintf(res->error, sizeof(res->error), "out of memory");
        res->side = CAS_COPY_LOCAL;
        return -ENOMEM;
    }
    if (cp->hash_algo != o->algo) {
        cas_hash_free(cp->hash);
        cp->hash = cas_hash_new(o->algo);
        cp->hash_algo = cp->hash ? o->algo : NULL;
    }
    int rc = 0;
    c.cp = cp;
    c.get.e = cp->get;
    c.put.e = cp->put;
    if (!cp->hash)
        rc = fail(&c, CAS_COPY_LOCAL, -ENOMEM, "out of memory");
    else
        cas_hash_reset(cp->hash);
    snprintf(c.get_url, sizeof(c.get_url), "%s/objects/%s", src, lower);
    const char *query = o->client_write ? (o->no_sync ? "?sync=0" : "")
                                        : (o->no_sync ? "?replica=1&sync=0" : "?replica=1");
    snprintf(c.put_url, sizeof(c.put_url), "%s/objects/%s%s", dst, lower, query);
    /* The caller's way to the backends; the timeouts and the stop flag are
     * this module's own (run()), so that each is told apart. */
    if (o->ctl)
        c.ctl = *o->ctl;
    c.ctl.timeout_ms = 0;
    c.ctl.stall_ms = 0;
    c.ctl.stop = NULL;
    c.ctl.expect_continue = false;
    if (c.ctl.connect_timeout_ms <= 0)
        c.ctl.connect_timeout_ms = CAS_COPY_DEFAULT_CONNECT_MS;
    if (!c.ctl.user_agent)
        c.ctl.user_agent = "ca-cas/" CAS_VERSION;
    if (rc == 0)
        rc = start_get(&c) < 0 ? fail(&c, CAS_COPY_LOCAL, -ENOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = run(&c);
    /* The PUT first: cut before its end, the target keeps nothing. */
    stop_side(&c, &c.put);
    stop_side(&c, &c.get);
    res->bytes = c.sent;
    if (c.size >= 0)
        res->size = (uint64_t)c.size;
    if (rc == 0)
        res->side = CAS_COPY_NONE;
    curl_slist_free_all(c.hdrs);
    curl_slist_free_all(c.put_hdrs);
    cas_copier_free(own);
    return rc;
}
