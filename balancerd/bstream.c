/*
 * bstream.c - a backend's response body, read on demand.
 *
 * The HTTP layer asks for a streamed response's bytes from its own thread
 * ("give me up to N bytes"), while libcurl pushes what it receives into a
 * write callback. A bstream joins the two: one easy handle on its own multi
 * handle, a fixed buffer, and a write callback that pauses the transfer when
 * the buffer is full. bstream_read drives the transfer only until it has
 * something to return, so memory stays at the buffer's size whatever the
 * object's, and a slow client slows the backend down through TCP.
 */
#include "bstream.h"
#include "ctl.h"
#include "num.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BSTREAM_BUF (512u * 1024)

/*
 * Each thread keeps one idle multi handle and buffer for its next bstream:
 * a multi handle costs a socket pair and the buffer an mmap, which would
 * dominate small GETs if paid per request. The cache is freed when the
 * thread exits.
 */
struct bstream_cache {
    CURLM *multi;
    CURL *easy;
    char *buf;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *p)
{
    struct bstream_cache *c = p;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->easy)
        curl_easy_cleanup(c->easy);
    free(c->buf);
    free(c);
}

static void cache_init(void)
{
    pthread_key_create(&cache_key, cache_free);
}

static struct bstream_cache *cache_get(void)
{
    pthread_once(&cache_once, cache_init);
    struct bstream_cache *c = pthread_getspecific(cache_key);
    if (!c && (c = calloc(1, sizeof(*c))))
        pthread_setspecific(cache_key, c);
    return c;
}

struct bstream {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    char *buf;
    size_t cap;        /* bytes of buf in use: BSTREAM_BUF, or a smaller window */
    bool cached_buf;   /* buf is BSTREAM_BUF bytes, fit for the thread's cache */
    size_t start, end; /* unread bytes are buf[start..end) */
    bool paused;
    bool headers_done;
    bool done;
    CURLcode result;
    struct bstream_head *head;
    uint64_t last_progress_ns;
    unsigned io_timeout_ms;
    bool budgeted;      /* waits for the body are limited (bstream_set_read_budget) */
    uint64_t budget_ns; /* what is left of that time */
};

static size_t on_header(char *data, size_t size, size_t nmemb, void *cls)
{
    struct bstream *s = cls;
    size_t n = size * nmemb;
    if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
        /* A new status line (after a 100 Continue, say): start over. */
        s->head->content_range[0] = '\0';
        s->head->content_type[0] = '\0';
        s->head->etag[0] = '\0';
        s->head->content_length = -1;
        s->head->chunked = false;
        s->head->dup_length = 0;
        s->head->gc_id = 0;
        return n;
    }
    if (n <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            s->head->status = code;
            s->headers_done = true;
        }
        return n;
    }
    char line[300];
    size_t l = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
    memcpy(line, data, l);
    while (l && (line[l - 1] == '\r' || line[l - 1] == '\n'))
        l--;
    line[l] = '\0';
    char *colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = '\0';
    char *val = colon + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    if (!strcasecmp(line, "Content-Length")) {
        /* Plain digits only, and never two different values (RFC 9112
         * 6.3): such an answer is refused by the caller. */
        char *e;
        errno = 0;
        long long v = (*val >= '0' && *val <= '9') ? strtoll(val, &e, 10) : -1;
        if (v < 0 || errno || *e != '\0' ||
            (s->head->content_length >= 0 && s->head->content_length != v))
            s->head->dup_length = 1;
        else
            s->head->content_length = v;
    } else if (!strcasecmp(line, "Transfer-Encoding"))
        s->head->chunked = true;
    else if (!strcasecmp(line, "ETag"))
        snprintf(s->head->etag, sizeof(s->head->etag), "%s", val);
    else if (!strcasecmp(line, "Content-Range"))
        snprintf(s->head->content_range, sizeof(s->head->content_range), "%s", val);
    else if (!strcasecmp(line, "Content-Type"))
        snprintf(s->head->content_type, sizeof(s->head->content_type), "%s", val);
    else if (!strcasecmp(line, "X-CAS-GC")) {
        /* The backend's active GC cycle, as upstream_parse_head reads it
         * for upconn: the caller learns a cycle from it (gc_learn). Plain
         * digits only; anything else is no cycle. */
        uint64_t id;
        size_t vl = strlen(val);
        while (vl && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
            vl--;
        s->head->gc_id = cas_parse_u64_n(val, vl, &id) == 0 ? id : 0;
    }
    return n;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *cls)
{
    struct bstream *s = cls;
    size_t n = size * nmemb;
    if (!s->headers_done) {
        long code = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
        s->head->status = code;
        s->headers_done = true;
    }
    if (s->start == s->end)
        s->start = s->end = 0;
    if (s->cap - s->end < n && s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    if (s->cap - s->end < n) {
        s->paused = true;
        return CURL_WRITEFUNC_PAUSE; /* curl keeps the data and offers it again */
    }
    memcpy(s->buf + s->end, data, n);
    s->end += n;
    s->last_progress_ns = cas_now_ns();
    return n;
}

/* Runs the transfer until stop(s) holds, it ends, or it stalls. */
static int drive(struct bstream *s, bool (*stop)(const struct bstream *), unsigned timeout_ms,
                 char *err, size_t errlen)
{
    s->last_progress_ns = cas_now_ns();
    uint64_t t0 = s->last_progress_ns;
    if (s->budgeted && s->budget_ns == 0) {
        snprintf(err, errlen, "body not complete within the read deadline");
        return -ETIMEDOUT;
    }
    while (!stop(s) && !s->done) {
        int running = 0;
        if (curl_multi_perform(s->multi, &running) != CURLM_OK) {
            snprintf(err, errlen, "curl multi failure");
            return -EIO;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                s->done = true;
                s->result = msg->data.result;
            }
        if (stop(s) || s->done)
            break;
        if (s->paused)
            break; /* buffer full: the reader has to make room first */
        uint64_t now = cas_now_ns();
        if ((now - s->last_progress_ns) / 1000000 > timeout_ms) {
            snprintf(err, errlen, "no data for %u ms", timeout_ms);
            return -ETIMEDOUT;
        }
        if (s->budgeted && now - t0 >= s->budget_ns) {
            s->budget_ns = 0;
            snprintf(err, errlen, "body not complete within the read deadline");
            return -ETIMEDOUT;
        }
        curl_multi_poll(s->multi, NULL, 0, 100, NULL);
    }
    return 0;
}

static bool have_headers(const struct bstream *s)
{
    return s->headers_done;
}

static bool have_data(const struct bstream *s)
{
    return s->end > s->start;
}

int bstream_open(struct balancer *bal, const struct view *v, const char *url, const char *method,
                 const char *range, struct bstream **out, struct bstream_head *head, char *err,
                 size_t errlen)
{
    return bstream_open_within(bal, v, url, method, range, bal->opt.first_byte_timeout_ms, out,
                               head, err, errlen);
}

int bstream_open_within(struct balancer *bal, const struct view *v, const char *url,
                        const char *method, const char *range, unsigned head_ms,
                        struct bstream **out, struct bstream_head *head, char *err, size_t errlen)
{
    return bstream_open_window(bal, v, url, method, range, head_ms, BSTREAM_BUF, out, head, err,
                               errlen);
}

int bstream_open_window(struct balancer *bal, const struct view *v, const char *url,
                        const char *method, const char *range, unsigned head_ms, size_t window,
                        struct bstream **out, struct bstream_head *head, char *err, size_t errlen)
{
    *out = NULL;
    if (window == 0 || window > BSTREAM_BUF)
        window = BSTREAM_BUF;
    if (window < CURL_MAX_WRITE_SIZE) /* the most one write callback brings */
        window = CURL_MAX_WRITE_SIZE;
    memset(head, 0, sizeof(*head));
    head->content_length = -1;
    struct bstream *s = calloc(1, sizeof(*s));
    struct bstream_cache *c = cache_get();
    CURL *reuse = NULL;
    if (s && c && c->buf) {
        s->cached_buf = true;
        s->buf = c->buf;
        s->multi = c->multi;
        reuse = c->easy;
        c->buf = NULL;
        c->multi = NULL;
        c->easy = NULL;
    }
    if (s && !s->buf) {
        /* A full-size buffer can go to the thread's cache at close; a
         * window is freed then. */
        s->cached_buf = window == BSTREAM_BUF;
        s->buf = malloc(window);
    }
    if (s)
        s->cap = window;
    if (!s || !s->buf) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->head = head;
    s->io_timeout_ms = bal->opt.io_timeout_ms;
    if (!s->multi)
        s->multi = upstream_multi_new();
    s->easy = upstream_easy_reuse(reuse, v, url, method, &bal->opt, &s->hdrs);
    if (!s->multi || !s->easy) {
        bstream_close(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (range) {
        char h[300];
        snprintf(h, sizeof(h), "Range: %s", range);
        s->hdrs = curl_slist_append(s->hdrs, h);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->hdrs);
    }
    curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_multi_add_handle(s->multi, s->easy);
    int rc = drive(s, have_headers, head_ms, err, errlen);
    if (rc == 0 && s->done && s->result == CURLE_ABORTED_BY_CALLBACK &&
        cas_ctl_refused_reuse(s->easy)) {
        /* The pooled connection libcurl chose had bytes waiting after its
         * last answer (common/ctl_reuse.c): it is closed, and the request
         * goes out again on a new one. Nothing was sent on the old one. */
        curl_multi_remove_handle(s->multi, s->easy);
        curl_easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
        s->done = false;
        s->result = CURLE_OK;
        curl_multi_add_handle(s->multi, s->easy);
        rc = drive(s, have_headers, head_ms, err, errlen);
    }
    if (rc == 0 && !s->headers_done) {
        if (s->result != CURLE_OK)
            snprintf(err, errlen, "%s", curl_easy_strerror(s->result));
        else
            snprintf(err, errlen, "no response");
        rc = -EIO;
    }
    if (rc < 0) {
        bstream_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void bstream_set_read_budget(struct bstream *s, uint64_t budget_ns)
{
    s->budgeted = budget_ns != 0;
    s->budget_ns = budget_ns;
}

ssize_t bstream_read(struct bstream *s, char *buf, size_t max, char *err, size_t errlen)
{
    if (!have_data(s)) {
        if (s->paused) {
            s->paused = false;
            curl_easy_pause(s->easy, CURLPAUSE_CONT);
        }
        uint64_t t0 = cas_now_ns();
        int rc = drive(s, have_data, s->io_timeout_ms, err, errlen);
        if (s->budgeted) {
            uint64_t waited = cas_now_ns() - t0;
            s->budget_ns = waited >= s->budget_ns ? 0 : s->budget_ns - waited;
        }
        if (rc < 0)
            return rc;
        if (!have_data(s)) {
            if (s->done && s->result == CURLE_OK)
                return 0;
            snprintf(err, errlen, "%s",
                     s->done ? curl_easy_strerror(s->result) : "transfer stalled");
            return -EIO;
        }
    }
    size_t n = s->end - s->start;
    if (n > max)
        n = max;
    memcpy(buf, s->buf + s->start, n);
    s->start += n;
    return (ssize_t)n;
}

void bstream_close(struct bstream *s)
{
    if (!s)
        return;
    if (s->easy && s->multi)
        curl_multi_remove_handle(s->multi, s->easy);
    curl_slist_free_all(s->hdrs);
    struct bstream_cache *c = cache_get();
    if (c && !c->buf && s->multi && s->buf && s->cached_buf && s->easy) {
        c->multi = s->multi;
        c->buf = s->buf;
        c->easy = s->easy;
    } else {
        if (s->easy)
            curl_easy_cleanup(s->easy);
        if (s->multi)
            curl_multi_cleanup(s->multi);
        free(s->buf);
    }
    free(s);
}
