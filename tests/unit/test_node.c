/*
 * test_node.c - a storaged's identity (storaged/node.c): created once and
 * reloaded unchanged, the token count rule (one per GiB, clamped to
 * [64, 16384]), refusal to serve another hash algorithm, and refusal of a
 * damaged node file.
 */
#define _GNU_SOURCE
#include "node.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GiB (UINT64_C(1) << 30)

static char tmpdir[] = "/tmp/cas-test-node-XXXXXX";
static int have_tmpdir, dir_seq;

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

/* A fresh store directory; its fd in *dirfd. */
static void new_dir(char *path, size_t len, int *dirfd)
{
    snprintf(path, len, "%s/store-%d", tmpdir, dir_seq++);
    mkdir(path, 0755);
    *dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void write_node_file(int dirfd, const char *text, size_t len)
{
    int fd = openat(dirfd, "node", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static char *read_node_file(int dirfd, size_t *len)
{
    int fd = openat(dirfd, "node", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    fstat(fd, &st);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    *len = (size_t)read(fd, buf, (size_t)st.st_size);
    close(fd);
    return buf;
}

static void test_token_count_rule(void)
{
    CU_ASSERT_EQUAL(node_token_count(0), 64);
    CU_ASSERT_EQUAL(node_token_count(1), 64);
    CU_ASSERT_EQUAL(node_token_count(63 * GiB), 64);
    CU_ASSERT_EQUAL(node_token_count(64 * GiB), 64);
    CU_ASSERT_EQUAL(node_token_count(65 * GiB), 65);
    CU_ASSERT_EQUAL(node_token_count(65 * GiB + GiB / 2), 65); /* whole GiB only */
    CU_ASSERT_EQUAL(node_token_count(100 * GiB - 1), 99);
    CU_ASSERT_EQUAL(node_token_count(1000 * GiB), 1000);
    CU_ASSERT_EQUAL(node_token_count(16384 * GiB), 16384);
    CU_ASSERT_EQUAL(node_token_count(16385 * GiB), 16384);
    CU_ASSERT_EQUAL(node_token_count(UINT64_MAX), 16384);
    CU_ASSERT_EQUAL(NODE_MIN_TOKENS, 64);
    CU_ASSERT_EQUAL(NODE_MAX_TOKENS, 16384);
}

static bool sorted_distinct(const uint64_t *t, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (t[i - 1] >= t[i])
            return false;
    return true;
}

static bool is_hex16(const char *s)
{
    if (strlen(s) != 16)
        return false;
    for (int i = 0; i < 16; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

static void test_create_then_reload(void)
{
    char path[256], err[512] = "";
    int dirfd;
    new_dir(path, sizeof(path), &dirfd);
    struct node_identity a, b;
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(dirfd, path, NULL, 100 * GiB, &a, err, sizeof(err)),
                          0);
    CU_ASSERT_PTR_EQUAL(a.algo, cas_hash_by_name("sha1")); /* the default */
    CU_ASSERT_EQUAL(a.ntokens, 100);
    CU_ASSERT_TRUE(is_hex16(a.id));
    CU_ASSERT_TRUE(sorted_distinct(a.tokens, a.ntokens));
    /* Reloaded with another capacity: never regenerated. */
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(dirfd, path, NULL, 5000 * GiB, &b, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(a.id, b.id);
    CU_ASSERT_PTR_EQUAL(a.algo, b.algo);
    CU_ASSERT_EQUAL_FATAL(b.ntokens, a.ntokens);
    CU_ASSERT_EQUAL(memcmp(a.tokens, b.tokens, a.ntokens * sizeof(uint64_t)), 0);
    node_free(&b);
    /* Asking for the algorithm it has is fine. */
    CU_ASSERT_EQUAL(
        node_load_or_create(dirfd, path, cas_hash_by_name("sha1"), 0, &b, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(a.id, b.id);
    node_free(&b);
    /* The file: header, id, hash, count, one 16-hex token per line; no
     * temporary file left behind. */
    size_t len;
    char *text = read_node_file(dirfd, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(strncmp(text, "ca-cas node 1\n", 14), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, a.id));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "hash sha1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "tokens 100\n"));
    size_t lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 4 + 100);
    free(text);
    DIR *d = fdopendir(dup(dirfd));
    struct dirent *de;
    int others = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "node"))
            others++;
    closedir(d);
    CU_ASSERT_EQUAL(others, 0);
    node_free(&a);
    CU_ASSERT_PTR_NULL(a.tokens);
    close(dirfd);
}

static void test_token_counts_at_creation(void)
{
    static const struct {
        uint64_t cap;
        size_t want;
    } cases[] = {{0, 64}, {10 * GiB, 64}, {300 * GiB, 300}, {20000 * GiB, 16384}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[256], err[512];
        int dirfd;
        new_dir(path, sizeof(path), &dirfd);
        struct node_identity n, again;
        CU_ASSERT_EQUAL_FATAL(
            node_load_or_create(dirfd, path, NULL, cases[i].cap, &n, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(n.ntokens, cases[i].want);
        CU_ASSERT_TRUE(sorted_distinct(n.tokens, n.ntokens));
        CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, NULL, 0, &again, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(again.ntokens, cases[i].want);
        if (again.ntokens == n.ntokens)
            CU_ASSERT_EQUAL(memcmp(n.tokens, again.tokens, n.ntokens * 8), 0);
        node_free(&n);
        node_free(&again);
        close(dirfd);
    }
}

static void test_distinct_nodes(void)
{
    char p1[256], p2[256], err[512];
    int d1, d2;
    new_dir(p1, sizeof(p1), &d1);
    new_dir(p2, sizeof(p2), &d2);
    struct node_identity a, b;
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(d1, p1, NULL, 0, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(d2, p2, NULL, 0, &b, err, sizeof(err)), 0);
    CU_ASSERT_STRING_NOT_EQUAL(a.id, b.id);
    CU_ASSERT_NOT_EQUAL(memcmp(a.tokens, b.tokens, 64 * 8), 0);
    node_free(&a);
    node_free(&b);
    close(d1);
    close(d2);
}

static void test_other_algorithm_refused(void)
{
    char path[256], err[512] = "";
    int dirfd;
    new_dir(path, sizeof(path), &dirfd);
    const struct cas_hash_algo *s1 = cas_hash_by_name("sha1"), *s256 = cas_hash_by_name("sha256");
    struct node_identity n;
    CU_ASSERT_EQUAL_FATAL(node_load_or_create(dirfd, path, s256, 0, &n, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(n.algo, s256);
    node_free(&n);
    /* NULL: whatever the store has. */
    CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, NULL, 0, &n, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(n.algo, s256);
    node_free(&n);
    err[0] = '\0';
    CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, s1, 0, &n, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "sha256"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "sha1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NULL(n.tokens);
    /* The file is untouched by the refusal. */
    CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, s256, 0, &n, err, sizeof(err)), 0);
    node_free(&n);
    close(dirfd);
}

/* Writes text as the node file of a fresh directory and expects a refusal
 * with the "damaged" message. Returns true when refused. */
static bool refused(const char *text, size_t len)
{
    char path[256], err[512] = "";
    int dirfd;
    new_dir(path, sizeof(path), &dirfd);
    write_node_file(dirfd, text, len);
    struct node_identity n;
    int rc = node_load_or_create(dirfd, path, NULL, 0, &n, err, sizeof(err));
    bool ok = rc == -EINVAL && strstr(err, "damaged") && strstr(err, path);
    if (rc == 0)
        node_free(&n);
    /* A damaged file is never silently replaced by a new identity. */
    size_t after_len;
    char *after = read_node_file(dirfd, &after_len);
    if (!after || after_len != len || memcmp(after, text, len) != 0)
        ok = false;
    free(after);
    close(dirfd);
    return ok;
}

/* A valid file of n tokens, for damaging. */
static char *valid_text(size_t n, size_t *len)
{
    char *t = malloc(64 + n * 17);
    int k = sprintf(t, "ca-cas node 1\nid 0123456789abcdef\nhash sha1\ntokens %zu\n", n);
    for (size_t i = 0; i < n; i++)
        k += sprintf(t + k, "%016llx\n", (unsigned long long)(i + 1) * 0x0101010101010101ULL);
    *len = (size_t)k;
    return t;
}

static void test_damaged_refused(void)
{
    size_t len;
    char *good = valid_text(64, &len);
    /* Sanity: the undamaged text loads. */
    {
        char path[256], err[512];
        int dirfd;
        new_dir(path, sizeof(path), &dirfd);
        write_node_file(dirfd, good, len);
        struct node_identity n;
        CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, NULL, 0, &n, err, sizeof(err)), 0);
        CU_ASSERT_STRING_EQUAL(n.id, "0123456789abcdef");
        CU_ASSERT_EQUAL(n.ntokens, 64);
        node_free(&n);
        close(dirfd);
    }
    CU_ASSERT_TRUE(refused("", 0));
    CU_ASSERT_TRUE(refused("\0\0\0\0\0\0\0\0", 8));
    CU_ASSERT_TRUE(refused("garbage\n", 8));
    /* Cut at a line boundary in the token list. */
    CU_ASSERT_TRUE(refused(good, len - 17 * 10));
    /* Cut right after the header lines. */
    const char *hdr_end = strstr(good, "tokens 64\n") + 10;
    CU_ASSERT_TRUE(refused(good, (size_t)(hdr_end - good)));
    CU_ASSERT_TRUE(refused(good, 20));
    char *t = strdup(good);
    memcpy(t, "ca-cas node 2", 13);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    t = strdup(good);
    memcpy(strstr(t, "hash sha1"), "hash md51", 9);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    t = strdup(good);
    memcpy(strstr(t, "id 0123"), "id 0123456789ab\n", 16); /* short id */
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    t = strdup(good);
    memcpy(strstr(t, "tokens 64"), "tokens 00", 9);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    t = strdup(good);
    memcpy(strstr(t, "tokens 64"), "tokens 99", 9); /* more declared than present */
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    /* A token line that is not hex at all. */
    t = strdup(good);
    memcpy(hdr_end - good + t, "zzzzzzzzzzzzzzzz", 16);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    free(good);
}

/*
 * BUG (storaged/node.c, parse): a token line is read with sscanf("%" SCNx64),
 * which stops at the first non-hex character and ignores the rest. So a
 * node file whose last token line was cut short (e.g. "0101", a torn copy
 * or a hand edit) or has a damaged character ("...0g") loads with a
 * different token value, silently moving this node's share of the ring.
 * Likewise the id line accepts any 16 non-space characters. Each token line
 * should be exactly 16 hex digits and a newline; the id 16 hex digits.
 */
static void test_damaged_token_lines_refused(void)
{
    size_t len;
    char *good = valid_text(64, &len);
    /* The last token line cut to 4 digits, no newline. */
    CU_ASSERT_TRUE(refused(good, len - 13));
    /* The last token line ending in a non-hex character. */
    char *t = strdup(good);
    t[len - 2] = 'g';
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    /* An id that is not hex. */
    t = strdup(good);
    memcpy(strstr(t, "id 0123456789abcdef"), "id 01234567-9abcdef", 19);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    free(good);
}

/* A directory that cannot be listed (here: opened O_PATH) may hold a store
 * whose node file is lost: "cannot tell" counts as "holds one", and nothing
 * is written. */
static void test_unlistable_dir_writes_nothing(void)
{
    char path[256], err[1024] = "", what[300] = "";
    int dirfd;
    new_dir(path, sizeof(path), &dirfd);
    int pathfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CU_ASSERT_FATAL(pathfd >= 0);
    CU_ASSERT_TRUE(node_dir_holds_store(pathfd, what, sizeof(what)));
    CU_ASSERT_PTR_NOT_NULL(strstr(what, "cannot be listed"));
    struct node_identity n;
    CU_ASSERT_EQUAL(node_load_or_create(pathfd, path, NULL, 100 * GiB, &n, err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot be listed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--new-identity"));
    size_t len;
    CU_ASSERT_PTR_NULL(read_node_file(dirfd, &len));
    /* The same directory opened normally is empty: a node is made. */
    CU_ASSERT_FALSE(node_dir_holds_store(dirfd, what, sizeof(what)));
    CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, NULL, 100 * GiB, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n.ntokens, 100);
    node_free(&n);
    close(pathfd);
    close(dirfd);
}

/* No "node.tmp.*" file is left in the directory. */
static bool no_tmp_left(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    bool ok = d != NULL;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, "node.tmp.", 9) && de->d_type != DT_DIR)
            ok = false;
    if (d)
        closedir(d);
    return ok;
}

/* node_create when the node file cannot be written: an error naming the
 * directory, no node file, no temporary file, no tokens handed out. */
static void test_create_failures_write_nothing(void)
{
    char path[256], err[1024] = "";
    int dirfd;
    struct node_identity n;
    const struct cas_hash_algo *sha1 = cas_hash_by_name("sha1");
    size_t len;

    /* Another daemon made its node first (link, not rename): ours loses,
     * theirs is untouched. */
    new_dir(path, sizeof(path), &dirfd);
    struct node_identity first;
    CU_ASSERT_EQUAL_FATAL(node_create(dirfd, path, sha1, 0, &first, err, sizeof(err)), 0);
    char *before = read_node_file(dirfd, &len);
    CU_ASSERT_EQUAL(node_create(dirfd, path, sha1, 0, &n, err, sizeof(err)), -EEXIST);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot write "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NULL(n.tokens);
    size_t len2;
    char *after = read_node_file(dirfd, &len2);
    CU_ASSERT(before && after && len == len2 && memcmp(before, after, len) == 0);
    free(before);
    free(after);
    CU_ASSERT_TRUE(no_tmp_left(path));
    node_free(&first);
    close(dirfd);

    /* The temporary name is taken by something we cannot remove. */
    new_dir(path, sizeof(path), &dirfd);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "node.tmp.%d", (int)getpid());
    CU_ASSERT_EQUAL_FATAL(mkdirat(dirfd, tmp, 0755), 0);
    CU_ASSERT_EQUAL(node_create(dirfd, path, sha1, 0, &n, err, sizeof(err)), -EEXIST);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, tmp));
    CU_ASSERT_PTR_NULL(n.tokens);
    CU_ASSERT_PTR_NULL(read_node_file(dirfd, &len));
    unlinkat(dirfd, tmp, AT_REMOVEDIR);
    close(dirfd);

    /* A file system that takes no more than 64 bytes of a file (a file
     * size limit stands in for a full disk): the write fails, nothing is
     * left, and a later start with room makes the node. */
    new_dir(path, sizeof(path), &dirfd);
    struct rlimit old, small = {.rlim_cur = 64, .rlim_max = RLIM_INFINITY};
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    fflush(stdout);
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = node_create(dirfd, path, sha1, 0, &n, err, sizeof(err));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, oldsig);
    CU_ASSERT_EQUAL(rc, -EFBIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/node: "));
    CU_ASSERT_PTR_NULL(n.tokens);
    CU_ASSERT_PTR_NULL(read_node_file(dirfd, &len));
    CU_ASSERT_TRUE(no_tmp_left(path));
    CU_ASSERT_EQUAL(node_load_or_create(dirfd, path, sha1, 0, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n.ntokens, 64);
    node_free(&n);
    close(dirfd);
}

/* No file descriptor left to list the directory with: "cannot tell" is
 * "holds a store", so no new identity is written over a lost node file. */
static void test_no_descriptor_to_list(void)
{
    char path[256], what[300] = "";
    int dirfd;
    new_dir(path, sizeof(path), &dirfd);
    struct rlimit old;
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = {.rlim_cur = (rlim_t)dirfd + 8, .rlim_max = old.rlim_max};
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fill[16], nfill = 0;
    while (nfill < 16 && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;
    bool holds = node_dir_holds_store(dirfd, what, sizeof(what));
    while (nfill > 0)
        close(fill[--nfill]);
    setrlimit(RLIMIT_NOFILE, &old);
    CU_ASSERT_TRUE(holds);
    CU_ASSERT_PTR_NOT_NULL(strstr(what, "cannot be listed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(what, strerror(EMFILE)));
    /* with descriptors back, the empty directory is empty */
    CU_ASSERT_FALSE(node_dir_holds_store(dirfd, what, sizeof(what)));
    close(dirfd);
}

static void test_unknown_hash_refused(void)
{
    size_t len;
    char *good = valid_text(64, &len);
    char *t = strdup(good);
    memcpy(strstr(t, "hash sha1"), "hash md5x", 9);
    CU_ASSERT_TRUE(refused(t, len));
    free(t);
    free(good);
}

/* Runs the suite; main runs it in a child so that the temporary directory
 * is removed even when a sanitizer or a crash ends the run early. */
static int run_tests(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("node", NULL, NULL);
    CU_add_test(s, "token count rule", test_token_count_rule);
    CU_add_test(s, "create then reload", test_create_then_reload);
    CU_add_test(s, "token counts at creation", test_token_counts_at_creation);
    CU_add_test(s, "two nodes differ", test_distinct_nodes);
    CU_add_test(s, "another hash algorithm refused", test_other_algorithm_refused);
    CU_add_test(s, "damaged node file refused", test_damaged_refused);
    CU_add_test(s, "damaged token lines refused", test_damaged_token_lines_refused);
    CU_add_test(s, "a directory that cannot be listed: nothing written",
                test_unlistable_dir_writes_nothing);
    CU_add_test(s, "node file cannot be written: nothing left", test_create_failures_write_nothing);
    CU_add_test(s, "no descriptor to list with: nothing written", test_no_descriptor_to_list);
    CU_add_test(s, "unknown hash in the node file refused", test_unknown_hash_refused);
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
        fprintf(stderr, "%s: killed by signal %d\n", "test_node", WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
