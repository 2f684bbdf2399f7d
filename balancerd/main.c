/*
 * main.c - ca-cas-balancerd: parse options, load the config, serve until
 * SIGTERM/SIGINT, re-read the config on SIGHUP.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so reloading and stopping happen on this thread, never inside a
 * signal handler.
 */
#include "balancer.h"
#include "httpd.h"
#include "log.h"
#include "opts.h"
#include "tls.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    cas_log_init("ca-cas-balancerd");
    const char *config = NULL, *listen = NULL, *log_level = NULL, *spool = NULL;
    const char *tls_cert = NULL, *tls_key = NULL;
    bool verify_streamed = false, auth_reads = false;
    uint64_t connect_ms = 2000, first_byte_ms = 10000, io_ms = 30000, probe_ms = 1000;
    uint64_t drain_ms = 5000;
    uint64_t min_read_kbps = 1024, hedge_min_ms = 5, hedge_max_ms = 50, stall_ms = 250;
    uint64_t max_size = 0, tag_cache_mb = 16;
    uint64_t threads = HTTP_DEFAULT_MAX_CONNECTIONS, per_client = 0,
             header_timeout = HTTP_DEFAULT_HEADER_TIMEOUT_S,
             idle_timeout = HTTP_DEFAULT_IDLE_TIMEOUT_S;
    const struct cas_opt opts[] = {
        {"config", CAS_OPT_STRING, &config, "FILE", "the cluster's YAML config (required)"},
        {"listen", CAS_OPT_STRING, &listen, "ADDR:PORT",
         "address to serve on (default: the config's listen, then 127.0.0.1:6001)"},
        {"log-level", CAS_OPT_STRING, &log_level, "LEVEL", "debug, info, warn or error"},
        {"spool-dir", CAS_OPT_STRING, &spool, "DIR",
         "where POST bodies wait for their key (default $TMPDIR or /tmp)"},
        {"connect-timeout-ms", CAS_OPT_UINT, &connect_ms, "MS", "backend connect timeout"},
        {"first-byte-timeout-ms", CAS_OPT_UINT, &first_byte_ms, "MS",
         "wait for a backend's response headers before trying the next"},
        {"io-timeout-ms", CAS_OPT_UINT, &io_ms, "MS", "longest stall of a backend transfer"},
        {"probe-interval-ms", CAS_OPT_UINT, &probe_ms, "MS", "how often backends are probed"},
        {"drain-ms", CAS_OPT_UINT, &drain_ms, "MS",
         "on SIGTERM, answer /healthz 503 and keep serving this long before stopping (5000)"},
        {"verify-streamed", CAS_OPT_FLAG, &verify_streamed, NULL,
         "no effect: every whole-object GET is hashed as it is relayed"},
        {"min-read-kbps", CAS_OPT_UINT, &min_read_kbps, "KIB/S",
         "a backend slower than this for a GET body (after the timeouts) is "
         "given up on (default 1024; 0: no total deadline)"},
        {"hedge-min-ms", CAS_OPT_UINT, &hedge_min_ms, "MS",
         "shortest wait for a copy's answer before asking the next (default 5)"},
        {"hedge-max-ms", CAS_OPT_UINT, &hedge_max_ms, "MS",
         "longest such wait (default 50; 0: no hedged reads)"},
        {"stall-ms", CAS_OPT_UINT, &stall_ms, "MS",
         "once a copy has said it has none, wait at most this (or 4x the slowest answer) "
         "for a copy with no answer head; a listing waits 4x this for each backend (250)"},
        {"threads", CAS_OPT_UINT, &threads, "N", "most client connections served at once (512)"},
        {"max-client-connections", CAS_OPT_UINT, &per_client, "N",
         "most connections from one client address (default: half of --threads)"},
        {"header-timeout", CAS_OPT_UINT, &header_timeout, "SECONDS",
         "a new connection must send its request head within this (10)"},
        {"idle-timeout", CAS_OPT_UINT, &idle_timeout, "SECONDS",
         "close a connection silent this long, or kept alive this long between requests (120)"},
        {"max-object-size", CAS_OPT_SIZE, &max_size, "BYTES",
         "largest object a PUT or POST may carry (no limit; bodies over it answer 413)"},
        {"tag-cache-mb", CAS_OPT_UINT, &tag_cache_mb, "MIB",
         "memory for tags of objects already checked, which makes their next reads cheaper "
         "to check (default 16, for about 1 TiB of objects; 0: hash every read)"},
        {"auth-reads", CAS_OPT_FLAG, &auth_reads, NULL,
         "object reads need the token too (as the config's auth_reads: true)"},
        {"tls-cert", CAS_OPT_STRING, &tls_cert, "FILE",
         "serve HTTPS with this PEM certificate chain (with --tls-key; SIGHUP reloads both)"},
        {"tls-key", CAS_OPT_STRING, &tls_key, "FILE",
         "the certificate's PEM private key (mode 0600 or stricter)"},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    const char *usage =
        "ca-cas-balancerd --config FILE [--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE]";
    char err[1024];
    int rc = cas_opts_parse(opts, nopts, argc, argv, usage, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "ca-cas-balancerd: %s\n", err);
        cas_opts_usage(stderr, opts, nopts, usage);
        return 2;
    }
    if (!config) {
        fprintf(stderr, "ca-cas-balancerd: --config FILE is required\n");
        cas_opts_usage(stderr, opts, nopts, usage);
        return 2;
    }
    if (!threads || threads > 1000000 || per_client > threads || !header_timeout ||
        header_timeout > 86400 || !idle_timeout || idle_timeout > 86400) {
        fprintf(stderr, "ca-cas-balancerd: want 1 <= --max-client-connections <= --threads <= "
                        "1000000 and timeouts from 1 to 86400 s\n");
        return 2;
    }
    if (tag_cache_mb > 1048576) {
        fprintf(stderr, "ca-cas-balancerd: want --tag-cache-mb <= 1048576\n");
        return 2;
    }
    if (log_level && cas_log_set_level(log_level) < 0) {
        fprintf(stderr, "ca-cas-balancerd: bad --log-level \"%s\"\n", log_level);
        return 2;
    }
    if ((tls_cert && *tls_cert) != (tls_key && *tls_key)) {
        fprintf(stderr, "ca-cas-balancerd: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_cert && *tls_cert && cas_tls_load(tls_cert, tls_key, false, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-balancerd: %s\n", err);
        return 2;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    struct balancer_options bo = {
        .config_path = config,
        .listen = listen,
        .spool_dir = spool,
        .connect_timeout_ms = (unsigned)connect_ms,
        .first_byte_timeout_ms = (unsigned)first_byte_ms,
        .io_timeout_ms = (unsigned)io_ms,
        .probe_interval_ms = (unsigned)probe_ms,
        .verify_streamed = verify_streamed,
        .min_read_kbps = (unsigned)(min_read_kbps > UINT32_MAX ? UINT32_MAX : min_read_kbps),
        .hedge_min_ms = (unsigned)(hedge_min_ms > 60000 ? 60000 : hedge_min_ms),
        .hedge_max_ms = (unsigned)(hedge_max_ms > 60000 ? 60000 : hedge_max_ms),
        .stall_ms = (unsigned)(stall_ms > 3600000 ? 3600000 : stall_ms),
        .auth_reads = auth_reads,
        .max_connections = (unsigned)threads,
        .max_client_connections = (unsigned)per_client,
        .header_timeout_s = (unsigned)header_timeout,
        .idle_timeout_s = (unsigned)idle_timeout,
        .max_object_size = max_size,
        .tls = cas_tls_enabled(),
        .tag_cache_bytes = tag_cache_mb << 20,
    };
    static struct balancer bal;
    if (balancer_init(&bal, &bo, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca-cas-balancerd: %s\n", err);
        return 2;
    }
    if (balancer_start(&bal, err, sizeof(err)) < 0) {
        log_error("%s", err);
        balancer_stop(&bal);
        return 1;
    }
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (balancer_reload(&bal, err, sizeof(err)) < 0)
                log_error("config not reloaded, the old one stays in force: %s", err);
            else
                log_info("config reloaded from %s", config);
            if (cas_tls_enabled()) {
                /* New handshakes take the new certificate; open
                 * connections go on with theirs. */
                if (cas_tls_reload(err, sizeof(err)) < 0)
                    log_error("TLS certificate not reloaded, keeping the old one: %s", err);
                else
                    log_info("TLS certificate and key reloaded from %s, %s", tls_cert, tls_key);
            }
            continue;
        }
        if (sig == SIGTERM && drain_ms > 0) {
            /* A load balancer in front sees /healthz fail and takes us out
             * while we still serve; a second SIGTERM or a SIGINT stops at once. */
            atomic_store(&bal.draining, true);
            if (bal.srv)
                http_server_close_keepalive(bal.srv);
            log_info("SIGTERM: draining (/healthz answers 503) for %llu ms, then stopping",
                     (unsigned long long)drain_ms);
            struct timespec ts = {(time_t)(drain_ms / 1000), (long)(drain_ms % 1000) * 1000000L};
            sigset_t stop;
            sigemptyset(&stop);
            sigaddset(&stop, SIGTERM);
            sigaddset(&stop, SIGINT);
            while (sigtimedwait(&stop, NULL, &ts) < 0 && errno == EINTR)
                ;
        }
        log_info("signal %d: stopping", sig);
        break;
    }
    balancer_stop(&bal);
    curl_global_cleanup();
    return 0;
}
