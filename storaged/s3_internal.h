/*
 * s3_internal.h - what the S3 backend's files share (s3.h is its outside):
 * the store, write and read structures, and each file's functions that the
 * files above it use. The files call only downward, bottom first:
 *   s3_client, s3_xml, s3_sums   requests, XML answers, block tables
 *   s3_core                      names, the journal, the table, bucket
 *                                requests on one object, taking copies out
 *   s3_claim                     taking a fresh bucket for this node
 *   s3_store | s3_gc | s3_open   object operations | GC, compaction, scrub |
 *                                opening, recovery, rebuild (not each other)
 *   s3_backend                   the ops table, destroy, the registry entry
 * (scripts/check-layers.sh checks it, calls and includes, with the disk
 * backend's order). Locking rules: s3_store.c's opening comment.
 */
#ifndef CAS_S3_INTERNAL_H
#define CAS_S3_INTERNAL_H

#include "s3.h"
#include "format.h"
#include "journal.h"
#include "objtab.h"
#include "s3_client.h"
#include "s3_xml.h"

#include <pthread.h>

#define S3_INDEX "s3-index"
#define S3_INDEX_MAGIC "CASS3IDX"
#define S3_NODE_KEY "cas-node"
/* Bytes of the node file (and of its copy in the bucket) read at most. */
#define S3_NODE_FILE_MAX (1u << 20)
#define S3_DELETING 2u /* objtab flag: a delete of this key is under way */
/* objtab flag, with S3_DELETING: not an object but a placeholder while a
 * write that will not be recorded removes what it uploaded (s3_store.c,
 * undo_upload); counted nowhere, never written to s3-index. */
#define S3_UNDOING 4u
#define S3_READ_WINDOW (4u << 20)
#define S3_COPY_MAX (5ull << 30) /* CopyObject's limit (POST bodies above one part) */
#define S3_TOMBSTONE_TTL (7u * 24 * 3600)
#define TIME_MAX ((UINT64_C(1) << 56) - 1)
#define US_PER_S UINT64_C(1000000)

struct inflight {
    unsigned char digest[CAS_MAX_DIGEST];
    bool clobbered;
    struct inflight *next;
};

/* A key whose bucket tombstone (tombs/<hex>.deleted) one request is
 * writing or removing, together with the index record that goes with it
 * (a client DELETE: the tombstone, then its records; a client PUT over a
 * tombstone: the removal, then its PUT record). One holder per key at a
 * time (s3_store.c tomb_hold), so the bucket's word never ends up
 * contradicting the index's last record for the key. */
struct tomb_hold {
    unsigned char digest[CAS_MAX_DIGEST];
    struct tomb_hold *next;
};

struct s3_store {
    struct store base;
    struct s3_client cli;
    char *dir;
    int dirfd, lockfd;
    struct journal journal;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* an entry stopped being DELETING */
    pthread_mutex_t gc_lock;
    struct objtab tab;   /* digest -> size, flags MARKED | DELETING */
    struct objtab tombs; /* digest -> offset = stamp (unix microseconds: a client
                          * delete's X-CAS-Timestamp, else the time recorded; the
                          * 7 days count from it), flags = enum fmt_tomb_kind,
                          * size = delete_seq of a client delete */
    /* Client deletes since start (lock): a write notes it when it begins,
     * so a delete that lands while it is in flight is told from one
     * before it (s3_tomb_deleted_since). */
    uint64_t delete_seq;
    struct inflight *inflight;
    struct tomb_hold *tomb_holds; /* under lock; waiters wait on changed */
    bool gc_active;
    uint64_t gc_id, last_gc_id;
    uint64_t gc_ended_id; /* the cycle gc/end last ended (s3_gc.c; kept by replay and snapshots) */
    uint64_t objects, bytes, garbage_objects, garbage_bytes, reserved;
    uint64_t capacity, max_object_size, tombstone_ttl;
    int read_only; /* 0 no, 1 --read-only, 2 faulted */
    char read_only_reason[200];
    uint64_t corrupt_found, lost, compactions;
    bool opened; /* open finished: a stop then leaves the s3-clean marker */
    bool claimed; /* cas-claims/<node id> is ours while we run (s3_claim.c) */
    bool debris; /* an upload that was not recorded could not be removed from
                    the bucket: no s3-clean marker, so the next start sweeps */
    /* scrub */
    pthread_t scrub_thread;
    bool scrub_running, scrub_stop;
    pthread_mutex_t scrub_mu;
    pthread_cond_t scrub_cv;
    uint64_t scrub_rate, scrub_bytes, scrub_objects, scrub_corrupt, scrub_passes, scrub_last_pass;
    uint64_t scrub_tables; /* block tables the scrubber wrote (missing or wrong) */
};

/* A per-block CRC-32C table being built (s3_sums.c): one little-endian
 * CRC-32C per FMT_BLOCK bytes, the last block shorter. */
struct s3_sums {
    uint32_t *v;
    size_t n, cap;
    uint32_t crc;  /* of the block being filled */
    uint64_t fill; /* its bytes so far */
};

struct store_put {
    struct s3_store *st;
    struct cas_hash *h;
    bool have_expect, copy;
    uint64_t delete_seq; /* st->delete_seq when the write began */
    uint64_t stamp;      /* when a client sent it, unix us (s3_put_stamp) */
    struct cas_key expect;
    uint64_t size_hint, received;
    char *buf;
    size_t len, cap;
    bool multipart;
    char upkey[96]; /* the key the multipart upload goes to */
    char upload_id[S3_XML_TOKEN_MAX + 1];
    unsigned parts;          /* parts uploaded and listed in complete */
    struct cas_buf complete; /* the CompleteMultipartUpload body, part by part */
    /* The part being uploaded on a worker thread while the next one is
     * received into buf (s3_store.c: upload_part): at most two parts of a
     * write in memory. */
    struct {
        pthread_t thread;
        bool running;
        char *buf;
        size_t len;
        unsigned part;
        int rc;
        char etag[200];
        char err[512];
    } up;
    struct s3_sums sums; /* of the bytes hashed so far */
};

struct store_obj {
    struct s3_store *st;
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t size;
    char *win; /* bytes [win_off, win_off + win_len) of the object */
    uint64_t win_off;
    size_t win_len;
};

/* s3_sums.c: the per-block CRC-32C tables (sidecars sums/<hex>.crc32c). */
/* "sums/<hex>.crc32c" for digest. */
void s3_sums_key(const struct s3_store *st, const unsigned char *digest, char *out, size_t outlen);
/* True when an object of size bytes gets a table (over one block: smaller
 * ones are read whole anyway). */
bool s3_sums_wanted(uint64_t size);
/* Extends t over len more bytes; 0 or -ENOMEM. */
int s3_sums_update(struct s3_sums *t, const void *data, size_t len);
/* Closes the last, shorter block (at the end of the write); 0 or -ENOMEM. */
int s3_sums_finish(struct s3_sums *t);
void s3_sums_free(struct s3_sums *t);
/* PUTs the sidecar of digest (size bytes, table t): 0, or -EIO/-ENOMEM/-EINVAL
 * with a message. */
int s3_sums_upload(struct s3_store *st, const unsigned char *digest, uint64_t size,
                   const struct s3_sums *t, char *err, size_t errlen);
/* Reads and checks the sidecar of digest (size bytes): 0 and *sums (the
 * caller frees it, *n entries), -ENOENT none (an older build's object, or
 * too small to have one), -EIO unreadable or not trustworthy (logged),
 * -ENOMEM. */
int s3_sums_load(struct s3_store *st, const unsigned char *digest, uint64_t size, uint32_t **sums,
                 size_t *n);
/* DELETE of the sidecar, best effort (a stale one is harmless: logged). */
void s3_sums_delete(struct s3_store *st, const unsigned char *digest, uint64_t size);

static inline struct s3_store *s3_of(struct store *s)
{
    return (struct s3_store *)s;
}

/* ---- s3_core.c ---- */

/* "objects/<hex>" for digest. */
void s3_object_key(const struct s3_store *st, const unsigned char *digest, char *out,
                   size_t outlen);
uint64_t s3_now_s(void);
/* A journal record of type for digest (NULL: none), other fields 0. */
void s3_record(struct s3_store *st, struct fmt_record *r, int type, const unsigned char *digest);
/* Appends n records (caller holds st->lock); 0, -ENOSPC or -EIO (the store
 * turns read-only) with a message. */
int s3_append(struct s3_store *st, const struct fmt_record *r, size_t n, struct journal_pos *pos,
              char *err, size_t errlen);
/* Waits until the journal is durable up to pos; -EIO turns the store read-only. */
int s3_sync_to(struct s3_store *st, const struct journal_pos *pos, char *err, size_t errlen);
int s3_refuse_read_only(struct s3_store *st, char *err, size_t errlen);
/* Takes the key's tombstone hold (struct tomb_hold: one holder per key),
 * waiting for another holder to let go; s3_tomb_release lets go. Caller
 * holds st->lock (released while it waits). */
void s3_tomb_hold(struct s3_store *st, struct tomb_hold *h, const unsigned char *digest);
void s3_tomb_release(struct s3_store *st, struct tomb_hold *h);
/* Whether the index holds a client delete's tombstone of digest, in force
 * or expired: while it does, the bucket may hold tombs/<hex>.deleted
 * (compaction removes both together). Caller holds st->lock. */
bool s3_tomb_present(struct s3_store *st, const unsigned char *digest);

/* Index room kept on --dir's file system for removing every stored object
 * (a DEL and a TOMB record each), plus a margin. */
#define S3_REMOVAL_ROOM_PER_OBJECT (2 * FMT_RECORD_SIZE)
#define S3_ROOM_MARGIN (64 * 1024)
/*
 * Whether --dir's file system (statvfs) has room for `records` more index
 * records: a removal (removal true) may use all of it; anything else must
 * leave S3_REMOVAL_ROOM_PER_OBJECT per stored object plus S3_ROOM_MARGIN,
 * so that a full --dir never stops a DELETE (as the disk backend keeps
 * room for removals). Checked before a request changes anything (the
 * bucket included). 0, or -ENOSPC with a message saying what is free and
 * what is kept. Caller need not hold st->lock.
 */
int s3_index_room(struct s3_store *st, unsigned records, bool removal, char *err, size_t errlen);
/* Caller holds st->lock: the entry of digest not being deleted, or OBJTAB_NONE. */
uint32_t s3_find_live(struct s3_store *st, const unsigned char *digest, struct objtab_entry *en);
void s3_unmark(struct s3_store *st, uint32_t e, const struct objtab_entry *en);
void s3_table_remove(struct s3_store *st, uint32_t e);
/* True while a client's delete of digest refuses copies (caller holds the lock). */
bool s3_tomb_in_force(struct s3_store *st, const unsigned char *digest);
/* Removes digest's tombstone or quarantine entry, if any (caller holds the lock). */
void s3_tomb_clear(struct s3_store *st, const unsigned char *digest);
/* Records kind for digest at unix seconds when (stamp when * 10^6). */
int s3_tomb_set(struct s3_store *st, const unsigned char *digest, unsigned kind, uint64_t when);
/* The same with the stamp (unix microseconds); of two client deletes the
 * later stamp stays (caller holds the lock). */
int s3_tomb_set_stamp(struct s3_store *st, const unsigned char *digest, unsigned kind,
                      uint64_t stamp);
/* True while tombstone entry en (of st->tombs) refuses copies. */
bool s3_tomb_entry_in_force(const struct s3_store *st, const struct objtab_entry *en);
/* True when a client delete's tombstone of digest, in force, is stamped at
 * or after stamp: a client write sent at stamp is refused (caller holds
 * the lock). */
bool s3_tomb_outranks(struct s3_store *st, const unsigned char *digest, uint64_t stamp);
/* True when a client deleted digest after st->delete_seq was seq: a write
 * that began then must not store it (caller holds the lock). */
bool s3_tomb_deleted_since(struct s3_store *st, const unsigned char *digest, uint64_t seq);
/* Applies one record to the table (replay, and the GC operations); 1 for an
 * unknown type. */
int s3_apply(struct s3_store *st, const struct fmt_record *r, char *err, size_t errlen);
/* Writes the HEADER record at the start of fd and syncs it and the directory. */
int s3_write_header(struct s3_store *st, int fd, char *err, size_t errlen);
/* Replays s3-index (fd) into the table; *end: where appends go on. */
int s3_replay(struct s3_store *st, int fd, uint64_t *end, char *err, size_t errlen);
/* DELETE objects/<hex> (size bytes), then its block table: 0 when the
 * object is gone (404 included), -EIO with a message. */
int s3_bucket_delete(struct s3_store *st, const unsigned char *digest, uint64_t size, char *err,
                     size_t errlen);
/* PUT (put) or DELETE of tombs/<hex>.deleted, the bucket's copy of a client
 * delete's tombstone (not ending in a bare key: it is no content). Its body
 * is the delete's stamp (unix microseconds, stamp) in decimal and a newline,
 * or empty when stamp is 0 (as every body written before the stamp was
 * kept; docs/FORMAT.md "The S3 backend"). 0, or -EIO with a message. */
int s3_bucket_tomb(struct s3_store *st, const unsigned char *digest, bool put, uint64_t stamp,
                   char *err, size_t errlen);
/* Bytes a tombs/<hex>.deleted body this version writes holds at most. */
#define S3_TOMB_BODY_MAX 32
/* The stamp of a tombs/<hex>.deleted body of len bytes: decimal digits
 * (cas_parse_u64_n), optionally a newline, at most TIME_MAX and not 0. An empty body
 * (written before the stamp was kept) gives *stamp 0. 0, or -EINVAL (then
 * *stamp is 0) for anything else. */
int s3_tomb_stamp_parse(const char *body, size_t len, uint64_t *stamp);
/* GET of key (a tombs/<hex>.deleted) and its stamp (s3_tomb_stamp_parse;
 * 0 for an empty body or one it cannot read, logged): 0, -ENOENT when it
 * is gone, or -EIO with a message. */
int s3_bucket_tomb_stamp(struct s3_store *st, const char *key, uint64_t *stamp, char *err,
                         size_t errlen);
/* GET of [off, off + len) into buf (whole: a plain GET); len, -EIO or -ENOENT. */
ssize_t s3_bucket_range(struct s3_store *st, const unsigned char *digest, char *buf, size_t len,
                        uint64_t off, bool whole, char *err, size_t errlen);
/* Takes digest out of service (DEL reason corrupt, quarantine entry); missing:
 * the bucket did not have it (counted as lost). */
void s3_take_out(struct s3_store *st, const unsigned char *digest, bool missing);
void s3_lost(struct s3_store *st, const unsigned char *digest);
void s3_quarantine_digest(struct s3_store *st, const unsigned char *digest, const char *why);
/* Caller holds st->lock: every write of digest in flight must upload again
 * (a delete of digest removed what it may have uploaded). */
void s3_clobber(struct s3_store *st, const unsigned char *digest);

/* ---- s3_store.c: the object operations (store.h says what each takes
 * and gives) ---- */
int s3_put_begin(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                 struct store_put **out, char *err, size_t errlen);
int s3_put_write(struct store_put *p, const void *data, size_t len, char *err, size_t errlen);
int s3_put_commit(struct store_put *p, bool sync, struct cas_key *key, bool *created, char *err,
                  size_t errlen);
void s3_put_abort(struct store_put *p);
int s3_put_copy(struct store_put *p, char *err, size_t errlen);
int s3_put_stamp(struct store_put *p, uint64_t stamp, char *err, size_t errlen);
int s3_open_obj(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
                uint64_t *size, char *err, size_t errlen);
ssize_t s3_pread(struct store_obj *o, void *buf, size_t len, uint64_t off);
void s3_close_obj(struct store_obj *o);
int s3_block_sums(struct store_obj *o, uint32_t **sums, size_t *n, uint64_t *block);
void s3_quarantine(struct store_obj *o, const char *why);
int s3_confirm(struct store_obj *o, bool sync, char *err, size_t errlen);
int s3_stat(struct store *s, const struct cas_key *key, uint64_t *size);
int s3_remove(struct store *s, const struct cas_key *key, char *err, size_t errlen);
int s3_remove_at(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                 size_t errlen);
int s3_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen);
int s3_quarantined(struct store *s, store_list_fn fn, void *cls);
/* Table entries scanned per hold of the lock while a listing looks for
 * its next page in key order (objtab_page_scan). */
#define S3_LIST_STEP 65536
int s3_list(struct store *s, const unsigned char *after, enum store_list_state state,
            uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
            size_t errlen);
void s3_info(struct store *s, struct store_info *out);
void s3_metrics(struct store *s, struct cas_buf *out);

/* ---- s3_claim.c: one bucket per storaged (the protocol: its opening
 * comment) ---- */
/* Makes the bucket this node's: writes its node file (local, llen bytes)
 * as cas-node unless another node holds or is claiming the bucket. 0 when
 * cas-node is this node's (our claim then stays, held while the process
 * runs: s3_claim_release); -EINVAL the bucket holds another node's state;
 * -EBUSY another node's claim is there (the message names it and says how
 * to clear a stale one); -EIO/-ENOMEM/-E2BIG with a message; our claim is
 * then removed (a removal that fails is logged). */
int s3_claim_bucket(struct s3_store *st, const char *local, size_t llen, char *err, size_t errlen);
/* cas-node is already this node's: writes (again) this node's claim, held
 * while the process runs. 0, or -EIO/-ENOMEM with a message. */
int s3_claim_hold(struct s3_store *st, char *err, size_t errlen);
/* Removes the claim this process holds (a stop); a failure is logged. */
void s3_claim_release(struct s3_store *st);
/* A --dir without a node file is about to take its identity from the
 * bucket's cas-node (node, len bytes): -EBUSY with a message when that
 * node's claim is in the bucket (it runs, or it did not stop cleanly); 0
 * when not; -EIO with a message when the bucket cannot say. */
int s3_claim_check_restore(struct s3_client *cli, const char *node, size_t len, char *err,
                           size_t errlen);

/* ---- s3_open.c ---- */
/* Brings up the store st (zeroed, ops set by s3_backend.c) from o: the
 * bucket checked, --dir locked, s3-index replayed or rebuilt, debris of a
 * crash swept. 0, or a negative errno with a message (the caller then
 * destroys st). */
int s3_open_state(struct s3_store *st, const struct store_options *o, char *err, size_t errlen);
/* Leaves the marker that tells the next start this stop was clean. */
void s3_mark_clean(struct s3_store *st);

/* ---- s3_backend.c ---- */
extern const struct store_ops s3_ops;
void s3_destroy(struct store *s);

/* ---- s3_gc.c ---- */
int s3_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects, uint64_t *bytes,
                char *err, size_t errlen);
int s3_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked, char *err,
               size_t errlen);
int s3_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                size_t errlen);
int s3_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
              size_t errlen);
int s3_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen);
bool s3_gc_active(struct store *s, uint64_t *id);
void s3_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id);
int s3_compact_start(struct store *s, char *err, size_t errlen);
int s3_scrub_start(struct store *s, uint64_t bytes_per_second);
/* Stops the scrubber (s3_destroy). */
void s3_scrub_stop(struct s3_store *st);

#endif
