/*
 * node.h - a storaged's identity: node id, hash algorithm and ring tokens,
 * created at first start in the file `node` of the store directory and
 * never regenerated.
 */
#ifndef CAS_NODE_H
#define CAS_NODE_H

#include "hash.h"

#include <stddef.h>
#include <stdint.h>

#define NODE_MIN_TOKENS 64
#define NODE_MAX_TOKENS 16384

struct node_identity {
    char id[17]; /* 16 hex digits */
    const struct cas_hash_algo *algo;
    uint64_t *tokens; /* sorted */
    size_t ntokens;
};

/* One token per GiB of capacity, within [NODE_MIN_TOKENS, NODE_MAX_TOKENS]. */
size_t node_token_count(uint64_t capacity_bytes);

/*
 * Loads dir/node, or creates it (tokens sized to capacity; algo as asked,
 * or SHA-1) when absent. A store created with one algorithm refuses to open
 * as another: asked_algo NULL means "whatever the store has".
 */
int node_load_or_create(int dirfd, const char *dir, const struct cas_hash_algo *asked_algo,
                        uint64_t capacity, struct node_identity *out, char *err, size_t errlen);
/* Loads dir/node; an absent file is an error ("not a storaged directory"). */
int node_load(int dirfd, const char *dir, struct node_identity *out, char *err, size_t errlen);
void node_free(struct node_identity *n);

#endif
