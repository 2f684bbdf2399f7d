/*
 * rebalance.h - bringing every object to its home set: the engine behind
 * `ca-cas rebalance` and the balancer's background anti-entropy.
 *
 * One pass:
 *
 *   1. The cluster is described (rb_cluster): every configured backend with
 *      its failure domain, node id and ring tokens (when known) and whether
 *      it answers now. The ring is built with common/ring.c, so homes are
 *      exactly the balancer's.
 *   2. Every backend that is up streams its listing (GET /objects); the
 *      listings are merged into one table (rb_objects): digest, size, and
 *      which backends hold a copy. About 48 bytes per distinct object.
 *   3. Each object gets a plan (rb_plan_object, pure): the home backends
 *      that lack it and can take a copy, and the copies outside the home
 *      that may go once the home is complete.
 *   4. Workers carry the plans out: a missing home copy is streamed from a
 *      holder (GET) into the home backend (PUT) by common/copy.c, which
 *      checks the digest before the target gets the last byte (and the
 *      target checks it again); memory per copy is 1 MiB. Only once every home copy
 *      exists, each home backend is asked again (HEAD) whether it holds
 *      the object right now, and only when all say yes are the copies
 *      outside the home deleted.
 *
 * Safety rules (the same for the CLI and the balancer):
 *   - a home copy is never deleted; a copy outside the home is deleted only
 *     after every home backend confirmed its copy (HEAD 200) just before;
 *   - nothing is deleted for an object whose home has a backend that is
 *     down or read-only, nor when fewer than `replicas` homes exist;
 *   - nothing at all is deleted in a pass where some configured backend's
 *     tokens are unknown (never answered): homes might then be wrong;
 *   - backends that are down are never written to nor deleted from.
 * So two passes at once (two CLIs, a CLI and a balancer) cannot lose an
 * object as long as they use the same config: each deletes only copies
 * outside a home it has just seen complete. An interrupted pass leaves at
 * worst extra copies, which the next pass removes.
 *
 * Limits: `concurrency` copies at once (default 4) and a token bucket over
 * the bytes copied (`max_mbps`, in MB/s = 10^6 bytes per second, default
 * 100, 0 = unlimited).
 */
#ifndef CAS_REBALANCE_H
#define CAS_REBALANCE_H

#include "config.h"
#include "hash.h"
#include "ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RB_DEFAULT_CONCURRENCY 4
#define RB_DEFAULT_MAX_MBPS 100.0

/* ---- the cluster ------------------------------------------------------- */

struct rb_backend {
    char *url;    /* "http://host:port" */
    char *domain; /* failure domain */
    char node[128];
    uint64_t *tokens; /* NULL / 0 when unknown: not on the ring */
    size_t ntokens;
    bool up;         /* answered just now */
    bool writable;   /* up and not read-only */
    char error[256]; /* why it is down or not writable */
};

struct rb_cluster {
    size_t n;
    struct rb_backend *b;
    unsigned replicas;
    const struct cas_hash_algo *algo; /* the cluster's; NULL when no backend answered */
    struct ring *ring;                /* built by rb_cluster_finish */
    bool complete;                    /* every backend's tokens are known */
    char *token;                      /* bearer token sent to backends, or NULL */
    /* TLS to https:// backends: the PEM texts of the config's ca_file,
     * tls_client_cert, tls_client_key (read whole by rb_cluster_probe;
     * NULL when not set: libcurl's system store, no client certificate). */
    char *ca_pem, *cert_pem, *key_pem;
    size_t ca_len, cert_len, key_len;
};

/* An empty cluster of n backends; fill each with rb_cluster_set, then call
 * rb_cluster_finish. */
struct rb_cluster *rb_cluster_new(size_t n, unsigned replicas, const char *token);
void rb_cluster_free(struct rb_cluster *c);
/* Describes backend i (strings and tokens copied). */
int rb_cluster_set(struct rb_cluster *c, size_t i, const char *url, const char *domain,
                   const char *node, const uint64_t *tokens, size_t ntokens, bool up, bool writable,
                   const char *error);
/* Builds the ring. Returns 0 or -errno with a message. */
int rb_cluster_finish(struct rb_cluster *c, char *err, size_t errlen);

/*
 * What `ca-cas rebalance` does first: asks every backend of cfg for
 * GET /ring and GET /status (in parallel, connect_timeout_ms each), and
 * builds the cluster. A backend that does not answer is down (its tokens
 * unknown). Backends with another hash than the first that answered are
 * refused (down, with a message). Returns 0, or -errno when no backend
 * answered at all.
 */
int rb_cluster_probe(const struct config *cfg, const char *token, unsigned connect_timeout_ms,
                     struct rb_cluster **out, char *err, size_t errlen);

/*
 * Parses a storaged's GET /ring answer: node id, hash and tokens (*tokens
 * malloc'd). Returns 0 or -EPROTO with a message.
 */
int rb_parse_ring(const char *json, char *node, size_t nodelen, const struct cas_hash_algo **algo,
                  uint64_t **tokens, size_t *ntokens, char *err, size_t errlen);

/* ---- the plan of one object (pure) ------------------------------------- */

struct rb_plan {
    size_t nhome;
    size_t *home; /* nhome backends, in ring order */
    size_t ncopy;
    size_t *copy_to; /* writable home backends that lack the object */
    size_t nremove;
    size_t *remove;        /* holders outside the home, once the home is complete */
    bool home_unavailable; /* some home backend is down or read-only */
    bool removals_allowed; /* the rules above allow deleting outside copies */
};

/* Arrays sized for c's backends. */
int rb_plan_init(struct rb_plan *p, size_t nbackends);
void rb_plan_free(struct rb_plan *p);

/*
 * The plan for an object at ring position pos held by the backends with
 * holders[i] set (holders has c->n entries). remove[] is filled whether or
 * not removals_allowed, so a dry run can show what waits.
 */
void rb_plan_object(const struct rb_cluster *c, uint64_t pos, const bool *holders,
                    struct rb_plan *p);

/* ---- the table of objects ---------------------------------------------- */

struct rb_objects;

struct rb_objects *rb_objects_new(size_t nbackends);
void rb_objects_free(struct rb_objects *t);
/* Notes that backend holds digest (of len bytes) of size bytes. */
int rb_objects_add(struct rb_objects *t, const unsigned char *digest, size_t len, uint64_t size,
                   size_t backend);
size_t rb_objects_count(const struct rb_objects *t);
/* Object i (0..count-1): digest, size, holders (bits per backend). */
const unsigned char *rb_objects_digest(const struct rb_objects *t, size_t i, uint64_t *size);
bool rb_objects_holds(const struct rb_objects *t, size_t i, size_t backend);
void rb_objects_set_holds(struct rb_objects *t, size_t i, size_t backend, bool holds);

/* ---- running a pass ---------------------------------------------------- */

struct rb_stats {
    uint64_t backends, backends_down;
    uint64_t objects, bytes; /* distinct objects listed, their bytes */
    uint64_t objects_ok;     /* already exactly on their home */
    uint64_t copies_planned, copy_bytes_planned;
    uint64_t removals_planned, removal_bytes_planned; /* allowed by the rules */
    uint64_t removals_held;            /* outside copies kept: their home is incomplete */
    uint64_t objects_home_unavailable; /* a home backend down or read-only */
    uint64_t copies_made, bytes_copied, copies_failed;
    uint64_t bytes_streamed;   /* bytes sent so far, copies in flight included */
    uint64_t objects_vanished; /* deleted by someone else since the listing */
    uint64_t removals_made, removals_failed;
    uint64_t removals_skipped; /* planned, but the home was not confirmed complete */
    uint64_t list_failures;    /* backends whose listing failed */
    double seconds;
    bool interrupted;
};

struct rb_options {
    unsigned concurrency;        /* copies at once; 0: RB_DEFAULT_CONCURRENCY */
    double max_mbps;             /* MB/s over bytes copied; 0: unlimited */
    bool dry_run;                /* list and plan only */
    unsigned connect_timeout_ms; /* 0: 2000 */
    unsigned io_timeout_ms;      /* longest stall of a transfer; 0: 30000 */
    /* Set by the caller (signal handler, balancer shutdown) to stop early:
     * copies in flight are cut, no new work starts. */
    volatile int *stop;
    /* Called from the thread that runs rebalance_run, about ten times a
     * second once the plan is known. */
    void (*progress)(void *cls, const struct rb_stats *s);
    /* One line per notable event (a failed copy, a down backend). */
    void (*event)(void *cls, bool warning, const char *msg);
    void *cls;
};

/*
 * One pass over cluster c (see the top of this file). Fills st as it goes.
 * Returns 0 when the pass ran to its end (individual failures are counted
 * in st), -EINTR when stopped, -errno with a message when it could not run
 * (no backend listed, out of memory).
 */
int rebalance_run(struct rb_cluster *c, const struct rb_options *o, struct rb_stats *st, char *err,
                  size_t errlen);

/* ---- HTTP to backends (rebalance_io.c) --------------------------------- */

/* A token bucket over bytes; rate in bytes per second (0: unlimited). */
struct rb_bucket;
struct rb_bucket *rb_bucket_new(double bytes_per_s);
void rb_bucket_free(struct rb_bucket *b);
/* Takes n bytes without sleeping: returns how many nanoseconds the taker
 * should wait before it takes more (0: none; always 0 when unlimited).
 * The bucket starts full with a burst of 0.1 s of rate (at least 256 KiB)
 * and refills at rate. A copy pauses its source for the wait
 * (common/copy.h's throttle). */
uint64_t rb_bucket_charge(struct rb_bucket *b, uint64_t n);

struct rb_io; /* one worker's connections */

struct rb_io *rb_io_new(const struct rb_cluster *c, const struct rb_options *o,
                        struct rb_bucket *bucket);
/* Where copies add the bytes they send as they go (atomically); NULL: nowhere. */
void rb_io_count_bytes(struct rb_io *io, uint64_t *counter);
void rb_io_free(struct rb_io *io);
/* Streams GET base/path into sink(cls, data, len) (returning <0 aborts).
 * Returns the HTTP status, or -errno with a message. */
long rb_io_get(struct rb_io *io, const char *url, int (*sink)(void *cls, const char *d, size_t n),
               void *cls, char *err, size_t errlen);
/* HEAD or DELETE of url: the status, or -errno with a message. */
long rb_io_simple(struct rb_io *io, const char *method, const char *url, char *err, size_t errlen);
/* Copies object hex of size bytes from src to dst (base URLs) with
 * cas_copy_object (copy.h; PUT ?replica=1: a copy between replicas), with
 * this worker's handles, the cluster's token and TLS, the options' stop
 * flag and io timeout (for a stall and for the target's answer), the
 * bucket and the byte counter. 0 on a 2xx from dst, -ENOENT when src does
 * not have it (404/410), -ECANCELED when dst refuses it because a client
 * deleted the key there (410), -EINTR when stopped, another -errno of
 * copy.h with a message otherwise. */
int rb_io_copy(struct rb_io *io, const char *src, const char *dst, const char *hex, uint64_t size,
               char *err, size_t errlen);

#endif
