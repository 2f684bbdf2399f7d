/*
 * s3_client.c - one bucket of an S3-compatible server over libcurl
 * (s3_client.h). Each request uses its own easy handle; connections, DNS
 * and TLS sessions are shared through one CURLSH, so the daemon's request
 * threads reuse keep-alive connections to the bucket.
 */
#define _GNU_SOURCE
#include "s3_client.h"
#include "s3.h"
#include "s3_xml.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *cls)
{
    (void)h;
    (void)access;
    struct s3_client *c = cls;
    pthread_mutex_lock(&c->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *cls)
{
    (void)h;
    struct s3_client *c = cls;
    pthread_mutex_unlock(&c->locks[data]);
}

int s3_client_init(struct s3_client *c, const char *endpoint, const char *bucket,
                   const char *region, const char *access_key, const char *secret_key, char *err,
                   size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!endpoint || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8))) {
        snprintf(err, errlen, "--s3-endpoint \"%s\": want an http:// or https:// URL",
                 endpoint ? endpoint : "");
        return -EINVAL;
    }
    /* Bucket names (S3's rules): 3 to 63 of a-z 0-9 . -, so they never need
     * escaping in a path. */
    size_t bl = bucket ? strlen(bucket) : 0;
    if (bl < 3 || bl > 63 || strspn(bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != bl) {
        snprintf(err, errlen, "--s3-bucket \"%s\": want 3 to 63 of a-z, 0-9, '.', '-'",
                 bucket ? bucket : "");
        return -EINVAL;
    }
    if (!region || !*region)
        region = "us-east-1";
    if (strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region) ||
        strlen(region) > 64) {
        snprintf(err, errlen, "--s3-region \"%s\": want a region name like us-east-1", region);
        return -EINVAL;
    }
    if (!access_key || !*access_key || !secret_key || !*secret_key) {
        snprintf(err, errlen,
                 "the S3 backend needs an access key and a secret key "
                 "(--s3-access-key-file / --s3-secret-key-file, or "
                 "CAS_S3_ACCESS_KEY / CAS_S3_SECRET_KEY)");
        return -EINVAL;
    }
    if (strchr(access_key, ':')) {
        snprintf(err, errlen, "the S3 access key holds a ':'");
        return -EINVAL;
    }
    size_t el = strlen(endpoint);
    while (el > 0 && endpoint[el - 1] == '/')
        el--;
    c->endpoint = strndup(endpoint, el);
    c->bucket = strdup(bucket);
    c->region = strdup(region);
    if (asprintf(&c->userpwd, "%s:%s", access_key, secret_key) < 0)
        c->userpwd = NULL;
    snprintf(c->sigv4, sizeof(c->sigv4), "aws:amz:%s:s3", region);
    c->share = curl_share_init();
    if (!c->endpoint || !c->bucket || !c->region || !c->userpwd || !c->share) {
        s3_client_free(c);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    c->max_attempts = 4;
    c->min_rate = 1u << 20;
    s3_client_set_timeout(c, 0);
    return 0;
}

void s3_client_set_timeout(struct s3_client *c, uint64_t timeout_ms)
{
    if (!timeout_ms)
        timeout_ms = S3_DEFAULT_TIMEOUT_MS;
    c->deadline_ms = timeout_ms;
    c->attempt_base_ms = timeout_ms;
    c->low_speed_s = timeout_ms >= 6000 ? (long)(timeout_ms / 3000) : 1;
    c->connect_timeout_ms = timeout_ms < 3000 ? (long)timeout_ms : 3000;
}

void s3_client_free(struct s3_client *c)
{
    if (c->share) {
        curl_share_cleanup(c->share);
        for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_destroy(&c->locks[i]);
    }
    if (c->userpwd) {
        explicit_bzero(c->userpwd, strlen(c->userpwd));
        free(c->userpwd);
    }
    free(c->endpoint);
    free(c->bucket);
    free(c->region);
    memset(c, 0, sizeof(*c));
}

void s3_resp_free(struct s3_resp *resp)
{
    cas_buf_free(&resp->body);
}

bool s3_status_retryable(long status)
{
    return status == 500 || status == 502 || status == 503 || status == 504;
}

int s3_query_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (o + (keep ? 1 : 3) >= outlen)
            return -ENAMETOOLONG;
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

static bool unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

static bool upper_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F');
}

/* Length of the run of encoded bytes at s (unreserved or %XX upper-case), up
 * to the first other byte. */
static size_t encoded_span(const char *s)
{
    size_t i = 0;
    for (;;) {
        if (unreserved((unsigned char)s[i])) {
            i++;
        } else if (s[i] == '%' && upper_hex(s[i + 1]) && upper_hex(s[i + 2])) {
            i += 3;
        } else {
            return i;
        }
    }
}

bool s3_query_canonical(const char *q)
{
    const char *prev_name = NULL, *prev_value = NULL;
    size_t prev_nl = 0, prev_vl = 0;
    for (const char *p = q;;) {
        size_t nl = encoded_span(p);
        if (nl == 0 || p[nl] != '=')
            return false;
        const char *v = p + nl + 1;
        size_t vl = encoded_span(v);
        if (v[vl] != '&' && v[vl] != '\0')
            return false;
        if (prev_name) {
            int c = memcmp(prev_name, p, prev_nl < nl ? prev_nl : nl);
            if (c == 0)
                c = (prev_nl > nl) - (prev_nl < nl);
            if (c == 0) {
                c = memcmp(prev_value, v, prev_vl < vl ? prev_vl : vl);
                if (c == 0)
                    c = (prev_vl > vl) - (prev_vl < vl);
            }
            if (c > 0)
                return false;
        }
        prev_name = p, prev_nl = nl, prev_value = v, prev_vl = vl;
        if (v[vl] == '\0')
            return true;
        p = v + vl + 1;
    }
}

struct sink {
    CURL *h;
    const struct s3_req *req;
    struct s3_resp *resp;
    bool overflow;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *cls)
{
    struct sink *s = cls;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    if (s->req->out && status >= 200 && status < 300) {
        if (n > s->req->out_cap - s->resp->out_len) {
            s->overflow = true;
            return 0;
        }
        memcpy(s->req->out + s->resp->out_len, data, n);
        s->resp->out_len += n;
        return n;
    }
    if (s->resp->body.len + n > S3_ERROR_BODY_MAX) {
        s->overflow = true;
        return 0;
    }
    cas_buf_append(&s->resp->body, data, n);
    return s->resp->body.oom ? 0 : n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *cls)
{
    struct s3_resp *resp = cls;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(data, "ETag:", 5) == 0) {
        const char *v = data + 5;
        size_t vl = n - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < sizeof(resp->etag)) {
            memcpy(resp->etag, v, vl);
            resp->etag[vl] = '\0';
        }
    }
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One attempt. 0 with resp->status set, or a curl error code. */
static CURLcode attempt(struct s3_client *c, const struct s3_req *r, struct s3_resp *resp,
                        const char *url, bool *overflow)
{
    CURL *h = curl_easy_init();
    if (!h)
        return CURLE_OUT_OF_MEMORY;
    struct sink sink = {.h = h, .req = r, .resp = resp};
    struct curl_slist *hdrs = NULL;
    char line[200];
    const char *payload = r->payload_sha256;
    if (!payload)
        payload = r->body_len ? "UNSIGNED-PAYLOAD" : EMPTY_SHA256;
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", payload);
    hdrs = curl_slist_append(hdrs, line);
    /* No "Expect:" entry to switch off 100-continue: libcurl 7.88's SigV4
     * signs every entry of this list, so it signed an "expect" header that
     * it then did not send, and servers that check signatures refuse that
     * (tests/integration/test_s3_sigv4.py). Expect is left to libcurl
     * (100-continue on bodies over 1 MiB) and unsigned, as AWS's SDKs do. */
    if (r->range_len) {
        snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-%" PRIu64, r->range_off,
                 r->range_off + r->range_len - 1);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (r->header)
        hdrs = curl_slist_append(hdrs, r->header);
    bool has_body = strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0;
    if (has_body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
    curl_easy_setopt(h, CURLOPT_USERPWD, c->userpwd);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_s);
    /* A total bound as well (s3_client.attempt_base_ms): the low-speed
     * check passes a bucket that drips a byte a second. */
    uint64_t moved = (uint64_t)r->body_len + (r->out ? (uint64_t)r->out_cap : 0) + r->work_bytes;
    uint64_t rate = c->min_rate ? c->min_rate : 1;
    uint64_t limit_ms = c->attempt_base_ms + moved / rate * 1000 + moved % rate * 1000 / rate;
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(limit_ms < LONG_MAX ? limit_ms : LONG_MAX));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_off_t cl = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK)
        resp->content_length = cl;
    *overflow = sink.overflow;
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    return cc;
}

int s3_do(struct s3_client *c, const struct s3_req *r, struct s3_resp *resp, char *err,
          size_t errlen)
{
    char *url = NULL;
    const char *key = r->key ? r->key : "";
    memset(resp, 0, sizeof(*resp));
    cas_buf_init(&resp->body);
    /* libcurl signs the path and query as given: they must already be in
     * SigV4's canonical form (object keys are unreserved bytes and '/'). */
    if ((r->query && !s3_query_canonical(r->query)) ||
        strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/") !=
            strlen(key)) {
        snprintf(err, errlen, "%s %s?%s: not in SigV4's canonical form (a bug)", r->method, key,
                 r->query ? r->query : "");
        return -EINVAL;
    }
    if (asprintf(&url, "%s/%s%s%s%s%s", c->endpoint, c->bucket, r->key ? "/" : "", key,
                 r->query ? "?" : "", r->query ? r->query : "") < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uint64_t start = now_ms();
    unsigned backoff_ms = 100;
    int rc = -EIO;
    for (unsigned n = 1;; n++) {
        __atomic_add_fetch(&c->requests, 1, __ATOMIC_RELAXED);
        resp->status = 0;
        resp->out_len = 0;
        resp->content_length = -1;
        resp->etag[0] = '\0';
        cas_buf_reset(&resp->body);
        bool overflow = false;
        CURLcode cc = attempt(c, r, resp, url, &overflow);
        bool retry;
        if (cc == CURLE_OK) {
            rc = 0;
            retry = s3_status_retryable(resp->status);
        } else if (overflow) {
            snprintf(err, errlen, "%s %s: the bucket sent more bytes than asked for", r->method,
                     key);
            rc = -EIO;
            retry = false;
        } else if (cc == CURLE_OUT_OF_MEMORY) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            retry = false;
        } else {
            snprintf(err, errlen, "%s %s/%s%s: %s%s", r->method, c->bucket, key,
                     cc == CURLE_PARTIAL_FILE ? " (truncated body)" : "", curl_easy_strerror(cc),
                     cc == CURLE_OPERATION_TIMEDOUT ? " (the bucket did not answer in time)" : "");
            rc = -EIO;
            /* Transport failures: refused or reset connections, timeouts,
             * short bodies, all retried; a bad URL or TLS setup is not. */
            retry = cc == CURLE_COULDNT_CONNECT || cc == CURLE_SEND_ERROR ||
                    cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING ||
                    cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_PARTIAL_FILE ||
                    cc == CURLE_COULDNT_RESOLVE_HOST;
        }
        if (!retry || n >= c->max_attempts || now_ms() - start + backoff_ms > c->deadline_ms)
            break;
        __atomic_add_fetch(&c->retries, 1, __ATOMIC_RELAXED);
        /* Full jitter, as the AWS SDKs do: sleep a random part of the backoff. */
        unsigned ms = backoff_ms / 2 + (unsigned)(rand() % (int)(backoff_ms / 2 + 1));
        usleep(ms * 1000u);
        backoff_ms *= 2;
    }
    /* Failures: no answer, or a server error left after the retries (a 404
     * or 403 is an answer the caller judges). */
    if (rc < 0 || resp->status >= 500)
        __atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
    free(url);
    return rc;
}

void s3_status_error(const struct s3_req *r, const struct s3_resp *resp, char *err, size_t errlen)
{
    char code[128] = "", msg[256] = "";
    if (resp->body.len)
        s3_xml_error(resp->body.data, resp->body.len, code, sizeof(code), msg, sizeof(msg));
    snprintf(err, errlen, "%s %s: the bucket answered %ld%s%s%s%s", r->method,
             r->key ? r->key : "(bucket)", resp->status, code[0] ? " " : "", code,
             msg[0] ? ": " : "", msg);
}
