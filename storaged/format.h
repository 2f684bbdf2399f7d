/*
 * format.h - the bytes on disk of a storaged directory: index records and
 * object frames. docs/FORMAT.md describes the same layout for humans; keep
 * the two in step.
 *
 * Every multi-byte integer is little-endian. Every index record is exactly
 * 64 bytes and carries a CRC-32 (zlib) of its other 60 bytes; every object
 * frame starts with a 64-byte header carrying a CRC-32 of its other bytes,
 * followed by the object's bytes, whose digest is the key in the header,
 * followed by a table of one CRC-32C per 1 MiB block of the object (the
 * header holds the CRC-32C of that table), so a read can check any range
 * without hashing the whole object.
 */
#ifndef CAS_FORMAT_H
#define CAS_FORMAT_H

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define FMT_RECORD_SIZE 64
#define FMT_FRAME_HEADER 64
#define FMT_NFILES 50
#define FMT_FRAME_MAGIC 0x4f534143u /* "CASO" */
#define FMT_INDEX_MAGIC "CASINDEX"
#define FMT_INDEX_VERSION 1 /* the S3 index, and disk stores written before removal frames */
/* A disk store's index header version once every data file records its own
 * removals (removal frames below; docs/FORMAT.md "Removal frames"): whole
 * intact object frames that the index does not name and no removal frame
 * covers are then objects whose index records were lost. */
#define FMT_INDEX_VERSION_REMOVALS 2
#define FMT_REMOVAL_MAGIC 0x52534143u /* "CASR" */
/* An object frame marked removed in place (its header's magic replaced and
 * its CRC recomputed): how a removal is recorded when the file system has no
 * room for a removal frame (docs/FORMAT.md, "Removal frames"). */
#define FMT_DEAD_MAGIC 0x44534143u /* "CASD" */
#define FMT_REMOVAL_ENTRY 40       /* bytes of one removal entry: digest (32), offset (8) */
/* Entries of one removal frame at most (a gc/end writes several frames per
 * file beyond it): keeps a frame under 42 MB and a count from a damaged
 * header from sizing a huge allocation. */
#define FMT_REMOVAL_MAX (1u << 20)
#define FMT_BLOCK (1024 * 1024) /* bytes covered by one CRC-32C in a frame's table */

enum fmt_record_type {
    REC_HEADER = 1,     /* first record: magic, version, hash algorithm */
    REC_PUT = 2,        /* object stored: file, offset of its frame, size, digest */
    REC_DEL = 3,        /* object removed; aux = reason (enum fmt_del_reason) */
    REC_GC_BEGIN = 4,   /* aux = cycle id; marks every stored object */
    REC_GC_STATE = 5,   /* aux = cycle id; the cycle is active (index snapshots) */
    REC_UNMARK = 6,     /* digest: unmarked in the current cycle */
    REC_GC_END = 7,     /* aux = cycle id; removes every object still marked */
    REC_MOVE = 8,       /* compaction: file, new offset; aux = old offset */
    REC_GENERATION = 9, /* compaction committed: file now at generation aux */
    REC_GC_CANCEL = 10, /* aux = cycle id; cycle ended without removing anything */
    REC_TOMB = 11,      /* digest: a tombstone or a quarantined key (flags = enum fmt_tomb_kind);
                         * aux = unix seconds when it was recorded */
};

/* What a REC_TOMB says of its key (disk_tomb.c). */
enum fmt_tomb_kind { TOMB_DELETED = 1, TOMB_QUARANTINED = 2 };

enum fmt_del_reason { DEL_CLIENT = 0, DEL_CORRUPT = 1 };
enum fmt_put_flags { PUT_MARKED = 1 };

struct fmt_record {
    uint8_t type;
    uint8_t flags;
    uint8_t file;
    uint8_t algo;
    uint64_t offset;
    uint64_t size;
    uint64_t aux;
    unsigned char digest[CAS_MAX_DIGEST];
};

/* An object frame header's flags (byte 9; docs/FORMAT.md "Data files:
 * frames"). Frames written before the flags have 0: written_at is then
 * seconds, and the frame says nothing of the write that made it. */
enum fmt_frame_flags {
    /* written_at holds the stamp of the write that made the frame (unix
     * microseconds: its X-CAS-Timestamp, else this node's clock at the
     * request's head), which orders it against a tombstone's stamp when an
     * unindexed frame is considered for indexing again (disk_tomb.c,
     * tomb_refuses_adoption: the rule the write's commit applied). */
    FMT_FRAME_STAMPED = 1,
    /* The write was a copy from another replica (PUT ?replica=1): any
     * client delete's tombstone in force refuses it, whatever the stamps. */
    FMT_FRAME_COPY = 2,
};

struct fmt_frame {
    uint8_t algo;
    uint8_t flags;     /* enum fmt_frame_flags */
    uint32_t sums_crc; /* CRC-32C of the block checksum table */
    uint64_t size;
    /* With FMT_FRAME_STAMPED: the write's stamp, unix microseconds (read it
     * with fmt_frame_stamp); else seconds since the epoch, for operators. */
    uint64_t written_at;
    unsigned char digest[CAS_MAX_DIGEST];
};

/* The stamp of the write that made frame f (unix microseconds), 0 when the
 * frame does not say (written before FMT_FRAME_STAMPED). */
static inline uint64_t fmt_frame_stamp(const struct fmt_frame *f)
{
    return (f->flags & FMT_FRAME_STAMPED) ? f->written_at : 0;
}

/* What removed the frames a removal frame names (its kind byte). */
enum fmt_removal_kind { RM_CLIENT = 1, RM_GC = 2, RM_DROP = 3 };

/* The header of a removal frame: it says that the object frames it names,
 * by (digest, offset) in the same data file, are removed. The entries follow
 * the 64-byte header: FMT_REMOVAL_ENTRY bytes each. */
struct fmt_removal {
    uint8_t algo;
    uint8_t kind;         /* enum fmt_removal_kind */
    uint32_t entries_crc; /* CRC-32 (zlib) of the entries */
    uint64_t count;       /* entries, 1..FMT_REMOVAL_MAX */
    uint64_t written_at;  /* seconds since the epoch, the storaged's clock */
    /* The removal's stamp, unix microseconds: for a client delete, the
     * stamp of its tombstone (its X-CAS-Timestamp, or the storaged's clock
     * at the request), which orders client writes against the delete; 0 in
     * frames written before it was kept (then written_at * 10^6 stands for
     * it: fmt_removal_stamp). Header bytes 32..39. */
    uint64_t stamp;
};

/* The stamp of a removal (unix microseconds): its stamp field, or for a
 * frame written before it was kept (0), written_at in microseconds. */
static inline uint64_t fmt_removal_stamp(const struct fmt_removal *h)
{
    if (h->stamp)
        return h->stamp;
    return h->written_at > UINT64_MAX / 1000000 ? UINT64_MAX : h->written_at * 1000000;
}

/* Bytes of a whole removal frame of count entries. */
static inline uint64_t fmt_removal_len(uint64_t count)
{
    return FMT_FRAME_HEADER + FMT_REMOVAL_ENTRY * count;
}

/* Blocks of FMT_BLOCK bytes (the last one shorter) in an object of size. */
static inline uint64_t fmt_blocks(uint64_t size)
{
    return (size + FMT_BLOCK - 1) / FMT_BLOCK;
}

/* The id of a GC cycle begun without one (REC_GC_BEGIN's aux): the time in
 * milliseconds since the epoch, and above last, the previous cycle's id, so
 * ids only grow and a stale id from an old cycle never matches. */
static inline uint64_t fmt_new_gc_id(uint64_t last)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t id = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return id > last ? id : last + 1;
}

/* The message for a gc/begin refused because its id is not above last,
 * the highest id the store has begun (both backends refuse it: a reused id
 * would let the earlier cycle's `end N` end the new one; docs/API.md). */
void fmt_gc_id_refusal(uint64_t id, bool active, uint64_t cur, uint64_t last, char *err,
                       size_t errlen);

/* Bytes of a whole frame: header, object, one CRC-32C per block. */
static inline uint64_t fmt_frame_len(uint64_t size)
{
    return FMT_FRAME_HEADER + size + 4 * fmt_blocks(size);
}

void fmt_record_encode(const struct fmt_record *r, unsigned char out[FMT_RECORD_SIZE]);
/* Returns false when the checksum does not match (torn or corrupt record). */
bool fmt_record_decode(const unsigned char in[FMT_RECORD_SIZE], struct fmt_record *r);

void fmt_frame_encode(const struct fmt_frame *f, unsigned char out[FMT_FRAME_HEADER]);
bool fmt_frame_decode(const unsigned char in[FMT_FRAME_HEADER], struct fmt_frame *f);

/*
 * Removal frames (docs/FORMAT.md "Removal frames"). fmt_removal_encode
 * writes the header of h (whose entries_crc the caller computed over the
 * entries, fmt_removal_entries_crc); fmt_removal_decode checks magic, header
 * CRC, zero padding and 1 <= count <= FMT_REMOVAL_MAX, false otherwise (the
 * entries are checked apart, against entries_crc).
 */
void fmt_removal_encode(const struct fmt_removal *h, unsigned char out[FMT_FRAME_HEADER]);
bool fmt_removal_decode(const unsigned char in[FMT_FRAME_HEADER], struct fmt_removal *h);
uint32_t fmt_removal_entries_crc(const unsigned char *entries, uint64_t count);
/* Entry i of an entry table: fills it from (digest of digest_len bytes, offset)
 * / reads it back (digest zero-padded to CAS_MAX_DIGEST). */
void fmt_removal_entry_put(unsigned char *entries, uint64_t i, const unsigned char *digest,
                           size_t digest_len, uint64_t offset);
void fmt_removal_entry_get(const unsigned char *entries, uint64_t i,
                           unsigned char digest[CAS_MAX_DIGEST], uint64_t *offset);

/* Turns the encoded header of an object frame into the header of the same
 * frame marked removed ("CASD", CRC recomputed); false (h unchanged) when h
 * is not an intact object frame header. */
bool fmt_frame_kill(unsigned char h[FMT_FRAME_HEADER]);

/* What a data file holds at some offset, from its first 64 bytes. */
enum fmt_at { FMT_AT_NONE = 0, FMT_AT_OBJECT = 1, FMT_AT_REMOVAL = 2, FMT_AT_DEAD = 3 };
/* Decodes h as an object frame header (fills f), the header of an object
 * frame marked removed in place (FMT_AT_DEAD, fills f) or a removal frame
 * header (fills rm) of algorithm algo that fits, whole, in the room bytes
 * from its start; FMT_AT_NONE when it is none (damage, a torn write, zeros). */
enum fmt_at fmt_frame_at(const unsigned char h[FMT_FRAME_HEADER], unsigned algo, uint64_t room,
                         struct fmt_frame *f, struct fmt_removal *rm);

/* The offset of the next intact frame header (magic "CASO" or "CASR" and a
 * header that decodes) at or after from in fd, a data file of fsize bytes;
 * fsize when there is none. buf (buflen >= 4096 bytes) is scratch. For
 * walking past damaged bytes and punched-out ranges. */
uint64_t fmt_next_frame(int fd, uint64_t from, uint64_t fsize, unsigned char *buf, size_t buflen);

/*
 * A walk over the frames of a data file, the one loop of the replay, the
 * removal-frame reader and fsck: set fd, fsize, algo, next (where to
 * start) and buf/buflen (scratch, >= 4096 bytes, for fmt_next_frame),
 * then call fmt_walk_next until it returns 0.
 */
struct fmt_walk {
    int fd;
    uint64_t fsize;
    unsigned algo;
    uint64_t next; /* where the walk goes on */
    unsigned char *buf;
    size_t buflen;
    /* Set by fmt_walk_next: */
    uint64_t at;     /* offset of what was just read */
    enum fmt_at what; /* FMT_AT_NONE: bytes that are no frame, from at to next */
    struct fmt_frame fr;    /* FMT_AT_OBJECT, FMT_AT_DEAD */
    struct fmt_removal rm;  /* FMT_AT_REMOVAL */
};
/* Reads what is at w->next: 1 with w->what, w->at and w->fr / w->rm set and
 * w->next past it (for FMT_AT_NONE, the next intact frame header, or fsize);
 * 0 at the end of the file (fewer than a header's bytes left); -EIO when
 * the header cannot be read. */
int fmt_walk_next(struct fmt_walk *w);

/* Name of data file n at generation g: "data-NN.gG" (buf >= 32 bytes). */
void fmt_datafile_name(unsigned n, uint64_t gen, char *buf, size_t len);
/* Parses a data file name; false when name is not one. */
bool fmt_datafile_parse(const char *name, unsigned *n, uint64_t *gen);

/*
 * Opens name in the directory dirfd (whose path, dir, is for messages) only
 * if it is a regular file: never through a symlink (O_NOFOLLOW), never
 * blocking on a FIFO or opening a device (the type is checked before the
 * open and again on the open descriptor, O_NONBLOCK in between). flags as
 * for openat (O_CREAT allowed; O_CLOEXEC is added). Returns the descriptor,
 * or -errno with a message: -ENOENT when absent (without O_CREAT), -EINVAL
 * when name is something other than a regular file.
 */
int fmt_open_regular(int dirfd, const char *dir, const char *name, int flags, char *err,
                     size_t errlen);
/* The message (and -EINVAL) for dir/name found to be of type mode (st_mode)
 * where a regular file belongs. */
int fmt_not_regular(const char *dir, const char *name, unsigned mode, char *err, size_t errlen);

#endif
