/*
 * main.c - ca-cas-storaged: parse options, open the store, serve HTTP until
 * SIGTERM or SIGINT, then finish the requests in flight and exit 0.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "s3.h"
#include "httpd.h"
#include "log.h"
#include "node.h"
#include "opts.h"
#include "routes.h"
#include "tls.h"
#include "token.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char usage[] =
    "ca-cas-storaged --dir PATH [--listen ADDR:PORT] [--hash sha1|sha256] [--read-only]\n"
    "       [--capacity BYTES] [--token-file F] [--auth-reads] [--threads N]\n"
    "       [--max-client-connections N] [--header-timeout S] [--idle-timeout S]\n"
    "       [--max-object-size BYTES] [--scrub-rate MBPS] [--log-level LEVEL]\n"
    "       [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--backend disk|s3]\n"
    "       [--s3-endpoint URL --s3-bucket NAME [--s3-region R]\n"
    "        [--s3-access-key-file F --s3-secret-key-file F]]  (s3 needs --capacity)";

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
    return -errno;
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *dir = NULL, *listen = "127.0.0.1:6010", *hash = NULL, *token_file = NULL;
    const char *log_level = "info", *backend_name = "disk";
    const char *s3_endpoint = NULL, *s3_bucket = NULL, *s3_region = "us-east-1";
    const char *s3_access_file = NULL, *s3_secret_file = NULL;
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    bool read_only = false, auth_reads = false;
    uint64_t capacity = 0, threads = 512, max_size = 0, scrub_rate = 10;
    uint64_t s3_timeout_ms = S3_DEFAULT_TIMEOUT_MS;
    uint64_t per_client = 0, header_timeout = HTTP_DEFAULT_HEADER_TIMEOUT_S,
             idle_timeout = HTTP_DEFAULT_IDLE_TIMEOUT_S;
    uint64_t list_page = 0; /* --list-page-keys; 0: by the object count */
    const struct cas_opt opts[] = {
        {"dir", CAS_OPT_STRING, &dir, "PATH", "store directory (created on first start)"},
        {"listen", CAS_OPT_STRING, &listen, "ADDR:PORT", "address to serve (127.0.0.1:6010)"},
        {"hash", CAS_OPT_STRING, &hash, "ALGO", "sha1 (default) or sha256, for a new store"},
        {"read-only", CAS_OPT_FLAG, &read_only, NULL, "refuse every write"},
        {"capacity", CAS_OPT_SIZE, &capacity, "BYTES", "capacity to assume (default: measured)"},
        {"token-file", CAS_OPT_STRING, &token_file, "F", "require this bearer token"},
        {"auth-reads", CAS_OPT_FLAG, &auth_reads, NULL, "object reads need the token too"},
        {"threads", CAS_OPT_UINT, &threads, "N", "most connections served at once (512)"},
        {"max-client-connections", CAS_OPT_UINT, &per_client, "N",
         "most connections from one client address (default: --threads less 16)"},
        {"header-timeout", CAS_OPT_UINT, &header_timeout, "SECONDS",
         "a new connection must send its request head within this (10)"},
        {"idle-timeout", CAS_OPT_UINT, &idle_timeout, "SECONDS",
         "close a connection silent this long, or kept alive this long between requests (120)"},
        {"max-object-size", CAS_OPT_SIZE, &max_size, "BYTES", "largest object accepted (no limit)"},
        {"scrub-rate", CAS_OPT_UINT, &scrub_rate, "MBPS",
         "background scrub, MB/s (10; 0 turns it off)"},
        {"list-page-keys", CAS_OPT_UINT, &list_page, "N",
         "keys a listing sorts per scan of the object table (1024 to 16777216; default "
         "the objects / 32, at least 65536): memory per listing about N x 28 bytes "
         "(SHA-1), scans per listing objects / N"},
        {"log-level", CAS_OPT_STRING, &log_level, "LEVEL", "debug, info, warn or error (info)"},
        {"backend", CAS_OPT_STRING, &backend_name, "NAME",
         "where objects live: disk (default: data files in --dir) or s3 (a bucket)"},
        {"s3-endpoint", CAS_OPT_STRING, &s3_endpoint, "URL",
         "s3: the server, http(s)://host:port (path-style requests)"},
        {"s3-bucket", CAS_OPT_STRING, &s3_bucket, "NAME", "s3: the bucket (must exist)"},
        {"s3-region", CAS_OPT_STRING, &s3_region, "R", "s3: the region to sign for (us-east-1)"},
        {"s3-access-key-file", CAS_OPT_STRING, &s3_access_file, "F",
         "s3: file holding the access key (or the key itself in CAS_S3_ACCESS_KEY)"},
        {"s3-secret-key-file", CAS_OPT_STRING, &s3_secret_file, "F",
         "s3: file holding the secret key (or the key itself in CAS_S3_SECRET_KEY)"},
        {"s3-timeout-ms", CAS_OPT_UINT, &s3_timeout_ms, "MS",
         "s3: longest a bucket request may take, retries included, before it fails "
         "(15000; an attempt that moves no byte for a third of it fails sooner)"},
        {"tls-cert", CAS_OPT_STRING, &tls_cert, "FILE",
         "serve HTTPS with this PEM certificate chain (with --tls-key; SIGHUP reloads both)"},
        {"tls-key", CAS_OPT_STRING, &tls_key, "FILE",
         "the certificate's PEM private key (mode 0600 or stricter)"},
        {"tls-client-ca", CAS_OPT_STRING, &tls_client_ca, "FILE",
         "require client certificates signed by this PEM CA bundle (mutual TLS)"},
    };
    char err[1024] = "";
    cas_log_init("ca-cas-storaged");
    int rc =
        cas_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, usage, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        return 2;
    }
    if (cas_log_set_level(log_level) < 0) {
        fprintf(stderr, "ca-cas-storaged: --log-level \"%s\": want debug, info, warn or error\n",
                log_level);
        return 2;
    }
    if (http_listen_check(listen, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: --listen: %s\n", err);
        return 2;
    }
    if (list_page && (list_page < 1024 || list_page > 16777216)) {
        fprintf(stderr, "ca-cas-storaged: --list-page-keys %" PRIu64 ": want 1024 to 16777216\n",
                list_page);
        return 2;
    }
    const struct store_backend *backend = store_backend_find(backend_name);
    if (!backend) {
        fprintf(stderr, "ca-cas-storaged: --backend \"%s\": unknown; the backends are %s\n",
                backend_name, store_backend_names());
        return 2;
    }
    if (!dir || !*dir) {
        fprintf(stderr, "ca-cas-storaged: --dir (or CAS_DIR) is required\nusage: %s\n", usage);
        return 2;
    }
    const struct cas_hash_algo *algo = NULL;
    if (hash && !(algo = cas_hash_by_name(hash))) {
        fprintf(stderr, "ca-cas-storaged: --hash \"%s\": want sha1 or sha256\n", hash);
        return 2;
    }
    char *token = NULL;
    if (token_file && cas_token_read(token_file, &token, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        return 2;
    }
    /* TLS: both files read and checked before anything else starts. */
    char *client_ca = NULL;
    if ((tls_cert && *tls_cert) != (tls_key && *tls_key) ||
        (tls_client_ca && *tls_client_ca && !(tls_cert && *tls_cert))) {
        fprintf(stderr, "ca-cas-storaged: --tls-cert and --tls-key go together "
                        "(and --tls-client-ca needs them)\n");
        free(token);
        return 2;
    }
    if (tls_client_ca && *tls_client_ca &&
        cas_pem_read_ca(tls_client_ca, "--tls-client-ca", &client_ca, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        free(token);
        return 2;
    }
    if (tls_cert && *tls_cert &&
        cas_tls_load(tls_cert, tls_key, client_ca != NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        free(client_ca);
        free(token);
        return 2;
    }
    /* A storaged's main client is a balancer, all of whose requests come
     * from one address: it may use all but 16 connections, which stay for
     * everyone else (probes from other balancers, operators). */
    if (!per_client && threads > 32)
        per_client = threads - 16;
    if (!threads || threads > 1000000 || per_client > threads || !header_timeout ||
        header_timeout > 86400 || !idle_timeout || idle_timeout > 86400) {
        fprintf(stderr, "ca-cas-storaged: want 1 <= --max-client-connections <= --threads <= "
                        "1000000 and timeouts from 1 to 86400 s\n");
        free(token);
        free(client_ca);
        return 2;
    }
    if (s3_timeout_ms < S3_MIN_TIMEOUT_MS || s3_timeout_ms > S3_MAX_TIMEOUT_MS) {
        fprintf(stderr, "ca-cas-storaged: want --s3-timeout-ms from %u to %u\n",
                S3_MIN_TIMEOUT_MS, S3_MAX_TIMEOUT_MS);
        free(token);
        free(client_ca);
        return 2;
    }
    if (auth_reads && !token) {
        /* Without a token --auth-reads would guard nothing: refuse it. */
        fprintf(stderr, "ca-cas-storaged: --auth-reads needs --token-file\n");
        free(client_ca);
        return 2;
    }
    if (make_dirs(dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        free(token);
        free(client_ca);
        return 1;
    }
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        fprintf(stderr, "ca-cas-storaged: cannot open %s: %s\n", dir, strerror(errno));
        free(token);
        free(client_ca);
        return 1;
    }
    uint64_t measured = capacity;
    struct statvfs vfs;
    if (!measured && fstatvfs(dirfd, &vfs) == 0)
        measured = (uint64_t)vfs.f_blocks * vfs.f_frsize;

    /* The S3 keys: from files, or from the environment; never argv. */
    char *s3_access = NULL, *s3_secret = NULL;
    struct store_options sopts = {.dir = dir,
                                  .read_only = read_only,
                                  .capacity = capacity,
                                  .max_object_size = max_size,
                                  .s3_endpoint = s3_endpoint,
                                  .s3_bucket = s3_bucket,
                                  .s3_region = s3_region,
                                  .s3_timeout_ms = s3_timeout_ms};
    if (backend == &s3_backend) {
        const char *bad = NULL;
        if (s3_access_file && cas_token_read(s3_access_file, &s3_access, err, sizeof(err)) < 0)
            bad = "--s3-access-key-file";
        else if (s3_secret_file && cas_token_read(s3_secret_file, &s3_secret, err, sizeof(err)) < 0)
            bad = "--s3-secret-key-file";
        if (bad) {
            fprintf(stderr, "ca-cas-storaged: %s: %s\n", bad, err);
            close(dirfd);
            free(s3_access);
            free(token);
            free(client_ca);
            return 2;
        }
        if (!s3_access && getenv("CAS_S3_ACCESS_KEY"))
            s3_access = strdup(getenv("CAS_S3_ACCESS_KEY"));
        if (!s3_secret && getenv("CAS_S3_SECRET_KEY"))
            s3_secret = strdup(getenv("CAS_S3_SECRET_KEY"));
        sopts.s3_access_key = s3_access;
        sopts.s3_secret_key = s3_secret;
        if (!capacity || !s3_endpoint || !s3_bucket || !s3_access || !s3_secret) {
            fprintf(stderr,
                    "ca-cas-storaged: --backend s3 needs --capacity BYTES, --s3-endpoint URL, "
                    "--s3-bucket NAME and the keys (--s3-access-key-file and "
                    "--s3-secret-key-file, or CAS_S3_ACCESS_KEY and CAS_S3_SECRET_KEY)\n");
            close(dirfd);
            free(s3_access);
            free(s3_secret);
            free(token);
            free(client_ca);
            return 2;
        }
    }
    if (backend->prepare && backend->prepare(&sopts, dirfd, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        close(dirfd);
        free(s3_access);
        free(s3_secret);
        free(token);
        free(client_ca);
        return 1;
    }

    struct storaged app = {
        .dir = dir, .listen = listen, .started = time(NULL), .list_page_keys = (size_t)list_page};
    if (node_load_or_create(dirfd, dir, algo, measured, &app.node, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        close(dirfd);
        free(s3_access);
        free(s3_secret);
        free(token);
        free(client_ca);
        return 1;
    }
    close(dirfd);
    sopts.algo = app.node.algo;
    int orc = backend->open(&sopts, &app.store, err, sizeof(err));
    if (s3_secret)
        explicit_bzero(s3_secret, strlen(s3_secret));
    free(s3_access);
    free(s3_secret);
    if (orc < 0) {
        /* A refusal is a clean exit 1 (under LeakSanitizer too). */
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        node_free(&app.node);
        free(token);
        free(client_ca);
        return 1;
    }
    struct store_info in;
    store_info(app.store, &in);
    if (backend == &disk_backend) {
        struct disk_replay_stats rs;
        disk_replay_stats(app.store, &rs);
        log_info("store %s: %" PRIu64 " objects, %" PRIu64 " bytes; index replayed in %.3f s "
                 "(%" PRIu64 " records, %" PRIu64 " damaged, %" PRIu64 " torn bytes cut)",
                 dir, in.objects, in.bytes, rs.seconds, rs.records, rs.bad_records, rs.torn_bytes);
    } else {
        log_info("store %s (%s backend): %" PRIu64 " objects, %" PRIu64 " bytes", dir,
                 backend->name, in.objects, in.bytes);
    }

    /* Signals are taken by sigwait below; every other thread blocks them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct http_server_config hc = {.listen = listen,
                                    .routes = storaged_routes,
                                    .nroutes = storaged_nroutes,
                                    .app = &app,
                                    .token = token,
                                    .auth_reads = auth_reads,
                                    .max_connections = (unsigned)threads,
                                    .max_client_connections = (unsigned)per_client,
                                    .header_timeout_s = (unsigned)header_timeout,
                                    .idle_timeout_s = (unsigned)idle_timeout,
                                    .metrics = storaged_metrics,
                                    .tls = cas_tls_enabled(),
                                    .tls_trust = client_ca};
    struct http_server *srv;
    if (http_server_start(&hc, &srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-storaged: %s\n", err);
        store_destroy(app.store);
        node_free(&app.node);
        free(token);
        free(client_ca);
        return 1;
    }
    log_info("node %s (%s, %zu tokens) serving %s on %s://%s%s", app.node.id, app.node.algo->name,
             app.node.ntokens, dir, cas_tls_enabled() ? "https" : "http", listen,
             client_ca ? " (client certificates required)" : "");
    if (scrub_rate && store_scrub_start(app.store, scrub_rate * 1000000, err, sizeof(err)) < 0)
        log_warn("%s", err);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
        /* SIGHUP: take the certificate and key again from disk; new
         * handshakes use them, open connections go on. A bad file keeps
         * the old ones. */
        if (!cas_tls_enabled())
            log_info("SIGHUP: no TLS configured, nothing to reload");
        else if (cas_tls_reload(err, sizeof(err)) < 0)
            log_error("SIGHUP: TLS certificate not reloaded, keeping the old one: %s", err);
        else
            log_info("SIGHUP: TLS certificate and key reloaded from %s, %s", tls_cert, tls_key);
    }
    log_info("%s: finishing requests in flight", strsignal(sig));
    http_server_stop(srv, 30000);
    store_destroy(app.store);
    node_free(&app.node);
    free(token);
    free(client_ca);
    log_info("stopped");
    return 0;
}
