/*
 * store.h - the storage backend interface behind the storaged HTTP routes.
 *
 * A backend keeps objects under their keys and offers: streaming writes
 * (begin / write / commit or abort), opening an object for ranged reads,
 * stat, remove, listing, the GC cycle (begin / mark / end), compaction and
 * capacity figures. A backend is a const struct store_ops; the HTTP routes
 * call through s->ops and check an optional operation (NULL) before using
 * it. The one backend today is the disk store (disk.h): an append-only
 * index plus 50 data files. (Wrappers that check optional operations once,
 * a registry of backends by name and an interface free of disk internals
 * are still to come: they are what a second backend needs.)
 *
 * Verification of object bytes against their key happens above this
 * interface (routes.c), because it is the same for every backend; a backend
 * only has to take an object out of service when told it is corrupt.
 *
 * Errors are negative errno values with a message:
 *   -EINVAL bad request, -ENOENT no such object, -EROFS read-only,
 *   -EFBIG over the size limit, -EBADMSG digest mismatch, -ENOSPC disk full,
 *   -EBUSY already running, -ESTALE not the current GC cycle, -EIO I/O error,
 *   -ECANCELED a copy from another replica refused: the key was deleted here.
 */
#ifndef CAS_STORE_H
#define CAS_STORE_H

#include "key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;
struct store_put; /* a write in progress */
struct store_obj; /* an object open for reading */

enum store_list_state { STORE_LIST_LIVE, STORE_LIST_GARBAGE };

struct store_info {
    uint64_t total, available; /* file system (or --capacity) */
    uint64_t unreclaimed;      /* bytes compaction would give back */
    uint64_t garbage;          /* bytes gc/end would remove */
    uint64_t garbage_objects;
    uint64_t objects, bytes; /* live objects and their bytes */
    bool gc_active;
    uint64_t gc_id;
    bool read_only;
    char read_only_reason[200];
    bool compacting;
    uint64_t compact_done, compact_total, compactions;
    uint64_t corrupt_found; /* objects taken out of service */
    uint64_t quarantined;   /* of those, not replaced yet (GET /quarantine) */
    uint64_t tombstones;    /* keys deleted by a client, tombstone in force */
    uint64_t index_syncs, index_records;
    size_t memory; /* bytes held by the object table */
    bool scrubbing;
    uint64_t scrub_rate, scrub_bytes, scrub_objects, scrub_corrupt, scrub_passes;
    uint64_t scrub_last_pass; /* seconds since the epoch; 0 never */
    unsigned scrub_file;
    uint64_t scrub_offset;
};

typedef void (*store_list_fn)(void *cls, const unsigned char *digest, uint64_t size);

struct store_ops {
    const char *name;
    /* size_hint: the body's size when the request declares it (Content-Length;
     * a longer body is refused with -EINVAL), UINT64_MAX when unknown. */
    int (*put_begin)(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                     struct store_put **out, char *err, size_t errlen);
    int (*put_write)(struct store_put *p, const void *data, size_t len, char *err, size_t errlen);
    /* Finishes the write: checks the digest, makes it durable when sync.
     * Always frees p. *created is false when the object was already there. */
    int (*put_commit)(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                      size_t errlen);
    void (*put_abort)(struct store_put *p);
    /* Optional: the write in progress is a copy from another replica (read
     * repair, quarantine repair, anti-entropy, rebalance), not a client's
     * PUT. Such a write is refused with -ECANCELED, now and again at commit,
     * while the key holds a tombstone; a client's PUT clears the tombstone. */
    int (*put_copy)(struct store_put *p, char *err, size_t errlen);
    /* touch: the read counts as a use for GC: the object is unmarked in the
     * active cycle, durably, before open returns 0; if gc/end removed it
     * meanwhile, -ENOENT. (HEAD opens without touch: it is not a use.) */
    int (*open)(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
                uint64_t *size, char *err, size_t errlen);
    ssize_t (*pread)(struct store_obj *o, void *buf, size_t len, uint64_t off);
    void (*close)(struct store_obj *o);
    /* Optional (NULL when the backend has none): the object's table of
     * CRC-32C checksums, one per *block bytes (little-endian values), which
     * the backend has checked is intact. The caller frees *sums. -EIO when
     * the table is damaged (then verify with the key instead). */
    int (*block_sums)(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block);
    /* The open object's bytes do not match its key: stop serving it. */
    void (*quarantine)(struct store_obj *o, const char *why);
    /* Before answering "already stored" for an object opened with touch:
     * checks that its stored copy is intact (else takes it out of service and
     * returns -ENOENT, so the caller stores the new bytes) and, with sync,
     * that it is durable. 0, -ENOENT, or -EIO. */
    int (*confirm)(struct store_obj *o, bool sync, char *err, size_t errlen);
    int (*stat)(struct store *s, const struct cas_key *key, uint64_t *size);
    /* A client's delete: removes the object and leaves a tombstone that
     * refuses copies from other replicas (put_copy); the tombstone is
     * recorded, durably, even when the object is absent (then -ENOENT). */
    int (*remove)(struct store *s, const struct cas_key *key, char *err, size_t errlen);
    /* Optional: removes this copy without a tombstone (a rebalance moving
     * the copy to the object's home: the object lives on elsewhere). */
    int (*drop)(struct store *s, const struct cas_key *key, char *err, size_t errlen);
    /* Optional: emits every quarantined key (a copy taken out of service as
     * corrupt and not replaced since), size 0. */
    int (*quarantined)(struct store *s, store_list_fn fn, void *cls);
    /* Emits up to max objects from *cursor on; *cursor becomes UINT64_MAX at the end. */
    int (*list)(struct store *s, uint64_t *cursor, enum store_list_state state, uint64_t min_size,
                uint64_t max_size, size_t max, store_list_fn fn, void *cls);
    int (*gc_begin)(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                    uint64_t *bytes, char *err, size_t errlen);
    int (*gc_mark)(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                   char *err, size_t errlen);
    /* POST /objects/missing: present[i] says whether keys[i] is stored; in an
     * active GC cycle the present ones count as used (unmarked, durably
     * before return), decided under one lock so gc/end cannot come between
     * "present" and the unmark. */
    int (*use_keys)(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                    size_t errlen);
    int (*gc_end)(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                  size_t errlen);
    /* Ends cycle id without removing anything (a cluster-wide begin that
     * failed elsewhere); -ESTALE when id is not the current cycle. */
    int (*gc_cancel)(struct store *s, uint64_t id, char *err, size_t errlen);
    /* Cheap: true (and the id) while a GC cycle is active. */
    bool (*gc_active)(struct store *s, uint64_t *id);
    int (*compact_start)(struct store *s, char *err, size_t errlen);
    /* Optional: starts checking every object in the background, at most
     * bytes_per_second; 0 does nothing. */
    int (*scrub_start)(struct store *s, uint64_t bytes_per_second);
    void (*compact_wait)(struct store *s);
    void (*info)(struct store *s, struct store_info *out);
    void (*destroy)(struct store *s);
};

struct store {
    const struct store_ops *ops;
    const struct cas_hash_algo *algo;
};

#endif
