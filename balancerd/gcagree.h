/*
 * gcagree.h - before gc/end, make the backends agree on what was used (GC
 * layer, beside gcdebt.h).
 *
 * SPEC: an object used during a cycle stays alive on every node that holds
 * it, and a cycle begun through one balancer may be ended through any
 * other. A use seen by one replica only (its other holder was down, and
 * the unmark it was owed lives in another balancer's memory, gcdebt.c) is
 * still visible on the backends themselves: the object is garbage on one
 * and held live (unmarked) on another. gcagree_settle finds every such
 * object from the backends alone and unmarks it where it is garbage, so
 * whichever balancer ends the cycle keeps what any replica saw used.
 */
#ifndef CAS_BAL_GCAGREE_H
#define CAS_BAL_GCAGREE_H

#include "state.h"

#include <stddef.h>
#include <stdint.h>

/* Keys held in memory at once: the config's gc_agree_max_keys (default
 * 2^20; about 60 bytes each with up to 64 backends); more garbage than
 * this is compared in several passes, each over one share of the key
 * space (every listing read again per pass). */

struct gcagree_stats {
    uint64_t listed;   /* garbage lines read, over every backend and pass */
    uint64_t asked;    /* keys asked about (POST /objects/missing) */
    uint64_t unmarked; /* garbage copies unmarked because a replica held them live */
    unsigned passes;
};

/*
 * For cycle id, which every backend of v is in or has ended (the caller
 * checked: cluster.c gc_end_check): lists each backend's garbage (GET
 * /objects?state=garbage), asks every other backend about those keys with
 * POST /objects/missing (only keys that are not garbage there, so the
 * question unmarks nothing that is), and unmarks (POST /gc/mark) each
 * garbage copy whose key another backend holds live. Only ever unmarks:
 * a failure part way keeps more, never less. Returns 0, or -EAGAIN with
 * err set when a backend could not be listed, asked or told (the end must
 * not go on: a use seen there could be lost). stats may be NULL.
 */
int gcagree_settle(struct balancer *bal, const struct view *v, uint64_t id,
                   struct gcagree_stats *stats, char *err, size_t errlen);

#endif
