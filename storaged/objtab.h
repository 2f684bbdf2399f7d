/*
 * objtab.h - the in-memory table of stored objects: digest -> location.
 *
 * Built to hold millions of objects in little memory (about 44 bytes per
 * object for SHA-1, 56 for SHA-256): entries live packed in fixed-size
 * chunks (digest, then location and size as two 64-bit words) and an
 * open-addressing hash table of 32-bit entry numbers points at them, with
 * linear probing and backward-shift deletion (no tombstones). Entry numbers
 * stay valid until the entry is removed, so a scan by number is stable
 * while the table grows.
 *
 * Not thread-safe: the store guards it with its rwlock.
 */
#ifndef CAS_OBJTAB_H
#define CAS_OBJTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBJTAB_MARKED 1u  /* marked in the current GC cycle */
#define OBJTAB_FREE 0x80u /* internal: entry is on the free list */
#define OBJTAB_NONE UINT32_MAX

struct objtab_entry {
    const unsigned char *digest; /* points into the table: copy it before unlocking */
    unsigned file;
    uint64_t offset; /* of the frame header in the data file */
    uint64_t size;   /* object bytes */
    unsigned flags;
};

struct objtab {
    size_t digest_len;
    size_t stride;
    unsigned char **chunks;
    size_t nchunks;
    uint32_t used;      /* entry numbers handed out so far */
    uint32_t free_head; /* entry number + 1 of the first free entry; 0 none */
    uint32_t *slots;    /* entry number + 1; 0 empty */
    uint32_t mask;
    uint32_t count;
};

int objtab_init(struct objtab *t, size_t digest_len);
void objtab_destroy(struct objtab *t);
/* Entry number of digest, or OBJTAB_NONE. */
uint32_t objtab_find(const struct objtab *t, const unsigned char *digest);
/* Adds digest (which must be absent); entry number, or OBJTAB_NONE when out of memory. */
uint32_t objtab_insert(struct objtab *t, const unsigned char *digest, unsigned file,
                       uint64_t offset, uint64_t size, unsigned flags);
void objtab_remove(struct objtab *t, uint32_t e);
/* False when e is not a live entry. */
bool objtab_get(const struct objtab *t, uint32_t e, struct objtab_entry *out);
void objtab_set_location(struct objtab *t, uint32_t e, unsigned file, uint64_t offset);
void objtab_set_flags(struct objtab *t, uint32_t e, unsigned flags);
/* Sets entry e's size field (56 bits kept). */
void objtab_set_size(struct objtab *t, uint32_t e, uint64_t size);
/* Bytes of memory the table holds, for the memory-per-object figure. */
size_t objtab_memory(const struct objtab *t);

/*
 * A page of a listing in ascending key order (GET /objects; docs/API.md):
 * the smallest keys greater than the page's start key, found by one scan
 * of the table and then sorted. The table is hashed, so key order exists
 * nowhere else; each page costs one scan of every entry, so a listing of n
 * objects costs about n / (cap / 2) to n / cap scans (docs/OPERATIONS.md
 * "Listing order and memory") and holds cap keys, never more, whatever the
 * table's size.
 *
 * How: the scan appends every key above the start (and below the limit) to
 * the page; when the page is full, it keeps the smallest half (a
 * quickselect) and the largest key kept becomes the limit, so that keys
 * from there up wait for a later page. A page thus ends with between cap/2
 * and cap keys when more remain, all the keys in (start, last] of the
 * table.
 *
 * The scan goes by entry number in steps (objtab_page_scan) so that the
 * caller can drop the table's lock between steps and never hold writers
 * for a whole scan. Entry numbers are stable while the table grows, so an
 * object present for the whole scan is seen exactly once; one removed and
 * added again between steps may be seen twice, which objtab_page_finish
 * folds into one; one added or removed during the scan may or may not be
 * listed (as with any listing racing with writes). Keys are compared as
 * bytes (memcmp), which is the order of their lowercase hex too.
 *
 * Use: objtab_page_init once; per page objtab_page_start, then
 * objtab_page_scan under the lock until it says done (the lock may be
 * released between calls), then objtab_page_finish; then the keys are
 * objtab_page_key(p, 0 .. n-1), ascending, with objtab_page_size.
 */
struct objtab_page {
    size_t digest_len;
    size_t stride;             /* bytes per key: the digest, then its size (8 bytes) */
    size_t cap;                /* most keys a page holds (>= 2) */
    size_t alloc;              /* keys recs has room for (grown up to cap) */
    size_t n;                  /* keys held */
    unsigned char *recs;       /* n * stride bytes */
    unsigned char after[64];   /* the page's keys are greater than this... */
    bool has_after;            /* ...when set (else the page starts at the smallest) */
    unsigned char limit[64];   /* ...and less than this, when has_limit */
    bool has_limit;            /* set once keys were left for a later page */
    uint64_t after64, limit64; /* their first 8 bytes, big-endian: most keys are
                                  refused on such a prefix alone */
    uint64_t next;             /* the entry number the scan goes on from */
};

/* digest_len 8 to 64; cap >= 2 keys (a smaller cap is taken as 2; memory:
 * cap * (digest_len + 8) bytes at most, allocated as keys come). 0, or
 * -EINVAL, -ENOMEM. */
int objtab_page_init(struct objtab_page *p, size_t digest_len, size_t cap);
void objtab_page_free(struct objtab_page *p);
/* Starts a page of the keys greater than after (digest_len bytes; NULL:
 * from the smallest key). */
void objtab_page_start(struct objtab_page *p, const unsigned char *after);
/* Scans up to step entries of t from where the page's scan stopped,
 * taking live entries with min_size <= size < max_size, none of the skip
 * flags and all of the need flags (OBJTAB_MARKED: the garbage of the
 * current cycle). The caller holds
 * t's lock for the call. True when the scan has reached the end of t. */
bool objtab_page_scan(struct objtab_page *p, const struct objtab *t, size_t step, uint64_t min_size,
                      uint64_t max_size, unsigned skip, unsigned need);
/* Sorts the page ascending and drops repeated keys. Returns true when keys
 * beyond the page may remain (the next page starts after the last key
 * here), false when the page holds the last of them. */
bool objtab_page_finish(struct objtab_page *p);
/* Key i of a finished page (digest_len bytes), and its size. */
static inline const unsigned char *objtab_page_key(const struct objtab_page *p, size_t i)
{
    return p->recs + i * p->stride;
}
static inline uint64_t objtab_page_size(const struct objtab_page *p, size_t i)
{
    uint64_t v;
    __builtin_memcpy(&v, p->recs + i * p->stride + p->digest_len, 8);
    return v;
}

#endif
