/*
 * key.h - object keys: the digest of an object's bytes.
 *
 * Keys are written as lowercase hex. On input we accept hex in either case
 * and the prefixed forms "sha1:<hex>" / "sha256:<hex>". Parsing is strict:
 * only hex digits of exactly the algorithm's length pass, so a key can never
 * carry a '/', a '.' or a NUL towards the file system.
 */
#ifndef CAS_KEY_H
#define CAS_KEY_H

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>

struct cas_key {
    const struct cas_hash_algo *algo;
    unsigned char digest[CAS_MAX_DIGEST];
};

/*
 * Parses len bytes of s as a key of algorithm algo (the store's). A prefix
 * naming another algorithm, a wrong length or a non-hex byte fails with
 * -EINVAL and a message in err (which names the bad key, truncated).
 */
int cas_key_parse(const char *s, size_t len, const struct cas_hash_algo *algo, struct cas_key *out,
                  char *err, size_t errlen);

/* Writes the lowercase hex form and a NUL: buf needs algo->hex_len + 1 bytes. */
void cas_key_hex(const struct cas_key *k, char *buf);

bool cas_key_equal(const struct cas_key *a, const struct cas_key *b);

/* The first 8 bytes of the digest as a big-endian integer: ring position. */
uint64_t cas_key_position(const struct cas_key *k);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void cas_hex_encode(const unsigned char *in, size_t n, char *out);
/* Decodes 2n hex chars (either case) into n bytes; -EINVAL on a non-hex char. */
int cas_hex_decode(const char *in, size_t n, unsigned char *out);

#endif
