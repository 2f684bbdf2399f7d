/*
 * storaged_http.c - fuzzes a whole storaged request in process: the input
 * is the bytes a client sends on one connection (request line, headers,
 * body, maybe several pipelined requests), served by the real HTTP layer
 * (common/httpd.c over libmicrohttpd) and routes (storaged/routes_*.c) on
 * a real disk store. This reaches what only exists behind a connection:
 * Range and conditional headers as the GET route applies them, the Cask
 * multipart form (libmicrohttpd's post processor), key lists of missing
 * and gc/mark, the GC and compaction routes.
 *
 * One store and server per process, in $TMPDIR (/dev/shm when there is
 * one), removed at exit. Each run connects, sends the input, half-closes
 * and reads until the server closes. Properties: the server always ends
 * the connection (a hang of 20 s is a finding: libFuzzer's -timeout), and
 * whatever it sends starts with a status line.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "fuzz.h"
#include "log.h"
#include "routes.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static struct storaged app;
static struct http_server *srv;
static unsigned port;

static void stop(void)
{
    if (srv)
        http_server_stop(srv, 5000);
    if (app.store)
        app.store->ops->destroy(app.store);
    node_free(&app.node);
    fuzz_clear_dir(dir, NULL, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_dir("http", dir, sizeof(dir));
    atexit(stop);
    cas_log_set_level("error");
    signal(SIGPIPE, SIG_IGN);
    char err[1024];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const struct cas_hash_algo *sha1 = cas_hash_by_name("sha1");
    if (dfd < 0 || node_load_or_create(dfd, dir, sha1, 1ull << 30, &app.node, err, sizeof(err)) < 0)
        goto fail;
    close(dfd);
    app.dir = dir;
    app.listen = "127.0.0.1:0";
    app.started = time(NULL);
    struct disk_options o = {.dir = dir, .algo = app.node.algo, .capacity = 1ull << 30};
    if (disk_open(&o, &app.store, err, sizeof(err)) < 0)
        goto fail;
    struct http_server_config hc = {.listen = app.listen,
                                    .routes = storaged_routes,
                                    .nroutes = storaged_nroutes,
                                    .app = &app,
                                    .max_connections = 64,
                                    .metrics = storaged_metrics};
    if (http_server_start(&hc, &srv, err, sizeof(err)) < 0)
        goto fail;
    port = http_server_port(srv);
    return 0;
fail:
    fprintf(stderr, "storaged_http: cannot start: %s\n", err);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_exchange(port, data, size);
    return 0;
}
