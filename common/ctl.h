/*
 * ctl.h - the one libcurl client layer for the small control requests that
 * balancerd, the rebalance engine and the ca-cas tool send to a storaged or
 * a balancer (probe, ring, status, gc, capacity, listings, HEAD, DELETE).
 *
 * Three levels, each usable alone:
 *
 *   cas_ctl_easy      configures an easy handle for one request: URL,
 *                     method, bearer token, TLS (CA, client certificate),
 *                     connect and total timeouts, no signals, a user agent,
 *                     a stop flag, a stall limit. Streaming callers (object
 *                     copies, the tool's uploads) add their own callbacks.
 *   cas_ctl_perform   one request on a (reused) handle, its answer kept in
 *   cas_ctl_run       a cas_buf up to a size cap; or n requests in parallel
 *                     on one curl multi handle with one total deadline.
 *   cas_ctl_describe  a failure in one sentence: the curl error (with the
 *                     detail of its error buffer), or the HTTP status with
 *                     the server's JSON "error", or the start of the body.
 *
 * It knows nothing of the balancer's view or of the tool's options: callers
 * fill a struct cas_ctl_opts. Times are in milliseconds, sizes in bytes.
 */
#ifndef CAS_CTL_H
#define CAS_CTL_H

#include "buf.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#define CAS_CTL_MAX_BODY_DEFAULT (16u << 20) /* when opts.max_body is 0 */

struct cas_ctl_opts {
    /* Sent as "Authorization: Bearer <token>"; NULL: no such header. */
    const char *token;
    /* For https:// URLs: the PEM text of the CA to verify the server against
     * (NULL: libcurl's system store; peer and host name are always
     * verified), and a client certificate and key (PEM texts, both or none).
     * libcurl copies them. Ignored for http://. */
    const char *ca_pem;
    size_t ca_len;
    const char *cert_pem, *key_pem;
    size_t cert_len, key_len;
    long connect_timeout_ms; /* 0: libcurl's default (300 s) */
    long timeout_ms;         /* the whole request; 0: no limit */
    long stall_ms;           /* fail when no byte moves for this long (rounded up to s); 0: never */
    const char *user_agent;  /* NULL: none sent */
    /* Let libcurl send "Expect: 100-continue" before a large upload, so a
     * refusal comes before the body (the tool); false: never (the daemons). */
    bool expect_continue;
    /* Set to non-zero (another thread, a signal handler) to abort requests
     * in flight; NULL: none. */
    volatile int *stop;
    CURLSH *share;   /* a connection pool to use (CURL_LOCK_DATA_CONNECT); NULL: the handle's own */
    size_t max_body; /* cas_ctl_perform / cas_ctl_run: answer bodies larger
                        than this fail the request; 0: CAS_CTL_MAX_BODY_DEFAULT */
};

/*
 * Configures *e for method ("GET", "HEAD", "POST", "DELETE", ...) on url,
 * from o. *e is reset first (which keeps its connections) or, when NULL,
 * made. *hdrs gets the request's header list (the token; "Expect:" unless
 * o->expect_continue), which the caller frees with curl_slist_free_all
 * after the transfer; to add headers, append to *hdrs and set
 * CURLOPT_HTTPHEADER again. errbuf (CURL_ERROR_SIZE bytes, or NULL) becomes
 * the handle's error buffer, emptied. HEAD sets CURLOPT_NOBODY; methods
 * other than GET and HEAD are set with CURLOPT_CUSTOMREQUEST (the body, if
 * any, is the caller's). Returns 0, or -ENOMEM (*e left as it was when it
 * was given; *hdrs NULL).
 */
int cas_ctl_easy(CURL **e, const struct cas_ctl_opts *o, const char *url, const char *method,
                 struct curl_slist **hdrs, char *errbuf);

/* Adds the request header line ("Name: value") to *hdrs, the list
 * cas_ctl_easy gave for e, and sets the list on e; 0 or -ENOMEM. Before the
 * transfer starts only. */
int cas_ctl_add_header(CURL *e, struct curl_slist **hdrs, const char *line);

/*
 * Pooled connections (ctl_reuse.c): a handle configured by cas_ctl_easy
 * never sends a request on a pooled connection that has anything waiting
 * on it (bytes after its last answer, EOF, an error): the transfer stops
 * before sending (CURLE_ABORTED_BY_CALLBACK) and libcurl closes that
 * connection. cas_ctl_refused_reuse(e) is true (once) when that is why e's
 * transfer stopped: send it again with CURLOPT_FRESH_CONNECT set.
 * cas_ctl_guard_reuse installs the check on e (cas_ctl_easy calls it).
 */
void cas_ctl_guard_reuse(CURL *e);
bool cas_ctl_refused_reuse(CURL *e);

/* One small request and its answer. */
struct cas_ctl_req {
    /* in */
    const char *url;
    const char *method;
    const char *body; /* sent as is; NULL: none (a POST then sends an empty body) */
    size_t body_len;
    const char *header; /* one more request header, "Name: value"; NULL: none */
    /* out (set by cas_ctl_perform / cas_ctl_run; free resp with cas_ctl_req_free) */
    long status;         /* the HTTP status; 0 when there was no complete answer */
    int curl_code;       /* the CURLcode of a failed request, else CURLE_OK */
    bool too_big;        /* the body went over max_body: the request failed */
    struct cas_buf resp; /* the body of the answer (any status) */
    double ms;           /* how long it took */
    char errbuf[CURL_ERROR_SIZE];
};

/*
 * Sends r on *e (reused when not NULL, made otherwise; keep it for the next
 * request to the same server to reuse the connection) and waits for the
 * answer, bounded by o's timeouts. Fills r's out fields. Returns 0 when an
 * answer came (any status: look at r->status), -ENOMEM, -EINTR when
 * *o->stop was set, or -EIO when the request failed (r says why:
 * cas_ctl_describe).
 */
int cas_ctl_perform(CURL **e, const struct cas_ctl_opts *o, struct cas_ctl_req *r);

/*
 * Sends the n requests in parallel (one curl multi handle) and waits until
 * each has its answer or failed, at most deadline_ms in all (0: only o's
 * own timeouts). A request not done by the deadline fails with
 * CURLE_OPERATION_TIMEDOUT. Fills each request's out fields. Returns 0
 * (individual failures are in the requests), or -ENOMEM when nothing could
 * be sent (every request then fails with that message).
 */
int cas_ctl_run(const struct cas_ctl_opts *o, struct cas_ctl_req *reqs, size_t n, long deadline_ms);

void cas_ctl_req_free(struct cas_ctl_req *r);

/*
 * Why r did not succeed, in one phrase without a final period:
 *   no answer:  the curl error buffer's text, else curl's text for the code
 *               ("answer over N bytes" when the body went over the cap);
 *   an answer:  "HTTP <status>: <the JSON body's "error">", or
 *               "HTTP <status>: <the body's first line, at most 160 bytes>"
 *               (not for an HTML page), or "HTTP <status>".
 */
void cas_ctl_describe(const struct cas_ctl_req *r, char *out, size_t outlen);

/* The same two halves for callers that stream the body themselves:
 * body may be NULL, need not end with NUL (len bytes are looked at). */
void cas_ctl_describe_curl(int curl_code, const char *errbuf, char *out, size_t outlen);
void cas_ctl_describe_status(long status, const char *body, size_t len, char *out, size_t outlen);

/* The "error" string of a JSON answer {"error": "..."} into out; 0, or
 * -ENOENT when body is not such an object. */
int cas_ctl_json_error(const char *body, size_t len, char *out, size_t outlen);

#endif
