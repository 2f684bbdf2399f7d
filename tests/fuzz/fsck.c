/*
 * fsck.c - fuzzes `ca-cas fsck --repair` (store_fsck in storaged/fsck.c),
 * the walk over the frames of a data file that rebuilds a lost index: the
 * input is data file 0 of a store whose index was lost (absent). After
 * the repair the store is opened as a storaged would (disk_open).
 * Properties: the repair runs (returns 0); the repaired store opens;
 * every object it now serves has bytes that hash to its key (fsck must
 * never index a frame whose bytes do not match); and none of them is an
 * object every frame of which a removal frame later in the file names
 * (a removed object never comes back: docs/FORMAT.md "Removal frames").
 *
 * One directory per process (in $TMPDIR, /dev/shm when there is one),
 * with its node file made once; removed at exit.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "format.h"
#include "fsck.h"
#include "fuzz.h"
#include "log.h"
#include "node.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void remove_dir(void)
{
    fuzz_clear_dir(dir, NULL, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_dir("fsck", dir, sizeof(dir));
    atexit(remove_dir);
    cas_log_set_level("error");
    struct node_identity node;
    char err[512];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || node_load_or_create(dfd, dir, cas_hash_by_name("sha1"), 1ull << 30, &node, err,
                                       sizeof(err)) < 0)
        abort();
    close(dfd);
    node_free(&node);
    return 0;
}

static void say(void *cls, bool problem, const char *msg)
{
}

struct listed {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t size;
};
struct list {
    struct listed *v;
    size_t n, cap;
};

static void on_object(void *cls, const unsigned char *digest, uint64_t size)
{
    struct list *l = cls;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v)
            abort();
    }
    memcpy(l->v[l->n].digest, digest, CAS_MAX_DIGEST);
    l->v[l->n++].size = size;
}

/* The object frames of the input a walk like fsck's sees, and the entries of
 * its removal frames (docs/FORMAT.md "Removal frames"). */
struct seen {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t offset, at; /* at: of the removal frame (removals only) */
};
struct seen_list {
    struct seen *v;
    size_t n, cap;
};

static void seen_add(struct seen_list *l, const unsigned char *digest, uint64_t offset, uint64_t at)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v)
            abort();
    }
    memcpy(l->v[l->n].digest, digest, CAS_MAX_DIGEST);
    l->v[l->n].offset = offset;
    l->v[l->n++].at = at;
}

/* Walks the data file fd (size bytes, the input) as fsck walks a data
 * file: frames in order, a resync (fmt_next_frame) past bytes that do not
 * decode. */
static void walk(int fd, size_t size, struct seen_list *frames, struct seen_list *removals)
{
    struct fmt_frame fr;
    struct fmt_removal rm;
    unsigned char h[FMT_FRAME_HEADER], buf[4096];
    for (uint64_t p = 0; p + FMT_FRAME_HEADER <= size;) {
        if (pread(fd, h, sizeof(h), (off_t)p) != (ssize_t)sizeof(h))
            abort();
        enum fmt_at what = fmt_frame_at(h, CAS_HASH_SHA1, size - p, &fr, &rm);
        if (what == FMT_AT_NONE) {
            p = fmt_next_frame(fd, p + 1, size, buf, sizeof(buf));
            continue;
        }
        if (what == FMT_AT_OBJECT)
            seen_add(frames, fr.digest, p, 0);
        if (what == FMT_AT_REMOVAL) {
            size_t len = (size_t)(rm.count * FMT_REMOVAL_ENTRY);
            unsigned char *e = malloc(len);
            if (!e || pread(fd, e, len, (off_t)(p + FMT_FRAME_HEADER)) != (ssize_t)len)
                abort();
            if (fmt_removal_entries_crc(e, rm.count) == rm.entries_crc)
                for (uint64_t i = 0; i < rm.count; i++) {
                    unsigned char dg[CAS_MAX_DIGEST];
                    uint64_t off;
                    fmt_removal_entry_get(e, i, dg, &off);
                    seen_add(removals, dg, off, p);
                }
            free(e);
            p += fmt_removal_len(rm.count);
            continue;
        }
        p += fmt_frame_len(fr.size);
    }
}

/* True when some frame of digest in frames is named by no later removal. */
static bool has_live_frame(const struct seen_list *frames, const struct seen_list *removals,
                           const unsigned char *digest)
{
    for (size_t i = 0; i < frames->n; i++) {
        if (memcmp(frames->v[i].digest, digest, 20) != 0)
            continue;
        bool covered = false;
        for (size_t j = 0; j < removals->n && !covered; j++)
            covered = removals->v[j].offset == frames->v[i].offset &&
                      removals->v[j].at > frames->v[i].offset &&
                      memcmp(removals->v[j].digest, digest, CAS_MAX_DIGEST) == 0;
        if (!covered)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    fuzz_clear_dir(dir, "node", 0);
    char path[300];
    snprintf(path, sizeof(path), "%s/data-00.g0", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
    struct seen_list frames = {0}, removals = {0};
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        abort();
    walk(fd, size, &frames, &removals);
    close(fd);

    struct fsck_report rep;
    char err[1024] = "";
    int rc = store_fsck(dir, true, say, NULL, NULL, &rep, err, sizeof(err));
    if (rc < 0 && size == 0) {
        free(frames.v);
        free(removals.v);
        return 0; /* an empty store: nothing to rebuild from */
    }
    if (rc < 0)
        fprintf(stderr, "fsck: %s\n", err);
    FUZZ_CHECK(rc == 0);

    const struct cas_hash_algo *sha1 = cas_hash_by_name("sha1");
    struct disk_options o = {.dir = dir, .algo = sha1, .capacity = 1ull << 30};
    struct store *s = NULL;
    rc = disk_open(&o, &s, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "open after fsck: %s\n", err);
    FUZZ_CHECK(rc == 0);
    struct list l = {0};
    struct store_cursor cursor = {0};
    while (!cursor.done)
        FUZZ_CHECK(store_list(s, &cursor, STORE_LIST_LIVE, 0, UINT64_MAX, 1024, on_object, &l, err,
                              sizeof(err)) == 0);
    /* Never served: an object every frame of which a removal frame after
     * it names (a removed object comes back from no repair). */
    for (size_t i = 0; i < l.n; i++)
        FUZZ_CHECK(has_live_frame(&frames, &removals, l.v[i].digest));
    free(frames.v);
    free(removals.v);
    for (size_t i = 0; i < l.n; i++) {
        struct cas_key k = {.algo = sha1};
        memcpy(k.digest, l.v[i].digest, sha1->digest_len);
        struct store_obj *obj;
        uint64_t osize;
        FUZZ_CHECK(s->ops->open(s, &k, false, &obj, &osize, err, sizeof(err)) == 0);
        FUZZ_CHECK(osize == l.v[i].size && osize <= size);
        unsigned char *buf = malloc(osize ? osize : 1), d[CAS_MAX_DIGEST];
        FUZZ_CHECK(buf && s->ops->pread(obj, buf, osize, 0) == (ssize_t)osize);
        cas_hash_buffer(sha1, buf, osize, d);
        FUZZ_CHECK(memcmp(d, k.digest, sha1->digest_len) == 0);
        free(buf);
        s->ops->close(obj);
    }
    free(l.v);
    s->ops->destroy(s);
    return 0;
}
