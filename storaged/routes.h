/*
 * routes.h - the storaged HTTP API: the route table and the state the
 * handlers share. routes_objects.c serves objects (PUT, POST, GET with
 * ranges and verification, HEAD, DELETE, missing, list and the Cask
 * routes); routes_admin.c serves GC, compaction, capacity, ring, status,
 * metrics, health and the HTML page.
 */
#ifndef CAS_ROUTES_H
#define CAS_ROUTES_H

#include "httpd.h"
#include "node.h"
#include "store.h"

#include <time.h>

struct storaged {
    struct store *store;
    struct node_identity node;
    const char *dir;
    const char *listen;
    time_t started;
    uint64_t started_ns;
    uint64_t verify_failures; /* corrupt objects caught while serving */
    size_t list_page_keys;    /* keys per page of a listing (--list-page-keys; 0: by the objects) */
};

extern const struct http_route storaged_routes[];
extern const size_t storaged_nroutes;

/* Prometheus text for the store and node (added after the HTTP metrics). */
void storaged_metrics(void *app, struct cas_buf *out);

/* The HTTP status for a store error code. */
unsigned storaged_status(int rc);

/* Handlers, by file. */
void route_put(struct http_req *req);
void route_post(struct http_req *req);
void route_post_cask(struct http_req *req);
void route_get(struct http_req *req);
void route_delete(struct http_req *req);
void route_bad_key(struct http_req *req);
void route_missing(struct http_req *req);
void route_list(struct http_req *req);
void route_gc_begin(struct http_req *req);
void route_gc_mark(struct http_req *req);
void route_gc_end(struct http_req *req);
void route_gc_cancel(struct http_req *req);
void route_gc_state(struct http_req *req);
void route_compact(struct http_req *req);
void route_compact_state(struct http_req *req);
void route_capacity(struct http_req *req);
/* GET /quarantine: the keys of copies taken out of service as corrupt and
 * not replaced yet, one per line (balancers poll it to repair them). */
void route_quarantine(struct http_req *req);
void route_ring(struct http_req *req);
void route_status(struct http_req *req);
void route_metrics(struct http_req *req);
void route_healthz(struct http_req *req);
void route_page(struct http_req *req);

/* Line-by-line reading of a request body of keys (missing, gc/mark). */
struct keylines {
    char partial[256];
    size_t plen;
    bool overlong;
    uint64_t lineno;
};
/* Calls fn for each complete line; stops and returns fn's nonzero result. */
int keylines_feed(struct keylines *kl, const char *data, size_t len,
                  int (*fn)(void *cls, const char *line, size_t len, uint64_t lineno), void *cls);
int keylines_finish(struct keylines *kl,
                    int (*fn)(void *cls, const char *line, size_t len, uint64_t lineno), void *cls);

#endif
