/*
 * cluster.h - routes across every backend: GC, list, missing, capacity,
 * compaction (handler layer, beside proxy.c; neither calls the other).
 */
#ifndef CAS_BAL_CLUSTER_H
#define CAS_BAL_CLUSTER_H

#include "httpd.h"
#include "json.h"
#include "state.h"

void cluster_gc_begin(struct http_req *req);
void cluster_gc_mark(struct http_req *req);
void cluster_gc_end(struct http_req *req);
void cluster_gc_status(struct http_req *req);
void cluster_list(struct http_req *req);
void cluster_missing(struct http_req *req);
void cluster_capacity(struct http_req *req);
void cluster_compact(struct http_req *req);
void cluster_compact_status(struct http_req *req);
/* Cluster GC and compaction figures as JSON members (for /status). */
void cluster_gc_json(struct balancer *bal, const struct view *v, struct cas_json *j);
/* Sum of the capacity figures the probes learned from v's backends. */
void cluster_capacity_sum(struct balancer *bal, const struct view *v,
                          struct backend_capacity *sum);

#endif
