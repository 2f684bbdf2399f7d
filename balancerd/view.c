/*
 * view.c - the views: the config (with the token and TLS files it names)
 * loaded into a new view that keeps what was learned about the backends
 * whose URL stays, the ring rebuilt when tokens are learned, and keys
 * parsed against the cluster's hash. View layer (view.h).
 */
#include "view.h"
#include "log.h"
#include "tls.h"
#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the config's TLS files whole (tls.h: cas_pem_read; the client key
 * must not be readable by group or others). A client certificate outside
 * its validity period refuses a reloaded config (the running one stays);
 * at start (reload false) it is logged as an error, as the server's own
 * certificate is (tls.h). 0 or -errno with a message. */
static int read_tls_files(const struct config *cfg, struct view_conf *conf, bool reload,
                          char *err, size_t errlen)
{
    char msg[1024];
    int rc = 0;
    if (cfg->ca_file)
        rc = cas_pem_read_ca(cfg->ca_file, "ca_file", &conf->ca_pem, &conf->ca_len, msg,
                             sizeof(msg));
    if (rc == 0 && cfg->tls_client_cert)
        rc = cas_pem_read(cfg->tls_client_cert, "tls_client_cert", false, &conf->client_cert_pem,
                          &conf->client_cert_len, msg, sizeof(msg));
    if (rc == 0 && cfg->tls_client_cert) {
        bool soon;
        rc = cas_tls_cert_validity(conf->client_cert_pem, conf->client_cert_len,
                                   "tls_client_cert", cfg->tls_client_cert, &soon, msg,
                                   sizeof(msg));
        if (rc == -EKEYEXPIRED && !reload) {
            log_error("%s: %s", cfg->path, msg);
            rc = 0;
        } else if (rc == 0 && soon) {
            log_warn("%s: %s", cfg->path, msg);
        }
    }
    if (rc == 0 && cfg->tls_client_key)
        rc = cas_pem_read(cfg->tls_client_key, "tls_client_key", true, &conf->client_key_pem,
                          &conf->client_key_len, msg, sizeof(msg));
    bool https = false;
    for (size_t i = 0; i < cfg->nbackends; i++)
        https |= !strncmp(cfg->backends[i].url, "https://", 8);
    if (rc == 0 && https)
        rc = cas_tls_client_new(conf->ca_pem, conf->ca_len, conf->client_cert_pem,
                                conf->client_cert_len, conf->client_key_pem,
                                conf->client_key_len, &conf->tls, msg, sizeof(msg));
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", cfg->path, msg);
    return rc;
}

/* The cluster's hash: that of most backends whose tokens are known
 * (common/hash.h cas_hash_of_cluster). */
const struct cas_hash_algo *view_cluster_algo(struct backend **b, size_t n)
{
    const struct cas_hash_algo *algos[n ? n : 1];
    for (size_t i = 0; i < n; i++)
        algos[i] = b[i]->algo && b[i]->ntokens ? b[i]->algo : NULL;
    return cas_hash_of_cluster(algos, n);
}

/* Is b a ring member: tokens known, the cluster's hash, and no earlier
 * backend claiming the same node id? Caller holds the lock. */
static bool ring_member(struct backend **b, size_t n, size_t i, const struct cas_hash_algo *algo)
{
    if (!b[i]->ntokens || b[i]->algo != algo)
        return false;
    for (size_t j = 0; j < i; j++)
        if (b[j]->ntokens && !strcmp(b[j]->node, b[i]->node))
            return false;
    (void)n;
    return true;
}

/* Builds a view over backends b and conf (references taken on both).
 * Caller holds bal->lock. */
static struct view *view_build(struct balancer *bal, struct view_conf *conf, struct backend **b,
                               size_t n)
{
    struct view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->refs = 1;
    v->conf = conf;
    v->cfg = conf->cfg;
    v->token = conf->token;
    v->n = n;
    v->b = calloc(n ? n : 1, sizeof(*v->b));
    v->ring = ring_new(n);
    if (!v->b || !v->ring) {
        free(v->b);
        ring_free(v->ring);
        free(v);
        return NULL;
    }
    v->algo = view_cluster_algo(b, n);
    for (size_t i = 0; i < n; i++) {
        v->b[i] = b[i];
        __atomic_add_fetch(&b[i]->refs, 1, __ATOMIC_ACQ_REL);
        bool member = ring_member(b, n, i, v->algo);
        ring_add_backend(v->ring, i, b[i]->node, b[i]->domain, member ? b[i]->tokens : NULL,
                         member ? b[i]->ntokens : 0);
    }
    ring_finish(v->ring);
    __atomic_add_fetch(&conf->refs, 1, __ATOMIC_ACQ_REL);
    v->generation = ++bal->generation;
    return v;
}

/* Replaces the current view with one over the same config and backends,
 * after tokens changed. Caller holds the lock. */
void view_rebuild_locked(struct balancer *bal)
{
    struct view *old = bal->view;
    struct view *v = view_build(bal, old->conf, old->b, old->n);
    if (!v)
        return;
    bal->view = v;
    view_put(old);
}

/* ---- config ------------------------------------------------------------- */

static int read_token(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path)
        return 0;
    return cas_token_read(path, out, err, errlen);
}

/* The token for a view of cfg: at start, token_file's contents (NULL when
 * none); on a reload, the token the balancer started with, in both
 * directions: the HTTP server checks clients against the start's token
 * for the process's life (routes.c), so backends must get that one too, or
 * a token_file changed before a SIGHUP would have the balancer send a
 * token its backends refuse while its clients still need the old one
 * (OPERATIONS.md "Token rotation"). A reload that finds token_file
 * changed, gone or unreadable logs that the old token stays; never
 * refused for it. 0 or -ENOMEM (reload) / the token file's error (start). */
static int view_token(struct balancer *bal, const struct config *cfg, char **out, char *err,
                      size_t errlen)
{
    pthread_mutex_lock(&bal->lock);
    const struct view *cur = bal->view;
    bool reload = cur != NULL;
    char *kept = cur && cur->token ? strdup(cur->token) : NULL;
    bool had = cur && cur->token;
    pthread_mutex_unlock(&bal->lock);
    if (!reload)
        return read_token(cfg->token_file, out, err, errlen);
    if (had && !kept) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char *fresh = NULL, e[512];
    int rc = read_token(cfg->token_file, &fresh, e, sizeof(e));
    if (rc < 0)
        log_warn("reload: %s; the balancer keeps the token it started with (clients and "
                 "backends alike; a restart now would fail)",
                 e);
    else if ((fresh == NULL) != (kept == NULL) || (fresh && strcmp(fresh, kept) != 0))
        log_warn("reload: %s%s%s: the balancer keeps %s it started with, for its clients and its "
                 "backends alike; restart it to change that",
                 fresh ? "token_file " : "token_file is no longer in the config",
                 fresh ? cfg->token_file : "",
                 !fresh ? ""
                 : kept ? " holds another token"
                        : " is new in the config",
                 kept ? "the token" : "no token");
    free(fresh);
    *out = kept;
    return 0;
}

/* Settings read once, at start: the address served (unless --listen) and
 * auth_reads (unless --auth-reads), which the HTTP server keeps for the
 * process's life. A reload that changes them says that they wait for a
 * restart, rather than "config reloaded" alone. */
static void note_start_only(struct balancer *bal, const struct config *cfg)
{
    pthread_mutex_lock(&bal->lock);
    const struct config *cur = bal->view ? bal->view->cfg : NULL;
    bool auth_changed = cur && !bal->opt.auth_reads && cur->auth_reads != cfg->auth_reads;
    bool listen_changed =
        cur && !bal->opt.listen &&
        strcmp(cur->listen ? cur->listen : "", cfg->listen ? cfg->listen : "") != 0;
    pthread_mutex_unlock(&bal->lock);
    if (auth_changed)
        log_warn("reload: auth_reads is now %s in %s, but it takes effect only at a restart: "
                 "object reads %s the token until then",
                 cfg->auth_reads ? "true" : "false", cfg->path,
                 cfg->auth_reads ? "still do not need" : "still need");
    if (listen_changed)
        log_warn("reload: listen is now \"%s\" in %s, but the balancer goes on serving %s until "
                 "it is restarted",
                 cfg->listen ? cfg->listen : "", cfg->path, bal->listen);
}

/* Loads the config and makes a new view, reusing old backends' knowledge
 * for the URLs that remain. */
int view_load(struct balancer *bal, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    int rc = config_load(bal->opt.config_path, &cfg, err, errlen);
    if (rc < 0)
        return rc;
    note_start_only(bal, cfg);
    char *token = NULL;
    rc = view_token(bal, cfg, &token, err, errlen);
    if (rc < 0) {
        config_free(cfg);
        return rc;
    }
    struct backend **b = calloc(cfg->nbackends, sizeof(*b));
    struct view_conf *conf = calloc(1, sizeof(*conf));
    if (!b || !conf) {
        free(b);
        free(conf);
        config_free(cfg);
        free(token);
        return -ENOMEM;
    }
    conf->cfg = cfg;
    conf->token = token;
    if ((rc = read_tls_files(cfg, conf, __atomic_load_n(&bal->view, __ATOMIC_ACQUIRE) != NULL,
                             err, errlen)) < 0) {
        view_conf_free_tls(conf);
        free(b);
        free(conf);
        config_free(cfg);
        free(token);
        return rc;
    }
    pthread_mutex_lock(&bal->lock);
    struct view *old = bal->view;
    for (size_t i = 0; i < cfg->nbackends; i++) {
        struct backend *prev = NULL;
        for (size_t j = 0; old && j < old->n; j++)
            if (!strcmp(old->b[j]->url, cfg->backends[i].url))
                prev = old->b[j];
        if (prev && !strcmp(prev->domain, cfg->backends[i].domain)) {
            b[i] = prev;
            __atomic_add_fetch(&prev->refs, 1, __ATOMIC_ACQ_REL);
            continue;
        }
        b[i] = calloc(1, sizeof(**b));
        if (!b[i] || !(b[i]->url = strdup(cfg->backends[i].url)) ||
            !(b[i]->domain = strdup(cfg->backends[i].domain))) {
            pthread_mutex_unlock(&bal->lock);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM; /* leaks on OOM at startup: main exits */
        }
        b[i]->refs = 1;
        snprintf(b[i]->last_error, sizeof(b[i]->last_error), "not probed yet");
        if (prev) {
            /* Same URL, new failure domain: keep what it told us. */
            snprintf(b[i]->node, sizeof(b[i]->node), "%s", prev->node);
            b[i]->algo = prev->algo;
            b[i]->up = prev->up;
            b[i]->probed = prev->probed;
            if (prev->ntokens && (b[i]->tokens = malloc(prev->ntokens * sizeof(uint64_t)))) {
                memcpy(b[i]->tokens, prev->tokens, prev->ntokens * sizeof(uint64_t));
                b[i]->ntokens = prev->ntokens;
            }
        }
    }
    struct view *v = view_build(bal, conf, b, cfg->nbackends);
    for (size_t i = 0; i < cfg->nbackends; i++)
        backend_put(b[i]); /* the view holds its own references */
    free(b);
    if (!v) {
        pthread_mutex_unlock(&bal->lock);
        config_free(cfg);
        free(token);
        view_conf_free_tls(conf);
        free(conf);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    bal->view = v;
    pthread_mutex_unlock(&bal->lock);
    view_put(old);
    return 0;
}

int view_parse_key(const struct view *v, const char *s, size_t len, struct cas_key *k, char *err,
                   size_t errlen)
{
    const struct cas_hash_algo *algo = v->algo;
    if (!algo) {
        /* No backend has told us the cluster's hash yet: go by the form. */
        const char *colon = memchr(s, ':', len);
        if (colon) {
            char name[16];
            size_t nl = (size_t)(colon - s);
            if (nl < sizeof(name)) {
                memcpy(name, s, nl);
                name[nl] = '\0';
                algo = cas_hash_by_name(name);
            }
        } else {
            for (size_t i = 0; i < cas_hash_algo_count; i++)
                if (cas_hash_algos[i].hex_len == len)
                    algo = &cas_hash_algos[i];
        }
        if (!algo)
            algo = cas_hash_by_name("sha1");
    }
    return cas_key_parse(s, len, algo, k, err, errlen);
}
