/*
 * upstream.c - the balancer's small requests to its backends.
 *
 * Probes, GC fan-out, capacity and the like are small JSON exchanges sent to
 * several backends at once. upstream_run drives them in parallel on one
 * curl multi handle and collects each status and body. upstream_easy is the
 * one place that configures a handle towards a backend (token, timeouts),
 * also used by the streaming paths (bstream.c, fanout.c).
 *
 * Object reads (GET/HEAD from proxy.c) do not go through libcurl: upconn_*
 * at the end of this file speaks HTTP/1.1 itself on pooled keep-alive
 * connections, one blocking send and recv per small object.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "log.h"
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
        char auth[CAS_TOKEN_MAX + 32]; /* never cut: the token is at most CAS_TOKEN_MAX */
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
    bool keep_alive;   /* the peer lets us send another request */
    bool failed;
    bool until_close;  /* body without a length: ends when the peer closes */
    unsigned rcvtimeo_ms; /* SO_RCVTIMEO now set on fd */
    unsigned io_timeout_ms;
    int64_t left;      /* body bytes still to come (when !until_close) */
    size_t start, end; /* buffered bytes buf[start..end) */
    struct upconn *next;
    char why[200];     /* what failed, once failed */
    char key[256];     /* host:port */
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

static struct upconn *pool_take(const char *key)
{
    struct upconn *c = NULL;
    pthread_mutex_lock(&pool_lock);
    struct upconn_idle *s = pool_slot(key, false);
    if (s && s->top) {
        c = s->top;
        s->top = c->next;
        s->n--;
    }
    pthread_mutex_unlock(&pool_lock);
    return c;
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

/* Splits "http://host:port" into host and port; -ENOTSUP for other schemes. */
static int split_url(const char *base, char *host, size_t hostlen, char *port, size_t portlen,
                     const char **hostport)
{
    if (strncmp(base, "http://", 7) != 0)
        return -ENOTSUP;
    const char *hp = base + 7;
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

static struct upconn *upconn_connect(const char *base, const struct balancer_options *opt,
                                     char *err, size_t errlen)
{
    char host[256], port[16];
    const char *hostport;
    if (split_url(base, host, sizeof(host), port, sizeof(port), &hostport) < 0) {
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
    c->rcvtimeo_ms = 0;
    snprintf(c->key, sizeof(c->key), "%s", hostport);
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

/* recv into buf[end..]; > 0 bytes, 0 at EOF, -errno (-ETIMEDOUT on timeout). */
static ssize_t recv_some(struct upconn *c, char *buf, size_t max)
{
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

/*
 * Parses the response head in c->buf[0..hlen) into head. Returns 0, or
 * -ENOTSUP for a body this reader does not do (chunked), -EPROTO.
 */
static int parse_head(struct upconn *c, size_t hlen, bool is_head, struct bstream_head *head,
                      bool *informational)
{
    const char *p = c->buf, *end = c->buf + hlen;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0)
        return -EPROTO;
    bool http10 = p[7] == '0';
    long status = strtol(p + 9, NULL, 10);
    if (status < 100 || status > 999)
        return -EPROTO;
    *informational = status < 200;
    head->content_range[0] = '\0';
    head->content_type[0] = '\0';
    head->content_length = -1;
    head->gc_id = 0;
    bool chunked = false, close_conn = http10, ka = false;
    for (p = eol + 1; p < end;) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le)
            le = end;
        const char *e = le;
        if (e > p && e[-1] == '\r')
            e--;
        size_t vl;
        const char *v;
        char c0 = (char)(*p | 0x20); /* the headers read all start with c, t or x */
        if (c0 != 'c' && c0 != 't' && c0 != 'x') {
            p = le + 1;
            continue;
        }
        if ((v = header_value(p, e, "content-length", 14, &vl))) {
            char num[32];
            if (vl == 0 || vl >= sizeof(num))
                return -EPROTO;
            memcpy(num, v, vl);
            num[vl] = '\0';
            char *ne;
            errno = 0;
            long long n = strtoll(num, &ne, 10);
            if (errno || *ne || n < 0)
                return -EPROTO;
            head->content_length = n;
        } else if ((v = header_value(p, e, "content-range", 13, &vl))) {
            snprintf(head->content_range, sizeof(head->content_range), "%.*s", (int)vl, v);
        } else if ((v = header_value(p, e, "content-type", 12, &vl))) {
            snprintf(head->content_type, sizeof(head->content_type), "%.*s", (int)vl, v);
        } else if ((v = header_value(p, e, "transfer-encoding", 17, &vl))) {
            if (!(vl == 8 && !strncasecmp(v, "identity", 8)))
                chunked = true;
        } else if ((v = header_value(p, e, "x-cas-gc", 8, &vl))) {
            head->gc_id = strtoull(v, NULL, 10);
        } else if ((v = header_value(p, e, "connection", 10, &vl))) {
            if (memmem(v, vl, "close", 5) || memmem(v, vl, "Close", 5))
                close_conn = true;
            if (memmem(v, vl, "eep-alive", 9))
                ka = true;
        }
        p = le + 1;
    }
    if (*informational)
        return 0;
    head->status = status;
    c->keep_alive = !close_conn || (http10 && ka);
    c->until_close = false;
    if (is_head || status == 204 || status == 304) {
        c->left = 0;
    } else if (chunked) {
        return -ENOTSUP;
    } else if (head->content_length >= 0) {
        c->left = head->content_length;
    } else {
        c->left = 0;
        c->until_close = true;
        c->keep_alive = false;
    }
    return 0;
}

/* Sends the request on c and reads the response head. *nothing is set when
 * the connection gave no byte of response (a stale pooled one). */
static int exchange(struct upconn *c, const char *req, size_t reqlen, bool is_head,
                    unsigned first_byte_ms, struct bstream_head *head, bool *nothing, char *err,
                    size_t errlen)
{
    *nothing = true;
    c->start = c->end = 0;
    c->failed = false;
    int rc = set_rcvtimeo(c, first_byte_ms);
    if (rc == 0)
        rc = send_all(c->fd, req, reqlen);
    if (rc < 0) {
        snprintf(err, errlen, "sending the request to %s: %s", c->key,
                 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return rc;
    }
    uint64_t t0 = cas_now_ns();
    size_t scanned = 0;
    for (;;) {
        if (c->end == sizeof(c->buf)) {
            snprintf(err, errlen, "%s: response head too long", c->key);
            return -EPROTO;
        }
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
        for (;;) {
            size_t from = scanned > 3 ? scanned - 3 : 0;
            char *hend = memmem(c->buf + from, c->end - from, "\r\n\r\n", 4);
            scanned = c->end;
            if (!hend)
                break;
            size_t hlen = (size_t)(hend - c->buf) + 4;
            bool info = false;
            rc = parse_head(c, hlen, is_head, head, &info);
            if (rc == -EPROTO) {
                snprintf(err, errlen, "%s: malformed response head", c->key);
                return rc;
            }
            if (rc < 0)
                return rc;
            /* Drop the head (and an informational response) from the buffer. */
            memmove(c->buf, c->buf + hlen, c->end - hlen);
            c->end -= hlen;
            scanned = 0;
            if (info)
                continue;
            if (!c->until_close && (int64_t)c->end > c->left) {
                snprintf(err, errlen, "%s: more bytes than the response holds", c->key);
                return -EPROTO;
            }
            return 0;
        }
        if ((cas_now_ns() - t0) / 1000000 > first_byte_ms) {
            snprintf(err, errlen, "%s: no complete response head in %u ms", c->key,
                     first_byte_ms);
            return -ETIMEDOUT;
        }
    }
}

int upconn_open(struct balancer *bal, const struct view *v, const char *base, const char *path,
                const char *method, const char *range, struct upconn **out,
                struct bstream_head *head, char *err, size_t errlen)
{
    *out = NULL;
    memset(head, 0, sizeof(*head));
    head->content_length = -1;
    char host[256], port[16];
    const char *hostport;
    if (split_url(base, host, sizeof(host), port, sizeof(port), &hostport) < 0) {
        snprintf(err, errlen, "not an http:// backend");
        return -ENOTSUP;
    }
    bool is_head = !strcmp(method, "HEAD");
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
    /* A pooled connection the peer has closed meanwhile gives nothing back:
     * then, and only then, the request goes again on a new one. */
    struct upconn *c = pool_take(hostport);
    for (;;) {
        bool reused = c != NULL;
        if (!c && !(c = upconn_connect(base, opt, err, errlen)))
            return -EIO;
        c->io_timeout_ms = opt->io_timeout_ms;
        bool nothing = true;
        int rc = exchange(c, req, len, is_head, opt->first_byte_timeout_ms, head,
                          &nothing, err, errlen);
        if (rc == 0) {
            *out = c;
            return 0;
        }
        upconn_destroy(c);
        c = NULL;
        if (rc == -ENOTSUP) {
            snprintf(err, errlen, "chunked response");
            return -ENOTSUP;
        }
        if (!(reused && nothing && rc != -ETIMEDOUT))
            return rc == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
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
        if (set_rcvtimeo(c, c->io_timeout_ms) < 0) {
            c->failed = true;
            snprintf(err, errlen, "setsockopt: %s", strerror(errno));
            snprintf(c->why, sizeof(c->why), "%s", err);
            return -EIO;
        }
        n = recv_some(c, buf, max);
        if (n == 0 && c->until_close)
            return 0;
        if (n <= 0) {
            c->failed = true;
            if (n == 0)
                snprintf(err, errlen, "%s closed the connection with %" PRId64 " bytes to come",
                         c->key, c->left);
            else if (n == -ETIMEDOUT)
                snprintf(err, errlen, "%s: no data for %u ms", c->key, c->io_timeout_ms);
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
    pool_give(c);
}
