/*
 * upstream.c - the balancer's small requests to its backends.
 *
 * Probes, GC fan-out, capacity and the like are small JSON exchanges sent to
 * several backends at once. upstream_run drives them in parallel on one
 * curl multi handle and collects each status and body. upstream_easy is the
 * one place that configures a handle towards a backend (token, timeouts),
 * also used by the streaming paths (bstream.c, fanout.c).
 */
#include "balancer.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPSTREAM_MAX_BODY (16u << 20)

/* One connection pool for every handle in the process, so that requests
 * to a backend reuse keep-alive connections whichever thread sends them. */
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
static pthread_once_t share_once = PTHREAD_ONCE_INIT;

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *cls)
{
    pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *cls)
{
    pthread_mutex_unlock(&share_locks[data]);
}

static void share_init(void)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&share_locks[i], NULL);
    share = curl_share_init();
    if (!share)
        return;
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
}

CURLM *upstream_multi_new(void)
{
    CURLM *m = curl_multi_init();
    /* The pool is shared, but its size is each multi handle's limit
     * (4 per transfer by default): keep room for every concurrent client. */
    if (m)
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 512L);
    return m;
}

CURL *upstream_easy(const struct view *v, const char *url, const char *method,
                    const struct balancer_options *opt, struct curl_slist **hdrs)
{
    return upstream_easy_reuse(NULL, v, url, method, opt, hdrs);
}

CURL *upstream_easy_reuse(CURL *e, const struct view *v, const char *url, const char *method,
                          const struct balancer_options *opt, struct curl_slist **hdrs)
{
    pthread_once(&share_once, share_init);
    if (e)
        curl_easy_reset(e);
    else if (!(e = curl_easy_init()))
        return NULL;
    if (share)
        curl_easy_setopt(e, CURLOPT_SHARE, share);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)opt->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Expect:");
    if (v->token) {
        char auth[1200];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", v->token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    *hdrs = h;
    return e;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *cls)
{
    struct upstream_call *c = cls;
    size_t n = size * nmemb;
    if (c->resp.len + n <= UPSTREAM_MAX_BODY)
        cas_buf_append(&c->resp, data, n);
    return n;
}

void upstream_run(struct balancer *bal, const struct view *v, struct upstream_call *calls,
                  size_t n, long timeout_ms)
{
    CURLM *m = upstream_multi_new();
    CURL *easy[n ? n : 1];
    struct curl_slist *hdrs[n ? n : 1];
    for (size_t i = 0; i < n; i++) {
        struct upstream_call *c = &calls[i];
        cas_buf_init(&c->resp);
        c->status = 0;
        c->err[0] = '\0';
        easy[i] = upstream_easy(v, c->url, c->method, &bal->opt, &hdrs[i]);
        if (!easy[i]) {
            snprintf(c->err, sizeof(c->err), "out of memory");
            continue;
        }
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, c);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, c);
        if (timeout_ms > 0)
            curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, timeout_ms);
        if (c->body) {
            curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, c->body);
            curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
        } else if (!strcmp(c->method, "POST")) {
            curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct upstream_call *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            double t = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME, &t);
            c->ms = t * 1000;
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &c->status);
            } else {
                c->status = 0;
                c->curl_code = (int)msg->data.result;
                snprintf(c->err, sizeof(c->err), "%s", curl_easy_strerror(msg->data.result));
            }
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 200, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (!easy[i])
            continue;
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(hdrs[i]);
    }
    curl_multi_cleanup(m);
}

void upstream_calls_free(struct upstream_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cas_buf_free(&calls[i].resp);
}

void upstream_describe(const struct upstream_call *c, char *out, size_t outlen)
{
    if (c->status == 0) {
        snprintf(out, outlen, "%s", c->err[0] ? c->err : "no answer");
        return;
    }
    char msg[200] = "";
    if (c->resp.data && cas_json_get_string(c->resp.data, "error", msg, sizeof(msg)) == 0)
        snprintf(out, outlen, "HTTP %ld: %s", c->status, msg);
    else
        snprintf(out, outlen, "HTTP %ld", c->status);
}
