/*
 * fake_backend.h - a fake HTTP backend for the balancerd unit suites: a
 * thread on a loopback port that reads each request (head and a
 * Content-Length body) and answers it with a canned response chosen by the
 * request's path, then closes the connection. An empty answer ("") is a
 * hung backend: it reads the request and says nothing until the client
 * closes. Header-only (each suite is
 * one file); needs _GNU_SOURCE for strcasestr.
 */
#ifndef CAS_TEST_FAKE_BACKEND_H
#define CAS_TEST_FAKE_BACKEND_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fake {
    int fd;
    int port;
    pthread_t thread;
    const char *answer; /* sent to every request, then the connection closes */
    /* When set: the answer to a request whose target starts with
     * routes[i].path (the first that matches), else answer. */
    struct fake_route {
        const char *path;
        const char *answer;
    } routes[8];
    int requests;       /* heads read (under lock) */
    char last_head[2048];
    pthread_mutex_t lock;
};

/* Reads a request head, and a body of Content-Length bytes, from c. */
static inline void read_request(struct fake *f, int c)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")))
            break;
    }
    if (!end)
        return;
    size_t head = (size_t)(end - buf) + 4;
    long body = 0;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end)
        body = strtol(cl + 17, NULL, 10);
    size_t have = len - head;
    while ((long)have < body) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    pthread_mutex_lock(&f->lock);
    f->requests++;
    snprintf(f->last_head, sizeof(f->last_head), "%.*s", (int)head, buf);
    pthread_mutex_unlock(&f->lock);
}

static inline void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            return NULL; /* the listening socket was shut down */
        read_request(f, c);
        pthread_mutex_lock(&f->lock);
        const char *a = f->answer;
        const char *target = strchr(f->last_head, ' ');
        for (size_t i = 0; target && i < 8 && f->routes[i].path; i++)
            if (!strncmp(target + 1, f->routes[i].path, strlen(f->routes[i].path))) {
                a = f->routes[i].answer;
                break;
            }
        pthread_mutex_unlock(&f->lock);
        size_t off = 0, len = strlen(a);
        while (off < len) {
            ssize_t n = write(c, a + off, len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (len) /* an empty answer: hang, say nothing until the client leaves */
            shutdown(c, SHUT_WR);
        char drain[256];
        while (read(c, drain, sizeof(drain)) > 0)
            ;
        close(c);
    }
}

static inline int fake_start(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(f->fd, 16) < 0 || getsockname(f->fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->thread, NULL, fake_main, f) == 0 ? 0 : -1;
}

static inline void fake_answer(struct fake *f, const char *answer)
{
    pthread_mutex_lock(&f->lock);
    f->answer = answer;
    f->requests = 0;
    pthread_mutex_unlock(&f->lock);
}

/* Answers requests whose target starts with path with answer (slot i of
 * 8; a NULL path ends the table). */
static inline void fake_route(struct fake *f, size_t i, const char *path, const char *answer)
{
    pthread_mutex_lock(&f->lock);
    f->routes[i].path = path;
    f->routes[i].answer = answer;
    pthread_mutex_unlock(&f->lock);
}

static inline int fake_requests(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->requests;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static inline void fake_stop(struct fake *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

#endif
