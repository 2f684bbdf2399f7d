/*
 * recorder.c - an LD_PRELOAD library for the power-loss explorer
 * (tests/crash/explore.py): logs, in order, every call of the preloaded
 * process that changes the state of files under $CRASH_DIR, so that the
 * explorer can rebuild any directory a power cut could have left.
 *
 * Environment:
 *   CRASH_DIR  the directory to watch (absolute, no trailing slash);
 *              calls on other paths are not logged.
 *   CRASH_LOG  the log file; opened O_APPEND, so a workload driver can
 *              append its own MARK records (acknowledgements) between ours.
 *
 * Log record (all integers little-endian), written with one write(2) so
 * records of the two processes never interleave:
 *   u32 magic 0x314C5243 ("CRL1"), u32 total length, u8 op, u8 isdir,
 *   u16 zero, u32 zero, u64 ino, u64 a, u64 b, u64 c,
 *   u32 len(path1), u32 len(path2), u32 len(data), path1, path2, data.
 * Paths are relative to CRASH_DIR ("" is CRASH_DIR itself). For calls on an
 * fd, ino is the file's inode number and path1 its name when opened.
 *
 * Ops (a, b, c as used):
 *   OPEN    1  a = flags, b = 1 if the file existed before   (O_CREAT or O_TRUNC only)
 *   WRITE   2  a = offset, data = the bytes that reached the file
 *   TRUNC   3  a = new size
 *   FALLOC  4  a = mode, b = offset, c = length
 *   RENAME  5  path1 -> path2
 *   UNLINK  6  path1
 *   LINK    7  path1 -> path2 (new name)
 *   MKDIR   8  path1
 *   FSYNC   9  b = log size when the call began: the writes logged before
 *              that offset are what it made durable
 *   FDATASYNC 10  as FSYNC
 *   SYNCFS  11  b as FSYNC (the whole file system)
 *   SFR     12  sync_file_range: a = offset, b = length, c = flags (not a
 *              durability guarantee; logged for completeness)
 *   MARK    13  path1 = text written by the workload driver
 *   RMDIR   14  path1
 *
 * Descriptors made by dup/dup2/dup3 of a watched file are watched too
 * (fcntl(F_DUPFD) is not followed).
 *
 * Built without sanitizers so it can be preloaded into any build. Only
 * successful calls are logged. Every logged call runs under one mutex, so
 * the log order is the order the calls took effect in; fsync and friends do
 * not hold it while they wait for the disk.
 */
#undef _FILE_OFFSET_BITS /* define both the plain and the 64 names */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
    OP_OPEN = 1,
    OP_WRITE,
    OP_TRUNC,
    OP_FALLOC,
    OP_RENAME,
    OP_UNLINK,
    OP_LINK,
    OP_MKDIR,
    OP_FSYNC,
    OP_FDATASYNC,
    OP_SYNCFS,
    OP_SFR,
    OP_MARK,
    OP_RMDIR
};

#define MAXFD 65536

struct fdent {
    int used;
    int isdir;
    int stdio; /* written through a FILE: contents logged whole at fsync */
    uint64_t ino;
    char *path; /* relative to CRASH_DIR */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fdent fds[MAXFD];
static char root[4096];
static size_t rootlen;
static int logfd = -1;
static int ready;

#define REAL(name, ret, ...)                                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                                        \
    static void load_##name(void)                                                                  \
    {                                                                                              \
        if (!real_##name)                                                                          \
            real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);                            \
    }

REAL(openat, int, int, const char *, int, ...)
REAL(close, int, int)
REAL(write, ssize_t, int, const void *, size_t)
REAL(pwrite, ssize_t, int, const void *, size_t, off_t)
REAL(writev, ssize_t, int, const struct iovec *, int)
REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t)
REAL(ftruncate, int, int, off_t)
REAL(fallocate, int, int, int, off_t, off_t)
REAL(renameat, int, int, const char *, int, const char *)
REAL(renameat2, int, int, const char *, int, const char *, unsigned)
REAL(unlinkat, int, int, const char *, int)
REAL(linkat, int, int, const char *, int, const char *, int)
REAL(mkdirat, int, int, const char *, mode_t)
REAL(fsync, int, int)
REAL(fdatasync, int, int)
REAL(syncfs, int, int)
REAL(sync_file_range, int, int, off_t, off_t, unsigned)
REAL(copy_file_range, ssize_t, int, loff_t *, int, loff_t *, size_t, unsigned)
REAL(fdopen, FILE *, int, const char *)
REAL(dup, int, int)
REAL(dup2, int, int, int)
REAL(dup3, int, int, int, int)
REAL(fclose, int, FILE *)

__attribute__((constructor)) static void rec_init(void)
{
    const char *d = getenv("CRASH_DIR"), *l = getenv("CRASH_LOG");
    load_openat();
    if (!d || !l || strlen(d) >= sizeof(root))
        return;
    snprintf(root, sizeof(root), "%s", d);
    rootlen = strlen(root);
    while (rootlen > 1 && root[rootlen - 1] == '/')
        root[--rootlen] = '\0';
    logfd = real_openat(AT_FDCWD, l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fprintf(stderr, "recorder: cannot open %s: %s\n", l, strerror(errno));
        abort();
    }
    if (logfd < MAXFD)
        fds[logfd].used = 0;
    ready = 1;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

#define HDR 64

/* Appends one record. Caller holds mu. Gives up loudly: a log with a hole
 * would make the explorer build states that never existed. */
static void emit(int op, int isdir, uint64_t ino, uint64_t a, uint64_t b, uint64_t c,
                 const char *p1, const char *p2, const struct iovec *iov, int iovcnt, size_t dlen)
{
    size_t l1 = p1 ? strlen(p1) : 0, l2 = p2 ? strlen(p2) : 0;
    size_t total = HDR + l1 + l2 + dlen;
    unsigned char *buf = malloc(total);
    if (!buf)
        abort();
    memset(buf, 0, HDR);
    put_u32(buf, 0x314C5243u);
    put_u32(buf + 4, (uint32_t)total);
    buf[8] = (unsigned char)op;
    buf[9] = (unsigned char)isdir;
    put_u64(buf + 16, ino);
    put_u64(buf + 24, a);
    put_u64(buf + 32, b);
    put_u64(buf + 40, c);
    put_u32(buf + 48, (uint32_t)l1);
    put_u32(buf + 52, (uint32_t)l2);
    put_u32(buf + 56, (uint32_t)dlen);
    size_t at = HDR;
    memcpy(buf + at, p1 ? p1 : "", l1);
    at += l1;
    memcpy(buf + at, p2 ? p2 : "", l2);
    at += l2;
    size_t left = dlen;
    for (int i = 0; i < iovcnt && left; i++) {
        size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
        memcpy(buf + at, iov[i].iov_base, n);
        at += n;
        left -= n;
    }
    load_write();
    if (real_write(logfd, buf, total) != (ssize_t)total) {
        fprintf(stderr, "recorder: log write failed: %s\n", strerror(errno));
        abort();
    }
    free(buf);
}

static uint64_t log_size(void)
{
    struct stat st;
    return fstat(logfd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The path relative to root of name (resolved against dirfd), or NULL if
 * outside root. Returns a static buffer; caller holds mu. */
static const char *relpath(int dirfd, const char *name, char *out, size_t outlen)
{
    char full[8192];
    if (!name)
        return NULL;
    if (name[0] == '/') {
        snprintf(full, sizeof(full), "%s", name);
    } else if (dirfd == AT_FDCWD) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof(cwd)))
            return NULL;
        snprintf(full, sizeof(full), "%s/%s", cwd, name);
    } else if (dirfd >= 0 && dirfd < MAXFD && fds[dirfd].used && fds[dirfd].isdir) {
        if (fds[dirfd].path[0])
            snprintf(full, sizeof(full), "%s/%s/%s", root, fds[dirfd].path, name);
        else
            snprintf(full, sizeof(full), "%s/%s", root, name);
    } else {
        return NULL;
    }
    /* Normalise "//" and a trailing "/" or "/.". */
    size_t n = strlen(full);
    while (n > 1 && full[n - 1] == '/')
        full[--n] = '\0';
    if (n >= 2 && strcmp(full + n - 2, "/.") == 0)
        full[n -= 2] = '\0';
    if (strncmp(full, root, rootlen) != 0)
        return NULL;
    const char *rest = full + rootlen;
    if (*rest && *rest != '/')
        return NULL;
    while (*rest == '/')
        rest++;
    snprintf(out, outlen, "%s", rest);
    return out;
}

/* The fd's entry if it is a tracked file still open on the same inode. */
static struct fdent *tracked(int fd)
{
    if (!ready || fd < 0 || fd >= MAXFD || !fds[fd].used)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != fds[fd].ino) {
        free(fds[fd].path);
        memset(&fds[fd], 0, sizeof(fds[fd]));
        return NULL;
    }
    return &fds[fd];
}

static void track(int fd, const char *rel)
{
    struct stat st;
    if (fd < 0 || fd >= MAXFD || fstat(fd, &st) < 0)
        return;
    free(fds[fd].path);
    fds[fd].used = 1;
    fds[fd].isdir = S_ISDIR(st.st_mode);
    fds[fd].stdio = 0;
    fds[fd].ino = (uint64_t)st.st_ino;
    fds[fd].path = strdup(rel);
}

static int do_openat(int dirfd, const char *name, int flags, mode_t mode)
{
    load_openat();
    if (!ready)
        return real_openat(dirfd, name, flags, mode);
    pthread_mutex_lock(&mu);
    char rel[4096];
    const char *r = relpath(dirfd, name, rel, sizeof(rel));
    int existed = 0;
    if (r && (flags & (O_CREAT | O_TRUNC))) {
        struct stat st;
        existed = fstatat(dirfd, name, &st, 0) == 0;
    }
    int fd = real_openat(dirfd, name, flags, mode);
    int e = errno;
    if (fd >= 0 && r) {
        track(fd, r);
        if ((flags & (O_CREAT | O_TRUNC)) && fd < MAXFD && fds[fd].used &&
            (!existed || ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)))
            emit(OP_OPEN, 0, fds[fd].ino, (uint64_t)flags, (uint64_t)existed, 0, r, NULL, NULL, 0,
                 0);
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, m);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, m);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, m);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, m);
}

int __open_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

int creat(const char *path, mode_t mode)
{
    return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode)
{
    return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd)
{
    load_close();
    if (ready && fd >= 0 && fd < MAXFD) {
        if (fd == logfd) { /* not theirs to close */
            errno = EBADF;
            return -1;
        }
        pthread_mutex_lock(&mu);
        if (fds[fd].used) {
            free(fds[fd].path);
            memset(&fds[fd], 0, sizeof(fds[fd]));
        }
        int rc = real_close(fd);
        int e = errno;
        pthread_mutex_unlock(&mu);
        errno = e;
        return rc;
    }
    return real_close(fd);
}

/* A duplicate of a tracked fd is tracked as the same file. */
static int dup_track(int from, int to)
{
    if (ready && to >= 0 && to < MAXFD && from >= 0 && from < MAXFD) {
        if (fds[to].used) {
            free(fds[to].path);
            memset(&fds[to], 0, sizeof(fds[to]));
        }
        if (fds[from].used) {
            fds[to] = fds[from];
            fds[to].path = strdup(fds[from].path);
        }
    }
    return to;
}

int dup(int fd)
{
    load_dup();
    pthread_mutex_lock(&mu);
    int r = real_dup(fd);
    int e = errno;
    if (r >= 0)
        dup_track(fd, r);
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

int dup2(int fd, int to)
{
    load_dup2();
    if (ready && to == logfd) {
        errno = EBADF;
        return -1;
    }
    pthread_mutex_lock(&mu);
    int r = real_dup2(fd, to);
    int e = errno;
    if (r >= 0 && r != fd)
        dup_track(fd, r);
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

int dup3(int fd, int to, int flags)
{
    load_dup3();
    if (ready && to == logfd) {
        errno = EBADF;
        return -1;
    }
    pthread_mutex_lock(&mu);
    int r = real_dup3(fd, to, flags);
    int e = errno;
    if (r >= 0)
        dup_track(fd, r);
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

FILE *fdopen(int fd, const char *mode)
{
    load_fdopen();
    FILE *f = real_fdopen(fd, mode);
    if (f && ready && fd >= 0 && fd < MAXFD) {
        pthread_mutex_lock(&mu);
        if (fds[fd].used)
            fds[fd].stdio = 1;
        pthread_mutex_unlock(&mu);
    }
    return f;
}

int fclose(FILE *f)
{
    load_fclose();
    int fd = f ? fileno(f) : -1;
    if (ready && fd >= 0 && fd < MAXFD) {
        pthread_mutex_lock(&mu);
        if (fds[fd].used) {
            free(fds[fd].path);
            memset(&fds[fd], 0, sizeof(fds[fd]));
        }
        int rc = real_fclose(f);
        int e = errno;
        pthread_mutex_unlock(&mu);
        errno = e;
        return rc;
    }
    return real_fclose(f);
}

/* Logs the bytes the file now holds at [off, off+len) as a WRITE. */
static void log_range(struct fdent *t, int fd, uint64_t off, size_t len)
{
    char *buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    /* The fd may be write-only: read through a descriptor of our own. */
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    load_openat();
    int rfd = real_openat(AT_FDCWD, self, O_RDONLY | O_CLOEXEC, 0);
    size_t done = 0;
    while (rfd >= 0 && done < len) {
        ssize_t n = pread(rfd, buf + done, len - done, (off_t)(off + done));
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (rfd >= 0) {
        load_close();
        real_close(rfd);
    }
    if (done != len) {
        fprintf(stderr, "recorder: cannot read back %zu bytes of %s\n", len, t->path);
        abort();
    }
    struct iovec v = {buf, done};
    emit(OP_WRITE, 0, t->ino, off, 0, 0, t->path, NULL, &v, 1, done);
    free(buf);
}

static ssize_t logged_write(int fd, const struct iovec *iov, int iovcnt, off_t off, int positioned,
                            ssize_t (*call)(int, const struct iovec *, int, off_t, int))
{
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(fd);
    uint64_t at = 0;
    if (t && !positioned) {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0)
            at = (uint64_t)st.st_size;
        else
            at = (uint64_t)lseek(fd, 0, SEEK_CUR);
    } else if (t) {
        at = (uint64_t)off;
    }
    ssize_t n = call(fd, iov, iovcnt, off, positioned);
    int e = errno;
    if (t && n > 0)
        emit(OP_WRITE, 0, t->ino, at, 0, 0, t->path, NULL, iov, iovcnt, (size_t)n);
    pthread_mutex_unlock(&mu);
    errno = e;
    return n;
}

static ssize_t call_write(int fd, const struct iovec *iov, int iovcnt, off_t off, int positioned)
{
    if (iovcnt == 1) {
        if (positioned) {
            load_pwrite();
            return real_pwrite(fd, iov[0].iov_base, iov[0].iov_len, off);
        }
        load_write();
        return real_write(fd, iov[0].iov_base, iov[0].iov_len);
    }
    if (positioned) {
        load_pwritev();
        return real_pwritev(fd, iov, iovcnt, off);
    }
    load_writev();
    return real_writev(fd, iov, iovcnt);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    struct iovec v = {(void *)buf, len};
    if (fd == logfd && ready) {
        load_write();
        return real_write(fd, buf, len);
    }
    return logged_write(fd, &v, 1, 0, 0, call_write);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    struct iovec v = {(void *)buf, len};
    return logged_write(fd, &v, 1, off, 1, call_write);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    return logged_write(fd, iov, iovcnt, 0, 0, call_write);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return logged_write(fd, iov, iovcnt, off, 1, call_write);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return pwritev(fd, iov, iovcnt, off);
}

int ftruncate(int fd, off_t len)
{
    load_ftruncate();
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(fd);
    int rc = real_ftruncate(fd, len);
    int e = errno;
    if (t && rc == 0)
        emit(OP_TRUNC, 0, t->ino, (uint64_t)len, 0, 0, t->path, NULL, NULL, 0, 0);
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

int ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    load_fallocate();
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(fd);
    int rc = real_fallocate(fd, mode, off, len);
    int e = errno;
    if (t && rc == 0)
        emit(OP_FALLOC, 0, t->ino, (uint64_t)mode, (uint64_t)off, (uint64_t)len, t->path, NULL,
             NULL, 0, 0);
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

ssize_t copy_file_range(int in, loff_t *inoff, int out, loff_t *outoff, size_t len, unsigned fl)
{
    load_copy_file_range();
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(out);
    uint64_t at = outoff ? (uint64_t)*outoff : (uint64_t)lseek(out, 0, SEEK_CUR);
    ssize_t n = real_copy_file_range(in, inoff, out, outoff, len, fl);
    int e = errno;
    if (t && n > 0)
        log_range(t, out, at, (size_t)n);
    pthread_mutex_unlock(&mu);
    errno = e;
    return n;
}

/* Name operations: the two paths, both inside root, or nothing logged. */
static int name_op(int op, int fd1, const char *p1, int fd2, const char *p2, int (*call)(void *),
                   void *arg)
{
    if (!ready)
        return call(arg);
    pthread_mutex_lock(&mu);
    char r1[4096], r2[4096];
    const char *a = relpath(fd1, p1, r1, sizeof(r1));
    const char *b = p2 ? relpath(fd2, p2, r2, sizeof(r2)) : NULL;
    uint64_t ino = 0;
    struct stat st;
    if (a && fstatat(fd1, p1, &st, AT_SYMLINK_NOFOLLOW) == 0)
        ino = (uint64_t)st.st_ino;
    int rc = call(arg);
    int e = errno;
    if (rc == 0 && a && (!p2 || b))
        emit(op, 0, ino, 0, 0, 0, a, b, NULL, 0, 0);
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

struct nargs {
    int fd1, fd2, flags;
    const char *p1, *p2;
    unsigned uflags;
    mode_t mode;
};

static int c_renameat2(void *x)
{
    struct nargs *n = x;
    if (n->uflags) {
        load_renameat2();
        return real_renameat2(n->fd1, n->p1, n->fd2, n->p2, n->uflags);
    }
    load_renameat();
    return real_renameat(n->fd1, n->p1, n->fd2, n->p2);
}

static int c_unlinkat(void *x)
{
    struct nargs *n = x;
    load_unlinkat();
    return real_unlinkat(n->fd1, n->p1, n->flags);
}

static int c_linkat(void *x)
{
    struct nargs *n = x;
    load_linkat();
    return real_linkat(n->fd1, n->p1, n->fd2, n->p2, n->flags);
}

static int c_mkdirat(void *x)
{
    struct nargs *n = x;
    load_mkdirat();
    return real_mkdirat(n->fd1, n->p1, n->mode);
}

int renameat2(int fd1, const char *p1, int fd2, const char *p2, unsigned flags)
{
    struct nargs n = {.fd1 = fd1, .p1 = p1, .fd2 = fd2, .p2 = p2, .uflags = flags};
    return name_op(OP_RENAME, fd1, p1, fd2, p2, c_renameat2, &n);
}

int renameat(int fd1, const char *p1, int fd2, const char *p2)
{
    return renameat2(fd1, p1, fd2, p2, 0);
}

int rename(const char *p1, const char *p2)
{
    return renameat2(AT_FDCWD, p1, AT_FDCWD, p2, 0);
}

int unlinkat(int fd, const char *p, int flags)
{
    struct nargs n = {.fd1 = fd, .p1 = p, .flags = flags};
    return name_op((flags & AT_REMOVEDIR) ? OP_RMDIR : OP_UNLINK, fd, p, 0, NULL, c_unlinkat, &n);
}

int unlink(const char *p)
{
    return unlinkat(AT_FDCWD, p, 0);
}

int rmdir(const char *p)
{
    return unlinkat(AT_FDCWD, p, AT_REMOVEDIR);
}

int linkat(int fd1, const char *p1, int fd2, const char *p2, int flags)
{
    struct nargs n = {.fd1 = fd1, .p1 = p1, .fd2 = fd2, .p2 = p2, .flags = flags};
    return name_op(OP_LINK, fd1, p1, fd2, p2, c_linkat, &n);
}

int link(const char *p1, const char *p2)
{
    return linkat(AT_FDCWD, p1, AT_FDCWD, p2, 0);
}

int mkdirat(int fd, const char *p, mode_t mode)
{
    struct nargs n = {.fd1 = fd, .p1 = p, .mode = mode};
    return name_op(OP_MKDIR, fd, p, 0, NULL, c_mkdirat, &n);
}

int mkdir(const char *p, mode_t mode)
{
    return mkdirat(AT_FDCWD, p, mode);
}

/* A sync: logged when it returns, with the log size from when it began. */
static int sync_op(int op, int fd, int (*call)(int))
{
    if (!ready)
        return call(fd);
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(fd);
    uint64_t began = log_size();
    if (t && t->stdio && !t->isdir) {
        /* Written through a FILE we cannot see: log what it holds now. */
        struct stat st;
        if (fstat(fd, &st) == 0) {
            emit(OP_TRUNC, 0, t->ino, 0, 0, 0, t->path, NULL, NULL, 0, 0);
            log_range(t, fd, 0, (size_t)st.st_size);
            began = log_size();
        }
    }
    uint64_t ino = t ? t->ino : 0;
    int isdir = t ? t->isdir : 0;
    char *path = t ? strdup(t->path) : NULL;
    pthread_mutex_unlock(&mu);
    int rc = call(fd);
    int e = errno;
    if (rc == 0 && (t || op == OP_SYNCFS)) {
        pthread_mutex_lock(&mu);
        emit(op, isdir, ino, 0, began, 0, path, NULL, NULL, 0, 0);
        pthread_mutex_unlock(&mu);
    }
    free(path);
    errno = e;
    return rc;
}

static int c_fsync(int fd)
{
    load_fsync();
    return real_fsync(fd);
}

static int c_fdatasync(int fd)
{
    load_fdatasync();
    return real_fdatasync(fd);
}

static int c_syncfs(int fd)
{
    load_syncfs();
    return real_syncfs(fd);
}

int fsync(int fd)
{
    return sync_op(OP_FSYNC, fd, c_fsync);
}

int fdatasync(int fd)
{
    return sync_op(OP_FDATASYNC, fd, c_fdatasync);
}

int syncfs(int fd)
{
    return sync_op(OP_SYNCFS, fd, c_syncfs);
}

int sync_file_range(int fd, off_t off, off_t len, unsigned flags)
{
    load_sync_file_range();
    pthread_mutex_lock(&mu);
    struct fdent *t = tracked(fd);
    pthread_mutex_unlock(&mu);
    int rc = real_sync_file_range(fd, off, len, flags);
    int e = errno;
    if (rc == 0 && t) {
        pthread_mutex_lock(&mu);
        emit(OP_SFR, 0, t->ino, (uint64_t)off, (uint64_t)len, flags, t->path, NULL, NULL, 0, 0);
        pthread_mutex_unlock(&mu);
    }
    errno = e;
    return rc;
}
