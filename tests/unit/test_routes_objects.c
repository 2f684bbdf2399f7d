/*
 * test_routes_objects.c - the request-body helpers of the object routes
 * (storaged/routes_objects.c): the line reader of key lists (POST
 * /objects/missing, POST /gc/mark), whichever way the body is cut into
 * chunks.
 */
#include "routes.h"

#include <CUnit/Basic.h>
#include <string.h>

struct lines {
    char got[8][300];
    size_t len[8];
    uint64_t lineno[8];
    int n;
};

static int collect(void *cls, const char *line, size_t len, uint64_t lineno)
{
    struct lines *l = cls;
    if (l->n < 8) {
        memcpy(l->got[l->n], line, len);
        l->len[l->n] = len;
        l->lineno[l->n] = lineno;
        l->n++;
    }
    return 0;
}

static void feed(const char *body, size_t chunk, struct lines *out)
{
    struct keylines kl;
    memset(&kl, 0, sizeof(kl));
    memset(out, 0, sizeof(*out));
    size_t len = strlen(body);
    for (size_t off = 0; off < len; off += chunk)
        CU_ASSERT_EQUAL(keylines_feed(&kl, body + off, len - off < chunk ? len - off : chunk,
                                      collect, out), 0);
    CU_ASSERT_EQUAL(keylines_finish(&kl, collect, out), 0);
}

static void test_lines_crlf_blank_and_last(void)
{
    struct lines l;
    feed("abc\r\n\nde\nlast", 3, &l);
    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    CU_ASSERT_EQUAL(l.len[0], 3);
    CU_ASSERT_NSTRING_EQUAL(l.got[0], "abc", 3);
    CU_ASSERT_EQUAL(l.lineno[1], 3); /* the blank line 2 is skipped but counted */
    CU_ASSERT_NSTRING_EQUAL(l.got[2], "last", 4);
}

/* Found by tests/fuzz/keylines.c: an overlong line used to be handed over
 * as whatever the buffer held (zeros, or the bytes of an earlier line) when
 * it arrived in one chunk, and as its own start when it arrived in small
 * ones; the 400 message then quoted another line. */
static void test_overlong_line_same_whatever_the_chunks(void)
{
    char body[400];
    memset(body, 'q', sizeof(body));
    memcpy(body, "0123456789abcdef0123456789abcdef01234567\n", 41); /* an earlier line */
    memset(body + 41, 'a', 300);
    body[341] = '\n';
    body[342] = '\0';
    struct lines whole, small;
    feed(body, sizeof(body), &whole);
    feed(body, 7, &small);
    CU_ASSERT_EQUAL_FATAL(whole.n, 2);
    CU_ASSERT_EQUAL_FATAL(small.n, 2);
    CU_ASSERT_EQUAL(whole.len[1], 255);
    CU_ASSERT_EQUAL(small.len[1], 255);
    char want[255];
    memset(want, 'a', sizeof(want));
    CU_ASSERT(memcmp(whole.got[1], want, 255) == 0);
    CU_ASSERT(memcmp(small.got[1], want, 255) == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("routes_objects", NULL, NULL);
    CU_add_test(s, "key lines: CRLF, blank lines, no final newline", test_lines_crlf_blank_and_last);
    CU_add_test(s, "key lines: an overlong line is the same whatever the chunks",
                test_overlong_line_same_whatever_the_chunks);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
