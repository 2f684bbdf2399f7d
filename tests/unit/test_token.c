/*
 * test_token.c - CUnit suite for common/token.c: a token file is read whole
 * or refused, never cut, padded or trimmed beyond one trailing newline.
 */
#include "token.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-token-XXXXXX";

static const char *file_with(const char *name, const void *data, size_t len)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    if (len)
        CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

/* Reads path; returns the rc, the token in *tok (or NULL), the message. */
static int read_tok(const char *path, char **tok, char *err, size_t errlen)
{
    err[0] = '\0';
    *tok = (char *)1;
    int rc = cas_token_read(path, tok, err, errlen);
    if (rc < 0) {
        CU_ASSERT_PTR_NULL(*tok);
        CU_ASSERT(strlen(err) > 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    }
    return rc;
}

static void check_ok(const void *data, size_t len, const char *want)
{
    char err[512], *tok;
    const char *path = file_with("ok", data, len);
    int rc = read_tok(path, &tok, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0) {
        CU_ASSERT_STRING_EQUAL(tok, want);
        free(tok);
    } else {
        printf("\n  unexpected refusal: %s\n", err);
    }
}

static void check_refused(const char *name, const void *data, size_t len, const char *why)
{
    char err[512], *tok;
    const char *path = file_with(name, data, len);
    int rc = read_tok(path, &tok, err, sizeof(err));
    CU_ASSERT(rc < 0);
    if (rc < 0 && !strstr(err, why)) {
        printf("\n  %s: message \"%s\" lacks \"%s\"\n", name, err, why);
        CU_FAIL("message");
    }
}

static void test_accepts(void)
{
    check_ok("s3cret", 6, "s3cret");
    check_ok("s3cret\n", 7, "s3cret");
    check_ok("s3cret\r\n", 8, "s3cret");
    check_ok("a b", 3, "a b"); /* inner space is part of the token */
    /* The longest: CAS_TOKEN_MAX bytes, with or without newline. */
    char big[CAS_TOKEN_MAX + 2];
    memset(big, 'k', sizeof(big));
    big[CAS_TOKEN_MAX] = '\n';
    char want[CAS_TOKEN_MAX + 1];
    memset(want, 'k', CAS_TOKEN_MAX);
    want[CAS_TOKEN_MAX] = '\0';
    check_ok(big, CAS_TOKEN_MAX, want);
    check_ok(big, CAS_TOKEN_MAX + 1, want);
}

static void test_refuses_content(void)
{
    check_refused("empty", "", 0, "empty");
    check_refused("nl", "\n", 1, "empty");
    check_refused("crlf", "\r\n", 2, "empty");
    check_refused("nul", "abc\0def\n", 8, "NUL");
    check_refused("nul-end", "abcdef\0", 7, "NUL");
    check_refused("two-lines", "abc\ndef\n", 8, "line break");
    check_refused("two-newlines", "abc\n\n", 5, "line break");
    check_refused("cr", "abc\rdef", 7, "carriage return");
    check_refused("tab", "abc\tdef", 7, "control character");
    check_refused("lead-space", " abc", 4, "space");
    check_refused("trail-space", "abc \n", 5, "space");
    char big[CAS_TOKEN_MAX + 10];
    memset(big, 'k', sizeof(big));
    check_refused("huge", big, CAS_TOKEN_MAX + 1, "larger than");
    big[CAS_TOKEN_MAX + 1] = '\n';
    check_refused("huge-nl", big, CAS_TOKEN_MAX + 2, "larger than");
    char *mb = malloc(1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
    memset(mb, 'm', 1 << 20);
    check_refused("mib", mb, 1 << 20, "larger than");
    free(mb);
}

static void test_refuses_kinds(void)
{
    char err[512], *tok, path[256];
    snprintf(path, sizeof(path), "%s/missing", dir);
    CU_ASSERT_EQUAL(read_tok(path, &tok, err, sizeof(err)), -ENOENT);
    snprintf(path, sizeof(path), "%s/subdir", dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(path, 0700), 0);
    CU_ASSERT(read_tok(path, &tok, err, sizeof(err)) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a regular file"));
    rmdir(path);
    /* A FIFO without a writer: refused at once, never waited on. */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    CU_ASSERT_EQUAL_FATAL(mkfifo(path, 0600), 0);
    CU_ASSERT(read_tok(path, &tok, err, sizeof(err)) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a regular file"));
    unlink(path);
    CU_ASSERT(read_tok("/dev/null", &tok, err, sizeof(err)) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a regular file"));
}

/*
 * A regular file whose size is not what fstat() said, and one whose read()
 * fails: /proc and /sys files are regular files that report a size of 0 or
 * 4096 whatever they hold, and reading /proc/self/mem at offset 0 (an
 * unmapped address) fails with EIO. Deterministic stand-ins for a token file
 * that another program rewrites while we read it and for a disk error.
 */
static void test_refuses_unstable_or_unreadable(void)
{
    char err[512], *tok;
    struct stat st;
    /* size 0 by stat, a few bytes by read: never taken for the token */
    if (stat("/proc/self/comm", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
        CU_ASSERT_EQUAL(read_tok("/proc/self/comm", &tok, err, sizeof(err)), -EAGAIN);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "changed size while read (0, then"));
    } else {
        printf("\n  /proc/self/comm not a zero-size regular file here\n");
        CU_FAIL("no /proc");
    }
    /* size 4096 by stat, fewer bytes by read (a file cut while read) */
    const char *sysf = "/sys/kernel/mm/transparent_hugepage/enabled";
    if (stat(sysf, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4096) {
        CU_ASSERT_EQUAL(read_tok(sysf, &tok, err, sizeof(err)), -EAGAIN);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "changed size while read (4096, then"));
    }
    /* size 0 by stat, more than CAS_TOKEN_MAX by read: too large, not cut */
    CU_ASSERT_EQUAL(read_tok("/proc/self/smaps", &tok, err, sizeof(err)), -EFBIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "larger than"));
    /* read() fails: the error is the caller's, with the file named */
    CU_ASSERT_EQUAL(read_tok("/proc/self/mem", &tok, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, strerror(EIO)));
    /* a file that cannot be opened for reading (mode 0200) */
    if (geteuid() != 0) {
        const char *path = file_with("ok", "s3cret\n", 7);
        CU_ASSERT_EQUAL_FATAL(chmod(path, 0200), 0);
        CU_ASSERT_EQUAL(read_tok(path, &tok, err, sizeof(err)), -EACCES);
        chmod(path, 0600);
    }
}

static void cleanup_dir(void)
{
    const char *names[] = {"ok",         "empty",       "nl",           "crlf",    "nul",
                           "nul-end",    "two-lines",   "two-newlines", "cr",      "tab",
                           "lead-space", "trail-space", "huge",         "huge-nl", "mib"};
    char path[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("token", NULL, NULL);
    CU_add_test(s, "whole tokens, one trailing newline dropped", test_accepts);
    CU_add_test(s, "empty, NUL, several lines, spaces, too large: refused", test_refuses_content);
    CU_add_test(s, "missing, directory, FIFO, device: refused", test_refuses_kinds);
    CU_add_test(s, "size unlike stat's, read() failing, unreadable: refused",
                test_refuses_unstable_or_unreadable);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    cleanup_dir();
    return failed ? 1 : 0;
}
