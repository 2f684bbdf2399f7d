/*
 * upstream.c - the balancer's small requests to its backends.
 *
 * Probes, GC fan-out, capacity and the like are small JSON exchanges sent to
 * several backends at once. upstream_run drives them in parallel on one
 * curl multi handle and collects each status and body, through the control
 * layer common/ctl.c (cas_ctl_run). upstream_easy gives a handle towards a
 * backend configured by the same layer (cas_ctl_easy: token, TLS, timeouts)
 * with the balancer's view and options, also used by the streaming paths
 * (bstream.c, fanout.c).
 *
 * Object reads (GET/HEAD from proxy.c) do not go through libcurl: upconn_*
 * at the end of this file speaks HTTP/1.1 itself on pooled keep-alive
 * connections, one blocking send and recv per small object, in TLS
 * (common/tls_client.c) for https:// backends.
 */
#define _GNU_SOURCE
#include "upstream.h"
#include "ctl.h"
#include "log.h"
#include "num.h"
#include "tls_client.h"
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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

/* The control layer's options for requests to v's backends (ctl.h). */
static void ctl_opts(const struct view *v, const struct balancer_options *opt,
                     struct cas_ctl_opts *o)
{
    pthread_once(&share_once, share_init);
    const struct view_conf *tc = v->conf;
    *o = (struct cas_ctl_opts){
        .token = v->token,
        .connect_timeout_ms = (long)opt->connect_timeout_ms,
        .share = share,
        .max_body = UPSTREAM_MAX_BODY,
    };
    if (tc) {
        o->ca_pem = tc->ca_pem;
        o->ca_len = tc->ca_len;
        o->cert_pem = tc->client_cert_pem;
        o->cert_len = tc->client_cert_len;
        o->key_pem = tc->client_key_pem;
        o->key_len = tc->client_key_len;
    }
}

CURL *upstream_easy(const struct view *v, const char *url, const char *method,
                    const struct balancer_options *opt, struct curl_slist **hdrs)
{
    return upstream_easy_reuse(NULL, v, url, method, opt, hdrs);
}

CURL *upstream_easy_reuse(CURL *e, const struct view *v, const char *url, const char *method,
                          const struct balancer_options *opt, struct curl_slist **hdrs)
{
    struct cas_ctl_opts o;
    ctl_opts(v, opt, &o);
    return cas_ctl_easy(&e, &o, url, method, hdrs, NULL) == 0 ? e : NULL;
}

void upstream_run(struct balancer *bal, const struct view *v, struct upstream_call *calls,
                  size_t n, long timeout_ms)
{
    struct cas_ctl_opts o;
    ctl_opts(v, &bal->opt, &o);
    struct cas_ctl_req *reqs = calloc(n ? n : 1, sizeof(*reqs));
    if (!reqs) {
        for (size_t i = 0; i < n; i++) {
            cas_buf_init(&calls[i].resp);
            calls[i].status = 0;
            calls[i].curl_code = CURLE_OUT_OF_MEMORY;
            snprintf(calls[i].err, sizeof(calls[i].err), "out of memory");
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        reqs[i] = (struct cas_ctl_req){.url = calls[i].url,
                                       .method = calls[i].method,
                                       .body = calls[i].body,
                                       .body_len = calls[i].body_len,
                                       .header = calls[i].header};
    cas_ctl_run(&o, reqs, n, timeout_ms);
    for (size_t i = 0; i < n; i++) {
        struct upstream_call *c = &calls[i];
        c->status = reqs[i].status;
        c->curl_code = reqs[i].curl_code;
        c->ms = reqs[i].ms;
        c->resp = reqs[i].resp; /* handed over */
        c->err[0] = '\0';
        if (c->status == 0)
            cas_ctl_describe(&reqs[i], c->err, sizeof(c->err));
    }
    free(reqs);
}

void upstream_calls_free(struct upstream_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cas_buf_free(&calls[i].resp);
}

void upstream_describe(const struct upstream_call *c, char *out, size_t outlen)
{
    if (c->status == 0)
        snprintf(out, outlen, "%s", c->err[0] ? c->err : "no answer");
    else
        cas_ctl_describe_status(c->status, c->resp.data, c->resp.len, out, outlen);
}

/* ---- object reads over pooled keep-alive connections ---------------------
 *
 * A GET of a small object is one short request and one short answer. Driven
 * through libcurl it cost a multi handle, several polls and the share
 * lock's futexes per request, more than the exchange itself. Object reads
 * (GET and HEAD, http:// backends) therefore speak HTTP/1.1 on plain
 * blocking sockets: send the request, recv the answer, with SO_RCVTIMEO as
 * the first-byte and I/O timeouts. Idle connections wait in one pool for
 * the process, a stack per backend, so that their number follows the peak
 * of concurrent reads rather than the number of client connections.
 */


#define UPCONN_BUF 16384
/* Idle connections kept per backend: about the peak of concurrent reads
 * (a storaged serves 512 connections at once by default). */
#define UPCONN_IDLE_MAX 128
#define UPCONN_BACKENDS_MAX 64

struct upconn {
    int fd;
    struct cas_tls_session *tls; /* https:// backends; NULL for http:// */
    struct cas_tls_client *cl;   /* its credentials (a reference), for a redial */
    bool handshaking;            /* tls: the handshake is not done; the request waits */
    bool keep_alive;   /* the peer lets us send another request */
    bool failed;
    bool until_close;  /* body without a length: ends when the peer closes */
    unsigned rcvtimeo_ms; /* SO_RCVTIMEO now set on fd */
    unsigned io_timeout_ms;
    bool budgeted;      /* waits for the body are limited (upconn_set_read_budget) */
    uint64_t budget_ns; /* what is left of that time */
    int64_t left;      /* body bytes still to come (when !until_close) */
    size_t start, end; /* buffered bytes buf[start..end) */
    struct upconn *next;
    /* The request in flight (upconn_start), kept to send it again on a new
     * connection when a pooled one turns out to be closed. */
    const char *base;
    bool reused;
    bool got_bytes; /* some of the answer has come (upconn_head_step) */
    bool is_head;
    uint64_t started_ns;
    size_t reqlen;
    char req[2048];
    char why[200];     /* what failed, once failed */
    char key[256];     /* host:port, "https://host:port" in TLS: the pool's key */
    char buf[UPCONN_BUF];
};

/* The idle connections, a stack per backend (the most recently used one
 * first: the least likely to have been closed by the peer). */
struct upconn_idle {
    char key[256];
    struct upconn *top;
    size_t n;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upconn_idle pool[UPCONN_BACKENDS_MAX];
static size_t pool_keys;

static void upconn_destroy(struct upconn *c)
{
    if (!c)
        return;
    cas_tls_session_free(c->tls);
    cas_tls_client_put(c->cl);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static struct upconn_idle *pool_slot(const char *key, bool add)
{
    for (size_t i = 0; i < pool_keys; i++)
        if (!strcmp(pool[i].key, key))
            return &pool[i];
    if (!add)
        return NULL;
    for (size_t i = 0; i < pool_keys; i++)
        if (!pool[i].top) { /* a backend no longer used: take its place */
            snprintf(pool[i].key, sizeof(pool[i].key), "%s", key);
            return &pool[i];
        }
    if (pool_keys == UPCONN_BACKENDS_MAX)
        return NULL;
    struct upconn_idle *s = &pool[pool_keys++];
    snprintf(s->key, sizeof(s->key), "%s", key);
    return s;
}

/* Is anything waiting on an idle connection? Bytes after the end of the
 * last response (a backend that answered twice, or sent more than its
 * Content-Length) would be read as the next request's answer; EOF or an
 * error means the peer is gone. Either way the connection is not reused. */
static bool idle_unclean(const struct upconn *c)
{
    if (c->tls && cas_tls_pending(c->tls))
        return true;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    return r != 0;
}

static struct upconn *pool_take(const char *key)
{
    for (;;) {
        struct upconn *c = NULL;
        pthread_mutex_lock(&pool_lock);
        struct upconn_idle *s = pool_slot(key, false);
        if (s && s->top) {
            c = s->top;
            s->top = c->next;
            s->n--;
        }
        pthread_mutex_unlock(&pool_lock);
        if (!c || !idle_unclean(c))
            return c;
        upconn_destroy(c);
    }
}

static void pool_give(struct upconn *c)
{
    pthread_mutex_lock(&pool_lock);
    struct upconn_idle *s = pool_slot(c->key, true);
    if (s && s->n < UPCONN_IDLE_MAX) {
        c->next = s->top;
        s->top = c;
        s->n++;
        c = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    upconn_destroy(c);
}

static int set_rcvtimeo(struct upconn *c, unsigned ms)
{
    if (c->rcvtimeo_ms == ms)
        return 0;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    c->rcvtimeo_ms = ms;
    return 0;
}

/* Splits "http://host:port" or "https://host:port" into host and port
 * (*tls for https); -ENOTSUP for other schemes and shapes. */
static int split_url(const char *base, char *host, size_t hostlen, char *port, size_t portlen,
                     const char **hostport, bool *tls)
{
    *tls = !strncmp(base, "https://", 8);
    if (!*tls && strncmp(base, "http://", 7) != 0)
        return -ENOTSUP;
    const char *hp = base + (*tls ? 8 : 7);
    *hostport = hp;
    const char *colon = strrchr(hp, ':');
    const char *h = hp;
    size_t hl;
    if (*hp == '[') {
        const char *rb = strchr(hp, ']');
        if (!rb || rb[1] != ':')
            return -ENOTSUP;
        h = hp + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        if (!colon)
            return -ENOTSUP;
        hl = (size_t)(colon - hp);
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen || strchr(colon + 1, '/'))
        return -ENOTSUP;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t salen, unsigned ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int rc = connect(fd, sa, salen);
    if (rc < 0 && errno != EINPROGRESS)
        return -errno;
    if (rc < 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int pr;
        do
            pr = poll(&p, 1, (int)ms);
        while (pr < 0 && errno == EINTR);
        if (pr == 0)
            return -ETIMEDOUT;
        if (pr < 0)
            return -errno;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            return -errno;
        if (soerr)
            return -soerr;
    }
    if (fcntl(fd, F_SETFL, fl) < 0)
        return -errno;
    return 0;
}

/* A new connection to base (an https:// one with a TLS session over
 * credentials cl, its handshake to come: upconn_handshake); NULL with err. */
static struct upconn *upconn_connect(const char *base, const struct balancer_options *opt,
                                     struct cas_tls_client *cl, char *err, size_t errlen)
{
    char host[256], port[16];
    const char *hostport;
    bool tls;
    if (split_url(base, host, sizeof(host), port, sizeof(port), &hostport, &tls) < 0 ||
        (tls && !cl)) {
        snprintf(err, errlen, "unsupported backend url %s", base);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0 || !ai) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return NULL;
    }
    int fd = -1, rc = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        rc = connect_timeout(fd, a->ai_addr, a->ai_addrlen, opt->connect_timeout_ms);
        if (rc == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        if (rc == -ETIMEDOUT)
            snprintf(err, errlen, "connect to %s: no answer in %u ms", hostport,
                     opt->connect_timeout_ms);
        else
            snprintf(err, errlen, "connect to %s: %s", hostport, strerror(-rc));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    struct timeval tv = {.tv_sec = opt->io_timeout_ms / 1000,
                         .tv_usec = (suseconds_t)(opt->io_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct upconn *c = malloc(sizeof(*c));
    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = fd;
    c->tls = NULL;
    c->cl = NULL;
    c->handshaking = false;
    c->rcvtimeo_ms = 0;
    c->budgeted = false;
    snprintf(c->key, sizeof(c->key), "%s%s", tls ? "https://" : "", hostport);
    if (tls) {
        if (cas_tls_session_new(cl, fd, host, &c->tls, err, errlen) < 0) {
            upconn_destroy(c);
            return NULL;
        }
        c->cl = cas_tls_client_ref(cl);
        c->handshaking = true;
    }
    return c;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Sends all of c's bytes [p, p+len): plain, or in TLS. 0 or -errno. */
static int conn_send_all(struct upconn *c, const char *p, size_t len)
{
    return c->tls ? cas_tls_send_all(c->tls, p, len) : send_all(c->fd, p, len);
}

/* recv into buf[end..]; > 0 bytes, 0 at EOF, -errno (-ETIMEDOUT on timeout). */
static ssize_t recv_some(struct upconn *c, char *buf, size_t max)
{
    if (c->tls) {
        ssize_t r = cas_tls_recv(c->tls, buf, max, false);
        return r == -EAGAIN ? -ETIMEDOUT : r;
    }
    for (;;) {
        ssize_t r = recv(c->fd, buf, max, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    }
}

/* Value of header line [p, e) named name (lower case), or NULL. */
static const char *header_value(const char *p, const char *e, const char *name, size_t nl,
                                size_t *vlen)
{
    if ((size_t)(e - p) <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
        return NULL;
    const char *v = p + nl + 1;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    const char *ve = e;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    *vlen = (size_t)(ve - v);
    return v;
}

/* Does the comma-separated list v[0..vl) hold token tok (any case)? */
static bool has_token(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok);
    const char *e = v + vl;
    while (v < e) {
        while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < e && *v != ',')
            v++;
        const char *te = v;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - s) == tl && !strncasecmp(s, tok, tl))
            return true;
    }
    return false;
}

size_t upstream_head_end(const char *buf, size_t len)
{
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf)));) {
        size_t i = (size_t)(p - buf) + 1;
        if (i < len && buf[i] == '\n')
            return i + 1;
        if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
            return i + 2;
        p++;
    }
    return 0;
}

int upstream_parse_head(const char *buf, size_t hlen, bool is_head, struct bstream_head *head,
                        struct upstream_framing *fr, char *err, size_t errlen)
{
    const char *p = buf, *end = buf + hlen;
    memset(fr, 0, sizeof(*fr));
    head->content_range[0] = '\0';
    head->content_type[0] = '\0';
    head->etag[0] = '\0';
    head->content_length = -1;
    head->chunked = false;
    head->gc_id = 0;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    /* "HTTP/1.x NNN" then a space or the end of the line. */
    if (!eol || eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9' || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n')) {
        snprintf(err, errlen, "malformed status line");
        return -EPROTO;
    }
    bool http10 = p[7] == '0';
    long status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status == 101) {
        snprintf(err, errlen, "unexpected 101 Switching Protocols");
        return -EPROTO;
    }
    fr->informational = status < 200;
    bool close_conn = false, ka = false;
    for (p = eol + 1; p < end;) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le)
            le = end;
        const char *e = le;
        if (e > p && e[-1] == '\r')
            e--;
        if (e == p)
            break; /* the empty line that ends the head */
        if (*p == ' ' || *p == '\t') {
            /* obs-fold (RFC 9112 5.2): a line continuing the previous header;
             * a value could hide there, so the answer is not trusted. */
            snprintf(err, errlen, "folded header line");
            return -EPROTO;
        }
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (!colon || colon == p || colon[-1] == ' ' || colon[-1] == '\t') {
            snprintf(err, errlen, "malformed header line");
            return -EPROTO;
        }
        size_t vl;
        const char *v;
        if ((v = header_value(p, e, "content-length", 14, &vl))) {
            int64_t n = 0;
            if (vl == 0 || vl > 18) {
                snprintf(err, errlen, "bad Content-Length");
                return -EPROTO;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    snprintf(err, errlen, "bad Content-Length \"%.*s\"", (int)(vl < 40 ? vl : 40),
                             v);
                    return -EPROTO;
                }
                n = n * 10 + (v[i] - '0');
            }
            /* RFC 9112 6.3: differing Content-Lengths make the message
             * unreadable; the same value twice is harmless. */
            if (head->content_length >= 0 && head->content_length != n) {
                snprintf(err, errlen,
                         "conflicting Content-Length headers (%" PRId64 ", %" PRId64 ")",
                         head->content_length, n);
                return -EPROTO;
            }
            head->content_length = n;
        } else if ((v = header_value(p, e, "content-range", 13, &vl))) {
            snprintf(head->content_range, sizeof(head->content_range), "%.*s", (int)vl, v);
        } else if ((v = header_value(p, e, "content-type", 12, &vl))) {
            snprintf(head->content_type, sizeof(head->content_type), "%.*s", (int)vl, v);
        } else if ((v = header_value(p, e, "etag", 4, &vl))) {
            snprintf(head->etag, sizeof(head->etag), "%.*s", (int)vl, v);
        } else if ((v = header_value(p, e, "transfer-encoding", 17, &vl))) {
            head->chunked = true; /* any transfer coding: a framing not read here */
        } else if ((v = header_value(p, e, "x-cas-gc", 8, &vl))) {
            /* The value's own bytes only: the head is not NUL-terminated,
             * and strtoull would skip the line end into the next line. */
            uint64_t id;
            head->gc_id = cas_parse_u64_n(v, vl, &id) == 0 ? id : 0;
        } else if ((v = header_value(p, e, "connection", 10, &vl))) {
            if (has_token(v, vl, "close"))
                close_conn = true;
            if (has_token(v, vl, "keep-alive"))
                ka = true;
        }
        p = le + 1;
    }
    if (fr->informational)
        return 0;
    head->status = status;
    /* HTTP/1.1 keeps the connection unless told to close; 1.0 closes it
     * unless told to keep it. */
    fr->keep_alive = !close_conn && (!http10 || ka);
    if (is_head || status == 204 || status == 304) {
        fr->body = 0;
    } else if (head->chunked) {
        /* The body's framing is not read here: the answer is refused by
         * the caller and the connection closed after it. */
        fr->until_close = true;
        fr->keep_alive = false;
    } else if (head->content_length >= 0) {
        fr->body = head->content_length;
    } else {
        fr->until_close = true;
        fr->keep_alive = false;
    }
    return 0;
}

/* Parses the response head in c->buf[0..hlen) into head and c's framing. */
static int parse_head(struct upconn *c, size_t hlen, bool is_head, struct bstream_head *head,
                      bool *informational, char *err, size_t errlen)
{
    struct upstream_framing fr;
    int rc = upstream_parse_head(c->buf, hlen, is_head, head, &fr, err, errlen);
    if (rc < 0)
        return rc;
    *informational = fr.informational;
    if (fr.informational)
        return 0;
    c->keep_alive = fr.keep_alive;
    c->until_close = fr.until_close;
    c->left = fr.until_close ? 0 : fr.body;
    return 0;
}

static int upconn_handshake(struct upconn *c, bool wait, unsigned first_byte_ms, char *err,
                            size_t errlen);

/* Sends c's request (on a TLS connection whose handshake is not done, the
 * handshake begins, and the request goes once it is done:
 * upconn_handshake). */
static int exchange_send(struct upconn *c, unsigned first_byte_ms, char *err, size_t errlen)
{
    c->start = c->end = 0;
    c->failed = false;
    c->got_bytes = false;
    int rc = set_rcvtimeo(c, first_byte_ms);
    if (rc == 0 && c->handshaking) {
        rc = upconn_handshake(c, false, first_byte_ms, err, errlen);
        return rc < 0 ? rc : 0;
    }
    if (rc == 0)
        rc = conn_send_all(c, c->req, c->reqlen);
    if (rc < 0)
        snprintf(err, errlen, "sending the request to %s: %s", c->key,
                 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
    return rc;
}

/* Takes a complete response head from the start of c's buffer, if there
 * is one (informational answers are dropped on the way): 1 with head
 * filled and the head gone from the buffer, 0 when the head is not complete
 * yet, -EPROTO with err when it is malformed or too long. */
static int head_take(struct upconn *c, struct bstream_head *head, char *err, size_t errlen)
{
    for (;;) {
        size_t hlen = upstream_head_end(c->buf, c->end);
        if (!hlen) {
            if (c->end == sizeof(c->buf)) {
                snprintf(err, errlen, "%s: response head too long", c->key);
                return -EPROTO;
            }
            return 0;
        }
        bool info = false;
        char why[160];
        int rc = parse_head(c, hlen, c->is_head, head, &info, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "%s: malformed response head: %s", c->key, why);
            return rc;
        }
        /* Drop the head (and an informational response) from the buffer. */
        memmove(c->buf, c->buf + hlen, c->end - hlen);
        c->end -= hlen;
        if (info)
            continue;
        if (!c->until_close && (int64_t)c->end > c->left) {
            /* Bytes after the end of the answer (a backend that answered
             * twice, in the same write): the answer is taken (its body is
             * checked against the key like any other), the rest dropped,
             * and the connection is never used again. */
            c->end = (size_t)c->left;
            c->keep_alive = false;
        }
        return 1;
    }
}

/*
 * Drives the TLS handshake of c as far as it goes; when it is done, sends
 * the request that waited for it. With wait, polls for it until
 * first_byte_ms after the request's start (a backend that accepts and never
 * shakes hands costs what one that never answers costs); without, returns
 * 0 when it needs the socket (poll upconn_events). 1 done, -ETIMEDOUT,
 * -EPROTO (certificate refused), -ECONNRESET, -EIO; each with err.
 */
static int upconn_handshake(struct upconn *c, bool wait, unsigned first_byte_ms, char *err,
                            size_t errlen)
{
    while (c->handshaking) {
        int rc = cas_tls_handshake(c->tls, err, errlen);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            c->handshaking = false;
            break;
        }
        if (!wait)
            return 0;
        uint64_t now = cas_now_ns(), end = c->started_ns + (uint64_t)first_byte_ms * 1000000;
        if (now >= end) {
            snprintf(err, errlen, "%s: TLS handshake not done in %u ms", c->key, first_byte_ms);
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = c->fd, .events = cas_tls_session_events(c->tls)};
        if (poll(&p, 1, (int)((end - now + 999999) / 1000000)) < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return -EIO;
        }
    }
    int rc = conn_send_all(c, c->req, c->reqlen);
    if (rc < 0) {
        snprintf(err, errlen, "sending the request to %s: %s", c->key,
                 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return rc == -ETIMEDOUT ? rc : -EIO;
    }
    return 1;
}

/* Reads the response head to c's request, at most first_byte_ms after it
 * was sent. *nothing is set when the connection gave no byte of response
 * (a stale pooled one). */
static int exchange_recv(struct upconn *c, unsigned first_byte_ms, struct bstream_head *head,
                         bool *nothing, char *err, size_t errlen)
{
    *nothing = true;
    uint64_t t0 = c->started_ns;
    if (c->handshaking) {
        int rc = upconn_handshake(c, true, first_byte_ms, err, errlen);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        ssize_t r = recv_some(c, c->buf + c->end, sizeof(c->buf) - c->end);
        if (r <= 0) {
            if (r == -ETIMEDOUT)
                snprintf(err, errlen, "%s: no response in %u ms", c->key, first_byte_ms);
            else if (r == 0)
                snprintf(err, errlen, "%s closed the connection before answering", c->key);
            else
                snprintf(err, errlen, "receiving from %s: %s", c->key, strerror((int)-r));
            return r == 0 ? -ECONNRESET : (int)r;
        }
        *nothing = false;
        c->end += (size_t)r;
        int rc = head_take(c, head, err, errlen);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        if ((cas_now_ns() - t0) / 1000000 > first_byte_ms) {
            snprintf(err, errlen, "%s: no complete response head in %u ms", c->key,
                     first_byte_ms);
            return -ETIMEDOUT;
        }
    }
}

int upconn_start(struct balancer *bal, const struct view *v, const char *base, const char *path,
                 const char *method, const char *range, struct upconn **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    char host[256], port[16];
    const char *hostport;
    bool tls;
    struct cas_tls_client *cl = v->conf ? v->conf->tls : NULL;
    if (split_url(base, host, sizeof(host), port, sizeof(port), &hostport, &tls) < 0 ||
        (tls && !cl)) {
        snprintf(err, errlen, "not an http:// or https:// backend");
        return -ENOTSUP;
    }
    char req[2048 + CAS_TOKEN_MAX]; /* request line, Host, token, Range */
    size_t len = 0;
    bool fits = true;
#define APPEND(str)                                                                           \
    do {                                                                                      \
        size_t l_ = strlen(str);                                                              \
        if (len + l_ < sizeof(req)) {                                                         \
            memcpy(req + len, str, l_);                                                       \
            len += l_;                                                                        \
        } else {                                                                              \
            fits = false;                                                                     \
        }                                                                                     \
    } while (0)
    APPEND(method);
    APPEND(" ");
    APPEND(path);
    APPEND(" HTTP/1.1\r\nHost: ");
    APPEND(hostport);
    APPEND("\r\n");
    if (v->token) {
        APPEND("Authorization: Bearer ");
        APPEND(v->token);
        APPEND("\r\n");
    }
    if (range) {
        APPEND("Range: ");
        APPEND(range);
        APPEND("\r\n");
    }
    APPEND("\r\n");
#undef APPEND
    if (!fits) {
        snprintf(err, errlen, "request too long");
        return -EINVAL;
    }
    const struct balancer_options *opt = &bal->opt;
    uint64_t t0 = cas_now_ns();
    char key[sizeof(((struct upconn *)0)->key)];
    snprintf(key, sizeof(key), "%s%s", tls ? "https://" : "", hostport);
    struct upconn *c = pool_take(key);
    for (;;) {
        bool reused = c != NULL;
        if (!c && !(c = upconn_connect(base, opt, cl, err, errlen)))
            return -EIO;
        c->io_timeout_ms = opt->io_timeout_ms;
        c->base = base;
        c->reused = reused;
        c->is_head = !strcmp(method, "HEAD");
        c->started_ns = t0;
        c->reqlen = len;
        memcpy(c->req, req, len);
        int rc = exchange_send(c, opt->first_byte_timeout_ms, err, errlen);
        if (rc == 0) {
            *out = c;
            return 0;
        }
        upconn_destroy(c);
        c = NULL;
        if (!reused || rc == -ETIMEDOUT)
            return rc == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
}

int upconn_fd(const struct upconn *c)
{
    return c->fd;
}

short upconn_events(const struct upconn *c)
{
    return c->handshaking ? cas_tls_session_events(c->tls) : POLLIN;
}

bool upconn_ready(const struct upconn *c)
{
    return c->tls && !c->handshaking && cas_tls_pending(c->tls) > 0;
}

int upconn_finish(struct balancer *bal, struct upconn *c, struct upconn **out,
                  struct bstream_head *head, char *err, size_t errlen)
{
    *out = NULL;
    memset(head, 0, sizeof(*head));
    head->content_length = -1;
    const struct balancer_options *opt = &bal->opt;
    /* A pooled connection the peer has closed meanwhile gives nothing back:
     * then, and only then, the request goes again on a new one. */
    for (;;) {
        bool nothing = true;
        int rc = exchange_recv(c, opt->first_byte_timeout_ms, head, &nothing, err, errlen);
        if (rc == 0) {
            *out = c;
            return 0;
        }
        bool retry = c->reused && nothing && rc != -ETIMEDOUT;
        struct upconn *old = c;
        c = NULL;
        if (retry && (c = upconn_connect(old->base, opt, old->cl, err, errlen))) {
            c->io_timeout_ms = old->io_timeout_ms;
            c->base = old->base;
            c->reused = false;
            c->is_head = old->is_head;
            c->started_ns = old->started_ns;
            c->reqlen = old->reqlen;
            memcpy(c->req, old->req, old->reqlen);
            if (exchange_send(c, opt->first_byte_timeout_ms, err, errlen) < 0) {
                upconn_destroy(c);
                c = NULL;
            }
        }
        upconn_destroy(old);
        if (!c)
            return rc == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
}

void upconn_abandon(struct upconn *c)
{
    upconn_destroy(c);
}

/* recv without waiting: > 0 bytes, 0 at EOF, -EAGAIN when nothing has
 * come, -errno. */
static ssize_t recv_nowait(struct upconn *c, char *buf, size_t max)
{
    if (c->tls)
        return cas_tls_recv(c->tls, buf, max, true);
    for (;;) {
        ssize_t r = recv(c->fd, buf, max, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* A receive on c's body gave n <= 0 (not a clean end of an until-close
 * body): marks c failed and says why in err and c->why. -EIO. */
static int body_recv_failed(struct upconn *c, ssize_t n, char *err, size_t errlen)
{
    c->failed = true;
    if (n == 0)
        snprintf(err, errlen, "%s closed the connection with %" PRId64 " bytes to come", c->key,
                 c->left);
    else
        snprintf(err, errlen, "receiving from %s: %s", c->key, strerror((int)-n));
    snprintf(c->why, sizeof(c->why), "%s", err);
    return -EIO;
}

/* The pooled connection c gave an EOF or an error before any byte of its
 * answer (the peer closed it while it was idle): the request goes again on
 * a new connection, which takes the old one's place in c. */
static int upconn_redial(struct balancer *bal, struct upconn *c, char *err, size_t errlen)
{
    struct upconn *n = upconn_connect(c->base, &bal->opt, c->cl, err, errlen);
    if (!n)
        return -EIO;
    close(c->fd);
    c->fd = n->fd;
    c->rcvtimeo_ms = n->rcvtimeo_ms;
    cas_tls_session_free(c->tls);
    c->tls = n->tls; /* over the same fd */
    c->handshaking = n->handshaking;
    n->tls = NULL;
    n->fd = -1;
    upconn_destroy(n);
    c->reused = false;
    int rc = exchange_send(c, bal->opt.first_byte_timeout_ms, err, errlen);
    return rc == -ETIMEDOUT ? -ETIMEDOUT : rc < 0 ? -EIO : 0;
}

int upconn_head_step(struct balancer *bal, struct upconn *c, struct bstream_head *head, char *err,
                     size_t errlen)
{
    if (c->handshaking) {
        int rc = upconn_handshake(c, false, 0, err, errlen);
        if (rc <= 0)
            return rc;
    }
    for (;;) {
        ssize_t r = recv_nowait(c, c->buf + c->end, sizeof(c->buf) - c->end);
        if (r == -EAGAIN)
            return 0;
        if (r <= 0) {
            if (c->reused && !c->got_bytes)
                return upconn_redial(bal, c, err, errlen);
            if (r == 0)
                snprintf(err, errlen, "%s closed the connection %s", c->key,
                         c->got_bytes ? "in the middle of the response head" : "before answering");
            else
                snprintf(err, errlen, "receiving from %s: %s", c->key, strerror((int)-r));
            return r == 0 ? -ECONNRESET : (int)r;
        }
        c->got_bytes = true;
        c->end += (size_t)r;
        int rc = head_take(c, head, err, errlen);
        if (rc != 0)
            return rc;
    }
}

ssize_t upconn_prefetch_nowait(struct upconn *c, char *err, size_t errlen)
{
    if (c->end > c->start)
        return (ssize_t)(c->end - c->start);
    if (c->failed) {
        snprintf(err, errlen, "%s", c->why);
        return -EIO;
    }
    if (!c->until_close && c->left == 0)
        return 0;
    size_t max = sizeof(c->buf);
    if (!c->until_close && (int64_t)max > c->left)
        max = (size_t)c->left;
    ssize_t n = recv_nowait(c, c->buf, max);
    if (n == -EAGAIN)
        return -EAGAIN;
    if (n == 0 && c->until_close)
        return 0;
    if (n <= 0)
        return body_recv_failed(c, n, err, errlen);
    /* Buffered, not yet read: c->left still counts them. */
    c->start = 0;
    c->end = (size_t)n;
    return n;
}

ssize_t upconn_read_nowait(struct upconn *c, char *buf, size_t max, char *err, size_t errlen)
{
    if (c->failed || c->end > c->start || (!c->until_close && c->left == 0))
        return upconn_read(c, buf, max, err, errlen); /* never waits */
    if (!c->until_close && (int64_t)max > c->left)
        max = (size_t)c->left;
    if (max == 0)
        return 0;
    ssize_t n = recv_nowait(c, buf, max);
    if (n == -EAGAIN)
        return -EAGAIN;
    if (n == 0 && c->until_close)
        return 0;
    if (n <= 0)
        return body_recv_failed(c, n, err, errlen);
    if (!c->until_close)
        c->left -= n;
    return n;
}

int upconn_open(struct balancer *bal, const struct view *v, const char *base, const char *path,
                const char *method, const char *range, struct upconn **out,
                struct bstream_head *head, char *err, size_t errlen)
{
    *out = NULL;
    memset(head, 0, sizeof(*head));
    head->content_length = -1;
    struct upconn *c;
    int rc = upconn_start(bal, v, base, path, method, range, &c, err, errlen);
    if (rc < 0)
        return rc;
    return upconn_finish(bal, c, out, head, err, errlen);
}

/* The read budget of c's body is spent: c fails with -ETIMEDOUT. */
static ssize_t deadline_passed(struct upconn *c, char *err, size_t errlen)
{
    c->failed = true;
    snprintf(err, errlen, "%s: body not complete within the read deadline (%" PRId64
             " bytes to come)", c->key, c->left);
    snprintf(c->why, sizeof(c->why), "%s", err);
    return -ETIMEDOUT;
}

ssize_t upconn_read(struct upconn *c, char *buf, size_t max, char *err, size_t errlen)
{
    if (c->failed) {
        snprintf(err, errlen, "%s", c->why);
        return -EIO;
    }
    if (!c->until_close && c->left == 0)
        return 0;
    if (!c->until_close && (int64_t)max > c->left)
        max = (size_t)c->left;
    if (max == 0)
        return 0;
    ssize_t n;
    if (c->end > c->start) {
        n = (ssize_t)(c->end - c->start);
        if ((size_t)n > max)
            n = (ssize_t)max;
        memcpy(buf, c->buf + c->start, (size_t)n);
        c->start += (size_t)n;
        if (c->start == c->end)
            c->start = c->end = 0;
    } else {
        unsigned wait_ms = c->io_timeout_ms;
        if (c->budgeted) {
            if (c->budget_ns == 0) {
                return deadline_passed(c, err, errlen);
            }
            uint64_t left_ms = c->budget_ns / 1000000 + 1;
            if (left_ms < wait_ms)
                wait_ms = (unsigned)left_ms;
        }
        if (set_rcvtimeo(c, wait_ms) < 0) {
            c->failed = true;
            snprintf(err, errlen, "setsockopt: %s", strerror(errno));
            snprintf(c->why, sizeof(c->why), "%s", err);
            return -EIO;
        }
        uint64_t t0 = c->budgeted ? cas_now_ns() : 0;
        n = recv_some(c, buf, max);
        if (c->budgeted) {
            uint64_t waited = cas_now_ns() - t0;
            c->budget_ns = waited >= c->budget_ns ? 0 : c->budget_ns - waited;
            if (n == -ETIMEDOUT && c->budget_ns == 0) {
                return deadline_passed(c, err, errlen);
            }
        }
        if (n == 0 && c->until_close)
            return 0;
        if (n <= 0) {
            c->failed = true;
            if (n == 0)
                snprintf(err, errlen, "%s closed the connection with %" PRId64 " bytes to come",
                         c->key, c->left);
            else if (n == -ETIMEDOUT)
                snprintf(err, errlen, "%s: no data for %u ms", c->key, wait_ms);
            else
                snprintf(err, errlen, "receiving from %s: %s", c->key, strerror((int)-n));
            snprintf(c->why, sizeof(c->why), "%s", err);
            return n == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
        }
    }
    if (!c->until_close)
        c->left -= n;
    return n;
}

void upconn_set_read_budget(struct upconn *c, uint64_t budget_ns)
{
    c->budgeted = budget_ns != 0;
    c->budget_ns = budget_ns;
}

void upconn_close(struct upconn *c)
{
    if (!c)
        return;
    /* The short body of an answer not taken (a 404's JSON, say) is read
     * and dropped, so that the connection can serve the next request. */
    if (!c->failed && c->keep_alive && !c->until_close && c->left > 0 &&
        c->left <= UPCONN_BUF) {
        char sink[UPCONN_BUF];
        char err[64];
        while (c->left > 0 && upconn_read(c, sink, sizeof(sink), err, sizeof(err)) > 0)
            ;
    }
    if (c->failed || c->until_close || !c->keep_alive || c->left != 0 || c->end != c->start) {
        upconn_destroy(c);
        return;
    }
    c->start = c->end = 0;
    c->budgeted = false;
    pool_give(c);
}
