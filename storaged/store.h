/*
 * store.h - the storage backend interface behind the storaged HTTP routes.
 *
 * A backend keeps objects under their keys and offers: streaming writes
 * (begin / write / commit or abort), opening an object for ranged reads,
 * stat, remove, listing, the GC cycle (begin / mark / end), compaction and
 * capacity figures. A backend is a const struct store_ops; the HTTP routes
 * never call through s->ops themselves but through the store_* wrappers
 * below (store.c), which check each optional operation once: an absent one
 * gives -ENOTSUP and a message naming the backend.
 *
 * Backends are chosen by name from a registry (store_backend_find), in the
 * shape of Redis's connection types: each is a const struct store_backend
 * with its name, its open function taking one struct store_options, and
 * its usage text. Two exist: "disk" (disk.h: an append-only index plus 50
 * data files) and "s3" (s3.h: objects in an S3-compatible bucket, a small
 * local state in --dir).
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

/* Generic figures every backend gives; internals of one backend (the disk
 * index's syncs, its table memory, the scrubber's file and offset) are
 * written by its optional metrics / status_scrub operations instead. */
struct store_info {
    uint64_t total, available; /* file system (or --capacity) */
    uint64_t unreclaimed;      /* bytes compaction would give back */
    uint64_t garbage;          /* bytes gc/end would remove */
    uint64_t garbage_objects;
    uint64_t objects, bytes; /* live objects and their bytes */
    bool gc_active;
    uint64_t gc_id;
    uint64_t gc_last_id, gc_ended_id; /* gc_history (filled by store_info) */
    bool read_only;
    char read_only_reason[200];
    bool faulted; /* the backend hit an I/O error it cannot go on from: /healthz 503 */
    bool compacting;
    uint64_t compact_done, compact_total, compactions;
    /* The latest compaction's first data file left as it was for want of
     * room, and what it needs ("" when none was). */
    char compact_left_out[440];
    uint64_t corrupt_found; /* objects taken out of service */
    uint64_t quarantined;   /* of those, not replaced yet (GET /quarantine) */
    uint64_t tombstones;    /* keys deleted by a client, tombstone in force */
    bool scrubbing;
    uint64_t scrub_rate; /* bytes per second */
    uint64_t scrub_bytes, scrub_objects, scrub_corrupt, scrub_passes;
    uint64_t scrub_last_pass; /* seconds since the epoch; 0 never */
};

/* Where a listing goes on: the last key listed, in lowercase hex (store.c
 * writes it; a listing is in ascending key order, docs/API.md). A zeroed
 * cursor starts at the beginning; done is set after the last page. */
#define STORE_CURSOR_MAX 1024
struct store_cursor {
    char token[STORE_CURSOR_MAX];
    bool done;
};

struct cas_buf;
struct cas_json;
struct objtab_page; /* objtab.h: one page of a listing in key order */

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
    /* Optional: the write in progress is a client's, sent at stamp (unix
     * microseconds: the X-CAS-Timestamp a balancer set, or the storaged's
     * clock at the request head; without this call the backend's clock at
     * put_begin). Refused with -EBUSY (409), now when the key is known and
     * again at commit, while a client delete's tombstone of the key is
     * stamped at or after stamp: the delete was sent after this write, and
     * storing it would undo a delete that may be answered 204 already. */
    int (*put_stamp)(struct store_put *p, uint64_t stamp, char *err, size_t errlen);
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
     * the table is damaged, -ENOENT when this object has none (then verify
     * with the key instead). */
    int (*block_sums)(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block);
    /* true: the block table serves ranges only; a whole body is always
     * checked against the key (a table kept outside the node's control, as
     * the S3 backend's in the bucket, is not trusted over the digest: a
     * complete body that a CRC-32C table passes could still be another
     * object's). false: whole bodies are served by the table too (disk). */
    bool sums_for_ranges_only;
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
    /* Optional: remove with the delete's stamp (unix microseconds, see
     * put_stamp), which its tombstone keeps; without it, remove (the
     * backend's clock is the stamp). */
    int (*remove_at)(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                     size_t errlen);
    /* Optional: removes this copy without a tombstone (a rebalance moving
     * the copy to the object's home: the object lives on elsewhere). */
    int (*drop)(struct store *s, const struct cas_key *key, char *err, size_t errlen);
    /* Optional: emits every quarantined key (a copy taken out of service as
     * corrupt and not replaced since), size 0. */
    int (*quarantined)(struct store *s, store_list_fn fn, void *cls);
    /* Fills page (objtab.h, set up by the caller for this store's digest
     * length: its cap is the page size) with the smallest keys greater
     * than after (NULL: from the smallest) in state with min_size <= size <
     * max_size, ascending, each once (objtab_page_start ... finish). It
     * must not hold the store's lock for a whole table scan. 0, or a
     * negative errno with a message (then the listing cannot go on: the
     * caller aborts it). */
    int (*list)(struct store *s, const unsigned char *after, enum store_list_state state,
                uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
                size_t errlen);
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
    /* Optional. *last_id: the highest cycle id begun here, or named by a
     * cancel that came before its begin (no begin of an id up to it is
     * taken); *ended_id: the cycle gc/end last ended since this process
     * started (0: none, also after a restart), so that a balancer can tell
     * a backend that ended cycle N (a partial end to finish) from one that
     * never began it or cancelled it. */
    void (*gc_history)(struct store *s, uint64_t *last_id, uint64_t *ended_id);
    int (*compact_start)(struct store *s, char *err, size_t errlen);
    /* Optional: starts checking every object in the background, at most
     * bytes_per_second; 0 does nothing. */
    int (*scrub_start)(struct store *s, uint64_t bytes_per_second);
    void (*compact_wait)(struct store *s);
    void (*info)(struct store *s, struct store_info *out);
    /* Optional: Prometheus lines (HELP, TYPE, value) for the backend's own
     * internals, appended after the generic ones. */
    void (*metrics)(struct store *s, struct cas_buf *out);
    /* Optional: extra members of /status's "scrub" object (the disk
     * backend's file and offset), written into the open object j. */
    void (*status_scrub)(struct store *s, struct cas_json *j);
    void (*destroy)(struct store *s);
};

struct store {
    const struct store_ops *ops;
    const struct cas_hash_algo *algo;
};

/* ---- the backend registry ------------------------------------------------ */

/* Everything any backend's open takes; each reads the fields it knows and
 * refuses (with a message) a required one that is missing. */
struct store_options {
    const char *dir;                  /* the store's (or its local state's) directory */
    const struct cas_hash_algo *algo; /* from the node file: a store of another is refused */
    bool read_only;
    uint64_t capacity;        /* bytes; 0: measure the file system (disk only) */
    uint64_t max_object_size; /* bytes; 0: no limit */
    bool check_only;          /* fsck: read-only, nothing cut or rewritten (disk) */
    uint64_t tombstone_ttl;   /* seconds a delete refuses copies; 0: the default */
    /* s3: */
    const char *s3_endpoint; /* http(s)://host:port, no bucket */
    const char *s3_bucket;
    const char *s3_region;                     /* NULL: us-east-1 */
    const char *s3_access_key, *s3_secret_key; /* the secrets themselves, not file names */
    uint64_t s3_timeout_ms; /* s3_client_set_timeout; 0: S3_DEFAULT_TIMEOUT_MS */
};

struct store_backend {
    const char *name;
    /* Opens (creating when absent) the store; 0 or a negative errno with a
     * message. */
    int (*open)(const struct store_options *opts, struct store **out, char *err, size_t errlen);
    /* Optional: runs before the node file in dirfd is loaded or created
     * (the S3 backend checks its bucket and restores a lost node file from
     * it). 0 or a negative errno with a message. */
    int (*prepare)(const struct store_options *opts, int dirfd, char *err, size_t errlen);
    const char *usage; /* its options, for --help */
};

/* The backend called name, or NULL; then store_backend_names lists them. */
const struct store_backend *store_backend_find(const char *name);
/* "disk, s3": every registered backend's name, for error messages. */
const char *store_backend_names(void);
/* The registry, NULL-terminated (for --help). */
extern const struct store_backend *const store_backends[];

/* ---- wrappers the routes call ---------------------------------------------
 * The same arguments and results as the operations above; an optional
 * operation the backend lacks gives -ENOTSUP and a message naming the
 * backend (or, where noted, a harmless default). */

int store_put_begin(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                    struct store_put **out, char *err, size_t errlen);
int store_put_write(struct store *s, struct store_put *p, const void *data, size_t len, char *err,
                    size_t errlen);
int store_put_commit(struct store *s, struct store_put *p, bool sync, struct cas_key *key,
                     bool *created, char *err, size_t errlen);
void store_put_abort(struct store *s, struct store_put *p);
int store_put_copy(struct store *s, struct store_put *p, char *err, size_t errlen);
int store_open(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
               uint64_t *size, char *err, size_t errlen);
ssize_t store_pread(struct store *s, struct store_obj *o, void *buf, size_t len, uint64_t off);
void store_close(struct store *s, struct store_obj *o);
int store_block_sums(struct store *s, struct store_obj *o, uint32_t **sums, size_t *n,
                     uint64_t *block);
/* Whether a read of bytes [start, end) of an object of size bytes may be
 * checked with the block table (sums_for_ranges_only above). */
bool store_sums_serve(struct store *s, uint64_t start, uint64_t end, uint64_t size);
void store_quarantine(struct store *s, struct store_obj *o, const char *why);
/* Absent confirm: 0 (the backend's copies need no check beyond open). */
int store_confirm(struct store *s, struct store_obj *o, bool sync, char *err, size_t errlen);
int store_stat(struct store *s, const struct cas_key *key, uint64_t *size);
/* Absent put_stamp: 0 (the backend orders writes against deletes its own
 * way). */
int store_put_stamp(struct store *s, struct store_put *p, uint64_t stamp, char *err, size_t errlen);
/* stamp: the delete's (remove_at); absent remove_at: remove. */
int store_remove(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                 size_t errlen);
int store_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen);
/* Absent quarantined: emits nothing, 0. */
int store_quarantined(struct store *s, store_list_fn fn, void *cls);
/* The next page of a listing in ascending key order from cursor on (the
 * list op), advancing cursor (cursor->done after the last page; page->n may
 * be 0 then). -EINVAL for a cursor that is not a key of this store. */
int store_list_page(struct store *s, struct store_cursor *cursor, enum store_list_state state,
                    uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
                    size_t errlen);
/* store_list_page with a page of max keys made for the call: emits them in
 * ascending order through fn. -ENOMEM when no page can be had. */
int store_list(struct store *s, struct store_cursor *cursor, enum store_list_state state,
               uint64_t min_size, uint64_t max_size, size_t max, store_list_fn fn, void *cls,
               char *err, size_t errlen);
int store_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                   uint64_t *bytes, char *err, size_t errlen);
int store_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                  char *err, size_t errlen);
int store_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                   size_t errlen);
int store_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                 size_t errlen);
int store_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen);
/* Absent gc_active: false. */
bool store_gc_active(struct store *s, uint64_t *id);
/* Absent gc_history: both 0. */
void store_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id);
int store_compact_start(struct store *s, char *err, size_t errlen);
void store_compact_wait(struct store *s);
int store_scrub_start(struct store *s, uint64_t bytes_per_second, char *err, size_t errlen);
void store_info(struct store *s, struct store_info *out);
void store_metrics(struct store *s, struct cas_buf *out);
void store_status_scrub(struct store *s, struct cas_json *j);
void store_destroy(struct store *s);

#endif
