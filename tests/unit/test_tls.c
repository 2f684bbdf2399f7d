/*
 * test_tls.c - CUnit suite for common/tls.c: certificate and key files are
 * read whole or refused (kind, size, content, and a private key open to
 * group or others), and cas_tls_load refuses a key that is not the
 * certificate's, keeping the credentials loaded before.
 */
#include "tls.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-tls-XXXXXX";

static const char *file_with(const char *name, const void *data, size_t len, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    if (len)
        CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
    fclose(f);
    chmod(path, mode);
    return path;
}

static const char pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

static void test_reads_whole(void)
{
    char err[512] = "", *out = NULL;
    size_t len = 0;
    const char *p = file_with("c.pem", pem, strlen(pem), 0644);
    CU_ASSERT_EQUAL(cas_pem_read(p, "--tls-cert", false, &out, &len, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(len, strlen(pem));
    if (out)
        CU_ASSERT_STRING_EQUAL(out, pem);
    free(out);
    p = file_with("k.pem", pem, strlen(pem), 0600);
    CU_ASSERT_EQUAL(cas_pem_read(p, "--tls-key", true, &out, NULL, err, sizeof(err)), 0);
    free(out);
    p = file_with("k4.pem", pem, strlen(pem), 0400);
    CU_ASSERT_EQUAL(cas_pem_read(p, "--tls-key", true, &out, NULL, err, sizeof(err)), 0);
    free(out);
}

static void refused(const char *path, bool secret, int want_rc, const char *want_text)
{
    char err[512] = "", *out = (char *)1;
    int rc = cas_pem_read(path, "--tls-key", secret, &out, NULL, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, want_rc);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--tls-key"));
    if (!strstr(err, want_text)) {
        printf("\n  got \"%s\", want \"%s\"\n", err, want_text);
        CU_FAIL("message");
    }
}

static void test_refuses(void)
{
    refused(file_with("open.key", pem, strlen(pem), 0644), true, -EPERM, "chmod 600");
    refused(file_with("group.key", pem, strlen(pem), 0640), true, -EPERM, "mode 0640");
    refused(file_with("empty.pem", "", 0, 0600), true, -EINVAL, "empty");
    refused(file_with("nul.pem", "-----BEGIN X\0-----", 18, 0600), true, -EINVAL, "NUL");
    refused(file_with("text.pem", "hello\n", 6, 0600), true, -EINVAL, "-----BEGIN");
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none.pem", dir);
    refused(missing, false, -ENOENT, "No such file");
    refused(dir, false, -EINVAL, "not a regular file");
    size_t big = CAS_PEM_MAX + 1;
    char *b = malloc(big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    memset(b, 'A', big);
    memcpy(b, pem, strlen(pem));
    refused(file_with("big.pem", b, big, 0600), true, -EFBIG, "larger than");
    free(b);
}

/* A regular file whose size is not what fstat() said (a /proc file, size 0)
 * and one whose read() fails (/proc/self/mem at offset 0: EIO): stand-ins
 * for a certificate rewritten while read and for a disk error. */
static void test_refuses_unstable_or_unreadable(void)
{
    refused("/proc/self/comm", false, -EAGAIN, "changed size while read (0, then 1 bytes)");
    refused("/proc/self/mem", true, -EIO, strerror(EIO));
}

/* A real certificate and a key that is not its own: refused, and the
 * credentials stay unset. Made with openssl when it is there. */
static void test_load_mismatch(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && for n in a b; do openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.crt -days 1 -subj /CN=$n "
             ">/dev/null 2>&1 || exit 1; chmod 600 $n.key; done",
             dir);
    if (system(cmd) != 0) {
        printf("\n  openssl not available: skipped\n");
        return;
    }
    char crt[300], key_a[300], key_b[300], err[512] = "";
    snprintf(crt, sizeof(crt), "%s/a.crt", dir);
    snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
    snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
    /* A CA bundle must hold certificates: a key is refused by name. */
    char *ca = NULL;
    size_t ca_len = 0;
    CU_ASSERT_EQUAL(cas_pem_read_ca(crt, "ca_file", &ca, &ca_len, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NOT_NULL(ca);
    CU_ASSERT_TRUE(ca_len > 0);
    free(ca);
    CU_ASSERT_EQUAL(cas_pem_read_ca(key_a, "ca_file", &ca, NULL, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NULL(ca);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a PEM CA certificate bundle"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, key_a));
    CU_ASSERT_FALSE(cas_tls_enabled());
    CU_ASSERT_EQUAL(cas_tls_load(crt, key_b, false, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not match"));
    CU_ASSERT_FALSE(cas_tls_enabled());
    CU_ASSERT_EQUAL(cas_tls_reload(err, sizeof(err)), -ENOENT);
    CU_ASSERT_EQUAL(cas_tls_load(crt, key_a, false, err, sizeof(err)), 0);
    CU_ASSERT_TRUE(cas_tls_enabled());
    CU_ASSERT_EQUAL(cas_tls_reload(err, sizeof(err)), 0);
    /* A certificate file that went bad: the reload fails, TLS stays on. */
    file_with("a.crt", "junk\n", 5, 0644);
    CU_ASSERT_EQUAL(cas_tls_reload(err, sizeof(err)), -EINVAL);
    CU_ASSERT_TRUE(cas_tls_enabled());
}

/* Files that look like PEM but hold no certificate, or no key: refused by
 * GnuTLS's parse with a message naming the file, credentials unchanged. */
static void test_load_pem_not_parsable(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout c.key -out c.crt -days 1 -subj /CN=c >/dev/null 2>&1 && chmod 600 c.key",
             dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0); /* openssl is a test dependency (install-deps.sh) */
    static const char fake_cert[] = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                                    "-----END CERTIFICATE-----\n";
    static const char fake_key[] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n"
                                   "-----END PRIVATE KEY-----\n";
    char crt[300], key[300], err[512] = "";
    snprintf(crt, sizeof(crt), "%s/c.crt", dir);
    snprintf(key, sizeof(key), "%s/c.key", dir);
    bool before = cas_tls_enabled();
    const char *bad_crt = file_with("bad.crt", fake_cert, sizeof(fake_cert) - 1, 0644);
    char bad_crt_path[300];
    snprintf(bad_crt_path, sizeof(bad_crt_path), "%s", bad_crt);
    CU_ASSERT_EQUAL(cas_tls_load(bad_crt_path, key, false, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a PEM certificate chain"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, bad_crt_path));
    const char *bad_key = file_with("bad.key", fake_key, sizeof(fake_key) - 1, 0600);
    char bad_key_path[300];
    snprintf(bad_key_path, sizeof(bad_key_path), "%s", bad_key);
    CU_ASSERT_EQUAL(cas_tls_load(crt, bad_key_path, false, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a PEM private key"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, bad_key_path));
    CU_ASSERT_EQUAL(cas_tls_enabled(), before);
    CU_ASSERT_PTR_NOT_NULL(cas_tls_cert_callback());
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("tls", NULL, NULL);
    CU_add_test(s, "PEM files read whole", test_reads_whole);
    CU_add_test(s, "refused: size unlike stat's, read() failing",
                test_refuses_unstable_or_unreadable);
    CU_add_test(s, "PEM that GnuTLS cannot parse: certificate, key", test_load_pem_not_parsable);
    CU_add_test(s, "refused: open key, empty, NUL, not PEM, missing, directory, too large",
                test_refuses);
    CU_add_test(s, "CA bundles parsed; a key that is not the certificate's; reload keeps the old",
                test_load_mismatch);
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
