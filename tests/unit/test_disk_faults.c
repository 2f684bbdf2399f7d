/*
 * test_disk_faults.c - the disk engine's error paths (storaged/disk_write.c,
 * disk_compact.c, disk_index.c, disk_base.c): a full disk, an I/O error, a
 * failed fdatasync or fsync, a file that cannot be created or renamed, a
 * kernel that cannot copy in place, each where the engine writes, syncs or
 * creates something. Each test checks that the engine refuses cleanly (the
 * error it returns and its message, read-only only after an I/O error, not
 * after a full disk) and loses nothing: every object stored before reads
 * back, the table and its counters add up (disk_table_consistent), no
 * half-made file is left behind, and a restart finds the same objects.
 *
 * GC steps whose index record is refused, reads and replay meeting read
 * errors, the same way; and a scrub pass over a copy that rotted on disk.
 *
 * The faults are injected at link time: this executable is linked with
 * -Wl,--wrap for the system calls below (tests/unit/CMakeLists.txt), so the
 * engine's calls (a static library) go through the __wrap_ functions here,
 * which fail a call on cue (fault_arm: which call, on which file, with
 * which errno, after how many matching calls) and pass every other call to
 * libc. No timing: a compaction is held inside a call by a semaphore when a
 * test needs it in flight.
 */
#define _GNU_SOURCE
#include "disk.h"
#include "disk_internal.h"
#include "format.h"
#include "log.h"
#include "store_data.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ERRLEN 512

/* ---- fault injection ---------------------------------------------------- */

enum fault_call { F_PWRITE, F_PREAD, F_FDATASYNC, F_FSYNC, F_COPY, F_OPENAT, F_RENAMEAT, F_NCALLS };

struct fault {
    int err;        /* errno to fail with; 0: the call is not faulted */
    char match[64]; /* in the file's path (or the name given to openat, renameat);
                       "^x": starts with x, "x$": ends with x; "" any */
    int skip;       /* matching calls let through before the failures start */
    int failed;     /* calls failed so far */
};

static struct fault faults[F_NCALLS];
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
/* When set, the next copy_file_range posts copy_entered and waits for
 * copy_release: a compaction held in flight. */
static int hold_copy;
static sem_t copy_entered, copy_release;

static void fault_arm(enum fault_call c, int err, const char *match, int skip)
{
    pthread_mutex_lock(&fault_lock);
    faults[c].err = err;
    snprintf(faults[c].match, sizeof(faults[c].match), "%s", match);
    faults[c].skip = skip;
    faults[c].failed = 0;
    pthread_mutex_unlock(&fault_lock);
}

/* Disarms every fault; the number of calls failed since armed. */
static int fault_clear(void)
{
    int n = 0;
    pthread_mutex_lock(&fault_lock);
    for (int c = 0; c < F_NCALLS; c++) {
        n += faults[c].failed;
        faults[c].err = 0;
        faults[c].failed = 0;
    }
    pthread_mutex_unlock(&fault_lock);
    return n;
}

static bool matches(const char *pat, const char *s)
{
    size_t pl = strlen(pat), sl = strlen(s);
    bool head = pl && pat[0] == '^', tail = pl && pat[pl - 1] == '$';
    char p[64];
    snprintf(p, sizeof(p), "%.*s", (int)(pl - head - tail), pat + head);
    size_t n = strlen(p);
    if (head && tail)
        return strcmp(p, s) == 0;
    if (head)
        return strncmp(p, s, n) == 0;
    if (tail)
        return sl >= n && strcmp(s + sl - n, p) == 0;
    return strstr(s, p) != NULL;
}

/* The errno call c on name must fail with, or 0. */
static int fault_check(enum fault_call c, const char *name)
{
    int err = 0;
    pthread_mutex_lock(&fault_lock);
    struct fault *f = &faults[c];
    if (f->err && matches(f->match, name)) {
        if (f->skip > 0) {
            f->skip--;
        } else {
            err = f->err;
            f->failed++;
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return err;
}

static int fault_fd(enum fault_call c, int fd)
{
    if (!__atomic_load_n(&faults[c].err, __ATOMIC_ACQUIRE))
        return 0;
    char link[64], path[1024];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    path[n > 0 ? n : 0] = '\0';
    return fault_check(c, path);
}

ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    int e = fault_fd(F_PWRITE, fd);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_pwrite64(fd, buf, n, off);
}

ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
    int e = fault_fd(F_PREAD, fd);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_pread64(fd, buf, n, off);
}

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    int e = fault_fd(F_FDATASYNC, fd);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_fdatasync(fd);
}

int __real_fsync(int fd);
int __wrap_fsync(int fd)
{
    int e = fault_fd(F_FSYNC, fd);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_fsync(fd);
}

ssize_t __real_copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t len,
                               unsigned flags);
ssize_t __wrap_copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t len,
                               unsigned flags)
{
    if (__atomic_exchange_n(&hold_copy, 0, __ATOMIC_ACQ_REL)) {
        sem_post(&copy_entered);
        sem_wait(&copy_release);
    }
    int e = fault_fd(F_COPY, out);
    if (!e)
        e = fault_fd(F_COPY, in);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_copy_file_range(in, in_off, out, out_off, len, flags);
}

int __real_openat64(int dirfd, const char *name, int flags, ...);
int __wrap_openat64(int dirfd, const char *name, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | __O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int e =
        __atomic_load_n(&faults[F_OPENAT].err, __ATOMIC_ACQUIRE) ? fault_check(F_OPENAT, name) : 0;
    if (e) {
        errno = e;
        return -1;
    }
    return __real_openat64(dirfd, name, flags, mode);
}

int __real_renameat(int olddirfd, const char *old, int newdirfd, const char *new);
int __wrap_renameat(int olddirfd, const char *old, int newdirfd, const char *new)
{
    int e = __atomic_load_n(&faults[F_RENAMEAT].err, __ATOMIC_ACQUIRE)
                ? fault_check(F_RENAMEAT, old)
                : 0;
    if (e) {
        errno = e;
        return -1;
    }
    return __real_renameat(olddirfd, old, newdirfd, new);
}

/* ---- stores and objects ------------------------------------------------- */

static char tmpdir[] = "/tmp/cas-test-disk-faults-XXXXXX";
static int have_tmpdir, dir_seq;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static struct store *open_store(const char *dir)
{
    struct disk_options o = {.dir = dir, .algo = cas_hash_by_name("sha1")};
    char err[ERRLEN] = "";
    struct store *s = NULL;
    if (disk_open(&o, &s, err, sizeof(err)) != 0) {
        printf("\n  disk_open(%s): %s\n", dir, err);
        return NULL;
    }
    return s;
}

/* Stores data (hint: its size, or UINT64_MAX for a write of unknown size, as
 * chunked uploads are) in pieces of 100003 bytes; rc, err filled. */
static int put_obj(struct store *s, const void *data, size_t len, uint64_t hint, bool sync,
                   char *err)
{
    struct store_put *p = NULL;
    struct cas_key k;
    bool created = false;
    err[0] = '\0';
    int rc = s->ops->put_begin(s, NULL, hint, &p, err, ERRLEN);
    if (rc != 0)
        return rc;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 100003 ? len - off : 100003;
        rc = s->ops->put_write(p, (const char *)data + off, n, err, ERRLEN);
        if (rc != 0) {
            s->ops->put_abort(p);
            return rc;
        }
        off += n;
    }
    return s->ops->put_commit(p, sync, &k, &created, err, ERRLEN);
}

static bool reads_back(struct store *s, const void *data, size_t len)
{
    struct cas_key k = key_of(s, data, len);
    struct store_obj *o = NULL;
    uint64_t size = 0;
    char err[ERRLEN];
    if (s->ops->open(s, &k, false, &o, &size, err, sizeof(err)) != 0)
        return false;
    unsigned char *buf = malloc(len ? len : 1);
    bool ok =
        size == len && s->ops->pread(o, buf, len, 0) == (ssize_t)len && memcmp(buf, data, len) == 0;
    free(buf);
    s->ops->close(o);
    return ok;
}

static bool absent(struct store *s, const void *data, size_t len)
{
    struct cas_key k = key_of(s, data, len);
    uint64_t size;
    return s->ops->stat(s, &k, &size) == -ENOENT;
}

static bool consistent(struct store *s)
{
    struct disk_store *d = disk_of(s);
    char why[256] = "";
    pthread_rwlock_rdlock(&d->lock);
    bool ok = disk_table_consistent(d, why, sizeof(why));
    pthread_rwlock_unlock(&d->lock);
    if (!ok)
        printf("\n  table: %s\n", why);
    return ok;
}

static struct store_info info_of(struct store *s)
{
    struct store_info i;
    s->ops->info(s, &i);
    return i;
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    int n = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (dp)
        closedir(dp);
    return n;
}

static uint64_t file_size(const char *dir, const char *name)
{
    char path[700];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* Bytes held by the data files of dir, whatever their generation. */
static uint64_t data_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    unsigned n;
    uint64_t gen;
    while (dp && (de = readdir(dp)))
        if (fmt_datafile_parse(de->d_name, &n, &gen))
            total += file_size(dir, de->d_name);
    if (dp)
        closedir(dp);
    return total;
}

/*
 * A store holding NOBJ objects: two rounds over the data files of objects
 * of one size (a new object goes to the shortest file, the first of equal
 * ones: object i lands in file i % FMT_NFILES), then a few of other sizes.
 * With `holes`, the even objects of the first round are removed: half the
 * data files then hold dead bytes before a live object, which compaction
 * copies. kept[i]: object i is stored.
 */
#define NOBJ (2 * FMT_NFILES + 8)
struct fixture {
    char dir[512];
    struct store *s;
    unsigned char *data[NOBJ];
    size_t len[NOBJ];
    bool kept[NOBJ];
};

static bool fx_setup(struct fixture *fx, bool holes)
{
    char err[ERRLEN];
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "%s/store-%d", tmpdir, dir_seq++);
    mkdir(fx->dir, 0755);
    fx->s = open_store(fx->dir);
    if (!fx->s)
        return false;
    for (int i = 0; i < NOBJ; i++) {
        fx->len[i] = i < 2 * FMT_NFILES ? 20011 : (size_t)(i % 7) * 30011 + (size_t)i * 17 + 1;
        fx->data[i] = make_data(fx->len[i], 1000u + (unsigned)i);
        if (put_obj(fx->s, fx->data[i], fx->len[i], fx->len[i], true, err) != 0) {
            printf("\n  setup put: %s\n", err);
            return false;
        }
        fx->kept[i] = true;
    }
    for (int i = 0; holes && i < FMT_NFILES; i += 2) {
        struct cas_key k = key_of(fx->s, fx->data[i], fx->len[i]);
        if (fx->s->ops->remove(fx->s, &k, err, sizeof(err)) != 0)
            return false;
        fx->kept[i] = false;
    }
    return true;
}

/* Every object the fixture holds reads back, the removed ones stay away,
 * and the table adds up. */
static bool fx_intact(struct fixture *fx)
{
    bool ok = consistent(fx->s);
    for (int i = 0; i < NOBJ; i++) {
        bool good = fx->kept[i] ? reads_back(fx->s, fx->data[i], fx->len[i])
                                : absent(fx->s, fx->data[i], fx->len[i]);
        if (!good)
            printf("\n  object %d (%zu bytes, %s) is wrong\n", i, fx->len[i],
                   fx->kept[i] ? "kept" : "removed");
        ok &= good;
    }
    return ok;
}

/* The same after a restart, which also ends a read-only state. */
static bool fx_restart(struct fixture *fx)
{
    fx->s->ops->destroy(fx->s);
    fx->s = open_store(fx->dir);
    return fx->s && fx_intact(fx) && !info_of(fx->s).read_only;
}

static void fx_done(struct fixture *fx)
{
    fault_clear();
    if (fx->s)
        fx->s->ops->destroy(fx->s);
    for (int i = 0; i < NOBJ; i++)
        free(fx->data[i]);
}

/* ---- writes ------------------------------------------------------------- */

/* A full disk under a write (small, large, of unknown size: the data file,
 * the buffer flushes, the spool), or a data file at the file system's
 * largest size (EFBIG): -ENOSPC saying so, nothing stored, the reserved
 * range given back, the store still writable. */
static void test_write_disk_full(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    size_t sizes[] = {4096, 3u << 20, 3u << 20, 4096, 3u << 20};
    uint64_t hints[] = {4096, 3u << 20, UINT64_MAX, 4096, 3u << 20};
    const char *where[] = {"/data-", "/data-", "(deleted)", "/data-", "/data-"}; /* the spool is unlinked */
    int errs[] = {ENOSPC, ENOSPC, ENOSPC, EFBIG, EFBIG};
    for (int t = 0; t < 5; t++) {
        unsigned char *obj = make_data(sizes[t], 7u + (unsigned)t);
        uint64_t before = data_bytes(fx.dir);
        fault_arm(F_PWRITE, errs[t], where[t], 0);
        CU_ASSERT_EQUAL(put_obj(fx.s, obj, sizes[t], hints[t], true, err), -ENOSPC);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "disk full"));
        CU_ASSERT_TRUE(fault_clear() > 0);
        CU_ASSERT_FALSE(info_of(fx.s).read_only); /* full is not broken */
        CU_ASSERT_TRUE(absent(fx.s, obj, sizes[t]));
        CU_ASSERT_EQUAL(data_bytes(fx.dir), before); /* the range was cut off again */
        CU_ASSERT_EQUAL(put_obj(fx.s, obj, sizes[t], hints[t], true, err), 0);
        CU_ASSERT_TRUE(reads_back(fx.s, obj, sizes[t]));
        free(obj);
    }
    CU_ASSERT_TRUE(fx_intact(&fx));
    CU_ASSERT_TRUE(fx_restart(&fx));
    fx_done(&fx);
}

/* An I/O error writing a data file, the spool, or making a data file
 * durable: -EIO, and the store turns read-only (reads go on) until a
 * restart; the object is not stored, nothing else is lost. */
static void test_write_io_error(void)
{
    struct {
        enum fault_call call;
        const char *match;
        size_t size;
        uint64_t hint;
    } cases[] = {
        {F_PWRITE, "/data-", 4096, 4096},
        {F_PWRITE, "/data-", 3u << 20, 3u << 20},
        {F_PWRITE, "(deleted)", 3u << 20, UINT64_MAX},
        {F_FDATASYNC, "/data-", 5000, 5000},
        {F_COPY, "/data-", 3u << 20, UINT64_MAX}, /* bringing the spool in */
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        struct fixture fx;
        CU_ASSERT_FATAL(fx_setup(&fx, false));
        char err[ERRLEN];
        unsigned char *obj = make_data(cases[t].size, 70u + (unsigned)t);
        fault_arm(cases[t].call, EIO, cases[t].match, 0);
        CU_ASSERT_EQUAL(put_obj(fx.s, obj, cases[t].size, cases[t].hint, true, err), -EIO);
        CU_ASSERT_TRUE(fault_clear() > 0);
        struct store_info i = info_of(fx.s);
        CU_ASSERT_TRUE(i.read_only && i.faulted);
        CU_ASSERT_PTR_NOT_NULL(strstr(i.read_only_reason, "I/O error"));
        CU_ASSERT_EQUAL(put_obj(fx.s, obj, cases[t].size, cases[t].hint, true, err), -EROFS);
        CU_ASSERT_TRUE(absent(fx.s, obj, cases[t].size));
        CU_ASSERT_TRUE(fx_intact(&fx));
        CU_ASSERT_TRUE(fx_restart(&fx));
        CU_ASSERT_TRUE(absent(fx.s, obj, cases[t].size));
        CU_ASSERT_EQUAL(put_obj(fx.s, obj, cases[t].size, cases[t].hint, true, err), 0);
        CU_ASSERT_TRUE(reads_back(fx.s, obj, cases[t].size));
        free(obj);
        fx_done(&fx);
    }
}

/* The index refuses the record: full (-ENOSPC, still writable) or broken
 * (-EIO, read-only); either way the object is not stored and its bytes are
 * given back. A failed index fdatasync: -EIO, read-only. */
static void test_write_index_fails(void)
{
    int errs[] = {ENOSPC, EIO};
    for (int t = 0; t < 3; t++) {
        struct fixture fx;
        CU_ASSERT_FATAL(fx_setup(&fx, false));
        char err[ERRLEN];
        unsigned char *obj = make_data(10000, 300u + (unsigned)t);
        uint64_t before = data_bytes(fx.dir), index = file_size(fx.dir, "index");
        if (t < 2)
            fault_arm(F_PWRITE, errs[t], "/index$", 0);
        else
            fault_arm(F_FDATASYNC, EIO, "/index$", 0);
        int rc = put_obj(fx.s, obj, 10000, 10000, true, err);
        CU_ASSERT_TRUE(fault_clear() > 0);
        if (t == 0) {
            CU_ASSERT_EQUAL(rc, -ENOSPC);
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "disk full: cannot append to the index"));
            CU_ASSERT_FALSE(info_of(fx.s).read_only);
        } else {
            CU_ASSERT_EQUAL(rc, -EIO);
            CU_ASSERT_TRUE(info_of(fx.s).faulted);
        }
        if (t < 2) { /* nothing of it stays: no record, no bytes */
            CU_ASSERT_TRUE(absent(fx.s, obj, 10000));
            CU_ASSERT_EQUAL(file_size(fx.dir, "index"), index);
            CU_ASSERT_EQUAL(data_bytes(fx.dir), before);
        }
        CU_ASSERT_TRUE(fx_intact(&fx));
        CU_ASSERT_TRUE(fx_restart(&fx));
        free(obj);
        fx_done(&fx);
    }
}

/* A write of unknown size whose spool cannot be created: -ENOSPC when the
 * disk is full, nothing left. Where O_TMPFILE is not supported, a named
 * spool file is made and unlinked at once, and the write goes through. */
static void test_write_spool(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    size_t len = 2u << 20;
    unsigned char *obj = make_data(len, 555);
    fault_arm(F_OPENAT, ENOSPC, "", 0);
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, len, UINT64_MAX, true, err), -ENOSPC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot create a spool file"));
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_FALSE(info_of(fx.s).read_only);
    CU_ASSERT_TRUE(absent(fx.s, obj, len));

    fault_arm(F_OPENAT, EOPNOTSUPP, "^.$", 0); /* O_TMPFILE */
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, len, UINT64_MAX, true, err), 0);
    CU_ASSERT_EQUAL(fault_clear(), 1);
    CU_ASSERT_TRUE(reads_back(fx.s, obj, len));
    CU_ASSERT_EQUAL(count_files(fx.dir, "spool."), 0);
    CU_ASSERT_TRUE(fx_intact(&fx));
    free(obj);
    fx_done(&fx);
}

/* No in-kernel copy (another file system, an old kernel): the spooled bytes
 * come in through a buffer; a read error there is -EIO. */
static void test_write_copy_fallback(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    size_t len = (3u << 20) + 12345;
    unsigned char *obj = make_data(len, 777);
    fault_arm(F_COPY, EXDEV, "", 0);
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, len, UINT64_MAX, true, err), 0);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_TRUE(reads_back(fx.s, obj, len));

    unsigned char *obj2 = make_data(len, 778);
    fault_arm(F_COPY, EXDEV, "", 0);
    fault_arm(F_PREAD, EIO, "(deleted)", 0); /* the spool */
    CU_ASSERT_EQUAL(put_obj(fx.s, obj2, len, UINT64_MAX, true, err), -EIO);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_TRUE(absent(fx.s, obj2, len));
    CU_ASSERT_TRUE(fx_intact(&fx));
    CU_ASSERT_TRUE(fx_restart(&fx));
    CU_ASSERT_TRUE(reads_back(fx.s, obj, len));
    free(obj);
    free(obj2);
    fx_done(&fx);
}

/* A repeated write answers "already stored" only once the stored copy is
 * durable: when the fdatasync of a ?sync=0 copy fails, -EIO, read-only. */
static void test_repeat_write_sync_fails(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    unsigned char *obj = make_data(9000, 901);
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, 9000, 9000, false, err), 0); /* ?sync=0 */
    fault_arm(F_FDATASYNC, EIO, "/data-", 0);
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, 9000, 9000, true, err), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "durable"));
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_TRUE(info_of(fx.s).faulted);
    CU_ASSERT_TRUE(fx_intact(&fx));
    free(obj);
    fx_done(&fx);
}

/* A size no store can hold is refused before anything is reserved. */
static void test_write_too_large(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    struct store_put *p = NULL;
    char err[ERRLEN];
    CU_ASSERT_EQUAL(fx.s->ops->put_begin(fx.s, NULL, UINT64_C(1) << 60, &p, err, sizeof(err)),
                    -EFBIG);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "larger than a store can hold"));
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

/*
 * A declared size that does not fit in the file system's free space, less
 * what writes in flight have reserved and not yet written, is refused at
 * put_begin with "disk full" (-ENOSPC), nothing reserved: a client that
 * declares terabytes and stalls can neither grow a data file past what the
 * file system holds nor fault the store. Found by an attacking session: 50
 * stalled uploads declaring 17 TiB each pushed every data file past ext4's
 * largest file and the next client's write turned the store read-only.
 */
static void test_write_over_free_space(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    struct statvfs vfs;
    CU_ASSERT_FATAL(statvfs(fx.dir, &vfs) == 0);
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t before = data_bytes(fx.dir);
    struct store_put *p = NULL, *q = NULL;
    /* More than the disk has: refused, nothing reserved. */
    CU_ASSERT_EQUAL(fx.s->ops->put_begin(fx.s, NULL, avail + (1u << 20), &p, err, sizeof(err)),
                    -ENOSPC);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "disk full"));
    /* Two writes of 60% each: the second does not fit beside the first. */
    uint64_t part = avail / 10 * 6;
    CU_ASSERT_EQUAL_FATAL(fx.s->ops->put_begin(fx.s, NULL, part, &p, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(fx.s->ops->put_begin(fx.s, NULL, part, &q, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_PTR_NULL(q);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "reserved by writes in flight"));
    /* A small write still fits, and is stored. */
    unsigned char *obj = make_data(4096, 41);
    CU_ASSERT_EQUAL(put_obj(fx.s, obj, 4096, 4096, true, err), 0);
    CU_ASSERT_TRUE(reads_back(fx.s, obj, 4096));
    /* The first one abandoned: its reservation is given back. */
    fx.s->ops->put_abort(p);
    CU_ASSERT_EQUAL(fx.s->ops->put_begin(fx.s, NULL, part, &q, err, sizeof(err)), 0);
    fx.s->ops->put_abort(q);
    CU_ASSERT_FALSE(info_of(fx.s).read_only);
    CU_ASSERT_TRUE(data_bytes(fx.dir) <= before + (16u << 10)); /* the small frame only */
    free(obj);
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

/* ---- compaction --------------------------------------------------------- */

static void compact(struct store *s)
{
    char err[ERRLEN];
    CU_ASSERT_EQUAL(s->ops->compact_start(s, err, sizeof(err)), 0);
    s->ops->compact_wait(s);
}

/* A compaction that cannot create, fill, sync or commit the new generation
 * of a data file leaves that file as it was: every byte where it was, no
 * new generation left, the store writable (a full disk is no I/O fault),
 * and a later compaction does the work. */
static void test_compact_fails(void)
{
    struct {
        enum fault_call call;
        int err;
        const char *match;
    } cases[] = {
        {F_OPENAT, ENOSPC, "^data-"},  /* cannot create data-NN.gG+1 */
        {F_COPY, ENOSPC, ".g1"},       /* the copy runs out of space */
        {F_FDATASYNC, EIO, ".g1"},     /* the copy is not durable */
        {F_FSYNC, EIO, ""},            /* nor is its directory entry */
        {F_PWRITE, ENOSPC, "/index$"}, /* the index takes no moves */
        {F_COPY, EXDEV, ""},           /* no in-kernel copy: through a buffer */
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        struct fixture fx;
        CU_ASSERT_FATAL(fx_setup(&fx, true));
        uint64_t before = data_bytes(fx.dir), done = info_of(fx.s).compactions;
        fault_arm(cases[t].call, cases[t].err, cases[t].match, 0);
        compact(fx.s);
        CU_ASSERT_TRUE(fault_clear() > 0);
        struct store_info i = info_of(fx.s);
        CU_ASSERT_EQUAL(i.compactions, done + 1);
        CU_ASSERT_FALSE(i.compacting);
        CU_ASSERT_FALSE(i.read_only);
        if (cases[t].err == EXDEV) { /* not a failure: the space came back */
            CU_ASSERT_TRUE(data_bytes(fx.dir) < before);
        } else {
            CU_ASSERT_EQUAL(data_bytes(fx.dir), before);
            CU_ASSERT_TRUE(i.unreclaimed > 0);
        }
        CU_ASSERT_EQUAL(count_files(fx.dir, "data-"), FMT_NFILES);
        CU_ASSERT_TRUE(fx_intact(&fx));
        compact(fx.s);
        CU_ASSERT_TRUE(data_bytes(fx.dir) < before);
        CU_ASSERT_EQUAL(info_of(fx.s).unreclaimed, 0);
        CU_ASSERT_TRUE(fx_intact(&fx));
        CU_ASSERT_TRUE(fx_restart(&fx));
        fx_done(&fx);
    }
}

/* The index refusing a compaction's moves with an I/O error turns the
 * store read-only; the data file stays at its generation and the objects
 * where they were, now and after a restart. */
static void test_compact_index_io_error(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, true));
    uint64_t before = data_bytes(fx.dir);
    fault_arm(F_PWRITE, EIO, "/index$", 0);
    compact(fx.s);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_TRUE(info_of(fx.s).faulted);
    CU_ASSERT_EQUAL(data_bytes(fx.dir), before);
    CU_ASSERT_EQUAL(count_files(fx.dir, "data-"), FMT_NFILES);
    CU_ASSERT_TRUE(fx_intact(&fx));
    char err[ERRLEN];
    CU_ASSERT_EQUAL(fx.s->ops->compact_start(fx.s, err, sizeof(err)), -EROFS);
    CU_ASSERT_TRUE(fx_restart(&fx));
    fx_done(&fx);
}

/* A second compaction while one runs is refused (-EBUSY); one started after
 * another ended on its own (nobody waited for it) is fine. */
static void test_compact_busy(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, true));
    char err[ERRLEN];
    __atomic_store_n(&hold_copy, 1, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(fx.s->ops->compact_start(fx.s, err, sizeof(err)), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    CU_ASSERT_EQUAL_FATAL(sem_timedwait(&copy_entered, &until), 0); /* held in its first copy */
    CU_ASSERT_TRUE(info_of(fx.s).compacting);
    CU_ASSERT_EQUAL(fx.s->ops->compact_start(fx.s, err, sizeof(err)), -EBUSY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "already running"));
    sem_post(&copy_release);
    /* Let it end by itself, then start another over it (it joins the first). */
    for (int i = 0; i < 6000 && info_of(fx.s).compacting; i++)
        usleep(10000);
    CU_ASSERT_FALSE(info_of(fx.s).compacting);
    compact(fx.s);
    CU_ASSERT_EQUAL(info_of(fx.s).compactions, 2);
    CU_ASSERT_EQUAL(info_of(fx.s).unreclaimed, 0);
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

/* ---- the index snapshot ------------------------------------------------- */

/* A snapshot that cannot create, write, sync or rename index.new leaves the
 * index as it was and no index.new; the store goes on. When only the
 * directory fsync after the rename fails, the new index is in place (both
 * files were complete) but the store turns read-only. */
static void test_snapshot_fails(void)
{
    struct {
        enum fault_call call;
        int err;
        const char *match;
    } cases[] = {
        {F_OPENAT, ENOSPC, "^index.new$"},
        {F_PWRITE, ENOSPC, "/index.new$"},
        {F_FDATASYNC, EIO, "/index.new$"},
        {F_RENAMEAT, EIO, "^index.new$"},
        {F_FSYNC, EIO, ""},
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        struct fixture fx;
        CU_ASSERT_FATAL(fx_setup(&fx, true));
        struct disk_store *d = disk_of(fx.s);
        uint64_t index = file_size(fx.dir, "index");
        fault_arm(cases[t].call, cases[t].err, cases[t].match, 0);
        int rc = disk_maybe_snapshot(d, true);
        int failed = fault_clear();
        CU_ASSERT_TRUE(rc < 0);
        CU_ASSERT_TRUE(failed > 0);
        CU_ASSERT_EQUAL(file_size(fx.dir, "index.new"), UINT64_MAX);
        if (cases[t].call == F_FSYNC) {
            CU_ASSERT_TRUE(info_of(fx.s).faulted);
            CU_ASSERT_TRUE(file_size(fx.dir, "index") < index); /* replaced */
        } else {
            CU_ASSERT_FALSE(info_of(fx.s).read_only);
            CU_ASSERT_EQUAL(file_size(fx.dir, "index"), index);
        }
        CU_ASSERT_TRUE(fx_intact(&fx));
        CU_ASSERT_TRUE(fx_restart(&fx));
        fx_done(&fx);
    }
}

/* ---- GC ------------------------------------------------------------------- */

/* The index refusing a GC record (full disk) leaves the cycle where it was:
 * a begin that fails starts none, a use or a mark that fails unmarks
 * nothing (the objects stay marked in the table as in the index, and no
 * use answered success for them), an end that fails removes nothing and
 * the cycle goes on. Then a mark and an end keep exactly what was marked. */
static void test_gc_index_full(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    struct store *s = fx.s;
    char err[ERRLEN];
    uint64_t id, objects, bytes, n, removed;
    fault_arm(F_PWRITE, ENOSPC, "/index$", 0);
    CU_ASSERT_EQUAL(s->ops->gc_begin(s, 0, &id, &objects, &bytes, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_FALSE(s->ops->gc_active(s, &id));
    CU_ASSERT_EQUAL(info_of(s).garbage, 0);
    CU_ASSERT_TRUE(consistent(s));

    CU_ASSERT_EQUAL_FATAL(s->ops->gc_begin(s, 0, &id, &objects, &bytes, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(objects, NOBJ);
    struct cas_key keys[2] = {key_of(s, fx.data[1], fx.len[1]), key_of(s, fx.data[2], fx.len[2])};
    struct store_obj *o = NULL;
    uint64_t size;
    bool present[2];
    fault_arm(F_PWRITE, ENOSPC, "/index$", 0);
    CU_ASSERT_EQUAL(s->ops->open(s, &keys[0], true, &o, &size, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_EQUAL(s->ops->gc_mark(s, keys, 2, &n, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_EQUAL(s->ops->use_keys(s, keys, 2, present, err, sizeof(err)), -ENOSPC);
    uint64_t id2;
    CU_ASSERT_EQUAL(s->ops->gc_end(s, id, &removed, &bytes, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_TRUE(fault_clear() >= 4);
    CU_ASSERT_TRUE(s->ops->gc_active(s, &id2) && id2 == id);
    struct store_info i = info_of(s);
    CU_ASSERT_EQUAL(i.garbage_objects, NOBJ); /* nothing unmarked, nothing removed */
    CU_ASSERT_FALSE(i.read_only);
    CU_ASSERT_TRUE(fx_intact(&fx));

    /* The same cycle goes on: object 1 is used, the rest goes at the end. */
    CU_ASSERT_EQUAL(s->ops->gc_mark(s, keys, 1, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(s->ops->gc_end(s, id, &removed, &bytes, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(removed, NOBJ - 1);
    for (int k = 0; k < NOBJ; k++)
        fx.kept[k] = k == 1;
    CU_ASSERT_TRUE(fx_intact(&fx));
    CU_ASSERT_TRUE(fx_restart(&fx));
    fx_done(&fx);
}

/* The same with an I/O error: the store turns read-only, and the cycle and
 * its marks are what the index says, after a restart too. */
static void test_gc_index_io_error(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    struct store *s = fx.s;
    char err[ERRLEN];
    uint64_t id, objects, bytes, n, removed;
    CU_ASSERT_EQUAL_FATAL(s->ops->gc_begin(s, 0, &id, &objects, &bytes, err, sizeof(err)), 0);
    struct cas_key key = key_of(s, fx.data[3], fx.len[3]);
    fault_arm(F_PWRITE, EIO, "/index$", 0);
    CU_ASSERT_EQUAL(s->ops->gc_mark(s, &key, 1, &n, err, sizeof(err)), -EIO);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_TRUE(info_of(s).faulted);
    CU_ASSERT_EQUAL(s->ops->gc_end(s, id, &removed, &bytes, err, sizeof(err)), -EROFS);
    CU_ASSERT_TRUE(fx_intact(&fx));
    CU_ASSERT_TRUE(fx_restart(&fx));
    uint64_t id2;
    CU_ASSERT_TRUE(fx.s->ops->gc_active(fx.s, &id2) && id2 == id);
    CU_ASSERT_EQUAL(info_of(fx.s).garbage_objects, NOBJ);
    fx_done(&fx);
}

/* ---- reads and replay ----------------------------------------------------- */

/* An object of the fixture that is stored, of more than one block and
 * larger than a read's prefetch. */
static int big_kept(const struct fixture *fx)
{
    for (int i = NOBJ - 1; i >= 0; i--)
        if (fx->kept[i] && fx->len[i] > 100000)
            return i;
    return -1;
}

/* A read error: while opening an object the copy cannot be trusted and is
 * taken out of service (the balancers copy a good one back); reading on or
 * reading the block table of an open one, -EIO and nothing else changes. */
static void test_read_io_error(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    struct store *s = fx.s;
    char err[ERRLEN];
    int b = big_kept(&fx);
    CU_ASSERT_FATAL(b >= 0);
    struct cas_key k = key_of(s, fx.data[b], fx.len[b]);
    struct store_obj *o = NULL;
    uint64_t size;
    CU_ASSERT_EQUAL_FATAL(s->ops->open(s, &k, false, &o, &size, err, sizeof(err)), 0);
    unsigned char buf[4096];
    fault_arm(F_PREAD, EIO, "/data-", 0);
    CU_ASSERT_EQUAL(s->ops->pread(o, buf, sizeof(buf), 0), -EIO);
    uint32_t *sums = NULL;
    size_t n;
    uint64_t block;
    CU_ASSERT_EQUAL(s->ops->block_sums(o, &sums, &n, &block), -EIO);
    CU_ASSERT_EQUAL(s->ops->confirm(o, true, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read the copy here"));
    CU_ASSERT_TRUE(fault_clear() >= 3);
    s->ops->close(o);
    CU_ASSERT_EQUAL(info_of(s).corrupt_found, 0);
    CU_ASSERT_TRUE(fx_intact(&fx));

    /* Opening: the frame cannot be read, the copy goes out of service. */
    fault_arm(F_PREAD, EIO, "/data-", 0);
    CU_ASSERT_EQUAL(s->ops->open(s, &k, false, &o, &size, err, sizeof(err)), -ENOENT);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "corrupt"));
    struct store_info i = info_of(s);
    CU_ASSERT_EQUAL(i.corrupt_found, 1);
    CU_ASSERT_EQUAL(i.quarantined, 1);
    CU_ASSERT_FALSE(i.read_only);
    fx.kept[b] = false;
    CU_ASSERT_TRUE(fx_intact(&fx));
    /* A write of the right bytes puts it back. */
    CU_ASSERT_EQUAL(put_obj(s, fx.data[b], fx.len[b], fx.len[b], true, err), 0);
    fx.kept[b] = true;
    CU_ASSERT_EQUAL(info_of(s).quarantined, 0);
    CU_ASSERT_TRUE(fx_restart(&fx));
    fx_done(&fx);
}

/* A repeated write checks the stored copy first; when reading it fails
 * after its frame header was read, -EIO: nothing is stored twice, nothing
 * taken out, the store stays writable. */
static void test_repeat_write_read_error(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    char err[ERRLEN];
    int b = big_kept(&fx);
    CU_ASSERT_FATAL(b >= 0);
    uint64_t before = data_bytes(fx.dir);
    fault_arm(F_PREAD, EIO, "/data-", 1); /* the header read goes through */
    CU_ASSERT_EQUAL(put_obj(fx.s, fx.data[b], fx.len[b], fx.len[b], true, err), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read the stored copy"));
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_EQUAL(data_bytes(fx.dir), before);
    CU_ASSERT_EQUAL(info_of(fx.s).corrupt_found, 0);
    CU_ASSERT_FALSE(info_of(fx.s).read_only);
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

/* Start-up that cannot read the index refuses, changing nothing; the next
 * start-up finds everything. */
static void test_replay_read_error(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, true));
    fx.s->ops->destroy(fx.s);
    fx.s = NULL;
    uint64_t index = file_size(fx.dir, "index"), data = data_bytes(fx.dir);
    struct disk_options o = {.dir = fx.dir, .algo = cas_hash_by_name("sha1")};
    char err[ERRLEN] = "";
    struct store *s = NULL;
    fault_arm(F_PREAD, EIO, "/index$", 1); /* the header record reads */
    CU_ASSERT_EQUAL(disk_open(&o, &s, err, sizeof(err)), -EIO);
    CU_ASSERT_TRUE(fault_clear() > 0);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read"));
    CU_ASSERT_EQUAL(file_size(fx.dir, "index"), index);
    CU_ASSERT_EQUAL(data_bytes(fx.dir), data);
    fx.s = open_store(fx.dir);
    CU_ASSERT_FATAL(fx.s != NULL);
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

/* ---- the scrubber ----------------------------------------------------------- */

/* Flips one payload byte of object i where the data file holds it. */
static void rot(struct fixture *fx, int i)
{
    struct disk_store *d = disk_of(fx->s);
    struct cas_key k = key_of(fx->s, fx->data[i], fx->len[i]);
    struct objtab_entry en;
    char name[32], path[600];
    pthread_rwlock_rdlock(&d->lock);
    uint32_t e = objtab_find(&d->tab, k.digest);
    CU_ASSERT_FATAL(e != OBJTAB_NONE && objtab_get(&d->tab, e, &en));
    fmt_datafile_name(en.file, d->files[en.file].gen, name, sizeof(name));
    pthread_rwlock_unlock(&d->lock);
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    int fd = open(path, O_RDWR);
    unsigned char c;
    off_t at = (off_t)(en.offset + FMT_FRAME_HEADER + fx->len[i] / 2);
    CU_ASSERT_EQUAL(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    CU_ASSERT_EQUAL(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* A scrub pass reads every object and takes the one whose bytes rotted
 * out of service (quarantined, counted), touching nothing else; its
 * position is saved for the next start. */
static void test_scrub_pass(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    int b = big_kept(&fx);
    CU_ASSERT_FATAL(b >= 0);
    rot(&fx, b);
    CU_ASSERT_EQUAL(fx.s->ops->scrub_start(fx.s, UINT64_C(1) << 32), 0);
    /* The first pass starts at once; the next waits a minute, so the
     * counters stay put once a pass is done. Bounded: 60 s. */
    for (int i = 0; i < 6000 && info_of(fx.s).scrub_passes == 0; i++)
        usleep(10000);
    struct store_info i = info_of(fx.s);
    CU_ASSERT_EQUAL(i.scrub_passes, 1);
    CU_ASSERT_TRUE(i.scrubbing);
    CU_ASSERT_EQUAL(i.scrub_objects, NOBJ); /* the rotten one too */
    CU_ASSERT_EQUAL(i.scrub_corrupt, 1);
    CU_ASSERT_EQUAL(i.corrupt_found, 1);
    CU_ASSERT_EQUAL(i.quarantined, 1);
    fx.kept[b] = false;
    CU_ASSERT_TRUE(fx_intact(&fx));
    CU_ASSERT_TRUE(fx_restart(&fx)); /* stops the scrubber, which saves its place */
    CU_ASSERT_NOT_EQUAL(file_size(fx.dir, "scrub"), UINT64_MAX);
    fx_done(&fx);
}

/* ---- the invariants themselves ------------------------------------------ */

/* disk_table_consistent finds a counter out of step with the table, a mark
 * outside a GC cycle, and an entry past the end of its data file. */
static void test_table_check_finds_drift(void)
{
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, true));
    struct disk_store *d = disk_of(fx.s);
    char why[256];
    pthread_rwlock_wrlock(&d->lock);
    CU_ASSERT_TRUE(disk_table_consistent(d, why, sizeof(why)));
    d->objects++;
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "counters"));
    d->objects--;
    d->files[1].live += 1;
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "data file 1"));
    d->files[1].live -= 1;
    d->garbage_bytes = 1;
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    d->garbage_bytes = 0;
    struct objtab_entry en;
    uint32_t e = 0;
    while (!objtab_get(&d->tab, e, &en))
        e++;
    objtab_set_flags(&d->tab, e, OBJTAB_MARKED);
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "no GC cycle"));
    objtab_set_flags(&d->tab, e, en.flags);
    d->tomb_quarantined++;
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    d->tomb_quarantined--;
    pthread_mutex_lock(&d->files_lock);
    uint64_t len = d->files[en.file].length;
    d->files[en.file].length = en.offset;
    pthread_mutex_unlock(&d->files_lock);
    CU_ASSERT_FALSE(disk_table_consistent(d, why, sizeof(why)));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "past data file"));
    pthread_mutex_lock(&d->files_lock);
    d->files[en.file].length = len;
    pthread_mutex_unlock(&d->files_lock);
    CU_ASSERT_TRUE(disk_table_consistent(d, why, sizeof(why)));
    pthread_rwlock_unlock(&d->lock);
    CU_ASSERT_TRUE(fx_intact(&fx));
    fx_done(&fx);
}

#ifndef NDEBUG
/* Runs fn(cls) in a child process; true when the child died of SIGABRT (a
 * failed assert). */
static bool aborts(void (*fn)(void *), void *cls)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2); /* the assert's message is expected */
        fn(cls);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void take_dead_ref(void *cls)
{
    struct dfile_ref r = {.fd = -1, .refs = 0}; /* given back already */
    dfile_ref_get(&r);
}

static void forget_unlocked(void *cls)
{
    struct store *s = cls;
    disk_forget(disk_of(s), 0); /* without the table lock */
}

static void append_unlocked(void *cls)
{
    struct store *s = cls;
    struct fmt_record r;
    struct journal_pos pos;
    char err[ERRLEN];
    disk_record(disk_of(s), &r, REC_UNMARK, NULL);
    disk_append(disk_of(s), &r, 1, &pos, err, sizeof(err));
}
#endif

/* The engine's asserts run in this build (test builds keep them on, see
 * CMakeLists.txt): a reference to a closed data file, or a table change
 * without the table's write lock, stops the process. */
static void test_asserts_run(void)
{
#ifdef NDEBUG
    printf("\n  built with -DNDEBUG (CAS_ASSERTS off): the engine's asserts are not checked\n");
#else
    struct fixture fx;
    CU_ASSERT_FATAL(fx_setup(&fx, false));
    CU_ASSERT_TRUE(aborts(take_dead_ref, NULL));
    CU_ASSERT_TRUE(aborts(forget_unlocked, fx.s));
    CU_ASSERT_TRUE(aborts(append_unlocked, fx.s));
    CU_ASSERT_TRUE(fx_intact(&fx)); /* the children changed nothing here */
    fx_done(&fx);
#endif
}

int main(void)
{
    cas_log_set_level("error"); /* the faults' own errors still show: they are meant */
    if (!mkdtemp(tmpdir))
        return 1;
    have_tmpdir = 1;
    sem_init(&copy_entered, 0, 0);
    sem_init(&copy_release, 0, 0);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("disk faults", NULL, NULL);
    CU_add_test(s, "write: disk full refused, still writable", test_write_disk_full);
    CU_add_test(s, "write: I/O error turns read-only, loses nothing", test_write_io_error);
    CU_add_test(s, "write: the index refuses the record", test_write_index_fails);
    CU_add_test(s, "write: spool cannot be created, or by name", test_write_spool);
    CU_add_test(s, "write: no in-kernel copy", test_write_copy_fallback);
    CU_add_test(s, "repeated write: the stored copy's sync fails", test_repeat_write_sync_fails);
    CU_add_test(s, "write: a size no store can hold", test_write_too_large);
    CU_add_test(s, "write: a size over the free space", test_write_over_free_space);
    CU_add_test(s, "compaction: each step failing leaves the file", test_compact_fails);
    CU_add_test(s, "compaction: index I/O error", test_compact_index_io_error);
    CU_add_test(s, "compaction: one at a time", test_compact_busy);
    CU_add_test(s, "index snapshot: each step failing", test_snapshot_fails);
    CU_add_test(s, "gc: the index full under each step", test_gc_index_full);
    CU_add_test(s, "gc: an index I/O error", test_gc_index_io_error);
    CU_add_test(s, "read: I/O errors", test_read_io_error);
    CU_add_test(s, "repeated write: reading the stored copy fails", test_repeat_write_read_error);
    CU_add_test(s, "replay: the index cannot be read", test_replay_read_error);
    CU_add_test(s, "scrub: a pass takes a rotten copy out", test_scrub_pass);
    CU_add_test(s, "invariants: the table check finds drift", test_table_check_finds_drift);
    CU_add_test(s, "invariants: the asserts run", test_asserts_run);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    if (have_tmpdir)
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? 1 : 0;
}
