/*
 * test_balancerd_page.c - balancerd's HTML page at GET / (balancerd/page.c)
 * served by common/httpd.c on a loopback port and fetched with libcurl. The
 * page is built from what the probes last saw, so each test sets the
 * backends' probed state by hand and checks what a person reads: backends
 * grouped by failure domain, up/down, read-only, capacity bars (full at
 * 90%), stale figures of a backend that is down, the summed GC and
 * compaction state of the backends that are up, GC debt; and that text from
 * backends or the config (URLs, domains, errors) is HTML-escaped.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "gcdebt.h"
#include "httpd.h"
#include "log.h"
#include "page.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balpage-XXXXXX";
static char cfg_path[300];
static char err[1024];
static struct balancer bal;
static struct http_server *srv;
static char page_url[64];

static const struct http_route routes[] = {{"GET", "/", page_index, HTTP_PUBLIC, "index", NULL}};

/* Three backends: two in domain "rack <a&b>" (a name to escape), one in "c". */
static int setup(void)
{
    FILE *f = fopen(cfg_path, "w");
    if (!f)
        return -1;
    fputs("replicas: 2\nmin_replicas: 1\nbackends:\n"
          "  - url: http://127.0.0.1:1\n    failure_domain: \"rack <a&b>\"\n"
          "  - url: http://127.0.0.1:3\n    failure_domain: c\n"
          "  - url: http://127.0.0.1:2\n    failure_domain: \"rack <a&b>\"\n",
          f);
    fclose(f);
    struct balancer_options o = {.config_path = cfg_path, .listen = "127.0.0.1:6001"};
    if (balancer_init(&bal, &o, err, sizeof(err)) < 0 || gcdebt_init(&bal) < 0)
        return -1;
    /* Room for connections the server has not yet seen closed: with a few,
     * its per-client limit (half of them) would refuse the next fetch. */
    struct http_server_config hc = {.listen = "127.0.0.1:0",
                                    .routes = routes,
                                    .nroutes = 1,
                                    .app = &bal,
                                    .max_connections = 64};
    cas_log_set_level("error");
    if (http_server_start(&hc, &srv, err, sizeof(err)) < 0)
        return -1;
    snprintf(page_url, sizeof(page_url), "http://127.0.0.1:%u/", http_server_port(srv));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void)
{
    http_server_stop(srv, 1000);
    balancer_stop(&bal);
    curl_global_cleanup();
    return 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    cas_buf_append(ud, p, size * n);
    return size * n;
}

/* GET / into a malloc'd NUL-terminated string; checks status and type. */
static char *fetch_page(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, page_url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    CU_ASSERT_EQUAL(rc, CURLE_OK);
    if (rc != CURLE_OK)
        printf("\n  GET %s: %s\n", page_url, curl_easy_strerror(rc));
    long status = 0;
    char *type = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_PTR_NOT_NULL(type);
    if (type)
        CU_ASSERT_STRING_EQUAL(type, "text/html; charset=utf-8");
    curl_easy_cleanup(c);
    cas_buf_append(&b, "", 1);
    return b.data;
}

static bool has(const char *page, const char *s)
{
    if (strstr(page, s))
        return true;
    printf("\n  page lacks: %s\n", s);
    return false;
}

/* Sets backend i's probed state (under the balancer's lock). */
static void backend_state(size_t i, bool up, bool read_only, const char *node,
                          const char *last_error)
{
    struct view *v = view_get(&bal);
    pthread_mutex_lock(&bal.lock);
    struct backend *be = v->b[i];
    be->probed = true;
    be->up = up;
    be->read_only = read_only;
    snprintf(be->node, sizeof(be->node), "%s", node);
    snprintf(be->last_error, sizeof(be->last_error), "%s", last_error);
    be->latency_ms = 1.5;
    pthread_mutex_unlock(&bal.lock);
    view_put(v);
}

static void backend_capacity(size_t i, uint64_t total, uint64_t available, uint64_t objects,
                             uint64_t age_s)
{
    struct view *v = view_get(&bal);
    pthread_mutex_lock(&bal.lock);
    struct backend *be = v->b[i];
    be->cap_known = true;
    be->cap.total = total;
    be->cap.available = available;
    be->cap.objects = objects;
    be->cap.bytes = objects * 1024;
    be->last_ok_ns = cas_now_ns() - age_s * 1000000000ull;
    pthread_mutex_unlock(&bal.lock);
    view_put(v);
}

static void test_nothing_probed_yet(void)
{
    char *p = fetch_page();
    CU_ASSERT(has(p, "<h1>ca-cas cluster: balancer 127.0.0.1:6001</h1>"));
    CU_ASSERT(has(p, "0 of 3 backends up, 2 failure domains, replicas 2, min_replicas 1, "
                     "hash (not known yet)."));
    /* unknown capacity: an empty bar for the cluster, "?" for each backend */
    CU_ASSERT(has(p, "0 B of 0 B"));
    CU_ASSERT(has(p, "<td>?</td>"));
    CU_ASSERT(has(p, "<dd>no cycle active</dd>"));
    CU_ASSERT(has(p, "<dt>Compaction</dt><dd>idle</dd>"));
    CU_ASSERT_PTR_NULL(strstr(p, "GC unmarks pending"));
    free(p);
}

static void test_domains_grouped_and_escaped(void)
{
    backend_state(0, true, false, "node-1", "");
    backend_state(1, false, false, "", "connect: <refused> & \"gone\"");
    backend_state(2, true, true, "node-2", "");
    char *p = fetch_page();
    CU_ASSERT(has(p, "2 of 3 backends up"));
    /* the domain's name escaped; its two backends under it, before domain c,
     * whatever their order in the config */
    CU_ASSERT(has(p, "Failure domain rack &lt;a&amp;b&gt;</td>"));
    CU_ASSERT_PTR_NULL(strstr(p, "rack <a&b>"));
    const char *d1 = strstr(p, "Failure domain rack"), *d2 = strstr(p, "Failure domain c<");
    const char *u1 = strstr(p, "http://127.0.0.1:1<"), *u2 = strstr(p, "http://127.0.0.1:2<"),
               *u3 = strstr(p, "http://127.0.0.1:3<");
    CU_ASSERT(d1 && d2 && u1 && u2 && u3);
    if (d1 && d2 && u1 && u2 && u3)
        CU_ASSERT(d1 < u1 && u1 < u2 && u2 < d2 && d2 < u3);
    /* the error text escaped, quotes included */
    CU_ASSERT(has(p, "connect: &lt;refused&gt; &amp; &quot;gone&quot;"));
    /* up with latency; down with a dash and "?" for a node never seen */
    CU_ASSERT(has(p, "<td>node-1</td><td><span class=\"up\">up</span></td><td>1.5 ms</td>"));
    CU_ASSERT(has(p, "<td>?</td><td><span class=\"down\">down</span></td><td>&ndash;</td>"));
    CU_ASSERT(has(p, "<span class=\"up\">up</span> <span class=\"ro\">read-only</span>"));
    free(p);
}

static void test_capacity_bars_and_stale(void)
{
    const uint64_t gib = 1ull << 30;
    backend_capacity(0, 100 * gib, 5 * gib, 7, 0); /* 95% used: full */
    backend_capacity(1, 10 * gib, 9 * gib, 3, 42); /* down: stale figures */
    backend_capacity(2, 1000, 1000, 0, 0);         /* empty, in bytes */
    char *p = fetch_page();
    CU_ASSERT(
        has(p, "<div class=\"bar\" title=\"95% used\"><div class=\"fill full\" style=\"width:95%\">"
               "</div></div><span class=\"cap\">95.0 GiB of 100.0 GiB</span>"));
    CU_ASSERT(has(p, "title=\"10% used\"><div class=\"fill\" style=\"width:10%\">"));
    CU_ASSERT(has(p, "<span class=\"cap\">0 B of 1000 B</span>"));
    /* the down backend's figures are shown as stale, with their age */
    CU_ASSERT(has(p, "<span class=\"stale\">stale: last answered 42 s ago</span>"));
    CU_ASSERT_PTR_NULL(strstr(p, "stale: last answered 0 s"));
    /* the cluster's sums: 110 GiB + 1000 B total, 10 copies */
    CU_ASSERT(has(p, "10 object copies, 10.0 KiB"));
    CU_ASSERT(has(p, "</td><td>7</td>"));
    free(p);
}

static void test_gc_compaction_and_debt(void)
{
    struct view *v = view_get(&bal);
    pthread_mutex_lock(&bal.lock);
    /* GC: counted over the backends that are up (b[1] is down: ignored) */
    for (size_t i = 0; i < 3; i++) {
        v->b[i]->gc_active = true;
        v->b[i]->gc_id = 77;
        v->b[i]->gc_objects = 10;
        v->b[i]->gc_bytes = 1536;
        v->b[i]->compact_running = true;
        v->b[i]->compact_done = 25;
        v->b[i]->compact_total = 100;
    }
    snprintf(bal.compact_domain, sizeof(bal.compact_domain), "c&d");
    pthread_mutex_unlock(&bal.lock);
    gcdebt_add(&bal, 77, v->b[1]->url, "ab\n", 3);
    view_put(v);
    char *p = fetch_page();
    CU_ASSERT(has(p, "<dd>cycle 77 active: 20 copies (3.0 KiB) still marked</dd>"));
    CU_ASSERT(
        has(p, "<dd>running in failure domain c&amp;d (25% of the current backends' work done)"));
    CU_ASSERT(
        has(p, "<dd>3 bytes, for backends that were unreachable; gc/end waits for them</dd>"));
    CU_ASSERT(has(p, "<dd id=\"under-replicated\">0 (answered with fewer than 2 copies)</dd>"));
    free(p);
    /* compaction asked by this balancer, no backend reporting work yet */
    v = view_get(&bal);
    pthread_mutex_lock(&bal.lock);
    for (size_t i = 0; i < 3; i++)
        v->b[i]->compact_running = false;
    bal.compact_running = true;
    bal.compact_domain[0] = '\0';
    pthread_mutex_unlock(&bal.lock);
    view_put(v);
    p = fetch_page();
    CU_ASSERT(has(p, "<dt>Compaction</dt><dd>running (0% of the current backends' work done)"));
    free(p);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    /* In order, on one balancer: each test adds to the state before it. */
    CU_pSuite s = CU_add_suite("balancerd_page", setup, teardown);
    CU_add_test(s, "nothing probed yet", test_nothing_probed_yet);
    CU_add_test(s, "domains grouped, text escaped", test_domains_grouped_and_escaped);
    CU_add_test(s, "capacity bars, stale figures", test_capacity_bars_and_stale);
    CU_add_test(s, "GC, compaction, GC debt", test_gc_compaction_and_debt);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
