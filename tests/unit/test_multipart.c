/*
 * test_multipart.c - CUnit suite for common/multipart.c, the streaming
 * multipart/form-data reader both daemons use for Cask's POST /: a plain
 * form, every split of the body into two reads (and one byte at a time),
 * no closing delimiter (h19), two "file" parts (08), a field name in the
 * wrong case, the boundary inside the payload without its CRLF, CR and LF
 * at the edges of the part, a preamble and an epilogue, padding after the
 * delimiter, bad Content-Types and header blocks that never end.
 */
#include "multipart.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sink {
    char buf[4096];
    size_t len;
    uint64_t first_off;
    bool contiguous;
};

static int collect(void *cls, const char *data, size_t len, uint64_t off)
{
    struct sink *s = cls;
    if (s->len == 0)
        s->first_off = off;
    else if (off != s->first_off + s->len)
        s->contiguous = false;
    if (s->len + len > sizeof(s->buf))
        return -ENOSPC;
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

/*
 * Reads body with content type ct, fed in pieces: cut > 0 splits it into two
 * reads at cut; cut < 0 feeds one byte at a time; 0 all at once. Returns
 * what mp_feed or mp_finish returned; the file part goes to *s.
 */
static int read_form(const char *ct, const char *body, size_t len, long cut, struct sink *s,
                     char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->contiguous = true;
    struct mp_reader *r = malloc(sizeof(*r));
    int rc = mp_init(r, ct, collect, s, err, errlen);
    if (rc < 0) {
        free(r);
        return rc;
    }
    if (cut < 0) {
        for (size_t i = 0; rc == 0 && i < len; i++)
            rc = mp_feed(r, body + i, 1);
    } else if (cut > 0) {
        rc = mp_feed(r, body, (size_t)cut);
        if (rc == 0)
            rc = mp_feed(r, body + cut, len - (size_t)cut);
    } else {
        rc = mp_feed(r, body, len);
    }
    if (rc == 0)
        rc = mp_finish(r);
    snprintf(err, errlen, "%s", r->err);
    free(r);
    return rc;
}

static const char *CT = "multipart/form-data; boundary=XyZ";

/* The whole body read every way (all at once, each split, byte by byte)
 * gives the same file part, want; or the same refusal. */
static void check_every_split(const char *ct, const char *body, size_t len, const char *want,
                              size_t wantlen, const char *want_err)
{
    struct sink s;
    char err[256];
    for (long cut = -1; cut < (long)len; cut++) {
        int rc = read_form(ct, body, len, cut, &s, err, sizeof(err));
        if (want) {
            bool ok = rc == 0 && s.len == wantlen && memcmp(s.buf, want, wantlen) == 0 &&
                      s.contiguous && memcmp(body + s.first_off, want, wantlen) == 0;
            if (!ok)
                printf("\n  cut %ld: rc %d (%s), got %zu bytes, want %zu\n", cut, rc, err, s.len,
                       wantlen);
            CU_ASSERT_TRUE(ok);
        } else {
            bool ok = rc == -EINVAL && strstr(err, want_err);
            if (!ok)
                printf("\n  cut %ld: rc %d \"%s\", want \"%s\"\n", cut, rc, err, want_err);
            CU_ASSERT_TRUE(ok);
        }
        if (cut == 0 && len > 600)
            cut = (long)len - 300; /* long bodies: the edges are where it matters */
    }
}

#define BODY(lit) lit, sizeof(lit) - 1

static void test_plain_form(void)
{
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                           "filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                           "hello\r\n--XyZ--\r\n"),
                      BODY("hello"), NULL);
    /* other fields before and after are skipped; the quoted boundary */
    check_every_split("multipart/form-data; boundary=\"a b:c\"",
                      BODY("--a b:c\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                           "x\r\n--a b:c\r\ncontent-disposition: form-data; name=file\r\n\r\n"
                           "DATA\r\n--a b:c\r\nContent-Disposition: form-data; name=\"z\"\r\n\r\n"
                           "zz\r\n--a b:c--"),
                      BODY("DATA"), NULL);
    /* an empty file part */
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "\r\n--XyZ--"),
                      "", 0, NULL);
}

/* CR, LF and "--" at the edges of the payload belong to it. */
static void test_crlf_edges(void)
{
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "\r\n\r\r\n-\r\n--\r\n--Xy\r\n\r\n--XyZ--\r\n"),
                      BODY("\r\n\r\r\n-\r\n--\r\n--Xy\r\n"), NULL);
}

/* The boundary inside the payload without CRLF before it is payload. */
static void test_boundary_in_payload(void)
{
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "--XyZ--XyZ\n--XyZ\r--XyZ tail\r\n--XyZ--"),
                      BODY("--XyZ--XyZ\n--XyZ\r--XyZ tail"), NULL);
    /* ... but CRLF "--boundary" followed by something else is malformed:
     * a sender must pick a boundary its payload does not hold */
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "ab\r\n--XyZabc\r\n--XyZ--"),
                      NULL, 0, "malformed multipart delimiter");
}

/* h19: a body without its closing delimiter is refused, however it ends. */
static void test_no_closing_delimiter(void)
{
    const char *want = "ends without its closing boundary";
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "hello world"),
                      NULL, 0, want);
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "hello\r\n--XyZ"),
                      NULL, 0, want);
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "hello\r\n--XyZ-"),
                      NULL, 0, want);
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                           "hello\r\n--XyZ\r\n"),
                      NULL, 0, want);
    check_every_split(CT, BODY("--XyZ\r\nContent-Disposition: form-data; name=\"fi"), NULL, 0,
                      want);
    check_every_split(CT, BODY("no boundary line at all"), NULL, 0, "holds no part");
    check_every_split(CT, "", 0, NULL, 0, "holds no part");
}

/* 08: two parts named "file" are refused on both daemons, never joined. */
static void test_two_file_parts(void)
{
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                           "filename=\"a\"\r\n\r\nAAAA\r\n--XyZ\r\nContent-Disposition: "
                           "form-data; name=\"file\"; filename=\"b\"\r\n\r\nBBBB\r\n--XyZ--\r\n"),
                      NULL, 0, "two parts named \"file\"");
}

/* The field name matches exactly: "File" or "file " is another field. */
static void test_field_name_exact(void)
{
    const char *want = "no part named \"file\"";
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"File\"\r\n\r\n"
                           "x\r\n--XyZ--"),
                      NULL, 0, want);
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; name=\"files\"; "
                           "filename=\"file\"\r\n\r\nx\r\n--XyZ--"),
                      NULL, 0, want);
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\n"
                           "x\r\n--XyZ--"),
                      NULL, 0, want);
    /* a part without headers is no field at all */
    check_every_split(CT, BODY("--XyZ\r\n\r\nx\r\n--XyZ--"), NULL, 0, want);
}

/* A preamble and an epilogue are ignored; padding may follow a delimiter. */
static void test_preamble_epilogue_padding(void)
{
    check_every_split(CT,
                      BODY("This is the preamble. --XyZ is not at a line start.\r\n--XyZ  \t\r\n"
                           "Content-Disposition: form-data; name=\"file\"\r\n\r\nP\r\n--XyZ--"
                           "epilogue\r\n--XyZ\r\nwhatever"),
                      BODY("P"), NULL);
}

/* A payload longer than a read, with CRs near every read's end. */
static void test_long_payload(void)
{
    static char body[3000], want[2048];
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = i % 7 == 0 ? '\r' : i % 11 == 0 ? '\n' : (char)('a' + i % 26);
    int n = snprintf(body, sizeof(body),
                     "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
    memcpy(body + n, want, sizeof(want));
    n += (int)sizeof(want);
    n += snprintf(body + n, sizeof(body) - (size_t)n, "\r\n--XyZ--\r\n");
    check_every_split(CT, body, (size_t)n, want, sizeof(want), NULL);
}

static void test_bad_headers(void)
{
    struct sink s;
    char err[256];
    const char *bad_ct[] = {
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=a\rb",
        "multipart/form-data; boundary=\"abc ",
        "multipart/form-data; boundary=\"trailing \"",
        "multipart/form-data; boundary="
        "12345678901234567890123456789012345678901234567890123456789012345678901",
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-dataX; boundary=a",
        "text/plain; boundary=a",
        NULL};
    for (int i = 0; bad_ct[i]; i++) {
        int rc = read_form(bad_ct[i], "x", 1, 0, &s, err, sizeof(err));
        if (rc != -EINVAL)
            printf("\n  accepted Content-Type \"%s\"\n", bad_ct[i]);
        CU_ASSERT_EQUAL(rc, -EINVAL);
    }
    CU_ASSERT_TRUE(mp_is_form("Multipart/Form-Data; boundary=a"));
    CU_ASSERT_FALSE(mp_is_form(NULL));
    /* part headers that never end, within a bound */
    static char body[MP_MAX_HEADERS + 200];
    int n = snprintf(body, sizeof(body), "--XyZ\r\nX-Pad: ");
    memset(body + n, 'p', sizeof(body) - (size_t)n);
    CU_ASSERT_EQUAL(read_form(CT, body, sizeof(body), 0, &s, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "headers longer"));
    /* not form-data */
    check_every_split(CT,
                      BODY("--XyZ\r\nContent-Disposition: attachment; name=\"file\"\r\n\r\n"
                           "x\r\n--XyZ--"),
                      NULL, 0, "not form-data");
}

/* An error from the sink stops the reader and comes back from mp_feed. */
static void test_sink_error(void)
{
    struct sink s;
    char err[256];
    static char body[6000];
    int n = snprintf(body, sizeof(body),
                     "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
    memset(body + n, 'q', 5000); /* more than the sink holds */
    n += 5000;
    n += snprintf(body + n, sizeof(body) - (size_t)n, "\r\n--XyZ--");
    CU_ASSERT_EQUAL(read_form(CT, body, (size_t)n, 0, &s, err, sizeof(err)), -ENOSPC);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("multipart", NULL, NULL);
    CU_add_test(s, "plain form, other fields, quoted boundary", test_plain_form);
    CU_add_test(s, "CR, LF and dashes at the part's edges", test_crlf_edges);
    CU_add_test(s, "boundary inside the payload", test_boundary_in_payload);
    CU_add_test(s, "no closing delimiter is refused", test_no_closing_delimiter);
    CU_add_test(s, "two file parts are refused", test_two_file_parts);
    CU_add_test(s, "field name matches exactly", test_field_name_exact);
    CU_add_test(s, "preamble, epilogue, padding", test_preamble_epilogue_padding);
    CU_add_test(s, "payload longer than a read", test_long_payload);
    CU_add_test(s, "bad Content-Type and headers", test_bad_headers);
    CU_add_test(s, "sink error stops the reader", test_sink_error);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
