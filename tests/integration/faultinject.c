/*
 * faultinject.c - an LD_PRELOAD library for the integration tests: while the
 * file named by $CAS_FAULT_FILE exists, fdatasync() and fsync() fail with
 * EIO, as they do on a dying disk. With $CAS_FAULT_ONLY set, only on files
 * whose path contains that text (e.g. "/data-": the data files, not the
 * index), so a test can tell which sync a request made. Everything else
 * goes to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int faulty_fd(int fd)
{
    const char *f = getenv("CAS_FAULT_FILE");
    if (!f || access(f, F_OK) != 0)
        return 0;
    const char *only = getenv("CAS_FAULT_ONLY");
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

int fdatasync(int fd)
{
    static int (*real)(int);
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
    if (faulty_fd(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
