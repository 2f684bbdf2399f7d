/*
 * balancer.h - ca-cas-balancerd as main.c (and the in-process fuzz target)
 * sees it: the composition root, balancer.c, that builds the layers and
 * starts and stops their threads.
 *
 * The layers and their headers are listed in state.h; each calls only into
 * its own or a lower layer (scripts/check-layers.sh).
 */
#ifndef CAS_BALANCER_H
#define CAS_BALANCER_H

#include "state.h"

#include <stddef.h>

/* Loads the config and builds the first view; starts nothing.
 * Returns 0 or -errno with "file:line:col: message" in err. */
int balancer_init(struct balancer *bal, const struct balancer_options *opt, char *err,
                  size_t errlen);
/* Starts the GC debt and touch log, the repair, probe and anti-entropy
 * threads and the HTTP server. 0 or -errno with err set; call
 * balancer_stop in either case. */
int balancer_start(struct balancer *bal, char *err, size_t errlen);
/* Re-reads the config; on error the old one stays and err says why. */
int balancer_reload(struct balancer *bal, char *err, size_t errlen);
/* Stops everything balancer_start started (whatever part of it did) and
 * drops the view. */
void balancer_stop(struct balancer *bal);

#endif
