/*
 * test_cli_util.c - the pure helpers of the ca-cas tool (ca-cas/util.c,
 * stats.c, progress.c, jsonview.c, client.c's error wording): server URLs,
 * keys as users type them, durations and sizes, percentiles, the bench mix,
 * the progress bar's text and the readable rendering of status JSON; and
 * outfile.c, -o FILE written so that a failure leaves FILE as it was.
 */
#include "cli.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void check_url(const char *in, const char *want)
{
    char out[CLI_URL_MAX], err[CLI_ERR_MAX];
    int rc = cli_server_url(in, out, sizeof(out), err, sizeof(err));
    if (want) {
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(out, want);
    } else {
        CU_ASSERT_EQUAL(rc, -EINVAL);
        CU_ASSERT(strlen(err) > 0);
    }
}

static void test_server_url(void)
{
    check_url("127.0.0.1:6001", "http://127.0.0.1:6001");
    check_url("localhost:6010/", "http://localhost:6010");
    check_url("http://10.0.0.1:6001", "http://10.0.0.1:6001");
    check_url("HTTPS://cas.example.com/", "https://cas.example.com");
    check_url("http://proxy:80/cas//", "http://proxy:80/cas");
    check_url("[::1]:6001", "http://[::1]:6001");
    check_url("  host:1 ", "http://host:1");
    check_url("", NULL);
    check_url("ftp://host:21", NULL);
    check_url("http://", NULL);
    check_url("http:///path", NULL);
    check_url("ho st:1", NULL);
    /* A query or fragment would swallow every request path appended. */
    check_url("http://host:1?x=1", NULL);
    check_url("host:1/?x=1", NULL);
    check_url("http://host:1/cas#frag", NULL);
    check_url("http://host:1#", NULL);
}

static void test_parse_key(void)
{
    struct cas_key k;
    char hex[CAS_MAX_HEX + 1], err[CLI_ERR_MAX];
    const char *sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    const char *sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    CU_ASSERT_EQUAL(cli_parse_key(sha1, 40, &k, hex, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(k.algo->name, "sha1");
    CU_ASSERT_STRING_EQUAL(hex, sha1);

    CU_ASSERT_EQUAL(
        cli_parse_key("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", 40, &k, hex, err, sizeof(err)),
        0);
    CU_ASSERT_STRING_EQUAL(hex, sha1);

    CU_ASSERT_EQUAL(cli_parse_key("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709", 45, &k, hex, err,
                                  sizeof(err)),
                    0);
    CU_ASSERT_STRING_EQUAL(hex, sha1);

    CU_ASSERT_EQUAL(cli_parse_key(sha256, 64, &k, hex, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(k.algo->name, "sha256");
    CU_ASSERT_STRING_EQUAL(hex, sha256);

    char pre[80];
    snprintf(pre, sizeof(pre), "sha256:%s", sha256);
    CU_ASSERT_EQUAL(cli_parse_key(pre, strlen(pre), &k, hex, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(k.algo->name, "sha256");

    /* wrong length, bad digit, unknown prefix, prefix of the other length */
    CU_ASSERT_EQUAL(cli_parse_key("abc", 3, &k, hex, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"abc\""));
    CU_ASSERT_EQUAL(
        cli_parse_key("zz39a3ee5e6b4b0d3255bfef95601890afd80709", 40, &k, hex, err, sizeof(err)),
        -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "zz39"));
    CU_ASSERT_EQUAL(
        cli_parse_key("md5:d41d8cd98f00b204e9800998ecf8427e", 36, &k, hex, err, sizeof(err)),
        -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "prefix"));
    CU_ASSERT_EQUAL(cli_parse_key("sha256:da39a3ee5e6b4b0d3255bfef95601890afd80709", 47, &k, hex,
                                  err, sizeof(err)),
                    -EINVAL);
    CU_ASSERT_EQUAL(
        cli_parse_key("../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaa", 40, &k, hex, err, sizeof(err)),
        -EINVAL);
}

static void test_duration(void)
{
    double d;
    CU_ASSERT_EQUAL(cli_parse_duration("10", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 10, 1e-9);
    CU_ASSERT_EQUAL(cli_parse_duration("1.5s", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 1.5, 1e-9);
    CU_ASSERT_EQUAL(cli_parse_duration("250ms", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 0.25, 1e-9);
    CU_ASSERT_EQUAL(cli_parse_duration("2m", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 120, 1e-9);
    CU_ASSERT_EQUAL(cli_parse_duration("1h", &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 3600, 1e-9);
    CU_ASSERT_EQUAL(cli_parse_duration("", &d), -EINVAL);
    CU_ASSERT_EQUAL(cli_parse_duration("-1", &d), -EINVAL);
    CU_ASSERT_EQUAL(cli_parse_duration("10x", &d), -EINVAL);
    CU_ASSERT_EQUAL(cli_parse_duration("s", &d), -EINVAL);
}

static void test_human(void)
{
    char b[32];
    cli_human_bytes(0, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "0 B");
    cli_human_bytes(1023, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "1023 B");
    cli_human_bytes(1536, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "1.50 KiB");
    cli_human_bytes(100ULL << 30, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "100 GiB");
    cli_human_bytes(UINT64_MAX, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "16.0 EiB");
    cli_human_duration(12.34, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "12.3s");
    cli_human_duration(90, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "1m 30s");
    cli_human_duration(3 * 86400 + 4 * 3600 + 5, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "3d 4h");
    /* Found by tests/fuzz/jsonview.c: a server's "uptime_seconds" past
     * 2^64 (or NaN) was converted to an integer, undefined behaviour that
     * the sanitized build of this suite reports. */
    cli_human_duration(4.4e85, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "4.4e+85s");
    cli_human_duration(NAN, b, sizeof(b));
    CU_ASSERT_STRING_EQUAL(b, "nans");
}

static void test_percentile(void)
{
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = 100 - i; /* 100..1, unsorted */
    cli_stats_sort(v, 100);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 50), 50, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 90), 90, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 99), 99, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 99.9), 100, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 0), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(v, 100, 100), 100, 1e-9);

    double one[] = {7.5};
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(one, 1, 50), 7.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(one, 1, 99.9), 7.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(NULL, 0, 50), 0, 1e-9);

    /* 1000 samples: p99.9 is the 999th, not the maximum */
    double *w = malloc(1000 * sizeof(*w));
    for (int i = 0; i < 1000; i++)
        w[i] = i + 1;
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(w, 1000, 99.9), 999, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cli_stats_percentile(w, 1000, 50), 500, 1e-9);
    free(w);
}

static void test_mix(void)
{
    unsigned p, g;
    char err[CLI_ERR_MAX];
    CU_ASSERT_EQUAL(cli_bench_parse_mix("1:1", &p, &g, err, sizeof(err)), 0);
    CU_ASSERT(p == 1 && g == 1);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("20:80", &p, &g, err, sizeof(err)), 0);
    CU_ASSERT(p == 20 && g == 80);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("100:0", &p, &g, err, sizeof(err)), 0);
    CU_ASSERT(p == 100 && g == 0);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("get", &p, &g, err, sizeof(err)), 0);
    CU_ASSERT(p == 0 && g == 1);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("0:0", &p, &g, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("1", &p, &g, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("a:b", &p, &g, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_bench_parse_mix(":1", &p, &g, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_bench_parse_mix("1:-1", &p, &g, err, sizeof(err)), -EINVAL);
}

static void test_progress_format(void)
{
    struct cli_progress p;
    char line[256];
    cli_progress_start(&p, false, "put big", 1000, false);
    p.start = 100;
    p.done = 500;
    cli_progress_format(&p, 110, 80, line, sizeof(line));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "put big ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, " 50%"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "500/1000"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "eta 10.0s"));
    CU_ASSERT(strlen(line) <= 80);

    p.total = 0; /* unknown total: no bar, just the amount and the rate */
    cli_progress_format(&p, 110, 80, line, sizeof(line));
    CU_ASSERT_PTR_NULL(strchr(line, '['));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "50/s"));

    cli_progress_start(&p, false, "get", 2u << 20, true);
    p.start = 0;
    p.done = 2u << 20;
    cli_progress_format(&p, 1, 80, line, sizeof(line));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "100%"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "2.00 MiB/2.00 MiB"));
    CU_ASSERT_PTR_NULL(strstr(line, "eta"));
}

static void test_http_error_text(void)
{
    char out[CLI_ERR_MAX];
    cli_http_error_text(404, "{\"error\": \"object abc not found\"}", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "object abc not found (HTTP 404)");
    cli_http_error_text(401, "", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "unauthorized (missing or wrong token) (HTTP 401); pass the "
                                "cluster's token with --token-file FILE or CA_CAS_TOKEN_FILE");
    cli_http_error_text(502, "upstream gone\nmore", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "upstream gone (HTTP 502); the answer came from a proxy in front "
                                "of ca-cas: is ca-cas behind it running?");
    /* nginx's own 413 page: the limit is the proxy's, and the message says so */
    cli_http_error_text(413, "<html><title>413 Request Entity Too Large</title></html>", out,
                        sizeof(out));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(HTTP 413); the answer came from a proxy"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "client_max_body_size"));
    /* ca-cas's own 413 (--max-object-size) is not blamed on a proxy */
    cli_http_error_text(413, "{\"error\":\"object larger than 1024 bytes\"}", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "object larger than 1024 bytes (HTTP 413)");
    cli_http_error_text(500, "<html>oops</html>", out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "internal server error (HTTP 500)");
    cli_http_error_text(422, NULL, out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, "digest mismatch (HTTP 422)");
}

static void test_jsonview(void)
{
    struct cas_buf b;
    char err[CLI_ERR_MAX];
    cas_buf_init(&b);
    const char *json =
        "{\"role\":\"balancerd\",\"uptime\":7200,\"objects\":3,"
        "\"capacity\":{\"total\":2048,\"available\":10},"
        "\"backends\":[{\"url\":\"http://a:1\",\"up\":true},"
        "{\"url\":\"http://b:1\",\"up\":false,\"last_error\":\"refused \\\"x\\\"\"}],"
        "\"tags\":[\"a\",\"b\"],\"empty\":[],\"none\":null,\"e\":\"\\u00e9\"}";
    CU_ASSERT_EQUAL(cli_jsonview(json, &b, err, sizeof(err)), 0);
    const char *want = "role: balancerd\n"
                       "uptime: 7200 (2h 0m)\n"
                       "objects: 3\n"
                       "capacity:\n"
                       "  total: 2048 (2.00 KiB)\n"
                       "  available: 10\n"
                       "backends:\n"
                       "  - url: http://a:1\n"
                       "    up: true\n"
                       "  - url: http://b:1\n"
                       "    up: false\n"
                       "    last_error: refused \"x\"\n"
                       "tags: a, b\n"
                       "empty: (none)\n"
                       "none: null\n"
                       "e: \xc3\xa9\n";
    CU_ASSERT_STRING_EQUAL(b.data, want);
    if (strcmp(b.data, want) != 0)
        fprintf(stderr, "got:\n%s", b.data);

    cas_buf_reset(&b);
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad JSON"));
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":1} x", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_jsonview("[[[[", &b, err, sizeof(err)), -EINVAL);
    cas_buf_free(&b);
}

/* The view over jansson: member order kept, numbers as the daemons write
 * them (%.6g for reals), escapes decoded, odd texts refused with where. */
static void test_jsonview_odd(void)
{
    struct cas_buf b;
    char err[CLI_ERR_MAX];
    cas_buf_init(&b);
    CU_ASSERT_EQUAL(cli_jsonview("{\"z\":1,\"a\":0.5,\"m\":-3,\"free_bytes\":2048.5,"
                                 "\"s\":\"\\ud83d\\ude00\",\"t\":\"\"}",
                                 &b, err, sizeof(err)),
                    0);
    CU_ASSERT_STRING_EQUAL(b.data, "z: 1\na: 0.5\nm: -3\nfree_bytes: 2048.5\n"
                                   "s: \xf0\x9f\x98\x80\nt: \"\"\n");
    cas_buf_reset(&b);
    CU_ASSERT_EQUAL(cli_jsonview("[1,{\"size\":4096},[]]", &b, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "items:\n  - 1\n  - size: 4096 (4.00 KiB)\n  - (list)\n");
    cas_buf_reset(&b);
    CU_ASSERT_EQUAL(cli_jsonview("\"just text\"", &b, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "just text\n");
    cas_buf_reset(&b);
    /* a name twice: which one? refused */
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":1,\"a\":2}", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad JSON"));
    /* invalid UTF-8, a lone surrogate, an integer past 2^63-1 */
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":\"\xff\"}", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":\"\\udc00\"}", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":9223372036854775808}", &b, err, sizeof(err)), -EINVAL);
    /* where it went wrong */
    CU_ASSERT_EQUAL(cli_jsonview("{\"a\":1,\n\"b\":}", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "line 2"));
    CU_ASSERT_EQUAL(cli_jsonview("", &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(cli_jsonview(NULL, &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_EQUAL(b.len, 0);
    cas_buf_free(&b);
}

/* Found by tests/fuzz/jsonview.c: a string ending in a backslash at the
 * very end of the text ("{\"a\":\"\\") stepped past the terminating NUL,
 * and the error message then quoted the bytes after it (a heap overflow
 * under ASan, which the sanitized build of this suite reports). */
static void test_jsonview_backslash_at_end(void)
{
    struct cas_buf b;
    cas_buf_init(&b);
    char err[256] = "";
    char *json = strdup("{\"a\":\"\\"); /* exact size: nothing readable after the NUL */
    CU_ASSERT_EQUAL(cli_jsonview(json, &b, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad JSON"));
    free(json);
    cas_buf_free(&b);
}

/* ---- outfile.c ---- */

static char *slurp(const char *path)
{
    static char buf[256];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n < 0 ? NULL : buf;
}

static void spit(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

/* Names in dir containing ".partial-": must be none after every call. */
static int partials(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".partial-") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_outfile(void)
{
    char dir[] = "/tmp/cas-outfile-XXXXXX", f[300], link[300], fifo[300], dang[300];
    char err[CLI_ERR_MAX];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(f, sizeof(f), "%s/file", dir);
    snprintf(link, sizeof(link), "%s/link", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(dang, sizeof(dang), "%s/dangling", dir);
    struct cli_outfile o;
    struct stat st;

    /* a failure leaves an existing file as it was */
    spit(f, "old bytes");
    chmod(f, 0640);
    CU_ASSERT_EQUAL_FATAL(cli_outfile_open(&o, f, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NOT_NULL(o.tmp);
    CU_ASSERT(write(o.fd, "new", 3) == 3);
    CU_ASSERT_STRING_EQUAL(slurp(f), "old bytes");
    cli_outfile_abort(&o);
    CU_ASSERT_STRING_EQUAL(slurp(f), "old bytes");
    CU_ASSERT_EQUAL(partials(dir), 0);

    /* success replaces it whole, mode kept */
    CU_ASSERT_EQUAL_FATAL(cli_outfile_open(&o, f, err, sizeof(err)), 0);
    CU_ASSERT(write(o.fd, "new", 3) == 3);
    CU_ASSERT_EQUAL(cli_outfile_commit(&o, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(slurp(f), "new");
    CU_ASSERT(stat(f, &st) == 0 && (st.st_mode & 07777) == 0640);
    CU_ASSERT_EQUAL(partials(dir), 0);

    /* a symlink to a regular file: the target is replaced, the link stays */
    CU_ASSERT(symlink(f, link) == 0);
    CU_ASSERT_EQUAL_FATAL(cli_outfile_open(&o, link, err, sizeof(err)), 0);
    CU_ASSERT(write(o.fd, "via link", 8) == 8);
    CU_ASSERT_EQUAL(cli_outfile_commit(&o, err, sizeof(err)), 0);
    CU_ASSERT(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT_STRING_EQUAL(slurp(f), "via link");

    /* a FIFO is written into and survives a failure */
    CU_ASSERT(mkfifo(fifo, 0600) == 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK); /* a reader, so opening to write does not wait */
    CU_ASSERT_FATAL(rfd >= 0);
    CU_ASSERT_EQUAL_FATAL(cli_outfile_open(&o, fifo, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NULL(o.tmp);
    CU_ASSERT(write(o.fd, "pipe", 4) == 4);
    cli_outfile_abort(&o);
    char got[8] = "";
    CU_ASSERT(read(rfd, got, sizeof(got)) == 4);
    close(rfd);
    CU_ASSERT(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));

    /* refused before anything is created: a directory, a dangling link */
    CU_ASSERT_EQUAL(cli_outfile_open(&o, dir, err, sizeof(err)), -EISDIR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory"));
    CU_ASSERT(symlink("nowhere", dang) == 0);
    CU_ASSERT_EQUAL(cli_outfile_open(&o, dang, err, sizeof(err)), -ENOENT);
    CU_ASSERT_EQUAL(partials(dir), 0);

    /* "-" is standard output */
    CU_ASSERT_EQUAL(cli_outfile_open(&o, "-", err, sizeof(err)), 0);
    CU_ASSERT(o.is_stdout && o.fd == STDOUT_FILENO);
    CU_ASSERT_EQUAL(cli_outfile_commit(&o, err, sizeof(err)), 0);
    CU_ASSERT(fcntl(STDOUT_FILENO, F_GETFD) >= 0); /* not closed */

    unlink(f);
    unlink(link);
    unlink(fifo);
    unlink(dang);
    CU_ASSERT(rmdir(dir) == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("cli_util", NULL, NULL);
    CU_add_test(s, "server url", test_server_url);
    CU_add_test(s, "keys as typed", test_parse_key);
    CU_add_test(s, "durations", test_duration);
    CU_add_test(s, "human figures", test_human);
    CU_add_test(s, "percentiles", test_percentile);
    CU_add_test(s, "bench mix", test_mix);
    CU_add_test(s, "progress text", test_progress_format);
    CU_add_test(s, "http error text", test_http_error_text);
    CU_add_test(s, "json view", test_jsonview);
    CU_add_test(s, "output files", test_outfile);
    CU_add_test(s, "json view: order, numbers, odd texts", test_jsonview_odd);
    CU_add_test(s, "json view: backslash at the very end", test_jsonview_backslash_at_end);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
