/*
 * copy.h - copying one object from one backend to another: the one path
 * that read repair, quarantine repair and anti-entropy (balancerd) and
 * `ca-cas rebalance` (common/rebalance_run.c) use to make a replica.
 *
 * cas_copy_object streams GET {src}/objects/{hex} into
 * PUT {dst}/objects/{hex}?replica=1 (a copy between replicas: a storaged
 * where a client deleted the key refuses it with 410, so a copy never
 * undoes a DELETE; SPEC "Deletion"). The balancer's completion of a
 * client's write that fell short of min_replicas is the one caller that
 * copies as the client's write (client_write: no ?replica=1). What it
 * promises:
 *
 *   - Bounded memory: one CAS_COPY_BUFFER (1 MiB) per copy whatever the object's
 *     size; the source is read only as fast as the target takes the bytes.
 *   - The bytes are hashed as they pass (hash.h) and the target never gets
 *     a complete body that does not match the key: the last byte of the body
 *     is held back until the source's answer has ended cleanly and the
 *     digest matched. A wrong, short or overlong source aborts the PUT before its
 *     end, so the target stores nothing (and the storaged checks the digest
 *     itself too; SPEC "Integrity").
 *   - A source that answers 404 or 410 (it no longer has the object, or a
 *     client deleted it there) is never copied from, and no PUT is sent.
 *   - Time is bounded: connecting (connect_timeout_ms), a transfer that does
 *     not move (stall_timeout_ms), the target's answer once the body is sent
 *     (answer_timeout_ms: a storaged syncs before answering), and the whole
 *     copy (total_timeout_ms, optional).
 *   - The caller's bandwidth cap (throttle) is charged for every byte read
 *     from the source; the source is paused, never the thread put to sleep.
 *
 * Mechanism: one thread, one libcurl multi handle driving both transfers.
 * The GET's write callback fills the buffer and pauses its transfer when
 * the buffer is full; the PUT's read callback empties it and pauses when it
 * is empty. The loop unpauses whichever side can move. Compared with the
 * socketpair and helper thread rebalance used before, there is no thread
 * to start and join per copy, the two sides' failures are seen in one
 * place (so a failing source always aborts the PUT before its last byte),
 * and the digest can be checked before the target sees the end.
 *
 * A struct cas_copier keeps the handles (and so the keep-alive connections)
 * from one copy to the next; one per thread, never shared.
 */
#ifndef CAS_COPY_H
#define CAS_COPY_H

#include "ctl.h"
#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAS_COPY_BUFFER (1u << 20) /* bytes held per copy */
#define CAS_COPY_DEFAULT_CONNECT_MS 2000u
#define CAS_COPY_DEFAULT_STALL_MS 30000u
#define CAS_COPY_DEFAULT_ANSWER_MS 600000u

struct cas_copy_options {
    const struct cas_hash_algo *algo; /* the key's algorithm (required) */
    /* How to reach the backends, as for every request to them (ctl.h): the
     * token (sent to both), TLS, connect_timeout_ms (0: the default above),
     * user agent (NULL: "ca-cas/<version>"), connection pool. Its
     * timeout_ms, stall_ms, stop and expect_continue are not used: the
     * copy's own below apply, and a PUT never waits for 100-continue.
     * NULL: no token, the system's CA store. */
    const struct cas_ctl_opts *ctl;
    /* Timeouts in milliseconds; 0 picks the CAS_COPY_DEFAULT_* above
     * (total: no limit). stall: longest time no byte moves while the body
     * is being copied (the source's answer head included). */
    unsigned stall_timeout_ms;
    /* The source's answer head: at most this long from the copy's start
     * (0: the stall limit), so that a hung source is given up soon and the
     * caller can try another one (the balancer's first_byte_timeout). */
    unsigned head_timeout_ms;
    unsigned answer_timeout_ms;
    unsigned total_timeout_ms;
    /* Bandwidth cap, optional: called with each block of bytes read from
     * the source; returns how many nanoseconds the copy must wait before
     * reading more (0: none). Called from the copying thread only. */
    uint64_t (*throttle)(void *cls, uint64_t bytes);
    void *throttle_cls;
    /* Optional: bytes sent to the target are added here (atomically) as
     * they go, for progress across threads. */
    uint64_t *counter;
    /* Optional: set non-zero (by a signal handler, a shutdown) to stop the
     * copy within about 100 ms; the target keeps nothing. */
    volatile int *stop;
    /* Optional: asked about every 100 ms while the target has been idle
     * for 100 ms or more; true gives the target up at once (-EHOSTDOWN),
     * without waiting for the timeouts above. The balancer answers from
     * its probes, so a hung target costs a copy no more than a dead one
     * (SPEC "Partial failure"). */
    bool (*target_down)(void *cls);
    void *target_down_cls;
    /* The PUT completes a client's write (the balancer walking on past a
     * failed target): sent without ?replica=1, so a tombstone on the
     * target does not refuse it, as it would not refuse the client. */
    bool client_write;
    bool no_sync; /* PUT ?sync=0: the client traded durability away */
    /* One more request header on the PUT ("Name: value"; NULL: none): a
     * client write's X-CAS-Timestamp (common/stamp.h), so the target orders
     * it against a delete as it orders the client's own PUT. */
    const char *put_header;
};

/* Which side a failure came from. */
enum cas_copy_side {
    CAS_COPY_NONE = 0, /* copied */
    CAS_COPY_SOURCE,   /* the GET: unreachable, an error status, wrong/short bytes */
    CAS_COPY_TARGET,   /* the PUT: unreachable, refused, no answer */
    CAS_COPY_LOCAL,    /* here: bad arguments, out of memory, stopped */
};

struct cas_copy_result {
    uint64_t bytes;     /* body bytes the target took */
    uint64_t size;      /* the object's size (from the source or the caller); 0 unknown */
    long source_status; /* HTTP status of the GET; 0: no answer */
    long target_status; /* HTTP status of the PUT; 0: not sent, or no answer */
    enum cas_copy_side side;
    char error[512]; /* one sentence naming the URL and why; "" when copied */
};

struct cas_copier;

/* Handles for copies made by one thread. NULL when out of memory. */
struct cas_copier *cas_copier_new(void);
void cas_copier_free(struct cas_copier *cp);

/*
 * Copies object hex (lowercase hex of o->algo's digest) from the backend at
 * src to the one at dst (base URLs, "http://host:port", no trailing slash).
 * size: the expected size in bytes, or -1 when unknown (the source's
 * Content-Length is used; a source whose length differs from a known size
 * is refused). cp may be NULL for a one-off copy. res is always filled.
 *
 * Returns 0 once the target answered 200 or 201, or a negative errno:
 *   -EINVAL     bad arguments (a malformed key), nothing sent;
 *   -ENOENT     the source answered 404 or 410: nothing to copy, no PUT;
 *   -EBADMSG    the source's bytes do not hash to the key, or the target
 *               answered 422 (digest mismatch): nothing stored;
 *   -ECANCELED  the target answered 410: a client deleted the key there;
 *   -ENOSPC     the target answered 507 (full);
 *   -EROFS      the target answered 403 or 503 (read-only, forbidden);
 *   -EACCES     either side answered 401 (the token is wrong or missing);
 *   -ETIMEDOUT  a timeout above passed (res->side says whose);
 *   -EHOSTDOWN  target_down said the target is down;
 *   -EINTR      *o->stop was set;
 *   -EIO        anything else (unreachable, another status, a short body).
 */
int cas_copy_object(struct cas_copier *cp, const struct cas_copy_options *o, const char *src,
                    const char *dst, const char *hex, int64_t size, struct cas_copy_result *res);

#endif
