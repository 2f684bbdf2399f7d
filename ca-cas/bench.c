/*
 * bench.c - `ca-cas bench`, a load generator for the HTTP API.
 *
 * One thread drives --concurrency transfers at once through libcurl's multi
 * interface. Each PUT sends a new object: a fixed pseudo-random pattern
 * followed by a 16-byte tail (run id, counter) that makes it unique. Its key
 * comes cheaply from a digest state saved after the pattern, copied, fed the
 * tail and finished, so the client spends its CPU on the network and not on
 * hashing. GETs read objects put earlier in the run; when the mix has GETs,
 * a pool of objects is stored first (not measured). Latencies are kept per
 * operation and reported as nearest-rank percentiles (stats.c).
 *
 * Unless --no-cleanup, the objects the run stored are deleted at the end:
 * their keys are recomputed from the run id and the counter (nothing is
 * kept per object), deletes run --concurrency at a time, and a 404 (a PUT
 * that failed) is fine.
 */
#include "cli.h"
#include "ctl.h"
#include "json.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_SIZE (1u << 20)
#define TAIL_SIZE 16
#define POOL_MAX 1000000

/* OP_DEL is the clean-up after the run: never measured or reported. */
enum { OP_PUT, OP_GET, OP_KINDS, OP_DEL = OP_KINDS, OP_ALL };
static const char *op_names[OP_KINDS] = {"put", "get"};

struct bench_stats {
    double *lat_ms;
    size_t n, cap;
    uint64_t bytes;
    uint64_t errors;
};

struct bench;

struct bench_op {
    struct bench *b;
    CURL *e;
    struct curl_slist *hdrs; /* this operation's request headers */
    int kind;
    double t0;
    unsigned char tail[TAIL_SIZE];
    uint64_t sent, recv;
    char key[CAS_MAX_HEX + 1];
    char url[CLI_URL_MAX + 128];
    char errbody[256];
    size_t errlen;
    long status;
    bool busy;
};

struct bench {
    const struct cli_ctx *ctx;
    CURLM *multi;
    struct cas_ctl_opts ctl; /* token, --cacert, timeouts (common/ctl.h) */
    const struct cas_hash_algo *algo;
    EVP_MD_CTX *prefix; /* digest state after the pattern part */
    unsigned char *pattern;
    uint64_t size, prefix_len;
    size_t tail_len;
    uint64_t run_id, counter;
    uint64_t rng;
    unsigned wput, wget;
    char (*pool)[CAS_MAX_HEX + 1];
    size_t npool;
    bool recording;
    struct bench_stats st[OP_ALL];
    uint64_t del_next; /* counter of the next object to delete in the clean-up */
    char first_error[CLI_ERR_MAX];
    uint64_t started, finished;
};

static uint64_t bench_rand(struct bench *b)
{
    /* xorshift64*: plenty for picking operations and keys */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 2685821657736338717ULL;
}

static int stats_add(struct bench_stats *s, double ms)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        double *v = realloc(s->lat_ms, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->lat_ms = v;
        s->cap = cap;
    }
    s->lat_ms[s->n++] = ms;
    return 0;
}

static void pool_add(struct bench *b, const char *key)
{
    if (b->npool < POOL_MAX)
        memcpy(b->pool[b->npool++], key, sizeof(b->pool[0]));
    else
        memcpy(b->pool[bench_rand(b) % POOL_MAX], key, sizeof(b->pool[0]));
}

/* Serves the object: pattern bytes up to prefix_len, then the tail. */
static size_t bench_read(char *buf, size_t size, size_t nmemb, void *cls)
{
    struct bench_op *op = cls;
    struct bench *b = op->b;
    size_t max = size * nmemb, n = 0;
    while (n < max && op->sent < b->size) {
        size_t chunk;
        if (op->sent < b->prefix_len) {
            uint64_t at = op->sent % PATTERN_SIZE;
            chunk = PATTERN_SIZE - at;
            if (chunk > b->prefix_len - op->sent)
                chunk = (size_t)(b->prefix_len - op->sent);
            if (chunk > max - n)
                chunk = max - n;
            memcpy(buf + n, b->pattern + at, chunk);
        } else {
            size_t at = (size_t)(op->sent - b->prefix_len);
            chunk = b->tail_len - at;
            if (chunk > max - n)
                chunk = max - n;
            memcpy(buf + n, op->tail + (TAIL_SIZE - b->tail_len) + at, chunk);
        }
        n += chunk;
        op->sent += chunk;
    }
    return n;
}

static size_t bench_write(char *data, size_t size, size_t nmemb, void *cls)
{
    struct bench_op *op = cls;
    size_t n = size * nmemb;
    op->recv += n;
    if (op->errlen + 1 < sizeof(op->errbody)) {
        size_t k = sizeof(op->errbody) - 1 - op->errlen;
        if (k > n)
            k = n;
        memcpy(op->errbody + op->errlen, data, k);
        op->errlen += k;
        op->errbody[op->errlen] = '\0';
    }
    return n;
}

/* The key of the object with this tail. */
static int bench_key(struct bench *b, const unsigned char *tail, char *hex)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    struct cas_key k = {.algo = b->algo};
    unsigned len = 0;
    if (!c || !EVP_MD_CTX_copy_ex(c, b->prefix) ||
        !EVP_DigestUpdate(c, tail + (TAIL_SIZE - b->tail_len), b->tail_len) ||
        !EVP_DigestFinal_ex(c, k.digest, &len)) {
        EVP_MD_CTX_free(c);
        return -ENOMEM;
    }
    EVP_MD_CTX_free(c);
    cas_key_hex(&k, hex);
    return 0;
}

/* Starts the next operation on op's handle. */
static int bench_start(struct bench *b, struct bench_op *op, int kind, char *err, size_t errlen)
{
    if (kind == OP_GET && b->npool == 0)
        kind = OP_PUT;
    op->kind = kind;
    op->sent = op->recv = 0;
    op->errlen = 0;
    op->errbody[0] = '\0';
    if (kind == OP_PUT || kind == OP_DEL) {
        uint64_t ctr = kind == OP_PUT ? ++b->counter : ++b->del_next;
        for (int i = 0; i < 8; i++) {
            op->tail[i] = (unsigned char)(b->run_id >> (56 - 8 * i));
            op->tail[8 + i] = (unsigned char)(ctr >> (56 - 8 * i));
        }
        if (bench_key(b, op->tail, op->key) < 0) {
            snprintf(err, errlen, "hashing failed");
            return -ENOMEM;
        }
    } else {
        memcpy(op->key, b->pool[bench_rand(b) % b->npool], sizeof(op->key));
    }
    snprintf(op->url, sizeof(op->url), "%s/objects/%s", b->ctx->server, op->key);
    CURL *e = op->e;
    const char *method = kind == OP_PUT ? "PUT" : kind == OP_DEL ? "DELETE" : "GET";
    curl_slist_free_all(op->hdrs); /* the previous operation's */
    op->hdrs = NULL;
    struct curl_slist *h = NULL;
    if (cas_ctl_easy(&e, &b->ctl, op->url, method, &op->hdrs, NULL) < 0 ||
        !(h = curl_slist_append(op->hdrs, "Content-Type: application/octet-stream"))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    op->hdrs = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, op->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, op);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bench_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, op);
    if (kind == OP_PUT) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)b->size);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, bench_read);
        curl_easy_setopt(e, CURLOPT_READDATA, op);
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    }
    op->t0 = cli_now();
    op->busy = true;
    b->started++;
    CURLMcode mc = curl_multi_add_handle(b->multi, e);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "libcurl: %s", curl_multi_strerror(mc));
        return -EIO;
    }
    return 0;
}

static int bench_pick(struct bench *b)
{
    if (b->wget == 0)
        return OP_PUT;
    if (b->wput == 0)
        return OP_GET;
    return bench_rand(b) % (b->wput + b->wget) < b->wput ? OP_PUT : OP_GET;
}

/* Accounts a finished operation. */
static void bench_done(struct bench *b, struct bench_op *op, CURLcode res)
{
    double ms = (cli_now() - op->t0) * 1000;
    curl_easy_getinfo(op->e, CURLINFO_RESPONSE_CODE, &op->status);
    bool ok = res == CURLE_OK && op->status / 100 == 2;
    struct bench_stats *s = &b->st[op->kind];
    b->finished++;
    if (op->kind == OP_DEL) {
        if (ok || (res == CURLE_OK && op->status == 404)) /* 404: its PUT had failed */
            s->n++;
        else
            s->errors++;
        return;
    }
    if (ok) {
        if (op->kind == OP_PUT)
            pool_add(b, op->key);
        if (b->recording) {
            stats_add(s, ms);
            s->bytes += op->kind == OP_PUT ? b->size : op->recv;
        }
        return;
    }
    s->errors++;
    if (!b->first_error[0]) {
        char why[CLI_ERR_MAX];
        if (res != CURLE_OK)
            snprintf(why, sizeof(why), "%s", curl_easy_strerror(res));
        else
            cli_http_error_text(op->status, op->errbody, why, sizeof(why));
        snprintf(b->first_error, sizeof(b->first_error), "%s %.12s...: %.900s",
                 op->kind == OP_PUT ? "PUT" : "GET", op->key, why);
    }
}

/*
 * Runs operations with `conc` in flight until `count` have been started
 * (count > 0) or `deadline` passed: all of kind `only` (OP_PUT, OP_DEL), or
 * the mix when `only` is -1. Fills *elapsed with the seconds it took.
 */
static int bench_run(struct bench *b, struct bench_op *ops, size_t conc, uint64_t count,
                     double deadline, int only, struct cli_progress *p, double *elapsed,
                     char *err, size_t errlen)
{
    uint64_t start_count = b->started;
    double t0 = cli_now();
    int rc = 0;
    size_t busy = 0;
    for (size_t i = 0; i < conc; i++) {
        if (count && b->started - start_count >= count)
            break;
        rc = bench_start(b, &ops[i], only >= 0 ? only : bench_pick(b), err, errlen);
        if (rc < 0)
            return rc;
        busy++;
    }
    while (busy > 0) {
        int running;
        /* Transfers that perform finished are handled before waiting: a
         * poll first would add its timeout to every operation's latency. */
        CURLMcode mc = curl_multi_perform(b->multi, &running);
        if (mc != CURLM_OK) {
            snprintf(err, errlen, "libcurl: %s", curl_multi_strerror(mc));
            return -EIO;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(b->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct bench_op *op;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&op);
            CURLcode res = msg->data.result;
            curl_multi_remove_handle(b->multi, op->e);
            op->busy = false;
            busy--;
            bench_done(b, op, res);
            if (p)
                cli_progress_set(p, b->finished);
            bool more = count ? b->started - start_count < count : cli_now() < deadline;
            if (more) {
                rc = bench_start(b, op, only >= 0 ? only : bench_pick(b), err, errlen);
                if (rc < 0)
                    return rc;
                busy++;
            }
        }
        if (busy > 0 && (mc = curl_multi_poll(b->multi, NULL, 0, 100, NULL)) != CURLM_OK) {
            snprintf(err, errlen, "libcurl: %s", curl_multi_strerror(mc));
            return -EIO;
        }
    }
    *elapsed = cli_now() - t0;
    return 0;
}

static int bench_setup(struct bench *b, char *err, size_t errlen)
{
    b->pattern = malloc(PATTERN_SIZE);
    b->pool = malloc(sizeof(*b->pool) * 1024);
    b->prefix = EVP_MD_CTX_new();
    if (!b->pattern || !b->pool || !b->prefix) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Data that does not compress, from a seeded generator. */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < PATTERN_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(b->pattern + i, &x, 8);
    }
    b->tail_len = b->size < TAIL_SIZE ? (size_t)b->size : TAIL_SIZE;
    b->prefix_len = b->size - b->tail_len;
    if (!EVP_DigestInit_ex(b->prefix, b->algo->evp(), NULL)) {
        snprintf(err, errlen, "cannot set up %s", b->algo->name);
        return -EINVAL;
    }
    for (uint64_t done = 0; done < b->prefix_len;) {
        size_t n =
            b->prefix_len - done < PATTERN_SIZE ? (size_t)(b->prefix_len - done) : PATTERN_SIZE;
        EVP_DigestUpdate(b->prefix, b->pattern, n);
        done += n;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b->run_id =
        (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
    b->rng = b->run_id | 1;
    b->ctl = (struct cas_ctl_opts){
        .token = b->ctx->token,
        .ca_pem = b->ctx->cacert_pem,
        .ca_len = b->ctx->cacert_len,
        .connect_timeout_ms = 10000,
        .user_agent = "ca-cas-bench/" CAS_VERSION,
    };
    b->multi = curl_multi_init();
    return b->multi ? 0 : -ENOMEM;
}

static void stats_json(struct cas_json *j, struct bench_stats *s, double secs)
{
    cas_json_begin_object(j);
    cas_json_key(j, "ops");
    cas_json_u64(j, s->n);
    cas_json_key(j, "errors");
    cas_json_u64(j, s->errors);
    cas_json_key(j, "ops_per_s");
    cas_json_double(j, secs > 0 ? (double)s->n / secs : 0);
    cas_json_key(j, "mb_per_s");
    cas_json_double(j, secs > 0 ? (double)s->bytes / secs / 1e6 : 0);
    cas_json_key(j, "latency_ms");
    cas_json_begin_object(j);
    static const double ps[] = {50, 90, 99, 99.9};
    static const char *names[] = {"p50", "p90", "p99", "p99.9"};
    for (int i = 0; i < 4; i++) {
        cas_json_key(j, names[i]);
        cas_json_double(j, cli_stats_percentile(s->lat_ms, s->n, ps[i]));
    }
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->lat_ms[i];
    cas_json_key(j, "mean");
    cas_json_double(j, s->n ? sum / (double)s->n : 0);
    cas_json_key(j, "max");
    cas_json_double(j, s->n ? s->lat_ms[s->n - 1] : 0);
    cas_json_end_object(j);
    cas_json_end_object(j);
}

static void stats_line(const char *name, struct bench_stats *s, double secs)
{
    printf("%-6s %9zu %10.1f %9.1f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, s->n,
           secs > 0 ? (double)s->n / secs : 0, secs > 0 ? (double)s->bytes / secs / 1e6 : 0,
           cli_stats_percentile(s->lat_ms, s->n, 50), cli_stats_percentile(s->lat_ms, s->n, 90),
           cli_stats_percentile(s->lat_ms, s->n, 99), cli_stats_percentile(s->lat_ms, s->n, 99.9),
           s->n ? s->lat_ms[s->n - 1] : 0);
}

static void bench_report(struct bench *b, size_t conc, const char *mix, double secs)
{
    struct bench_stats all = {0};
    for (int k = 0; k < OP_KINDS; k++) {
        cli_stats_sort(b->st[k].lat_ms, b->st[k].n);
        for (size_t i = 0; i < b->st[k].n; i++)
            stats_add(&all, b->st[k].lat_ms[i]);
        all.bytes += b->st[k].bytes;
        all.errors += b->st[k].errors;
    }
    cli_stats_sort(all.lat_ms, all.n);
    if (b->ctx->json) {
        struct cas_buf out;
        struct cas_json j;
        cas_buf_init(&out);
        cas_json_init(&j, &out);
        cas_json_begin_object(&j);
        cas_json_key(&j, "server");
        cas_json_string(&j, b->ctx->server);
        cas_json_key(&j, "hash");
        cas_json_string(&j, b->algo->name);
        cas_json_key(&j, "concurrency");
        cas_json_u64(&j, conc);
        cas_json_key(&j, "size");
        cas_json_u64(&j, b->size);
        cas_json_key(&j, "mix");
        cas_json_string(&j, mix);
        cas_json_key(&j, "seconds");
        cas_json_double(&j, secs);
        cas_json_key(&j, "total");
        stats_json(&j, &all, secs);
        for (int k = 0; k < OP_KINDS; k++) {
            cas_json_key(&j, op_names[k]);
            stats_json(&j, &b->st[k], secs);
        }
        if (b->first_error[0]) {
            cas_json_key(&j, "first_error");
            cas_json_string(&j, b->first_error);
        }
        cas_json_end_object(&j);
        printf("%s\n", out.data);
        cas_buf_free(&out);
    } else {
        char hs[32];
        cli_human_bytes(b->size, hs, sizeof(hs));
        printf("server %s (%s), %zu concurrent, %s objects, mix put:get %s, %.1f s\n",
               b->ctx->server, b->algo->name, conc, hs, mix, secs);
        printf("%-6s %9s %10s %9s %9s %9s %9s %9s %9s\n", "op", "count", "ops/s", "MB/s", "p50 ms",
               "p90 ms", "p99 ms", "p99.9 ms", "max ms");
        for (int k = 0; k < OP_KINDS; k++)
            if (b->st[k].n || b->st[k].errors)
                stats_line(op_names[k], &b->st[k], secs);
        stats_line("total", &all, secs);
        printf("errors %llu", (unsigned long long)all.errors);
        if (b->first_error[0])
            printf(" (first: %s)", b->first_error);
        printf("\n");
    }
    free(all.lat_ms);
}

static const struct cli_usage_text bench_usage = {
    "bench [--concurrency N] [--size N] [--mix PUT:GET] [--duration T | --count N]\n"
    "      [--no-cleanup]",
    "Drives the server's HTTP API with N transfers in flight and reports\n"
    "operations/s, MB/s (10^6 bytes) and latency percentiles (p50, p90, p99,\n"
    "p99.9) per operation. Each PUT stores a new object of --size bytes; GETs\n"
    "read objects stored by the run (a pool of --objects is stored first, not\n"
    "measured). The objects the run stored are deleted at the end unless\n"
    "--no-cleanup (the delete is not measured). Exits 1 when any operation\n"
    "failed.",
};

int cmd_bench(int argc, char **argv, const struct cli_ctx *ctx)
{
    /* UINT64_MAX and -1: not given (0 is refused, not taken as "default"). */
    uint64_t conc = 16, size = 64 * 1024, count = UINT64_MAX, objects = 0;
    double duration = -1;
    const char *mix = "1:1", *hash_name = NULL;
    bool no_cleanup = false;
    const struct cli_opt opts[] = {
        {"concurrency", 'c', CLI_OPT_UINT, &conc, "N", "transfers in flight (default 16)"},
        {"size", 's', CLI_OPT_SIZE, &size, "N",
         "object size, K/M/G suffixes, at least 16 (default 64K)"},
        {"mix", 'm', CLI_OPT_STRING, &mix, "PUT:GET", "weights of puts and gets (default 1:1)"},
        {"duration", 'd', CLI_OPT_DURATION, &duration, "T", "run for T, more than 0 (default 10s)"},
        {"count", 'n', CLI_OPT_UINT, &count, "N", "run N operations instead, N >= 1"},
        {"objects", 0, CLI_OPT_UINT, &objects, "N",
         "objects stored first for GETs (default ~256 MiB worth, 1..1000)"},
        {"hash", 0, CLI_OPT_STRING, &hash_name, "ALGO", "key algorithm; default: ask the server"},
        {"no-cleanup", 0, CLI_OPT_FLAG, &no_cleanup, NULL, "keep the objects the run stored"},
    };
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("bench", &bench_usage, opts, 8, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    free(pos);
    char err[CLI_ERR_MAX] = "";
    struct bench b = {.ctx = ctx, .size = size};
    if (npos > 0) {
        cli_error("bench: takes no operands (see ca-cas bench --help)");
        return CLI_EXIT_USAGE;
    }
    if (cli_bench_parse_mix(mix, &b.wput, &b.wget, err, sizeof(err)) < 0) {
        cli_error("bench: %s", err);
        return CLI_EXIT_USAGE;
    }
    if (conc == 0 || conc > 4096) {
        cli_error("bench: --concurrency must be 1..4096");
        return CLI_EXIT_USAGE;
    }
    /* Each PUT's object differs from the others only by its 16-byte tail:
     * a shorter object would be the same on every PUT (for 0, the empty
     * object), one a user may have stored and the clean-up would delete. */
    if (size < TAIL_SIZE) {
        cli_error("bench: --size must be at least %d bytes (each object ends in a %d-byte "
                  "unique tail)",
                  TAIL_SIZE, TAIL_SIZE);
        return CLI_EXIT_USAGE;
    }
    if (count == 0) {
        cli_error("bench: --count must be at least 1");
        return CLI_EXIT_USAGE;
    }
    if (duration == 0) {
        cli_error("bench: --duration must be more than 0");
        return CLI_EXIT_USAGE;
    }
    bool have_count = count != UINT64_MAX;
    if (have_count && duration > 0) {
        cli_error("bench: give --duration or --count, not both");
        return CLI_EXIT_USAGE;
    }
    if (!have_count)
        count = 0; /* bench_run: 0 is "no limit", the duration stops it */
    if (!have_count && duration < 0)
        duration = 10;
    if (!objects) {
        uint64_t fit = (256u << 20) / (size ? size : 1);
        objects = fit < 1 ? 1 : fit > 1000 ? 1000 : fit;
    }
    if (hash_name && !(b.algo = cas_hash_by_name(hash_name))) {
        cli_error("bench: --hash \"%s\": want sha1 or sha256", hash_name);
        return CLI_EXIT_USAGE;
    }
    if (!b.algo) {
        struct cli_client *c = NULL;
        int rc = cli_client_new(ctx, &c, err, sizeof(err));
        if (rc == 0)
            rc = cli_client_algo(c, &b.algo, err, sizeof(err));
        if (rc == 0) /* a dead server or a wrong token shows here, once */
            rc = cli_call(c, "GET", "/capacity", NULL, 0, NULL, NULL, err, sizeof(err));
        cli_client_free(c);
        if (rc < 0) {
            cli_error("bench: %s", err);
            return CLI_EXIT_FAIL;
        }
    }
    struct bench_op *ops = calloc(conc, sizeof(*ops));
    int rc = ops ? bench_setup(&b, err, sizeof(err)) : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < conc; i++) {
        ops[i].b = &b;
        if (!(ops[i].e = curl_easy_init()))
            rc = -ENOMEM;
    }
    if (rc == 0 && b.pool) {
        void *p = realloc(b.pool, sizeof(*b.pool) * POOL_MAX);
        if (!p)
            rc = -ENOMEM;
        else
            b.pool = p;
    }
    double secs = 0;
    if (rc == 0 && b.wget > 0) {
        struct cli_progress p;
        cli_progress_start(&p, ctx->progress, "bench: storing objects for gets", objects, false);
        rc = bench_run(&b, ops, conc, objects, 0, OP_PUT, &p, &secs, err, sizeof(err));
        cli_progress_end(&p);
        if (rc == 0 && b.npool == 0) {
            snprintf(err, sizeof(err), "could not store any object: %.900s", b.first_error);
            rc = -EIO;
        }
        memset(b.st, 0, sizeof(b.st)); /* nothing recorded yet; the errors go */
        b.first_error[0] = '\0';
    }
    if (rc == 0) {
        struct cli_progress p;
        cli_progress_start(&p, ctx->progress, "bench ops", count, false);
        b.recording = true;
        b.finished = 0;
        rc = bench_run(&b, ops, conc, count, cli_now() + duration, -1, &p, &secs, err,
                       sizeof(err));
        cli_progress_end(&p);
    }
    if (rc == 0)
        bench_report(&b, conc, mix, secs);
    if (b.multi && b.counter > 0 && !no_cleanup) {
        /* Even after a failed run: what was stored goes. */
        for (size_t i = 0; i < conc; i++)
            if (ops[i].busy) { /* a run that failed left transfers behind */
                curl_multi_remove_handle(b.multi, ops[i].e);
                ops[i].busy = false;
            }
        struct cli_progress p;
        char cerr[CLI_ERR_MAX] = "";
        double csecs;
        b.recording = false;
        cli_progress_start(&p, ctx->progress, "bench: deleting its objects", b.counter, false);
        int crc = bench_run(&b, ops, conc, b.counter, 0, OP_DEL, &p, &csecs, cerr, sizeof(cerr));
        cli_progress_end(&p);
        if (crc < 0 || b.st[OP_DEL].errors)
            cli_error("bench: warning: clean-up left objects behind (%llu deletes failed%s%s)",
                      (unsigned long long)b.st[OP_DEL].errors, cerr[0] ? ": " : "", cerr);
    }
    else
        cli_error("bench: %s", rc == -ENOMEM && !err[0] ? "out of memory" : err);
    uint64_t errors = b.st[OP_PUT].errors + b.st[OP_GET].errors;
    for (size_t i = 0; ops && i < conc; i++) {
        if (ops[i].e)
            curl_easy_cleanup(ops[i].e);
        curl_slist_free_all(ops[i].hdrs);
    }
    if (b.multi)
        curl_multi_cleanup(b.multi);
    EVP_MD_CTX_free(b.prefix);
    for (int k = 0; k < OP_ALL; k++)
        free(b.st[k].lat_ms);
    free(b.pattern);
    free(b.pool);
    free(ops);
    return rc < 0 || errors ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
