/*
 * node.h - a storaged's identity: node id, hash algorithm and ring tokens,
 * created at first start in the file `node` of the store directory and
 * never regenerated.
 */
#ifndef CAS_NODE_H
#define CAS_NODE_H

#include "hash.h"

#include <stdbool.h>
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
 * as another: asked_algo NULL means "whatever the store has". A directory
 * that holds an index or data files but no node file is refused (-EINVAL,
 * the message says to restore it or to run ca-cas fsck --repair
 * --new-identity) and nothing is written: a new identity would misplace
 * every object in the ring.
 */
int node_load_or_create(int dirfd, const char *dir, const struct cas_hash_algo *asked_algo,
                        uint64_t capacity, struct node_identity *out, char *err, size_t errlen);
/* Writes a new node file (id, tokens sized to capacity, algo): the first
 * start, or ca-cas fsck --repair --new-identity. -EEXIST if one exists. */
int node_create(int dirfd, const char *dir, const struct cas_hash_algo *algo, uint64_t capacity,
                struct node_identity *out, char *err, size_t errlen);
/* True (with what names it) when dirfd holds an index or a data file. */
bool node_dir_holds_store(int dirfd, char *what, size_t whatlen);
/* Loads dir/node; an absent file is an error ("not a storaged directory"). */
int node_load(int dirfd, const char *dir, struct node_identity *out, char *err, size_t errlen);
void node_free(struct node_identity *n);

#endif
