/*
 * fake_balancer.h - a balancer over fake backends (fake_backend.h) for the
 * balancerd suites that drive its transport directly: the config written,
 * balancer_init (no HTTP server) and a view taken; and the reverse.
 */
#ifndef CAS_TEST_FAKE_BALANCER_H
#define CAS_TEST_FAKE_BALANCER_H

#include "balancer.h"

#include <stdio.h>

/* Writes to cfg_path a config of `replicas` over the n backend URLs, each in
 * its own failure domain ("a", "b", ...), and opens bal on it with the
 * options o (its config_path set here); *v is a view of it. 0, or -1 with
 * err filled when balancer_init refused. */
static inline int fake_balancer_init(struct balancer *bal, struct view **v, const char *cfg_path,
                                     unsigned replicas, const char *const *urls, size_t n,
                                     struct balancer_options o, char *err, size_t errlen)
{
    FILE *f = fopen(cfg_path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s", cfg_path);
        return -1;
    }
    fprintf(f, "replicas: %u\nbackends:\n", replicas);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  - url: %s\n    failure_domain: %c\n", urls[i], (char)('a' + i));
    fclose(f);
    o.config_path = cfg_path;
    if (balancer_init(bal, &o, err, errlen) < 0)
        return -1;
    *v = view_get(bal);
    return 0;
}

static inline void fake_balancer_stop(struct balancer *bal, struct view *v)
{
    view_put(v);
    balancer_stop(bal);
}

#endif
