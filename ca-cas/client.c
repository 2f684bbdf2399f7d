/*
 * client.c - the tool's HTTP client, over libcurl's easy interface.
 *
 * One struct cli_client per command run: it owns one easy handle, so
 * successive requests reuse one keep-alive connection. A request body
 * streams from memory or from a file descriptor (never read whole), a
 * response body streams into the caller's sink; error answers are kept
 * (bounded) so their JSON {"error": ...} can be shown to the user. The
 * handle is set up for each request by the control layer shared with the
 * daemons (common/ctl.h: token, TLS, timeouts, no signals).
 */
#include "cli.h"
#include "ctl.h"
#include "json.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define RESP_KEEP_MAX (256u << 20) /* enough for a big cluster's /ring */

struct cli_client {
    const struct cli_ctx *ctx;
    CURL *curl;
    struct cas_ctl_opts ctl;          /* token, CA, timeouts: for every request */
    const struct cas_hash_algo *algo; /* the server's, once asked */
    char curl_err[CURL_ERROR_SIZE];
};

struct xfer {
    struct cli_client *c;
    struct cli_http *h;
    uint64_t sent; /* body bytes handed to curl */
    int body_err;  /* errno of a failed read of body_fd */
    bool status_known;
    int sink_rc;
};

int cli_client_new(const struct cli_ctx *ctx, struct cli_client **out, char *err, size_t errlen)
{
    struct cli_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->curl = curl_easy_init())) {
        free(c);
        snprintf(err, errlen, "cannot set up libcurl");
        return -ENOMEM;
    }
    c->ctx = ctx;
    c->ctl = (struct cas_ctl_opts){
        .token = ctx->token,
        .ca_pem = ctx->cacert_pem,
        .ca_len = ctx->cacert_len,
        .connect_timeout_ms = 10000,
        .user_agent = "ca-cas/" CAS_VERSION,
        /* A big upload waits for the server's go-ahead, so a refusal
         * (401, 413, 507) comes before the body is sent. */
        .expect_continue = true,
    };
    *out = c;
    return 0;
}

void cli_client_free(struct cli_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

const struct cli_ctx *cli_client_ctx(const struct cli_client *c)
{
    return c->ctx;
}

void cli_http_init(struct cli_http *h, const char *method, const char *path)
{
    memset(h, 0, sizeof(*h));
    h->method = method;
    h->path = path;
    h->body_fd = -1;
    h->body_size = UINT64_MAX;
    cas_buf_init(&h->resp);
    h->content_length = UINT64_MAX;
    h->copies = -1;
    h->replicas = -1;
    h->backends_skipped = -1;
}

void cli_http_free(struct cli_http *h)
{
    cas_buf_free(&h->resp);
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *cls)
{
    struct xfer *x = cls;
    struct cli_http *h = x->h;
    size_t max = size * nmemb;
    size_t n = 0;
    if (h->body) {
        size_t left = h->body_len - (size_t)x->sent;
        n = left < max ? left : max;
        memcpy(buf, h->body + x->sent, n);
    } else if (h->body_read) {
        if (h->body_size != UINT64_MAX && h->body_size - x->sent < max)
            max = (size_t)(h->body_size - x->sent);
        if (max == 0)
            return 0;
        ssize_t r = h->body_read(h->body_read_cls, buf, max);
        if (r <= 0) {
            x->body_err = r < 0 ? (int)-r : EPIPE; /* 0: the source ended early */
            return CURL_READFUNC_ABORT;
        }
        n = (size_t)r;
    } else {
        if (h->body_size != UINT64_MAX && h->body_size - x->sent < max)
            max = (size_t)(h->body_size - x->sent);
        if (max == 0)
            return 0;
        ssize_t r;
        do {
            r = pread(h->body_fd, buf, max, (off_t)(h->body_offset + x->sent));
            if (r < 0 && errno == ESPIPE) /* a pipe: plain read */
                r = read(h->body_fd, buf, max);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            x->body_err = errno;
            return CURL_READFUNC_ABORT;
        }
        if (r == 0 && h->body_size != UINT64_MAX) {
            x->body_err = EPIPE; /* the file shrank under us */
            return CURL_READFUNC_ABORT;
        }
        n = (size_t)r;
    }
    if (h->body_hash && n)
        cas_hash_update(h->body_hash, buf, n);
    x->sent += n;
    if (h->progress)
        cli_progress_add(h->progress, n);
    return n;
}

/* Rewinds the body when curl must send it again (a redirect, a retried
 * connection). Hashing cannot be rewound, so that case fails. */
static int on_seek(void *cls, curl_off_t offset, int origin)
{
    struct xfer *x = cls;
    if (origin != SEEK_SET || x->h->body_hash || x->h->body_read || offset < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    if (x->h->body_fd >= 0 && lseek(x->h->body_fd, 0, SEEK_CUR) < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *cls)
{
    struct xfer *x = cls;
    struct cli_http *h = x->h;
    size_t n = size * nmemb;
    if (!x->status_known) {
        curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &h->status);
        curl_off_t cl = -1;
        curl_easy_getinfo(x->c->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (cl >= 0)
            h->content_length = (uint64_t)cl;
        if (h->progress && h->sink && h->status / 100 == 2 && cl >= 0 && !h->progress->total)
            h->progress->total = (uint64_t)cl;
        x->status_known = true;
    }
    if (h->sink && h->status / 100 == 2) {
        int rc = h->sink(h->sink_cls, data, n);
        if (rc < 0) {
            x->sink_rc = rc;
            return 0; /* aborts the transfer */
        }
        if (h->progress)
            cli_progress_add(h->progress, n);
        return n;
    }
    if (h->resp.len + n <= RESP_KEEP_MAX)
        cas_buf_append(&h->resp, data, n);
    return n;
}

/* The value of header "Name:" (name includes the colon) as a small
 * non-negative number; -1 when data is another header or not a number. */
static int header_count(const char *data, size_t n, const char *name)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(data, name, nl) != 0)
        return -1;
    size_t i = nl;
    while (i < n && (data[i] == ' ' || data[i] == '\t'))
        i++;
    int v = 0, digits = 0;
    while (i < n && data[i] >= '0' && data[i] <= '9' && digits < 6) {
        v = v * 10 + (data[i++] - '0');
        digits++;
    }
    while (i < n && (data[i] == ' ' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return digits && i == n ? v : -1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *cls)
{
    struct xfer *x = cls;
    size_t n = size * nmemb;
    int copies = header_count(data, n, "X-CAS-Copies:");
    if (copies >= 0)
        x->h->copies = copies;
    int replicas = header_count(data, n, "X-CAS-Replicas:");
    if (replicas >= 0)
        x->h->replicas = replicas;
    static const char skipped[] = "X-CAS-Backends-Skipped:";
    if (n >= sizeof(skipped) - 1 && strncasecmp(data, skipped, sizeof(skipped) - 1) == 0) {
        /* Present but not a number still means "something was left out":
         * a listing is complete only when the balancer says 0. */
        int v = header_count(data, n, skipped);
        int *slot = &x->h->backends_skipped;
        if (v < 0)
            *slot = CLI_SKIPPED_UNREADABLE;
        else if (*slot != CLI_SKIPPED_UNREADABLE && v > *slot)
            *slot = v;
    }
    static const char loc[] = "Location:";
    if (n > sizeof(loc) && strncasecmp(data, loc, sizeof(loc) - 1) == 0) {
        const char *v = data + sizeof(loc) - 1;
        size_t len = n - (sizeof(loc) - 1);
        while (len && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len >= sizeof(x->h->location))
            len = sizeof(x->h->location) - 1;
        memcpy(x->h->location, v, len);
        x->h->location[len] = '\0';
    }
    return n;
}

int cli_http_do(struct cli_client *c, struct cli_http *h, char *err, size_t errlen)
{
    CURL *e = c->curl;
    struct xfer x = {.c = c, .h = h};
    char url[CLI_URL_MAX + 4096];
    snprintf(url, sizeof(url), "%s%s", c->ctx->server, h->path);

    struct curl_slist *hdrs = NULL; /* the token's, then ours */
    if (cas_ctl_easy(&e, &c->ctl, url, h->method, &hdrs, c->curl_err) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);

    char range[128];
    if (h->range) {
        snprintf(range, sizeof(range), "Range: bytes=%s", h->range);
        hdrs = curl_slist_append(hdrs, range);
    }
    if (strcmp(h->method, "PUT") == 0 && !h->body && h->body_fd < 0 && !h->body_read) {
        h->body = ""; /* an empty object */
        h->body_len = 0;
    }
    bool has_body = h->body || h->body_fd >= 0 || h->body_read;
    if (has_body) {
        char ct[160];
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 h->content_type ? h->content_type : "application/octet-stream");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, &x);
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
    }
    curl_off_t size = h->body                      ? (curl_off_t)h->body_len
                      : h->body_size == UINT64_MAX ? -1
                                                   : (curl_off_t)h->body_size;
    if (strcmp(h->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(h->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
    } else if (strcmp(h->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        if (!has_body)
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        else if (size < 0)
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, size);
        if (!has_body)
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);

    CURLcode rc = curl_easy_perform(e);
    curl_slist_free_all(hdrs);
    if (!x.status_known)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &h->status);
    if (h->content_length == UINT64_MAX) {
        curl_off_t cl = -1;
        curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (cl >= 0)
            h->content_length = (uint64_t)cl;
    }
    if (rc == CURLE_OK)
        return 0;
    if (x.sink_rc) {
        snprintf(err, errlen, "%s", h->sink_err[0] ? h->sink_err : strerror(-x.sink_rc));
        return x.sink_rc;
    }
    if (x.body_err) {
        snprintf(err, errlen, "reading the data to send: %s",
                 x.body_err == EPIPE ? "the file shrank while being sent" : strerror(x.body_err));
        return -x.body_err;
    }
    /* A server that answers an error before taking the whole body (401,
     * 413, 503) may close the connection under our upload: the answer is
     * what matters then. */
    if (h->status >= 400 && (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
                             rc == CURLE_PARTIAL_FILE || rc == CURLE_GOT_NOTHING))
        return 0;
    char why[CURL_ERROR_SIZE + 64];
    cas_ctl_describe_curl(rc, c->curl_err, why, sizeof(why));
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(err, errlen, "cannot reach server %s: %s", c->ctx->server, why);
    else
        snprintf(err, errlen, "%s %s: %s", h->method, url, why);
    return -EIO;
}

static const char *reason(long status)
{
    switch (status) {
    case 400:
        return "bad request";
    case 401:
        return "unauthorized (missing or wrong token)";
    case 403:
        return "forbidden";
    case 404:
        return "not found";
    case 405:
        return "method not allowed";
    case 409:
        return "conflict";
    case 413:
        return "object too large";
    case 416:
        return "range not satisfiable";
    case 422:
        return "digest mismatch";
    case 500:
        return "internal server error";
    case 502:
        return "bad gateway";
    case 503:
        return "service unavailable";
    case 507:
        return "insufficient storage";
    default:
        return status >= 500 ? "server error" : "request failed";
    }
}

void cli_http_error_text(long status, const char *body, char *out, size_t outlen)
{
    char msg[CLI_ERR_MAX] = "";
    bool ours = false; /* ca-cas daemons answer errors as JSON {"error": ...} */
    if (body && *body) {
        const char *p = body;
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            p++;
        if (*p == '{' && cas_json_get_string(p, "error", msg, sizeof(msg)) == 0)
            ours = true;
        else if (*p && *p != '<') { /* a plain text body; not an HTML page */
            size_t len = strcspn(p, "\r\n");
            if (len > 300)
                len = 300;
            snprintf(msg, sizeof(msg), "%.*s", (int)len, p);
        }
    }
    if (!msg[0])
        snprintf(msg, sizeof(msg), "%s", reason(status));
    const char *hint = "";
    if (status == 401)
        hint = "; pass the cluster's token with --token-file FILE or CA_CAS_TOKEN_FILE";
    else if (status == 413 && !ours)
        hint = "; the answer came from a proxy in front of ca-cas, not from ca-cas: raise its "
               "request body limit (nginx: client_max_body_size 0)";
    else if ((status == 502 || status == 504) && !ours)
        hint = "; the answer came from a proxy in front of ca-cas: is ca-cas behind it running?";
    snprintf(out, outlen, "%s (HTTP %ld)%s", msg, status, hint);
}

/*
 * Whether a listing is whole (docs/API.md, GET /objects): a balancer counts
 * the backends it left out in X-CAS-Backends-Skipped, sent with the head.
 * Anything but an absent header or 0 means objects held only there are
 * missing from the answer, however well the transfer itself went.
 */
int cli_listing_skipped(const struct cli_http *h, char *msg, size_t msglen)
{
    if (h->backends_skipped == -1 || h->backends_skipped == 0)
        return 0;
    if (h->backends_skipped == CLI_SKIPPED_UNREADABLE) {
        snprintf(msg, msglen,
                 "the listing is incomplete: the server marked it so with an unreadable "
                 "X-CAS-Backends-Skipped header, so objects may be missing from it");
        return 1;
    }
    int n = h->backends_skipped;
    snprintf(msg, msglen,
             "the listing is incomplete: the server left %d backend%s out (X-CAS-Backends-Skipped: "
             "%d: down, or too slow to start %s listing), so the objects held only there are "
             "missing from it",
             n, n == 1 ? "" : "s", n, n == 1 ? "its" : "their");
    return n;
}

int cli_call(struct cli_client *c, const char *method, const char *path, const char *body,
             size_t body_len, struct cas_buf *out, long *status, char *err, size_t errlen)
{
    struct cli_http h;
    cli_http_init(&h, method, path);
    if (body) {
        h.body = body;
        h.body_len = body_len;
        h.content_type = "text/plain";
    }
    int rc = cli_http_do(c, &h, err, errlen);
    if (status)
        *status = rc == 0 ? h.status : 0;
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, errlen);
        rc = -EIO;
    }
    if (rc == 0 && out) {
        cas_buf_reset(out);
        if (h.resp.len)
            cas_buf_append(out, h.resp.data, h.resp.len);
        else
            cas_buf_puts(out, "");
    }
    cli_http_free(&h);
    return rc;
}

int cli_client_algo(struct cli_client *c, const struct cas_hash_algo **algo, char *err,
                    size_t errlen)
{
    if (c->algo) {
        *algo = c->algo;
        return 0;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    long status = 0;
    char name[32] = "sha1";
    int rc = cli_call(c, "GET", "/ring", NULL, 0, &b, &status, err, errlen);
    if (rc < 0 && status == 0) { /* unreachable: say so */
        cas_buf_free(&b);
        return rc;
    }
    if (rc < 0 && (status == 401 || status >= 500)) {
        char why[CLI_ERR_MAX];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "asking the server's hash algorithm (GET /ring): %s", why);
        cas_buf_free(&b);
        return rc;
    }
    if (rc == 0 && b.data &&
        (cas_json_get_string(b.data, "hash", name, sizeof(name)) < 0 || !name[0]))
        snprintf(name, sizeof(name), "sha1"); /* not said (yet): the default */
    cas_buf_free(&b);
    const struct cas_hash_algo *a = cas_hash_by_name(name);
    if (!a) {
        snprintf(err, errlen, "the server keys objects with \"%s\", which this tool does not know",
                 name);
        return -ENOTSUP;
    }
    c->algo = a;
    *algo = a;
    return 0;
}
