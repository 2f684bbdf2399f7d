/*
 * store_data.h - object contents and keys for the storage engine's suites
 * (test_disk.c, test_disk_faults.c): deterministic bytes that differ by
 * seed, and the key a store of that hash gives them.
 */
#ifndef CAS_TEST_STORE_DATA_H
#define CAS_TEST_STORE_DATA_H

#include "hash.h"
#include "key.h"
#include "store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* len bytes (malloc'd; the caller frees) from an xorshift of seed. */
static inline unsigned char *make_data(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len ? len : 1);
    uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* The key of data in store s (its hash algorithm). */
static inline struct cas_key key_of(const struct store *s, const void *data, size_t len)
{
    struct cas_key k;
    memset(&k, 0, sizeof(k));
    k.algo = s->algo;
    cas_hash_buffer(s->algo, data, len, k.digest);
    return k;
}

#endif
