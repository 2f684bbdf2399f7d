/*
 * rebalance_io.c - the rebalance engine's HTTP to backends, over libcurl's
 * easy interface: listings, HEAD/DELETE, the cluster probe; and the token
 * bucket that caps the bandwidth of copies.
 *
 * Copies go through common/copy.c, the one copy path the balancer's repair
 * uses too: the GET and the PUT on one libcurl multi handle with bounded
 * memory, the digest checked before the target gets the last byte. The
 * token bucket is charged as bytes arrive from the source, and the source
 * is paused (not the thread put to sleep) while it is in debt, so TCP
 * back-pressure slows the source down.
 */
#define _GNU_SOURCE
#include "rebalance.h"
#include "copy.h"
#include "json.h"
#include "tls.h"
#include "token.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

uint64_t rb_bucket_charge(struct rb_bucket *b, uint64_t n)
{
    if (!b || b->rate <= 0)
        return 0;
    pthread_mutex_lock(&b->lock);
    uint64_t now = now_ns();
    b->tokens += (double)(now - b->last_ns) / 1e9 * b->rate;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_ns = now;
    b->tokens -= (double)n;
    double wait = b->tokens < 0 ? -b->tokens / b->rate : 0;
    pthread_mutex_unlock(&b->lock);
    return (uint64_t)(wait * 1e9);
}

void rb_bucket_take(struct rb_bucket *b, uint64_t n, volatile int *stop)
{
    double wait = (double)rb_bucket_charge(b, n) / 1e9;
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
    CURL *get, *small;
    struct cas_copier *copier;
    struct curl_slist *hdrs; /* the token, if any */
    struct rb_bucket *bucket;
    volatile int *stop;
    long connect_ms, io_s;
    unsigned io_ms;
    uint64_t *streamed; /* bytes sent by copies, for progress */
    const struct rb_cluster *tls; /* its ca/cert/key PEM texts, for https:// */
};

void rb_io_count_bytes(struct rb_io *io, uint64_t *counter)
{
    io->streamed = counter;
}

struct rb_io *rb_io_new(const struct rb_cluster *c, const struct rb_options *o,
                        struct rb_bucket *bucket)
{
    struct rb_io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->get = curl_easy_init();
    io->small = curl_easy_init();
    io->copier = cas_copier_new();
    if (c->token) {
        char auth[CAS_TOKEN_MAX + 32]; /* never cut: the token is at most CAS_TOKEN_MAX */
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        io->hdrs = curl_slist_append(io->hdrs, auth);
    }
    io->bucket = bucket;
    io->tls = c;
    io->stop = o->stop;
    io->connect_ms = o->connect_timeout_ms ? (long)o->connect_timeout_ms : 2000;
    io->io_s = o->io_timeout_ms ? ((long)o->io_timeout_ms + 999) / 1000 : 30;
    io->io_ms = o->io_timeout_ms ? o->io_timeout_ms : 30000;
    if (!io->get || !io->small || !io->copier || (c->token && !io->hdrs)) {
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
    if (io->small)
        curl_easy_cleanup(io->small);
    curl_slist_free_all(io->hdrs);
    cas_copier_free(io->copier);
    free(io);
}

static int on_xferinfo(void *cls, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    volatile int *stop = cls;
    return stop && *stop ? 1 : 0;
}

/* Resets e for a request to url: timeouts, the stop flag, the token. */
static void setup(struct rb_io *io, CURL *e, const char *url, char *errbuf)
{
    curl_easy_reset(e); /* keeps the connection */
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, io->connect_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, io->io_s);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ca-cas-rebalance/" CAS_VERSION);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)io->stop);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    if (io->hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, io->hdrs);
    if (io->tls && !strncmp(url, "https://", 8)) {
        /* As the balancer (OPERATIONS.md "TLS"): verify against ca_file,
         * present the client certificate when configured. */
        const struct rb_cluster *t = io->tls;
        if (t->ca_pem) {
            struct curl_blob ca = {t->ca_pem, t->ca_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
        }
        if (t->cert_pem && t->key_pem) {
            struct curl_blob cert = {t->cert_pem, t->cert_len, CURL_BLOB_COPY};
            struct curl_blob key = {t->key_pem, t->key_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
        }
    }
    errbuf[0] = '\0';
}

static void describe_curl(CURLcode rc, const char *errbuf, const char *what, const char *url,
                          char *err, size_t errlen)
{
    snprintf(err, errlen, "%s %s: %s", what, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
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

/* "... answered 404: {"error":"..."}" from an error answer's body. */
static void describe_status(long status, const char *body, const char *what, const char *url,
                            char *err, size_t errlen)
{
    char msg[200] = "";
    if (body && *body == '{')
        cas_json_get_string(body, "error", msg, sizeof(msg));
    snprintf(err, errlen, "%s %s answered %ld%s%s", what, url, status, msg[0] ? ": " : "", msg);
}

long rb_io_get(struct rb_io *io, const char *url, int (*sink)(void *cls, const char *d, size_t n),
               void *cls, char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE];
    struct get_state g = {.e = io->get, .sink = sink, .cls = cls};
    setup(io, io->get, url, errbuf);
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

static size_t discard(char *data, size_t size, size_t nmemb, void *cls)
{
    (void)data, (void)cls;
    return size * nmemb;
}

long rb_io_simple(struct rb_io *io, const char *method, const char *url, char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE];
    setup(io, io->small, url, errbuf);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(io->small, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(io->small, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(io->small, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(io->small);
    if (rc != CURLE_OK) {
        describe_curl(rc, errbuf, method, url, err, errlen);
        return -EIO;
    }
    long status = 0;
    curl_easy_getinfo(io->small, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* ---- copies ------------------------------------------------------------- */

static uint64_t bucket_throttle(void *cls, uint64_t bytes)
{
    return rb_bucket_charge(cls, bytes);
}

/* The copy path shared with the balancer (copy.h), with this worker's
 * handles, token, TLS, stop flag, byte counter and bandwidth cap. */
int rb_io_copy(struct rb_io *io, const char *src, const char *dst, const char *hex, uint64_t size,
               char *err, size_t errlen)
{
    const struct rb_cluster *c = io->tls;
    struct cas_copy_tls tls = {c->ca_pem, c->ca_len, c->cert_pem, c->cert_len, c->key_pem, c->key_len};
    struct cas_copy_options o = {
        .algo = c->algo,
        .token = c->token,
        .tls = &tls,
        .connect_timeout_ms = (unsigned)io->connect_ms,
        .stall_timeout_ms = io->io_ms,
        .answer_timeout_ms = io->io_ms, /* as the stall: rebalance waits no longer */
        .throttle = io->bucket ? bucket_throttle : NULL,
        .throttle_cls = io->bucket,
        .counter = io->streamed,
        .stop = io->stop,
        .user_agent = "ca-cas-rebalance/" CAS_VERSION,
    };
    struct cas_copy_result res;
    int rc = cas_copy_object(io->copier, &o, src, dst, hex, (int64_t)size, &res);
    if (rc < 0)
        snprintf(err, errlen, "%s", res.error);
    return rc;
}

/* ---- the cluster probe -------------------------------------------------- */

struct mem {
    char data[1 << 20];
    size_t len;
    bool full;
};

static int mem_sink(void *cls, const char *d, size_t n)
{
    struct mem *m = cls;
    if (m->len + n >= sizeof(m->data)) {
        m->full = true;
        return -EFBIG;
    }
    memcpy(m->data + m->len, d, n);
    m->len += n;
    m->data[m->len] = '\0';
    return 0;
}

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
    struct rb_options o = {.connect_timeout_ms = connect_timeout_ms, .io_timeout_ms = 10000};
    struct rb_io *io = c ? rb_io_new(c, &o, NULL) : NULL;
    struct mem *m = malloc(sizeof(*m));
    if (!c || !io || !m) {
        rb_cluster_free(c);
        rb_io_free(io);
        free(m);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t answered = 0;
    int rc = 0;
    for (size_t i = 0; i < cfg->nbackends && rc == 0; i++) {
        const struct config_backend *cb = &cfg->backends[i];
        char url[1200], why[512] = "";
        char node[128] = "";
        const struct cas_hash_algo *algo = NULL;
        uint64_t *tokens = NULL;
        size_t ntokens = 0;
        bool up = false, writable = false;
        m->len = 0;
        m->data[0] = '\0';
        snprintf(url, sizeof(url), "%s/ring", cb->url);
        long st = rb_io_get(io, url, mem_sink, m, why, sizeof(why));
        if (st == 200 && rb_parse_ring(m->data, node, sizeof(node), &algo, &tokens, &ntokens, why,
                                       sizeof(why)) == 0) {
            up = true;
            if (!c->algo)
                c->algo = algo;
            if (algo != c->algo) {
                snprintf(why, sizeof(why), "refused: its keys are %s, the cluster's are %s",
                         algo->name, c->algo->name);
                up = false;
                free(tokens);
                tokens = NULL;
                ntokens = 0;
            }
            for (size_t j = 0; up && j < i; j++)
                if (c->b[j].ntokens && !strcmp(c->b[j].node, node)) {
                    snprintf(why, sizeof(why), "refused: same node %s as %s", node, c->b[j].url);
                    up = false;
                    free(tokens);
                    tokens = NULL;
                    ntokens = 0;
                }
        }
        if (up) {
            answered++;
            writable = true;
            m->len = 0;
            m->data[0] = '\0';
            snprintf(url, sizeof(url), "%s/status", cb->url);
            bool ro = false;
            if (rb_io_get(io, url, mem_sink, m, why, sizeof(why)) == 200 &&
                cas_json_get_bool(m->data, "read_only", &ro) == 0 && ro) {
                writable = false;
                snprintf(why, sizeof(why), "read-only");
            }
        }
        rc = rb_cluster_set(c, i, cb->url, cb->domain, node, tokens, ntokens, up, writable, why);
        free(tokens);
    }
    rb_io_free(io);
    free(m);
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
