/*
 * test_fsck.c - CUnit suite for storaged/fsck.c: a healthy store checks
 * clean; a flipped object byte, a damaged block checksum table, a torn
 * index and a damaged index record are each reported; --repair rebuilds an
 * index that checks clean, puts back what the index lost, takes corrupt
 * objects out and leaves removed objects removed.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "format.h"
#include "fsck.h"
#include "log.h"
#include "node.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/cas-test-fsck-XXXXXX";
static int seq;
static const struct cas_hash_algo *SHA1;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* A store with n objects of distinct sizes; their keys go to keys[]. */
static void make_store(char *dir, size_t len, int n, struct cas_key *keys, uint64_t *sizes)
{
    snprintf(dir, len, "%s/s%d", tmpdir, seq++);
    mkdir(dir, 0755);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct node_identity node;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(dfd, dir, SHA1, 1ull << 30, &node, err, sizeof(err)),
                          0);
    node_free(&node);
    close(dfd);
    struct disk_options o = {.dir = dir, .algo = SHA1};
    struct store *s;
    CU_ASSERT_EQUAL_FATAL(disk_open(&o, &s, err, sizeof(err)), 0);
    for (int i = 0; i < n; i++) {
        sizes[i] = 1000 + (uint64_t)i * 700000; /* some span several 1 MiB blocks */
        unsigned char *buf = malloc(sizes[i]);
        for (uint64_t b = 0; b < sizes[i]; b++)
            buf[b] = (unsigned char)(b * 7 + (uint64_t)i);
        struct store_put *p;
        bool created;
        CU_ASSERT_EQUAL_FATAL(s->ops->put_begin(s, NULL, sizes[i], &p, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(s->ops->put_write(p, buf, sizes[i], err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(s->ops->put_commit(p, true, &keys[i], &created, err, sizeof(err)), 0);
        free(buf);
    }
    s->ops->destroy(s);
}

static struct fsck_report run(const char *dir, bool repair)
{
    struct fsck_report r;
    char err[512] = "";
    int rc = store_fsck(dir, repair, NULL, NULL, NULL, &r, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        printf("\n  store_fsck: %s\n", err);
    return r;
}

/* Where object k's frame starts, from the data files alone. */
static bool find_frame(const char *dir, const struct cas_key *k, char *path, size_t plen,
                       uint64_t *off, uint64_t *size)
{
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        char name[32];
        fmt_datafile_name(n, 0, name, sizeof(name));
        snprintf(path, plen, "%s/%s", dir, name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        struct stat st;
        fstat(fd, &st);
        uint64_t p = 0;
        unsigned char h[FMT_FRAME_HEADER];
        struct fmt_frame fr;
        while (p + FMT_FRAME_HEADER <= (uint64_t)st.st_size &&
               pread(fd, h, sizeof(h), (off_t)p) == (ssize_t)sizeof(h) &&
               fmt_frame_decode(h, &fr)) {
            if (memcmp(fr.digest, k->digest, 20) == 0) {
                close(fd);
                *off = p;
                *size = fr.size;
                return true;
            }
            p += fmt_frame_len(fr.size);
        }
        close(fd);
    }
    return false;
}

static void flip_at(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    CU_ASSERT_EQUAL(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x10;
    CU_ASSERT_EQUAL(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void test_healthy(void)
{
    char dir[256];
    struct cas_key k[4];
    uint64_t sz[4];
    make_store(dir, sizeof(dir), 4, k, sz);
    struct fsck_report r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
    CU_ASSERT_EQUAL(r.objects, 4);
    CU_ASSERT_EQUAL(r.bytes, sz[0] + sz[1] + sz[2] + sz[3]);
    CU_ASSERT_FALSE(r.repaired);
}

static void test_flipped_byte_then_repair(void)
{
    char dir[256], path[300];
    struct cas_key k[4];
    uint64_t sz[4], off, size;
    make_store(dir, sizeof(dir), 4, k, sz);
    CU_ASSERT_FATAL(find_frame(dir, &k[2], path, sizeof(path), &off, &size));
    flip_at(path, off + FMT_FRAME_HEADER + size / 2);
    struct fsck_report r = run(dir, false);
    CU_ASSERT_EQUAL(r.corrupt, 1);
    CU_ASSERT_EQUAL(r.problems, 1);
    r = run(dir, true);
    CU_ASSERT_TRUE(r.repaired);
    r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
    CU_ASSERT_EQUAL(r.objects, 3);
}

static void test_damaged_checksum_table(void)
{
    char dir[256], path[300];
    struct cas_key k[4];
    uint64_t sz[4], off, size;
    make_store(dir, sizeof(dir), 4, k, sz);
    CU_ASSERT_FATAL(find_frame(dir, &k[3], path, sizeof(path), &off, &size));
    flip_at(path, off + FMT_FRAME_HEADER + size + 1); /* first table entry */
    struct fsck_report r = run(dir, false);
    CU_ASSERT_EQUAL(r.corrupt, 0);
    CU_ASSERT_EQUAL(r.bad_sums, 1);
    CU_ASSERT_EQUAL(r.objects, 4);
}

static void test_torn_index_repaired(void)
{
    char dir[256], path[300];
    struct cas_key k[5];
    uint64_t sz[5];
    make_store(dir, sizeof(dir), 5, k, sz);
    snprintf(path, sizeof(path), "%s/index", dir);
    struct stat st;
    stat(path, &st);
    CU_ASSERT_EQUAL(truncate(path, st.st_size - 2 * FMT_RECORD_SIZE - 7), 0);
    struct fsck_report r = run(dir, false);
    CU_ASSERT_TRUE(r.torn_bytes > 0);
    CU_ASSERT_EQUAL(r.unindexed, 3); /* two records gone, a third torn */
    CU_ASSERT_EQUAL(r.objects, 2);
    r = run(dir, true);
    CU_ASSERT_EQUAL(r.recovered, 3);
    r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
    CU_ASSERT_EQUAL(r.objects, 5);
}

static void test_damaged_record_and_removed_objects(void)
{
    char dir[256], path[300], err[512];
    struct cas_key k[4];
    uint64_t sz[4];
    make_store(dir, sizeof(dir), 4, k, sz);
    struct disk_options o = {.dir = dir, .algo = SHA1};
    struct store *s;
    CU_ASSERT_EQUAL_FATAL(disk_open(&o, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s->ops->remove(s, &k[0], err, sizeof(err)), 0);
    s->ops->destroy(s);
    /* Damage the PUT record of k[1] (record 2: after the header and k[0]). */
    snprintf(path, sizeof(path), "%s/index", dir);
    flip_at(path, 2 * FMT_RECORD_SIZE + 40);
    struct fsck_report r = run(dir, false);
    CU_ASSERT_EQUAL(r.bad_records, 1);
    CU_ASSERT_EQUAL(r.unindexed, 1); /* k[1]: its record is gone, its frame intact */
    r = run(dir, true);
    CU_ASSERT_TRUE(r.repaired);
    r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
    CU_ASSERT_EQUAL(r.objects, 3); /* k[0] stays removed */
    CU_ASSERT_EQUAL_FATAL(disk_open(&o, &s, err, sizeof(err)), 0);
    uint64_t size;
    CU_ASSERT_EQUAL(s->ops->stat(s, &k[0], &size), -ENOENT);
    CU_ASSERT_EQUAL(s->ops->stat(s, &k[1], &size), 0);
    s->ops->destroy(s);
}

static void test_lost_index_rebuilt(void)
{
    char dir[256], path[300];
    struct cas_key k[3];
    uint64_t sz[3];
    make_store(dir, sizeof(dir), 3, k, sz);
    snprintf(path, sizeof(path), "%s/index", dir);
    CU_ASSERT_EQUAL(unlink(path), 0);
    struct fsck_report r = run(dir, false);
    CU_ASSERT_EQUAL(r.unindexed, 3);
    r = run(dir, true);
    CU_ASSERT_EQUAL(r.recovered, 3);
    r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
    CU_ASSERT_EQUAL(r.objects, 3);
}

/* Found by tests/fuzz/fsck.c: with the index lost and no intact object
 * in the data files (one corrupt frame), fsck saw no problem and --repair
 * wrote no index, so the storaged kept refusing to start and asking for
 * the very repair that had just run. */
static void test_lost_index_nothing_intact(void)
{
    char dir[256], path[300], err[512];
    struct cas_key k[1];
    uint64_t sz[1], off, size;
    make_store(dir, sizeof(dir), 1, k, sz);
    CU_ASSERT_FATAL(find_frame(dir, &k[0], path, sizeof(path), &off, &size));
    flip_at(path, off + FMT_FRAME_HEADER + size / 2);
    char index[300];
    snprintf(index, sizeof(index), "%s/index", dir);
    CU_ASSERT_EQUAL(unlink(index), 0);
    struct disk_options o = {.dir = dir, .algo = SHA1};
    struct store *s;
    CU_ASSERT_EQUAL(disk_open(&o, &s, err, sizeof(err)), -EINVAL); /* asks for fsck --repair */
    struct fsck_report r = run(dir, false);
    CU_ASSERT(r.problems > 0);
    r = run(dir, true);
    CU_ASSERT(r.repaired);
    CU_ASSERT_EQUAL(r.recovered, 0);
    CU_ASSERT_EQUAL_FATAL(disk_open(&o, &s, err, sizeof(err)), 0);
    struct store_info info;
    s->ops->info(s, &info);
    CU_ASSERT_EQUAL(info.objects, 0);
    s->ops->destroy(s);
    r = run(dir, false);
    CU_ASSERT_EQUAL(r.problems, 0);
}

static void test_refuses_held_store(void)
{
    char dir[256], err[512] = "";
    struct cas_key k[1];
    uint64_t sz[1];
    make_store(dir, sizeof(dir), 1, k, sz);
    struct disk_options o = {.dir = dir, .algo = SHA1};
    struct store *s;
    CU_ASSERT_EQUAL_FATAL(disk_open(&o, &s, err, sizeof(err)), 0);
    struct fsck_report r;
    CU_ASSERT_EQUAL(store_fsck(dir, false, NULL, NULL, NULL, &r, err, sizeof(err)), -EBUSY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "in use"));
    s->ops->destroy(s);
}

/* --new-identity writes a node file only when it can tell the store's hash
 * and holds the store's lock; otherwise it refuses and writes nothing. */
static void test_new_identity_refusals(void)
{
    char dir[256], path[300], err[512] = "";
    struct fsck_report r;
    struct stat st;
    /* A data file of junk, no index, no node: which hash? Cannot tell. */
    snprintf(dir, sizeof(dir), "%s/s%d", tmpdir, seq++);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/data-00.g0", dir);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("not a frame, not an index, nothing to go by\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(store_fsck(dir, FSCK_REPAIR | FSCK_NEW_IDENTITY, NULL, NULL, NULL, &r, err,
                               sizeof(err)),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot tell which hash"));
    snprintf(path, sizeof(path), "%s/node", dir);
    CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);

    /* A real store whose node file is lost, while another process holds its
     * lock: refused, still no node file. */
    struct cas_key k[1];
    uint64_t sz[1];
    make_store(dir, sizeof(dir), 1, k, sz);
    snprintf(path, sizeof(path), "%s/node", dir);
    CU_ASSERT_EQUAL_FATAL(unlink(path), 0);
    char lock[300];
    snprintf(lock, sizeof(lock), "%s/LOCK", dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CU_ASSERT_FATAL(lfd >= 0);
    CU_ASSERT_EQUAL_FATAL(flock(lfd, LOCK_EX | LOCK_NB), 0);
    CU_ASSERT_EQUAL(store_fsck(dir, FSCK_REPAIR | FSCK_NEW_IDENTITY, NULL, NULL, NULL, &r, err,
                               sizeof(err)),
                    -EBUSY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "in use"));
    CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);
    close(lfd);
    /* Lock free: the identity is written, for the hash the data holds. */
    memset(&r, 0, sizeof(r));
    CU_ASSERT_EQUAL(store_fsck(dir, FSCK_REPAIR | FSCK_NEW_IDENTITY, NULL, NULL, NULL, &r, err,
                               sizeof(err)),
                    0);
    CU_ASSERT_TRUE(r.new_identity);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
}

int main(void)
{
    cas_log_set_level("error");
    SHA1 = cas_hash_by_name("sha1");
    if (!mkdtemp(tmpdir))
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite su = CU_add_suite("fsck", NULL, NULL);
    CU_add_test(su, "healthy store", test_healthy);
    CU_add_test(su, "flipped byte, then repair", test_flipped_byte_then_repair);
    CU_add_test(su, "damaged block checksum table", test_damaged_checksum_table);
    CU_add_test(su, "torn index repaired", test_torn_index_repaired);
    CU_add_test(su, "damaged record, removed objects", test_damaged_record_and_removed_objects);
    CU_add_test(su, "lost index rebuilt", test_lost_index_rebuilt);
    CU_add_test(su, "lost index, nothing intact: repair lets the store open",
                test_lost_index_nothing_intact);
    CU_add_test(su, "refuses a store a daemon holds", test_refuses_held_store);
    CU_add_test(su, "new identity: unknown hash or held lock refused, nothing written",
                test_new_identity_refusals);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failures ? 1 : 0;
}
