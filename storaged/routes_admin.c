/*
 * routes_admin.c - the operator side of the storaged API: GC, compaction,
 * capacity, ring, status, metrics, health, the HTML page, and the route
 * table that ties every handler to its path.
 */
#define _GNU_SOURCE
#include "routes.h"
#include "json.h"
#include "log.h"
#include "num.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MARK_BATCH 4096

const struct http_route storaged_routes[] = {
    {"POST", "/objects/missing", route_missing, 0, "missing", NULL},
    {"PUT", "/objects/*", route_put, 0, "put", NULL},
    {"GET", "/objects/*", route_get, HTTP_PUBLIC | HTTP_READ, "get", NULL},
    {"DELETE", "/objects/*", route_delete, 0, "delete", NULL},
    {"POST", "/objects", route_post, 0, "post", NULL},
    {"GET", "/objects", route_list, 0, "list", "state min_size max_size"},
    {"POST", "/gc/begin", route_gc_begin, 0, "gc_begin", NULL},
    {"POST", "/gc/mark", route_gc_mark, 0, "gc_mark", NULL},
    {"POST", "/gc/end", route_gc_end, 0, "gc_end", NULL},
    {"POST", "/gc/cancel", route_gc_cancel, 0, "gc_cancel", NULL},
    {"GET", "/gc", route_gc_state, HTTP_QUIET, "gc", NULL},
    {"POST", "/compact", route_compact, 0, "compact", NULL},
    {"GET", "/compact", route_compact_state, HTTP_QUIET, "compact_state", NULL},
    {"GET", "/capacity", route_capacity, HTTP_QUIET, "capacity", NULL},
    {"GET", "/quarantine", route_quarantine, HTTP_QUIET, "quarantine", NULL},
    {"GET", "/ring", route_ring, HTTP_QUIET, "ring", NULL},
    {"GET", "/status", route_status, HTTP_QUIET, "status", NULL},
    {"GET", "/status/", route_status, HTTP_QUIET, "status", NULL},
    {"GET", "/metrics", route_metrics, HTTP_PUBLIC | HTTP_QUIET, "metrics", NULL},
    {"GET", "/healthz", route_healthz, HTTP_PUBLIC | HTTP_QUIET, "healthz", NULL},
    {"POST", "/", route_post_cask, 0, "cask_post", NULL},
    {"GET", "/", route_page, HTTP_PUBLIC, "page", NULL},
    {"GET", "/file/*/", route_get, HTTP_PUBLIC | HTTP_READ, "get", NULL},
    {"GET", "/file/*", route_get, HTTP_PUBLIC | HTTP_READ, "get", NULL},
    {"POST", "/local/", route_post, 0, "post", NULL},
    {"GET", "/local/*/", route_get, HTTP_PUBLIC | HTTP_READ, "get", NULL},
    {"GET", "/local/*", route_get, HTTP_PUBLIC | HTTP_READ, "get", NULL},
    /* A key with a slash in it (after URL decoding) is still a bad key. */
    {"GET", "/objects/**", route_bad_key, HTTP_PUBLIC | HTTP_READ, "bad_key", NULL},
    {"PUT", "/objects/**", route_bad_key, 0, "bad_key", NULL},
    {"DELETE", "/objects/**", route_bad_key, 0, "bad_key", NULL},
    {"GET", "/file/**", route_bad_key, HTTP_PUBLIC | HTTP_READ, "bad_key", NULL},
    {"GET", "/local/**", route_bad_key, HTTP_PUBLIC | HTTP_READ, "bad_key", NULL},
};
const size_t storaged_nroutes = sizeof(storaged_routes) / sizeof(storaged_routes[0]);

static struct storaged *app_of(struct http_req *req)
{
    return req->app;
}

/* Answers with one part of the store's figures, rendered by fn. */
static void reply_info(struct http_req *req, unsigned status,
                       void (*fn)(struct cas_json *j, const struct store_info *in))
{
    struct store *s = app_of(req)->store;
    struct store_info in;
    store_info(s, &in);
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    fn(&j, &in);
    http_reply_json(req, status, &b);
}

/* Parses ?id=N; 0 when absent. False (and a 400) when malformed. */
static bool query_id(struct http_req *req, uint64_t *id, bool required)
{
    const char *v = http_query(req, "id");
    *id = 0;
    if (!v) {
        if (required)
            http_error(req, 400, "missing query parameter id");
        return !required;
    }
    if (cas_parse_id(v, id) < 0) {
        http_error(req, 400, "id=\"%s\" is not a number from 1 to 18446744073709551615", v);
        return false;
    }
    return true;
}

/* ---- GC ---------------------------------------------------------------- */

void route_gc_begin(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    uint64_t id, got, objects = 0, bytes = 0;
    char err[512] = "";
    if (!query_id(req, &id, false))
        return;
    int rc = store_gc_begin(s, id, &got, &objects, &bytes, err, sizeof(err));
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(&b, "{\"id\":\"%" PRIu64 "\",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                   got, objects, bytes);
    http_reply_json(req, 200, &b);
}

struct mark_ctx {
    struct keylines kl;
    struct store *store;
    struct cas_key *keys;
    size_t n;
    uint64_t unmarked;
    int rc;
    char err[512];
};

static void mark_cleanup(struct http_req *req)
{
    struct mark_ctx *c = req->ctx;
    free(c->keys);
    free(c);
}

static int mark_flush(struct mark_ctx *c)
{
    uint64_t u = 0;
    if (!c->n)
        return 0;
    int rc = store_gc_mark(c->store, c->keys, c->n, &u, c->err, sizeof(c->err));
    c->n = 0;
    c->unmarked += u;
    if (rc < 0) {
        c->rc = rc;
        return -2;
    }
    return 0;
}

static int mark_line(void *cls, const char *line, size_t len, uint64_t lineno)
{
    struct mark_ctx *c = cls;
    char err[400];
    if (cas_key_parse(line, len, c->store->algo, &c->keys[c->n], err, sizeof(err)) < 0) {
        snprintf(c->err, sizeof(c->err), "line %" PRIu64 ": %s", lineno, err);
        c->rc = -EINVAL;
        return -1;
    }
    if (++c->n == MARK_BATCH)
        return mark_flush(c);
    return 0;
}

static void mark_fail(struct http_req *req, struct mark_ctx *c)
{
    http_error(req, storaged_status(c->rc), "%s", c->err);
}

static int mark_body(struct http_req *req, const char *data, size_t len)
{
    struct mark_ctx *c = req->ctx;
    if (keylines_feed(&c->kl, data, len, mark_line, c)) {
        mark_flush(c); /* keys before a bad line still count */
        mark_fail(req, c);
        return -1;
    }
    return 0;
}

static void mark_done(struct http_req *req)
{
    struct mark_ctx *c = req->ctx;
    if (keylines_finish(&c->kl, mark_line, c) || mark_flush(c)) {
        mark_flush(c);
        mark_fail(req, c);
        return;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(&b, "{\"unmarked\":%" PRIu64 "}", c->unmarked);
    http_reply_json(req, 200, &b);
}

void route_gc_mark(struct http_req *req)
{
    struct mark_ctx *c = calloc(1, sizeof(*c));
    if (c)
        c->keys = malloc(MARK_BATCH * sizeof(*c->keys));
    if (!c || !c->keys) {
        free(c);
        http_error(req, 500, "out of memory");
        return;
    }
    c->store = app_of(req)->store;
    req->ctx = c;
    req->cleanup = mark_cleanup;
    req->on_body = mark_body;
    req->on_done = mark_done;
}

void route_gc_end(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    uint64_t id, removed = 0, bytes = 0;
    char err[512] = "";
    if (!query_id(req, &id, true))
        return;
    int rc = store_gc_end(s, id, &removed, &bytes, err, sizeof(err));
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(&b, "{\"removed\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", removed, bytes);
    http_reply_json(req, 200, &b);
}

void route_gc_cancel(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    uint64_t id;
    char err[512] = "";
    if (!query_id(req, &id, true))
        return;
    int rc = store_gc_cancel(s, id, err, sizeof(err));
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(&b, "{\"cancelled\":\"%" PRIu64 "\"}", id);
    http_reply_json(req, 200, &b);
}

static void json_gc(struct cas_json *j, const struct store_info *in)
{
    cas_json_begin_object(j);
    cas_json_key(j, "active");
    cas_json_bool(j, in->gc_active);
    cas_json_key(j, "id");
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, in->gc_active ? in->gc_id : 0);
    cas_json_string(j, id);
    cas_json_key(j, "objects");
    cas_json_u64(j, in->garbage_objects);
    cas_json_key(j, "bytes");
    cas_json_u64(j, in->garbage);
    /* For balancers (docs/API.md, GET /gc): a new id must be above last_id;
     * ended_id tells a partly finished end from a cycle never begun here. */
    cas_json_key(j, "last_id");
    snprintf(id, sizeof(id), "%" PRIu64, in->gc_last_id);
    cas_json_string(j, id);
    cas_json_key(j, "ended_id");
    snprintf(id, sizeof(id), "%" PRIu64, in->gc_ended_id);
    cas_json_string(j, id);
    cas_json_end_object(j);
}

void route_gc_state(struct http_req *req)
{
    reply_info(req, 200, json_gc);
}

/* ---- compaction ---------------------------------------------------------- */

static void json_compact(struct cas_json *j, const struct store_info *in)
{
    cas_json_begin_object(j);
    cas_json_key(j, "running");
    cas_json_bool(j, in->compacting);
    cas_json_key(j, "done_bytes");
    cas_json_u64(j, in->compact_done);
    cas_json_key(j, "total_bytes");
    cas_json_u64(j, in->compact_total);
    cas_json_key(j, "runs");
    cas_json_u64(j, in->compactions);
    if (in->compact_left_out[0]) { /* a file that had no room (disk backend) */
        cas_json_key(j, "left_out");
        cas_json_string(j, in->compact_left_out);
    }
    cas_json_end_object(j);
}

void route_compact_state(struct http_req *req)
{
    reply_info(req, 200, json_compact);
}

void route_compact(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    char err[512] = "";
    const char *wait = http_query(req, "wait");
    bool waited = false;
    if (wait && cas_parse_bit(wait, &waited) < 0) {
        http_error(req, 400, "wait=\"%s\": want 0 or 1", wait);
        return;
    }
    int rc = store_compact_start(s, err, sizeof(err));
    if (rc < 0) {
        http_error(req, storaged_status(rc), "%s", err);
        return;
    }
    if (waited)
        store_compact_wait(s);
    reply_info(req, waited ? 200 : 202, json_compact);
}

/* ---- capacity, ring, status ---------------------------------------------- */

static void json_capacity(struct cas_json *j, const struct store_info *in)
{
    cas_json_begin_object(j);
    cas_json_key(j, "total");
    cas_json_u64(j, in->total);
    cas_json_key(j, "available");
    cas_json_u64(j, in->available);
    cas_json_key(j, "unreclaimed");
    cas_json_u64(j, in->unreclaimed);
    cas_json_key(j, "garbage");
    cas_json_u64(j, in->garbage);
    cas_json_key(j, "objects");
    cas_json_u64(j, in->objects);
    cas_json_key(j, "bytes");
    cas_json_u64(j, in->bytes);
    cas_json_end_object(j);
}

void route_capacity(struct http_req *req)
{
    reply_info(req, 200, json_capacity);
}

struct quarantine_list {
    struct cas_buf *b;
    size_t digest_len;
};

static void quarantine_line(void *cls, const unsigned char *digest, uint64_t size)
{
    (void)size;
    struct quarantine_list *q = cls;
    char hex[CAS_MAX_HEX + 1];
    cas_hex_encode(digest, q->digest_len, hex);
    cas_buf_printf(q->b, "%s\n", hex);
}

void route_quarantine(struct http_req *req)
{
    struct store *s = app_of(req)->store;
    struct cas_buf b;
    cas_buf_init(&b);
    struct quarantine_list q = {.b = &b, .digest_len = s->algo->digest_len};
    store_quarantined(s, quarantine_line, &q);
    http_reply_buf(req, 200, "text/plain", &b);
}

void route_ring(struct http_req *req)
{
    struct storaged *app = app_of(req);
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_reserve(&b, app->node.ntokens * 20 + 100);
    cas_buf_printf(&b, "{\"node\":\"%s\",\"hash\":\"%s\",\"tokens\":[", app->node.id,
                   app->node.algo->name);
    for (size_t i = 0; i < app->node.ntokens; i++)
        cas_buf_printf(&b, "%s\"%016" PRIx64 "\"", i ? "," : "", app->node.tokens[i]);
    cas_buf_puts(&b, "]}");
    http_reply_json(req, 200, &b);
}

void route_status(struct http_req *req)
{
    struct storaged *app = app_of(req);
    struct store_info in;
    store_info(app->store, &in);
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
    cas_json_key(&j, "version");
    cas_json_string(&j, CAS_VERSION);
    cas_json_key(&j, "role");
    cas_json_string(&j, "storaged");
    cas_json_key(&j, "node");
    cas_json_string(&j, app->node.id);
    cas_json_key(&j, "hash");
    cas_json_string(&j, app->node.algo->name);
    cas_json_key(&j, "tokens");
    cas_json_u64(&j, app->node.ntokens);
    cas_json_key(&j, "dir");
    cas_json_string(&j, app->dir);
    cas_json_key(&j, "listen");
    cas_json_string(&j, app->listen);
    cas_json_key(&j, "uptime_seconds");
    cas_json_u64(&j, (uint64_t)(time(NULL) - app->started));
    cas_json_key(&j, "objects");
    cas_json_u64(&j, in.objects);
    cas_json_key(&j, "bytes");
    cas_json_u64(&j, in.bytes);
    cas_json_key(&j, "read_only");
    cas_json_bool(&j, in.read_only);
    if (in.read_only) {
        cas_json_key(&j, "read_only_reason");
        cas_json_string(&j, in.read_only_reason);
    }
    cas_json_key(&j, "corrupt_objects");
    cas_json_u64(&j, in.corrupt_found);
    cas_json_key(&j, "quarantined_objects");
    cas_json_u64(&j, in.quarantined);
    cas_json_key(&j, "tombstones");
    cas_json_u64(&j, in.tombstones);
    cas_json_key(&j, "capacity");
    json_capacity(&j, &in);
    cas_json_key(&j, "gc");
    json_gc(&j, &in);
    cas_json_key(&j, "compaction");
    json_compact(&j, &in);
    cas_json_key(&j, "scrub");
    cas_json_begin_object(&j);
    cas_json_key(&j, "running");
    cas_json_bool(&j, in.scrubbing);
    cas_json_key(&j, "rate_bytes_per_second");
    cas_json_u64(&j, in.scrub_rate);
    cas_json_key(&j, "bytes");
    cas_json_u64(&j, in.scrub_bytes);
    cas_json_key(&j, "objects");
    cas_json_u64(&j, in.scrub_objects);
    cas_json_key(&j, "corrupt");
    cas_json_u64(&j, in.scrub_corrupt);
    cas_json_key(&j, "passes");
    cas_json_u64(&j, in.scrub_passes);
    cas_json_key(&j, "last_pass_finished");
    cas_json_u64(&j, in.scrub_last_pass);
    store_status_scrub(app->store, &j);
    cas_json_end_object(&j);
    cas_json_end_object(&j);
    http_reply_json(req, 200, &b);
}

/* ---- metrics, health ------------------------------------------------------ */

void storaged_metrics(void *appv, struct cas_buf *o)
{
    struct storaged *app = appv;
    struct store_info in;
    store_info(app->store, &in);
#define GAUGE(name, help, value)                                                                   \
    cas_buf_printf(o, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %" PRIu64 "\n",   \
                   (uint64_t)(value))
#define COUNTER(name, help, value)                                                                 \
    cas_buf_printf(o, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", \
                   (uint64_t)(value))
    GAUGE("cas_objects", "Objects stored.", in.objects);
    GAUGE("cas_object_bytes", "Bytes of the objects stored.", in.bytes);
    GAUGE("cas_capacity_total_bytes", "File system (or --capacity) size.", in.total);
    GAUGE("cas_capacity_available_bytes", "Bytes still available.", in.available);
    GAUGE("cas_unreclaimed_bytes", "Bytes compaction would give back.", in.unreclaimed);
    GAUGE("cas_gc_active", "1 while a GC cycle is active.", in.gc_active);
    GAUGE("cas_gc_garbage_bytes", "Bytes the current GC cycle would remove.", in.garbage);
    GAUGE("cas_gc_garbage_objects", "Objects the current GC cycle would remove.",
          in.garbage_objects);
    GAUGE("cas_compaction_running", "1 while compaction runs.", in.compacting);
    GAUGE("cas_compaction_done_bytes", "Bytes copied by the running compaction.", in.compact_done);
    GAUGE("cas_compaction_total_bytes", "Bytes the running compaction will copy.",
          in.compact_total);
    COUNTER("cas_compactions_total", "Compactions finished.", in.compactions);
    COUNTER("cas_corrupt_objects_total", "Corrupt objects found and taken out of service.",
            in.corrupt_found);
    GAUGE("cas_quarantined_objects",
          "Copies taken out of service and not replaced yet (GET /quarantine).", in.quarantined);
    GAUGE("cas_tombstones", "Keys deleted by a client whose tombstone refuses copies.",
          in.tombstones);
    COUNTER("cas_read_verify_failures_total", "Corrupt objects caught while serving a read.",
            __atomic_load_n(&app->verify_failures, __ATOMIC_RELAXED));
    GAUGE("cas_read_only", "1 when the store refuses writes.", in.read_only);
    COUNTER("cas_scrub_bytes_total", "Bytes read and checked by the scrubber.", in.scrub_bytes);
    COUNTER("cas_scrub_objects_total", "Objects checked by the scrubber.", in.scrub_objects);
    COUNTER("cas_scrub_corrupt_total", "Corrupt objects found by the scrubber.", in.scrub_corrupt);
    COUNTER("cas_scrub_passes_total", "Full scrub passes finished.", in.scrub_passes);
    GAUGE("cas_scrub_last_pass_timestamp_seconds", "When the last full pass finished.",
          in.scrub_last_pass);
    store_metrics(app->store, o);
#undef GAUGE
#undef COUNTER
}

void route_metrics(struct http_req *req)
{
    struct cas_buf b;
    cas_buf_init(&b);
    http_metrics_render(req->srv, &b);
    http_reply_buf(req, 200, "text/plain; version=0.0.4", &b);
}

void route_healthz(struct http_req *req)
{
    struct storaged *app = app_of(req);
    struct store_info in;
    store_info(app->store, &in);
    if (in.faulted) {
        http_error(req, 503, "store faulted: %s", in.read_only_reason);
        return;
    }
    http_reply(req, 200, "text/plain", "ok\n", 3);
}

/* ---- the HTML page -------------------------------------------------------- */

static void human(char *buf, size_t len, uint64_t v)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double x = (double)v;
    int i = 0;
    while (x >= 1024 && i < 5) {
        x /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", x, u[i]);
}

void route_page(struct http_req *req)
{
    struct storaged *app = app_of(req);
    struct store_info in;
    store_info(app->store, &in);
    char total[32], avail[32], used[32], unrec[32], garb[32];
    human(total, sizeof(total), in.total);
    human(avail, sizeof(avail), in.available);
    human(used, sizeof(used), in.bytes);
    human(unrec, sizeof(unrec), in.unreclaimed);
    human(garb, sizeof(garb), in.garbage);
    double pct = in.total ? 100.0 * (double)(in.total - in.available) / (double)in.total : 0;
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_printf(
        &b,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ca-cas storaged %s</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse}td,th{padding:.3em 1em;border-bottom:1px solid #ddd;"
        "text-align:left}.bar{background:#eee;width:30em;height:1.2em}"
        ".fill{background:#4a8;height:100%%}</style></head><body>"
        "<h1>ca-cas storaged</h1><table id=\"node\">"
        "<tr><th>node</th><td>%s</td></tr><tr><th>version</th><td>%s</td></tr>"
        "<tr><th>hash</th><td>%s</td></tr><tr><th>ring tokens</th><td>%zu</td></tr>"
        "<tr><th>state</th><td>%s%s</td></tr>"
        "<tr><th>objects</th><td>%" PRIu64 " (%s)</td></tr>"
        "<tr><th>disk</th><td><div class=\"bar\"><div class=\"fill\" style=\"width:%.1f%%\">"
        "</div></div>%s available of %s</td></tr>"
        "<tr><th>unreclaimed</th><td>%s</td></tr>"
        "<tr><th>GC</th><td>%s%s</td></tr>"
        "<tr><th>compaction</th><td>%s</td></tr>"
        "<tr><th>corrupt objects found</th><td>%" PRIu64 "</td></tr></table>"
        "<p>API: <code>PUT /objects/{key}</code>, <code>GET /objects/{key}</code>, "
        "<a href=\"/status\">/status</a>, <a href=\"/metrics\">/metrics</a>, "
        "<a href=\"/capacity\">/capacity</a>.</p></body></html>\n",
        app->node.id, app->node.id, CAS_VERSION, app->node.algo->name, app->node.ntokens,
        in.read_only ? "read-only: " : "read-write", in.read_only ? in.read_only_reason : "",
        in.objects, used, pct, avail, total, unrec, in.gc_active ? "cycle active, " : "idle",
        in.gc_active ? garb : "", in.compacting ? "running" : "idle", in.corrupt_found);
    http_reply_buf(req, 200, "text/html; charset=utf-8", &b);
}
