/*
 * proxy.c - the object routes through the balancer.
 *
 * GET/HEAD: the read order is the home backends in ring order, then every
 * other backend (those probed up first, the others last). A backend that
 * fails or answers 404 before the first byte is passed over; once a backend
 * has answered 200/206, its body is relayed through a bstream and a later
 * failure aborts the client's response. A whole-object GET is hashed on the
 * way and the last bytes are held back until the digest matches, so a
 * complete response is never a corrupt one. Home backends that lacked the
 * object are queued for read repair once the client has been served.
 *
 * PUT: the write set (ring.c) must span min_replicas failure domains or the
 * request is refused with 503 before the body is read. The body is
 * streamed to the whole write set at once (fanout.c) and hashed on the way;
 * when the digest does not match, the transfers are cut before the body's
 * last byte, so no backend ever completes a copy. Success once
 * min_replicas backends have answered 200/201. A hung target is dropped
 * (fanout.c); when that leaves fewer than min_replicas copies, the object
 * is copied from a backend that stored it to the next backends along the
 * ring before answering, and copies still short of `replicas` are queued
 * (OPERATIONS.md "What happens when a backend hangs").
 *
 * POST: the key is not known until the body is in, so the body is spooled
 * to an unlinked temporary file (hashed as it comes), then sent as a PUT.
 */
#define _GNU_SOURCE
#include "proxy.h"
#include "bstream.h"
#include "fanout.h"
#include "gctouch.h"
#include "hedge.h"
#include "json.h"
#include "repair.h"
#include "tagcache.h"
#include "upstream.h"
#include "view.h"
#include "log.h"
#include "multipart.h"
#include "num.h"
#include "range.h"
#include "stamp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SPOOL_CHUNK (256u * 1024)
/* Objects up to this size are read whole from a backend and verified
 * before the client gets a byte. */
#define GET_SMALL_MAX (256 * 1024)
/* A relayed body goes to the client in blocks of up to GET_BLOCK, each
 * filled with at least GET_FILL bytes from the backend (or what is left):
 * fewer, larger reads, digest updates and writes. With every byte hashed
 * (SHA-NI: about 0.5 ms of CPU per MB here) the rest of the relay is the
 * overhead to cut; 1 MiB blocks took about 14% off the balancer's CPU per
 * MB relayed against 256 KiB ones (bench/RESULTS.md, "bal-perf"), for
 * 1 MiB of memory per large GET in flight. */
#define GET_BLOCK (1024u * 1024)
#define GET_FILL (512u * 1024)

/* The read order for key: home first, backends probed up (and not
 * stalled) before the rest. */
static size_t read_order(struct balancer *bal, const struct view *v, const struct cas_key *key,
                         size_t *out, size_t *nhome)
{
    size_t order[v->n ? v->n : 1];
    size_t n = ring_read_order(v->ring, ring_position(key), v->cfg->replicas, order, nhome);
    bool up[v->n ? v->n : 1];
    backend_health(bal, v, NULL, up);
    uint64_t now = cas_now_ns();
    for (size_t i = 0; i < v->n; i++)
        if (up[i] && backend_stalled(bal, v->b[i], now))
            up[i] = false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (up[order[i]])
            out[k++] = order[i];
    for (size_t i = 0; i < n; i++)
        if (!up[order[i]])
            out[k++] = order[i];
    return k;
}

static bool is_home(const struct view *v, const struct cas_key *key, size_t b)
{
    size_t home[v->n ? v->n : 1];
    size_t n = ring_home(v->ring, ring_position(key), v->cfg->replicas, home);
    for (size_t i = 0; i < n; i++)
        if (home[i] == b)
            return true;
    return false;
}

/* ---- GET and HEAD ------------------------------------------------------- */

/* A number of a backend's Content-Range: digits, no overflow. */
static bool parse_u64_digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

/* A 206's Content-Range "bytes a-b/total" with b - a + 1 = len. */
static bool parse_content_range(const char *p, int64_t len, uint64_t *a, uint64_t *b,
                                uint64_t *total)
{
    if (strncasecmp(p, "bytes ", 6) != 0)
        return false;
    p += 6;
    return parse_u64_digits(&p, a) && *p++ == '-' && parse_u64_digits(&p, b) && *p++ == '/' &&
           parse_u64_digits(&p, total) && *p == '\0' && *b >= *a && *b < *total && len >= 0 &&
           *b - *a + 1 == (uint64_t)len;
}

/* True when a 200/206 answer (already checked by answer_matches) carries
 * the whole object, so that its body can be checked against the key. */
static bool answer_is_whole(const struct bstream_head *h)
{
    uint64_t a, b, total;
    return h->status == 200 ||
           (parse_content_range(h->content_range, h->content_length, &a, &b, &total) && a == 0 &&
            b + 1 == total);
}

/*
 * Is a backend's 200/206 answer exactly what was asked for? The framing
 * must be a plain Content-Length (no transfer coding, no conflicting
 * lengths), an ETag, when sent, must name the key, a 206 must answer a
 * Range that was asked for with a Content-Range for exactly that range and
 * the body's length, and a HEAD gets a 200. Anything else is treated as a
 * failure of that backend (the next one is asked). why says what is wrong.
 */
static bool answer_matches(const struct bstream_head *h, const char *hex, bool is_head,
                           const struct range_spec *w, char *why, size_t whylen)
{
    if (h->chunked) {
        snprintf(why, whylen, "answered with a transfer coding (not relayed unchecked)");
        return false;
    }
    if (h->dup_length) {
        snprintf(why, whylen, "answered with conflicting Content-Length headers");
        return false;
    }
    if (h->content_length < 0) {
        snprintf(why, whylen, "answered HTTP %ld without a Content-Length", h->status);
        return false;
    }
    if (h->etag[0]) {
        size_t hl = strlen(hex), el = strlen(h->etag);
        if (el != hl + 2 || h->etag[0] != '"' || h->etag[el - 1] != '"' ||
            strncasecmp(h->etag + 1, hex, hl) != 0) {
            snprintf(why, whylen, "answered with ETag %.100s for another object", h->etag);
            return false;
        }
    }
    if (h->status == 200)
        return true;
    /* 206: only to a Range we forwarded (w), for exactly the bytes a
     * storaged would serve for it (common/range.c) of the size it states. */
    if (is_head || !w) {
        snprintf(why, whylen, "answered 206 to a request without a Range");
        return false;
    }
    uint64_t a, b, total, wa, we;
    if (!parse_content_range(h->content_range, h->content_length, &a, &b, &total)) {
        snprintf(why, whylen, "answered 206 with Content-Range \"%.60s\" for %" PRId64 " bytes",
                 h->content_range, h->content_length);
        return false;
    }
    if (range_resolve(w, total, &wa, &we) < 0) {
        snprintf(why, whylen,
                 "answered 206 to a range that is not satisfiable in %" PRIu64 " bytes", total);
        return false;
    }
    if (a != wa || b + 1 != we) {
        snprintf(why, whylen,
                 "answered 206 with bytes %" PRIu64 "-%" PRIu64 " where %" PRIu64 "-%" PRIu64
                 " were asked",
                 a, b, wa, we - 1);
        return false;
    }
    return true;
}

/*
 * Can a backend's 416 be right? Only for a Range we forwarded (w), with a
 * Content-Range of "bytes *" then "/N" for which that range is indeed
 * unsatisfiable, and N = 0 only for the key of the empty object (and not
 * otherwise): an object's key tells whether it is empty. When true, *size
 * is N. Anything else is that backend's failure (the next copy is asked).
 * why says what is wrong.
 */
static bool refusal_plausible(const struct bstream_head *h, const struct cas_key *key,
                              const struct range_spec *w, uint64_t *size, char *why, size_t whylen)
{
    if (!w) {
        snprintf(why, whylen, "answered 416 to a request without a Range");
        return false;
    }
    const char *p = h->content_range;
    uint64_t n, s, e;
    if (strncasecmp(p, "bytes */", 8) != 0 || !(p += 8, parse_u64_digits(&p, &n)) || *p) {
        snprintf(why, whylen, "answered 416 with Content-Range \"%.60s\"", h->content_range);
        return false;
    }
    if (range_resolve(w, n, &s, &e) == 0) {
        snprintf(why, whylen, "answered 416 to a range that is satisfiable in %" PRIu64 " bytes",
                 n);
        return false;
    }
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_buffer(key->algo, "", 0, d);
    bool empty = memcmp(d, key->digest, key->algo->digest_len) == 0;
    if (empty != (n == 0)) {
        snprintf(why, whylen, "answered 416 saying the object has %" PRIu64 " bytes", n);
        return false;
    }
    *size = n;
    return true;
}

/* How long a body of len bytes may keep us waiting on its backend, in ns:
 * the first-byte and I/O timeouts, plus len at --min-read-kbps. 0: no
 * limit. Only time spent waiting for the backend counts (not a slow
 * client's pace). */
static uint64_t read_budget(const struct balancer *bal, uint64_t len)
{
    if (!bal->opt.min_read_kbps)
        return 0;
    uint64_t ms = (uint64_t)bal->opt.first_byte_timeout_ms + bal->opt.io_timeout_ms +
                  len / bal->opt.min_read_kbps * 1000 / 1024;
    return ms * 1000000;
}

/* A backend's response body: on a pooled connection (upstream.c), or
 * through libcurl for what that reader does not do. */
struct get_src {
    struct upconn *c;
    struct bstream *s;
};

static ssize_t src_read(struct get_src *src, char *buf, size_t max, char *err, size_t errlen)
{
    if (src->c)
        return upconn_read(src->c, buf, max, err, errlen);
    return bstream_read(src->s, buf, max, err, errlen);
}

static void src_set_read_budget(struct get_src *src, uint64_t budget_ns)
{
    if (src->c)
        upconn_set_read_budget(src->c, budget_ns);
    else
        bstream_set_read_budget(src->s, budget_ns);
}

static void src_close(struct get_src *src)
{
    upconn_close(src->c);
    bstream_close(src->s);
    src->c = NULL;
    src->s = NULL;
}

/* Sends method for key's object to backend b; 0 with the head filled. */
static int src_open(struct balancer *bal, const struct view *v, size_t b, const char *hex,
                    const char *method, const char *range, struct get_src *src,
                    struct bstream_head *head, char *err, size_t errlen)
{
    char path[CAS_MAX_HEX + 16] = "/objects/";
    memcpy(path + 9, hex, strlen(hex) + 1);
    src->c = NULL;
    src->s = NULL;
    int rc = upconn_open(bal, v, v->b[b]->url, path, method, range, &src->c, head, err, errlen);
    if (rc != -ENOTSUP)
        return rc;
    char url[1200];
    snprintf(url, sizeof(url), "%s%s", v->b[b]->url, path);
    return bstream_open(bal, v, url, method, range, &src->s, head, err, errlen);
}

/* ---- hedged reads ---------------------------------------------------------
 *
 * SPEC (Partial failure): a hung backend costs a reader no more than a dead
 * one. A read asks the first backend of its order; when no complete answer
 * has come after the hedge delay (hedge.c), it asks the next one too (at
 * most RACE_MAX at once), and takes the answers in the order they complete.
 * An answer is complete once its WHOLE head is in (a head that has begun -
 * a status line, then a drip - wins nothing) and, for a GET of a 200 or 206
 * that answer_matches, once its whole body is in too when it is small (at
 * most GET_SMALL_MAX bytes), or its first bytes when it is relayed:
 * nothing has gone to the client yet, so a copy whose head or body stalls
 * before that is overtaken by the next one as if it had sent nothing. The
 * first usable answer is served, whole, from that one backend; the other
 * requests' connections are closed (never pooled), so bytes of two
 * backends are never mixed and a stalled connection never carries another
 * request.
 *
 * Each request in the race is bounded: its head within
 * --first-byte-timeout-ms of its start; a small body by --io-timeout-ms
 * without a byte and by read_budget; and once another copy has said it has
 * none (404) and no backend is left to ask, a head still missing gets at
 * most max(--stall-ms, 4x the slowest such 404) more (an absent key with a
 * backend hung on object routes; OPERATIONS.md "Stalled and dripping
 * backends").
 */
#define RACE_MAX 3

struct race_req {
    size_t b;
    struct upconn *c;
    uint64_t started_ns;
    uint64_t head_ns;     /* when the head was complete (have_head) */
    uint64_t progress_ns; /* the head, then each body byte */
    bool hedge;           /* started while another was waiting */
    bool have_head;       /* the head is in; a small body is being read */
    bool relayed;         /* a large body: waiting for its first bytes */
    struct bstream_head head;
    char *body; /* small GET: the body as it comes */
    size_t got;
};

struct race {
    struct balancer *bal;
    const struct view *v;
    const char *hex;
    const char *method;
    const char *range;
    const struct range_spec *want;
    bool read_body; /* a GET: small bodies are read within the race */
    const size_t *order;
    size_t n, next;
    uint64_t delay_ns;
    uint64_t last_start_ns;
    size_t n404; /* copies that said they have none */
    uint64_t last404_ns, slowest404_ns;
    size_t np;
    struct race_req p[RACE_MAX];
};

static void race_init(struct race *r, struct balancer *bal, const struct view *v, const char *hex,
                      const char *method, const char *range, const struct range_spec *want,
                      const size_t *order, size_t n)
{
    memset(r, 0, sizeof(*r));
    r->bal = bal;
    r->v = v;
    r->hex = hex;
    r->method = method;
    r->range = range;
    r->want = want;
    r->read_body = !strcmp(method, "GET");
    r->order = order;
    r->n = n;
    r->delay_ns = hedge_delay_ns(bal);
    if (r->delay_ns)
        hedge_earn();
}

/* A copy said it has none (a 404 head, complete at now, of a request
 * started at started). */
static void race_note_404(struct race *r, uint64_t started, uint64_t now)
{
    r->n404++;
    r->last404_ns = now;
    if (now - started > r->slowest404_ns)
        r->slowest404_ns = now - started;
}

/* Until when request q may keep the read waiting (ns); *stall is set when
 * that is the --stall-ms bound of an absent key (race comment). */
static uint64_t race_deadline(const struct race *r, const struct race_req *q, bool *stall)
{
    const struct balancer_options *o = &r->bal->opt;
    *stall = false;
    if (q->have_head) {
        uint64_t dl = q->progress_ns + (uint64_t)o->io_timeout_ms * 1000000;
        uint64_t budget = read_budget(r->bal, (uint64_t)q->head.content_length);
        if (budget && q->head_ns + budget < dl)
            dl = q->head_ns + budget;
        return dl;
    }
    uint64_t dl = q->started_ns + (uint64_t)o->first_byte_timeout_ms * 1000000;
    if (r->n404 && r->next == r->n) {
        uint64_t grace = (uint64_t)o->stall_ms * 1000000;
        if (4 * r->slowest404_ns > grace)
            grace = 4 * r->slowest404_ns;
        uint64_t from = q->started_ns > r->last404_ns ? q->started_ns : r->last404_ns;
        if (from + grace < dl) {
            dl = from + grace;
            *stall = true;
        }
    }
    return dl;
}

/* Reads what has come for q without waiting: 1 when its answer is complete
 * (the head; and for a GET that answer_matches, the whole body in q->body
 * when small, its first bytes buffered on q->c when relayed), 0 when more
 * is to come, -errno with err when it failed. */
static int race_step(struct race *r, struct race_req *q, uint64_t now, char *err, size_t errlen)
{
    if (!q->have_head) {
        int st = upconn_head_step(r->bal, q->c, &q->head, err, errlen);
        if (st <= 0)
            return st;
        q->have_head = true;
        q->head_ns = q->progress_ns = now;
        hedge_note(now - q->started_ns);
        __atomic_store_n(&r->v->b[q->b]->stalled_since_ns, 0, __ATOMIC_RELAXED);
        char why[256];
        if (!r->read_body || (q->head.status != 200 && q->head.status != 206) ||
            q->head.content_length < 0 ||
            !answer_matches(&q->head, r->hex, false, r->want, why, sizeof(why)))
            return 1; /* the caller judges and reads it */
        if (q->head.content_length > GET_SMALL_MAX) {
            q->relayed = true;
        } else {
            q->body = malloc(q->head.content_length ? (size_t)q->head.content_length : 1);
            if (!q->body) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            q->got = 0;
        }
    }
    if (q->relayed) {
        /* A large body is relayed as it comes: the answer is complete
         * once its first bytes are in (kept for the relay). */
        ssize_t n = upconn_prefetch_nowait(q->c, err, errlen);
        if (n == -EAGAIN)
            return 0;
        return n < 0 ? (int)n : 1;
    }
    size_t len = (size_t)q->head.content_length;
    while (q->got < len) {
        ssize_t n = upconn_read_nowait(q->c, q->body + q->got, len - q->got, err, errlen);
        if (n == -EAGAIN)
            return 0;
        if (n <= 0) {
            if (n == 0)
                snprintf(err, errlen, "short body: %zu of %zu bytes", q->got, len);
            return -EIO;
        }
        q->got += (size_t)n;
        q->progress_ns = now;
    }
    return 1;
}

/* Marks as stalled (hedge.c, read last for a while) the backends of the
 * requests started before `before` and still without a complete answer. */
static void race_mark_stalled(struct race *r, uint64_t before)
{
    for (size_t j = 0; j < r->np; j++) {
        uint64_t zero = 0;
        if (r->p[j].started_ns < before)
            __atomic_compare_exchange_n(&r->v->b[r->p[j].b]->stalled_since_ns, &zero,
                                        r->p[j].started_ns, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
    }
}

/*
 * The next complete answer of the race: 1 with *b the backend, and either
 * *rc = 0 with src and head filled (and, for a small GET read within the
 * race, *body holding its head.content_length bytes, the caller's to free;
 * else NULL and the body still on src), or *rc < 0 with err; 0 when every
 * backend has answered. Starts requests as the hedge delay passes.
 */
static int race_next(struct race *r, size_t *b, struct get_src *src, struct bstream_head *head,
                     char **body, int *rc, char *err, size_t errlen)
{
    struct balancer *bal = r->bal;
    char path[CAS_MAX_HEX + 16] = "/objects/";
    memcpy(path + 9, r->hex, strlen(r->hex) + 1);
    src->c = NULL;
    src->s = NULL;
    *body = NULL;
    for (;;) {
        uint64_t now = cas_now_ns();
        /* Backends upconn reads (http://, and https:// with the view's TLS
         * credentials) are raced; a libcurl read is opened synchronously,
         * alone. */
        const char *next_url = r->next < r->n ? r->v->b[r->order[r->next]]->url : "";
        bool can_hedge = r->np > 0 && r->delay_ns && r->np < RACE_MAX && r->next < r->n &&
                         (!strncmp(next_url, "http://", 7) ||
                          (!strncmp(next_url, "https://", 8) && r->v->conf && r->v->conf->tls));
        bool hedge_due = can_hedge && now >= r->last_start_ns + r->delay_ns;
        if (hedge_due && !hedge_spend()) {
            /* Out of budget: this read waits for the copies already asked. */
            r->delay_ns = 0;
            continue;
        }
        if (r->np == 0 || hedge_due) {
            if (r->next == r->n)
                return 0;
            *b = r->order[r->next++];
            struct upconn *c = NULL;
            *rc = upconn_start(bal, r->v, r->v->b[*b]->url, path, r->method, r->range, &c, err,
                               errlen);
            if (*rc == -ENOTSUP) { /* not a plain http:// backend: through libcurl, alone */
                *rc = src_open(bal, r->v, *b, r->hex, r->method, r->range, src, head, err, errlen);
                if (*rc == 0 && head->status == 404)
                    race_note_404(r, now, cas_now_ns());
            }
            if (*rc < 0 || !c)
                return 1;
            if (r->np > 0)
                __atomic_add_fetch(&bal->ctr.hedged_reads, 1, __ATOMIC_RELAXED);
            struct race_req *q = &r->p[r->np++];
            memset(q, 0, sizeof(*q));
            q->b = *b;
            q->c = c;
            q->started_ns = q->progress_ns = now;
            q->hedge = r->np > 1;
            q->head.content_length = -1;
            r->last_start_ns = now;
            continue;
        }
        /* Wait for more of an answer, the next hedge, or the first
         * request's deadline, whichever comes first. */
        uint64_t until = can_hedge ? r->last_start_ns + r->delay_ns : UINT64_MAX;
        struct pollfd pf[RACE_MAX];
        bool ready = false; /* TLS bytes already decrypted: no waiting */
        for (size_t i = 0; i < r->np; i++) {
            bool stall;
            uint64_t dl = race_deadline(r, &r->p[i], &stall);
            if (dl < until)
                until = dl;
            pf[i].fd = upconn_fd(r->p[i].c);
            pf[i].events = upconn_events(r->p[i].c);
            pf[i].revents = 0;
            ready |= upconn_ready(r->p[i].c);
        }
        int wait_ms = ready || until <= now ? 0 : (int)((until - now + 999999) / 1000000);
        int pr = poll(pf, r->np, wait_ms);
        if (pr < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            pr = 0;
        }
        now = cas_now_ns();
        for (size_t i = 0; i < r->np; i++) {
            struct race_req *q = &r->p[i];
            int st = 0;
            if ((pr > 0 && pf[i].revents) || upconn_ready(q->c))
                st = race_step(r, q, now, err, errlen);
            bool stall = false;
            if (st == 0 && now < race_deadline(r, q, &stall))
                continue; /* still coming: keep racing */
            struct race_req done = *q;
            *b = done.b;
            r->p[i] = r->p[--r->np];
            if (st == 1) {
                *rc = 0;
                *head = done.head;
                src->c = done.c;
                *body = done.body;
                if (head->status == 404)
                    race_note_404(r, done.started_ns, now);
                if (done.hedge)
                    __atomic_add_fetch(&bal->ctr.hedge_wins, 1, __ATOMIC_RELAXED);
                race_mark_stalled(r, done.started_ns);
                return 1;
            }
            upconn_abandon(done.c);
            free(done.body);
            if (st < 0) {
                *rc = st == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
                return 1;
            }
            uint64_t zero = 0;
            __atomic_compare_exchange_n(&r->v->b[done.b]->stalled_since_ns, &zero, done.started_ns,
                                        false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
            uint64_t ms = (now - done.started_ns) / 1000000;
            if (done.have_head)
                snprintf(err, errlen, "body stalled at %zu of %" PRId64 " bytes (%" PRIu64 " ms)",
                         done.relayed ? 0 : done.got, done.head.content_length, ms);
            else if (stall)
                snprintf(err, errlen,
                         "no complete answer head in %" PRIu64 " ms, while %zu other "
                         "cop%s answered that %s none (--stall-ms)",
                         ms, r->n404, r->n404 == 1 ? "y" : "ies",
                         r->n404 == 1 ? "it has" : "they have");
            else
                snprintf(err, errlen, "no complete answer head in %u ms",
                         bal->opt.first_byte_timeout_ms);
            *rc = -ETIMEDOUT;
            return 1;
        }
    }
}

/* Drops the requests still waiting for an answer: their connections are
 * closed, never pooled. */
static void race_end(struct race *r)
{
    for (size_t i = 0; i < r->np; i++) {
        upconn_abandon(r->p[i].c);
        free(r->p[i].body);
    }
    r->np = 0;
}

struct get_ctx {
    struct balancer *bal;
    struct view *v;
    struct cas_key key;
    struct get_src src;
    struct bstream_head head;
    size_t backend;
    /* Whole-object GETs only. Tags cached (tagcache.h): tags checks each
     * block and hash is NULL; otherwise hash checks the key and tags, when
     * not NULL, computes the block tags the cache gets when the digest
     * matched. */
    struct cas_hash *hash;
    struct tag_stream *tags;
    uint64_t size;
    uint64_t sent;
    bool complete;
    size_t repair[64];
    size_t nrepair;
};

/* Ends a GET: the backend connection back to its pool, repairs queued. */
static void get_ctx_release(struct get_ctx *g)
{
    src_close(&g->src);
    if (g->complete) {
        for (size_t i = 0; i < g->nrepair; i++)
            repair_enqueue(g->bal, &g->key, g->v->b[g->repair[i]]->url);
    }
    if (g->hash)
        cas_hash_free(g->hash);
    tag_stream_close(g->tags);
    view_put(g->v);
}

static void get_ctx_free(void *cls)
{
    get_ctx_release(cls);
    free(cls);
}

static ssize_t get_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct get_ctx *g = cls;
    char err[256];
    if (g->size != HTTP_SIZE_UNKNOWN && max > g->size - g->sent)
        max = (size_t)(g->size - g->sent);
    if (max == 0)
        return HTTP_STREAM_END;
    /* Fill the block rather than hand over each 16 KiB the backend sends:
     * fewer, larger writes to the client. Each read is checked (tags) or
     * hashed at once, while it is still in the CPU's cache. */
    ssize_t n = 0;
    size_t want = max < GET_FILL ? max : GET_FILL;
    bool corrupt = false, unchecked = false;
    while ((size_t)n < want) {
        ssize_t r = src_read(&g->src, buf + n, max - (size_t)n, err, sizeof(err));
        if (r < 0 && n == 0)
            n = r;
        if (r <= 0)
            break;
        /* Checking against cached tags: a block is checked as its last
         * byte comes in, the last block before the last bytes go out. */
        int tr = g->tags ? tag_stream_update(g->tags, buf + n, (size_t)r) : 0;
        if (g->hash)
            cas_hash_update(g->hash, buf + n, (size_t)r);
        n += r;
        if (tr < 0 && tag_stream_checking(g->tags)) {
            corrupt = tr == -EBADMSG;
            unchecked = !corrupt; /* OpenSSL failed: no verdict */
            break;
        }
    }
    struct backend *b = g->v->b[g->backend];
    if (n <= 0) {
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&g->key, hex);
        log_warn("GET %s from %s: aborted after %" PRIu64 " bytes: %s", hex, b->url, g->sent,
                 n == 0 ? "short body" : err);
        __atomic_add_fetch(&g->bal->ctr.aborted_streams, 1, __ATOMIC_RELAXED);
        return HTTP_STREAM_ERROR;
    }
    if (g->hash && g->sent + (uint64_t)n == g->size) {
        unsigned char d[CAS_MAX_DIGEST];
        cas_hash_final(g->hash, d);
        corrupt = memcmp(d, g->key.digest, g->key.algo->digest_len) != 0;
        if (!corrupt && g->tags)
            tag_stream_commit(g->tags);
    }
    if (unchecked || corrupt) {
        char hex[CAS_MAX_HEX + 1];
        cas_key_hex(&g->key, hex);
        __atomic_add_fetch(&g->bal->ctr.aborted_streams, 1, __ATOMIC_RELAXED);
        if (!corrupt) {
            log_error("GET %s from %s: aborted after %" PRIu64 " bytes: cannot compute block tags",
                      hex, b->url, g->sent);
            return HTTP_STREAM_ERROR;
        }
        log_error("GET %s: %s served a copy that does not match its key; aborted", hex, b->url);
        __atomic_add_fetch(&g->bal->ctr.corrupt_copies, 1, __ATOMIC_RELAXED);
        repair_enqueue(g->bal, &g->key, b->url);
        return HTTP_STREAM_ERROR;
    }
    g->sent += (uint64_t)n;
    if (g->sent == g->size)
        g->complete = true;
    return n;
}

/* Reads a whole small body into *out (or takes `have`, the body already
 * read within the race, which it then owns) and, when it is the whole
 * object (a 200, or a 206 of every byte), checks its digest (-EBADMSG when
 * it does not match). */
static int read_small(struct balancer *bal, struct get_ctx *g, struct get_src *s, size_t b,
                      char *have, char **out, size_t *out_len, char *err, size_t errlen)
{
    size_t len = (size_t)g->head.content_length, got = have ? len : 0;
    char *buf = have ? have : malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    while (got < len) {
        ssize_t n = src_read(s, buf + got, len - got, err, errlen);
        if (n <= 0) {
            if (n == 0)
                snprintf(err, errlen, "short body: %zu of %zu bytes", got, len);
            free(buf);
            return -EIO;
        }
        got += (size_t)n;
    }
    if (answer_is_whole(&g->head)) {
        unsigned char d[CAS_MAX_DIGEST];
        cas_hash_buffer(g->key.algo, buf, len, d);
        if (memcmp(d, g->key.digest, g->key.algo->digest_len) != 0) {
            free(buf);
            snprintf(err, errlen, "served a copy that does not match its key");
            log_error("GET: %s served a corrupt copy; trying another backend", g->v->b[b]->url);
            __atomic_add_fetch(&bal->ctr.corrupt_copies, 1, __ATOMIC_RELAXED);
            return -EBADMSG;
        }
    }
    *out = buf;
    *out_len = len;
    return 0;
}

static void object_headers(struct http_req *req, const char *hex, long status,
                           const char *content_range)
{
    char etag[CAS_MAX_HEX + 3];
    size_t hl = strlen(hex);
    etag[0] = '"';
    memcpy(etag + 1, hex, hl);
    etag[hl + 1] = '"';
    etag[hl + 2] = '\0';
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Accept-Ranges", "bytes");
    http_add_header(req, "Cache-Control", "public, max-age=31536000, immutable");
    if (status == 206 && content_range[0])
        http_add_header(req, "Content-Range", content_range);
}

static void reply_small(struct http_req *req, struct get_ctx *g, const char *hex, char *body,
                        size_t len)
{
    http_reply_owned(req, (unsigned)g->head.status, "application/octet-stream", body, len);
    object_headers(req, hex, g->head.status, g->head.content_range);
}

/* The current view and the route's key (and its hex); NULL after answering
 * 400 for a bad key. The caller puts the view back. */
static struct view *view_for_key(struct http_req *req, struct cas_key *key, char *hex)
{
    struct view *v = view_get(req->app);
    char err[512];
    if (view_parse_key(v, req->param, req->param_len, key, err, sizeof(err)) < 0) {
        view_put(v);
        http_error(req, 400, "%s", err);
        return NULL;
    }
    cas_key_hex(key, hex);
    return v;
}

void proxy_bad_key(struct http_req *req)
{
    struct cas_key key;
    char hex[CAS_MAX_HEX + 1];
    struct view *v = view_for_key(req, &key, hex); /* always 400: the key holds a slash */
    if (v) {
        view_put(v); /* cannot happen; never serve it as a key */
        http_error(req, 400, "bad key \"%.*s\"", (int)req->param_len, req->param);
    }
}

void proxy_get(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct cas_key key;
    char hex[CAS_MAX_HEX + 1];
    struct view *v = view_for_key(req, &key, hex);
    if (!v)
        return;
    char err[512];
    gc_touch(bal, v, &key);

    size_t order[v->n ? v->n : 1], nhome = 0;
    size_t n = read_order(bal, v, &key, order, &nhome);
    /* Preconditions (RFC 9110, common/httpd.h) are ours to answer: the tag
     * is the key. A 304 or 412 only needs to know the object exists: HEAD. */
    bool use_range = true;
    unsigned pre = http_preconditions(req, hex, &use_range);
    bool head_only = req->is_head || pre;
    const char *range = head_only || !use_range ? NULL : http_header(req, "Range");
    /* A Range is read as a storaged reads it (common/range.c) and forwarded
     * only when it is one we understand, so that a backend's 206 or 416 can
     * be checked against it; any other Range is ignored here as there (RFC
     * 9110 14.2): the whole object, 200. */
    struct range_spec want_spec;
    const struct range_spec *want = NULL;
    char fwd[64]; /* forwarded as parsed: short and plain, whatever was sent */
    if (range && range_spec_parse(range, &want_spec) == 0) {
        want = &want_spec;
        if (want_spec.suffix)
            snprintf(fwd, sizeof(fwd), "bytes=-%" PRIu64, want_spec.b);
        else if (want_spec.b == UINT64_MAX)
            snprintf(fwd, sizeof(fwd), "bytes=%" PRIu64 "-", want_spec.a);
        else
            snprintf(fwd, sizeof(fwd), "bytes=%" PRIu64 "-%" PRIu64, want_spec.a, want_spec.b);
        range = fwd;
    } else {
        range = NULL;
    }
    /* On the stack: only a relayed (large) body needs it on the heap. */
    struct get_ctx gs;
    memset(&gs, 0, offsetof(struct get_ctx, repair));
    gs.nrepair = 0;
    struct get_ctx *g = &gs;
    g->bal = bal;
    g->v = v;
    g->key = key;
    size_t not_found = 0, failed = 0, skipped = 0;
    char last_err[300] = "";
    char *small = NULL;
    size_t small_len = 0;
    /* A backend the probes have marked down is not asked (a hung one would
     * hold the client until its hedge): the answer is what a dead one would
     * give. When every backend is down, all are tried. */
    bool down[v->n ? v->n : 1];
    backend_known_down(bal, v, down);
    size_t ndown = 0;
    for (size_t i = 0; i < v->n; i++)
        ndown += down[i];
    if (ndown < v->n) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (down[order[i]])
                skipped++;
            else
                order[k++] = order[i];
        }
        n = k;
    }
    struct race race;
    race_init(&race, bal, v, hex, head_only ? "HEAD" : "GET", range, want, order, n);
    size_t b;
    struct get_src s;
    int rc;
    char *rbody;
    while (race_next(&race, &b, &s, &g->head, &rbody, &rc, err, sizeof(err))) {
        if (rc < 0) {
            failed++;
            snprintf(last_err, sizeof(last_err), "%s: %s", v->b[b]->url, err);
            backend_note_failure(bal, v->b[b], err);
            __atomic_add_fetch(&bal->ctr.failovers, 1, __ATOMIC_RELAXED);
            continue;
        }
        long st = g->head.status;
        if ((st == 200 || st == 206) &&
            !answer_matches(&g->head, hex, head_only, want, err, sizeof(err))) {
            free(rbody); /* NULL: a body is read in the race only for a matching head */
            src_close(&s);
            failed++;
            snprintf(last_err, sizeof(last_err), "%s: %s", v->b[b]->url, err);
            log_warn("GET %s: %s %s; trying another backend", hex, v->b[b]->url, err);
            backend_note_failure(bal, v->b[b], err);
            __atomic_add_fetch(&bal->ctr.failovers, 1, __ATOMIC_RELAXED);
            continue;
        }
        if ((st == 200 || st == 206) && !head_only)
            src_set_read_budget(&s, read_budget(bal, (uint64_t)g->head.content_length));
        if ((st == 200 || st == 206) && !head_only && g->head.content_length <= GET_SMALL_MAX) {
            /* Small: take it whole and check it before answering, so a
             * failure or a corrupt copy can still move on to another
             * backend. */
            int r = read_small(bal, g, &s, b, rbody, &small, &small_len, err, sizeof(err));
            src_close(&s);
            if (r == 0) {
                g->backend = b;
                g->complete = true;
                break;
            }
            failed++;
            snprintf(last_err, sizeof(last_err), "%s: %s", v->b[b]->url, err);
            __atomic_add_fetch(&bal->ctr.failovers, 1, __ATOMIC_RELAXED);
            if (r == -EBADMSG && g->nrepair < 64)
                g->repair[g->nrepair++] = b;
            continue;
        }
        if (st == 200 || st == 206) {
            g->src = s;
            g->backend = b;
            break;
        }
        src_close(&s);
        uint64_t size416 = 0;
        if (st == 416 && refusal_plausible(&g->head, &key, want, &size416, err, sizeof(err))) {
            char cr[64];
            snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size416);
            http_error(req, 416, "range not satisfiable");
            http_add_header(req, "Content-Range", cr);
            race_end(&race);
            get_ctx_release(g);
            return;
        }
        bool home = is_home(v, &key, b);
        if (st == 404) {
            not_found++;
        } else {
            /* Any other answer cannot be right: the key and the request
             * were ours to judge (a 400), no precondition was forwarded (a
             * 304 or 412), a 416 did not fit the Range; a 5xx is a failure
             * too. That backend failed this read: ask the next copy. */
            if (st != 416)
                snprintf(err, sizeof(err), "answered HTTP %ld", st);
            failed++;
            snprintf(last_err, sizeof(last_err), "%s: %s", v->b[b]->url, err);
            if (st < 500) {
                log_warn("GET %s: %s %s; trying another backend", hex, v->b[b]->url, err);
                backend_note_failure(bal, v->b[b], err);
            }
            __atomic_add_fetch(&bal->ctr.failovers, 1, __ATOMIC_RELAXED);
        }
        /* A home that has lost its copy (404) or stopped serving a corrupt
         * one (5xx other than overload) gets it back after we serve. */
        if (home && (st == 404 || (st >= 500 && st != 503)) && g->nrepair < 64)
            g->repair[g->nrepair++] = b;
    }
    race_end(&race);
    /* The serving backend says a GC cycle is on that this balancer has not
     * heard of yet: unmark the object on every holder before answering. */
    if ((small || g->src.c || g->src.s) && g->head.gc_id)
        gc_learn(bal, v, &key, g->head.gc_id);
    if (pre && (g->src.c || g->src.s)) {
        g->complete = true; /* nothing to relay: repairs may go ahead */
        get_ctx_release(g);
        if (pre == 304) {
            if (g->head.content_length >= 0)
                http_reply_not_modified(req, (uint64_t)g->head.content_length);
            else
                http_reply(req, 304, NULL, "", 0);
            object_headers(req, hex, 200, "");
        } else {
            http_error(req, 412, "precondition failed: object %s has ETag \"%s\"", hex, hex);
        }
        return;
    }
    if (small) {
        reply_small(req, g, hex, small, small_len);
        get_ctx_release(g);
        return;
    }
    if (!g->src.c && !g->src.s) {
        if (not_found)
            http_error(req, 404, "object %s not found (%zu backend%s unreachable)", hex,
                       failed + skipped, failed + skipped == 1 ? "" : "s");
        else
            http_error(req, 503, "no backend could serve %s; last error: %s", hex,
                       last_err[0] ? last_err : "no backends");
        g->nrepair = 0;
        get_ctx_release(g);
        return;
    }
    long status = g->head.status;
    g->size = g->head.content_length >= 0 ? (uint64_t)g->head.content_length : HTTP_SIZE_UNKNOWN;
    /* Every whole object (a 200, or a 206 of every byte) is checked as it
     * is relayed: against the block tags this balancer took when it last
     * relayed the object, else hashed (and, from its second read on,
     * tagged for next time); its last bytes go out only once the check
     * passed (get_read). */
    if (answer_is_whole(&g->head) && !req->is_head) {
        if (bal->tags)
            g->tags = tag_stream_open(bal->tags, &key, g->size);
        if (!g->tags || !tag_stream_checking(g->tags))
            g->hash = cas_hash_new(key.algo);
        if (!g->hash && !(g->tags && tag_stream_checking(g->tags))) {
            get_ctx_release(g);
            http_error(req, 500, "out of memory");
            return;
        }
    }
    if (req->is_head)
        g->complete = true; /* nothing to relay: repairs may go ahead */
    char content_range[128];
    snprintf(content_range, sizeof(content_range), "%s", g->head.content_range);
    struct get_ctx *heap = malloc(sizeof(*heap));
    if (!heap) {
        get_ctx_release(g);
        http_error(req, 500, "out of memory");
        return;
    }
    *heap = *g;
    /* A HEAD sends no body: it keeps the default buffer. */
    size_t block = heap->size < GET_BLOCK ? (size_t)heap->size : GET_BLOCK;
    if (req->is_head)
        block = HTTP_STREAM_BLOCK;
    http_reply_stream_block(req, (unsigned)status, "application/octet-stream", heap->size,
                            block ? block : 1, get_read, heap, get_ctx_free);
    object_headers(req, hex, status, content_range);
}

/* ---- PUT and POST ------------------------------------------------------- */

struct put_ctx {
    struct balancer *bal;
    struct view *v;
    struct cas_key key;
    bool key_known; /* PUT: from the URL; POST: once the body is in */
    struct cas_hash *hash;
    struct fanout *f;
    int64_t expected; /* Content-Length, -1 when chunked */
    uint64_t received;
    bool sync_off;
    bool cask; /* POST /: answer in Cask's JSON */
    /* "X-CAS-Timestamp: <unix us>", taken once at the client request's head
     * and sent to every backend, so that each orders this write against a
     * client DELETE by when the client sent them (common/stamp.h). */
    char stamp[64];
    /* POST only */
    int spool_fd;
    char content_type[256];
};

static void put_ctx_cleanup(struct http_req *req)
{
    struct put_ctx *p = req->ctx;
    if (!p)
        return;
    fanout_free(p->f);
    if (p->hash)
        cas_hash_free(p->hash);
    if (p->spool_fd >= 0)
        close(p->spool_fd);
    view_put(p->v);
    free(p);
    req->ctx = NULL;
}

static void put_copies_headers(struct http_req *req, const struct put_ctx *p, size_t ok);

/* Chooses the write set for key; 503 (set on req) when too few failure
 * domains are writable. Fills urls (malloc'd) and backends. */
static int plan_write(struct http_req *req, struct put_ctx *p, char ***urls_out, size_t *backends,
                      size_t *n_out)
{
    struct view *v = p->v;
    bool writable[v->n ? v->n : 1];
    backend_health(p->bal, v, writable, NULL);
    size_t n =
        ring_write_set(v->ring, ring_position(&p->key), v->cfg->replicas, writable, backends);
    if (n < v->cfg->min_replicas) {
        http_error(req, 503, "only %zu failure domain%s can take writes; min_replicas is %u", n,
                   n == 1 ? "" : "s", v->cfg->min_replicas);
        put_copies_headers(req, p, 0);
        return -EAGAIN;
    }
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&p->key, hex);
    char **urls = calloc(n, sizeof(*urls));
    for (size_t i = 0; urls && i < n; i++)
        if (asprintf(&urls[i], "%s/objects/%s%s", v->b[backends[i]]->url, hex,
                     p->sync_off ? "?sync=0" : "") < 0)
            urls[i] = NULL;
    *urls_out = urls;
    *n_out = n;
    return 0;
}

static void free_urls(char **urls, size_t n)
{
    for (size_t i = 0; urls && i < n; i++)
        free(urls[i]);
    free(urls);
}

/*
 * The backends that complete key's placement once those that failed or
 * were dropped by this write are passed over: the write set recomputed
 * with them marked unwritable. has[b] says backend b holds a copy (stored
 * by this write); failed[b] that it failed it. Fills out, returns the count.
 */
static size_t put_placement(struct put_ctx *p, const bool *has, const bool *failed, size_t *out)
{
    struct view *v = p->v;
    bool writable[v->n ? v->n : 1];
    backend_health(p->bal, v, writable, NULL);
    for (size_t b = 0; b < v->n; b++)
        if (failed[b] && !has[b])
            writable[b] = false;
    return ring_write_set(v->ring, ring_position(&p->key), v->cfg->replicas, writable, out);
}

/* Copies key from backend src, which holds it, to backend dst with the one
 * copy path (repair_copy, common/copy.h): streamed, the digest checked
 * before dst gets the last byte, bounded by the balancer's timeouts. The
 * PUT completes this client's write, so it is sent as one (no ?replica=1;
 * ?sync=0 when the client asked; the client request's X-CAS-Timestamp). 0 once dst answered 2xx,
 * else -errno with err. */
static int put_copy(struct put_ctx *p, size_t src, size_t dst, char *err, size_t errlen)
{
    struct view *v = p->v;
    struct cas_copy_result res;
    int rc = repair_copy(p->bal, v, NULL, v->b[src]->url, v->b[dst]->url, &p->key, true,
                         p->sync_off, p->stamp, NULL, &res);
    if (rc < 0)
        snprintf(err, errlen, "%s", res.error);
    return rc;
}

/*
 * A write with at least one durable copy but fewer than min_replicas: walk
 * on along the ring (past the targets that failed or were dropped) and copy
 * the object there from a backend that stored it, now, until min_replicas
 * copies are durable or the walk runs out. Updates has[] and returns the
 * copies made.
 */
static size_t put_complete_quorum(struct put_ctx *p, bool *has, const bool *failed, size_t ok,
                                  struct cas_buf *why)
{
    struct view *v = p->v;
    size_t src = v->n;
    for (size_t b = 0; b < v->n && src == v->n; b++)
        if (has[b])
            src = b;
    if (src == v->n)
        return 0;
    size_t set[v->n ? v->n : 1];
    size_t n = put_placement(p, has, failed, set);
    size_t made = 0;
    for (size_t i = 0; i < n && ok + made < v->cfg->min_replicas; i++) {
        if (has[set[i]])
            continue;
        char err[300];
        if (put_copy(p, src, set[i], err, sizeof(err)) == 0) {
            has[set[i]] = true;
            made++;
        } else {
            cas_buf_printf(why, "%swalk-on copy to %s: %s", why->len ? "; " : "",
                           v->b[set[i]]->url, err);
        }
    }
    return made;
}

/*
 * A write that made fewer than `replicas` copies: queue a copy (read from a
 * backend that has one, as read repair does) to each backend that now
 * completes the placement. Returns the number of copies queued.
 */
static size_t put_walk_on(struct put_ctx *p, const bool *has, const bool *failed)
{
    struct view *v = p->v;
    size_t set[v->n ? v->n : 1];
    size_t n = put_placement(p, has, failed, set);
    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has[set[i]]) {
            repair_enqueue(p->bal, &p->key, v->b[set[i]]->url);
            queued++;
        }
    }
    return queued;
}

/* X-CAS-Copies (durable copies made by this request) and X-CAS-Replicas
 * (the copies the cluster keeps), on every write answer. */
static void put_copies_headers(struct http_req *req, const struct put_ctx *p, size_t ok)
{
    char v[32];
    snprintf(v, sizeof(v), "%zu", ok);
    http_add_header(req, "X-CAS-Copies", v);
    snprintf(v, sizeof(v), "%u", p->v->cfg->replicas);
    http_add_header(req, "X-CAS-Replicas", v);
}

/* Sets the response for a finished fan-out. */
static void put_answer(struct http_req *req, struct put_ctx *p)
{
    size_t ok = 0, n = fanout_count(p->f);
    bool created = false;
    long worst = 0;
    size_t nb = p->v->n ? p->v->n : 1;
    bool has[nb], failed[nb];
    memset(has, 0, sizeof(has));
    memset(failed, 0, sizeof(failed));
    struct cas_buf why;
    cas_buf_init(&why);
    for (size_t i = 0; i < n; i++) {
        const struct fanout_result *r = fanout_result(p->f, i);
        const char *url = p->v->b[r->backend]->url;
        if (r->status == 200 || r->status == 201) {
            ok++;
            has[r->backend] = true;
            created |= r->status == 201;
            continue;
        }
        failed[r->backend] = true;
        char msg[200] = "";
        if (r->status && r->resp.data)
            cas_json_get_string(r->resp.data, "error", msg, sizeof(msg));
        cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", url,
                       r->status ? (msg[0] ? msg : "error") : r->err);
        if (!r->status)
            backend_note_failure(p->bal, p->v->b[r->backend], r->err);
        /* The client's fault outranks the cluster's. */
        if (r->status == 422 || (r->status == 413 && worst != 422) ||
            (r->status == 507 && worst != 422 && worst != 413) || (!worst && r->status))
            worst = r->status;
    }
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&p->key, hex);
    bool client_fault = worst == 422 || worst == 413 || worst == 400;
    if (ok > 0 && ok < p->v->cfg->min_replicas && !client_fault) {
        /* Too few copies where the body went (a target hung or failed):
         * the bytes are gone, but a backend that stored them can give
         * them to the next ones along the ring. */
        size_t made = put_complete_quorum(p, has, failed, ok, &why);
        if (made)
            log_warn("PUT %s: %zu cop%s made along the ring to reach min_replicas", hex, made,
                     made == 1 ? "y" : "ies");
        ok += made;
    }
    if (ok >= p->v->cfg->min_replicas && ok > 0) {
        gc_touch(p->bal, p->v, &p->key);
        size_t queued = 0;
        if (ok < p->v->cfg->replicas) {
            __atomic_add_fetch(&p->bal->ctr.under_replicated_writes, 1, __ATOMIC_RELAXED);
            queued = put_walk_on(p, has, failed);
        }
        if (why.len || ok < p->v->cfg->replicas)
            log_warn("PUT %s: stored %zu of %u copies (%zu more queued further along the ring)%s%s",
                     hex, ok, p->v->cfg->replicas, queued, why.len ? "; " : "",
                     why.len ? why.data : "");
        if (p->cask) {
            struct cas_buf b;
            cas_buf_init(&b);
            cas_buf_printf(&b, "{\"key\":\"%s:%s\",\"success\":true}", p->key.algo->name, hex);
            http_reply_json(req, 201, &b);
        } else if (req->route && !strcmp(req->method, "POST")) {
            char body[CAS_MAX_HEX + 2];
            snprintf(body, sizeof(body), "%s\n", hex);
            http_reply(req, 201, "text/plain", body, strlen(body));
            char loc[CAS_MAX_HEX + 16];
            snprintf(loc, sizeof(loc), "/objects/%s", hex);
            http_add_header(req, "Location", loc);
        } else {
            /* As a storaged answers (docs/API.md): the key and a newline;
             * the copies made are in X-CAS-Copies. */
            char body[CAS_MAX_HEX + 2];
            snprintf(body, sizeof(body), "%s\n", hex);
            http_reply(req, created ? 201 : 200, "text/plain", body, strlen(body));
        }
        put_copies_headers(req, p, ok);
    } else if (worst == 422 || worst == 413 || worst == 507 || worst == 400) {
        http_error(req, (unsigned)worst, "%s", why.data ? why.data : "refused");
    } else {
        http_error(req, 503, "only %zu of the %u copies needed were stored: %s", ok,
                   p->v->cfg->min_replicas, why.data ? why.data : "no backend");
    }
    if (!(ok >= p->v->cfg->min_replicas && ok > 0))
        put_copies_headers(req, p, ok);
    cas_buf_free(&why);
}

/* True when the digest of the bytes hashed so far is the key. */
static bool digest_matches(struct put_ctx *p)
{
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_final(p->hash, d);
    return memcmp(d, p->key.digest, p->key.algo->digest_len) == 0;
}

static void digest_mismatch(struct http_req *req, struct put_ctx *p)
{
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&p->key, hex);
    fanout_free(p->f); /* cut every transfer before its last byte */
    p->f = NULL;
    http_error(req, 422, "the body does not hash to %s", hex);
    put_copies_headers(req, p, 0);
}

static int put_body(struct http_req *req, const char *data, size_t len)
{
    struct put_ctx *p = req->ctx;
    cas_hash_update(p->hash, data, len);
    p->received += len;
    if (p->expected >= 0 && p->received >= (uint64_t)p->expected && !digest_matches(p)) {
        digest_mismatch(req, p);
        return -1;
    }
    if (fanout_feed(p->f, data, len) == 0) {
        /* Every backend has answered or failed before the end. */
        put_answer(req, p);
        return -1;
    }
    return 0;
}

static void put_done(struct http_req *req)
{
    struct put_ctx *p = req->ctx;
    if (p->expected < 0 || p->received == 0) {
        if (!digest_matches(p)) {
            digest_mismatch(req, p);
            return;
        }
    }
    fanout_finish(p->f);
    put_answer(req, p);
}

/* ?sync= is exactly 0 or 1 (cas_parse_bit); false after a 400 otherwise. */
static bool sync_param_ok(struct http_req *req)
{
    const char *sync = http_query(req, "sync");
    bool on;
    if (sync && cas_parse_bit(sync, &on) < 0) {
        http_error(req, 400, "sync=\"%s\": want 0 or 1", sync);
        return false;
    }
    return true;
}

static struct put_ctx *put_ctx_new(struct http_req *req)
{
    struct put_ctx *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->bal = req->app;
    p->v = view_get(p->bal);
    p->spool_fd = -1;
    p->expected = req->has_length ? (int64_t)req->content_length : -1;
    snprintf(p->stamp, sizeof(p->stamp), CAS_STAMP_HEADER ": %" PRIu64, cas_stamp_now());
    const char *sync = http_query(req, "sync");
    p->sync_off = sync && !strcmp(sync, "0");
    req->ctx = p;
    req->cleanup = put_ctx_cleanup;
    return p;
}

void proxy_put(struct http_req *req)
{
    if (!sync_param_ok(req))
        return;
    struct put_ctx *p = put_ctx_new(req);
    if (!p) {
        http_error(req, 500, "out of memory");
        return;
    }
    char err[512];
    if (view_parse_key(p->v, req->param, req->param_len, &p->key, err, sizeof(err)) < 0) {
        http_error(req, 400, "%s", err);
        return;
    }
    char **urls = NULL;
    size_t backends[p->v->n ? p->v->n : 1], n = 0;
    if (plan_write(req, p, &urls, backends, &n) < 0)
        return;
    p->hash = cas_hash_new(p->key.algo);
    int rc = urls && p->hash ? fanout_start_with(p->bal, p->v, "PUT", urls, backends, n,
                                                 p->expected, p->stamp, &p->f)
                             : -ENOMEM;
    free_urls(urls, n);
    if (rc < 0) {
        http_error(req, 500, "out of memory");
        return;
    }
    fanout_set_quorum(p->f, p->v->cfg->min_replicas, p->v->cfg->write_straggler_ms);
    req->on_body = put_body;
    req->on_done = put_done;
}

/* Counts the distinct failure domains that can take writes now. */
static size_t writable_domains(struct balancer *bal, const struct view *v)
{
    bool writable[v->n ? v->n : 1];
    backend_health(bal, v, writable, NULL);
    size_t count = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (!writable[i])
            continue;
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            if (writable[j] && !strcmp(v->b[j]->domain, v->b[i]->domain))
                seen = true;
        count += !seen;
    }
    return count;
}

static int spool_body(struct http_req *req, const char *data, size_t len)
{
    struct put_ctx *p = req->ctx;
    while (len) {
        ssize_t w = write(p->spool_fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            http_error(req, errno == ENOSPC ? 507 : 500, "cannot spool the body to %s: %s",
                       p->bal->opt.spool_dir, strerror(errno));
            return -1;
        }
        if (p->hash)
            cas_hash_update(p->hash, data, (size_t)w);
        data += w;
        len -= (size_t)w;
        p->received += (uint64_t)w;
    }
    return 0;
}

struct mp_span {
    uint64_t off, len;
    bool any;
};

/* The file part's bytes arrive in order and contiguous: note where. */
static int mp_span_add(void *cls, const char *data, size_t len, uint64_t off)
{
    (void)data;
    struct mp_span *sp = cls;
    if (!sp->any) {
        sp->off = off;
        sp->any = true;
    } else if (off != sp->off + sp->len) {
        return -EINVAL; /* cannot happen: one file part, delivered in order */
    }
    sp->len += len;
    return 0;
}

/*
 * Finds the part named "file" in a multipart/form-data body spooled to fd,
 * with the storaged's reader (common/multipart.c), so that both daemons
 * accept and refuse the same forms. Sets *off and *len.
 */
static int multipart_find(int fd, uint64_t size, const char *content_type, uint64_t *off,
                          uint64_t *len, char *err, size_t errlen)
{
    struct mp_span sp = {0};
    struct mp_reader *r = malloc(sizeof(*r));
    char *buf = malloc(SPOOL_CHUNK);
    int rc = r && buf ? mp_init(r, content_type, mp_span_add, &sp, err, errlen) : -ENOMEM;
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    for (uint64_t at = 0; rc == 0 && at < size;) {
        size_t want = size - at < SPOOL_CHUNK ? (size_t)(size - at) : SPOOL_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)at);
        if (n <= 0) {
            snprintf(err, errlen, "spool read: %s", n < 0 ? strerror(errno) : "short");
            rc = -EIO;
            break;
        }
        if ((rc = mp_feed(r, buf, (size_t)n)) < 0)
            snprintf(err, errlen, "%s", r->err);
        at += (uint64_t)n;
    }
    if (rc == 0 && (rc = mp_finish(r)) < 0)
        snprintf(err, errlen, "%s", r->err);
    if (rc == 0) {
        *off = sp.off;
        *len = sp.len;
    }
    free(buf);
    free(r);
    return rc;
}

/* Hashes len bytes of fd from off. */
static int hash_range(int fd, uint64_t off, uint64_t len, struct cas_hash *h)
{
    char *buf = malloc(SPOOL_CHUNK);
    if (!buf)
        return -ENOMEM;
    while (len) {
        size_t want = len < SPOOL_CHUNK ? (size_t)len : SPOOL_CHUNK;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r <= 0) {
            free(buf);
            return -EIO;
        }
        cas_hash_update(h, buf, (size_t)r);
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    free(buf);
    return 0;
}

static void post_done(struct http_req *req)
{
    struct put_ctx *p = req->ctx;
    uint64_t off = 0, len = p->received;
    char err[512];
    if (p->cask && mp_is_form(p->content_type)) {
        if (multipart_find(p->spool_fd, p->received, p->content_type, &off, &len, err,
                           sizeof(err)) < 0) {
            http_error(req, 400, "%s", err);
            return;
        }
        cas_hash_reset(p->hash);
        if (hash_range(p->spool_fd, off, len, p->hash) < 0) {
            http_error(req, 500, "cannot read the spooled body");
            return;
        }
    }
    /* The HTTP layer let the body run up to the form slack over
     * --max-object-size (a form's own bytes); the object itself may not. */
    uint64_t max = p->bal->opt.max_object_size;
    if (max && len > max) {
        http_error(req, 413, "object is over the limit of %" PRIu64 " bytes", max);
        return;
    }
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_final(p->hash, d);
    p->key.algo = p->v->algo ? p->v->algo : cas_hash_by_name("sha1");
    memcpy(p->key.digest, d, p->key.algo->digest_len);
    char **urls = NULL;
    size_t backends[p->v->n ? p->v->n : 1], n = 0;
    if (plan_write(req, p, &urls, backends, &n) < 0)
        return;
    int rc = urls ? fanout_start_with(p->bal, p->v, "PUT", urls, backends, n, (int64_t)len,
                                      p->stamp, &p->f)
                  : -ENOMEM;
    free_urls(urls, n);
    if (rc == 0)
        fanout_set_quorum(p->f, p->v->cfg->min_replicas, p->v->cfg->write_straggler_ms);
    char *buf = rc == 0 ? malloc(SPOOL_CHUNK) : NULL;
    if (!buf) {
        http_error(req, 500, "out of memory");
        return;
    }
    uint64_t left = len;
    while (left) {
        size_t want = left < SPOOL_CHUNK ? (size_t)left : SPOOL_CHUNK;
        ssize_t r = pread(p->spool_fd, buf, want, (off_t)off);
        if (r <= 0) {
            free(buf);
            http_error(req, 500, "cannot read the spooled body");
            return;
        }
        off += (uint64_t)r;
        left -= (uint64_t)r;
        if (fanout_feed(p->f, buf, (size_t)r) == 0)
            break;
    }
    free(buf);
    if (left == 0)
        fanout_finish(p->f);
    put_answer(req, p);
}

static void post_common(struct http_req *req, bool cask)
{
    if (!sync_param_ok(req))
        return;
    struct put_ctx *p = put_ctx_new(req);
    if (!p) {
        http_error(req, 500, "out of memory");
        return;
    }
    p->cask = cask;
    size_t domains = writable_domains(p->bal, p->v);
    if (domains < p->v->cfg->min_replicas) {
        http_error(req, 503, "only %zu failure domain%s can take writes; min_replicas is %u",
                   domains, domains == 1 ? "" : "s", p->v->cfg->min_replicas);
        put_copies_headers(req, p, 0);
        return;
    }
    const char *ct = http_header(req, "Content-Type");
    snprintf(p->content_type, sizeof(p->content_type), "%s", ct ? ct : "");
    p->spool_fd = open(p->bal->opt.spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (p->spool_fd < 0) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/ca-cas-spool-XXXXXX", p->bal->opt.spool_dir);
        p->spool_fd = mkostemp(path, O_CLOEXEC);
        if (p->spool_fd >= 0)
            unlink(path);
    }
    if (p->spool_fd < 0) {
        http_error(req, 500, "cannot create a spool file in %s: %s", p->bal->opt.spool_dir,
                   strerror(errno));
        return;
    }
    const struct cas_hash_algo *algo = p->v->algo ? p->v->algo : cas_hash_by_name("sha1");
    p->hash = cas_hash_new(algo);
    if (!p->hash) {
        http_error(req, 500, "out of memory");
        return;
    }
    req->on_body = spool_body;
    req->on_done = post_done;
}

void proxy_post(struct http_req *req)
{
    post_common(req, false);
}

void proxy_post_cask(struct http_req *req)
{
    post_common(req, true);
}

/* ---- DELETE ------------------------------------------------------------- */

/* upstream_run over the calls whose skip[i] is false (the others are left
 * with status 0). */
static void upstream_run_some(struct balancer *bal, const struct view *v,
                              struct upstream_call *calls, size_t n, const bool *skip,
                              long timeout_ms)
{
    struct upstream_call *some = calloc(n ? n : 1, sizeof(*some));
    size_t m = 0;
    if (!some) {
        for (size_t i = 0; i < n; i++)
            snprintf(calls[i].err, sizeof(calls[i].err), "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!skip[i])
            some[m++] = calls[i];
    upstream_run(bal, v, some, m, timeout_ms);
    for (size_t i = 0, j = 0; i < n; i++)
        if (!skip[i])
            calls[i] = some[j++];
    free(some);
}

/* How long each backend has to answer the check before a delete. */
#define DELETE_CHECK_MS 2000
/* How long each backend has for the DELETE itself (an index append and an
 * fdatasync): a backend that hangs after the check costs no more. */
#define DELETE_MS 10000

/*
 * A DELETE answered 204 is never undone (docs/OPERATIONS.md, "What a DELETE
 * promises"). Any backend may hold a copy (failover writes land outside the
 * home, rebalance moves copies), and a balancer keeps no state, so it
 * deletes only when it can reach every configured backend: first each one
 * must be up and writable by the probes and answer a HEAD within
 * DELETE_CHECK_MS; otherwise the answer is 503 and nothing is deleted. Then
 * every backend gets the DELETE, and each leaves a tombstone (even where
 * the object was absent) that refuses copies still in flight from read
 * repair, anti-entropy or rebalance. If a backend fails between the check
 * and its DELETE the answer is 503 too (retry): the copies already gone
 * stay gone, the others stay readable.
 */
void proxy_delete(struct http_req *req)
{
    struct balancer *bal = req->app;
    /* The delete's stamp, the same on every backend (common/stamp.h): a
     * write sent before it that reaches a backend after it is refused. */
    char stamp[64];
    snprintf(stamp, sizeof(stamp), CAS_STAMP_HEADER ": %" PRIu64, cas_stamp_now());
    struct cas_key key;
    char hex[CAS_MAX_HEX + 1];
    struct view *v = view_for_key(req, &key, hex);
    if (!v)
        return;
    if (!v->n) {
        view_put(v);
        http_error(req, 503, "no backends configured: nothing deleted");
        return;
    }
    struct cas_buf why;
    cas_buf_init(&why);
    /* A backend refused for its other hash cannot hold this key. */
    bool skip[v->n];
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *b = v->b[i];
        skip[i] = b->algo && v->algo && b->algo != v->algo;
        if (skip[i])
            continue;
        if (!b->up)
            cas_buf_printf(&why, "%s%s is down (%s)", why.len ? "; " : "", b->url,
                           b->last_error[0] ? b->last_error : "not probed yet");
        else if (b->read_only)
            cas_buf_printf(&why, "%s%s is read-only", why.len ? "; " : "", b->url);
    }
    pthread_mutex_unlock(&bal->lock);
    struct upstream_call *calls = NULL;
    if (!why.len) {
        calls = calloc(v->n, sizeof(*calls));
        if (!calls) {
            view_put(v);
            cas_buf_free(&why);
            http_error(req, 500, "out of memory");
            return;
        }
        for (size_t i = 0; i < v->n; i++) {
            snprintf(calls[i].url, sizeof(calls[i].url), "%s/objects/%s", v->b[i]->url, hex);
            calls[i].method = "HEAD";
        }
        upstream_run_some(bal, v, calls, v->n, skip, DELETE_CHECK_MS);
        for (size_t i = 0; i < v->n; i++) {
            if (skip[i] || calls[i].status == 200 || calls[i].status == 404)
                continue;
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", v->b[i]->url, d);
        }
        upstream_calls_free(calls, v->n);
    }
    if (why.len) {
        log_warn("DELETE %s refused, nothing deleted: %s", hex, why.data);
        http_error(req, 503,
                   "cannot delete %s while a backend that may hold a copy is unreachable "
                   "(nothing deleted; retry): %s",
                   hex, why.data);
        cas_buf_free(&why);
        free(calls);
        view_put(v);
        return;
    }

    memset(calls, 0, v->n * sizeof(*calls));
    for (size_t i = 0; i < v->n; i++) {
        snprintf(calls[i].url, sizeof(calls[i].url), "%s/objects/%s", v->b[i]->url, hex);
        calls[i].method = "DELETE";
        calls[i].header = stamp;
    }
    upstream_run_some(bal, v, calls, v->n, skip, DELETE_MS);
    size_t deleted = 0, absent = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (skip[i])
            continue;
        if (calls[i].status == 204 || calls[i].status == 200) {
            deleted++;
        } else if (calls[i].status == 404) {
            absent++;
        } else {
            char d[300];
            upstream_describe(&calls[i], d, sizeof(d));
            cas_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", v->b[i]->url, d);
        }
    }
    if (why.len) {
        log_warn("DELETE %s: %zu deleted, %zu absent; %s", hex, deleted, absent, why.data);
        http_error(req, 503,
                   "could not delete %s on every backend (%zu copies deleted; the others "
                   "stay readable; retry): %s",
                   hex, deleted, why.data);
    } else if (deleted) {
        http_reply(req, 204, NULL, "", 0);
    } else {
        http_error(req, 404, "object %s not found", hex);
    }
    cas_buf_free(&why);
    upstream_calls_free(calls, v->n);
    free(calls);
    view_put(v);
}
