/*
 * ctl_reuse.c - a pooled libcurl connection is reused only when nothing is
 * waiting on it (docs/OPERATIONS.md: "a connection with unread bytes is
 * closed, so an answer can never be taken for the next request's").
 *
 * Bytes that arrive on an idle keep-alive connection after its last answer
 * (a backend that answered twice, or sent more than its Content-Length)
 * would be read as the next request's answer. libcurl closes a connection
 * when such bytes come in the same read as the answer, but not when they
 * come later, while it waits in the pool, nor when they wait inside
 * OpenSSL's buffer (libcurl reads no further than the Content-Length).
 * balancerd's own pooled sockets (upstream.c) check before reuse; this file
 * does the same for every libcurl handle configured by cas_ctl_easy:
 *
 *   - the handle's sockets are opened and closed through callbacks that
 *     keep a table of them (fd, local and peer port);
 *   - before a request is sent on a connection taken from the pool
 *     (CURLOPT_PREREQFUNCTION, CURLINFO_NUM_CONNECTS 0), its socket is
 *     found by the ports libcurl reports and polled: readable (bytes, EOF
 *     or an error) or, over TLS, bytes pending in OpenSSL mean the request
 *     is stopped before a byte is sent (CURLE_ABORTED_BY_CALLBACK) and
 *     libcurl closes that connection;
 *   - cas_ctl_refused_reuse tells the caller that this is what happened,
 *     so it can send the request again on a new connection
 *     (CURLOPT_FRESH_CONNECT): cas_ctl_perform, cas_ctl_run and
 *     balancerd's bstream do.
 */
#include "ctl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the sockets libcurl opened through us ------------------------------ */

struct sock {
    int fd;
    int lport, pport; /* local and peer port; 0 until first looked up */
};

static pthread_mutex_t socks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock *socks;
static size_t nsocks, capsocks;

static curl_socket_t on_open(void *cls, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)cls;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    pthread_mutex_lock(&socks_lock);
    if (nsocks == capsocks) {
        size_t cap = capsocks ? capsocks * 2 : 64;
        struct sock *n = realloc(socks, cap * sizeof(*n));
        if (n) {
            socks = n;
            capsocks = cap;
        }
    }
    /* Out of memory: the socket works, its connection is just never
     * found (and so never reused, see prereq). */
    if (nsocks < capsocks)
        socks[nsocks++] = (struct sock){.fd = fd};
    pthread_mutex_unlock(&socks_lock);
    return fd;
}

static int on_close(void *cls, curl_socket_t fd)
{
    (void)cls;
    pthread_mutex_lock(&socks_lock);
    for (size_t i = 0; i < nsocks; i++)
        if (socks[i].fd == fd) {
            socks[i] = socks[--nsocks];
            break;
        }
    pthread_mutex_unlock(&socks_lock);
    return close(fd);
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* The socket of the connection between local port lport and peer port
 * pport, or -1. */
static int find_sock(int lport, int pport)
{
    int fd = -1;
    pthread_mutex_lock(&socks_lock);
    for (size_t i = 0; i < nsocks && fd < 0; i++) {
        struct sock *s = &socks[i];
        if (!s->lport) {
            struct sockaddr_storage l, p;
            socklen_t ll = sizeof(l), pl = sizeof(p);
            if (getsockname(s->fd, (struct sockaddr *)&l, &ll) == 0 &&
                getpeername(s->fd, (struct sockaddr *)&p, &pl) == 0) {
                s->lport = port_of(&l);
                s->pport = port_of(&p);
            }
        }
        if (s->lport == lport && s->pport == pport)
            fd = s->fd;
    }
    pthread_mutex_unlock(&socks_lock);
    return fd;
}

/* ---- the check before a request on a reused connection ------------------ */

/* The handles of this thread whose last request was refused. */
#define REFUSED_MAX 16
static __thread CURL *refused[REFUSED_MAX];

static void note_refused(CURL *e)
{
    for (size_t i = 0; i < REFUSED_MAX; i++)
        if (!refused[i]) {
            refused[i] = e;
            return;
        }
}

bool cas_ctl_refused_reuse(CURL *e)
{
    for (size_t i = 0; i < REFUSED_MAX; i++)
        if (refused[i] == e) {
            refused[i] = NULL;
            return true;
        }
    return false;
}

/* True when something waits on the connection: bytes, EOF or an error on
 * its socket, or decrypted or undecrypted bytes inside OpenSSL. */
static bool conn_unclean(CURL *e, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 0);
    if (r != 0)
        return true;
    struct curl_tlssessioninfo *ti = NULL;
    if (curl_easy_getinfo(e, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti &&
        ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals)
        return SSL_has_pending(ti->internals) != 0;
    return false;
}

static int on_prereq(void *cls, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    CURL *e = cls;
    long fresh = 0;
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &fresh) != CURLE_OK || fresh > 0)
        return CURL_PREREQFUNC_OK; /* a new connection: nothing can be left on it */
    int fd = find_sock(local_port, primary_port);
    /* A pooled connection whose socket we do not know (opened by a handle
     * not configured here) cannot be checked: not reused either. */
    if (fd < 0 || conn_unclean(e, fd)) {
        note_refused(e);
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

void cas_ctl_guard_reuse(CURL *e)
{
    cas_ctl_refused_reuse(e); /* a new request: forget an old refusal */
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, e);
}
