/*
 * disk_room.c - the room the disk backend keeps so that every object it
 * stores can be removed on a full file system (docs/OPERATIONS.md, "A full
 * file system"), and what is left of the free space for new data once that
 * room is kept.
 *
 * A removal writes: in the index, DEL and TOMB for a client DELETE (or one
 * UNMARK per object used in a GC cycle, then GC_END), so three records per
 * object, plus one for the top-up hysteresis (disk_index_reserve tops up
 * when a quarter is used); and in the object's data file a removal frame of
 * 64 + 40 bytes for a DELETE (64 per data file + 40 per object for gc/end).
 * The index part is preallocated in the index file (disk_index.c); the
 * frames part is kept free in the file system (data writes, compaction
 * copies and index snapshots leave it). Both grow with every stored object,
 * with no cap: a write is admitted only if, after it, the room for removing
 * every object, itself included, is still there (disk_room_writable, in
 * disk_index.c beside the index reserve it counts), so a
 * store of tiny objects holds fewer of them, and GET /capacity's available
 * says so. When a removal frame does not fit after all (a file system that
 * rounds up more than the slack below), the removal marks the removed frames
 * in place instead (disk_rmframe.c): the index records are what must never
 * be refused.
 */
#define _GNU_SOURCE
#include "disk_internal.h"


/* The constant part of the index reserve: GC begin/end/cancel records, a
 * compaction's GENERATION records, tombstones of keys not stored (refused
 * past half of it: disk_index_room_short). 1 MiB, or 1/16 of a smaller file
 * system (which could not hold many records anyway). */
#define ROOM_INDEX_MIN (UINT64_C(1) << 20)

struct disk_room disk_room_for(uint64_t objects, uint64_t fs_bytes, uint64_t block)
{
    struct disk_room r;
    uint64_t min = ROOM_INDEX_MIN;
    if (fs_bytes && fs_bytes / 16 < min)
        min = fs_bytes / 16;
    r.index = min + objects * DISK_ROOM_INDEX_RECORDS * FMT_RECORD_SIZE;
    /* One frame per object (DELETEs one by one), and a block of rounding
     * at the end of each data file (always: so that every object, the
     * first one too, adds the same). */
    r.frames = objects * fmt_removal_len(1) + FMT_NFILES * (block ? block : 4096);
    return r;
}

uint64_t disk_room_per_object(void)
{
    /* Its share of the room (disk_room_for) and its own PUT record. */
    return DISK_ROOM_INDEX_RECORDS * FMT_RECORD_SIZE + fmt_removal_len(1) + FMT_RECORD_SIZE;
}

struct disk_room disk_room_now(struct disk_store *d)
{
    return disk_room_for(__atomic_load_n(&d->objects, __ATOMIC_RELAXED), d->fs_bytes, d->fs_block);
}
