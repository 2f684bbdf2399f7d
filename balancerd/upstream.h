/*
 * upstream.h - requests from the balancer to its backends: the transport
 * layer's bottom (above state.h only).
 *
 * Two clients: libcurl, through the control layer common/ctl.h, for small
 * parallel control requests (upstream_run) and the configured easy handles
 * bstream.c and fanout.c drive; and a
 * hand-written HTTP/1.1 reader on pooled keep-alive connections for object
 * reads (upconn_*), kept for speed, whose response-head parser
 * (upstream_parse_head) is shared with bstream's header callback rules.
 */
#ifndef CAS_BAL_UPSTREAM_H
#define CAS_BAL_UPSTREAM_H

#include "buf.h"
#include "state.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct upstream_call {
    /* in */
    char url[1024];
    const char *method;
    const char *body; /* NULL: none */
    size_t body_len;
    const char *header; /* one more request header, "Name: value"; NULL: none */
    size_t backend; /* index in the view, for the caller */
    /* out */
    long status;      /* 0 when the request failed */
    int curl_code;    /* CURLcode of a failed request */
    struct cas_buf resp; /* the body; one over 16 MiB fails the call */
    char err[256];       /* why a failed call failed (cas_ctl_describe) */
    double ms;
    bool skipped; /* not asked: the probes say the backend is down */
};

/* A configured easy handle (cas_ctl_easy with v's token and TLS texts and
 * opt's connect timeout, on the process-wide connection pool): URL, method,
 * token, no signals, no Expect: 100-continue. *hdrs gets the header list to
 * free. NULL when out of memory. */
CURL *upstream_easy(const struct view *v, const char *url, const char *method,
                    const struct balancer_options *opt, struct curl_slist **hdrs);

/* Same on a handle from an earlier request (reset first), or a new one
 * when e is NULL. */
CURL *upstream_easy_reuse(CURL *e, const struct view *v, const char *url, const char *method,
                          const struct balancer_options *opt, struct curl_slist **hdrs);

/* A multi handle whose share of the process-wide connection pool is large
 * enough for many concurrent requests. */
CURLM *upstream_multi_new(void);

/* Runs n small requests in parallel (cas_ctl_run), all bounded by one
 * deadline of timeout_ms (0: none). */
void upstream_run(struct balancer *bal, const struct view *v, struct upstream_call *calls,
                  size_t n, long timeout_ms);
void upstream_calls_free(struct upstream_call *calls, size_t n);
/* Error text of a failed call or a non-2xx answer (cas_ctl_describe:
 * "HTTP 503: <its JSON error>"). */
void upstream_describe(const struct upstream_call *c, char *out, size_t outlen);

/* What a response head says that the balancer acts on; filled by
 * upstream_parse_head (upconn) and by bstream's header callback alike. */
struct bstream_head {
    long status;
    int64_t content_length; /* -1 unknown */
    uint64_t gc_id;         /* X-CAS-GC: the backend's active GC cycle; 0 none */
    bool chunked;           /* a Transfer-Encoding: a framing never relayed as an object */
    int dup_length;         /* bstream: conflicting Content-Length headers seen */
    char content_range[128];
    char content_type[128];
    char etag[160]; /* as sent, quotes included; "" when none */
};

/* ---- upstream.c: object reads on pooled keep-alive connections ---------- */

struct upconn;

/* Sends method (GET or HEAD) for path to the backend at base
 * ("http://host:port") on a pooled keep-alive connection, or a new one, and
 * reads the response head (first_byte_timeout_ms). Returns 0 with head
 * filled (a chunked answer comes back marked head->chunked, for the caller
 * to refuse), -ENOTSUP when this reader cannot do it (https: use a
 * bstream), or -errno with err set. */
int upconn_open(struct balancer *bal, const struct view *v, const char *base, const char *path,
                const char *method, const char *range, struct upconn **out,
                struct bstream_head *head, char *err, size_t errlen);
/* upconn_open in two steps, so that several backends can be asked at once
 * (hedged reads): upconn_start takes a pooled connection (or makes one)
 * and sends the request; upconn_fd is what to poll for the answer;
 * upconn_finish reads the head (first_byte_timeout_ms from the start; a
 * pooled connection found closed is replaced once) and gives the
 * connection to read the body from in *out, or frees it and returns
 * -errno; upconn_abandon drops a request whose answer is not wanted. */
int upconn_start(struct balancer *bal, const struct view *v, const char *base, const char *path,
                 const char *method, const char *range, struct upconn **out, char *err,
                 size_t errlen);
int upconn_fd(const struct upconn *c);
/* What to poll upconn_fd for: POLLIN, or POLLOUT while a TLS handshake
 * waits to send. */
short upconn_events(const struct upconn *c);
/* True when bytes of the answer are already in (decrypted TLS records):
 * upconn_head_step or a read makes progress without the fd polling
 * readable. */
bool upconn_ready(const struct upconn *c);
int upconn_finish(struct balancer *bal, struct upconn *c, struct upconn **out,
                  struct bstream_head *head, char *err, size_t errlen);
void upconn_abandon(struct upconn *c);
/* Without blocking, reads what has come of the answer to c's request
 * (upconn_start): 1 once the WHOLE response head is in (head filled; the
 * body follows through upconn_read or upconn_read_nowait), 0 when it is
 * not yet (poll upconn_fd again; a head that has begun counts for nothing:
 * a backend that sends its status line and stalls is still unanswered),
 * or -errno with err: the peer closed the connection or failed before the
 * head was complete, or sent a malformed or over-long head (-EPROTO). A
 * pooled connection found closed before any byte of the answer is replaced
 * and the request sent again (0). The caller initialises head (status 0,
 * content_length -1) and bounds the wait itself (first_byte_timeout_ms). */
int upconn_head_step(struct balancer *bal, struct upconn *c, struct bstream_head *head, char *err,
                     size_t errlen);
/* As upconn_read, without waiting: -EAGAIN when no byte is there now (poll
 * upconn_fd). A failure (an EOF before the end) is -EIO with err. */
ssize_t upconn_read_nowait(struct upconn *c, char *buf, size_t max, char *err, size_t errlen);
/* Without waiting, makes sure some of the body has come, and keeps it for
 * upconn_read: > 0 bytes buffered, 0 when the body is empty or over,
 * -EAGAIN when none has come yet, -EIO with err on failure. (Hedged reads
 * of large objects: a head followed by a stalled body has not answered.) */
ssize_t upconn_prefetch_nowait(struct upconn *c, char *err, size_t errlen);
/* Up to max bytes of body: > 0, 0 at the end, -errno on failure
 * (io_timeout_ms without data, or the peer closed before the end). */
ssize_t upconn_read(struct upconn *c, char *buf, size_t max, char *err, size_t errlen);
/* As bstream_set_read_budget. */
void upconn_set_read_budget(struct upconn *c, uint64_t budget_ns);
/* Back to the pool when the response was read to its end, else closed. */
void upconn_close(struct upconn *c);

/* How a response's body is framed, from its head (upstream_parse_head). */
struct upstream_framing {
    bool informational; /* 1xx: the real head follows */
    bool keep_alive;    /* the connection may carry another request after this one */
    bool until_close;   /* no usable length (none, or a transfer coding): read to EOF */
    int64_t body;       /* body bytes after the head, when !until_close */
};

/* Length of the response head at the start of buf[0..len) including the
 * empty line that ends it (CRLF or bare LF line ends), 0 when incomplete. */
size_t upstream_head_end(const char *buf, size_t len);

/* Parses a response head buf[0..hlen) (as measured by upstream_head_end)
 * of a request whose method was HEAD when is_head. Fills head (status,
 * Content-Length, Content-Range, ETag, a transfer coding, X-CAS-GC) and fr.
 * Returns 0, or -EPROTO with err saying why: a malformed status line or
 * header line, obs-fold (a folded header line), a Content-Length that is
 * not plain digits, or two Content-Length headers that disagree
 * (RFC 9112 6.3). Connection tokens are compared without case. */
int upstream_parse_head(const char *buf, size_t hlen, bool is_head, struct bstream_head *head,
                        struct upstream_framing *fr, char *err, size_t errlen);


#endif
