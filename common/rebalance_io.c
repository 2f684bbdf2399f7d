/*
 * rebalance_io.c - the rebalance engine's HTTP to backends, over libcurl's
 * easy interface: listings, HEAD/DELETE, the cluster probe, and copies.
 * Every handle is set up by the control layer (ctl.h: token, TLS, timeouts,
 * the stop flag), and its failures are told by it.
 *
 * A copy streams a GET from the source into a PUT on the target with
 * bounded memory: a helper thread runs the GET and writes the body into
 * one end of a socket pair; the PUT reads the other end. The socket
 * buffers are the only memory, and each side's back-pressure reaches the
 * other. If the GET fails half-way the socket closes early, the PUT's body
 * comes up short and the PUT is aborted: the target keeps nothing partial
 * (and would refuse a wrong body anyway: it checks the digest).
 *
 * The token bucket that limits the bandwidth is charged in the GET's write
 * callback, so TCP back-pressure slows the source down.
 */
#define _GNU_SOURCE
#include "rebalance.h"
#include "ctl.h"
#include "json.h"
#include "tls.h"
#include "token.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the token bucket --------------------------------------------------- */

struct rb_bucket {
    pthread_mutex_t lock;
    double rate;   /* bytes per second; 0: unlimited */
    double tokens; /* may go negative: a debt the taker sleeps off */
    double burst;
    uint64_t last_ns;
};

struct rb_bucket *rb_bucket_new(double bytes_per_s)
{
    struct rb_bucket *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    b->rate = bytes_per_s > 0 ? bytes_per_s : 0;
    b->burst = b->rate / 10 > 256 * 1024 ? b->rate / 10 : 256 * 1024; /* 0.1 s */
    b->tokens = b->burst;
    b->last_ns = now_ns();
    return b;
}

void rb_bucket_free(struct rb_bucket *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void rb_bucket_take(struct rb_bucket *b, uint64_t n, volatile int *stop)
{
    if (!b || b->rate <= 0)
        return;
    pthread_mutex_lock(&b->lock);
    uint64_t now = now_ns();
    b->tokens += (double)(now - b->last_ns) / 1e9 * b->rate;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_ns = now;
    b->tokens -= (double)n;
    double wait = b->tokens < 0 ? -b->tokens / b->rate : 0;
    pthread_mutex_unlock(&b->lock);
    /* Sleep off the debt in slices, so a stop request is seen soon. */
    while (wait > 0 && !(stop && *stop)) {
        double slice = wait > 0.1 ? 0.1 : wait;
        struct timespec ts = {(time_t)slice, (long)((slice - (double)(time_t)slice) * 1e9)};
        nanosleep(&ts, NULL);
        wait -= slice;
    }
}

/* ---- connections -------------------------------------------------------- */

struct rb_io {
    CURL *get, *put, *small;
    struct cas_ctl_opts ctl;     /* token, TLS, timeouts, stop: for every handle */
    struct curl_slist *get_hdrs; /* the lists cas_ctl_easy made for get and put */
    struct curl_slist *put_ctl_hdrs;
    struct curl_slist *put_hdrs; /* the token, no Expect, a content type */
    struct rb_bucket *bucket;
    volatile int *stop;
    uint64_t *streamed; /* bytes sent by copies, for progress */
};

void rb_io_count_bytes(struct rb_io *io, uint64_t *counter)
{
    io->streamed = counter;
}

/* The control layer's options for requests to c's backends: its token and
 * TLS texts (as the balancer: OPERATIONS.md "TLS"), connect_ms to connect,
 * stall_ms the longest a transfer may stall. */
static void ctl_opts(const struct rb_cluster *c, long connect_ms, long stall_ms, volatile int *stop,
                     struct cas_ctl_opts *out)
{
    *out = (struct cas_ctl_opts){
        .token = c->token,
        .ca_pem = c->ca_pem,
        .ca_len = c->ca_len,
        .cert_pem = c->cert_pem,
        .cert_len = c->cert_len,
        .key_pem = c->key_pem,
        .key_len = c->key_len,
        .connect_timeout_ms = connect_ms,
        .stall_ms = stall_ms,
        .user_agent = "ca-cas-rebalance/" CAS_VERSION,
        .stop = stop,
    };
}

struct rb_io *rb_io_new(const struct rb_cluster *c, const struct rb_options *o,
                        struct rb_bucket *bucket)
{
    struct rb_io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->get = curl_easy_init();
    io->put = curl_easy_init();
    io->small = curl_easy_init();
    if (c->token) {
        char auth[CAS_TOKEN_MAX + 32]; /* never cut: the token is at most CAS_TOKEN_MAX */
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        io->put_hdrs = curl_slist_append(io->put_hdrs, auth);
    }
    io->put_hdrs = curl_slist_append(io->put_hdrs, "Expect:");
    io->put_hdrs = curl_slist_append(io->put_hdrs, "Content-Type: application/octet-stream");
    io->bucket = bucket;
    io->stop = o->stop;
    ctl_opts(c, o->connect_timeout_ms ? (long)o->connect_timeout_ms : 2000,
             o->io_timeout_ms ? (long)o->io_timeout_ms : 30000, o->stop, &io->ctl);
    if (!io->get || !io->put || !io->small || !io->put_hdrs) {
        rb_io_free(io);
        return NULL;
    }
    return io;
}

void rb_io_free(struct rb_io *io)
{
    if (!io)
        return;
    if (io->get)
        curl_easy_cleanup(io->get);
    if (io->put)
        curl_easy_cleanup(io->put);
    if (io->small)
        curl_easy_cleanup(io->small);
    curl_slist_free_all(io->get_hdrs);
    curl_slist_free_all(io->put_ctl_hdrs);
    curl_slist_free_all(io->put_hdrs);
    free(io);
}

/* Sets e (io->get or io->put) up for a GET (or the PUT rb_io_copy makes
 * of it) of url through the control layer; the header list it makes lives
 * until the next request on e. Returns 0, or -ENOMEM with errbuf saying so. */
static int setup_ctl(struct rb_io *io, CURL *e, const char *url, char *errbuf)
{
    struct curl_slist **slot = e == io->put ? &io->put_ctl_hdrs : &io->get_hdrs;
    struct curl_slist *h = NULL;
    int rc = cas_ctl_easy(&e, &io->ctl, url, "GET", &h, errbuf);
    if (rc < 0) {
        snprintf(errbuf, CURL_ERROR_SIZE, "out of memory");
        return rc;
    }
    curl_slist_free_all(*slot);
    *slot = h;
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    return 0;
}

/* setup_ctl for a caller that cannot stop: on failure e is left with no
 * URL, so that its request fails at once with curl's error. */
static void setup(struct rb_io *io, CURL *e, const char *url, char *errbuf)
{
    if (setup_ctl(io, e, url, errbuf) < 0) {
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    }
}

/* "GET http://...: <curl's reason>" */
static void describe_curl(CURLcode rc, const char *errbuf, const char *what, const char *url,
                          char *err, size_t errlen)
{
    char why[CURL_ERROR_SIZE + 64];
    cas_ctl_describe_curl(rc, errbuf, why, sizeof(why));
    snprintf(err, errlen, "%s %s: %s", what, url, why);
}

/* The body of an error answer, kept short for the message. */
struct get_state {
    CURL *e;
    long status;
    int (*sink)(void *cls, const char *d, size_t n);
    void *cls;
    int sink_rc;
    char body[256];
    size_t body_len;
};

static size_t on_get_write(char *data, size_t size, size_t nmemb, void *cls)
{
    struct get_state *g = cls;
    size_t n = size * nmemb;
    if (!g->status)
        curl_easy_getinfo(g->e, CURLINFO_RESPONSE_CODE, &g->status);
    if (g->status != 200 || !g->sink) {
        size_t room = sizeof(g->body) - 1 - g->body_len;
        size_t k = n < room ? n : room;
        memcpy(g->body + g->body_len, data, k);
        g->body_len += k;
        g->body[g->body_len] = '\0';
        return n;
    }
    int rc = g->sink(g->cls, data, n);
    if (rc < 0) {
        g->sink_rc = rc;
        return 0;
    }
    return n;
}

/* "GET http://...: HTTP 404: <the answer's error>" (ctl.h). */
static void describe_status(long status, const char *body, const char *what, const char *url,
                            char *err, size_t errlen)
{
    char why[256];
    cas_ctl_describe_status(status, body, body ? strlen(body) : 0, why, sizeof(why));
    snprintf(err, errlen, "%s %s: %s", what, url, why);
}

long rb_io_get(struct rb_io *io, const char *url, int (*sink)(void *cls, const char *d, size_t n),
               void *cls, char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE];
    struct get_state g = {.e = io->get, .sink = sink, .cls = cls};
    if (setup_ctl(io, io->get, url, errbuf) < 0) {
        snprintf(err, errlen, "GET %s: out of memory", url);
        return -ENOMEM;
    }
    curl_easy_setopt(io->get, CURLOPT_WRITEFUNCTION, on_get_write);
    curl_easy_setopt(io->get, CURLOPT_WRITEDATA, &g);
    CURLcode rc = curl_easy_perform(io->get);
    if (!g.status)
        curl_easy_getinfo(io->get, CURLINFO_RESPONSE_CODE, &g.status);
    if (g.sink_rc < 0) {
        snprintf(err, errlen, "GET %s: %s", url, strerror(-g.sink_rc));
        return g.sink_rc;
    }
    if (rc != CURLE_OK) {
        if (io->stop && *io->stop) {
            snprintf(err, errlen, "GET %s: interrupted", url);
            return -EINTR;
        }
        describe_curl(rc, errbuf, "GET", url, err, errlen);
        return -EIO;
    }
    if (g.status != 200)
        describe_status(g.status, g.body, "GET", url, err, errlen);
    return g.status;
}

long rb_io_simple(struct rb_io *io, const char *method, const char *url, char *err, size_t errlen)
{
    struct cas_ctl_req r = {.url = url, .method = method};
    int rc = cas_ctl_perform(&io->small, &io->ctl, &r);
    long status = r.status;
    if (rc == -EINTR) {
        snprintf(err, errlen, "%s %s: interrupted", method, url);
        status = rc;
    } else if (rc < 0) {
        char why[CURL_ERROR_SIZE + 64];
        cas_ctl_describe(&r, why, sizeof(why));
        snprintf(err, errlen, "%s %s: %s", method, url, why);
        status = rc;
    }
    cas_ctl_req_free(&r);
    return status;
}

/* ---- copies ------------------------------------------------------------- */

struct copy {
    struct rb_io *io;
    char url[1200];
    int fd; /* the GET's end of the socket pair */
    long status;
    uint64_t got;
    char err[512];
};

static int send_all(void *cls, const char *d, size_t n)
{
    struct copy *cp = cls;
    rb_bucket_take(cp->io->bucket, n, cp->io->stop);
    while (n) {
        ssize_t w = send(cp->fd, d, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno; /* the PUT is gone */
        d += w;
        n -= (size_t)w;
        cp->got += (uint64_t)w;
        if (cp->io->streamed)
            __atomic_add_fetch(cp->io->streamed, (uint64_t)w, __ATOMIC_RELAXED);
    }
    return 0;
}

static void *copy_get_main(void *arg)
{
    struct copy *cp = arg;
    cp->status = rb_io_get(cp->io, cp->url, send_all, cp, cp->err, sizeof(cp->err));
    close(cp->fd); /* EOF for the PUT: complete or short */
    cp->fd = -1;
    return NULL;
}

struct put_state {
    int fd;
    uint64_t size, sent;
    bool short_body;
};

static size_t on_put_read(char *buf, size_t size, size_t nmemb, void *cls)
{
    struct put_state *p = cls;
    size_t max = size * nmemb;
    if (p->sent == p->size)
        return 0;
    if (p->size - p->sent < max)
        max = (size_t)(p->size - p->sent);
    ssize_t r;
    do
        r = recv(p->fd, buf, max, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        p->short_body = true;
        return CURL_READFUNC_ABORT; /* the source failed: the target keeps nothing */
    }
    p->sent += (uint64_t)r;
    return (size_t)r;
}

int rb_io_copy(struct rb_io *io, const char *src, const char *dst, const char *hex, uint64_t size,
               char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;
        snprintf(err, errlen, "socketpair: %s", strerror(e));
        return -e;
    }
    int bufsz = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
    struct copy *cp = calloc(1, sizeof(*cp));
    if (!cp) {
        close(sv[0]);
        close(sv[1]);
        return -ENOMEM;
    }
    cp->io = io;
    cp->fd = sv[0];
    snprintf(cp->url, sizeof(cp->url), "%s/objects/%s", src, hex);
    pthread_t t;
    int prc = pthread_create(&t, NULL, copy_get_main, cp);
    if (prc) {
        close(sv[0]);
        close(sv[1]);
        free(cp);
        snprintf(err, errlen, "cannot start a thread: %s", strerror(prc));
        return -prc;
    }

    char url[1200], errbuf[CURL_ERROR_SIZE];
    /* A copy between replicas: a target where a client deleted the key
     * refuses it (410), so a copy in flight never undoes a delete. */
    snprintf(url, sizeof(url), "%s/objects/%s?replica=1", dst, hex);
    struct put_state ps = {.fd = sv[1], .size = size};
    struct get_state resp = {.e = io->put};
    setup(io, io->put, url, errbuf);
    curl_easy_setopt(io->put, CURLOPT_HTTPHEADER, io->put_hdrs);
    curl_easy_setopt(io->put, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(io->put, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(io->put, CURLOPT_READFUNCTION, on_put_read);
    curl_easy_setopt(io->put, CURLOPT_READDATA, &ps);
    curl_easy_setopt(io->put, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    /* The answer's body, for the message (no sink: kept whatever the status). */
    curl_easy_setopt(io->put, CURLOPT_WRITEFUNCTION, on_get_write);
    curl_easy_setopt(io->put, CURLOPT_WRITEDATA, &resp);
    CURLcode rc = curl_easy_perform(io->put);
    close(sv[1]); /* a GET still sending gets EPIPE and stops */
    pthread_join(t, NULL);
    long status = 0;
    curl_easy_getinfo(io->put, CURLINFO_RESPONSE_CODE, &status);

    int ret = 0;
    if (cp->status != 200) {
        /* The source failed first: that is the story to tell. */
        snprintf(err, errlen, "%s", cp->err[0] ? cp->err : "GET failed");
        ret = cp->status == 404 ? -ENOENT : -EIO;
    } else if (rc != CURLE_OK && !(status >= 400 && ps.short_body == false)) {
        if (io->stop && *io->stop) {
            snprintf(err, errlen, "PUT %s: interrupted", url);
            ret = -EINTR;
        } else {
            describe_curl(rc, errbuf, "PUT", url, err, errlen);
            ret = -EIO;
        }
    } else if (status == 410) {
        describe_status(status, resp.body, "PUT", url, err, errlen);
        ret = -ECANCELED;
    } else if (status != 200 && status != 201) {
        describe_status(status, resp.body, "PUT", url, err, errlen);
        ret = -EIO;
    } else if (cp->got != size) {
        snprintf(err, errlen, "GET %s: %llu bytes, expected %llu", cp->url,
                 (unsigned long long)cp->got, (unsigned long long)size);
        ret = -EIO;
    }
    free(cp);
    return ret;
}

/* ---- the cluster probe -------------------------------------------------- */

int rb_cluster_probe(const struct config *cfg, const char *token, unsigned connect_timeout_ms,
                     struct rb_cluster **out, char *err, size_t errlen)
{
    struct rb_cluster *c = rb_cluster_new(cfg->nbackends, cfg->replicas, token);
    if (c) {
        /* The config's TLS files, read whole (tls.h), as the balancer does. */
        char msg[1024] = "";
        int trc = 0;
        if (cfg->ca_file)
            trc =
                cas_pem_read_ca(cfg->ca_file, "ca_file", &c->ca_pem, &c->ca_len, msg, sizeof(msg));
        if (trc == 0 && cfg->tls_client_cert)
            trc = cas_pem_read(cfg->tls_client_cert, "tls_client_cert", false, &c->cert_pem,
                               &c->cert_len, msg, sizeof(msg));
        if (trc == 0 && cfg->tls_client_key)
            trc = cas_pem_read(cfg->tls_client_key, "tls_client_key", true, &c->key_pem,
                               &c->key_len, msg, sizeof(msg));
        if (trc < 0) {
            snprintf(err, errlen, "%s: %s", cfg->path, msg);
            rb_cluster_free(c);
            return trc;
        }
    }
    /* Every backend at once: GET /ring, then GET /status of those that
     * answered; each request bounded by connect_timeout_ms to connect and
     * 10 s of stall. */
    struct cas_ctl_opts o = {0};
    if (c)
        ctl_opts(c, connect_timeout_ms, 10000, NULL, &o);
    o.max_body = 1 << 20;
    size_t nb = cfg->nbackends;
    struct cas_ctl_req *req = calloc(nb ? nb : 1, sizeof(*req));
    char(*urls)[1200] = calloc(nb ? nb : 1, sizeof(*urls));
    if (!c || !req || !urls) {
        rb_cluster_free(c);
        free(req);
        free(urls);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < nb; i++) {
        snprintf(urls[i], sizeof(urls[i]), "%s/ring", cfg->backends[i].url);
        req[i] = (struct cas_ctl_req){.url = urls[i], .method = "GET"};
    }
    cas_ctl_run(&o, req, nb, 0);

    struct probed {
        char node[128];
        uint64_t *tokens;
        size_t ntokens;
        bool up, writable;
        char why[512];
    } *pb = calloc(nb ? nb : 1, sizeof(*pb));
    if (!pb) {
        for (size_t i = 0; i < nb; i++)
            cas_ctl_req_free(&req[i]);
        rb_cluster_free(c);
        free(req);
        free(urls);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t answered = 0;
    for (size_t i = 0; i < nb; i++) {
        struct probed *q = &pb[i];
        const struct cas_hash_algo *algo = NULL;
        char d[CURL_ERROR_SIZE + 64];
        if (req[i].status != 200) {
            cas_ctl_describe(&req[i], d, sizeof(d));
            snprintf(q->why, sizeof(q->why), "GET %s: %s", urls[i], d);
        } else if (rb_parse_ring(req[i].resp.data ? req[i].resp.data : "", q->node, sizeof(q->node),
                                 &algo, &q->tokens, &q->ntokens, q->why, sizeof(q->why)) == 0) {
            q->up = true;
            if (!c->algo)
                c->algo = algo;
            if (algo != c->algo) {
                snprintf(q->why, sizeof(q->why), "refused: its keys are %s, the cluster's are %s",
                         algo->name, c->algo->name);
                q->up = false;
            }
            for (size_t j = 0; q->up && j < i; j++)
                if (pb[j].up && !strcmp(pb[j].node, q->node)) {
                    snprintf(q->why, sizeof(q->why), "refused: same node %s as %s", q->node,
                             cfg->backends[j].url);
                    q->up = false;
                }
            if (!q->up) {
                free(q->tokens);
                q->tokens = NULL;
                q->ntokens = 0;
            }
        }
        cas_ctl_req_free(&req[i]);
    }
    /* The read-only flag of those that are up. */
    size_t k = 0;
    size_t *which = calloc(nb ? nb : 1, sizeof(*which));
    for (size_t i = 0; which && i < nb; i++) {
        if (!pb[i].up)
            continue;
        answered++;
        pb[i].writable = true;
        snprintf(urls[k], sizeof(urls[k]), "%s/status", cfg->backends[i].url);
        req[k] = (struct cas_ctl_req){.url = urls[k], .method = "GET"};
        which[k++] = i;
    }
    if (which)
        cas_ctl_run(&o, req, k, 0);
    for (size_t j = 0; j < k; j++) {
        bool ro = false;
        if (req[j].status == 200 && req[j].resp.data &&
            cas_json_get_bool(req[j].resp.data, "read_only", &ro) == 0 && ro) {
            pb[which[j]].writable = false;
            snprintf(pb[which[j]].why, sizeof(pb[which[j]].why), "read-only");
        }
        cas_ctl_req_free(&req[j]);
    }
    int rc = which ? 0 : -ENOMEM;
    for (size_t i = 0; i < nb; i++) {
        const struct config_backend *cb = &cfg->backends[i];
        if (rc == 0)
            rc = rb_cluster_set(c, i, cb->url, cb->domain, pb[i].node, pb[i].tokens, pb[i].ntokens,
                                pb[i].up, pb[i].writable, pb[i].why);
        free(pb[i].tokens);
    }
    free(which);
    free(pb);
    free(req);
    free(urls);
    if (rc == 0 && answered == 0) {
        snprintf(err, errlen, "no backend of %s answered (first: %s: %s)", cfg->path,
                 c->n ? c->b[0].url : "none", c->n ? c->b[0].error : "no backends");
        rc = -EHOSTUNREACH;
    }
    if (rc == 0)
        rc = rb_cluster_finish(c, err, errlen);
    else if (!err[0])
        snprintf(err, errlen, "%s", strerror(-rc));
    if (rc < 0) {
        rb_cluster_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
