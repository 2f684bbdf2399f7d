/*
 * hash.h - the hash algorithms a store can be keyed by.
 *
 * One table, hash_algos[], holds each algorithm's name, digest size and
 * OpenSSL EVP constructor, in the manner of git's hash.h: callers look an
 * algorithm up once (by name or by its on-disk id) and then only use the
 * generic cas_hash_* functions, never "if sha1 ... else ...".
 */
#ifndef CAS_HASH_H
#define CAS_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CAS_MAX_DIGEST 32
#define CAS_MAX_HEX (2 * CAS_MAX_DIGEST)

enum cas_hash_id { CAS_HASH_SHA1 = 1, CAS_HASH_SHA256 = 2 };

struct cas_hash_algo {
    enum cas_hash_id id;      /* stored on disk: never renumber */
    const char *name;         /* "sha1", "sha256": key prefix and config value */
    size_t digest_len;        /* bytes */
    size_t hex_len;           /* 2 * digest_len */
    const void *(*evp)(void); /* EVP_MD constructor, typed loosely to keep OpenSSL out of headers */
};

extern const struct cas_hash_algo cas_hash_algos[];
extern const size_t cas_hash_algo_count;

const struct cas_hash_algo *cas_hash_by_name(const char *name);
const struct cas_hash_algo *cas_hash_by_id(int id);

/* A cluster's hash, from what its n members report (algos[i] NULL: not
 * known yet): the one most of them use, ties going to the one reported
 * earliest in algos' order (config order). NULL when none is known. One
 * new node started with the wrong --hash, wherever it is listed, is then
 * the one refused, not the whole cluster (balancer and ca-cas rebalance). */
const struct cas_hash_algo *cas_hash_of_cluster(const struct cas_hash_algo *const *algos,
                                                size_t n);

/* A running digest computation. Opaque; allocate with cas_hash_new. */
struct cas_hash;

struct cas_hash *cas_hash_new(const struct cas_hash_algo *algo);
void cas_hash_reset(struct cas_hash *h);
void cas_hash_update(struct cas_hash *h, const void *data, size_t len);
/* Writes algo->digest_len bytes to out. The context may be reset and reused. */
void cas_hash_final(struct cas_hash *h, unsigned char *out);
void cas_hash_free(struct cas_hash *h);

/* One-shot digest of a buffer (algo->digest_len bytes to out). Thread-safe;
 * each calling thread keeps one cached digest context. */
void cas_hash_buffer(const struct cas_hash_algo *algo, const void *data, size_t len,
                     unsigned char *out);

#endif
