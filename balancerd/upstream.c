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

CURL *upstream_easy(const struct view *v, const char *url, const char *method,
                    const struct balancer_options *opt, struct curl_slist **hdrs)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
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
    CURLM *m = curl_multi_init();
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
