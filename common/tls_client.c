/*
 * tls_client.c - the client side of TLS with GnuTLS (see tls_client.h).
 */
#define _GNU_SOURCE
#include "tls_client.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct cas_tls_client {
    int refs;
    gnutls_certificate_credentials_t cred;
};

struct cas_tls_session {
    gnutls_session_t s;
    struct cas_tls_client *cl;
    int fd;
    bool nowait; /* the transport's recv/send do not wait (MSG_DONTWAIT) */
    char host[256];
};

int cas_tls_client_new(const char *ca, size_t ca_len, const char *cert, size_t cert_len,
                       const char *key, size_t key_len, struct cas_tls_client **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    struct cas_tls_client *cl = calloc(1, sizeof(*cl));
    if (!cl || gnutls_certificate_allocate_credentials(&cl->cred) < 0) {
        free(cl);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc;
    if (ca) {
        gnutls_datum_t d = {(unsigned char *)ca, (unsigned)ca_len};
        rc = gnutls_certificate_set_x509_trust_mem(cl->cred, &d, GNUTLS_X509_FMT_PEM);
        if (rc <= 0)
            snprintf(err, errlen, "CA bundle: %s",
                     rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
    } else {
        rc = gnutls_certificate_set_x509_system_trust(cl->cred);
        if (rc <= 0)
            snprintf(err, errlen, "the system's trusted certificates: %s",
                     rc < 0 ? gnutls_strerror(rc) : "none found (give ca_file)");
    }
    if (rc > 0 && cert && key) {
        gnutls_datum_t cd = {(unsigned char *)cert, (unsigned)cert_len};
        gnutls_datum_t kd = {(unsigned char *)key, (unsigned)key_len};
        rc = gnutls_certificate_set_x509_key_mem2(cl->cred, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL,
                                                  0);
        if (rc < 0)
            snprintf(err, errlen, "client certificate and key: %s", gnutls_strerror(rc));
        else
            rc = 1;
    }
    if (rc <= 0) {
        gnutls_certificate_free_credentials(cl->cred);
        free(cl);
        return -EINVAL;
    }
    cl->refs = 1;
    *out = cl;
    return 0;
}

struct cas_tls_client *cas_tls_client_ref(struct cas_tls_client *cl)
{
    __atomic_add_fetch(&cl->refs, 1, __ATOMIC_ACQ_REL);
    return cl;
}

void cas_tls_client_put(struct cas_tls_client *cl)
{
    if (!cl || __atomic_sub_fetch(&cl->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    gnutls_certificate_free_credentials(cl->cred);
    free(cl);
}

/* The transport: the caller's socket, waiting or not as s->nowait says
 * (a blocking socket's SO_RCVTIMEO / SO_SNDTIMEO bound the waits). */
static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct cas_tls_session *t = p;
    ssize_t r;
    do
        r = recv(t->fd, buf, len, t->nowait ? MSG_DONTWAIT : 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        gnutls_transport_set_errno(t->s, errno == EWOULDBLOCK ? EAGAIN : errno);
    return r;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
    struct cas_tls_session *t = p;
    ssize_t r;
    do
        r = send(t->fd, buf, len, MSG_NOSIGNAL | (t->nowait ? MSG_DONTWAIT : 0));
    while (r < 0 && errno == EINTR);
    if (r < 0)
        gnutls_transport_set_errno(t->s, errno == EWOULDBLOCK ? EAGAIN : errno);
    return r;
}

/* Used by GnuTLS only where a record timeout is set (never here): waits
 * for fd to be readable, at most ms. */
static int pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
    struct cas_tls_session *t = p;
    struct pollfd pf = {.fd = t->fd, .events = POLLIN};
    int r;
    do
        r = poll(&pf, 1, t->nowait ? 0 : (int)(ms > INT32_MAX ? INT32_MAX : ms));
    while (r < 0 && errno == EINTR);
    return r;
}

static bool is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int cas_tls_session_new(struct cas_tls_client *cl, int fd, const char *host,
                        struct cas_tls_session **out, char *err, size_t errlen)
{
    *out = NULL;
    if (strlen(host) >= sizeof(((struct cas_tls_session *)0)->host)) {
        snprintf(err, errlen, "host name too long");
        return -EINVAL;
    }
    struct cas_tls_session *t = calloc(1, sizeof(*t));
    if (!t || gnutls_init(&t->s, GNUTLS_CLIENT) < 0) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->fd = fd;
    snprintf(t->host, sizeof(t->host), "%s", host);
    int rc = gnutls_priority_set_direct(t->s, CAS_TLS_PRIORITIES, NULL);
    if (rc >= 0)
        rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cl->cred);
    if (rc >= 0 && !is_ip_literal(host))
        rc = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, host, strlen(host));
    if (rc < 0) {
        snprintf(err, errlen, "TLS session: %s", gnutls_strerror(rc));
        gnutls_deinit(t->s);
        free(t);
        return -EINVAL;
    }
    /* The chain against the trust list, and the name (RFC 6125), at the
     * handshake: it fails with GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR. */
    gnutls_session_set_verify_cert(t->s, t->host, 0);
    gnutls_transport_set_ptr(t->s, t);
    gnutls_transport_set_pull_function(t->s, pull);
    gnutls_transport_set_push_function(t->s, push);
    gnutls_transport_set_pull_timeout_function(t->s, pull_timeout);
    t->cl = cas_tls_client_ref(cl);
    *out = t;
    return 0;
}

void cas_tls_session_free(struct cas_tls_session *s)
{
    if (!s)
        return;
    gnutls_deinit(s->s);
    cas_tls_client_put(s->cl);
    free(s);
}

int cas_tls_handshake(struct cas_tls_session *s, char *err, size_t errlen)
{
    s->nowait = true;
    int rc;
    do
        rc = gnutls_handshake(s->s);
    while (rc == GNUTLS_E_INTERRUPTED || (rc < 0 && rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc)));
    s->nowait = false;
    if (rc == 0)
        return 1;
    if (rc == GNUTLS_E_AGAIN)
        return 0;
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t why = {NULL, 0};
        unsigned status = gnutls_session_get_verify_cert_status(s->s);
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) >= 0 &&
            why.data) {
            snprintf(err, errlen, "TLS: the certificate of %s is refused: %s", s->host,
                     (const char *)why.data);
            gnutls_free(why.data);
        } else {
            snprintf(err, errlen, "TLS: the certificate of %s is refused", s->host);
        }
        return -EPROTO;
    }
    if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR ||
        rc == GNUTLS_E_PUSH_ERROR) {
        snprintf(err, errlen, "TLS handshake with %s: the connection ended (%s)", s->host,
                 gnutls_strerror(rc));
        return -ECONNRESET;
    }
    snprintf(err, errlen, "TLS handshake with %s: %s", s->host, gnutls_strerror(rc));
    return -EPROTO;
}

short cas_tls_session_events(const struct cas_tls_session *s)
{
    return gnutls_record_get_direction(s->s) ? POLLOUT : POLLIN;
}

ssize_t cas_tls_recv(struct cas_tls_session *s, void *buf, size_t max, bool nowait)
{
    s->nowait = nowait;
    ssize_t r;
    do
        r = gnutls_record_recv(s->s, buf, max);
    while (r == GNUTLS_E_INTERRUPTED);
    s->nowait = false;
    if (r >= 0)
        return r;
    if (r == GNUTLS_E_AGAIN)
        return -EAGAIN;
    if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR)
        return -ECONNRESET;
    return gnutls_error_is_fatal((int)r) ? -EPROTO : -EIO;
}

int cas_tls_send_all(struct cas_tls_session *s, const void *buf, size_t len)
{
    const char *p = buf;
    s->nowait = false;
    while (len) {
        ssize_t w = gnutls_record_send(s->s, p, len);
        if (w == GNUTLS_E_INTERRUPTED)
            continue;
        if (w == GNUTLS_E_AGAIN)
            return -ETIMEDOUT; /* SO_SNDTIMEO passed */
        if (w < 0)
            return -EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

size_t cas_tls_pending(const struct cas_tls_session *s)
{
    return gnutls_record_check_pending(s->s);
}
