/*
 * page.c - GET /: one HTML page about the cluster, for people.
 *
 * Backends grouped by failure domain with their health, latency, last
 * error and a capacity bar, then the GC and compaction state. Built from
 * what the probes last saw (no backend is asked anything here), so the
 * page is cheap and refreshes itself every five seconds.
 */
#include "page.h"
#include "cluster.h"
#include "gcdebt.h"
#include "repair.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void html_escape(struct cas_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            cas_buf_puts(b, "&lt;");
            break;
        case '>':
            cas_buf_puts(b, "&gt;");
            break;
        case '&':
            cas_buf_puts(b, "&amp;");
            break;
        case '"':
            cas_buf_puts(b, "&quot;");
            break;
        default:
            cas_buf_append(b, s, 1);
        }
    }
}

static void human(char *out, size_t len, uint64_t bytes)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void capacity_bar(struct cas_buf *b, uint64_t total, uint64_t available)
{
    unsigned pct = total ? (unsigned)(100.0 * (double)(total - available) / (double)total) : 0;
    char used[32], all[32];
    human(used, sizeof(used), total - available);
    human(all, sizeof(all), total);
    cas_buf_printf(b,
                   "<div class=\"bar\" title=\"%u%% used\"><div class=\"fill%s\" "
                   "style=\"width:%u%%\"></div></div><span class=\"cap\">%s of %s</span>",
                   pct, pct >= 90 ? " full" : "", pct, used, all);
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"refresh\" content=\"5\">\n"
    "<title>ca-cas cluster</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n"
    "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\n"
    "table{border-collapse:collapse;min-width:60em}\n"
    "th,td{border-bottom:1px solid #ddd;padding:.35em .7em;text-align:left;vertical-align:middle}\n"
    "th{background:#f4f4f4}tr.domain td{background:#eef3fa;font-weight:bold}\n"
    ".up{color:#17803d;font-weight:bold}.down{color:#b91c1c;font-weight:bold}\n"
    ".ro{color:#a16207}.err{color:#b91c1c;font-size:.9em}.stale{color:#a16207;font-size:.9em}\n"
    ".bar{display:inline-block;width:12em;height:.8em;background:#e5e7eb;border-radius:.4em;"
    "overflow:hidden;vertical-align:middle;margin-right:.5em}\n"
    ".fill{height:100%;background:#3b82f6}.fill.full{background:#dc2626}.cap{font-size:.9em}\n"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}\n"
    "</style></head><body>\n";

void page_index(struct http_req *req)
{
    struct balancer *bal = req->app;
    struct view *v = view_get(bal);
    struct backend_capacity sum;
    cluster_capacity_sum(bal, v, &sum);
    struct cas_buf b;
    cas_buf_init(&b);
    cas_buf_puts(&b, page_head);
    cas_buf_puts(&b, "<h1>ca-cas cluster: balancer ");
    html_escape(&b, bal->listen);
    cas_buf_puts(&b, "</h1>\n");
    size_t up = 0;
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++)
        up += v->b[i]->up;
    cas_buf_printf(&b,
                   "<p>%zu of %zu backends up, %zu failure domains, replicas %u, "
                   "min_replicas %u, hash %s.</p>\n",
                   up, v->n, v->cfg->ndomains, v->cfg->replicas, v->cfg->min_replicas,
                   v->algo ? v->algo->name : "(not known yet)");
    cas_buf_puts(&b, "<h2>Capacity</h2>\n<p>");
    capacity_bar(&b, sum.total, sum.available);
    char bytes[32], garbage[32], unrec[32];
    human(bytes, sizeof(bytes), sum.bytes);
    human(garbage, sizeof(garbage), sum.garbage);
    human(unrec, sizeof(unrec), sum.unreclaimed);
    cas_buf_printf(&b,
                   "</p><p>%" PRIu64 " object copies, %s; garbage %s; unreclaimed %s.</p>\n",
                   sum.objects, bytes, garbage, unrec);

    cas_buf_puts(&b, "<h2>Backends</h2>\n<table id=\"backends\">\n<thead><tr><th>URL</th>"
                     "<th>Node</th><th>Health</th><th>Latency</th><th>Capacity</th>"
                     "<th>Objects</th><th>Last error</th></tr></thead>\n<tbody>\n");
    bool shown[v->n ? v->n : 1];
    memset(shown, 0, sizeof(shown));
    for (size_t i = 0; i < v->n; i++) {
        if (shown[i])
            continue;
        cas_buf_puts(&b, "<tr class=\"domain\"><td colspan=\"7\">Failure domain ");
        html_escape(&b, v->b[i]->domain);
        cas_buf_puts(&b, "</td></tr>\n");
        for (size_t k = i; k < v->n; k++) {
            const struct backend *be = v->b[k];
            if (shown[k] || strcmp(be->domain, v->b[i]->domain))
                continue;
            shown[k] = true;
            cas_buf_puts(&b, "<tr class=\"backend\"><td>");
            html_escape(&b, be->url);
            cas_buf_puts(&b, "</td><td>");
            html_escape(&b, be->node[0] ? be->node : "?");
            cas_buf_printf(&b, "</td><td><span class=\"%s\">%s</span>%s</td>",
                           be->up ? "up" : "down", be->up ? "up" : "down",
                           be->read_only ? " <span class=\"ro\">read-only</span>" : "");
            /* A backend that is down shows its last figures as stale. */
            uint64_t age_s = be->last_ok_ns ? (cas_now_ns() - be->last_ok_ns) / 1000000000ull : 0;
            if (be->up)
                cas_buf_printf(&b, "<td>%.1f ms</td><td>", be->latency_ms);
            else
                cas_buf_puts(&b, "<td>&ndash;</td><td>");
            if (be->cap_known)
                capacity_bar(&b, be->cap.total, be->cap.available);
            else
                cas_buf_puts(&b, "?");
            if (!be->up && be->cap_known)
                cas_buf_printf(
                    &b, " <span class=\"stale\">stale: last answered %" PRIu64 " s ago</span>",
                    age_s);
            cas_buf_printf(&b, "</td><td>%" PRIu64 "</td><td class=\"err\">", be->cap.objects);
            html_escape(&b, be->last_error);
            cas_buf_puts(&b, "</td></tr>\n");
        }
    }
    cas_buf_puts(&b, "</tbody></table>\n");

    bool gc = false, compacting = bal->compact_running;
    uint64_t gc_id = 0, gc_objects = 0, gc_bytes = 0, cdone = 0, ctotal = 0;
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *be = v->b[i];
        if (be->up && be->gc_active) {
            gc = true;
            gc_id = be->gc_id;
            gc_objects += be->gc_objects;
            gc_bytes += be->gc_bytes;
        }
        if (be->up && be->compact_running) {
            compacting = true;
            cdone += be->compact_done;
            ctotal += be->compact_total;
        }
    }
    char domain[128];
    snprintf(domain, sizeof(domain), "%s", bal->compact_domain);
    pthread_mutex_unlock(&bal->lock);
    char gcb[32];
    human(gcb, sizeof(gcb), gc_bytes);
    cas_buf_puts(&b, "<h2>Garbage collection and compaction</h2>\n<dl id=\"gc\">\n");
    if (gc)
        cas_buf_printf(&b,
                       "<dt>GC</dt><dd>cycle %" PRIu64 " active: %" PRIu64
                       " copies (%s) still marked</dd>\n",
                       gc_id, gc_objects, gcb);
    else
        cas_buf_puts(&b, "<dt>GC</dt><dd>no cycle active</dd>\n");
    if (compacting) {
        cas_buf_printf(&b, "<dt>Compaction</dt><dd>running%s", domain[0] ? " in failure domain " : "");
        html_escape(&b, domain);
        cas_buf_printf(&b, " (%" PRIu64 "%% of the current backends' work done)</dd>\n",
                       ctotal ? cdone * 100 / ctotal : 0);
    } else {
        cas_buf_puts(&b, "<dt>Compaction</dt><dd>idle</dd>\n");
    }
    cas_buf_printf(
        &b, "<dt>Read repair</dt><dd>%zu queued, %" PRIu64 " done, %" PRIu64 " failed</dd>\n",
        repair_queue_length(bal), __atomic_load_n(&bal->ctr.repairs_done, __ATOMIC_RELAXED),
        __atomic_load_n(&bal->ctr.repairs_failed, __ATOMIC_RELAXED));
    cas_buf_printf(&b,
                   "<dt>Under-replicated writes</dt><dd id=\"under-replicated\">%" PRIu64
                   " (answered with fewer than %u copies)</dd>\n",
                   __atomic_load_n(&bal->ctr.under_replicated_writes, __ATOMIC_RELAXED),
                   v->cfg->replicas);
    size_t debt = gcdebt_pending_bytes(bal);
    if (debt)
        cas_buf_printf(&b,
                       "<dt>GC unmarks pending</dt><dd>%zu bytes, for backends that were "
                       "unreachable; gc/end waits for them</dd>\n",
                       debt);
    cas_buf_puts(&b, "</dl>\n");
    cas_buf_puts(&b, "<p><a href=\"/status\">/status</a> &middot; <a href=\"/metrics\">"
                     "/metrics</a> &middot; <a href=\"/capacity\">/capacity</a></p>\n"
                     "</body></html>\n");
    view_put(v);
    http_reply_buf(req, 200, "text/html; charset=utf-8", &b);
}
