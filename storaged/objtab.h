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
 * One page of a listing by entry number, for a backend's list op (store.h):
 * from entry *next on, calls fn(cls, digest, size) for at most max live
 * entries with min_size <= size < max_size, none of the skip flags and all
 * of the need flags (OBJTAB_MARKED: the garbage of the current cycle), and
 * sets *next to the entry to go on from; true when the table is done. The
 * caller holds the table's lock and keeps *next as its cursor (entry
 * numbers are stable: see above).
 */
bool objtab_list_page(const struct objtab *t, uint64_t *next, uint64_t min_size, uint64_t max_size,
                      unsigned skip, unsigned need, size_t max,
                      void (*fn)(void *cls, const unsigned char *digest, uint64_t size), void *cls);

#endif
