/*
 * test_httpd.c - the HTTP server layer (common/httpd.c), driven over
 * loopback with libcurl: exact and '*' routes, 404 and 405, HEAD on a GET
 * route, request bodies streamed to the handler in chunks, streamed
 * responses (known size, unknown size, aborted with HTTP_STREAM_ERROR),
 * the bearer token and the routes exempt from it, and the Prometheus
 * request counts.
 */
#define _GNU_SOURCE
#include "httpd.h"
#include "hash.h"
#include "json.h"
#include "log.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define STREAM_SIZE (1024 * 1024)

/* ---- handlers ----------------------------------------------------------- */

static void h_hello(struct http_req *req)
{
    http_reply(req, 200, "text/plain", "hello\n", 6);
}

static void h_item(struct http_req *req)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "item=%s len=%zu", req->param, req->param_len);
    http_reply(req, 200, "text/plain", body, (size_t)n);
}

struct upload {
    uint64_t bytes, chunks;
    struct cas_hash *h;
};

static int upload_body(struct http_req *req, const char *data, size_t len)
{
    struct upload *u = req->ctx;
    u->bytes += len;
    u->chunks++;
    cas_hash_update(u->h, data, len);
    return 0;
}

static void upload_done(struct http_req *req)
{
    struct upload *u = req->ctx;
    unsigned char d[20];
    char hex[41];
    cas_hash_final(u->h, d);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "bytes");
    cas_json_u64(&j, u->bytes);
    cas_json_key(&j, "chunks");
    cas_json_u64(&j, u->chunks);
    cas_json_key(&j, "sha1");
    cas_json_string(&j, hex);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
}

static void upload_cleanup(struct http_req *req)
{
    struct upload *u = req->ctx;
    cas_hash_free(u->h);
    free(u);
}

static void h_upload(struct http_req *req)
{
    struct upload *u = calloc(1, sizeof(*u));
    u->h = cas_hash_new(cas_hash_by_name("sha1"));
    req->ctx = u;
    req->cleanup = upload_cleanup;
    req->on_body = upload_body;
    req->on_done = upload_done;
}

static int limited_body(struct http_req *req, const char *data, size_t len)
{
    http_error(req, 413, "body over the limit");
    return -1;
}

static void limited_done(struct http_req *req)
{
    http_reply(req, 200, "text/plain", "should not happen", 17);
}

static void h_limited(struct http_req *req)
{
    req->on_body = limited_body;
    req->on_done = limited_done;
}

/* Refuses at the head, before any of the body is read (as the storaged
 * does when its disk is full). */
static void h_full(struct http_req *req)
{
    http_error(req, 507, "no space for \"%s\"", "x");
    http_add_header(req, "Retry-After", "60");
}

static unsigned char pattern(uint64_t pos)
{
    return (unsigned char)((pos * 7 + (pos >> 9)) & 0xff);
}

struct stream_state {
    uint64_t limit; /* error (or end) after this many bytes */
    bool unknown;
};

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_state *st = cls;
    if (pos >= st->limit)
        return st->unknown ? HTTP_STREAM_END : HTTP_STREAM_ERROR;
    size_t n = max;
    if (n > st->limit - pos)
        n = (size_t)(st->limit - pos);
    if (n > 10000)
        n = 10000;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)pattern(pos + i);
    return (ssize_t)n;
}

static void h_stream(struct http_req *req)
{
    struct stream_state *st = calloc(1, sizeof(*st));
    st->limit = STREAM_SIZE;
    http_reply_stream(req, 200, "application/octet-stream", STREAM_SIZE, stream_reader, st, free);
}

static void h_stream_error(struct http_req *req)
{
    struct stream_state *st = calloc(1, sizeof(*st));
    st->limit = 65536;
    http_reply_stream(req, 200, "application/octet-stream", STREAM_SIZE, stream_reader, st, free);
}

static void h_stream_unknown(struct http_req *req)
{
    struct stream_state *st = calloc(1, sizeof(*st));
    st->limit = 300000;
    st->unknown = true;
    http_reply_stream(req, 200, "application/octet-stream", HTTP_SIZE_UNKNOWN, stream_reader, st,
                      free);
}

/* http_reply_stream_block: a body of several blocks plus a short tail; the
 * reader fills whatever it is asked for and notes the most it was asked. */
#define BLOCK_STREAM_BLOCK ((size_t)1024 * 1024)
#define BLOCK_STREAM_SIZE (3 * BLOCK_STREAM_BLOCK + 7)
static size_t block_max_asked;

static ssize_t block_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= BLOCK_STREAM_SIZE)
        return HTTP_STREAM_ERROR; /* asked past the end */
    size_t seen = __atomic_load_n(&block_max_asked, __ATOMIC_RELAXED);
    while (max > seen && !__atomic_compare_exchange_n(&block_max_asked, &seen, max, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    size_t n = max < BLOCK_STREAM_SIZE - pos ? max : (size_t)(BLOCK_STREAM_SIZE - pos);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)pattern(pos + i);
    return (ssize_t)n;
}

static void h_stream_block(struct http_req *req)
{
    http_reply_stream_block(req, 200, "application/octet-stream", BLOCK_STREAM_SIZE,
                            BLOCK_STREAM_BLOCK, block_reader, NULL, NULL);
}

static void h_noresp(struct http_req *req)
{
}

static void h_text(struct http_req *req)
{
    http_reply(req, 200, "text/plain", req->route->name, strlen(req->route->name));
}

static void h_metrics(struct http_req *req)
{
    struct cas_buf b;
    cas_buf_init(&b);
    http_metrics_render(req->srv, &b);
    http_reply_buf(req, 200, "text/plain; version=0.0.4", &b);
}

static void app_metrics(void *app, struct cas_buf *out)
{
    cas_buf_puts(out, "test_app_metric 1\n");
}

static const struct http_route routes[] = {
    {"GET", "/hello", h_hello, 0, "hello", NULL},
    {"GET", "/items/*", h_item, 0, "item", NULL},
    {"GET", "/file/*/", h_item, 0, "file", NULL},
    {"PUT", "/upload", h_upload, 0, "upload", NULL},
    {"PUT", "/limited", h_limited, 0, "limited", NULL},
    {"PUT", "/full", h_full, 0, "full", NULL},
    {"GET", "/stream", h_stream, 0, "stream", NULL},
    {"GET", "/stream-error", h_stream_error, 0, "stream_error", NULL},
    {"GET", "/stream-unknown", h_stream_unknown, 0, "stream_unknown", NULL},
    {"GET", "/stream-block", h_stream_block, 0, "stream_block", NULL},
    {"GET", "/noresp", h_noresp, 0, "noresp", NULL},
    {"POST", "/admin", h_text, 0, "admin", NULL},
    {"GET", "/public", h_text, HTTP_PUBLIC, "public", NULL},
    {"GET", "/read", h_text, HTTP_READ, "read", NULL},
    {"GET", "/metrics", h_metrics, HTTP_PUBLIC, "metrics", NULL},
    /* a second route of the same name: counted with the first (one series) */
    {"GET", "/hello-again", h_hello, 0, "hello", NULL},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static struct http_server *start(const char *token, bool auth_reads)
{
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .nroutes = NROUTES,
        .token = token,
        .auth_reads = auth_reads,
        .metrics = app_metrics,
    };
    struct http_server *srv = NULL;
    char err[256] = "";
    int rc = http_server_start(&cfg, &srv, err, sizeof(err));
    if (rc != 0)
        printf("\n  http_server_start: %d %s\n", rc, err);
    return srv;
}

/* ---- client ------------------------------------------------------------- */

struct resp {
    long status;
    CURLcode cc;
    struct cas_buf body;
    curl_off_t content_length;
    char content_type[128];
};

struct upload_src {
    const unsigned char *data;
    size_t len, pos, piece;
};

static size_t read_cb(char *buf, size_t size, size_t n, void *cls)
{
    struct upload_src *u = cls;
    size_t want = size * n;
    if (want > u->piece)
        want = u->piece;
    if (want > u->len - u->pos)
        want = u->len - u->pos;
    memcpy(buf, u->data + u->pos, want);
    u->pos += want;
    return want;
}

static size_t write_cb(char *data, size_t size, size_t n, void *cls)
{
    cas_buf_append(cls, data, size * n);
    return size * n;
}

static CURL *curl;
static unsigned port;

/* One request on the shared (keep-alive) handle. body NULL: none; chunked:
 * no Content-Length. */
static void request(unsigned p, const char *method, const char *path, const char *auth,
                    const void *body, size_t len, bool chunked, size_t piece, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    cas_buf_init(&r->body);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", p, path);
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 20L);
    struct curl_slist *hdr = curl_slist_append(NULL, "Expect:");
    char authh[256];
    if (auth) {
        snprintf(authh, sizeof(authh), "Authorization: %s", auth);
        hdr = curl_slist_append(hdr, authh);
    }
    struct upload_src src = {body, len, 0, piece ? piece : len + 1};
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body) {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(curl, CURLOPT_READDATA, &src);
        if (chunked)
            hdr = curl_slist_append(hdr, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
    r->cc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->content_length);
    char *ct = NULL;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
    if (ct)
        snprintf(r->content_type, sizeof(r->content_type), "%s", ct);
    curl_slist_free_all(hdr);
    if (!r->body.data)
        cas_buf_puts(&r->body, "");
}

static void get(const char *path, const char *auth, struct resp *r)
{
    request(port, "GET", path, auth, NULL, 0, false, 0, r);
}

static void done(struct resp *r)
{
    cas_buf_free(&r->body);
}

/* ---- tests -------------------------------------------------------------- */

static struct http_server *srv; /* no token */

static void test_exact_route(void)
{
    struct resp r;
    get("/hello", NULL, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "hello\n");
    CU_ASSERT_STRING_EQUAL(r.content_type, "text/plain");
    done(&r);
    /* Query strings do not take part in routing. */
    get("/hello?x=1", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    get("/hello/", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    get("/hell", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
}

static void test_star_route(void)
{
    struct resp r;
    get("/items/abc123", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "item=abc123 len=6");
    done(&r);
    get("/file/k3y/", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "item=k3y len=3");
    done(&r);
    /* '*' is one whole, non-empty segment. */
    get("/items/", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    get("/items/a/b", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    get("/file/k3y", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    get("/file/k3y/x", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    /* An overlong segment is cut, never overflows. */
    char path[600] = "/items/";
    memset(path + 7, 'z', 400);
    path[407] = '\0';
    get(path, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "len=199"));
    done(&r);
}

static void test_not_found_and_method(void)
{
    struct resp r;
    get("/nowhere", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "\"error\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "/nowhere"));
    CU_ASSERT_STRING_EQUAL(r.content_type, "application/json");
    done(&r);
    request(port, "DELETE", "/hello", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 405);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "DELETE"));
    done(&r);
    request(port, "POST", "/items/x", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 405);
    done(&r);
    /* 405 with a body: answered without reading it all. */
    char body[1000];
    memset(body, 'b', sizeof(body));
    request(port, "PUT", "/hello", NULL, body, sizeof(body), false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 405);
    done(&r);
    /* The keep-alive connection still works after those. */
    get("/hello", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
}

static void test_head_on_get(void)
{
    struct resp r;
    request(port, "HEAD", "/hello", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.body.len, 0);
    CU_ASSERT_EQUAL(r.content_length, 6);
    done(&r);
    request(port, "HEAD", "/stream", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.body.len, 0);
    CU_ASSERT_EQUAL(r.content_length, STREAM_SIZE);
    done(&r);
    request(port, "HEAD", "/nowhere", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    done(&r);
    request(port, "HEAD", "/admin", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 405); /* HEAD is served only by GET routes */
    done(&r);
}

static void check_upload(size_t len, bool chunked, size_t piece)
{
    unsigned char *data = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        data[i] = pattern(i * 3 + 1);
    unsigned char d[20];
    char hex[41];
    cas_hash_buffer(cas_hash_by_name("sha1"), data, len, d);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
    struct resp r;
    request(port, "PUT", "/upload", NULL, data, len, chunked, piece, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    uint64_t bytes = 0, chunks = 0;
    char sha[64] = "";
    CU_ASSERT_EQUAL(cas_json_get_u64(r.body.data, "bytes", &bytes), 0);
    CU_ASSERT_EQUAL(cas_json_get_u64(r.body.data, "chunks", &chunks), 0);
    CU_ASSERT_EQUAL(cas_json_get_string(r.body.data, "sha1", sha, sizeof(sha)), 0);
    CU_ASSERT_EQUAL(bytes, len);
    CU_ASSERT_STRING_EQUAL(sha, hex);
    if (len >= 4 * 1024 * 1024)
        CU_ASSERT(chunks >= 2); /* streamed, not buffered whole */
    if (len == 0)
        CU_ASSERT_EQUAL(chunks, 0);
    done(&r);
    free(data);
}

static void test_streamed_body(void)
{
    check_upload(0, false, 0);
    check_upload(1, false, 0);
    check_upload(100000, false, 777);
    check_upload(6 * 1024 * 1024 + 3, false, 65536);
    check_upload(5 * 1024 * 1024 + 11, true, 100000); /* chunked transfer encoding */
}

static void test_body_refused_midway(void)
{
    size_t len = 3 * 1024 * 1024;
    unsigned char *data = calloc(1, len);
    struct resp r;
    request(port, "PUT", "/limited", NULL, data, len, false, 65536, &r);
    CU_ASSERT_EQUAL(r.status, 413);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "over the limit"));
    done(&r);
    free(data);
    get("/hello", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
}

/* Sends raw bytes on a new connection; up to outlen - 1 bytes of the
 * answer (10 s at most) into out. */
static void raw_exchange(const char *req, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    out[0] = '\0';
    CU_ASSERT_FATAL(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CU_ASSERT(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    ssize_t n = recv(fd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
}

/*
 * An answer given at the head while the client is still sending its body
 * (507, 401, 413 by Content-Length): the connection is not reset under the
 * client (RFC 9112 section 9.6). The server writes the answer, shuts its
 * write side and reads the rest for a while, so a client that sends its
 * whole body first (as libcurl does without Expect) still reads the
 * answer, with the route's own headers. Before, the daemon closed with the
 * body unread and the client's send failed with EPIPE/ECONNRESET: a copier
 * saw "Broken pipe" instead of the target's 507.
 */
static void test_refused_at_head_not_reset(void)
{
    size_t len = 14u << 20; /* more than loopback's socket buffers hold */
    char *body = calloc(1, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    CU_ASSERT_FATAL(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char head[128];
    int hl = snprintf(head, sizeof(head), "PUT /full HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                      len);
    CU_ASSERT_EQUAL(send(fd, head, (size_t)hl, MSG_NOSIGNAL), hl);
    size_t sent = 0;
    int err = 0;
    while (sent < len) {
        ssize_t w = send(fd, body + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0) {
            err = errno;
            break;
        }
        sent += (size_t)w;
    }
    CU_ASSERT_EQUAL(err, 0);
    CU_ASSERT_EQUAL(sent, len);
    if (err)
        fprintf(stderr, "\n  send failed after %zu bytes: %s\n", sent, strerror(err));
    char out[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(out) - 1 && (n = recv(fd, out + got, sizeof(out) - 1 - got, 0)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(fd);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 507", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(out, "\r\nRetry-After: 60\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strcasestr(out, "\r\nConnection: close\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strcasestr(out, "\r\nContent-Type: application/json\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\r\n\r\n{\"error\":\"no space for \\\"x\\\"\"}\n"));
    /* The same through libcurl, ten times: the 507 each time, never a
     * send failure. */
    for (int i = 0; i < 10; i++) {
        struct resp r;
        request(port, "PUT", "/full", NULL, body, len, false, 0, &r);
        CU_ASSERT_EQUAL(r.cc, CURLE_OK);
        CU_ASSERT_EQUAL(r.status, 507);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "no space"));
        if (r.cc != CURLE_OK)
            fprintf(stderr, "\n  libcurl: %s\n", curl_easy_strerror(r.cc));
        done(&r);
    }
    free(body);
    /* A chunked upload to the same route: the same answer. */
    struct resp r;
    request(port, "PUT", "/full", NULL, "abc", 3, true, 0, &r);
    CU_ASSERT_EQUAL(r.status, 507);
    done(&r);
}

/* Found by tests/integration/test_http_fuzz.py: a Transfer-Encoding other
 * than a bare "chunked" ("gzip, chunked", "gzip") left libmicrohttpd
 * waiting for the connection to end, the request never answered. It is a
 * 501 now (RFC 9112 section 6.1), sent at once. */
static void test_unknown_transfer_coding_501(void)
{
    char out[4096];
    raw_exchange("PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 "5\r\nhello\r\n0\r\n\r\n",
                 out, sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 501", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Transfer-Encoding"));
    raw_exchange("PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", out,
                 sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 501", 12), 0);
    /* A bare chunked, in any case, still works. */
    raw_exchange("PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n"
                 "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 out, sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
}

/* A body of unknown length cannot be framed for an HTTP/1.0 client (no
 * chunked coding): a stream that broke off would end with the same close as
 * a complete one. So it is refused with 505, naming HTTP/1.1 (the reader's
 * state is freed: ASan checks); a body of known length is still sent, and
 * HTTP/1.1 still gets it chunked (attack a7 finding 4). */
static void test_unknown_length_refused_to_http10(void)
{
    char out[4096];
    raw_exchange("GET /stream-unknown HTTP/1.0\r\nHost: x\r\n\r\n", out, sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 505", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "GET /stream-unknown needs HTTP/1.1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Content-Length: "));
    raw_exchange("HEAD /stream-unknown HTTP/1.0\r\nHost: x\r\n\r\n", out, sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 505", 12), 0);
    raw_exchange("GET /stream HTTP/1.0\r\nHost: x\r\n\r\n", out, sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
    raw_exchange("GET /stream-unknown HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", out,
                 sizeof(out));
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(out, "Transfer-Encoding: chunked"));
}

static void test_stream_response(void)
{
    struct resp r;
    get("/stream", NULL, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL_FATAL(r.body.len, STREAM_SIZE);
    size_t bad = 0;
    for (size_t i = 0; i < STREAM_SIZE; i++)
        if ((unsigned char)r.body.data[i] != pattern(i))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    done(&r);
    get("/stream-unknown", NULL, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.body.len, 300000);
    bad = 0;
    for (size_t i = 0; i < r.body.len; i++)
        if ((unsigned char)r.body.data[i] != pattern(i))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    done(&r);
}

/* A larger response buffer (http_reply_stream_block) is what the reader is
 * asked to fill, and the body still arrives whole and in order. */
static void test_stream_block_size(void)
{
    struct resp r;
    __atomic_store_n(&block_max_asked, 0, __ATOMIC_RELAXED);
    get("/stream-block", NULL, &r);
    CU_ASSERT_EQUAL(r.cc, CURLE_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL_FATAL(r.body.len, BLOCK_STREAM_SIZE);
    size_t bad = 0;
    for (size_t i = 0; i < BLOCK_STREAM_SIZE; i++)
        if ((unsigned char)r.body.data[i] != pattern(i))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(__atomic_load_n(&block_max_asked, __ATOMIC_RELAXED), BLOCK_STREAM_BLOCK);
    CU_ASSERT(BLOCK_STREAM_BLOCK > HTTP_STREAM_BLOCK);
    done(&r);
}

static void test_stream_error_aborts(void)
{
    struct resp r;
    get("/stream-error", NULL, &r);
    CU_ASSERT_NOT_EQUAL(r.cc, CURLE_OK); /* the client knows the transfer failed */
    CU_ASSERT(r.body.len < STREAM_SIZE);
    CU_ASSERT(r.body.len <= 65536);
    done(&r);
    /* The server goes on serving. */
    get("/hello", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
}

static void test_handler_without_response(void)
{
    struct resp r;
    get("/noresp", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 500);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "error"));
    done(&r);
}

static void test_bearer_token(void)
{
    struct http_server *t = start("s3cret", false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    unsigned p = http_server_port(t);
    struct resp r;
    request(p, "GET", "/hello", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "\"error\""));
    done(&r);
    static const char *wrong[] = {"Bearer wrong", "Bearer s3cre", "Bearer s3cretX", "Bearer ",
                                  "Basic s3cret", "s3cret",       "Bearer  s3cret"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        request(p, "GET", "/hello", wrong[i], NULL, 0, false, 0, &r);
        CU_ASSERT_EQUAL(r.status, 401);
        done(&r);
    }
    request(p, "GET", "/hello", "Bearer s3cret", NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "hello\n");
    done(&r);
    /* The scheme's name is case-insensitive (RFC 9110 11.1); the token is not. */
    request(p, "GET", "/hello", "bearer s3cret", NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    request(p, "GET", "/hello", "BEARER S3CRET", NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    done(&r);
    request(p, "POST", "/admin", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    done(&r);
    request(p, "POST", "/admin", "Bearer s3cret", NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    /* A body to an unauthorized route is refused without being handled. */
    char body[5000];
    memset(body, 'x', sizeof(body));
    request(p, "PUT", "/upload", "Bearer nope", body, sizeof(body), false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    done(&r);
    /* Public and (without --auth-reads) read routes need no token. */
    request(p, "GET", "/public", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    request(p, "GET", "/read", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    request(p, "HEAD", "/read", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    request(p, "GET", "/metrics", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    http_server_stop(t, 2000);

    /* With auth_reads, reads need it too; public routes still do not. */
    t = start("s3cret", true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    p = http_server_port(t);
    request(p, "GET", "/read", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    done(&r);
    request(p, "GET", "/read", "Bearer s3cret", NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    request(p, "GET", "/public", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    done(&r);
    http_server_stop(t, 2000);
}

/* Waits (requests are counted once libmicrohttpd reports them complete)
 * until the metrics text of s contains every line in want. */
static bool metrics_have(struct http_server *s, const char **want, size_t n, char **text)
{
    for (int tries = 0; tries < 200; tries++) {
        struct cas_buf b;
        cas_buf_init(&b);
        http_metrics_render(s, &b);
        bool all = true;
        for (size_t i = 0; i < n; i++)
            if (!strstr(b.data, want[i]))
                all = false;
        if (all || tries == 199) {
            *text = cas_buf_steal(&b, NULL);
            return all;
        }
        cas_buf_free(&b);
        usleep(10000);
    }
    return false;
}

static void test_metrics(void)
{
    struct http_server *m = start(NULL, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    unsigned p = http_server_port(m);
    struct resp r;
    for (int i = 0; i < 3; i++) {
        request(p, "GET", "/hello", NULL, NULL, 0, false, 0, &r);
        done(&r);
    }
    request(p, "GET", "/hello-again", NULL, NULL, 0, false, 0, &r);
    done(&r);
    request(p, "GET", "/nowhere", NULL, NULL, 0, false, 0, &r);
    done(&r);
    request(p, "DELETE", "/hello", NULL, NULL, 0, false, 0, &r);
    done(&r);
    request(p, "GET", "/noresp", NULL, NULL, 0, false, 0, &r);
    done(&r);
    char body[1000];
    memset(body, 'm', sizeof(body));
    request(p, "PUT", "/upload", NULL, body, sizeof(body), false, 0, &r);
    done(&r);
    const char *want[] = {
        "cas_http_requests_total{route=\"hello\",status=\"200\"} 4\n",
        "cas_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n",
        "cas_http_requests_total{route=\"unmatched\",status=\"405\"} 1\n",
        "cas_http_requests_total{route=\"noresp\",status=\"500\"} 1\n",
        "cas_http_requests_total{route=\"upload\",status=\"200\"} 1\n",
        "cas_http_request_duration_seconds_count{route=\"hello\"} 4\n",
        "cas_http_request_duration_seconds_bucket{route=\"hello\",le=\"+Inf\"} 4\n",
        "cas_http_received_bytes_total 1000\n",
        "test_app_metric 1\n",
    };
    char *text = NULL;
    bool ok = metrics_have(m, want, sizeof(want) / sizeof(want[0]), &text);
    CU_ASSERT_TRUE(ok);
    if (!ok)
        printf("\n  metrics:\n%s\n", text);
    /* Routes never requested do not appear. */
    CU_ASSERT_PTR_NULL(strstr(text, "route=\"stream\""));
    /* Every series once: two routes named "hello" make one. */
    const char *first = strstr(text, "cas_http_requests_total{route=\"hello\",status=\"200\"}");
    CU_ASSERT_PTR_NOT_NULL(first);
    if (first)
        CU_ASSERT_PTR_NULL(strstr(first + 1, "cas_http_requests_total{route=\"hello\",status=\"200\"}"));
    const char *inf = strstr(text, "route=\"hello\",le=\"+Inf\"");
    if (inf)
        CU_ASSERT_PTR_NULL(strstr(inf + 1, "route=\"hello\",le=\"+Inf\""));
    free(text);
    /* The /metrics route serves the same text. */
    request(p, "GET", "/metrics", NULL, NULL, 0, false, 0, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, want[0]));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "# TYPE cas_http_requests_total counter"));
    done(&r);
    http_server_stop(m, 2000);
}

static void test_start_errors(void)
{
    struct http_server_config cfg = {.listen = "nonsense", .routes = routes, .nroutes = NROUTES};
    struct http_server *s = NULL;
    char err[256] = "";
    CU_ASSERT_EQUAL(http_server_start(&cfg, &s, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nonsense"));
    cfg.listen = "127.0.0.1:";
    CU_ASSERT_NOT_EQUAL(http_server_start(&cfg, &s, err, sizeof(err)), 0);
    cfg.listen = "no.such.host.invalid:80";
    CU_ASSERT_NOT_EQUAL(http_server_start(&cfg, &s, err, sizeof(err)), 0);
    CU_ASSERT(port > 0);
}

/*
 * BUG (common/httpd.c, http_server_start): MHD_OPTION_LISTENING_ADDRESS_REUSE
 * = 1 makes libmicrohttpd set SO_REUSEPORT on Linux, so a second daemon
 * started on a port already in use binds too instead of failing with
 * "address in use", and the kernel then splits connections between the two
 * (e.g. two storageds with different --dir on one port). Repro: start a
 * server on 127.0.0.1:0, start another on the same port: it succeeds.
 * Fix: drop MHD_OPTION_LISTENING_ADDRESS_REUSE (MHD sets SO_REUSEADDR by
 * default, which is what a restart needs).
 */
static void test_port_in_use(void)
{
    char listen[64], err[256] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    struct http_server_config cfg = {.listen = listen, .routes = routes, .nroutes = NROUTES};
    struct http_server *s = NULL;
    int rc = http_server_start(&cfg, &s, err, sizeof(err));
    CU_ASSERT_NOT_EQUAL(rc, 0);
    if (rc == 0)
        http_server_stop(s, 1000);
    else
        CU_ASSERT_PTR_NOT_NULL(strstr(err, listen));
}

int main(void)
{
    cas_log_set_level("error");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 2;
    curl = curl_easy_init();
    srv = start(NULL, false);
    if (!srv || !curl)
        return 2;
    port = http_server_port(srv);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("httpd", NULL, NULL);
    CU_add_test(s, "exact route", test_exact_route);
    CU_add_test(s, "'*' route", test_star_route);
    CU_add_test(s, "404 and 405", test_not_found_and_method);
    CU_add_test(s, "HEAD on a GET route", test_head_on_get);
    CU_add_test(s, "request body streamed in chunks", test_streamed_body);
    CU_add_test(s, "body refused midway", test_body_refused_midway);
    CU_add_test(s, "unknown transfer coding: 501", test_unknown_transfer_coding_501);
    CU_add_test(s, "refused at the head, body still coming: not reset",
                test_refused_at_head_not_reset);
    CU_add_test(s, "streamed responses", test_stream_response);
    CU_add_test(s, "unknown length refused 505 to HTTP/1.0", test_unknown_length_refused_to_http10);
    CU_add_test(s, "streamed responses in larger blocks", test_stream_block_size);
    CU_add_test(s, "HTTP_STREAM_ERROR aborts", test_stream_error_aborts);
    CU_add_test(s, "handler without a response", test_handler_without_response);
    CU_add_test(s, "bearer token", test_bearer_token);
    CU_add_test(s, "metrics", test_metrics);
    CU_add_test(s, "start errors", test_start_errors);
    CU_add_test(s, "port in use refused", test_port_in_use);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    http_server_stop(srv, 2000);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
