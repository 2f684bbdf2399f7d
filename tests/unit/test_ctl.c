/*
 * test_ctl.c - the control-request client layer (common/ctl.c) against real
 * servers on loopback ports: the project's own HTTP server (common/httpd.c,
 * with a token, so a missing or wrong bearer token is refused for real) and
 * a raw fake backend (fake_backend.h) that records the request head and
 * answers with canned bytes, or never answers. Checked: the token header is
 * sent whole, a POST carries its body, a server that never answers is cut
 * by the deadline (alone, in parallel with others, and by the stop flag),
 * bodies over the cap fail the request, failures are described in one
 * phrase (curl's error buffer, the JSON "error", the first line of a text
 * body), a refused connection is a failure with a reason, and an https://
 * server is verified against the CA text given (another CA: refused).
 */
#define _GNU_SOURCE
#include "ctl.h"
#include "fake_backend.h"
#include "httpd.h"
#include "log.h"
#include "tls.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN "s3cret-token"

static struct http_server *srv;
static char srv_url[64];
static struct fake fk, hung;
static char fk_url[64], hung_url[64];

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- the real server: GET /ctl answers {"ok":true}, needs the token ---- */

static void on_ctl(struct http_req *req)
{
    static const char ok[] = "{\"ok\":true}";
    http_reply(req, 200, "application/json", ok, sizeof(ok) - 1);
}

static void on_busy(struct http_req *req)
{
    http_error(req, 503, "store is read-only");
}

static const struct http_route routes[] = {
    {"GET", "/ctl", on_ctl, 0, "ctl", NULL},
    {"GET", "/busy", on_busy, 0, "busy", NULL},
};

static int suite_init(void)
{
    cas_log_set_level("error");
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .nroutes = sizeof(routes) / sizeof(routes[0]),
        .token = TOKEN,
        .max_connections = 8,
    };
    char err[256];
    if (http_server_start(&cfg, &srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return -1;
    }
    snprintf(srv_url, sizeof(srv_url), "http://127.0.0.1:%u", http_server_port(srv));
    if (fake_start(&fk) < 0 || fake_start(&hung) < 0)
        return -1;
    fake_answer(&hung, ""); /* reads each request, never answers */
    snprintf(fk_url, sizeof(fk_url), "http://127.0.0.1:%d", fk.port);
    snprintf(hung_url, sizeof(hung_url), "http://127.0.0.1:%d", hung.port);
    return 0;
}

static int suite_clean(void)
{
    http_server_stop(srv, 1000);
    fake_stop(&fk);
    fake_stop(&hung);
    return 0;
}

/* One request through cas_ctl_perform on a fresh handle. */
static int perform(const struct cas_ctl_opts *o, struct cas_ctl_req *r)
{
    CURL *e = NULL;
    int rc = cas_ctl_perform(&e, o, r);
    if (e)
        curl_easy_cleanup(e);
    return rc;
}

/* ---- tests --------------------------------------------------------------- */

static void test_token_sent(void)
{
    char url[128], why[512];
    snprintf(url, sizeof(url), "%s/ctl", srv_url);
    /* The real server takes the token... */
    struct cas_ctl_opts o = {.token = TOKEN, .connect_timeout_ms = 2000, .timeout_ms = 10000};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.resp.data, "{\"ok\":true}");
    cas_ctl_req_free(&r);
    /* ...and refuses a request without it or with another. */
    const char *bad[] = {NULL, "s3cret-tokem"};
    for (size_t i = 0; i < 2; i++) {
        o.token = bad[i];
        r = (struct cas_ctl_req){.url = url, .method = "GET"};
        CU_ASSERT_EQUAL(perform(&o, &r), 0); /* an answer: a refusal */
        CU_ASSERT_EQUAL(r.status, 401);
        cas_ctl_describe(&r, why, sizeof(why));
        CU_ASSERT_EQUAL(strncmp(why, "HTTP 401: ", 10), 0);
        cas_ctl_req_free(&r);
    }
    /* A long token goes whole, as one header; the user agent is sent. */
    char longtok[1500];
    memset(longtok, 'k', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    fake_answer(&fk, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    snprintf(url, sizeof(url), "%s/x", fk_url);
    o = (struct cas_ctl_opts){.token = longtok, .timeout_ms = 10000, .user_agent = "ctl-test/1"};
    r = (struct cas_ctl_req){.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    cas_ctl_req_free(&r);
    char want[1600];
    snprintf(want, sizeof(want), "\r\nAuthorization: Bearer %s\r\n", longtok);
    pthread_mutex_lock(&fk.lock);
    CU_ASSERT_PTR_NOT_NULL(strstr(fk.last_head, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(fk.last_head, "\r\nUser-Agent: ctl-test/1\r\n"));
    CU_ASSERT_PTR_NULL(strcasestr(fk.last_head, "Expect:"));
    pthread_mutex_unlock(&fk.lock);
}

static void test_methods_and_body(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/gc/start", fk_url);
    fake_answer(&fk, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    struct cas_ctl_opts o = {.timeout_ms = 10000};
    struct cas_ctl_req r = {.url = url, .method = "POST", .body = "hello", .body_len = 5};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.resp.len, 2);
    cas_ctl_req_free(&r);
    pthread_mutex_lock(&fk.lock);
    CU_ASSERT_EQUAL(strncmp(fk.last_head, "POST /gc/start HTTP/1.1\r\n", 25), 0);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(fk.last_head, "\r\nContent-Length: 5\r\n"));
    pthread_mutex_unlock(&fk.lock);
    /* A POST without a body says so (Content-Length: 0), not chunked. */
    r = (struct cas_ctl_req){.url = url, .method = "POST"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    cas_ctl_req_free(&r);
    pthread_mutex_lock(&fk.lock);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(fk.last_head, "\r\nContent-Length: 0\r\n"));
    pthread_mutex_unlock(&fk.lock);
    /* DELETE and HEAD go as such. */
    r = (struct cas_ctl_req){.url = url, .method = "DELETE"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    cas_ctl_req_free(&r);
    pthread_mutex_lock(&fk.lock);
    CU_ASSERT_EQUAL(strncmp(fk.last_head, "DELETE /gc/start ", 17), 0);
    pthread_mutex_unlock(&fk.lock);
    fake_answer(&fk, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n");
    r = (struct cas_ctl_req){.url = url, .method = "HEAD"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.resp.len, 0);
    cas_ctl_req_free(&r);
    pthread_mutex_lock(&fk.lock);
    CU_ASSERT_EQUAL(strncmp(fk.last_head, "HEAD /gc/start ", 15), 0);
    pthread_mutex_unlock(&fk.lock);
}

/* A server that never answers costs the deadline, not more. */
static void test_hung_server_timeout(void)
{
    char url[128], why[512];
    snprintf(url, sizeof(url), "%s/status", hung_url);
    struct cas_ctl_opts o = {.connect_timeout_ms = 2000, .timeout_ms = 300};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    long t0 = now_ms();
    CU_ASSERT_EQUAL(perform(&o, &r), -EIO);
    long took = now_ms() - t0;
    CU_ASSERT(took >= 250);
    CU_ASSERT(took < 5000);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_EQUAL(r.curl_code, CURLE_OPERATION_TIMEDOUT);
    cas_ctl_describe(&r, why, sizeof(why));
    CU_ASSERT(why[0] != '\0');
    CU_ASSERT_PTR_NULL(strstr(why, "HTTP"));
    cas_ctl_req_free(&r);
}

/* Many requests at once, one deadline: the hung ones all fail with a
 * timeout by about the deadline (in sequence they would take n times it),
 * the one that answers is there. */
static void test_parallel_one_deadline(void)
{
    enum { N = 9, DEADLINE = 400 };
    char urls[N][128];
    struct cas_ctl_req r[N];
    fake_answer(&fk, "HTTP/1.1 503 Busy\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
                     "{\"error\":\"full\"}\n");
    for (int i = 0; i < N; i++) {
        snprintf(urls[i], sizeof(urls[i]), "%s/gc", i == 4 ? fk_url : hung_url);
        r[i] = (struct cas_ctl_req){.url = urls[i], .method = "GET"};
    }
    struct cas_ctl_opts o = {.connect_timeout_ms = 2000, .timeout_ms = 60000};
    long t0 = now_ms();
    CU_ASSERT_EQUAL(cas_ctl_run(&o, r, N, DEADLINE), 0);
    long took = now_ms() - t0;
    CU_ASSERT(took >= DEADLINE - 50);
    CU_ASSERT(took < DEADLINE + 1500); /* in sequence: 8 x 400 ms */
    if (took >= DEADLINE + 1500)
        printf("\n  took %ld ms\n", took);
    for (int i = 0; i < N; i++) {
        if (i == 4) {
            CU_ASSERT_EQUAL(r[i].status, 503);
            char why[256];
            cas_ctl_describe(&r[i], why, sizeof(why));
            CU_ASSERT_STRING_EQUAL(why, "HTTP 503: full");
        } else {
            CU_ASSERT_EQUAL(r[i].status, 0);
            CU_ASSERT_EQUAL(r[i].curl_code, CURLE_OPERATION_TIMEDOUT);
        }
        cas_ctl_req_free(&r[i]);
    }
    /* No requests: nothing to do, at once. */
    CU_ASSERT_EQUAL(cas_ctl_run(&o, NULL, 0, DEADLINE), 0);
}

/* The stop flag cuts a request that would otherwise wait long. */
static void test_stop_flag(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/list", hung_url);
    volatile int stop = 1;
    struct cas_ctl_opts o = {.timeout_ms = 20000, .stop = &stop};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    long t0 = now_ms();
    CU_ASSERT_EQUAL(perform(&o, &r), -EINTR);
    CU_ASSERT(now_ms() - t0 < 15000);
    CU_ASSERT_EQUAL(r.curl_code, CURLE_ABORTED_BY_CALLBACK);
    cas_ctl_req_free(&r);
}

static void test_body_cap(void)
{
    static char answer[4096];
    size_t n =
        (size_t)snprintf(answer, sizeof(answer),
                         "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n");
    memset(answer + n, 'x', 2000);
    answer[n + 2000] = '\0';
    fake_answer(&fk, answer);
    char url[128], why[256];
    snprintf(url, sizeof(url), "%s/objects", fk_url);
    struct cas_ctl_opts o = {.timeout_ms = 10000, .max_body = 1000};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), -EIO);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_TRUE(r.too_big);
    CU_ASSERT(r.resp.len <= 1000);
    cas_ctl_describe(&r, why, sizeof(why));
    CU_ASSERT_STRING_EQUAL(why, "answer over 1000 bytes");
    cas_ctl_req_free(&r);
    /* Exactly at the cap: taken whole; in parallel the same rule. */
    o.max_body = 2000;
    r = (struct cas_ctl_req){.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.resp.len, 2000);
    CU_ASSERT_FALSE(r.too_big);
    cas_ctl_req_free(&r);
    o.max_body = 1999;
    r = (struct cas_ctl_req){.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_run(&o, &r, 1, 10000), 0);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_TRUE(r.too_big);
    cas_ctl_req_free(&r);
}

static void test_refused(void)
{
    /* A port nobody listens on: bound, then closed. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    CU_ASSERT_EQUAL(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    CU_ASSERT_EQUAL(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    char url[128], why[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ring", ntohs(a.sin_port));
    struct cas_ctl_opts o = {.connect_timeout_ms = 2000, .timeout_ms = 10000};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), -EIO);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_EQUAL(r.curl_code, CURLE_COULDNT_CONNECT);
    cas_ctl_describe(&r, why, sizeof(why));
    /* curl's error buffer: says where it tried, more than the code's text. */
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "127.0.0.1"));
    cas_ctl_req_free(&r);
    /* The same in a parallel run. */
    r = (struct cas_ctl_req){.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_run(&o, &r, 1, 5000), 0);
    CU_ASSERT_EQUAL(r.curl_code, CURLE_COULDNT_CONNECT);
    cas_ctl_req_free(&r);
}

static void test_describe(void)
{
    char out[256];
    static const struct {
        long status;
        const char *body, *want;
    } cases[] = {
        {503, "{\"error\":\"store is read-only\"}", "HTTP 503: store is read-only"},
        {500, " \n{\"error\": \"disk\"}\n", "HTTP 500: disk"},
        {500, "disk on fire\r\nsecond line", "HTTP 500: disk on fire"},
        {502, "<html><body>Bad Gateway</body></html>", "HTTP 502"},
        {404, "", "HTTP 404"},
        {404, NULL, "HTTP 404"},
        {409, "{\"state\":\"running\"}", "HTTP 409: {\"state\":\"running\"}"},
        {400, "{\"error\":\"\"}", "HTTP 400: {\"error\":\"\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *b = cases[i].body;
        cas_ctl_describe_status(cases[i].status, b, b ? strlen(b) : 0, out, sizeof(out));
        CU_ASSERT_STRING_EQUAL(out, cases[i].want);
        if (strcmp(out, cases[i].want))
            printf("\n  case %zu: %s\n", i, out);
    }
    /* A long plain text body: its start only. */
    char longbody[1000];
    memset(longbody, 'a', sizeof(longbody) - 1);
    longbody[sizeof(longbody) - 1] = '\0';
    cas_ctl_describe_status(500, longbody, strlen(longbody), out, sizeof(out));
    CU_ASSERT_EQUAL(strlen(out), strlen("HTTP 500: ") + 160);
    /* Only len bytes are looked at (no NUL needed). */
    cas_ctl_describe_status(500, "short!garbage", 5, out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "HTTP 500: short");
    /* No answer: the error buffer first, else curl's text. */
    cas_ctl_describe_curl(CURLE_COULDNT_CONNECT, "Failed to connect to x port 1", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "Failed to connect to x port 1");
    cas_ctl_describe_curl(CURLE_OPERATION_TIMEDOUT, "", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, curl_easy_strerror(CURLE_OPERATION_TIMEDOUT));
    /* The JSON error alone. */
    char msg[64];
    CU_ASSERT_EQUAL(cas_ctl_json_error("{\"error\":\"x\"}", 13, msg, sizeof(msg)), 0);
    CU_ASSERT_STRING_EQUAL(msg, "x");
    CU_ASSERT_EQUAL(cas_ctl_json_error("nope", 4, msg, sizeof(msg)), -ENOENT);
    CU_ASSERT_EQUAL(cas_ctl_json_error("{\"error\":", 9, msg, sizeof(msg)), -ENOENT);
}

/* The handle setup alone: the header list it makes. */
static void test_easy_headers(void)
{
    CURL *e = NULL;
    struct curl_slist *h = NULL;
    char errbuf[CURL_ERROR_SIZE] = "old";
    struct cas_ctl_opts o = {.token = "t"};
    CU_ASSERT_EQUAL(cas_ctl_easy(&e, &o, "http://127.0.0.1:1/", "GET", &h, errbuf), 0);
    CU_ASSERT_PTR_NOT_NULL(e);
    CU_ASSERT_STRING_EQUAL(errbuf, "");
    CU_ASSERT_PTR_NOT_NULL(h);
    CU_ASSERT_STRING_EQUAL(h->data, "Expect:");
    CU_ASSERT_PTR_NOT_NULL(h->next);
    CU_ASSERT_STRING_EQUAL(h->next->data, "Authorization: Bearer t");
    curl_slist_free_all(h);
    /* Reused: the same handle; no token and Expect allowed: no list. */
    CURL *same = e;
    o = (struct cas_ctl_opts){.expect_continue = true};
    CU_ASSERT_EQUAL(cas_ctl_easy(&e, &o, "http://127.0.0.1:1/", "HEAD", &h, NULL), 0);
    CU_ASSERT_PTR_EQUAL(e, same);
    CU_ASSERT_PTR_NULL(h);
    curl_easy_cleanup(e);
}

/* ---- TLS: the same server over HTTPS, verified against the CA given ---- */

static char tlsdir[] = "/tmp/cas-test-ctl-XXXXXX";

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[8192];
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[*len] = '\0';
    return strdup(buf);
}

static void test_tls_verified(void)
{
    char cmd[2048];
    /* Two self-signed certificates for 127.0.0.1: the server's, another. */
    snprintf(cmd, sizeof(cmd),
             "cd %s && for n in srv other; do openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.crt -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || exit 1; "
             "chmod 600 $n.key; done",
             tlsdir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0); /* openssl is a test dependency (install-deps.sh) */
    char crt[300], key[300], other[300], err[512];
    snprintf(crt, sizeof(crt), "%s/srv.crt", tlsdir);
    snprintf(key, sizeof(key), "%s/srv.key", tlsdir);
    snprintf(other, sizeof(other), "%s/other.crt", tlsdir);
    CU_ASSERT_EQUAL_FATAL(cas_tls_load(crt, key, false, err, sizeof(err)), 0);
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .nroutes = sizeof(routes) / sizeof(routes[0]),
        .token = TOKEN,
        /* Not a test of the connection limits: the requests below come one
         * after another, but a closed connection still counts until its
         * server thread sees the close, and under load a limit of 4 closed
         * one at accept (curl code 35, not a verification failure). */
        .max_connections = 16,
        .max_client_connections = 16,
        .tls = true,
    };
    struct http_server *tsrv;
    CU_ASSERT_EQUAL_FATAL(http_server_start(&cfg, &tsrv, err, sizeof(err)), 0);
    char url[128], why[512];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/ctl", http_server_port(tsrv));
    size_t ca_len = 0, other_len = 0;
    char *ca = slurp(crt, &ca_len), *bad = slurp(other, &other_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bad);
    /* The server's own CA: verified, the token taken. */
    struct cas_ctl_opts o = {.token = TOKEN,
                             .ca_pem = ca,
                             .ca_len = ca_len,
                             .connect_timeout_ms = 5000,
                             .timeout_ms = 10000};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(perform(&o, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    cas_ctl_req_free(&r);
    /* Another CA, and the system store: refused before anything is sent. */
    const char *cas[] = {bad, NULL};
    size_t lens[] = {other_len, 0};
    for (size_t i = 0; i < 2; i++) {
        o.ca_pem = cas[i];
        o.ca_len = lens[i];
        r = (struct cas_ctl_req){.url = url, .method = "GET"};
        CU_ASSERT_EQUAL(perform(&o, &r), -EIO);
        CU_ASSERT_EQUAL(r.status, 0);
        CU_ASSERT_EQUAL(r.curl_code, CURLE_PEER_FAILED_VERIFICATION);
        cas_ctl_describe(&r, why, sizeof(why));
        CU_ASSERT_PTR_NOT_NULL(strstr(why, "certificate"));
        cas_ctl_req_free(&r);
    }
    http_server_stop(tsrv, 1000);
    free(ca);
    free(bad);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tlsdir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ---- pooled connections with bytes waiting (ctl_reuse.c) ------------------
 *
 * A keep-alive server on a raw socket: each request gets "HTTP/1.1 200",
 * body "answer-<n>" (n counts requests); when stray is set, the first
 * answer is followed by a copy of itself (after it, as a second write),
 * and `sent` is posted once it is out. accepts counts connections.
 */
struct stray_srv {
    int lfd, port;
    bool stray;
    int accepts, requests;
    pthread_mutex_t lock;
    sem_t sent;
};

static void *stray_conn(void *cls)
{
    struct stray_srv *s = ((void **)cls)[0];
    int fd = (int)(intptr_t)((void **)cls)[1];
    free(cls);
    char buf[4096];
    size_t have = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            ssize_t r = have < sizeof(buf) ? recv(fd, buf + have, sizeof(buf) - have, 0) : 0;
            if (r <= 0) {
                close(fd);
                return NULL;
            }
            have += (size_t)r;
        }
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
        pthread_mutex_lock(&s->lock);
        int n = ++s->requests;
        pthread_mutex_unlock(&s->lock);
        char out[256];
        int len =
            snprintf(out, sizeof(out),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                     "answer-%d",
                     n >= 10 ? 9 : 8, n);
        if (send(fd, out, (size_t)len, MSG_NOSIGNAL) != len)
            break;
        if (n == 1 && s->stray) {
            usleep(50 * 1000); /* after the answer was taken: a second write */
            if (send(fd, out, (size_t)len, MSG_NOSIGNAL) != len)
                break;
            sem_post(&s->sent);
        }
    }
    close(fd);
    return NULL;
}

static void *stray_accept(void *cls)
{
    struct stray_srv *s = cls;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_mutex_lock(&s->lock);
        s->accepts++;
        pthread_mutex_unlock(&s->lock);
        void **arg = malloc(2 * sizeof(void *));
        arg[0] = s;
        arg[1] = (void *)(intptr_t)fd;
        pthread_t t;
        pthread_create(&t, NULL, stray_conn, arg);
        pthread_detach(t);
    }
}

static void stray_start(struct stray_srv *s, bool stray, char *url, size_t urllen)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    sem_init(&s->sent, 0, 0);
    s->stray = stray;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    CU_ASSERT_EQUAL_FATAL(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(s->lfd, 16), 0);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    snprintf(url, urllen, "http://127.0.0.1:%d/x", s->port);
    pthread_t t;
    pthread_create(&t, NULL, stray_accept, s);
    pthread_detach(t);
}

/* Waits (bounded) for the stray copy to be out, and for loopback to have
 * delivered it to the client's socket. */
static void stray_wait(struct stray_srv *s)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    CU_ASSERT_EQUAL(sem_timedwait(&s->sent, &dl), 0);
    usleep(100 * 1000);
}

static void test_clean_connection_reused(void)
{
    struct stray_srv s;
    char url[64];
    stray_start(&s, false, url, sizeof(url));
    struct cas_ctl_opts o = {.timeout_ms = 5000};
    CURL *e = NULL;
    for (int i = 1; i <= 3; i++) {
        struct cas_ctl_req r = {.url = url, .method = "GET"};
        CU_ASSERT_EQUAL(cas_ctl_perform(&e, &o, &r), 0);
        char want[16];
        snprintf(want, sizeof(want), "answer-%d", i);
        CU_ASSERT(r.resp.len == strlen(want) && !memcmp(r.resp.data, want, r.resp.len));
        cas_ctl_req_free(&r);
    }
    CU_ASSERT_EQUAL(s.accepts, 1); /* the guard does not cost the pool its reuse */
    curl_easy_cleanup(e);
}

static void test_stray_bytes_never_reused_perform(void)
{
    struct stray_srv s;
    char url[64];
    stray_start(&s, true, url, sizeof(url));
    struct cas_ctl_opts o = {.timeout_ms = 5000};
    CURL *e = NULL;
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_perform(&e, &o, &r), 0);
    CU_ASSERT(r.resp.len == 8 && !memcmp(r.resp.data, "answer-1", 8));
    cas_ctl_req_free(&r);
    stray_wait(&s);
    struct cas_ctl_req r2 = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_perform(&e, &o, &r2), 0);
    CU_ASSERT_EQUAL(r2.status, 200);
    /* its own answer, on a new connection; not the copy of answer-1 */
    CU_ASSERT(r2.resp.len == 8 && !memcmp(r2.resp.data, "answer-2", 8));
    CU_ASSERT_EQUAL(s.accepts, 2);
    cas_ctl_req_free(&r2);
    curl_easy_cleanup(e);
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *cls)
{
    (void)h, (void)d, (void)a;
    pthread_mutex_lock(cls);
}

static void share_unlock(CURL *h, curl_lock_data d, void *cls)
{
    (void)h, (void)d;
    pthread_mutex_unlock(cls);
}

static void test_stray_bytes_never_reused_run(void)
{
    struct stray_srv s;
    char url[64];
    stray_start(&s, true, url, sizeof(url));
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    CURLSH *sh = curl_share_init();
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, &lock);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    struct cas_ctl_opts o = {.timeout_ms = 5000, .share = sh};
    struct cas_ctl_req r = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_run(&o, &r, 1, 5000), 0);
    CU_ASSERT(r.resp.len == 8 && !memcmp(r.resp.data, "answer-1", 8));
    cas_ctl_req_free(&r);
    stray_wait(&s);
    struct cas_ctl_req r2 = {.url = url, .method = "GET"};
    CU_ASSERT_EQUAL(cas_ctl_run(&o, &r2, 1, 5000), 0);
    CU_ASSERT_EQUAL(r2.status, 200);
    CU_ASSERT(r2.resp.len == 8 && !memcmp(r2.resp.data, "answer-2", 8));
    CU_ASSERT_EQUAL(s.accepts, 2);
    cas_ctl_req_free(&r2);
    curl_share_cleanup(sh);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    if (!mkdtemp(tlsdir))
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ctl", suite_init, suite_clean);
    CU_add_test(s, "token header sent whole; the server refuses without it", test_token_sent);
    CU_add_test(s, "POST body, empty POST, DELETE, HEAD", test_methods_and_body);
    CU_add_test(s, "a server that never answers: cut by the timeout", test_hung_server_timeout);
    CU_add_test(s, "parallel requests with one deadline", test_parallel_one_deadline);
    CU_add_test(s, "the stop flag cuts a request", test_stop_flag);
    CU_add_test(s, "a body over the cap fails the request", test_body_cap);
    CU_add_test(s, "a refused connection: a failure with a reason", test_refused);
    CU_add_test(s, "status and error descriptions", test_describe);
    CU_add_test(s, "handle setup: header list, reuse", test_easy_headers);
    CU_add_test(s, "a clean pooled connection is reused", test_clean_connection_reused);
    CU_add_test(s, "bytes waiting on a pooled connection: a new one (perform)",
                test_stray_bytes_never_reused_perform);
    CU_add_test(s, "bytes waiting on a pooled connection: a new one (run, shared pool)",
                test_stray_bytes_never_reused_run);
    CU_pSuite t = CU_add_suite("ctl over TLS", NULL, NULL);
    CU_add_test(t, "https: verified against the CA given, another refused", test_tls_verified);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    curl_global_cleanup();
    return failed ? 1 : 0;
}
