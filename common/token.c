/*
 * token.c - reading the shared bearer token, whole or refused (see token.h).
 */
#define _GNU_SOURCE
#include "token.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cas_token_read(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it
     * right after by its type anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "token file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "token file %s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "token file %s: not a regular file", path);
        return -EINVAL;
    }
    /* Room for the token, "\r\n", and one byte more to see growth. */
    char buf[CAS_TOKEN_MAX + 3];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "token file %s: %s", path, strerror(e));
            return -e;
        }
        if (r == 0 || (n += (size_t)r) == sizeof(buf))
            break;
    }
    close(fd);
    if (n == sizeof(buf) || (uint64_t)st.st_size > CAS_TOKEN_MAX + 2) {
        snprintf(err, errlen, "token file %s: larger than %d bytes", path, CAS_TOKEN_MAX);
        return -EFBIG;
    }
    if ((uint64_t)st.st_size != n) {
        snprintf(err, errlen, "token file %s: changed size while read (%lld, then %zu bytes)", path,
                 (long long)st.st_size, n);
        return -EAGAIN;
    }
    if (n && buf[n - 1] == '\n') {
        n--;
        if (n && buf[n - 1] == '\r')
            n--;
    }
    if (n == 0) {
        snprintf(err, errlen, "token file %s: empty", path);
        return -EINVAL;
    }
    if (n > CAS_TOKEN_MAX) {
        snprintf(err, errlen, "token file %s: larger than %d bytes", path, CAS_TOKEN_MAX);
        return -EFBIG;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\0' || c == '\n' || c == '\r' || c < 0x20 || c == 0x7f) {
            snprintf(err, errlen,
                     "token file %s: %s at byte %zu (a token is one line; only a single "
                     "trailing newline is allowed)",
                     path,
                     c == '\0'   ? "a NUL byte"
                     : c == '\n' ? "a line break"
                     : c == '\r' ? "a carriage return"
                                 : "a control character",
                     i);
            return -EINVAL;
        }
    }
    if (buf[0] == ' ' || buf[n - 1] == ' ') {
        /* HTTP drops such spaces from the header: the token could never match. */
        snprintf(err, errlen, "token file %s: leading or trailing space", path);
        return -EINVAL;
    }
    char *s = malloc(n + 1);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(s, buf, n);
    s[n] = '\0';
    *out = s;
    return 0;
}
