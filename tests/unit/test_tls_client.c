/*
 * test_tls_client.c - CUnit suite for common/tls_client.c: credentials,
 * and client sessions against an in-process GnuTLS server over a socket
 * pair (certificates made with openssl, a test dependency): the handshake
 * without waiting, verification of the chain and of the name (an IP
 * address and a DNS name), reads without waiting, a clean close and a cut.
 */
#define _GNU_SOURCE
#include "tls_client.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-tlsclient-XXXXXX";

static char *slurp(const char *name, size_t *len)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* The test server: one GnuTLS session on fd with srv.pem / srv.key; after
 * the handshake it echoes one request, then closes cleanly (bye) or cuts
 * (cut: no close_notify). */
struct server {
    int fd;
    bool cut;
    int handshake_rc;
};

static void *serve(void *p)
{
    struct server *sv = p;
    gnutls_certificate_credentials_t cred;
    gnutls_session_t s;
    char crt[300], key[300];
    snprintf(crt, sizeof(crt), "%s/srv.pem", dir);
    snprintf(key, sizeof(key), "%s/srv.key", dir);
    gnutls_certificate_allocate_credentials(&cred);
    gnutls_certificate_set_x509_key_file(cred, crt, key, GNUTLS_X509_FMT_PEM);
    gnutls_init(&s, GNUTLS_SERVER);
    gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_transport_set_int(s, sv->fd);
    int rc;
    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    sv->handshake_rc = rc;
    if (rc == 0) {
        char buf[256];
        ssize_t n = gnutls_record_recv(s, buf, sizeof(buf));
        if (n > 0) {
            /* Two records in one go: the client has the second one
             * decrypted and pending after reading the first. */
            gnutls_record_cork(s);
            gnutls_record_send(s, buf, (size_t)n);
            gnutls_record_send(s, "!", 1);
            gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
        }
        if (!sv->cut)
            gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    shutdown(sv->fd, SHUT_RDWR);
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    return NULL;
}

static struct cas_tls_client *client(const char *ca_name)
{
    size_t len = 0;
    char *ca = slurp(ca_name, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca);
    struct cas_tls_client *cl = NULL;
    char err[300];
    CU_ASSERT_EQUAL(cas_tls_client_new(ca, len, NULL, 0, NULL, 0, &cl, err, sizeof(err)), 0);
    free(ca);
    return cl;
}

/* Runs the handshake the way the balancer's race does: steps without
 * waiting, polling for what the session says it waits for. */
static int handshake(struct cas_tls_session *t, int fd, char *err, size_t errlen)
{
    for (int i = 0; i < 1000; i++) {
        int rc = cas_tls_handshake(t, err, errlen);
        if (rc != 0)
            return rc;
        struct pollfd p = {.fd = fd, .events = cas_tls_session_events(t)};
        poll(&p, 1, 5000);
    }
    return -ETIMEDOUT;
}

/* A session to a server that shows srv.pem; host is the name the client
 * expects. The handshake's result; *err says why it failed. */
static int session(const char *ca, const char *host, bool cut, char *err, size_t errlen,
                   bool exchange)
{
    int sp[2];
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    struct server sv = {.fd = sp[1], .cut = cut};
    pthread_t th;
    pthread_create(&th, NULL, serve, &sv);
    struct cas_tls_client *cl = client(ca);
    struct cas_tls_session *t = NULL;
    CU_ASSERT_EQUAL_FATAL(cas_tls_session_new(cl, sp[0], host, &t, err, errlen), 0);
    cas_tls_client_put(cl); /* the session keeps its own reference */
    int rc = handshake(t, sp[0], err, errlen);
    if (rc == 1 && exchange) {
        char buf[64];
        /* Nothing sent yet: nothing to read, and no waiting for it. */
        CU_ASSERT_EQUAL(cas_tls_recv(t, buf, sizeof(buf), true), -EAGAIN);
        CU_ASSERT_EQUAL(cas_tls_send_all(t, "ping", 4), 0);
        struct pollfd p = {.fd = sp[0], .events = POLLIN};
        poll(&p, 1, 5000);
        ssize_t n = cas_tls_recv(t, buf, 4, false);
        CU_ASSERT_EQUAL(n, 4);
        CU_ASSERT_EQUAL(memcmp(buf, "ping", 4), 0);
        /* The second record came in the same read: pending, decrypted. */
        if (cas_tls_pending(t) == 0) {
            poll(&p, 1, 5000);
            cas_tls_recv(t, buf, 0, true);
        }
        n = cas_tls_recv(t, buf, sizeof(buf), false);
        CU_ASSERT_EQUAL(n, 1);
        poll(&p, 1, 5000);
        n = cas_tls_recv(t, buf, sizeof(buf), false);
        CU_ASSERT_EQUAL(n, cut ? -ECONNRESET : 0);
    }
    /* A client that refused the server sends nothing more: its close ends
     * the server's wait for the client's Finished. */
    cas_tls_session_free(t);
    close(sp[0]);
    pthread_join(th, NULL);
    close(sp[1]);
    return rc;
}

static int make_certs(void)
{
    char cmd[3000];
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout other.key -out other.pem -days 2 -subj /CN=other-ca >/dev/null 2>&1 && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN=store.test >/dev/null 2>&1 && "
             "printf 'subjectAltName=IP:127.0.0.1,DNS:store.test\\n' > ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
             "-days 2 -extfile ext >/dev/null 2>&1",
             dir);
    return system(cmd);
}

static void test_credentials(void)
{
    char err[300] = "";
    struct cas_tls_client *cl = NULL;
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                               "-----END CERTIFICATE-----\n";
    CU_ASSERT_EQUAL(cas_tls_client_new(junk, sizeof(junk) - 1, NULL, 0, NULL, 0, &cl, err,
                                       sizeof(err)),
                    -EINVAL);
    CU_ASSERT_PTR_NULL(cl);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CA bundle"));
    /* A client certificate with a key that is not its own. */
    size_t ca_len, crt_len, key_len;
    char *ca = slurp("ca.pem", &ca_len), *crt = slurp("srv.pem", &crt_len),
         *key = slurp("other.key", &key_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(key);
    CU_ASSERT_EQUAL(cas_tls_client_new(ca, ca_len, crt, crt_len, key, key_len, &cl, err,
                                       sizeof(err)),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "client certificate"));
    free(key);
    key = slurp("srv.key", &key_len);
    CU_ASSERT_EQUAL(cas_tls_client_new(ca, ca_len, crt, crt_len, key, key_len, &cl, err,
                                       sizeof(err)),
                    0);
    CU_ASSERT_PTR_EQUAL(cas_tls_client_ref(cl), cl);
    cas_tls_client_put(cl);
    cas_tls_client_put(cl);
    cas_tls_client_put(NULL);
    free(ca);
    free(crt);
    free(key);
}

static void test_handshake_and_data(void)
{
    char err[300] = "";
    CU_ASSERT_EQUAL(session("ca.pem", "127.0.0.1", false, err, sizeof(err), true), 1);
    CU_ASSERT_EQUAL(session("ca.pem", "store.test", false, err, sizeof(err), true), 1);
    /* Without close_notify: a cut, not an end. */
    CU_ASSERT_EQUAL(session("ca.pem", "127.0.0.1", true, err, sizeof(err), true), 1);
}

static void test_verification(void)
{
    char err[300] = "";
    CU_ASSERT_EQUAL(session("ca.pem", "127.0.0.2", false, err, sizeof(err), false), -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "refused"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "127.0.0.2"));
    err[0] = '\0';
    CU_ASSERT_EQUAL(session("ca.pem", "other.test", false, err, sizeof(err), false), -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "refused"));
    err[0] = '\0';
    CU_ASSERT_EQUAL(session("other.pem", "127.0.0.1", false, err, sizeof(err), false), -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "refused"));
}

static void test_peer_closes_during_handshake(void)
{
    int sp[2];
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    struct cas_tls_client *cl = client("ca.pem");
    struct cas_tls_session *t = NULL;
    char err[300] = "";
    CU_ASSERT_EQUAL_FATAL(cas_tls_session_new(cl, sp[0], "127.0.0.1", &t, err, sizeof(err)), 0);
    /* Nothing has come: the handshake waits for the socket, no blocking. */
    CU_ASSERT_EQUAL(cas_tls_handshake(t, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cas_tls_session_events(t), POLLIN);
    close(sp[1]);
    CU_ASSERT_EQUAL(cas_tls_handshake(t, err, sizeof(err)), -ECONNRESET);
    cas_tls_session_free(t);
    cas_tls_client_put(cl);
    close(sp[0]);
    char host[300];
    memset(host, 'a', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    cl = client("ca.pem");
    CU_ASSERT_EQUAL(cas_tls_session_new(cl, 0, host, &t, err, sizeof(err)), -EINVAL);
    cas_tls_client_put(cl);
}

int main(void)
{
    if (!mkdtemp(dir) || make_certs() != 0)
        return 1; /* openssl is a test dependency (install-deps.sh) */
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("tls_client", NULL, NULL);
    CU_add_test(s, "credentials: bad CA, a key not the certificate's, references",
                test_credentials);
    CU_add_test(s, "handshake without waiting, data, pending records, close and cut",
                test_handshake_and_data);
    CU_add_test(s, "refused: another address, another name, another CA", test_verification);
    CU_add_test(s, "peer gone during the handshake; host name too long",
                test_peer_closes_during_handshake);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
