/*
 * tagcache.h - block tags of objects this balancer has verified: the fast
 * way to check a large object it has relayed before.
 *
 * SPEC ("Integrity"): a balancer never delivers a complete response whose
 * bytes do not match the key. Checking the key means hashing every byte
 * (SHA-1 or SHA-256: about 0.5 ms of CPU per MB here, SHA-NI), which is
 * most of what relaying a large object costs the balancer. An object's
 * bytes are fixed by its key, so once a relayed copy's digest has matched,
 * the balancer keeps one short tag per TAG_BLOCK bytes of it, and later
 * reads of that object are checked block by block against those tags: a
 * Poly1305 tag under a one-time key per block (RFC 8439's ChaCha20-Poly1305
 * AEAD with the block as associated data and no plaintext), about 0.08 ms
 * of CPU per MB here (OpenSSL, AVX-512).
 *
 * Why a backend cannot forge bytes that pass: the key behind the tags is
 * 32 bytes from getrandom(2), drawn when the cache is made; it and the
 * tags never leave this process's memory. Bytes other than the verified
 * ones pass with probability at most n / 2^102 per attempt for a block of
 * 16n bytes (RFC 8439 section 4; a TAG_BLOCK: 2^-86), whatever the
 * attacker chooses. (A CRC-32C table sent by the storaged would be as
 * fast, but a backend that lies can make bytes to match any CRCs: they are
 * linear and keyless.)
 *
 * Memory: TAG_LEN bytes per started TAG_BLOCK of object plus about 100
 * bytes per object, within the budget given (--tag-cache-mb); the least
 * recently used objects are dropped first. Plus 1/8 of the budget (8 KiB
 * at least) noting objects missed once: tags are taken from the second
 * read of an object on, never for an object read once, nor for one whose
 * tags could not be kept (over TAG_MAX_COUNT, or over the budget alone).
 * A read in flight holds a copy of its object's tags (1 MiB at most). Losing the cache (a restart)
 * costs speed only: the next read of each object is hashed again.
 * Thread-safe.
 */
#ifndef CAS_BALANCERD_TAGCACHE_H
#define CAS_BALANCERD_TAGCACHE_H

#include "key.h"

#include <stddef.h>
#include <stdint.h>

#define TAG_BLOCK (1024u * 1024) /* bytes of object per tag */
#define TAG_LEN 16               /* bytes per tag (a Poly1305 tag) */
/* Most tags an object may have to be tagged: objects up to 64 GiB, 1 MiB
 * of tags at most per read in flight. */
#define TAG_MAX_COUNT 65536

struct tag_cache;

/* What the cache holds and did (for /metrics). */
struct tag_cache_stats {
    uint64_t objects, bytes; /* held now; bytes of memory, entries included */
    uint64_t hits, misses, evictions;
    uint64_t longest_chain; /* most entries a look-up walked past in a bucket */
};

/* A cache holding at most budget bytes (> 0), with a fresh secret; NULL
 * with why in err when memory, getrandom(2) or OpenSSL's ChaCha20-Poly1305
 * (absent from a FIPS-mode OpenSSL) fail. */
struct tag_cache *tag_cache_new(size_t budget, char *err, size_t errlen);
void tag_cache_free(struct tag_cache *c);
void tag_cache_stats(struct tag_cache *c, struct tag_cache_stats *out);

/* Tags for an object of size bytes: one per started TAG_BLOCK. */
size_t tag_count(uint64_t size);

/*
 * Checking or tagging the bytes of one object as they pass, in order from
 * its first byte (a whole-object answer of size bytes).
 *
 * tag_stream_open looks key up: when its tags are cached (and were taken
 * for the same size), the stream checks (tag_stream_checking() is true).
 * Otherwise, on the object's second miss or later (a read after this
 * cache's first of that object), it computes tags, which tag_stream_commit
 * hands to the cache once the caller has checked the digest of the same
 * bytes; an object read only once never pays for tags. NULL on a first
 * miss, for an object too large to keep tags for, or when memory or
 * OpenSSL fail: the caller hashes, as without a cache.
 */
struct tag_stream;
struct tag_stream *tag_stream_open(struct tag_cache *c, const struct cas_key *key, uint64_t size);
bool tag_stream_checking(const struct tag_stream *s);
/* Feeds the next len bytes. -EBADMSG when they go past size or, checking,
 * when a block that ends within them (the last one ends at size) does not
 * match its tag; -EIO when OpenSSL fails (no verdict). After an error
 * nothing more is fed and every call returns that error. 0 otherwise. */
int tag_stream_update(struct tag_stream *s, const void *buf, size_t len);
/* Computing, all size bytes fed and their digest checked against the key:
 * the tags go into the cache. No effect when checking or incomplete. */
void tag_stream_commit(struct tag_stream *s);
void tag_stream_close(struct tag_stream *s);

#endif
