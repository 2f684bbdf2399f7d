/*
 * ctl.c - the libcurl client layer for small control requests (ctl.h):
 * one place that sets up a handle towards a storaged or a balancer, runs
 * one or many such requests with their answers kept in memory, and says in
 * one phrase why one failed.
 */
#include "ctl.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- one handle --------------------------------------------------------- */

static int on_xferinfo(void *cls, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    volatile int *stop = cls;
    return *stop ? 1 : 0; /* non-zero aborts with CURLE_ABORTED_BY_CALLBACK */
}

int cas_ctl_easy(CURL **ep, const struct cas_ctl_opts *o, const char *url, const char *method,
                 struct curl_slist **hdrs, char *errbuf)
{
    *hdrs = NULL;
    struct curl_slist *h = NULL;
    if (!o->expect_continue && !(h = curl_slist_append(h, "Expect:")))
        return -ENOMEM;
    if (o->token) {
        /* Built to the token's length: a long token is never cut. */
        size_t len = strlen(o->token) + sizeof("Authorization: Bearer ");
        char *auth = malloc(len);
        struct curl_slist *t = NULL;
        if (auth) {
            snprintf(auth, len, "Authorization: Bearer %s", o->token);
            t = curl_slist_append(h, auth);
            free(auth);
        }
        if (!t) {
            curl_slist_free_all(h);
            return -ENOMEM;
        }
        h = t;
    }
    CURL *e = *ep;
    if (e)
        curl_easy_reset(e); /* keeps the connection */
    else if (!(e = curl_easy_init())) {
        curl_slist_free_all(h);
        return -ENOMEM;
    }
    if (o->share)
        curl_easy_setopt(e, CURLOPT_SHARE, o->share);
    cas_ctl_guard_reuse(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (o->connect_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    if (o->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (o->stall_ms > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (o->stall_ms + 999) / 1000);
    }
    if (o->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    if (o->stop) {
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)o->stop);
    }
    if (!strncasecmp(url, "https://", 8)) {
        /* TLS (OPERATIONS.md "TLS"): verify the server against ca_pem
         * (libcurl's system store when absent; peer and host name are
         * verified by default), and present the client certificate when
         * one is configured. Blobs are copied by libcurl. */
        if (o->ca_pem) {
            struct curl_blob ca = {(void *)o->ca_pem, o->ca_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
        }
        if (o->cert_pem && o->key_pem) {
            struct curl_blob cert = {(void *)o->cert_pem, o->cert_len, CURL_BLOB_COPY};
            struct curl_blob key = {(void *)o->key_pem, o->key_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
            curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
    }
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (h)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (errbuf) {
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        errbuf[0] = '\0';
    }
    *ep = e;
    *hdrs = h;
    return 0;
}

/* ---- requests with their answer in memory -------------------------------- */

/* What a request in flight needs besides its struct cas_ctl_req. */
struct flight {
    struct cas_ctl_req *r;
    size_t max_body;
    struct curl_slist *hdrs;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *cls)
{
    struct flight *f = cls;
    size_t n = size * nmemb;
    if (f->r->resp.len + n > f->max_body) {
        f->r->too_big = true;
        return 0; /* fails the transfer: CURLE_WRITE_ERROR */
    }
    cas_buf_append(&f->r->resp, data, n);
    if (f->r->resp.oom)
        return 0;
    return n;
}

/* Sets up r on *e (ctl.h: cas_ctl_easy) with the body collected into r. */
int cas_ctl_add_header(CURL *e, struct curl_slist **hdrs, const char *line)
{
    struct curl_slist *h = curl_slist_append(*hdrs, line);
    if (!h)
        return -ENOMEM;
    *hdrs = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    return 0;
}

static int prepare(CURL **e, const struct cas_ctl_opts *o, struct cas_ctl_req *r, struct flight *f)
{
    cas_buf_init(&r->resp);
    r->status = 0;
    r->curl_code = CURLE_OK;
    r->too_big = false;
    r->ms = 0;
    r->errbuf[0] = '\0';
    f->r = r;
    f->max_body = o->max_body ? o->max_body : CAS_CTL_MAX_BODY_DEFAULT;
    int rc = cas_ctl_easy(e, o, r->url, r->method, &f->hdrs, r->errbuf);
    if (rc < 0) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
        return rc;
    }
    if (r->header && cas_ctl_add_header(*e, &f->hdrs, r->header) < 0) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
        return -ENOMEM;
    }
    curl_easy_setopt(*e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(*e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(*e, CURLOPT_PRIVATE, f);
    if (r->body) {
        curl_easy_setopt(*e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(*e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (!strcmp(r->method, "POST")) {
        curl_easy_setopt(*e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(*e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    return 0;
}

/* Records the outcome of f's transfer on e. */
static void finish(CURL *e, struct flight *f, CURLcode result)
{
    struct cas_ctl_req *r = f->r;
    double t = 0;
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &t);
    r->ms = t * 1000;
    if (result == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
        return;
    }
    r->status = 0;
    r->curl_code = (int)result;
    if (r->too_big)
        snprintf(r->errbuf, sizeof(r->errbuf), "answer over %zu bytes", f->max_body);
    else if (result == CURLE_WRITE_ERROR && r->resp.oom)
        snprintf(r->errbuf, sizeof(r->errbuf), "out of memory for the answer");
}

int cas_ctl_perform(CURL **e, const struct cas_ctl_opts *o, struct cas_ctl_req *r)
{
    struct flight f;
    int rc = prepare(e, o, r, &f);
    if (rc < 0)
        return rc;
    CURLcode res = curl_easy_perform(*e);
    if (res == CURLE_ABORTED_BY_CALLBACK && cas_ctl_refused_reuse(*e)) {
        /* the pooled connection had bytes waiting (ctl_reuse.c): a new one */
        curl_easy_setopt(*e, CURLOPT_FRESH_CONNECT, 1L);
        res = curl_easy_perform(*e);
    }
    finish(*e, &f, res);
    curl_easy_setopt(*e, CURLOPT_HTTPHEADER, NULL); /* the list goes now */
    curl_slist_free_all(f.hdrs);
    if (res == CURLE_OK)
        return 0;
    if (o->stop && *o->stop)
        return -EINTR;
    return r->curl_code == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

int cas_ctl_run(const struct cas_ctl_opts *o, struct cas_ctl_req *reqs, size_t n, long deadline_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CURLM *m = curl_multi_init();
    CURL **easy = calloc(n ? n : 1, sizeof(*easy));
    struct flight *fl = calloc(n ? n : 1, sizeof(*fl));
    if (!m || !easy || !fl) {
        for (size_t i = 0; i < n; i++) {
            cas_buf_init(&reqs[i].resp);
            reqs[i].status = 0;
            reqs[i].curl_code = CURLE_OUT_OF_MEMORY;
            snprintf(reqs[i].errbuf, sizeof(reqs[i].errbuf), "out of memory");
        }
        if (m)
            curl_multi_cleanup(m);
        free(easy);
        free(fl);
        return -ENOMEM;
    }
    /* A shared pool is sized by each multi handle's limit (4 per transfer
     * by default): keep room for every concurrent request. */
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 512L);
    /* One deadline for all: each transfer gets the same bound (they all
     * start now), the loop below cuts whatever libcurl has not. */
    struct cas_ctl_opts eo = *o;
    if (deadline_ms > 0 && (eo.timeout_ms <= 0 || eo.timeout_ms > deadline_ms))
        eo.timeout_ms = deadline_ms;
    size_t active = 0;
    for (size_t i = 0; i < n; i++) {
        if (prepare(&easy[i], &eo, &reqs[i], &fl[i]) < 0)
            continue;
        if (curl_multi_add_handle(m, easy[i]) != CURLM_OK) {
            reqs[i].curl_code = CURLE_OUT_OF_MEMORY;
            snprintf(reqs[i].errbuf, sizeof(reqs[i].errbuf), "out of memory");
            curl_easy_cleanup(easy[i]);
            curl_slist_free_all(fl[i].hdrs);
            easy[i] = NULL;
            continue;
        }
        active++;
    }
    int running = active > 0;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct flight *f = NULL;
            CURL *done = msg->easy_handle;
            CURLcode result = msg->data.result;
            curl_easy_getinfo(done, CURLINFO_PRIVATE, (char **)&f);
            if (result == CURLE_ABORTED_BY_CALLBACK && cas_ctl_refused_reuse(done)) {
                /* the pooled connection had bytes waiting (ctl_reuse.c):
                 * the same request again, on a new connection */
                curl_multi_remove_handle(m, done);
                curl_easy_setopt(done, CURLOPT_FRESH_CONNECT, 1L);
                if (curl_multi_add_handle(m, done) == CURLM_OK) {
                    running = 1;
                    continue;
                }
            }
            finish(done, f, result);
            f->r = NULL; /* done; its headers go with the handle below */
        }
        if (!running)
            break;
        long waited = elapsed_ms(&t0);
        if (deadline_ms > 0 && waited >= deadline_ms + 1000)
            break; /* libcurl did not keep the bound (a resolver stuck): cut */
        int wait = 200;
        if (deadline_ms > 0 && deadline_ms + 1000 - waited < wait)
            wait = (int)(deadline_ms + 1000 - waited);
        curl_multi_poll(m, NULL, 0, wait, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (!easy[i])
            continue;
        if (fl[i].r) { /* still in flight: past the deadline */
            fl[i].r->status = 0;
            fl[i].r->curl_code = CURLE_OPERATION_TIMEDOUT;
            fl[i].r->ms = (double)elapsed_ms(&t0);
            snprintf(fl[i].r->errbuf, sizeof(fl[i].r->errbuf),
                     "no answer within the deadline of %ld ms", deadline_ms);
        }
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(fl[i].hdrs);
    }
    curl_multi_cleanup(m);
    free(easy);
    free(fl);
    return 0;
}

void cas_ctl_req_free(struct cas_ctl_req *r)
{
    cas_buf_free(&r->resp);
}

/* ---- describing a failure ------------------------------------------------ */

void cas_ctl_describe_curl(int curl_code, const char *errbuf, char *out, size_t outlen)
{
    if (errbuf && errbuf[0])
        snprintf(out, outlen, "%s", errbuf);
    else if (curl_code != CURLE_OK)
        snprintf(out, outlen, "%s", curl_easy_strerror((CURLcode)curl_code));
    else
        snprintf(out, outlen, "no answer");
}

int cas_ctl_json_error(const char *body, size_t len, char *out, size_t outlen)
{
    if (!body)
        return -ENOENT;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i >= len || body[i] != '{')
        return -ENOENT;
    char *copy = strndup(body, len); /* the JSON parser wants a NUL */
    if (!copy)
        return -ENOMEM;
    int rc = cas_json_get_string(copy, "error", out, outlen);
    free(copy);
    return rc == 0 && out[0] ? 0 : -ENOENT;
}

void cas_ctl_describe_status(long status, const char *body, size_t len, char *out, size_t outlen)
{
    char msg[200] = "";
    if (body && cas_ctl_json_error(body, len, msg, sizeof(msg)) < 0) {
        /* Not ours: the first line of a plain text body (an HTML page says
         * nothing short). */
        size_t i = 0;
        while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
            i++;
        size_t k = 0;
        while (i + k < len && k < 160 && body[i + k] != '\r' && body[i + k] != '\n' &&
               body[i + k] != '\0')
            k++;
        if (k && body[i] != '<')
            snprintf(msg, sizeof(msg), "%.*s", (int)k, body + i);
    }
    if (msg[0])
        snprintf(out, outlen, "HTTP %ld: %s", status, msg);
    else
        snprintf(out, outlen, "HTTP %ld", status);
}

void cas_ctl_describe(const struct cas_ctl_req *r, char *out, size_t outlen)
{
    if (r->status == 0)
        cas_ctl_describe_curl(r->curl_code, r->errbuf, out, outlen);
    else
        cas_ctl_describe_status(r->status, r->resp.data, r->resp.len, out, outlen);
}
