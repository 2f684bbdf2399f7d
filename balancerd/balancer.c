/*
 * balancer.c - the composition root of ca-cas-balancerd: builds the first
 * view, starts the layers' threads bottom up (GC debt and touch log, repair,
 * the probe with its hooks into the GC layer, anti-entropy, the HTTP
 * server) and stops them top down. main.c and the fuzz target call it; no
 * other module does.
 */
#include "balancer.h"
#include "antientropy.h"
#include "bal_routes.h"
#include "gcdebt.h"
#include "gctouch.h"
#include "probe.h"
#include "repair.h"
#include "tagcache.h"
#include "view.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What balancer_init made, undone when it refuses to go on. */
static void init_undo(struct balancer *bal)
{
    view_put(bal->view);
    bal->view = NULL;
    tag_cache_free(bal->tags);
    bal->tags = NULL;
}

int balancer_init(struct balancer *bal, const struct balancer_options *opt, char *err,
                  size_t errlen)
{
    memset(bal, 0, sizeof(*bal));
    bal->opt = *opt;
    if (!bal->opt.connect_timeout_ms)
        bal->opt.connect_timeout_ms = 2000;
    if (!bal->opt.first_byte_timeout_ms)
        bal->opt.first_byte_timeout_ms = 10000;
    if (!bal->opt.io_timeout_ms)
        bal->opt.io_timeout_ms = 30000;
    if (!bal->opt.stall_ms)
        bal->opt.stall_ms = 250;
    if (!bal->opt.probe_interval_ms)
        bal->opt.probe_interval_ms = 1000;
    if (!bal->opt.spool_dir)
        bal->opt.spool_dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    /* POST bodies and key lists are spooled there: a folder that is not
     * one, or not writable, is a usage error now, not a 500 per POST. */
    struct stat st;
    const char *bad = NULL;
    if (stat(bal->opt.spool_dir, &st) < 0)
        bad = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        bad = "not a folder";
    else if (access(bal->opt.spool_dir, W_OK | X_OK) < 0)
        bad = strerror(errno);
    if (bad) {
        snprintf(err, errlen, "--spool-dir %s: %s", bal->opt.spool_dir, bad);
        return -EINVAL;
    }
    bal->start_ns = cas_now_ns();
    pthread_mutex_init(&bal->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&bal->probe_cond, &ca);
    pthread_condattr_destroy(&ca);
    /* The tags only save CPU: without them every read is hashed. */
    char why[160];
    if (bal->opt.tag_cache_bytes &&
        !(bal->tags = tag_cache_new(bal->opt.tag_cache_bytes, why, sizeof(why))))
        log_warn("no tag cache (--tag-cache-mb): %s; every large GET is hashed", why);
    int rc = view_load(bal, err, errlen);
    if (rc < 0) {
        init_undo(bal);
        return rc;
    }
    /* A usage error, refused before anything starts (exit 2, as the
     * storaged's): routes.c relies on it. */
    if ((opt->auth_reads || bal->view->cfg->auth_reads) && !bal->view->token) {
        snprintf(err, errlen, "auth_reads needs a token: set token_file in %s", opt->config_path);
        init_undo(bal);
        return -EINVAL;
    }
    const char *listen = opt->listen ? opt->listen
                         : bal->view->cfg->listen ? bal->view->cfg->listen
                                                  : "127.0.0.1:6001";
    char why_listen[512];
    if (http_listen_check(listen, why_listen, sizeof(why_listen)) < 0) {
        snprintf(err, errlen, "%s%s: %s", opt->listen ? "--listen" : "listen in ",
                 opt->listen ? "" : opt->config_path, why_listen);
        init_undo(bal);
        return -EINVAL;
    }
    snprintf(bal->listen, sizeof(bal->listen), "%s", listen);
    return 0;
}

int balancer_start(struct balancer *bal, char *err, size_t errlen)
{
    int rc = gcdebt_init(bal);
    if (rc == 0)
        rc = gctouch_init(bal);
    if (rc == 0)
        rc = repair_init(bal);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the repair thread: %s", strerror(-rc));
        return rc;
    }
    /* The probe learns of GC cycles; the GC layer above acts on them. */
    bal->hooks.gc_cycle_noticed = gctouch_cycle_noticed;
    bal->hooks.gc_probe_round = gcdebt_probe_round;
    if ((rc = probe_start(bal, err, errlen)) < 0)
        return rc;
    if ((rc = routes_start_server(bal, err, errlen)) < 0)
        return rc;
    return antientropy_start(bal, err, errlen);
}

void balancer_stop(struct balancer *bal)
{
    antientropy_stop(bal);
    if (bal->srv)
        http_server_stop(bal->srv, 10000);
    bal->srv = NULL;
    probe_stop(bal);
    repair_stop(bal);
    gctouch_free(bal);
    gcdebt_free(bal);
    if (bal->compact_thread_joinable)
        pthread_join(bal->compact_thread, NULL);
    view_put(bal->view);
    bal->view = NULL;
    tag_cache_free(bal->tags);
    bal->tags = NULL;
}

int balancer_reload(struct balancer *bal, char *err, size_t errlen)
{
    int rc = view_load(bal, err, errlen);
    if (rc == 0)
        probe_wake(bal); /* probe the new backends now */
    return rc;
}
