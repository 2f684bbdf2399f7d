/*
 * test_journal.c - index appends and group commit (storaged/journal.c):
 * positions and file contents of appends, syncs that cover everything
 * appended, many threads appending and syncing at once (every sync returns,
 * durable up to its position, fewer fdatasyncs than appends), a failed
 * append leaving nothing behind, a failed fdatasync being sticky, and the
 * swap to a snapshot file.
 */
#define _GNU_SOURCE
#include "journal.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/cas-test-journal-XXXXXX";
static int have_tmpdir;
static int file_seq;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup_tmpdir(void)
{
    if (have_tmpdir)
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    have_tmpdir = 0;
}

static int new_file(char *path, size_t len)
{
    snprintf(path, len, "%s/index-%d", tmpdir, file_seq++);
    return open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static off_t file_size(int fd)
{
    struct stat st;
    fstat(fd, &st);
    return st.st_size;
}

static void rec(struct fmt_record *r, uint64_t a, uint64_t b)
{
    memset(r, 0, sizeof(*r));
    r->type = REC_PUT;
    r->algo = CAS_HASH_SHA1;
    r->offset = a;
    r->aux = b;
    memcpy(r->digest, &a, 8);
    memcpy(r->digest + 8, &b, 8);
}

static void test_append_positions(void)
{
    char path[256];
    int fd = new_file(path, sizeof(path));
    CU_ASSERT_FATAL(fd >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    struct fmt_record r[40];
    for (int i = 0; i < 40; i++)
        rec(&r[i], (uint64_t)i, 1000 + (uint64_t)i);
    struct journal_pos p1, p2, p3;
    CU_ASSERT_EQUAL(journal_append(&j, r, 1, &p1), 0);
    CU_ASSERT_EQUAL(p1.end, 64);
    CU_ASSERT_EQUAL(journal_append(&j, r + 1, 3, &p2), 0);
    CU_ASSERT_EQUAL(p2.end, 4 * 64);
    /* More than the 16 records the stack buffer holds. */
    CU_ASSERT_EQUAL(journal_append(&j, r + 4, 36, &p3), 0);
    CU_ASSERT_EQUAL(p3.end, 40 * 64);
    CU_ASSERT_EQUAL(p1.gen, 0);
    CU_ASSERT_EQUAL(j.end, 40 * 64);
    CU_ASSERT_EQUAL(j.records, 40);
    CU_ASSERT_EQUAL(file_size(fd), 40 * 64);
    /* Every record is in the file, in order. */
    unsigned char buf[64];
    int bad = 0;
    for (int i = 0; i < 40; i++) {
        struct fmt_record back;
        if (pread(fd, buf, 64, (off_t)i * 64) != 64 || !fmt_record_decode(buf, &back) ||
            back.offset != (uint64_t)i || back.aux != 1000 + (uint64_t)i)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Nothing synced yet; a sync covers everything up to the position. */
    CU_ASSERT_EQUAL(j.syncs, 0);
    CU_ASSERT_EQUAL(journal_sync(&j, &p2), 0);
    CU_ASSERT_EQUAL(j.syncs, 1);
    CU_ASSERT(j.synced >= p2.end);
    CU_ASSERT_EQUAL(j.synced, p3.end); /* the leader synced all that was appended */
    /* Earlier and equal positions need no new fdatasync. */
    CU_ASSERT_EQUAL(journal_sync(&j, &p1), 0);
    CU_ASSERT_EQUAL(journal_sync(&j, &p3), 0);
    CU_ASSERT_EQUAL(j.syncs, 1);
    journal_destroy(&j);
}

static void test_init_at_end(void)
{
    char path[256];
    int fd = new_file(path, sizeof(path));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(ftruncate(fd, 128), 0);
    struct journal j;
    journal_init(&j, fd, 128);
    struct fmt_record r;
    rec(&r, 5, 6);
    struct journal_pos p;
    CU_ASSERT_EQUAL(journal_append(&j, &r, 1, &p), 0);
    CU_ASSERT_EQUAL(p.end, 192);
    CU_ASSERT_EQUAL(file_size(fd), 192);
    /* An existing file counts as durable: syncing up to it is free. */
    struct journal_pos old = {0, 128};
    CU_ASSERT_EQUAL(journal_sync(&j, &old), 0);
    CU_ASSERT_EQUAL(j.syncs, 0);
    journal_destroy(&j);
}

/* Rounds where every thread appends before anyone syncs: exactly one
 * fdatasync per round serves them all. */
enum { GROUP_THREADS = 6, GROUP_ROUNDS = 20 };
struct group {
    struct journal *j;
    pthread_mutex_t *lock;
    pthread_barrier_t *barrier;
    int id;
    int failures;
};

static void *group_thread(void *arg)
{
    struct group *g = arg;
    for (int round = 0; round < GROUP_ROUNDS; round++) {
        struct fmt_record r;
        struct journal_pos pos;
        rec(&r, (uint64_t)g->id, (uint64_t)round);
        pthread_mutex_lock(g->lock);
        if (journal_append(g->j, &r, 1, &pos) != 0)
            g->failures++;
        pthread_mutex_unlock(g->lock);
        pthread_barrier_wait(g->barrier);
        if (journal_sync(g->j, &pos) != 0)
            g->failures++;
        pthread_barrier_wait(g->barrier);
    }
    return NULL;
}

static void test_group_commit_shares_syncs(void)
{
    char path[256];
    int fd = new_file(path, sizeof(path));
    CU_ASSERT_FATAL(fd >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, GROUP_THREADS);
    pthread_t th[GROUP_THREADS];
    struct group g[GROUP_THREADS];
    for (int i = 0; i < GROUP_THREADS; i++) {
        g[i] = (struct group){&j, &lock, &barrier, i, 0};
        pthread_create(&th[i], NULL, group_thread, &g[i]);
    }
    int failures = 0;
    for (int i = 0; i < GROUP_THREADS; i++) {
        pthread_join(th[i], NULL);
        failures += g[i].failures;
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL(j.records, GROUP_THREADS * GROUP_ROUNDS);
    CU_ASSERT_EQUAL(j.syncs, GROUP_ROUNDS);
    CU_ASSERT_EQUAL(j.synced, (uint64_t)GROUP_THREADS * GROUP_ROUNDS * 64);
    pthread_barrier_destroy(&barrier);
    journal_destroy(&j);
}

/* Free-for-all: threads append (under a lock, as the store does) and sync
 * as fast as they can. */
enum { FREE_THREADS = 8, FREE_ITER = 150 };
struct freeall {
    struct journal *j;
    pthread_mutex_t *lock;
    int id;
    int failures, not_durable;
};

static void *free_thread(void *arg)
{
    struct freeall *f = arg;
    for (int i = 0; i < FREE_ITER; i++) {
        struct fmt_record r[2];
        struct journal_pos pos;
        rec(&r[0], (uint64_t)f->id, (uint64_t)i);
        rec(&r[1], (uint64_t)f->id + 100, (uint64_t)i);
        pthread_mutex_lock(f->lock);
        int rc = journal_append(f->j, r, (size_t)(1 + i % 2), &pos);
        pthread_mutex_unlock(f->lock);
        if (rc != 0 || journal_sync(f->j, &pos) != 0) {
            f->failures++;
            continue;
        }
        pthread_mutex_lock(&f->j->lock);
        if (f->j->synced < pos.end)
            f->not_durable++;
        pthread_mutex_unlock(&f->j->lock);
    }
    return NULL;
}

static void test_concurrent_append_and_sync(void)
{
    char path[256];
    int fd = new_file(path, sizeof(path));
    CU_ASSERT_FATAL(fd >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_t th[FREE_THREADS];
    struct freeall f[FREE_THREADS];
    for (int i = 0; i < FREE_THREADS; i++) {
        f[i] = (struct freeall){&j, &lock, i, 0, 0};
        pthread_create(&th[i], NULL, free_thread, &f[i]);
    }
    int failures = 0, not_durable = 0;
    for (int i = 0; i < FREE_THREADS; i++) {
        pthread_join(th[i], NULL); /* every sync returned */
        failures += f[i].failures;
        not_durable += f[i].not_durable;
    }
    uint64_t appends = FREE_THREADS * FREE_ITER;
    uint64_t records = FREE_THREADS * (FREE_ITER / 2 + FREE_ITER);
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL(not_durable, 0);
    CU_ASSERT_EQUAL(j.records, records);
    CU_ASSERT_EQUAL((uint64_t)file_size(fd), records * 64);
    CU_ASSERT(j.syncs >= 1);
    CU_ASSERT(j.syncs < appends);
    printf("\n  %llu appends, %llu fdatasyncs\n", (unsigned long long)appends,
           (unsigned long long)j.syncs);
    /* Each thread's records are all there, once. */
    unsigned char *buf = malloc(records * 64);
    CU_ASSERT_EQUAL(pread(fd, buf, records * 64, 0), (ssize_t)(records * 64));
    int seen[FREE_THREADS + 100][FREE_ITER];
    memset(seen, 0, sizeof(seen));
    int bad = 0;
    for (uint64_t i = 0; i < records; i++) {
        struct fmt_record r;
        if (!fmt_record_decode(buf + i * 64, &r) || r.offset >= FREE_THREADS + 100 ||
            r.aux >= FREE_ITER) {
            bad++;
            continue;
        }
        seen[r.offset][r.aux]++;
    }
    for (int t = 0; t < FREE_THREADS; t++)
        for (int i = 0; i < FREE_ITER; i++)
            if (seen[t][i] != 1 || seen[t + 100][i] != (i % 2))
                bad++;
    CU_ASSERT_EQUAL(bad, 0);
    free(buf);
    journal_destroy(&j);
}

/* A batch that does not fit (the file size limit here) leaves no part of
 * itself in the file, and the journal goes on where it was. */
static void test_failed_append_leaves_nothing(void)
{
    char path[256];
    int fd = new_file(path, sizeof(path));
    CU_ASSERT_FATAL(fd >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    struct fmt_record r[8];
    for (int i = 0; i < 8; i++)
        rec(&r[i], (uint64_t)i, 0);
    struct journal_pos p;
    CU_ASSERT_EQUAL(journal_append(&j, r, 3, &p), 0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 5 * 64; /* room for two more records, not four */
    signal(SIGXFSZ, SIG_IGN);
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = journal_append(&j, r + 3, 4, &p);
    setrlimit(RLIMIT_FSIZE, &old);
    CU_ASSERT(rc < 0);
    CU_ASSERT_EQUAL(file_size(fd), 3 * 64);
    CU_ASSERT_EQUAL(j.end, 3 * 64);
    CU_ASSERT_EQUAL(j.records, 3);
    /* The next append follows the last whole record. */
    CU_ASSERT_EQUAL(journal_append(&j, r + 7, 1, &p), 0);
    CU_ASSERT_EQUAL(p.end, 4 * 64);
    CU_ASSERT_EQUAL(file_size(fd), 4 * 64);
    CU_ASSERT_EQUAL(journal_sync(&j, &p), 0);
    journal_destroy(&j);
}

/* fdatasync fails on /dev/null (EINVAL): the error is reported to every
 * waiter and stays. */
static void test_sync_error_sticky(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    CU_ASSERT_FATAL(fd >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    struct fmt_record r;
    rec(&r, 1, 1);
    struct journal_pos p1, p2;
    CU_ASSERT_EQUAL(journal_append(&j, &r, 1, &p1), 0);
    CU_ASSERT_EQUAL(journal_sync(&j, &p1), -EINVAL);
    CU_ASSERT_EQUAL(j.sync_err, -EINVAL);
    CU_ASSERT_EQUAL(journal_append(&j, &r, 1, &p2), 0);
    uint64_t syncs = j.syncs;
    CU_ASSERT_EQUAL(journal_sync(&j, &p2), -EINVAL);
    CU_ASSERT_EQUAL(journal_sync(&j, &p1), -EINVAL);
    CU_ASSERT_EQUAL(j.syncs, syncs); /* no new attempt */
    journal_destroy(&j);
}

static void test_replace(void)
{
    char path[256], path2[256];
    int fd = new_file(path, sizeof(path));
    int fd2 = new_file(path2, sizeof(path2));
    CU_ASSERT_FATAL(fd >= 0 && fd2 >= 0);
    struct journal j;
    journal_init(&j, fd, 0);
    struct fmt_record r[3];
    for (int i = 0; i < 3; i++)
        rec(&r[i], (uint64_t)i, 0);
    struct journal_pos before, after;
    CU_ASSERT_EQUAL(journal_append(&j, r, 3, &before), 0);
    CU_ASSERT_EQUAL(ftruncate(fd2, 64), 0);
    journal_replace(&j, fd2, 64);
    CU_ASSERT_EQUAL(j.gen, 1);
    CU_ASSERT_EQUAL(j.end, 64);
    /* A position in the old file is durable by the snapshot. */
    uint64_t syncs = j.syncs;
    CU_ASSERT_EQUAL(journal_sync(&j, &before), 0);
    CU_ASSERT_EQUAL(j.syncs, syncs);
    CU_ASSERT_EQUAL(journal_append(&j, r, 1, &after), 0);
    CU_ASSERT_EQUAL(after.gen, 1);
    CU_ASSERT_EQUAL(after.end, 128);
    CU_ASSERT_EQUAL(file_size(fd2), 128);
    CU_ASSERT_EQUAL(journal_sync(&j, &after), 0);
    CU_ASSERT(j.synced >= 128);
    /* The old fd was closed by the swap. */
    CU_ASSERT_EQUAL(fcntl(fd, F_GETFD), -1);
    journal_destroy(&j);
}

/* Runs the suite; main runs it in a child so that the temporary directory
 * is removed even when a sanitizer or a crash ends the run early. */
static int run_tests(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("journal", NULL, NULL);
    CU_add_test(s, "append positions and contents", test_append_positions);
    CU_add_test(s, "init at the end of an existing file", test_init_at_end);
    CU_add_test(s, "group commit: one fdatasync per round", test_group_commit_shares_syncs);
    CU_add_test(s, "many threads append and sync", test_concurrent_append_and_sync);
    CU_add_test(s, "failed append leaves nothing", test_failed_append_leaves_nothing);
    CU_add_test(s, "fdatasync error is sticky", test_sync_error_sticky);
    CU_add_test(s, "replace with a snapshot", test_replace);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    have_tmpdir = 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        exit(run_tests()); /* exit, not _exit: flushes the report */
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        status = 1 << 8;
    cleanup_tmpdir();
    if (WIFSIGNALED(status))
        fprintf(stderr, "%s: killed by signal %d\n", "test_journal", WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
