/*
 * faultinject.c - an LD_PRELOAD library for the integration tests: while the
 * file named by $CAS_FAULT_FILE exists, fdatasync() and fsync() fail with
 * EIO, as they do on a dying disk. Everything else goes to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int faulty(void)
{
    const char *f = getenv("CAS_FAULT_FILE");
    return f && access(f, F_OK) == 0;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (faulty()) {
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
    if (faulty()) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
