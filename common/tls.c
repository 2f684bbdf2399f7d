/*
 * tls.c - certificate files and the per-handshake certificate callback of
 * the HTTPS server (see tls.h).
 */
#define _GNU_SOURCE
#include "tls.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cas_pem_read(const char *path, const char *what, bool secret, char **out, size_t *len,
                 char *err, size_t errlen)
{
    *out = NULL;
    if (len)
        *len = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
     * right after by its type. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
        return -EINVAL;
    }
    if (secret && (st.st_mode & 077)) {
        close(fd);
        snprintf(err, errlen,
                 "%s %s: private key is accessible by group or others (mode %04o); "
                 "run chmod 600 %s",
                 what, path, (unsigned)(st.st_mode & 07777), path);
        return -EPERM;
    }
    if (st.st_size > CAS_PEM_MAX) {
        close(fd);
        snprintf(err, errlen, "%s %s: larger than %d bytes", what, path, CAS_PEM_MAX);
        return -EFBIG;
    }
    /* One byte more than the size to see growth while reading. */
    size_t cap = (size_t)st.st_size + 2;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
            return -e;
        }
        if (r == 0 || (n += (size_t)r) == cap - 1)
            break;
    }
    close(fd);
    if (n != (size_t)st.st_size) {
        snprintf(err, errlen, "%s %s: changed size while read (%lld, then %zu bytes)", what, path,
                 (long long)st.st_size, n);
        free(buf);
        return -EAGAIN;
    }
    buf[n] = '\0';
    if (n == 0) {
        snprintf(err, errlen, "%s %s: empty", what, path);
        free(buf);
        return -EINVAL;
    }
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "%s %s: a NUL byte (want a PEM text file)", what, path);
        free(buf);
        return -EINVAL;
    }
    if (!strstr(buf, "-----BEGIN ")) {
        snprintf(err, errlen, "%s %s: no \"-----BEGIN\" line (want a PEM file)", what, path);
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int cas_pem_read_ca(const char *path, const char *what, char **out, size_t *len, char *err,
                    size_t errlen)
{
    size_t n = 0;
    int rc = cas_pem_read(path, what, false, out, &n, err, errlen);
    if (rc < 0)
        return rc;
    gnutls_datum_t d = {(unsigned char *)*out, (unsigned)n};
    gnutls_x509_crt_t *certs = NULL;
    unsigned count = 0;
    rc = gnutls_x509_crt_list_import2(&certs, &count, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc >= 0) {
        for (unsigned i = 0; i < count; i++)
            gnutls_x509_crt_deinit(certs[i]);
        gnutls_free(certs);
    }
    if (rc < 0 || count == 0) {
        snprintf(err, errlen, "%s %s: not a PEM CA certificate bundle: %s", what, path,
                 rc < 0 ? gnutls_strerror(rc) : "no certificate");
        free(*out);
        *out = NULL;
        return -EINVAL;
    }
    if (len)
        *len = n;
    return 0;
}

#define MAX_CHAIN 16

struct creds {
    gnutls_pcert_st pcert[MAX_CHAIN];
    unsigned npcert;
    gnutls_privkey_t key;
    bool require_client;
    struct creds *older; /* replaced ones, kept: a handshake may still use them */
};

static _Atomic(struct creds *) current;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static char *cur_cert_path, *cur_key_path;
static bool cur_require;

static void creds_free(struct creds *c)
{
    for (unsigned i = 0; i < c->npcert; i++)
        gnutls_pcert_deinit(&c->pcert[i]);
    if (c->key)
        gnutls_privkey_deinit(c->key);
    free(c);
}

/* Fills c from the PEM texts; 0 or -EINVAL with a message. */
static int creds_parse(struct creds *c, const char *cert_path, char *cert, size_t cert_len,
                       const char *key_path, char *key, size_t key_len, char *err, size_t errlen)
{
    gnutls_datum_t cd = {(unsigned char *)cert, (unsigned)cert_len};
    gnutls_datum_t kd = {(unsigned char *)key, (unsigned)key_len};
    unsigned n = MAX_CHAIN;
    int rc = gnutls_pcert_list_import_x509_raw(c->pcert, &n, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || n == 0) {
        snprintf(err, errlen, "--tls-cert %s: not a PEM certificate chain (at most %d): %s",
                 cert_path, MAX_CHAIN, rc < 0 ? gnutls_strerror(rc) : "no certificate");
        return -EINVAL;
    }
    c->npcert = n;
    if ((rc = gnutls_privkey_init(&c->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        snprintf(err, errlen, "--tls-key %s: not a PEM private key (unencrypted): %s", key_path,
                 gnutls_strerror(rc));
        return -EINVAL;
    }
    /* The key must be the certificate's: compare the public key ids. */
    gnutls_pubkey_t pub = NULL;
    unsigned char id1[64], id2[64];
    size_t l1 = sizeof(id1), l2 = sizeof(id2);
    int ok = gnutls_pubkey_init(&pub) >= 0 &&
             gnutls_pubkey_import_privkey(pub, c->key, 0, 0) >= 0 &&
             gnutls_pubkey_get_key_id(pub, 0, id1, &l1) >= 0 &&
             gnutls_pubkey_get_key_id(c->pcert[0].pubkey, 0, id2, &l2) >= 0 && l1 == l2 &&
             memcmp(id1, id2, l1) == 0;
    if (pub)
        gnutls_pubkey_deinit(pub);
    if (!ok) {
        snprintf(err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s",
                 key_path, cert_path);
        return -EINVAL;
    }
    return 0;
}

/* "2026-11-30 04:05:06 UTC" into buf (>= 32 bytes). */
static void utc_text(time_t t, char *buf, size_t len)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%lld (seconds since the epoch)", (long long)t);
}

/* The leaf certificate's validity at now (RFC 5280 section 4.1.2.5): 0 in
 * force, -EKEYEXPIRED outside it (expired, or not valid yet), with a
 * message; -EINVAL when the dates cannot be read. A certificate ending
 * within CAS_TLS_EXPIRY_WARN_S is in force, and *soon says so. */
static int cert_validity(const gnutls_datum_t *data, gnutls_x509_crt_fmt_t fmt, const char *what,
                         const char *cert_path, time_t now, bool *soon, char *err, size_t errlen)
{
    gnutls_x509_crt_t crt;
    *soon = false;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -ENOMEM;
    int rc = 0;
    time_t from = -1, until = -1;
    if (gnutls_x509_crt_import(crt, data, fmt) < 0 ||
        (from = gnutls_x509_crt_get_activation_time(crt)) == (time_t)-1 ||
        (until = gnutls_x509_crt_get_expiration_time(crt)) == (time_t)-1) {
        snprintf(err, errlen, "%s %s: cannot read the certificate's validity dates", what,
                 cert_path);
        rc = -EINVAL;
    } else if (now < from || now > until) {
        char a[48], b[48], n[48];
        utc_text(from, a, sizeof(a));
        utc_text(until, b, sizeof(b));
        utc_text(now, n, sizeof(n));
        snprintf(err, errlen,
                 "%s %s: the certificate is %s (valid from %s to %s; now %s): its peers "
                 "refuse it",
                 what, cert_path, now > until ? "expired" : "not valid yet", a, b, n);
        rc = -EKEYEXPIRED;
    } else if (until - now < CAS_TLS_EXPIRY_WARN_S) {
        char b[48];
        utc_text(until, b, sizeof(b));
        snprintf(err, errlen, "%s %s: the certificate expires at %s: renew it", what, cert_path, b);
        *soon = true;
    }
    gnutls_x509_crt_deinit(crt);
    return rc;
}

int cas_tls_cert_validity(const char *pem, size_t len, const char *what, const char *path,
                          bool *soon, char *err, size_t errlen)
{
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
    return cert_validity(&d, GNUTLS_X509_FMT_PEM, what, path, time(NULL), soon, err, errlen);
}

/* cas_tls_load and cas_tls_reload: a certificate out of its validity is
 * refused on reload (the old one stays), and only logged at start. */
static int load(const char *cert_path, const char *key_path, bool require_client_cert,
                bool reload, char *err, size_t errlen);

int cas_tls_load(const char *cert_path, const char *key_path, bool require_client_cert, char *err,
                 size_t errlen)
{
    return load(cert_path, key_path, require_client_cert, false, err, errlen);
}

static int load(const char *cert_path, const char *key_path, bool require_client_cert,
                bool reload, char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = cas_pem_read(cert_path, "--tls-cert", false, &cert, &cert_len, err, errlen);
    if (rc < 0)
        return rc;
    rc = cas_pem_read(key_path, "--tls-key", true, &key, &key_len, err, errlen);
    if (rc < 0) {
        free(cert);
        return rc;
    }
    struct creds *c = calloc(1, sizeof(*c));
    if (!c) {
        free(cert);
        explicit_bzero(key, key_len);
        free(key);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->require_client = require_client_cert;
    rc = creds_parse(c, cert_path, cert, cert_len, key_path, key, key_len, err, errlen);
    free(cert);
    explicit_bzero(key, key_len);
    free(key);
    if (rc == 0) {
        bool soon;
        rc = cert_validity(&c->pcert[0].cert, GNUTLS_X509_FMT_DER, "--tls-cert", cert_path,
                           time(NULL), &soon, err, errlen);
        if (rc == -EKEYEXPIRED && !reload) {
            /* At start there is no older pair to keep: serve, and say so. */
            log_error("%s", err);
            rc = 0;
        } else if (soon) {
            log_warn("%s", err);
        }
    }
    if (rc < 0) {
        creds_free(c);
        return rc;
    }
    pthread_mutex_lock(&load_lock);
    char *cp = strdup(cert_path), *kp = strdup(key_path);
    if (!cp || !kp) {
        pthread_mutex_unlock(&load_lock);
        free(cp);
        free(kp);
        creds_free(c);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    free(cur_cert_path);
    free(cur_key_path);
    cur_cert_path = cp;
    cur_key_path = kp;
    cur_require = require_client_cert;
    c->older = atomic_load(&current);
    atomic_store(&current, c);
    pthread_mutex_unlock(&load_lock);
    return 0;
}

int cas_tls_reload(char *err, size_t errlen)
{
    pthread_mutex_lock(&load_lock);
    char *cp = cur_cert_path ? strdup(cur_cert_path) : NULL;
    char *kp = cur_key_path ? strdup(cur_key_path) : NULL;
    bool req = cur_require;
    pthread_mutex_unlock(&load_lock);
    if (!cp || !kp) {
        free(cp);
        free(kp);
        snprintf(err, errlen, "TLS is not configured");
        return -ENOENT;
    }
    int rc = load(cp, kp, req, true, err, errlen);
    free(cp);
    free(kp);
    return rc;
}

bool cas_tls_enabled(void)
{
    return atomic_load(&current) != NULL;
}

static int cert_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                         gnutls_pcert_st **pcert, unsigned int *pcert_length,
                         gnutls_privkey_t *privkey)
{
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct creds *c = atomic_load(&current);
    if (!c)
        return -1;
    if (c->require_client) {
        /* Runs while the ClientHello is processed, before the server asks
         * for the client's certificate: make that request a requirement and
         * have GnuTLS verify the certificate against the trust list (MHD
         * only sets GNUTLS_CERT_REQUEST, which lets a client send none). */
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(session, NULL, 0);
    }
    *pcert = c->pcert;
    *pcert_length = c->npcert;
    *privkey = c->key;
    return 0;
}

void *cas_tls_cert_callback(void)
{
    return (void *)cert_callback;
}
