/*
 * test_copy.c - the one object-copy path (common/copy.c) against two real
 * HTTP servers on loopback (common/httpd.c): a source that serves an
 * object in one of several ways (right bytes, wrong bytes, short, stalled,
 * 404/410, a wrong length) and a target that stores what hashes to the key
 * or refuses (507/410/403, at once or after the body, or stops reading).
 * Both servers require the bearer token, reads included, so every test
 * also checks that the copy sends it.
 *
 * "Nothing stored" is checked on the target's side: its handler never saw
 * a complete body (on_done not called) and stored nothing. Stalls block a
 * server thread on a condition variable that the test releases once the
 * copy has returned, so no test depends on a sleep racing the code.
 */
#include "copy.h"
#include "httpd.h"
#include "key.h"
#include "log.h"
#include "rebalance.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TOKEN "copy-test-token"

enum src_mode {
    SRC_OK,
    SRC_WRONG,
    SRC_SHORT,
    SRC_STALL,
    SRC_404,
    SRC_410,
    SRC_LONGER,
    SRC_HANG,
    /* no Content-Length (chunked): the object, half of it, or more */
    SRC_CHUNKED,
    SRC_CHUNKED_SHORT,
    SRC_CHUNKED_LONG,
};
enum tgt_mode { TGT_STORE, TGT_EARLY, TGT_LATE, TGT_STALL };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned release_gen; /* bumped by the test: handlers stalled before go on */
    /* what the servers do */
    enum src_mode src;
    enum tgt_mode tgt;
    unsigned tgt_status;
    uint64_t size;             /* the object's */
    char hex[CAS_MAX_HEX + 1]; /* its key: requests for other keys (a cut
                                  transfer of an earlier test arriving late)
                                  are served but not counted */
    const struct cas_hash_algo *algo;
    unsigned char digest[CAS_MAX_DIGEST];
    /* what they saw */
    int gets, puts, bodies_complete, stored;
    int any; /* requests of any key, on either server */
    uint64_t put_bytes;
    bool replica_query;
    struct http_server *srcsrv, *tgtsrv;
    char src_url[64], tgt_url[64];
} T = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The object's byte at offset i: cheap, and not periodic in any block size. */
static inline unsigned char obj_byte(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;
    return (unsigned char)(x >> 56);
}

static void fill(char *buf, uint64_t pos, size_t n)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = (char)obj_byte(pos + k);
}

/* Sets the object's size and computes its key. */
static void object(uint64_t size, char *hex)
{
    T.size = size;
    T.algo = cas_hash_by_name("sha1");
    struct cas_hash *h = cas_hash_new(T.algo);
    char *buf = malloc(1 << 20);
    for (uint64_t pos = 0; pos < size;) {
        size_t n = size - pos < (1u << 20) ? (size_t)(size - pos) : (1u << 20);
        fill(buf, pos, n);
        cas_hash_update(h, buf, n);
        pos += n;
    }
    cas_hash_final(h, T.digest);
    cas_hash_free(h);
    free(buf);
    struct cas_key k = {.algo = T.algo};
    memcpy(k.digest, T.digest, T.algo->digest_len);
    cas_key_hex(&k, hex);
    pthread_mutex_lock(&T.lock);
    snprintf(T.hex, sizeof(T.hex), "%s", hex);
    pthread_mutex_unlock(&T.lock);
}

/* Blocks a server thread until the test releases it (30 s at most, so a
 * failing test cannot hang the suite). */
static void wait_release(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&T.lock);
    unsigned gen = T.release_gen;
    while (T.release_gen == gen)
        if (pthread_cond_timedwait(&T.cond, &T.lock, &ts) != 0)
            break;
    pthread_mutex_unlock(&T.lock);
}

static void release(void)
{
    pthread_mutex_lock(&T.lock);
    T.release_gen++;
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
}

static void reset(enum src_mode src, enum tgt_mode tgt, unsigned tgt_status)
{
    pthread_mutex_lock(&T.lock);
    T.src = src;
    T.tgt = tgt;
    T.tgt_status = tgt_status;
    T.gets = T.puts = T.bodies_complete = T.stored = T.any = 0;
    T.put_bytes = 0;
    T.replica_query = false;
    pthread_mutex_unlock(&T.lock);
}

/* ---- the source ---------------------------------------------------------- */

static ssize_t src_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    enum src_mode mode = (enum src_mode)(intptr_t)cls;
    uint64_t half = T.size / 2;
    if ((mode == SRC_SHORT || mode == SRC_STALL) && pos >= half) {
        if (mode == SRC_STALL)
            wait_release();
        return HTTP_STREAM_ERROR; /* the client sees a short body */
    }
    uint64_t end = mode == SRC_LONGER ? T.size + 1 : T.size;
    if (mode == SRC_CHUNKED_SHORT)
        end = T.size / 2;
    if (mode == SRC_CHUNKED_LONG)
        end = T.size + 1000;
    if (pos >= end &&
        (mode == SRC_CHUNKED || mode == SRC_CHUNKED_SHORT || mode == SRC_CHUNKED_LONG))
        return HTTP_STREAM_END;
    size_t n = end - pos < max ? (size_t)(end - pos) : max;
    if ((mode == SRC_SHORT || mode == SRC_STALL) && pos + n > half)
        n = (size_t)(half - pos);
    fill(buf, pos, n);
    if (mode == SRC_WRONG && pos <= half && half < pos + n)
        buf[half - pos] ^= 1; /* one bit, in the middle: same length, wrong key */
    return (ssize_t)n;
}

static void src_get(struct http_req *req)
{
    pthread_mutex_lock(&T.lock);
    T.gets += !strcmp(req->param, T.hex);
    T.any++;
    enum src_mode mode = T.src;
    pthread_mutex_unlock(&T.lock);
    if (mode == SRC_HANG)
        wait_release(); /* accepted, read, never answered (until released) */
    if (mode == SRC_404) {
        http_error(req, 404, "no such object");
        return;
    }
    if (mode == SRC_410) {
        http_error(req, 410, "deleted");
        return;
    }
    uint64_t len = mode == SRC_LONGER ? T.size + 1 : T.size;
    if (mode == SRC_CHUNKED || mode == SRC_CHUNKED_SHORT || mode == SRC_CHUNKED_LONG)
        len = HTTP_SIZE_UNKNOWN;
    http_reply_stream(req, 200, "application/octet-stream", len, src_read, (void *)(intptr_t)mode,
                      NULL);
}

/* ---- the target ---------------------------------------------------------- */

static int tgt_body(struct http_req *req, const char *data, size_t len)
{
    if (T.tgt == TGT_STALL)
        wait_release();
    cas_hash_update(req->ctx, data, len);
    pthread_mutex_lock(&T.lock);
    T.put_bytes += len;
    pthread_mutex_unlock(&T.lock);
    return 0;
}

static void tgt_done(struct http_req *req)
{
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_final(req->ctx, d);
    bool match = memcmp(d, T.digest, T.algo->digest_len) == 0;
    pthread_mutex_lock(&T.lock);
    T.bodies_complete++;
    bool store = T.tgt == TGT_STORE && match;
    T.stored += store;
    unsigned status = T.tgt == TGT_LATE ? T.tgt_status : store ? 201 : 422;
    pthread_mutex_unlock(&T.lock);
    if (status == 201)
        http_reply(req, 201, "text/plain", "ok\n", 3);
    else
        http_error(req, status, "target says %u", status);
}

static void tgt_cleanup(struct http_req *req)
{
    cas_hash_free(req->ctx);
}

static void tgt_put(struct http_req *req)
{
    const char *r = http_query(req, "replica");
    pthread_mutex_lock(&T.lock);
    T.puts += !strcmp(req->param, T.hex);
    T.any++;
    T.replica_query = r && !strcmp(r, "1");
    bool early = T.tgt == TGT_EARLY;
    unsigned status = T.tgt_status;
    pthread_mutex_unlock(&T.lock);
    if (early) {
        http_error(req, status, "refused at once with %u", status);
        return;
    }
    req->ctx = cas_hash_new(T.algo);
    req->cleanup = tgt_cleanup;
    req->on_body = tgt_body;
    req->on_done = tgt_done;
}

static const struct http_route src_routes[] = {
    {"GET", "/objects/*", src_get, HTTP_READ, "get", NULL},
};
static const struct http_route tgt_routes[] = {
    {"PUT", "/objects/*", tgt_put, 0, "put", NULL},
};

static int start_servers(void)
{
    char err[256];
    cas_log_set_level("error");
    struct http_server_config s = {.listen = "127.0.0.1:0",
                                   .routes = src_routes,
                                   .nroutes = 1,
                                   .token = TOKEN,
                                   .auth_reads = true,
                                   .max_connections = 16};
    struct http_server_config t = {.listen = "127.0.0.1:0",
                                   .routes = tgt_routes,
                                   .nroutes = 1,
                                   .token = TOKEN,
                                   .max_connections = 16};
    if (http_server_start(&s, &T.srcsrv, err, sizeof(err)) != 0 ||
        http_server_start(&t, &T.tgtsrv, err, sizeof(err)) != 0) {
        fprintf(stderr, "servers: %s\n", err);
        return -1;
    }
    snprintf(T.src_url, sizeof(T.src_url), "http://127.0.0.1:%u", http_server_port(T.srcsrv));
    snprintf(T.tgt_url, sizeof(T.tgt_url), "http://127.0.0.1:%u", http_server_port(T.tgtsrv));
    return 0;
}

static int stop_servers(void)
{
    release();
    if (T.srcsrv)
        http_server_stop(T.srcsrv, 2000);
    if (T.tgtsrv)
        http_server_stop(T.tgtsrv, 2000);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct cas_ctl_opts ctl_token = {.token = TOKEN}, ctl_none, ctl_wrong = {.token = "wrong"};

static struct cas_copy_options opts(void)
{
    return (struct cas_copy_options){.algo = cas_hash_by_name("sha1"), .ctl = &ctl_token};
}

/* Nothing reached the target whole, nothing stored. */
static void assert_nothing_stored(void)
{
    pthread_mutex_lock(&T.lock);
    CU_ASSERT_EQUAL(T.bodies_complete, 0);
    CU_ASSERT_EQUAL(T.stored, 0);
    CU_ASSERT(T.put_bytes < T.size || T.size == 0);
    pthread_mutex_unlock(&T.lock);
}

/* ---- tests --------------------------------------------------------------- */

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* First in the suite, so the peak RSS before it is low: a 64 MiB object
 * copied with a fixed buffer raises the peak by far less than its size. */
static void test_large_object_bounded_memory(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(64ull << 20, hex);
    reset(SRC_OK, TGT_STORE, 0);
    uint64_t counter = 0;
    struct cas_copy_options o = opts();
    o.counter = &counter;
    struct cas_copy_result res;
    long before = max_rss_kib();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    long grew_kib = max_rss_kib() - before;
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        fprintf(stderr, "copy: %s\n", res.error);
    CU_ASSERT_EQUAL(res.bytes, 64ull << 20);
    CU_ASSERT_EQUAL(res.size, 64ull << 20);
    CU_ASSERT_EQUAL(counter, 64ull << 20);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_NONE);
    CU_ASSERT_STRING_EQUAL(res.error, "");
    CU_ASSERT_EQUAL(T.stored, 1);
    CU_ASSERT(T.replica_query);
#ifndef __SANITIZE_ADDRESS__
    /* Not under ASan: its quarantine keeps every freed block (libcurl's and
     * libmicrohttpd's per-transfer buffers) out of reuse, so the peak there
     * grows with the bytes moved whatever the copy holds. */
    CU_ASSERT(grew_kib < 24 * 1024);
#endif
    if (grew_kib >= 24 * 1024)
        fprintf(stderr, "peak RSS grew by %ld KiB copying 64 MiB\n", grew_kib);
}

static void test_copies_and_reuses_connections(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(300000, hex);
    struct cas_copier *cp = cas_copier_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(cp);
    struct cas_copy_options o = opts();
    for (int round = 0; round < 3; round++) {
        reset(SRC_OK, TGT_STORE, 0);
        struct cas_copy_result res;
        /* Known size, then unknown (the source's length is used). */
        int rc = cas_copy_object(cp, &o, T.src_url, T.tgt_url, hex, round ? -1 : 300000, &res);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(res.source_status, 200);
        CU_ASSERT_EQUAL(res.target_status, 201);
        CU_ASSERT_EQUAL(res.bytes, 300000);
        CU_ASSERT_EQUAL(T.stored, 1);
    }
    /* The empty object: its key is checked before the (empty) PUT. */
    object(0, hex);
    reset(SRC_OK, TGT_STORE, 0);
    struct cas_copy_result res;
    CU_ASSERT_EQUAL(cas_copy_object(cp, &o, T.src_url, T.tgt_url, hex, 0, &res), 0);
    CU_ASSERT_EQUAL(T.stored, 1);
    CU_ASSERT_EQUAL(res.target_status, 201);
    /* An empty body under another key is not copied. */
    char other[CAS_MAX_HEX + 1];
    object(10, other);
    object(0, hex);
    reset(SRC_OK, TGT_STORE, 0);
    CU_ASSERT_EQUAL(cas_copy_object(cp, &o, T.src_url, T.tgt_url, other, -1, &res), -EBADMSG);
    CU_ASSERT_EQUAL(T.puts, 0);
    cas_copier_free(cp);
}

static void test_wrong_bytes_not_stored(void)
{
    char hex[CAS_MAX_HEX + 1];
    /* Small (one block) and large (more than the copy buffer). */
    uint64_t sizes[] = {1000, 5u << 20};
    for (size_t i = 0; i < 2; i++) {
        object(sizes[i], hex);
        reset(SRC_WRONG, TGT_STORE, 0);
        struct cas_copy_options o = opts();
        struct cas_copy_result res;
        int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
        CU_ASSERT_EQUAL(rc, -EBADMSG);
        CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
        CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "digest mismatch"));
        CU_ASSERT_PTR_NOT_NULL(strstr(res.error, T.src_url));
        CU_ASSERT(res.bytes < sizes[i]);
        assert_nothing_stored();
    }
}

static void test_source_closes_early(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(4u << 20, hex);
    reset(SRC_SHORT, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    struct cas_copy_result res;
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, 4u << 20, &res);
    CU_ASSERT_EQUAL(rc, -EIO);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "GET"));
    assert_nothing_stored();
}

static void test_source_stalls(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(4u << 20, hex);
    reset(SRC_STALL, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    o.stall_timeout_ms = 300;
    struct cas_copy_result res;
    double t0 = now_s();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    double took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "nothing moved for 300 ms"));
    CU_ASSERT(took >= 0.3);
    CU_ASSERT(took < 10);
    assert_nothing_stored();

    /* The total bound holds even when the stall bound is long. */
    reset(SRC_STALL, TGT_STORE, 0);
    o.stall_timeout_ms = 60000;
    o.total_timeout_ms = 400;
    t0 = now_s();
    rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "within 400 ms"));
    CU_ASSERT(took < 10);
    assert_nothing_stored();
}

static void test_source_never_answers(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    reset(SRC_HANG, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    o.stall_timeout_ms = 60000;
    o.head_timeout_ms = 300;
    struct cas_copy_result res;
    double t0 = now_s();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    double took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_EQUAL(res.source_status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "no answer within 300 ms"));
    CU_ASSERT(took >= 0.3);
    CU_ASSERT(took < 10);
    CU_ASSERT_EQUAL(T.puts, 0);
}

static void test_target_stalls(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(32u << 20, hex); /* more than the buffer and the socket buffers hold */
    reset(SRC_OK, TGT_STALL, 0);
    struct cas_copy_options o = opts();
    o.stall_timeout_ms = 300;
    struct cas_copy_result res;
    double t0 = now_s();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    double took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_TARGET);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "PUT"));
    CU_ASSERT(took < 10);
    CU_ASSERT(res.bytes < (32u << 20));
}

static bool always_down(void *cls)
{
    (*(int *)cls)++;
    return true;
}

/* A target that took the whole body and never answers: bounded by the
 * answer timeout, or given up at once when the caller knows it is down. */
static void test_target_never_answers(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    reset(SRC_OK, TGT_STALL, 0);
    struct cas_copy_options o = opts();
    o.stall_timeout_ms = 60000;
    o.answer_timeout_ms = 300;
    struct cas_copy_result res;
    double t0 = now_s();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    double took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_TARGET);
    CU_ASSERT_EQUAL(res.bytes, 1000);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "no answer within 300 ms of the body's end"));
    CU_ASSERT(took < 10);

    object(1001, hex); /* the copy cut above may still reach the target */
    reset(SRC_OK, TGT_STALL, 0);
    int asked = 0;
    o.answer_timeout_ms = 60000;
    o.target_down = always_down;
    o.target_down_cls = &asked;
    t0 = now_s();
    rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    took = now_s() - t0;
    release();
    CU_ASSERT_EQUAL(rc, -EHOSTDOWN);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_TARGET);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "down"));
    CU_ASSERT(asked >= 1);
    CU_ASSERT(took < 10);
    CU_ASSERT_EQUAL(T.stored, 0);
}

static void test_source_gone_is_not_copied(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    enum src_mode modes[] = {SRC_404, SRC_410};
    long statuses[] = {404, 410};
    for (size_t i = 0; i < 2; i++) {
        reset(modes[i], TGT_STORE, 0);
        struct cas_copy_options o = opts();
        struct cas_copy_result res;
        int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, 1000, &res);
        CU_ASSERT_EQUAL(rc, -ENOENT);
        CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
        CU_ASSERT_EQUAL(res.source_status, statuses[i]);
        CU_ASSERT_EQUAL(res.target_status, 0);
        CU_ASSERT_EQUAL(T.puts, 0); /* the target is never asked */
        CU_ASSERT_PTR_NOT_NULL(strstr(res.error, i ? "deleted" : "no such object"));
    }
}

static void test_wrong_length_not_copied(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    reset(SRC_LONGER, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    struct cas_copy_result res;
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, 1000, &res);
    CU_ASSERT_EQUAL(rc, -EIO);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "1001 bytes, expected 1000"));
    CU_ASSERT_EQUAL(T.puts, 0);
    /* Unknown size: the length is taken, the bytes do not match. */
    reset(SRC_LONGER, TGT_STORE, 0);
    rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    CU_ASSERT_EQUAL(rc, -EBADMSG);
    CU_ASSERT_EQUAL(T.bodies_complete, 0);
    CU_ASSERT_EQUAL(T.stored, 0);
}

/* A source that sends no length (chunked): copied only when the caller
 * knows the size, and then only exactly that many bytes. */
static void test_source_without_length(void)
{
    char hex[CAS_MAX_HEX + 1];
    uint64_t size = 3u << 20;
    object(size, hex);
    struct cas_copy_options o = opts();
    struct cas_copy_result res;
    reset(SRC_CHUNKED, TGT_STORE, 0);
    /* (The longer source sends the object's bytes first: the last byte
     * waits for the end of the source's answer, not only for the digest.) */
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "no length"));
    CU_ASSERT_EQUAL(T.puts, 0);
    reset(SRC_CHUNKED, TGT_STORE, 0);
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, (int64_t)size, &res), 0);
    CU_ASSERT_EQUAL(T.stored, 1);
    reset(SRC_CHUNKED_SHORT, TGT_STORE, 0);
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, (int64_t)size, &res),
                    -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "expected"));
    assert_nothing_stored();
    reset(SRC_CHUNKED_LONG, TGT_STORE, 0);
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, (int64_t)size, &res),
                    -EBADMSG);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_EQUAL(T.bodies_complete, 0);
    CU_ASSERT_EQUAL(T.stored, 0);
}

static void test_target_refuses(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(3u << 20, hex);
    struct {
        unsigned status;
        int rc;
        const char *says;
    } cases[] = {
        {507, -ENOSPC, "507"},  {410, -ECANCELED, "deleted the object there"},
        {403, -EROFS, "403"},   {503, -EROFS, "503"},
        {422, -EBADMSG, "422"}, {500, -EIO, "500"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int early = 0; early < 2; early++) {
            reset(SRC_OK, early ? TGT_EARLY : TGT_LATE, cases[i].status);
            struct cas_copy_options o = opts();
            struct cas_copy_result res;
            int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
            CU_ASSERT_EQUAL(rc, cases[i].rc);
            CU_ASSERT_EQUAL(res.side, CAS_COPY_TARGET);
            CU_ASSERT_EQUAL(res.target_status, (long)cases[i].status);
            CU_ASSERT_EQUAL(res.source_status, 200);
            CU_ASSERT_PTR_NOT_NULL(strstr(res.error, cases[i].says));
            CU_ASSERT_PTR_NOT_NULL(strstr(res.error, T.tgt_url));
            CU_ASSERT_EQUAL(T.stored, 0);
            if (rc != cases[i].rc)
                fprintf(stderr, "status %u early %d: %d %s\n", cases[i].status, early, rc,
                        res.error);
        }
}

static void test_token_is_required_and_sent(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    reset(SRC_OK, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    o.ctl = &ctl_none;
    struct cas_copy_result res;
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    CU_ASSERT_EQUAL(rc, -EACCES);
    CU_ASSERT_EQUAL(res.source_status, 401);
    CU_ASSERT_EQUAL(T.puts, 0);
    o.ctl = &ctl_wrong;
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res), -EACCES);
    o.ctl = &ctl_token;
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res), 0);
}

static void test_bad_arguments(void)
{
    struct cas_copy_options o = opts();
    struct cas_copy_result res;
    reset(SRC_OK, TGT_STORE, 0);
    const char *bad[] = {"",
                         "xyz",
                         "../../etc/passwd",
                         "sha1:0123456789abcdef0123456789abcdef01234567",
                         "0123456789abcdef0123456789abcdef0123456", /* 39 */
                         "0123456789abcdef0123456789abcdef01234567?x=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url, bad[i], -1, &res), -EINVAL);
        CU_ASSERT_EQUAL(res.side, CAS_COPY_LOCAL);
        CU_ASSERT(res.error[0] != '\0');
    }
    o.algo = NULL;
    CU_ASSERT_EQUAL(cas_copy_object(NULL, &o, T.src_url, T.tgt_url,
                                    "0123456789abcdef0123456789abcdef01234567", -1, &res),
                    -EINVAL);
    CU_ASSERT_EQUAL(T.any, 0);
}

static void test_unreachable(void)
{
    char hex[CAS_MAX_HEX + 1];
    object(1000, hex);
    reset(SRC_OK, TGT_STORE, 0);
    struct cas_copy_options o = opts();
    struct cas_copy_result res;
    /* Port 1 on loopback: refused at once. */
    int rc = cas_copy_object(NULL, &o, "http://127.0.0.1:1", T.tgt_url, hex, -1, &res);
    CU_ASSERT_EQUAL(rc, -EIO);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_SOURCE);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "127.0.0.1:1"));
    rc = cas_copy_object(NULL, &o, T.src_url, "http://127.0.0.1:1", hex, -1, &res);
    CU_ASSERT_EQUAL(rc, -EIO);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_TARGET);
}

struct throttle_state {
    struct rb_bucket *bucket;
    unsigned calls;
    volatile int *stop_after; /* set once this many bytes passed */
    uint64_t bytes, stop_at;
};

static uint64_t throttle(void *cls, uint64_t n)
{
    struct throttle_state *t = cls;
    t->calls++;
    t->bytes += n;
    if (t->stop_after && t->bytes >= t->stop_at)
        *t->stop_after = 1;
    return t->bucket ? rb_bucket_charge(t->bucket, n) : 0;
}

static void test_bandwidth_cap(void)
{
    char hex[CAS_MAX_HEX + 1];
    uint64_t size = 8u << 20;
    object(size, hex);
    reset(SRC_OK, TGT_STORE, 0);
    double rate = 16e6; /* bytes per second */
    struct throttle_state ts = {.bucket = rb_bucket_new(rate)};
    struct cas_copy_options o = opts();
    o.throttle = throttle;
    o.throttle_cls = &ts;
    struct cas_copy_result res;
    double t0 = now_s();
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    double took = now_s() - t0;
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(ts.calls > 0);
    CU_ASSERT_EQUAL(ts.bytes, size);
    /* The bucket starts with a burst of a tenth of a second; the rest
     * cannot go faster than the rate (never a bound on slowness). */
    double floor_s = ((double)size - rate / 10) / rate;
    CU_ASSERT(took >= 0.9 * floor_s);
    if (took < 0.9 * floor_s)
        fprintf(stderr, "8 MiB at 16 MB/s took %.3f s (floor %.3f)\n", took, floor_s);
    rb_bucket_free(ts.bucket);
}

static void test_stop_flag(void)
{
    char hex[CAS_MAX_HEX + 1];
    uint64_t size = 8u << 20;
    object(size, hex);
    reset(SRC_OK, TGT_STORE, 0);
    volatile int stop = 0;
    struct throttle_state ts = {.stop_after = &stop, .stop_at = 2u << 20};
    struct cas_copy_options o = opts();
    o.throttle = throttle;
    o.throttle_cls = &ts;
    o.stop = &stop;
    struct cas_copy_result res;
    int rc = cas_copy_object(NULL, &o, T.src_url, T.tgt_url, hex, -1, &res);
    CU_ASSERT_EQUAL(rc, -EINTR);
    CU_ASSERT_EQUAL(res.side, CAS_COPY_LOCAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.error, "interrupted"));
    assert_nothing_stored();
}

/* The rebalance's use (rb_io_copy, rebalance_io.c): the cluster's token,
 * its bucket and byte counter, and the errors rebalance_run acts on. */
static void test_rebalance_io_copy(void)
{
    char hex[CAS_MAX_HEX + 1];
    uint64_t size = 2u << 20;
    object(size, hex);
    struct rb_cluster *c = rb_cluster_new(2, 1, TOKEN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->algo = cas_hash_by_name("sha1");
    struct rb_options ro = {.io_timeout_ms = 5000};
    struct rb_bucket *b = rb_bucket_new(100e6);
    struct rb_io *io = rb_io_new(c, &ro, b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(io);
    uint64_t streamed = 0;
    rb_io_count_bytes(io, &streamed);
    char err[512] = "";
    reset(SRC_OK, TGT_STORE, 0);
    CU_ASSERT_EQUAL(rb_io_copy(io, T.src_url, T.tgt_url, hex, size, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(streamed, size);
    CU_ASSERT_EQUAL(T.stored, 1);
    CU_ASSERT(T.replica_query);
    reset(SRC_404, TGT_STORE, 0);
    CU_ASSERT_EQUAL(rb_io_copy(io, T.src_url, T.tgt_url, hex, size, err, sizeof(err)), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "404"));
    reset(SRC_OK, TGT_LATE, 410);
    CU_ASSERT_EQUAL(rb_io_copy(io, T.src_url, T.tgt_url, hex, size, err, sizeof(err)), -ECANCELED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "410"));
    reset(SRC_WRONG, TGT_STORE, 0);
    CU_ASSERT_EQUAL(rb_io_copy(io, T.src_url, T.tgt_url, hex, size, err, sizeof(err)), -EBADMSG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "digest mismatch"));
    CU_ASSERT_EQUAL(T.bodies_complete, 0);
    /* The size from a listing that no longer holds (another object: the
     * copy cut just above may still reach the target). */
    object(size + 7, hex);
    reset(SRC_OK, TGT_STORE, 0);
    CU_ASSERT_EQUAL(rb_io_copy(io, T.src_url, T.tgt_url, hex, size + 8, err, sizeof(err)), -EIO);
    CU_ASSERT_EQUAL(T.puts, 0);
    rb_io_free(io);
    rb_bucket_free(b);
    rb_cluster_free(c);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("copy", NULL, stop_servers);
    if (start_servers() != 0)
        return 1;
    CU_add_test(s, "64 MiB with bounded memory", test_large_object_bounded_memory);
    CU_add_test(s, "copies, known and unknown size, reused handles",
                test_copies_and_reuses_connections);
    CU_add_test(s, "wrong bytes: nothing stored", test_wrong_bytes_not_stored);
    CU_add_test(s, "source closes early", test_source_closes_early);
    CU_add_test(s, "source stalls: bounded", test_source_stalls);
    CU_add_test(s, "source never answers: head timeout", test_source_never_answers);
    CU_add_test(s, "target stalls: bounded", test_target_stalls);
    CU_add_test(s, "target never answers: answer timeout, target_down", test_target_never_answers);
    CU_add_test(s, "source 404/410: no PUT", test_source_gone_is_not_copied);
    CU_add_test(s, "source length differs", test_wrong_length_not_copied);
    CU_add_test(s, "source without a length", test_source_without_length);
    CU_add_test(s, "target refuses: 507/410/403/503/422/500", test_target_refuses);
    CU_add_test(s, "token required and sent", test_token_is_required_and_sent);
    CU_add_test(s, "bad arguments: nothing sent", test_bad_arguments);
    CU_add_test(s, "unreachable source or target", test_unreachable);
    CU_add_test(s, "bandwidth cap", test_bandwidth_cap);
    CU_add_test(s, "stop flag", test_stop_flag);
    CU_add_test(s, "rebalance: rb_io_copy", test_rebalance_io_copy);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
