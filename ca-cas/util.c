/*
 * util.c - small pure helpers of the ca-cas tool: the server URL, the token
 * file, keys as users type them, durations, and figures for humans.
 */
#include "cli.h"
#include "json.h"
#include "num.h"
#include "token.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Set by --json: errors go to stderr as {"error": "..."} too. */
bool cli_json_errors;

/* One message on stderr, as "ca-cas: <prefix><msg>" or, with --json,
 * {"<kind>": "<msg>"}. */
static void cli_message(const char *kind, const char *prefix, const char *fmt, va_list ap)
{
    char msg[4096];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fflush(stdout); /* keep our own output ahead of the message */
    if (cli_json_errors) {
        struct cas_buf b;
        cas_buf_init(&b);
        cas_buf_printf(&b, "{\"%s\":", kind);
        cas_json_escape(&b, msg);
        cas_buf_puts(&b, "}");
        fprintf(stderr, "%s\n", b.data ? b.data : "{\"error\":\"out of memory\"}");
        cas_buf_free(&b);
        return;
    }
    fprintf(stderr, "ca-cas: %s%s\n", prefix, msg);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_message("error", "", fmt, ap);
    va_end(ap);
}

void cli_warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_message("warning", "warning: ", fmt, ap);
    va_end(ap);
}

int cli_server_url(const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
    while (in && isspace((unsigned char)*in))
        in++;
    if (!in || !*in) {
        snprintf(err, errlen, "empty server address (want a URL or host:port)");
        return -EINVAL;
    }
    const char *scheme_end = strstr(in, "://");
    const char *rest = in;
    const char *scheme = "http";
    if (scheme_end) {
        size_t slen = (size_t)(scheme_end - in);
        if (slen == 4 && strncasecmp(in, "http", 4) == 0)
            scheme = "http";
        else if (slen == 5 && strncasecmp(in, "https", 5) == 0)
            scheme = "https";
        else {
            snprintf(err, errlen, "server \"%s\": only http:// and https:// are supported", in);
            return -EINVAL;
        }
        rest = scheme_end + 3;
    }
    size_t len = strlen(rest);
    while (len > 0 && (rest[len - 1] == '/' || isspace((unsigned char)rest[len - 1])))
        len--;
    if (len == 0 || rest[0] == '/' || rest[0] == ':') {
        snprintf(err, errlen, "server \"%s\": no host", in);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if (isspace((unsigned char)rest[i]) || !isprint((unsigned char)rest[i])) {
            snprintf(err, errlen, "server \"%s\": white space or control character", in);
            return -EINVAL;
        }
    /* Request paths are appended to the URL as a string: a query or a
     * fragment in it would swallow them (every request to "/"). */
    const char *qf = memchr(rest, '?', len);
    const char *hash = memchr(rest, '#', len);
    if (qf || hash) {
        snprintf(err, errlen,
                 "server \"%s\": a query (?) or fragment (#) is not allowed "
                 "(want scheme://host:port[/path])",
                 in);
        return -EINVAL;
    }
    int n = snprintf(out, outlen, "%s://%.*s", scheme, (int)len, rest);
    if (n < 0 || (size_t)n >= outlen) {
        snprintf(err, errlen, "server address too long");
        return -EINVAL;
    }
    return 0;
}

int cli_read_token(const char *path, char **token, char *err, size_t errlen)
{
    return cas_token_read(path, token, err, errlen);
}

int cli_parse_key(const char *s, size_t len, struct cas_key *out, char *hex, char *err,
                  size_t errlen)
{
    /* A prefix names the algorithm; without one, the length does. */
    const struct cas_hash_algo *algo = NULL;
    const char *colon = memchr(s, ':', len);
    for (size_t i = 0; i < cas_hash_algo_count && !algo; i++) {
        const struct cas_hash_algo *a = &cas_hash_algos[i];
        size_t nlen = strlen(a->name);
        if (colon ? ((size_t)(colon - s) == nlen && strncmp(s, a->name, nlen) == 0)
                  : len == a->hex_len)
            algo = a;
    }
    if (!algo) {
        int shown = len > 80 ? 80 : (int)len;
        for (int i = 0; i < shown; i++)
            if (!isprint((unsigned char)s[i]))
                shown = i;
        if (colon)
            snprintf(err, errlen, "bad key \"%.*s%s\": unknown prefix (want sha1: or sha256:)",
                     shown, s, (size_t)shown < len ? "..." : "");
        else
            snprintf(err, errlen,
                     "bad key \"%.*s%s\": a key is 40 (sha1) or 64 (sha256) hex digits, not %zu",
                     shown, s, (size_t)shown < len ? "..." : "", len);
        return -EINVAL;
    }
    if (cas_key_parse(s, len, algo, out, err, errlen) < 0)
        return -EINVAL;
    cas_key_hex(out, hex);
    return 0;
}

int cli_parse_duration(const char *s, double *out)
{
    if (!s)
        return -EINVAL;
    /* The number (cas_parse_real: digits, optional fraction; no sign, no
     * "inf", no hex), then the unit. */
    char num[64];
    size_t n = strspn(s, "0123456789.");
    if (n == 0 || n >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, n);
    num[n] = '\0';
    double v;
    if (cas_parse_real(num, &v) < 0)
        return -EINVAL;
    const char *end = s + n;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "ms") == 0)
        v /= 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        v *= 60;
    else if (strcmp(end, "h") == 0)
        v *= 3600;
    else
        return -EINVAL;
    *out = v;
    return 0;
}

void cli_human_bytes(uint64_t n, char *out, size_t outlen)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(out, outlen, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    snprintf(out, outlen, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void cli_human_duration(double s, char *out, size_t outlen)
{
    if (s < 60) {
        snprintf(out, outlen, "%.1fs", s);
        return;
    }
    if (!(s < 18446744073709551616.0)) { /* past 2^64 s, or NaN: no integer holds it */
        snprintf(out, outlen, "%.2gs", s);
        return;
    }
    uint64_t t = (uint64_t)s;
    if (t < 3600)
        snprintf(out, outlen, "%llum %llus", (unsigned long long)(t / 60),
                 (unsigned long long)(t % 60));
    else if (t < 86400)
        snprintf(out, outlen, "%lluh %llum", (unsigned long long)(t / 3600),
                 (unsigned long long)(t % 3600 / 60));
    else
        snprintf(out, outlen, "%llud %lluh", (unsigned long long)(t / 86400),
                 (unsigned long long)(t % 86400 / 3600));
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
