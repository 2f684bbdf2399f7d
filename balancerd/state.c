/*
 * state.c - the functions that only read or release the balancer's shared
 * state (state.h): a view's reference count, the backends' health as the
 * probes left it. The bottom layer of balancerd: it calls nothing of it.
 */
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void backend_put(struct backend *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(b->url);
    free(b->domain);
    free(b->tokens);
    free(b);
}

struct view *view_get(struct balancer *bal)
{
    pthread_mutex_lock(&bal->lock);
    struct view *v = bal->view;
    __atomic_add_fetch(&v->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&bal->lock);
    return v;
}

void view_conf_free_tls(struct view_conf *conf)
{
    free(conf->ca_pem);
    free(conf->client_cert_pem);
    if (conf->client_key_pem)
        explicit_bzero(conf->client_key_pem, conf->client_key_len);
    free(conf->client_key_pem);
    cas_tls_client_put(conf->tls);
}

void view_put(struct view *v)
{
    if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < v->n; i++)
        backend_put(v->b[i]);
    free(v->b);
    ring_free(v->ring);
    if (__atomic_sub_fetch(&v->conf->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        config_free(v->conf->cfg);
        free(v->conf->token);
        view_conf_free_tls(v->conf);
        free(v->conf);
    }
    free(v);
}

void backend_health(struct balancer *bal, const struct view *v, bool *writable, bool *up)
{
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++) {
        const struct backend *b = v->b[i];
        bool ok = b->up && b->algo == v->algo && ring_backend_tokens(v->ring, i) > 0;
        if (up)
            up[i] = b->up;
        if (writable)
            writable[i] = ok && !b->read_only;
    }
    pthread_mutex_unlock(&bal->lock);
}

void backend_known_down(struct balancer *bal, const struct view *v, bool *down)
{
    pthread_mutex_lock(&bal->lock);
    for (size_t i = 0; i < v->n; i++)
        down[i] = v->b[i]->probed && !v->b[i]->up;
    pthread_mutex_unlock(&bal->lock);
}

void backend_note_failure(struct balancer *bal, struct backend *b, const char *what)
{
    pthread_mutex_lock(&bal->lock);
    snprintf(b->last_error, sizeof(b->last_error), "%s", what);
    pthread_mutex_unlock(&bal->lock);
}
