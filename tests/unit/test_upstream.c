/*
 * test_upstream.c - the balancer's reader of backend response heads
 * (balancerd/upstream.c: upstream_head_end, upstream_parse_head): framing
 * that could make a wrong body look right (duplicate or conflicting
 * Content-Length, transfer codings, folded headers, missing lengths) is
 * refused or marked, Connection tokens are read in any case, heads may end
 * in bare LF, and a head too long or truncated is never taken as complete.
 */
#include "upstream.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bstream_head head;
static struct upstream_framing fr;
static char err[256];

/* Parses the head at the start of s (GET unless is_head); the parser's
 * return code, or -EAGAIN when no complete head was found. */
static int parse(const char *s, bool is_head)
{
    size_t len = strlen(s);
    size_t hl = upstream_head_end(s, len);
    if (!hl)
        return -EAGAIN;
    err[0] = '\0';
    return upstream_parse_head(s, hl, is_head, &head, &fr, err, sizeof(err));
}

static void test_plain_answer(void)
{
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"ab\"\r\n"
                          "Content-Type: application/octet-stream\r\n\r\nhello",
                          false),
                    0);
    CU_ASSERT_EQUAL(head.status, 200);
    CU_ASSERT_EQUAL(head.content_length, 5);
    CU_ASSERT_STRING_EQUAL(head.etag, "\"ab\"");
    CU_ASSERT_FALSE(head.chunked);
    CU_ASSERT_TRUE(fr.keep_alive);
    CU_ASSERT_FALSE(fr.until_close);
    CU_ASSERT_EQUAL(fr.body, 5);
    /* The head length stops at the empty line: the body is not part of it. */
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    CU_ASSERT_EQUAL(upstream_head_end(s, strlen(s)), strlen(s) - 5);
}

static void test_duplicate_content_length(void)
{
    /* The same value twice is one length (RFC 9112 6.3). */
    CU_ASSERT_EQUAL(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", false), 0);
    CU_ASSERT_EQUAL(head.content_length, 7);
    /* Two values: refused, whichever comes first. */
    CU_ASSERT_EQUAL(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\nContent-Length: 1000000\r\n\r\n",
              false),
        -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "conflicting"));
    CU_ASSERT_EQUAL(
        parse("HTTP/1.1 200 OK\r\ncontent-length: 1\r\nCONTENT-LENGTH: 2\r\n\r\n", false), -EPROTO);
    /* A list in one header, signs, spaces inside, hex, empty: refused. */
    const char *bad[] = {"5, 5", "+5", "-1", "5 5", "0x10", "", "5a", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char h[200];
        snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n", bad[i]);
        CU_ASSERT_EQUAL(parse(h, false), -EPROTO);
    }
}

static void test_connection_close_any_case(void)
{
    const char *forms[] = {"close",        "CLOSE", "Close", "cLoSe", "keep-alive, close",
                           "Upgrade,CLOSE"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char h[200];
        snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n",
                 forms[i]);
        CU_ASSERT_EQUAL(parse(h, false), 0);
        CU_ASSERT_FALSE(fr.keep_alive);
    }
    /* A token that only contains the word is not "close". */
    CU_ASSERT_EQUAL(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: closed-ish\r\n\r\n", false), 0);
    CU_ASSERT_TRUE(fr.keep_alive);
    /* HTTP/1.0 closes unless told otherwise, in any case. */
    CU_ASSERT_EQUAL(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false), 0);
    CU_ASSERT_FALSE(fr.keep_alive);
    CU_ASSERT_EQUAL(
        parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: KEEP-ALIVE\r\n\r\n", false), 0);
    CU_ASSERT_TRUE(fr.keep_alive);
}

static void test_bare_lf(void)
{
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\nContent-Length: 3\nConnection: close\n\nabc", false),
                    0);
    CU_ASSERT_EQUAL(head.status, 200);
    CU_ASSERT_EQUAL(head.content_length, 3);
    CU_ASSERT_FALSE(fr.keep_alive);
    const char *s = "HTTP/1.1 404 Not Found\nContent-Length: 2\n\r\n{}";
    CU_ASSERT_EQUAL(upstream_head_end(s, strlen(s)), strlen(s) - 2);
    CU_ASSERT_EQUAL(parse(s, false), 0);
    CU_ASSERT_EQUAL(head.status, 404);
}

static void test_folding_refused(void)
{
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n 2\r\n\r\n", false),
                    -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "folded"));
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length:\r\n\t5\r\n\r\n", false), -EPROTO);
    /* Space before the colon, no colon: refused too. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", false), -EPROTO);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\n", false), -EPROTO);
}

static void test_unsized_and_chunked(void)
{
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false), 0);
    CU_ASSERT_EQUAL(head.content_length, -1);
    CU_ASSERT_TRUE(fr.until_close);
    CU_ASSERT_FALSE(fr.keep_alive);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false), 0);
    CU_ASSERT_TRUE(head.chunked);
    CU_ASSERT_TRUE(fr.until_close);
    CU_ASSERT_FALSE(fr.keep_alive);
    /* A transfer coding next to a length: the coding wins, never the length. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: "
                          "identity\r\n\r\n",
                          false),
                    0);
    CU_ASSERT_TRUE(head.chunked);
    CU_ASSERT_TRUE(fr.until_close);
    /* HEAD, 204 and 304 have no body whatever the headers say. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true), 0);
    CU_ASSERT_EQUAL(fr.body, 0);
    CU_ASSERT_EQUAL(head.content_length, 1000);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 304 Not Modified\r\n\r\n", false), 0);
    CU_ASSERT_EQUAL(fr.body, 0);
    CU_ASSERT_FALSE(fr.until_close);
}

static void test_truncated_and_malformed(void)
{
    /* No empty line yet: not a head. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false), -EAGAIN);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Len", false), -EAGAIN);
    CU_ASSERT_EQUAL(parse("", false), -EAGAIN);
    const char *bad[] = {"HTTP/2 200 OK\r\n\r\n",          "HTTP/1.1 20 OK\r\n\r\n",
                         "HTTP/1.1 2000 OK\r\n\r\n",       "HTTP/1.1 abc OK\r\n\r\n",
                         "HTTP/1.1  200 OK\r\n\r\n",       "ICY 200 OK\r\n\r\n",
                         "HTTP/1.1 101 Switching\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(parse(bad[i], false), -EPROTO);
    /* A status line with no reason phrase is fine. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false), 0);
    CU_ASSERT_EQUAL(head.status, 404);
    /* 100 Continue is informational: the real head follows. */
    CU_ASSERT_EQUAL(parse("HTTP/1.1 100 Continue\r\n\r\n", false), 0);
    CU_ASSERT_TRUE(fr.informational);
}

static void test_huge_head(void)
{
    /* A long head parses in one piece when complete; the reader's buffer
     * limit (16 KiB) is what refuses longer ones on the wire. */
    size_t n = 64 * 1024;
    char *s = malloc(n + 64);
    size_t len = (size_t)snprintf(s, n + 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(s + len, 'a', n - len - 64);
    len = n - 64;
    len += (size_t)snprintf(s + len, 128, "\r\nContent-Length: 1\r\n\r\n");
    CU_ASSERT_EQUAL(upstream_head_end(s, len), len);
    CU_ASSERT_EQUAL(upstream_parse_head(s, len, false, &head, &fr, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(head.content_length, 1);
    /* Cut anywhere before the empty line: never a complete head. */
    for (size_t cut = 0; cut < len - 1; cut += 997)
        CU_ASSERT_EQUAL(upstream_head_end(s, cut), 0);
    CU_ASSERT_EQUAL(upstream_head_end(s, len - 1), 0);
    free(s);
}

/* Found by tests/fuzz/resphead.c: X-CAS-GC was read with strtoull on the
 * raw head, which skips the line end: an empty value took its digits from
 * the next header line or the body (here the GC id became 12345), and past
 * the end of the buffer (a SEGV under ASan). Only the value's own bytes
 * count now; anything but a plain number is no cycle (0). */
static void test_gc_header_reads_its_own_value(void)
{
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nX-CAS-GC: 42\r\nContent-Length: 5\r\n\r\n12345", false),
                    0);
    CU_ASSERT_EQUAL(head.gc_id, 42);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nX-CAS-GC:\r\nContent-Length: 5\r\n\r\n12345", false),
                    0);
    CU_ASSERT_EQUAL(head.gc_id, 0);
    CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-CAS-GC: 7x\r\n\r\n12345", false),
                    0);
    CU_ASSERT_EQUAL(head.gc_id, 0);
    /* The head alone, in a buffer of its exact size (ASan: no read past it). */
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-CAS-GC:\r\n\r\n";
    size_t len = strlen(h);
    char *exact = malloc(len);
    memcpy(exact, h, len);
    size_t hl = upstream_head_end(exact, len);
    CU_ASSERT_EQUAL_FATAL(hl, len);
    CU_ASSERT_EQUAL(upstream_parse_head(exact, hl, false, &head, &fr, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(head.gc_id, 0);
    free(exact);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("upstream", NULL, NULL);
    CU_add_test(s, "plain answer", test_plain_answer);
    CU_add_test(s, "duplicate and conflicting Content-Length", test_duplicate_content_length);
    CU_add_test(s, "Connection: close in any case", test_connection_close_any_case);
    CU_add_test(s, "heads ending in bare LF", test_bare_lf);
    CU_add_test(s, "folded headers refused", test_folding_refused);
    CU_add_test(s, "unsized and chunked answers marked", test_unsized_and_chunked);
    CU_add_test(s, "truncated and malformed heads", test_truncated_and_malformed);
    CU_add_test(s, "huge heads", test_huge_head);
    CU_add_test(s, "X-CAS-GC reads its own value only", test_gc_header_reads_its_own_value);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
