/*
 * test_cli_client.c - CUnit suite for ca-cas/client.c, the tool's libcurl
 * layer, against a scripted server (fakesrv.h): request bodies from memory,
 * a file (at an offset, a bounded size) or a reader, and a file that is
 * shorter than announced (an error, never a short object sent as whole);
 * the response to a sink, and a sink that refuses; Location and
 * X-CAS-Copies read from the answer; the server's hash algorithm asked once;
 * error texts for every status; an unreachable server.
 */
#include "fakesrv.h"

#include <errno.h>

static struct cli_client *client(const struct cli_ctx *ctx)
{
    struct cli_client *c = NULL;
    char err[CLI_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(cli_client_new(ctx, &c, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(cli_client_ctx(c), ctx);
    return c;
}

static void test_error_text(void)
{
    static const struct {
        long status;
        const char *body;
        const char *want;
    } cases[] = {
        {400, NULL, "bad request (HTTP 400)"},
        {403, "", "forbidden (HTTP 403)"},
        {404, "  \n", "not found (HTTP 404)"},
        {405, NULL, "method not allowed (HTTP 405)"},
        {409, NULL, "conflict (HTTP 409)"},
        {416, NULL, "range not satisfiable (HTTP 416)"},
        {503, NULL, "service unavailable (HTTP 503)"},
        {507, NULL, "insufficient storage (HTTP 507)"},
        {418, NULL, "request failed (HTTP 418)"},
        {599, NULL, "server error (HTTP 599)"},
        /* An HTML page says nothing useful: the reason instead. */
        {502, "<html><body>Bad Gateway</body></html>",
         "bad gateway (HTTP 502); the answer came from a proxy in front of ca-cas: is ca-cas "
         "behind it running?"},
        /* Our own 502 (a balancer with no backend) gets no proxy hint. */
        {502, "{\"error\":\"no backend answered\"}", "no backend answered (HTTP 502)"},
        {413, "\n{\"error\":\"object is over the limit\"}", "object is over the limit (HTTP 413)"},
        /* JSON without "error": taken as text, its first line. */
        {500, "{\"message\":\"x\"}\nmore", "{\"message\":\"x\"} (HTTP 500)"},
    };
    char out[CLI_ERR_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_http_error_text(cases[i].status, cases[i].body, out, sizeof(out));
        CU_ASSERT_STRING_EQUAL(out, cases[i].want);
        if (strcmp(out, cases[i].want) != 0)
            printf("\n  got \"%s\"\n", out);
    }
    /* A long text line is cut at 300 characters. */
    char body[1000];
    memset(body, 'a', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    cli_http_error_text(500, body, out, sizeof(out));
    CU_ASSERT_EQUAL(strlen(out), 300 + strlen(" (HTTP 500)"));
    /* A small output buffer: cut, terminated. */
    char small[10];
    cli_http_error_text(404, NULL, small, sizeof(small));
    CU_ASSERT_STRING_EQUAL(small, "not found");
}

static void test_body_from_file(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    struct cli_client *c = client(&ctx);
    char path[] = "/tmp/cas-test-client-XXXXXX", err[CLI_ERR_MAX];
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "0123456789", 10), 10);
    fake_reset();
    fake_on_header("PUT", "/objects/k", 201, "k\n", "X-CAS-Copies: 2");

    /* Bytes 3..7 of the file. */
    struct cli_http h;
    cli_http_init(&h, "PUT", "/objects/k");
    h.body_fd = fd;
    h.body_offset = 3;
    h.body_size = 5;
    struct cas_hash *hash = cas_hash_new(cas_hash_by_name("sha1"));
    h.body_hash = hash;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 201);
    CU_ASSERT_EQUAL(h.copies, 2);
    CU_ASSERT_EQUAL(h.replicas, -1);
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "34567");
    /* The hash saw exactly the bytes sent. */
    unsigned char got[20], want[20];
    cas_hash_final(hash, got);
    cas_hash_buffer(cas_hash_by_name("sha1"), "34567", 5, want);
    CU_ASSERT_EQUAL(memcmp(got, want, 20), 0);
    cas_hash_free(hash);
    cli_http_free(&h);

    /* Announced 20 bytes from offset 3 of a 10-byte file: refused with a
     * message, not sent short. */
    cli_http_init(&h, "PUT", "/objects/k");
    h.body_fd = fd;
    h.body_offset = 3;
    h.body_size = 20;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), -EPIPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the file shrank while being sent"));
    cli_http_free(&h);

    /* Until EOF (size unknown): chunked, all of it. */
    fake_reset();
    fake_on("POST", "/objects", 201, "k\n", 0);
    cli_http_init(&h, "POST", "/objects");
    h.body_fd = fd;
    h.body_size = UINT64_MAX;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 201);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "0123456789");
    cli_http_free(&h);
    close(fd);
    unlink(path);
    cli_client_free(c);
}

struct reader {
    const char *data;
    size_t len, pos;
    int fail_at; /* fail once pos reaches this (with -EIO); -1 never */
};

static ssize_t read_some(void *cls, char *buf, size_t max)
{
    struct reader *r = cls;
    if (r->fail_at >= 0 && r->pos >= (size_t)r->fail_at)
        return -EIO;
    size_t n = r->len - r->pos < max ? r->len - r->pos : max;
    if (n > 3)
        n = 3; /* small pieces */
    memcpy(buf, r->data + r->pos, n);
    r->pos += n;
    return (ssize_t)n;
}

static void test_body_from_reader(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    struct cli_client *c = client(&ctx);
    char err[CLI_ERR_MAX];
    fake_reset();
    fake_on("PUT", "/objects/r", 201, "r\n", 0);
    struct reader r = {"hello, reader", 13, 0, -1};
    struct cli_http h;
    cli_http_init(&h, "PUT", "/objects/r");
    h.body_read = read_some;
    h.body_read_cls = &r;
    h.body_size = 13;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 201);
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "hello, reader");
    cli_http_free(&h);

    /* The reader fails: its error, and the request is abandoned. */
    struct reader bad = {"hello, reader", 13, 0, 6};
    cli_http_init(&h, "PUT", "/objects/r");
    h.body_read = read_some;
    h.body_read_cls = &bad;
    h.body_size = 13;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "reading the data to send"));
    cli_http_free(&h);

    /* The reader ends before the announced size. */
    struct reader shorter = {"abc", 3, 0, -1};
    cli_http_init(&h, "PUT", "/objects/r");
    h.body_read = read_some;
    h.body_read_cls = &shorter;
    h.body_size = 10;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), -EPIPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the file shrank while being sent"));
    cli_http_free(&h);
    cli_client_free(c);
}

static int refuse(void *cls, const char *data, size_t len)
{
    (void)data;
    (void)len;
    struct cli_http *h = cls;
    snprintf(h->sink_err, sizeof(h->sink_err), "disk full writing the copy");
    return -ENOSPC;
}

static int keep(void *cls, const char *data, size_t len)
{
    cas_buf_append(cls, data, len);
    return 0;
}

static void test_sink(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    struct cli_client *c = client(&ctx);
    char err[CLI_ERR_MAX];
    fake_reset();
    fake_on("GET", "/objects/s", 200, "the object's bytes", 0);
    fake_on("GET", "/objects/missing", 404, "{\"error\":\"not found: missing\"}", 0);

    struct cas_buf got;
    cas_buf_init(&got);
    struct cli_http h;
    cli_http_init(&h, "GET", "/objects/s");
    h.sink = keep;
    h.sink_cls = &got;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.content_length, 18);
    CU_ASSERT_EQUAL(got.len, 18);
    CU_ASSERT_EQUAL(memcmp(got.data, "the object's bytes", 18), 0);
    CU_ASSERT_EQUAL(h.resp.len, 0);
    cli_http_free(&h);

    /* An error answer is kept in resp, not handed to the sink. */
    cas_buf_reset(&got);
    cli_http_init(&h, "GET", "/objects/missing");
    h.sink = keep;
    h.sink_cls = &got;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 404);
    CU_ASSERT_EQUAL(got.len, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(h.resp.data, "not found: missing"));
    cli_http_free(&h);
    cas_buf_free(&got);

    /* A sink that refuses aborts with its own message and code. */
    cli_http_init(&h, "GET", "/objects/s");
    h.sink = refuse;
    h.sink_cls = &h;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), -ENOSPC);
    CU_ASSERT_STRING_EQUAL(err, "disk full writing the copy");
    cli_http_free(&h);
    cli_client_free(c);
}

static void test_headers_read(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    struct cli_client *c = client(&ctx);
    char err[CLI_ERR_MAX];
    fake_reset();
    char longloc[400] = "Location: /objects/";
    memset(longloc + strlen(longloc), 'b', 300);
    fake_on_header("POST", "/objects", 201, "k\n", "Location: /objects/abc");
    fake_on_header("PUT", "/objects/long", 201, "k\n", longloc);
    fake_on_header("PUT", "/objects/bad", 201, "k\n", "X-CAS-Copies: 2x");
    fake_on_header("PUT", "/objects/rep", 201, "k\n", "X-CAS-Replicas: 3");

    struct cli_http h;
    cli_http_init(&h, "POST", "/objects");
    h.body = "abc";
    h.body_len = 3;
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(h.location, "/objects/abc");
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "abc");
    cli_http_free(&h);

    /* A Location longer than the field: cut, terminated. */
    cli_http_init(&h, "PUT", "/objects/long");
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(strlen(h.location), sizeof(h.location) - 1);
    CU_ASSERT_EQUAL(strncmp(h.location, "/objects/bbb", 12), 0);
    /* A PUT without a body sends the empty object. */
    CU_ASSERT_EQUAL(fake.reqs[1].body_len, 0);
    cli_http_free(&h);

    /* A count that is not a number is not taken. */
    cli_http_init(&h, "PUT", "/objects/bad");
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.copies, -1);
    cli_http_free(&h);
    cli_http_init(&h, "PUT", "/objects/rep");
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.replicas, 3);
    CU_ASSERT_EQUAL(h.copies, -1);
    cli_http_free(&h);

    /* HEAD: the length, no body. */
    fake_on("GET", "/objects/h", 200, "12345", 0);
    cli_http_init(&h, "HEAD", "/objects/h");
    CU_ASSERT_EQUAL(cli_http_do(c, &h, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(h.status, 200);
    CU_ASSERT_EQUAL(h.content_length, 5);
    CU_ASSERT_EQUAL(h.resp.len, 0);
    cli_http_free(&h);
    cli_client_free(c);
}

static void test_call(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    struct cli_client *c = client(&ctx);
    char err[CLI_ERR_MAX];
    long status = -1;
    struct cas_buf out;
    cas_buf_init(&out);
    fake_reset();
    fake_on("POST", "/objects/missing", 200, "", 0);
    fake_on("DELETE", "/objects/x", 404, "{\"error\":\"not found: x\"}", 0);
    /* An empty 2xx body is an empty string, not NULL. */
    CU_ASSERT_EQUAL(cli_call(c, "POST", "/objects/missing", "k\n", 2, &out, &status, err,
                             sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out.data);
    CU_ASSERT_STRING_EQUAL(out.data, "");
    CU_ASSERT_STRING_EQUAL(fake.reqs[0].body, "k\n");
    CU_ASSERT_EQUAL(cli_call(c, "DELETE", "/objects/x", NULL, 0, &out, &status, err, sizeof(err)),
                    -EIO);
    CU_ASSERT_EQUAL(status, 404);
    CU_ASSERT_STRING_EQUAL(err, "not found: x (HTTP 404)");
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].method, "DELETE");
    cas_buf_free(&out);
    cli_client_free(c);
}

static void test_algo(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char err[CLI_ERR_MAX];
    const struct cas_hash_algo *a = NULL;
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"node\":\"n\",\"hash\":\"sha256\",\"tokens\":[]}", 1);
    fake_on("GET", "/ring", 200, "{\"hash\":\"md5\"}", 1);
    fake_on("GET", "/ring", 200, "{\"tokens\":[]}", 1);
    fake_on("GET", "/ring", 503, "{\"error\":\"starting\"}", 1);
    fake_on("GET", "/ring", 404, "{\"error\":\"no such route\"}", 1);

    struct cli_client *c = client(&ctx);
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_STRING_EQUAL(a->name, "sha256");
    /* Asked once per client. */
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(a->name, "sha256");
    CU_ASSERT_EQUAL(fake.nreqs, 1);
    cli_client_free(c);

    c = client(&ctx);
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), -ENOTSUP);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"md5\""));
    cli_client_free(c);
    /* Not said: SHA-1, the default. */
    c = client(&ctx);
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(a->name, "sha1");
    cli_client_free(c);
    /* A server error is not guessed over. */
    c = client(&ctx);
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "asking the server's hash algorithm (GET /ring): starting"));
    cli_client_free(c);
    /* A server without /ring (an older one): SHA-1. */
    c = client(&ctx);
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(a->name, "sha1");
    cli_client_free(c);
    CU_ASSERT_EQUAL(fake.nreqs, 5);
}

static void test_unreachable(void)
{
    struct cli_ctx ctx = fake_ctx(false, "http://127.0.0.1:1");
    struct cli_client *c = client(&ctx);
    char err[CLI_ERR_MAX];
    const struct cas_hash_algo *a = NULL;
    long status = -1;
    CU_ASSERT_EQUAL(cli_call(c, "GET", "/status", NULL, 0, NULL, &status, err, sizeof(err)), -EIO);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach server http://127.0.0.1:1"));
    CU_ASSERT_EQUAL(cli_client_algo(c, &a, err, sizeof(err)), -EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach server"));
    cli_client_free(c);
}

int main(void)
{
    if (fake_start() < 0)
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("client", NULL, NULL);
    CU_add_test(s, "error text for every status", test_error_text);
    CU_add_test(s, "body from a file: offset, size, shrunk, until EOF", test_body_from_file);
    CU_add_test(s, "body from a reader: whole, failing, short", test_body_from_reader);
    CU_add_test(s, "response to a sink; errors kept; a refusing sink", test_sink);
    CU_add_test(s, "Location, X-CAS-Copies, X-CAS-Replicas, HEAD", test_headers_read);
    CU_add_test(s, "cli_call: empty body, server error text", test_call);
    CU_add_test(s, "server hash algorithm asked once", test_algo);
    CU_add_test(s, "server not reachable", test_unreachable);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    fake_stop();
    return failed ? 1 : 0;
}
