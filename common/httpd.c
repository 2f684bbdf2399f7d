/*
 * httpd.c - the HTTP server layer over libmicrohttpd (see httpd.h).
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in, once per chunk of body, and once more when the
 * body is complete. This file turns those calls into the route handler /
 * on_body / on_done protocol of httpd.h, and accounts every request in the
 * metrics when libmicrohttpd reports it finished.
 *
 * Connection guards. The threading model stays one thread per connection:
 * handlers block on fsync, on backends and on streamed bodies, and an event
 * loop would let one slow request stall every connection on its thread. So
 * instead of making idle sockets cheap, the layer keeps them from piling up:
 * - at most max_client_connections from one source address
 *   (MHD_OPTION_PER_IP_CONNECTION_LIMIT; the rest are closed at accept), so
 *   one client can never take every thread from the others;
 * - a hard deadline for the request head (header_timeout_s after accept,
 *   idle_timeout_s after the previous answer on a kept-alive connection),
 *   which dripping a byte now and then does not extend: a watchdog thread
 *   shuts down (never closes: libmicrohttpd owns the descriptor) the socket
 *   of a connection past its deadline, under the lock that the close
 *   notification takes, so the descriptor cannot have been reused;
 * - an inactivity timeout (MHD_OPTION_CONNECTION_TIMEOUT = idle_timeout_s)
 *   that a transfer moving bytes, however long, never meets.
 */
#define _GNU_SOURCE
#include "httpd.h"
#include "prom.h"
#include "json.h"
#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const unsigned known_status[] = {200, 201, 202, 204, 206, 304, 400, 401, 404, 405, 412,
                                        409, 411, 413, 416, 422, 500, 502, 503, 504, 507};
#define NSTATUS (sizeof(known_status) / sizeof(known_status[0]) + 1)
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

struct route_stats {
    uint64_t by_status[NSTATUS];
    uint64_t buckets[NBUCKETS + 1]; /* last one is +Inf */
    uint64_t sum_us;
};

/* One accepted connection, for the head deadline (see the file comment). */
struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    uint64_t deadline_ns; /* 0: a request is being served, no deadline */
    bool began;           /* a request head has come in on it */
    bool head_arriving;   /* a request line is in, the rest of the head not yet */
    bool shut;
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_config cfg;
    unsigned char token_digest[32];
    struct route_stats *stats; /* nroutes + 1; the last counts unmatched requests */
    /* Route -> its stats slot. Several routes may share a name (GET
     * /objects/K, /file/K/ and /local/K/ are all "get"): they count in the
     * slot of the first route of that name, so every series prints once. */
    size_t *slot;
    uint64_t bytes_in, bytes_out;
    pthread_mutex_t lock;
    unsigned active;
    unsigned port;
    atomic_bool closing; /* http_server_close_keepalive: every answer closes */

    /* Connection guards. */
    pthread_mutex_t conn_lock;
    pthread_cond_t watchdog_wake;
    struct conn_track conns; /* list head */
    bool watchdog_stop;
    bool watchdog_started;
    pthread_t watchdog;
    uint64_t header_timeout_ns, idle_timeout_ns;
    uint64_t conns_open, conns_timed_out; /* under conn_lock */
};

static void conn_set_deadline(struct http_server *srv, struct MHD_Connection *conn,
                              uint64_t deadline_ns);

uint64_t cas_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- routing ----------------------------------------------------------- */

/* Matches path against pattern; on success the '*' segment goes to *seg. */
static bool route_match(const char *pattern, const char *path, const char **seg, size_t *seglen)
{
    size_t plen = strlen(pattern);
    if (plen >= 2 && strcmp(pattern + plen - 2, "**") == 0) {
        /* "**" at the end: the whole non-empty rest of the path, slashes too. */
        if (strncmp(pattern, path, plen - 2) != 0 || !path[plen - 2])
            return false;
        *seg = path + plen - 2;
        *seglen = strlen(*seg);
        return true;
    }
    const char *star = strchr(pattern, '*');
    if (!star) {
        *seg = NULL;
        *seglen = 0;
        return strcmp(pattern, path) == 0;
    }
    size_t pre = (size_t)(star - pattern);
    if (strncmp(pattern, path, pre) != 0)
        return false;
    const char *s = path + pre;
    size_t n = strcspn(s, "/");
    if (n == 0)
        return false;
    if (strcmp(star + 1, s + n) != 0)
        return false;
    *seg = s;
    *seglen = n;
    return true;
}

static bool method_match(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return true;
    return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

/* ---- responses --------------------------------------------------------- */

static void set_response(struct http_req *req, unsigned status, struct MHD_Response *r,
                         const char *content_type)
{
    if (req->resp)
        MHD_destroy_response(req->resp);
    req->resp = r;
    req->status = status;
    if (r && content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
}

void http_reply(struct http_req *req, unsigned status, const char *content_type, const void *body,
                size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    req->bytes_out = len;
    set_response(req, status, r, content_type);
}

void http_reply_owned(struct http_req *req, unsigned status, const char *content_type, void *body,
                      size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r)
        free(body);
    req->bytes_out = len;
    set_response(req, status, r, content_type);
}

void http_reply_buf(struct http_req *req, unsigned status, const char *content_type,
                    struct cas_buf *body)
{
    size_t len = 0;
    char *p = cas_buf_steal(body, &len);
    if (!p) {
        http_reply(req, 500, "application/json", "{\"error\":\"out of memory\"}\n", 26);
        return;
    }
    http_reply_owned(req, status, content_type, p, len);
}

void http_reply_json(struct http_req *req, unsigned status, struct cas_buf *json)
{
    cas_buf_append(json, "\n", 1);
    http_reply_buf(req, status, "application/json", json);
}

void http_error(struct http_req *req, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, "{\"error\":");
    cas_json_escape(&b, msg);
    cas_buf_puts(&b, "}");
    free(req->err_body);
    req->err_body = NULL;
    req->err_len = 0;
    if (b.data && !b.oom && (req->err_body = malloc(b.len + 1))) {
        memcpy(req->err_body, b.data, b.len);
        req->err_body[b.len] = '\n';
        req->err_len = b.len + 1;
    }
    http_reply_json(req, status, &b);
    if (status >= 500)
        log_warn("%s %s: %u %s", req->method, req->url, status, msg);
}

struct stream_wrap {
    struct http_server *srv;
    http_reader_fn reader;
    void *cls;
    void (*free_cls)(void *);
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_wrap *w = cls;
    ssize_t n = w->reader(w->cls, pos, buf, max);
    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    __atomic_fetch_add(&w->srv->bytes_out, (uint64_t)n, __ATOMIC_RELAXED);
    return n;
}

static void stream_free(void *cls)
{
    struct stream_wrap *w = cls;
    if (w->free_cls)
        w->free_cls(w->cls);
    free(w);
}

void http_reply_stream(struct http_req *req, unsigned status, const char *content_type,
                       uint64_t size, http_reader_fn reader, void *cls, void (*free_cls)(void *))
{
    http_reply_stream_block(req, status, content_type, size, HTTP_STREAM_BLOCK, reader, cls,
                            free_cls);
}

bool http_client_can_frame_unknown_length(const struct http_req *req)
{
    return !req->http10;
}

void http_reply_stream_block(struct http_req *req, unsigned status, const char *content_type,
                             uint64_t size, size_t block, http_reader_fn reader, void *cls,
                             void (*free_cls)(void *))
{
    if (size == HTTP_SIZE_UNKNOWN && !http_client_can_frame_unknown_length(req)) {
        /* HTTP/1.0 has no chunked coding: such a body ends with a plain
         * close, and a stream that breaks off (HTTP_STREAM_ERROR) would end
         * the same way, looking complete. Refused rather than risk that. */
        if (free_cls)
            free_cls(cls);
        http_refuse_http10(req);
        return;
    }
    struct stream_wrap *w = malloc(sizeof(*w));
    if (!w) {
        if (free_cls)
            free_cls(cls);
        http_error(req, 500, "out of memory");
        return;
    }
    *w = (struct stream_wrap){req->srv, reader, cls, free_cls};
    struct MHD_Response *r =
        MHD_create_response_from_callback(size == HTTP_SIZE_UNKNOWN ? MHD_SIZE_UNKNOWN : size,
                                          block ? block : HTTP_STREAM_BLOCK, stream_read, w,
                                          stream_free);
    if (!r) {
        stream_free(w);
        http_error(req, 500, "out of memory");
        return;
    }
    req->bytes_out = size == HTTP_SIZE_UNKNOWN ? 0 : size;
    req->streamed = true;
    set_response(req, status, r, content_type);
}

void http_refuse_http10(struct http_req *req)
{
    http_error(req, 505,
               "%s %s needs HTTP/1.1: its answer is streamed with a length not known in "
               "advance, and HTTP/1.0 has no chunked coding to mark where it ends, so an "
               "answer cut short would look complete; send the request as HTTP/1.1",
               req->is_head ? "HEAD" : req->method, req->url);
}

static ssize_t never_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return HTTP_STREAM_ERROR; /* a 304 has no body: never called */
}

void http_reply_not_modified(struct http_req *req, uint64_t size)
{
    /* A body-less response of the object's size: libmicrohttpd sends the
     * Content-Length a 200 would have had (RFC 9110 section 8.6 allows no
     * other value) and no body, as for HEAD. */
    http_reply_stream(req, 304, NULL, size, never_read, NULL, NULL);
    req->bytes_out = 0;
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
    if (req->resp)
        MHD_add_response_header(req->resp, name, value);
}

const char *http_header(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- conditional requests (RFC 9110 section 13) ------------------------ */

/* Does one field value (an entity-tag list or "*") match tag? Weak
 * comparison ignores a W/ prefix; strong comparison needs it absent (our
 * own tags are strong). A malformed list matches nothing. */
static bool etag_list_match(const char *v, const char *tag, bool weak_cmp)
{
    size_t tl = strlen(tag);
    bool match = false;
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return match;
        if (*p == '*') {
            match = true;
            p++;
        } else {
            bool weak = false;
            if (p[0] == 'W' && p[1] == '/') {
                weak = true;
                p += 2;
            }
            if (*p != '"')
                return false;
            const char *q = strchr(p + 1, '"');
            if (!q)
                return false;
            if ((!weak || weak_cmp) && (size_t)(q - p - 1) == tl && memcmp(p + 1, tag, tl) == 0)
                match = true;
            p = q + 1;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != ',')
            return false;
    }
}

struct cond_scan {
    const char *name;
    const char *tag;
    bool weak_cmp;
    bool present, match;
};

static enum MHD_Result cond_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct cond_scan *c = cls;
    if (key && value && strcasecmp(key, c->name) == 0) {
        c->present = true;
        if (etag_list_match(value, c->tag, c->weak_cmp))
            c->match = true;
    }
    return MHD_YES;
}

/* -1: no such header; 0: present, no match; 1: a match in some field. */
static int cond_header(struct http_req *req, const char *name, const char *tag, bool weak_cmp)
{
    struct cond_scan c = {name, tag, weak_cmp, false, false};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, cond_field, &c);
    return !c.present ? -1 : c.match ? 1 : 0;
}

unsigned http_preconditions(struct http_req *req, const char *tag, bool *use_range)
{
    *use_range = true;
    if (cond_header(req, MHD_HTTP_HEADER_IF_MATCH, tag, false) == 0)
        return 412;
    if (cond_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH, tag, true) == 1)
        return 304;
    const char *ir = http_header(req, MHD_HTTP_HEADER_IF_RANGE);
    if (ir) {
        /* One strong entity-tag, exactly ours; anything else: no match. */
        while (*ir == ' ' || *ir == '\t')
            ir++;
        size_t tl = strlen(tag), il = strlen(ir);
        while (il && (ir[il - 1] == ' ' || ir[il - 1] == '\t'))
            il--;
        bool ok = il == tl + 2 && ir[0] == '"' && ir[il - 1] == '"' && memcmp(ir + 1, tag, tl) == 0;
        if (!ok)
            *use_range = false;
    }
    return 0;
}

/* ---- the access handler ------------------------------------------------ */

static bool authorized(struct http_server *srv, struct http_req *req)
{
    if (!srv->cfg.token)
        return true;
    unsigned flags = req->route ? req->route->flags : 0;
    if (flags & HTTP_READ) {
        if (!srv->cfg.auth_reads)
            return true;
    } else if (flags & HTTP_PUBLIC) {
        return true;
    }
    const char *h = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    /* Compare digests so neither the length nor the content leaks timing. */
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(h + 7, strlen(h + 7), d, &n, EVP_sha256(), NULL);
    return CRYPTO_memcmp(d, srv->token_digest, 32) == 0;
}

static enum MHD_Result queue(struct http_req *req)
{
    if (req->queued) /* answered early: libmicrohttpd may still call with the body */
        return MHD_YES;
    req->queued = true;
    if (!req->resp)
        http_error(req, 500, "handler produced no response");
    if (!req->resp)
        return MHD_NO;
    if (atomic_load(&req->srv->closing))
        MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return rc;
}

/* Waits until fd is ready for events, at most until deadline_ns. */
static bool wait_fd(int fd, short events, uint64_t deadline_ns)
{
    uint64_t now = cas_now_ns();
    if (now >= deadline_ns)
        return false;
    struct pollfd p = {.fd = fd, .events = events};
    int ms = (int)((deadline_ns - now) / 1000000) + 1;
    return poll(&p, 1, ms) > 0;
}

/* Appends one header of the queued response to the hand-written head
 * (answer_before_body); the framing headers are written there itself. */
struct head_buf {
    char *p;
    size_t len, cap;
    bool overflow;
};

static enum MHD_Result add_head_line(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct head_buf *h = cls;
    if (kind != MHD_HEADER_KIND || !value ||
        strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0 ||
        strcasecmp(key, MHD_HTTP_HEADER_CONNECTION) == 0 ||
        strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        return MHD_YES;
    int n = snprintf(h->p + h->len, h->cap - h->len, "%s: %s\r\n", key, value);
    if (n < 0 || (size_t)n >= h->cap - h->len) {
        h->overflow = true;
        return MHD_NO;
    }
    h->len += (size_t)n;
    return MHD_YES;
}

/*
 * Answers an error while the request body is still coming or has not begun
 * (413 for a chunked upload over the limit mid-body; 507, 401, 413 by
 * Content-Length, ... at the head). libmicrohttpd 0.9.75 refuses a response
 * queued in the middle of an upload and would drop the connection without
 * a word; one queued at the head is sent, but the connection is then closed
 * with the body unread, so the kernel resets it and a client still sending
 * sees "broken pipe" instead of the answer (RFC 9112 section 9.6: close the
 * write side first, then keep reading for a while). So the answer (its
 * status, the response's own headers, the JSON error body) is written on
 * the socket here, on the connection's own thread (nothing else writes to
 * it while the handler runs), with "Connection: close"; then the write side
 * is shut and what the client still sends is read and dropped for a bounded
 * time (2 s, 16 MiB; a client that closes ends it at once), and
 * libmicrohttpd is told to close.
 */
static enum MHD_Result answer_before_body(struct http_req *req)
{
    /* Over TLS the socket carries records, not the answer's bytes: an
     * answer at the head goes through libmicrohttpd (which then closes), one
     * in the middle of a body cannot be given (the connection is closed). */
    if (req->srv->cfg.tls) {
        if (!req->queued && req->bytes_in == 0)
            return queue(req);
        req->queued = true;
        return MHD_NO;
    }
    req->queued = true;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return MHD_NO;
    int fd = ci->connect_fd;
    const char *body = req->err_body ? req->err_body : "{\"error\":\"request refused\"}\n";
    size_t blen = req->err_body ? req->err_len : strlen(body);
    const char *reason = MHD_get_reason_phrase_for(req->status);
    char head[4096];
    struct head_buf h = {head, 0, sizeof(head), false};
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %u %s\r\nConnection: close\r\n", req->status,
                     reason && *reason ? reason : "Error");
    h.len = (size_t)n;
    if (req->resp)
        MHD_get_response_headers(req->resp, add_head_line, &h);
    if (!req->resp || !MHD_get_response_header(req->resp, MHD_HTTP_HEADER_CONTENT_TYPE))
        add_head_line(&h, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    n = snprintf(head + h.len, sizeof(head) - h.len, "Content-Length: %zu\r\n\r\n", blen);
    if (h.overflow || n < 0 || (size_t)n >= sizeof(head) - h.len)
        return MHD_NO; /* cannot happen with this project's headers */
    int hl = (int)(h.len + (size_t)n);
    req->bytes_out = blen;
    uint64_t deadline = cas_now_ns() + 5000000000ull;
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, blen}};
    int iovcnt = 2;
    struct iovec *v = iov;
    while (iovcnt > 0) {
        ssize_t w = writev(fd, v, iovcnt);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                return MHD_NO;
            continue;
        }
        if (w < 0)
            return MHD_NO;
        while (iovcnt > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            v->iov_base = (char *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    shutdown(fd, SHUT_WR);
    /* Linger: up to 2 s and 16 MiB of the rest of the body, then close. */
    char sink[16384];
    uint64_t linger = cas_now_ns() + 2000000000ull, drained = 0;
    while (drained < 16u << 20 && wait_fd(fd, POLLIN, linger)) {
        ssize_t r = read(fd, sink, sizeof(sink));
        if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
            break;
        if (r > 0)
            drained += (uint64_t)r;
    }
    if (req->resp) {
        MHD_destroy_response(req->resp);
        req->resp = NULL;
    }
    return MHD_NO;
}

/* The request target as the client would have written it: bytes that are
 * control characters, '%', or not valid UTF-8 are percent-encoded again
 * (so "/nosuch%FF" is shown as sent); cut with "..." past outlen. */
static void quote_target(const char *in, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t left = strlen(in), o = 0;
    while (left && o + 8 < outlen) {
        size_t n = *p >= 0x80 ? cas_utf8_valid_prefix(p, left) : 1;
        if (*p < 0x20 || *p == 0x7f || *p == '%' || n == 0) {
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", *p);
            n = 1;
        } else {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        left -= n;
    }
    if (left)
        o += (size_t)snprintf(out + o, outlen - o, "...");
    out[o] = '\0';
}

/* The Allow header's value for path: every method a route serves it with
 * (GET implies HEAD), in route order. */
static void allowed_methods(struct http_server *srv, const char *path, char *out, size_t outlen)
{
    const char *seen[32];
    size_t nseen = 0, o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < srv->cfg.nroutes; i++) {
        const char *seg;
        size_t seglen;
        const char *m = srv->cfg.routes[i].method;
        if (!route_match(srv->cfg.routes[i].pattern, path, &seg, &seglen))
            continue;
        const char *names[2] = {m, strcmp(m, "GET") == 0 ? "HEAD" : NULL};
        for (int k = 0; k < 2 && names[k]; k++) {
            bool dup = false;
            for (size_t j = 0; j < nseen && !dup; j++)
                dup = strcmp(seen[j], names[k]) == 0;
            if (dup || nseen == sizeof(seen) / sizeof(seen[0]))
                continue;
            int w = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "", names[k]);
            if (w < 0 || (size_t)w >= outlen - o)
                return;
            o += (size_t)w;
            seen[nseen++] = names[k];
        }
    }
}

/*
 * libmicrohttpd's percent-decoding, except that a target or argument holding
 * "%00" is left exactly as sent: a NUL would cut the string, and the route
 * would see "/objects/KEY" where the client sent "/objects/KEY%00junk". Left
 * encoded, it fails the key or number check (400) or matches no route (404),
 * and the message quotes what was sent.
 */
static size_t unescape_target(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    for (const char *p = s; (p = strchr(p, '%')) != NULL; p++)
        if (p[1] == '0' && p[2] == '0')
            return strlen(s);
    return MHD_http_unescape(s);
}

/* The most body bytes req's route takes (max_upload, plus form slack); 0: no limit. */
static uint64_t upload_limit(struct http_server *srv, struct http_req *req)
{
    unsigned f = req->route ? req->route->flags : 0;
    if (!srv->cfg.max_upload || !(f & (HTTP_UPLOAD | HTTP_UPLOAD_FORM)))
        return 0;
    return srv->cfg.max_upload + (f & HTTP_UPLOAD_FORM ? HTTP_FORM_SLACK : 0);
}

struct unknown_param {
    const char *known; /* the route's params */
    const char *bad;
};

static enum MHD_Result find_unknown(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct unknown_param *u = cls;
    (void)kind, (void)value;
    size_t kl = strlen(key);
    for (const char *p = u->known; *p;) {
        size_t n = strcspn(p, " ");
        if (n == kl && !strncasecmp(p, key, n))
            return MHD_YES;
        p += n + (p[n] == ' ');
    }
    u->bad = key;
    return MHD_NO;
}

/* A query parameter the route does not read is refused (http_route.params),
 * naming it and the ones the route takes. True when answered. */
static bool refuse_unknown_parameter(struct http_req *req)
{
    if (!req->route || !req->route->params)
        return false;
    struct unknown_param u = {.known = req->route->params};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, find_unknown, &u);
    if (!u.bad)
        return false;
    char shown[64];
    snprintf(shown, sizeof(shown), "%s", u.bad);
    http_error(req, 400, "unknown query parameter \"%s\" (%s %s takes: %s)", shown,
               req->route->method, req->route->pattern,
               *req->route->params ? req->route->params : "none");
    return true;
}

static void begin_request(struct http_server *srv, struct http_req *req)
{
    const struct http_route *routes = srv->cfg.routes;
    bool path_found = false;
    for (size_t i = 0; i < srv->cfg.nroutes; i++) {
        const char *seg;
        size_t seglen;
        if (!route_match(routes[i].pattern, req->url, &seg, &seglen))
            continue;
        path_found = true;
        if (!method_match(routes[i].method, req->method))
            continue;
        req->route = &routes[i];
        if (seg) {
            if (seglen >= sizeof(req->param_buf))
                seglen = sizeof(req->param_buf) - 1; /* the key parser rejects it */
            memcpy(req->param_buf, seg, seglen);
            req->param_buf[seglen] = '\0';
            req->param = req->param_buf;
            req->param_len = seglen;
        }
        break;
    }
    if (!req->route) {
        char shown[600];
        quote_target(req->url, shown, sizeof(shown));
        if (path_found) {
            http_error(req, 405, "method %s not allowed on %s", req->method, shown);
            char allow[128];
            allowed_methods(srv, req->url, allow, sizeof(allow));
            http_add_header(req, MHD_HTTP_HEADER_ALLOW, allow);
        } else {
            http_error(req, 404, "no such route: %s %s", req->method, shown);
        }
        return;
    }
    if (!authorized(srv, req)) {
        http_error(req, 401, "missing or wrong bearer token");
        return;
    }
    const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (!errno && end != cl && !*end) {
            req->has_length = true;
            req->content_length = v;
        }
    }
    /* libmicrohttpd frames a body by a bare "chunked" only: with any other
     * coding ("gzip, chunked", "gzip") it waits for the connection to end.
     * Refused at once instead (RFC 9112 section 6.1). */
    const char *te = http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked") != 0) {
        http_error(req, 501, "Transfer-Encoding \"%.100s\" is not supported: send the body "
                             "chunked or with a Content-Length", te);
        return;
    }
    if (refuse_unknown_parameter(req))
        return;
    uint64_t limit = upload_limit(srv, req);
    if (limit && req->has_length && req->content_length > limit) {
        http_error(req, 413, "object is over the limit of %" PRIu64 " bytes", srv->cfg.max_upload);
        return;
    }
    req->route->handler(req);
}

/* How the request says its body is framed (RFC 9112 6.1, 6.3). */
struct framing {
    unsigned lengths;      /* Content-Length headers */
    bool lengths_differ;   /* ...with different values */
    const char *length;    /* the first one */
    bool transfer_coding;  /* a Transfer-Encoding header */
};

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct framing *f = cls;
    (void)kind;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        if (f->lengths++ && strcmp(f->length, value ? value : "") != 0)
            f->lengths_differ = true;
        if (f->lengths == 1)
            f->length = value ? value : "";
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->transfer_coding = true;
    }
    return MHD_YES;
}

/*
 * Refuses a request whose body framing is ambiguous: a Transfer-Encoding
 * together with a Content-Length, or Content-Length headers that disagree.
 * Two parsers in a row (a load balancer, then this daemon) could otherwise
 * cut the bytes into requests differently and smuggle one past the other
 * (RFC 9112 6.1: such a message must be answered and the connection
 * closed; 6.3: differing lengths are an unrecoverable error). The 400
 * closes the connection, so nothing after the head is read as a request.
 */
static bool refuse_ambiguous_framing(struct http_req *req)
{
    struct framing f = {0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, framing_header, &f);
    if (f.transfer_coding && f.lengths)
        http_error(req, 400, "both Transfer-Encoding and Content-Length: the body's framing is "
                             "ambiguous (RFC 9112 6.1)");
    else if (f.lengths_differ)
        http_error(req, 400, "Content-Length headers that disagree (RFC 9112 6.3)");
    else
        return false;
    MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return true;
}

/* Query parameters seen so far, to find one given twice. */
struct query_names {
    const char *names[32];
    size_t n;
    const char *twice;
};

static enum MHD_Result query_name(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct query_names *q = cls;
    (void)kind, (void)value;
    /* Names are compared as libmicrohttpd looks them up: ignoring case
     * (?id=1&ID=2 is the same parameter twice). */
    for (size_t i = 0; i < q->n; i++)
        if (!strcasecmp(q->names[i], key)) {
            q->twice = key;
            return MHD_NO;
        }
    if (q->n < sizeof(q->names) / sizeof(q->names[0]))
        q->names[q->n++] = key;
    return MHD_YES;
}

/* A query parameter given twice (`gc/end?id=1&id=2`) is refused: which one
 * counts would be a guess. */
static bool refuse_repeated_parameter(struct http_req *req)
{
    struct query_names q = {.n = 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_name, &q);
    if (!q.twice)
        return false;
    http_error(req, 400, "query parameter \"%s\" given more than once", q.twice);
    return true;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->srv = srv;
        req->app = srv->cfg.app;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->is_head = strcmp(method, "HEAD") == 0;
        /* libmicrohttpd takes HTTP/1.0 and HTTP/1.1 (it refuses others). */
        req->http10 = version && strcasecmp(version, MHD_HTTP_VERSION_1_0) == 0;
        req->t0_ns = cas_now_ns();
        /* In flight before the connection stops counting as one with a
         * head to come: a stop never sees it as neither. */
        pthread_mutex_lock(&srv->lock);
        srv->active++;
        pthread_mutex_unlock(&srv->lock);
        conn_set_deadline(srv, conn, 0); /* the head is in */
        if (refuse_ambiguous_framing(req) || refuse_repeated_parameter(req))
            return queue(req);
        begin_request(srv, req);
        /* An answer ready before the body is read is sent at once (and
         * libmicrohttpd closes the connection rather than read the body);
         * without a body it waits for the next call, which keeps the
         * connection alive. */
        const char *te = http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        bool has_body = (req->has_length && req->content_length > 0) || te;
        if (req->resp && has_body)
            return req->err_body && !req->is_head ? answer_before_body(req) : queue(req);
        if (!req->resp && !req->on_done) {
            http_error(req, 500, "route %s has no response", req->route->name);
            return queue(req);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        req->bytes_in += n;
        __atomic_fetch_add(&srv->bytes_in, (uint64_t)n, __ATOMIC_RELAXED);
        uint64_t limit = req->queued || req->body_failed ? 0 : upload_limit(srv, req);
        if (limit && req->bytes_in > limit) {
            /* A chunked body past the limit: the handler sees no more of it. */
            http_error(req, 413, "object is over the limit of %" PRIu64 " bytes",
                       srv->cfg.max_upload);
            req->body_failed = true;
            *upload_data_size = 0;
            return answer_before_body(req);
        }
        if (!req->queued && !req->body_failed && req->on_body &&
            req->on_body(req, upload_data, n) != 0) {
            req->body_failed = true;
            *upload_data_size = 0;
            /* Too large: answer at once rather than read a (chunked) body
             * of any length first. Other failures are answered once the
             * body is in, as before (a client sending a bounded body reads
             * the answer after it). */
            if (req->resp && req->status == 413)
                return answer_before_body(req);
            return MHD_YES;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!req->resp && req->on_done)
        req->on_done(req);
    req->on_done = NULL;
    return queue(req);
}

static int status_index(unsigned status)
{
    for (size_t i = 0; i < NSTATUS - 1; i++)
        if (known_status[i] == status)
            return (int)i;
    return (int)NSTATUS - 1;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    /* A kept-alive connection must send its next head in time too. */
    conn_set_deadline(srv, conn, cas_now_ns() + srv->idle_timeout_ns);
    if (!req)
        return;
    *con_cls = NULL;
    uint64_t us = (cas_now_ns() - req->t0_ns) / 1000;
    size_t ri = req->route ? srv->slot[req->route - srv->cfg.routes] : srv->cfg.nroutes;
    struct route_stats *st = &srv->stats[ri];
    __atomic_fetch_add(&st->by_status[status_index(req->status)], 1, __ATOMIC_RELAXED);
    size_t b = 0;
    while (b < NBUCKETS && (double)us / 1e6 > bucket_le[b])
        b++;
    __atomic_fetch_add(&st->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->sum_us, us, __ATOMIC_RELAXED);
    bool quiet = req->route && (req->route->flags & HTTP_QUIET) && req->status / 100 == 2;
    if (cas_log_enabled(quiet ? CAS_LOG_DEBUG : CAS_LOG_INFO)) {
        /* Behind a load balancer, the client is who X-Forwarded-For names. */
        const char *fwd =
            req->conn ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Forwarded-For")
                      : NULL;
        cas_log(quiet ? CAS_LOG_DEBUG : CAS_LOG_INFO,
                "%s %s %u in=%" PRIu64 " out=%" PRIu64 " %.3fms%s%s%.128s", req->method, req->url,
                req->status, req->bytes_in, req->bytes_out, (double)us / 1000,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)", fwd ? " for=" : "",
                fwd ? fwd : "");
    }
    if (req->bytes_out && !req->streamed)
        __atomic_fetch_add(&srv->bytes_out, req->bytes_out, __ATOMIC_RELAXED);
    if (req->cleanup)
        req->cleanup(req);
    if (req->resp)
        MHD_destroy_response(req->resp);
    free(req->err_body);
    free(req);
    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_mutex_unlock(&srv->lock);
}

/* ---- connection guards (see the file comment) --------------------------- */

static void conn_set_deadline(struct http_server *srv, struct MHD_Connection *conn,
                              uint64_t deadline_ns)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_track *t = ci ? ci->socket_context : NULL;
    if (!t)
        return;
    pthread_mutex_lock(&srv->conn_lock);
    t->deadline_ns = deadline_ns;
    if (deadline_ns == 0)
        t->began = true;
    t->head_arriving = false;
    pthread_mutex_unlock(&srv->conn_lock);
}

/* libmicrohttpd's URI log callback: the request line is in, the rest of the
 * head may not be (libmicrohttpd holds it in its buffer, so the socket shows
 * no unread bytes). A stop waits for such a head (requests_pending). Returns
 * NULL: the access handler's request context starts empty. */
static void *request_line_in(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_server *srv = cls;
    (void)uri;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_track *t = ci ? ci->socket_context : NULL;
    if (t) {
        pthread_mutex_lock(&srv->conn_lock);
        t->head_arriving = true;
        pthread_mutex_unlock(&srv->conn_lock);
    }
    return NULL;
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn_track *t = calloc(1, sizeof(*t));
        if (!t || !ci) {
            free(t); /* unguarded, but still bound by the inactivity timeout */
            return;
        }
        t->fd = ci->connect_fd;
        t->deadline_ns = cas_now_ns() + srv->header_timeout_ns;
        pthread_mutex_lock(&srv->conn_lock);
        t->next = srv->conns.next;
        t->prev = &srv->conns;
        t->next->prev = t;
        srv->conns.next = t;
        srv->conns_open++;
        pthread_mutex_unlock(&srv->conn_lock);
        *socket_context = t;
        return;
    }
    /* Closed: libmicrohttpd closes the descriptor after this returns. */
    struct conn_track *t = *socket_context;
    if (!t)
        return;
    pthread_mutex_lock(&srv->conn_lock);
    t->prev->next = t->next;
    t->next->prev = t->prev;
    srv->conns_open--;
    pthread_mutex_unlock(&srv->conn_lock);
    *socket_context = NULL;
    free(t);
}

/* Every 250 ms: shuts down the sockets of connections past their head
 * deadline; their own thread then sees the end of input and closes them. */
static void *watchdog_main(void *arg)
{
    struct http_server *srv = arg;
    pthread_mutex_lock(&srv->conn_lock);
    while (!srv->watchdog_stop) {
        uint64_t now = cas_now_ns();
        for (struct conn_track *t = srv->conns.next; t != &srv->conns; t = t->next) {
            if (t->shut || !t->deadline_ns || now < t->deadline_ns)
                continue;
            shutdown(t->fd, SHUT_RDWR);
            t->shut = true;
            srv->conns_timed_out++;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->watchdog_wake, &srv->conn_lock, &ts);
    }
    pthread_mutex_unlock(&srv->conn_lock);
    return NULL;
}

static void watchdog_join(struct http_server *srv)
{
    if (!srv->watchdog_started)
        return;
    pthread_mutex_lock(&srv->conn_lock);
    srv->watchdog_stop = true;
    pthread_cond_signal(&srv->watchdog_wake);
    pthread_mutex_unlock(&srv->conn_lock);
    pthread_join(srv->watchdog, NULL);
    srv->watchdog_started = false;
}

unsigned long http_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("open files limit raised from %llu to %llu (the hard limit)",
                     (unsigned long long)was, (unsigned long long)rl.rlim_cur);
        else
            rl.rlim_cur = was;
    }
    return rl.rlim_cur == RLIM_INFINITY ? ~0UL : (unsigned long)rl.rlim_cur;
}

/* ---- start and stop ---------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len, bool *v6,
                        char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || !colon[1]) {
        snprintf(err, errlen, "bad listen address \"%s\": want ADDR:PORT", listen);
        return -EINVAL;
    }
    /* The port: digits only, at most 65535 (getaddrinfo would take a
     * service name, and 70000 as 70000 mod 65536). 0: any free port. */
    size_t pl = strlen(colon + 1);
    if (pl > 5 || strspn(colon + 1, "0123456789") != pl || strtoul(colon + 1, NULL, 10) > 65535) {
        snprintf(err, errlen, "bad listen address \"%s\": the port must be a number from 0 to 65535",
                 listen);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
        listen++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "bad listen address \"%s\"", listen);
        return -EINVAL;
    }
    memcpy(host, listen, hl);
    host[hl] = '\0';
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "bad listen address \"%s\": %s", listen, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    return 0;
}

int http_listen_check(const char *listen, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool v6;
    return parse_listen(listen, &ss, &len, &v6, err, errlen);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_debug("libmicrohttpd: %s", msg);
}

int http_server_start(const struct http_server_config *cfg, struct http_server **out, char *err,
                      size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    bool v6;
    int rc = parse_listen(cfg->listen, &ss, &sslen, &v6, err, errlen);
    if (rc < 0)
        return rc;
    unsigned max_conn = cfg->max_connections ? cfg->max_connections : HTTP_DEFAULT_MAX_CONNECTIONS;
    unsigned per_client = cfg->max_client_connections;
    if (!per_client)
        per_client = max_conn / 2 ? max_conn / 2 : 1;
    if (per_client > max_conn) {
        snprintf(err, errlen, "connections per client (%u) above the connection limit (%u)",
                 per_client, max_conn);
        return -EINVAL;
    }
    unsigned header_s =
        cfg->header_timeout_s ? cfg->header_timeout_s : HTTP_DEFAULT_HEADER_TIMEOUT_S;
    unsigned idle_s = cfg->idle_timeout_s ? cfg->idle_timeout_s : HTTP_DEFAULT_IDLE_TIMEOUT_S;
    unsigned long nofile = http_raise_fd_limit();
    /* Each connection holds a descriptor; keep some for data files,
     * backends and the listening socket. */
    if (nofile && nofile < (unsigned long)max_conn + 64)
        log_warn("open files limit %lu is low for %u connections: raise the hard limit "
                 "(ulimit -Hn, LimitNOFILE=) or lower the connection limit",
                 nofile, max_conn);
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->cfg = *cfg;
    srv->stats = calloc(cfg->nroutes + 1, sizeof(*srv->stats));
    srv->slot = calloc(cfg->nroutes + 1, sizeof(*srv->slot));
    if (!srv->stats || !srv->slot) {
        free(srv->stats);
        free(srv->slot);
        free(srv);
        return -ENOMEM;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        srv->slot[r] = r;
        for (size_t i = 0; i < r; i++)
            if (strcmp(cfg->routes[i].name, cfg->routes[r].name) == 0) {
                srv->slot[r] = i;
                break;
            }
    }
    pthread_mutex_init(&srv->lock, NULL);
    pthread_mutex_init(&srv->conn_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->watchdog_wake, &ca);
    pthread_condattr_destroy(&ca);
    srv->conns.next = srv->conns.prev = &srv->conns;
    srv->header_timeout_ns = (uint64_t)header_s * 1000000000u;
    srv->idle_timeout_ns = (uint64_t)idle_s * 1000000000u;
    if (cfg->token) {
        unsigned int n = 0;
        EVP_Digest(cfg->token, strlen(cfg->token), srv->token_digest, &n, EVP_sha256(), NULL);
    }
    if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) != 0) {
        snprintf(err, errlen, "cannot start the connection watchdog thread");
        free(srv->stats);
        free(srv);
        return -EAGAIN;
    }
    srv->watchdog_started = true;
    /* The connection pool is small on purpose: libmicrohttpd clears it for
     * every request on a keep-alive connection, and 64 KiB of upload per
     * call is plenty (writes gather into larger buffers themselves). */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    /* HTTPS (tls.h): the certificate comes from a callback, per handshake. */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (cfg->tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
            MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES ||
            !cas_tls_enabled()) {
            snprintf(err, errlen,
                     "this libmicrohttpd has no TLS support (or no certificate loaded)");
            watchdog_join(srv);
            free(srv->stats);
            free(srv->slot);
            free(srv);
            return -ENOTSUP;
        }
        flags |= MHD_USE_TLS;
        size_t k = 0;
        tls_opts[k++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, cas_tls_cert_callback()};
        /* GnuTLS's defaults, without TLS 1.0 and 1.1 (RFC 8996). */
        tls_opts[k++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)CAS_TLS_PRIORITIES};
        if (cfg->tls_trust)
            tls_opts[k++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)cfg->tls_trust};
        tls_opts[k] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        notify_connection, srv, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_CONNECTION_LIMIT, max_conn, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_target, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, request_line_in, srv,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not permitted)", cfg->listen);
        watchdog_join(srv);
        free(srv->stats);
        free(srv->slot);
        free(srv);
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    log_info("connections: at most %u, %u per client address; request head within %u s, "
             "idle timeout %u s",
             max_conn, per_client, header_s, idle_s);
    *out = srv;
    return 0;
}

unsigned http_server_port(struct http_server *srv)
{
    return srv->port;
}

void http_server_close_keepalive(struct http_server *srv)
{
    atomic_store(&srv->closing, true);
}

/* ---- stopping without losing a request ---------------------------------
 *
 * Closing a listening socket resets every connection the kernel completed
 * but nobody accepted yet, and stopping libmicrohttpd closes connections
 * whose request arrived but was not read. The client had sent its request
 * on a connection it saw established, so it cannot tell whether it was
 * served: a proxy in front (nginx with unbuffered bodies) answers 502 to a
 * PUT it may not retry. So a stop goes:
 * 1. new SYNs are dropped by a socket filter on the listener (the client's
 *    SYN is sent again after about 1 s, meets a closed port, and the
 *    client sees a refused connection, which every proxy retries
 *    elsewhere); handshakes already under way still complete;
 * 2. libmicrohttpd goes on accepting until the accept queue stays empty
 *    (TCP_INFO's tcpi_unacked is the queue's length on a listener);
 * 3. the listener is closed;
 * 4. the requests in flight finish (within the caller's timeout); for
 *    STOP_HEAD_GRACE_MS more, so do the requests still to come on
 *    connections accepted with no request yet (those of steps 1-2), on
 *    kept-alive connections whose head is partly in, or with bytes unread.
 *    An idle or dripping connection holds a stop no longer than that.
 * Every answer from step 1 on closes its connection ("Connection: close"),
 * so kept-alive clients move to new connections, which are refused. An
 * idle kept-alive connection is still closed at the end: a client that
 * sends on it at that moment must retry, as HTTP/1.1 has it (RFC 9112
 * section 9.3.1).
 * Everything is bounded by the caller's timeout. */

/* Drops segments with SYN set and ACK clear: new connections only. The
 * filter sees the TCP header at offset 0 (tcp_filter()); flags are byte 13. */
static int refuse_new_connections(int lfd)
{
    static struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12), /* SYN | ACK */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),          /* a SYN alone: drop */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu), /* anything else: keep */
    };
    struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
    return setsockopt(lfd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ? -errno : 0;
}

/* Connections libmicrohttpd has not accepted yet, or -1 if unknown. */
static int accept_queue_length(int lfd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state != TCP_LISTEN)
        return -1;
    return (int)ti.tcpi_unacked;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A handshake takes a round trip: the queue must stay empty this long. */
#define STOP_SETTLE_MS 20u

static void stop_accepting(struct http_server *srv, uint64_t deadline_ns)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    int lfd = di ? (int)di->listen_fd : -1;
    if (lfd >= 0 && refuse_new_connections(lfd) == 0) {
        uint64_t empty_since = 0;
        while (cas_now_ns() < deadline_ns) {
            int queued = accept_queue_length(lfd);
            if (queued < 0)
                break;
            uint64_t now = cas_now_ns();
            if (queued > 0)
                empty_since = 0;
            else if (!empty_since)
                empty_since = now;
            else if (now - empty_since >= STOP_SETTLE_MS * 1000000ull)
                break;
            sleep_ms(2);
        }
    }
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

/* A request whose head is under way when the listener closes gets this
 * long to complete its head (ms): ample for a client that sent it at once,
 * short for one that sends nothing. */
#define STOP_HEAD_GRACE_MS 1000u

/* Requests in flight, plus (heads_too) connections that will carry one:
 * accepted with no request head yet, with a head partly in, or kept alive
 * with request bytes unread. */
static unsigned requests_pending(struct http_server *srv, bool heads_too)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->active;
    pthread_mutex_unlock(&srv->lock);
    if (!heads_too)
        return n;
    pthread_mutex_lock(&srv->conn_lock);
    for (struct conn_track *t = srv->conns.next; t != &srv->conns; t = t->next) {
        int unread = 0;
        if (t->shut || t->deadline_ns == 0)
            continue; /* being served (counted above), or being closed */
        if (!t->began || t->head_arriving ||
            (ioctl(t->fd, FIONREAD, &unread) == 0 && unread > 0))
            n++;
    }
    pthread_mutex_unlock(&srv->conn_lock);
    return n;
}

void http_server_stop(struct http_server *srv, unsigned timeout_ms)
{
    if (!srv)
        return;
    uint64_t deadline_ns = cas_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    /* Answers from now on close their connections: a kept-alive client
     * sends its next request on a new connection, which is refused. */
    atomic_store(&srv->closing, true);
    stop_accepting(srv, deadline_ns);
    uint64_t heads_until_ns = cas_now_ns() + STOP_HEAD_GRACE_MS * 1000000ull;
    unsigned pending;
    while ((pending = requests_pending(srv, cas_now_ns() < heads_until_ns)) > 0 &&
           cas_now_ns() < deadline_ns)
        sleep_ms(2);
    if (pending)
        log_warn("stopping with %u requests still in flight", pending);
    MHD_stop_daemon(srv->daemon);
    watchdog_join(srv);
    free(srv->stats);
    free(srv->slot);
    free(srv);
}

/* ---- metrics ----------------------------------------------------------- */


void http_metrics_render(struct http_server *srv, struct cas_buf *out)
{
    cas_buf_puts(out, "# HELP cas_http_requests_total HTTP requests by route and status.\n"
                      "# TYPE cas_http_requests_total counter\n");
    for (size_t r = 0; r <= srv->cfg.nroutes; r++) {
        if (r < srv->cfg.nroutes && srv->slot[r] != r)
            continue; /* counted under an earlier route of the same name */
        const char *name = r < srv->cfg.nroutes ? srv->cfg.routes[r].name : "unmatched";
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = __atomic_load_n(&srv->stats[r].by_status[s], __ATOMIC_RELAXED);
            if (!v)
                continue;
            if (s < NSTATUS - 1)
                cas_buf_printf(out,
                               "cas_http_requests_total{route=\"%s\",status=\"%u\"} %" PRIu64 "\n",
                               name, known_status[s], v);
            else
                cas_buf_printf(
                    out, "cas_http_requests_total{route=\"%s\",status=\"other\"} %" PRIu64 "\n",
                    name, v);
        }
    }
    cas_buf_puts(out, "# HELP cas_http_request_duration_seconds Request latency by route.\n"
                      "# TYPE cas_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= srv->cfg.nroutes; r++) {
        if (r < srv->cfg.nroutes && srv->slot[r] != r)
            continue;
        const char *name = r < srv->cfg.nroutes ? srv->cfg.routes[r].name : "unmatched";
        uint64_t cum = 0;
        struct route_stats *st = &srv->stats[r];
        uint64_t total = 0;
        for (size_t b = 0; b <= NBUCKETS; b++)
            total += __atomic_load_n(&st->buckets[b], __ATOMIC_RELAXED);
        if (!total)
            continue;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += __atomic_load_n(&st->buckets[b], __ATOMIC_RELAXED);
            cas_buf_printf(out,
                           "cas_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                           "%" PRIu64 "\n",
                           name, bucket_le[b], cum);
        }
        cas_buf_printf(
            out, "cas_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
            name, total);
        cas_buf_printf(out, "cas_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
                       (double)__atomic_load_n(&st->sum_us, __ATOMIC_RELAXED) / 1e6);
        cas_buf_printf(out, "cas_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n",
                       name, total);
    }
    cas_buf_printf(out,
                   "# HELP cas_http_received_bytes_total Request body bytes received.\n"
                   "# TYPE cas_http_received_bytes_total counter\n"
                   "cas_http_received_bytes_total %" PRIu64 "\n"
                   "# HELP cas_http_sent_bytes_total Streamed response bytes sent.\n"
                   "# TYPE cas_http_sent_bytes_total counter\n"
                   "cas_http_sent_bytes_total %" PRIu64 "\n",
                   __atomic_load_n(&srv->bytes_in, __ATOMIC_RELAXED),
                   __atomic_load_n(&srv->bytes_out, __ATOMIC_RELAXED));
    prom_process_metrics(out);
    pthread_mutex_lock(&srv->conn_lock);
    uint64_t open_conns = srv->conns_open, timed_out = srv->conns_timed_out;
    pthread_mutex_unlock(&srv->conn_lock);
    cas_buf_printf(out,
                   "# HELP cas_http_connections Client connections open now.\n"
                   "# TYPE cas_http_connections gauge\n"
                   "cas_http_connections %" PRIu64 "\n"
                   "# HELP cas_http_head_timeouts_total Connections closed for not sending a "
                   "request head in time.\n"
                   "# TYPE cas_http_head_timeouts_total counter\n"
                   "cas_http_head_timeouts_total %" PRIu64 "\n",
                   open_conns, timed_out);
    if (srv->cfg.metrics)
        srv->cfg.metrics(srv->cfg.app, out);
}
