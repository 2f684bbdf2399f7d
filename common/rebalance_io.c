/*
 * rebalance_io.c - the rebalance engine's HTTP to backends, over libcurl's
 * easy interface: listings, HEAD/DELETE, the cluster probe; and the token
 * bucket that caps the bandwidth of copies. Every handle is set up by the
 * control layer (ctl.h: token, TLS, timeouts, the stop flag), and its
 * failures are told by it.
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

/* ---- connections -------------------------------------------------------- */

struct rb_io {
    CURL *get, *small;
    struct cas_copier *copier;   /* the handles of this worker's copies */
    struct cas_ctl_opts ctl;     /* token, TLS, timeouts, stop: for every handle */
    struct curl_slist *get_hdrs; /* the list cas_ctl_easy made for get */
    struct rb_bucket *bucket;
    volatile int *stop;
    uint64_t *streamed; /* bytes sent by copies, for progress */
    const struct cas_hash_algo *algo; /* the cluster's: copies check keys with it */
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
    io->small = curl_easy_init();
    io->copier = cas_copier_new();
    io->bucket = bucket;
    io->algo = c->algo;
    io->stop = o->stop;
    ctl_opts(c, o->connect_timeout_ms ? (long)o->connect_timeout_ms : 2000,
             o->io_timeout_ms ? (long)o->io_timeout_ms : 30000, o->stop, &io->ctl);
    if (!io->get || !io->small || !io->copier) {
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
    curl_slist_free_all(io->get_hdrs);
    cas_copier_free(io->copier);
    free(io);
}

/* Sets e (io->get) up for a GET of url through the control layer; the
 * header list it makes lives until the next request on e. Returns 0, or
 * -ENOMEM with errbuf saying so. */
static int setup_ctl(struct rb_io *io, CURL *e, const char *url, char *errbuf)
{
    struct curl_slist **slot = &io->get_hdrs;
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

static uint64_t bucket_throttle(void *cls, uint64_t bytes)
{
    return rb_bucket_charge(cls, bytes);
}

/* The copy path shared with the balancer (copy.h), with this worker's
 * handles, token, TLS, stop flag, byte counter and bandwidth cap. */
int rb_io_copy(struct rb_io *io, const char *src, const char *dst, const char *hex, uint64_t size,
               char *err, size_t errlen)
{
    struct cas_copy_options o = {
        .algo = io->algo,
        .ctl = &io->ctl,
        .stall_timeout_ms = (unsigned)io->ctl.stall_ms,
        .answer_timeout_ms = (unsigned)io->ctl.stall_ms, /* rebalance waits no longer */
        .throttle = io->bucket ? bucket_throttle : NULL,
        .throttle_cls = io->bucket,
        .counter = io->streamed,
        .stop = io->stop,
    };
    struct cas_copy_result res;
    int rc = cas_copy_object(io->copier, &o, src, dst, hex, (int64_t)size, &res);
    if (rc < 0)
        snprintf(err, errlen, "%s", res.error);
    return rc;
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
        const struct cas_hash_algo *algo;
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
            q->algo = algo;
        }
        cas_ctl_req_free(&req[i]);
    }
    /* The cluster's hash is most backends' (common/hash.h); the others are
     * refused by name, as the balancer refuses them. */
    const struct cas_hash_algo *algos[nb ? nb : 1];
    for (size_t i = 0; i < nb; i++)
        algos[i] = pb[i].up ? pb[i].algo : NULL;
    c->algo = cas_hash_of_cluster(algos, nb);
    for (size_t i = 0; i < nb; i++) {
        struct probed *q = &pb[i];
        if (q->up) {
            if (q->algo != c->algo) {
                snprintf(q->why, sizeof(q->why), "refused: its keys are %s, the cluster's are %s",
                         q->algo->name, c->algo->name);
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
