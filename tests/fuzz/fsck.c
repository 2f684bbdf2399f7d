/*
 * fsck.c - fuzzes `ca-cas fsck --repair` (store_fsck in storaged/fsck.c),
 * the walk over the frames of a data file that rebuilds a lost index: the
 * input is data file 0 of a store whose index was lost (absent). After
 * the repair the store is opened as a storaged would (disk_open).
 * Properties: the repair runs (returns 0); the repaired store opens; and
 * every object it now serves has bytes that hash to its key (fsck must
 * never index a frame whose bytes do not match).
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

    struct fsck_report rep;
    char err[1024] = "";
    int rc = store_fsck(dir, true, say, NULL, NULL, &rep, err, sizeof(err));
    if (rc < 0 && size == 0)
        return 0; /* an empty store: nothing to rebuild from */
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
