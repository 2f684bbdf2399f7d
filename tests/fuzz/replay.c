/*
 * replay.c - fuzzes a storaged's start-up over a damaged index: the input is
 * the whole index file of a store directory whose 50 data files are empty,
 * opened through the engine (disk_open in storaged/disk_open.c; replay,
 * torn-tail cut and reconciliation with the data files in disk_replay.c).
 *
 * The directory is made once per process (in $TMPDIR, /dev/shm when
 * there is one, so the syncs cost nothing) and removed at exit; each run
 * rewrites its index and truncates its data files. Properties: an open
 * that succeeds holds no object (every entry points past the end of an
 * empty data file and must be dropped), leaves an index of whole records
 * that starts with a header, and a second open of what it left agrees.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "format.h"
#include "fuzz.h"
#include "log.h"

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
    fuzz_make_dir("replay", dir, sizeof(dir));
    atexit(remove_dir);
    cas_log_set_level("error");
    return 0;
}

/* Empties the directory, then writes the index. */
static void prepare(const uint8_t *data, size_t size)
{
    fuzz_clear_dir(dir, NULL, 0);
    char path[300];
    snprintf(path, sizeof(path), "%s/index", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
}

/* Opens the store; -errno, or the object count. */
static long open_count(const struct cas_hash_algo *algo)
{
    struct disk_options o = {.dir = dir, .algo = algo, .capacity = 1ull << 30};
    struct store *s = NULL;
    char err[1024];
    err[0] = '\0';
    int rc = disk_open(&o, &s, err, sizeof(err));
    if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0');
        return rc;
    }
    struct store_info info;
    memset(&info, 0, sizeof(info));
    s->ops->info(s, &info);
    long n = (long)info.objects;
    FUZZ_CHECK(info.garbage_objects <= info.objects);
    s->ops->destroy(s);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    /* The store's algorithm is the one the header names (when it names
     * one), so that inputs get past that check. */
    const struct cas_hash_algo *algo = size > 7 ? cas_hash_by_id(data[7]) : NULL;
    if (!algo)
        algo = cas_hash_by_name("sha1");
    prepare(data, size);
    long first = open_count(algo);
    if (first < 0)
        return 0;
    FUZZ_CHECK(first == 0);
    /* What the open left behind: whole records, a header first. */
    char path[300];
    snprintf(path, sizeof(path), "%s/index", dir);
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0);
    FUZZ_CHECK(st.st_size >= FMT_RECORD_SIZE && st.st_size % FMT_RECORD_SIZE == 0);
    FUZZ_CHECK(open_count(algo) == 0);
    return 0;
}
