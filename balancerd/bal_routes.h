/*
 * bal_routes.h - balancerd's route table and HTTP server (front layer:
 * routes.c). Named apart from storaged/routes.h, which shares the include
 * path of the unit tests and fuzz targets.
 */
#ifndef CAS_BAL_ROUTES_H
#define CAS_BAL_ROUTES_H

#include "state.h"

#include <stddef.h>

/* Starts bal's HTTP server on bal->listen with every route. 0 or -errno
 * with err set. */
int routes_start_server(struct balancer *bal, char *err, size_t errlen);

#endif
