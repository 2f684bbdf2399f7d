/*
 * faultinject.c - an LD_PRELOAD library for the integration tests: while the
 * file named by $CAS_FAULT_FILE exists, fdatasync() and fsync() fail with
 * EIO, as they do on a dying disk. With $CAS_FAULT_ONLY set, only on files
 * whose path contains that text (e.g. "/data-": the data files, not the
 * index), so a test can tell which sync a request made.
 *
 * A slow disk: with $CAS_SLOW_PREAD_US set, every pread() of a file whose
 * path contains $CAS_SLOW_PREAD_ONLY (default "/data-") first sleeps that
 * many microseconds, which widens the window between a request's look-up of
 * an object and what it does next (tests/integration/test_gc_races.py).
 *
 * A gate: with $CAS_PAUSE_FILE set, the syncs (fdatasync, fsync) of files
 * whose path contains $CAS_PAUSE_ONLY are numbered 0, 1, 2, ... in the
 * order they start, and sync number k waits (polling every 5 ms) while the
 * pause file exists and holds a number not above k. A test writes "0" to
 * hold the first one, "1" to let it through and hold the next, and so on
 * (tests/integration/test_cli_files.py steps a compaction file by file).
 * A sync that waits writes its number, once, to "$CAS_PAUSE_FILE.at".
 *
 * A full disk: while the file named by $CAS_FULL_FILE exists, a pwrite()
 * that would extend a file whose path contains $CAS_FULL_ONLY (all files
 * when empty) past its current size fails with ENOSPC, as on a full file
 * system (an index append past its reserve, a removal frame); a rewrite
 * inside the file (a frame header marked removed in place) still goes
 * through, as it needs no new block (tests/integration/test_removal_frames.py).
 *
 * An OpenSSL without a cipher: with $CAS_NO_CIPHER set, EVP_CIPHER_fetch()
 * of that algorithm name returns NULL, as a FIPS-mode OpenSSL does for
 * ChaCha20-Poly1305; while the file named by $CAS_CIPHER_FAIL_FILE exists,
 * EVP_EncryptInit_ex2() fails (tests/integration/test_balancer_integrity.py).
 * Everything else goes to libc (and OpenSSL).
 */
#define _GNU_SOURCE
/* Both pread and pread64 are defined below: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* True when fd's path contains only (or only is empty). */
static int fd_matches(int fd, const char *only)
{
    if (!only || !*only)
        return 1;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return strstr(path, only) != NULL;
}

static int faulty_fd(int fd)
{
    const char *f = getenv("CAS_FAULT_FILE");
    if (!f || access(f, F_OK) != 0)
        return 0;
    return fd_matches(fd, getenv("CAS_FAULT_ONLY"));
}

static void maybe_slow(int fd)
{
    const char *us = getenv("CAS_SLOW_PREAD_US");
    if (!us || !*us)
        return;
    const char *only = getenv("CAS_SLOW_PREAD_ONLY");
    if (fd_matches(fd, only ? only : "/data-"))
        usleep((useconds_t)atoi(us));
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
    maybe_slow(fd);
    return real(fd, buf, count, offset);
}

ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
    static ssize_t (*real)(int, void *, size_t, off64_t);
    if (!real)
        real = (ssize_t(*)(int, void *, size_t, off64_t))dlsym(RTLD_NEXT, "pread64");
    maybe_slow(fd);
    return real(fd, buf, count, offset);
}

/* True when a write of count bytes at offset to fd must fail as a full disk. */
static int full_fd(int fd, size_t count, off64_t offset)
{
    const char *f = getenv("CAS_FULL_FILE");
    if (!f || !*f || access(f, F_OK) != 0 || !fd_matches(fd, getenv("CAS_FULL_ONLY")))
        return 0;
    struct stat64 st;
    if (fstat64(fd, &st) != 0)
        return 0;
    return offset + (off64_t)count > st.st_size;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (full_fd(fd, count, offset)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    if (full_fd(fd, count, offset)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, count, offset);
}

static unsigned long pause_tickets; /* syncs numbered so far */

static void maybe_pause(int fd)
{
    const char *f = getenv("CAS_PAUSE_FILE");
    if (!f || !*f || !fd_matches(fd, getenv("CAS_PAUSE_ONLY")))
        return;
    unsigned long me = __atomic_fetch_add(&pause_tickets, 1, __ATOMIC_SEQ_CST);
    bool told = false;
    for (;;) {
        FILE *gate = fopen(f, "r");
        unsigned long allow = 0;
        if (!gate)
            return;
        int got = fscanf(gate, "%lu", &allow);
        fclose(gate);
        if (got == 1 && allow > me)
            return;
        if (!told) { /* "<pause file>.at" says which sync waits now */
            char at[4096];
            snprintf(at, sizeof(at), "%s.at", f);
            FILE *w = fopen(at, "w");
            if (w) {
                fprintf(w, "%lu\n", me);
                fclose(w);
            }
            told = true;
        }
        usleep(5000);
    }
}

int fdatasync(int fd)
{
    static int (*real)(int);
    maybe_pause(fd);
    if (faulty_fd(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    maybe_pause(fd);
    if (faulty_fd(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

void *EVP_CIPHER_fetch(void *libctx, const char *algorithm, const char *properties)
{
    const char *no = getenv("CAS_NO_CIPHER");
    if (no && algorithm && strcasecmp(no, algorithm) == 0)
        return NULL;
    void *(*real)(void *, const char *, const char *) =
        (void *(*)(void *, const char *, const char *))dlsym(RTLD_NEXT, "EVP_CIPHER_fetch");
    return real ? real(libctx, algorithm, properties) : NULL;
}

int EVP_EncryptInit_ex2(void *ctx, const void *cipher, const unsigned char *key,
                        const unsigned char *iv, const void *params)
{
    const char *f = getenv("CAS_CIPHER_FAIL_FILE");
    if (f && access(f, F_OK) == 0)
        return 0;
    int (*real)(void *, const void *, const unsigned char *, const unsigned char *, const void *) =
        (int (*)(void *, const void *, const unsigned char *, const unsigned char *,
                 const void *))dlsym(RTLD_NEXT, "EVP_EncryptInit_ex2");
    return real ? real(ctx, cipher, key, iv, params) : 0;
}
