/*
 * balancer_http.c - fuzzes a whole balancer request in process: the input
 * is the bytes a client sends on one connection to a balancer
 * (balancerd/routes.c, proxy.c, cluster.c over common/httpd.c) whose two
 * backends are storageds served from the same process on disk stores.
 * This reaches what only exists behind a connection: the balancer's own
 * key-list reader of POST /objects/missing and /gc/mark, the spooled Cask
 * upload, Range and conditionals as relayed, fan-outs.
 *
 * Everything is made once per process in $TMPDIR (/dev/shm when there is
 * one) and removed at exit. Each run connects, sends the input,
 * half-closes and reads until the balancer closes. Properties: the
 * balancer always ends the connection (a hang is libFuzzer's -timeout),
 * answers with a status line, and its backends stay up.
 */
#define _GNU_SOURCE
#include "balancer.h"
#include "disk.h"
#include "fuzz.h"
#include "log.h"
#include "routes.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char top[256];
static struct storaged apps[2];
static struct http_server *srvs[2];
static struct balancer bal;
static bool bal_started;
static unsigned port;

static void stop(void)
{
    if (bal_started)
        balancer_stop(&bal);
    for (int i = 0; i < 2; i++) {
        if (srvs[i])
            http_server_stop(srvs[i], 5000);
        if (apps[i].store)
            apps[i].store->ops->destroy(apps[i].store);
        node_free(&apps[i].node);
    }
    fuzz_clear_dir(top, NULL, 1);
}

static unsigned start_storaged(int i, char *err, size_t errlen)
{
    static char dirs[2][300];
    snprintf(dirs[i], sizeof(dirs[i]), "%s/s%d", top, i);
    mkdir(dirs[i], 0755);
    struct storaged *a = &apps[i];
    int dfd = open(dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || node_load_or_create(dfd, dirs[i], cas_hash_by_name("sha1"), 1ull << 30, &a->node,
                                       err, errlen) < 0)
        return 0;
    close(dfd);
    a->dir = dirs[i];
    a->listen = "127.0.0.1:0";
    a->started = time(NULL);
    struct disk_options o = {.dir = dirs[i], .algo = a->node.algo, .capacity = 1ull << 30};
    if (disk_open(&o, &a->store, err, errlen) < 0)
        return 0;
    struct http_server_config hc = {.listen = a->listen,
                                    .routes = storaged_routes,
                                    .nroutes = storaged_nroutes,
                                    .app = a,
                                    .max_connections = 64,
                                    .metrics = storaged_metrics};
    if (http_server_start(&hc, &srvs[i], err, errlen) < 0)
        return 0;
    return http_server_port(srvs[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_dir("bal", top, sizeof(top));
    atexit(stop);
    cas_log_set_level("error");
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[1024] = "", cfg[400];
    unsigned ports[2];
    for (int i = 0; i < 2; i++)
        if (!(ports[i] = start_storaged(i, err, sizeof(err))))
            goto fail;
    snprintf(cfg, sizeof(cfg), "%s/balancerd.yaml", top);
    FILE *f = fopen(cfg, "w");
    if (!f)
        goto fail;
    fprintf(f,
            "replicas: 2\nbackends:\n  - url: http://127.0.0.1:%u\n    failure_domain: a\n"
            "  - url: http://127.0.0.1:%u\n    failure_domain: b\n",
            ports[0], ports[1]);
    fclose(f);
    struct balancer_options bo = {.config_path = strdup(cfg),
                                  .listen = "127.0.0.1:0",
                                  .spool_dir = strdup(top),
                                  .connect_timeout_ms = 500,
                                  .first_byte_timeout_ms = 2000,
                                  .io_timeout_ms = 5000,
                                  .probe_interval_ms = 200};
    if (balancer_init(&bal, &bo, err, sizeof(err)) < 0 ||
        balancer_start(&bal, err, sizeof(err)) < 0)
        goto fail;
    bal_started = true;
    port = http_server_port(bal.srv);
    /* Wait (5 s at most) for the first probes: writes need both backends. */
    for (int t = 0; t < 500; t++) {
        struct view *v = view_get(&bal);
        bool w[2] = {false, false}, up[2] = {false, false};
        if (v->n == 2)
            backend_health(&bal, v, w, up);
        view_put(v);
        if (w[0] && w[1])
            return 0;
        usleep(10000);
    }
    snprintf(err, sizeof(err), "the backends never came up");
fail:
    fprintf(stderr, "balancer_http: cannot start: %s\n", err);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_exchange(port, data, size);
    return 0;
}
