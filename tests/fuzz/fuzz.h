/*
 * fuzz.h - what the libFuzzer targets of tests/fuzz share: a NUL-terminated
 * copy of the input (most parsers take C strings) and a check that aborts,
 * so that a broken property is a crash libFuzzer reports and keeps.
 */
#ifndef CAS_FUZZ_H
#define CAS_FUZZ_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd copy of data with a NUL after it (ASan sees reads past it). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Makes a fresh directory "cas-fuzz-NAME-XXXXXX" in $TMPDIR (else /dev/shm
 * when there is one, else /tmp) and writes its path to dir (dirlen bytes);
 * aborts when it cannot (a target cannot run without it). */
static inline void fuzz_make_dir(const char *name, char *dir, size_t dirlen)
{
    const char *tmp = getenv("TMPDIR");
    struct stat st;
    if (!tmp)
        tmp = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, dirlen, "%s/cas-fuzz-%s-XXXXXX", tmp, name);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz: cannot make %s: %s\n", dir, strerror(errno));
        abort();
    }
}

/* Removes the entries of directory path, skipping one named keep (NULL:
 * none), descending into subdirectories; with rm_self also path itself. */
static inline void fuzz_clear_dir(const char *path, const char *keep, int rm_self)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            (keep && !strcmp(de->d_name, keep)))
            continue;
        char sub[1024];
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        if (unlink(sub) < 0 && errno == EISDIR)
            fuzz_clear_dir(sub, NULL, 1);
    }
    closedir(d);
    if (rm_self)
        rmdir(path);
}

/* connect(2) that sees an interrupted connect through: 0, or -1 and errno. */
static inline int fuzz_connect(int fd, const struct sockaddr_in *sa)
{
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -1;
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return -1;
    errno = e;
    return e ? -1 : 0;
}

/*
 * Sends data as one client connection to 127.0.0.1:port, half-closes,
 * reads until the server closes, and checks the property every HTTP target
 * shares: whatever came back starts with a status line.
 *
 * libFuzzer's -timeout watchdog sends SIGALRM every few seconds without
 * SA_RESTART, so any call here may fail with EINTR: an interrupted connect
 * goes on in the kernel and is waited for (poll, then SO_ERROR), send and
 * recv are retried. (CI once aborted here: a connect that waited out a full
 * accept queue, the SYN resent after 1 s, was interrupted.)
 *
 * The harness half-closes first, so each connection leaves a TIME_WAIT on
 * its side for 60 s; at over a thousand connections a second from one source
 * address that would use up the ephemeral ports where the kernel does not
 * reuse them (net.ipv4.tcp_tw_reuse=0). Each connection therefore comes
 * from the next of 65,024 source addresses in 127.1.0.0/16 (all of 127/8 is
 * loopback), its port picked at connect. A connect that fails otherwise
 * (the server is gone) aborts with its errno.
 */
static inline void fuzz_http_exchange(unsigned port, const uint8_t *data, size_t size)
{
    static unsigned next_source;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned n = next_source++ % (254u * 256u);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((n / 254u) << 8) | (n % 254u + 1u));
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 || fuzz_connect(fd, &sa) < 0) {
        fprintf(stderr, "fuzz: connect to 127.0.0.1:%u: %s\n", port, strerror(errno));
        abort();
    }
    /* Send what the server takes; it may close early on a bad request. */
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[65536], first[9];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (got < sizeof(first))
            memcpy(first + got, buf,
                   (size_t)r < sizeof(first) - got ? (size_t)r : sizeof(first) - got);
        got += (size_t)r;
    }
    if (got >= sizeof(first))
        FUZZ_CHECK(memcmp(first, "HTTP/1.", 7) == 0);
    close(fd);
}

#endif
