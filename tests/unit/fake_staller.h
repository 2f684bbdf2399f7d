/*
 * fake_staller.h - a backend for the balancerd unit suites that sends a
 * canned beginning of an answer (a head, part of a body, or part of a head)
 * and then nothing: the connection stays open and silent until the client
 * gives up. A thread on a loopback port, stopped by staller_stop. Unlike
 * fake_backend.h it never closes its side first, so a reader can only end
 * by its own timeout. Header-only.
 */
#ifndef CAS_TEST_FAKE_STALLER_H
#define CAS_TEST_FAKE_STALLER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct staller {
    int fd, port;
    pthread_t thread;
    const char *answer; /* sent, then the connection stays open and silent */
};

static inline void *staller_main(void *arg)
{
    struct staller *st = arg;
    for (;;) {
        int c = accept(st->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[4096];
        size_t len = 0;
        while (len < sizeof(buf) - 1) {
            ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        if (write(c, st->answer, strlen(st->answer)) < 0)
            perror("staller write");
        while (read(c, buf, sizeof(buf)) > 0) /* until the client gives up */
            ;
        close(c);
    }
}

static inline int staller_start(struct staller *st, const char *answer)
{
    st->answer = answer;
    st->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (st->fd < 0 || bind(st->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(st->fd, 4) < 0 ||
        getsockname(st->fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    st->port = ntohs(a.sin_port);
    return pthread_create(&st->thread, NULL, staller_main, st) == 0 ? 0 : -1;
}

static inline void staller_stop(struct staller *st)
{
    shutdown(st->fd, SHUT_RDWR);
    pthread_join(st->thread, NULL);
    close(st->fd);
}

#endif
