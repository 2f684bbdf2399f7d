/*
 * httpd.h - the HTTP server layer shared by storaged and balancerd.
 *
 * A thin layer over libmicrohttpd (one thread per connection, so handlers
 * may block on disk or on backends; see "connection guards" in httpd.c for
 * how idle and slow clients are kept from holding every thread). A daemon gives a route table; for each
 * request the layer matches the route, checks the bearer token, calls the
 * route's handler once the headers are in, feeds it the request body chunk
 * by chunk (never buffering it), queues the response the handler built,
 * logs one line and counts the request in the Prometheus metrics.
 *
 * A handler either builds a response at once (http_reply_*, http_error) or
 * sets req->on_body / req->on_done to take the body as it streams in and
 * answer when it is complete. A response whose body is produced on the fly
 * uses http_reply_stream with a reader callback.
 */
#ifndef CAS_HTTPD_H
#define CAS_HTTPD_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_req;
struct http_server;
struct MHD_Response;

typedef void (*http_handler_fn)(struct http_req *req);
/* Takes one chunk of request body; return 0 to go on. After an error, set a
 * response with http_error and return -1: the rest of the body is discarded
 * and the response is sent when the body has been read. */
typedef int (*http_body_fn)(struct http_req *req, const char *data, size_t len);
/* Called once the whole body is in; must set a response. */
typedef void (*http_done_fn)(struct http_req *req);
/* Produces up to max bytes of a streamed response at position pos. Returns
 * the count, HTTP_STREAM_END when finished (unknown-size bodies only), or
 * HTTP_STREAM_ERROR to abort the connection (the client sees a short body). */
typedef ssize_t (*http_reader_fn)(void *cls, uint64_t pos, char *buf, size_t max);
#define HTTP_STREAM_END ((ssize_t)-1)
#define HTTP_STREAM_ERROR ((ssize_t)-2)
#define HTTP_SIZE_UNKNOWN UINT64_MAX

enum http_route_flags {
    HTTP_PUBLIC = 1, /* never needs the token: GET/HEAD objects, /, /healthz, /metrics */
    HTTP_READ = 2,   /* object reads: need the token only with --auth-reads */
    /* The body is an object: with max_upload set, a longer body is refused
     * 413 (before it is read when Content-Length says so, else as soon as
     * it passes the limit). _FORM: the object inside a multipart form, so
     * the body may be up to 64 KiB longer than the object. */
    HTTP_UPLOAD = 4,
    HTTP_UPLOAD_FORM = 8,
    /* monitoring reads (probes, scrapes): logged at debug when answered
     * 2xx, so that a balancer's probes do not flood the log */
    HTTP_QUIET = 16,
};
#define HTTP_FORM_SLACK (64 * 1024)

struct http_route {
    const char *method; /* "GET", "PUT", ...; "GET" also serves HEAD */
    /* Exact path, or a pattern with one '*' standing for one path segment
     * (no slash), e.g. "/objects/<star>" or "/file/<star>/"; or ending in two
     * stars, which stand for the rest of the path, slashes included. */
    const char *pattern;
    http_handler_fn handler;
    unsigned flags;
    const char *name; /* label in metrics and logs */
    /* The query parameters the route reads, space-separated: any other is
     * refused 400 naming it (a typo such as ?stat=garbage must not list
     * the live objects). NULL: not checked. */
    const char *params;
};

struct http_req {
    struct http_server *srv;
    void *app; /* the server's app pointer, for handlers */
    const struct http_route *route;
    const char *method;
    const char *url; /* path only */
    bool is_head;
    bool http10;       /* the request came as HTTP/1.0: no chunked answers */
    const char *param; /* the segment matched by '*', NUL-terminated */
    size_t param_len;

    void *ctx;                          /* handler's per-request state */
    void (*cleanup)(struct http_req *); /* frees ctx; called once, at the end */
    http_body_fn on_body;
    http_done_fn on_done;

    /* Filled by the layer. */
    struct MHD_Connection *conn;
    struct MHD_Response *resp;
    unsigned status;
    bool body_failed;
    bool streamed;   /* bytes_out counted by the stream reader */
    bool queued;     /* a response went to libmicrohttpd */
    bool has_length; /* Content-Length given */
    uint64_t content_length;
    uint64_t bytes_in, bytes_out;
    uint64_t t0_ns;
    char param_buf[200];
    char *err_body; /* the last http_error's JSON, for an answer sent mid-body */
    size_t err_len;
};

struct http_server_config {
    const char *listen; /* "ADDR:PORT", "[v6]:PORT" */
    const struct http_route *routes;
    size_t nroutes;
    void *app;
    const char *token; /* NULL: no auth */
    bool auth_reads;
    unsigned max_connections; /* connections served at once (threads); 0: 512 */
    /* Connection guards against idle and slow clients (0: the default).
     * max_client_connections: most connections from one source address
     * (default max_connections / 2, at least 1). header_timeout_s: a new
     * connection must deliver a complete request head within this many
     * seconds of being accepted, however slowly it drips bytes (default 10).
     * idle_timeout_s: a connection is closed after this many seconds with no
     * byte moving either way, and a kept-alive connection must deliver its
     * next request head within this many seconds of the previous answer
     * (default 120). A transfer that keeps moving is never cut. */
    unsigned max_client_connections;
    unsigned header_timeout_s;
    unsigned idle_timeout_s;
    /* Largest object body the HTTP_UPLOAD routes take; 0: no limit here. */
    uint64_t max_upload;
    /* Appends the daemon's own metrics to the Prometheus text. */
    void (*metrics)(void *app, struct cas_buf *out);
    /* HTTPS: serve TLS with the credentials loaded by cas_tls_load (tls.h),
     * taken afresh by each handshake (SIGHUP reload). tls_trust: PEM CA
     * bundle that client certificates must chain to (mutual TLS; give
     * require_client_cert to cas_tls_load too); NULL: no client certs. */
    bool tls;
    const char *tls_trust;
};

#define HTTP_DEFAULT_MAX_CONNECTIONS 512
#define HTTP_DEFAULT_HEADER_TIMEOUT_S 10
#define HTTP_DEFAULT_IDLE_TIMEOUT_S 120

/* Raises the soft limit of open files (RLIMIT_NOFILE) to the hard limit and
 * logs it; returns the soft limit now in force. Called by http_server_start;
 * a daemon may call it earlier. */
unsigned long http_raise_fd_limit(void);

/* Checks that listen is an address http_server_start can bind
 * ("ADDR:PORT", "[V6]:PORT"; the port 0 to 65535, digits only; the
 * address resolved now), without binding it: daemons check it before they
 * touch anything, so a typo is a usage error (exit 2) that changes
 * nothing. 0, or -EINVAL with a message. */
int http_listen_check(const char *listen, char *err, size_t errlen);

/* Binds and starts serving. -errno with a message (e.g. address in use).
 * Also refuses guard settings that contradict each other (-EINVAL). */
int http_server_start(const struct http_server_config *cfg, struct http_server **out, char *err,
                      size_t errlen);
/* From now on every answer says "Connection: close" and closes its
 * connection: a proxy in front stops reusing connections to this server
 * before it stops listening (a balancer draining on SIGTERM). */
void http_server_close_keepalive(struct http_server *srv);
/* Stops without losing a request a client saw accepted: new connections
 * are refused (their SYNs dropped, then the port closed), those already
 * queued are accepted and served, every answer closes its connection, and
 * the requests in flight finish within timeout_ms (ms), after which
 * whatever is left is cut; a connection whose request head has not come
 * in whole gets 1 s of that for it. */
void http_server_stop(struct http_server *srv, unsigned timeout_ms);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(struct http_server *srv);

/* Request accessors. */
const char *http_header(struct http_req *req, const char *name);
const char *http_query(struct http_req *req, const char *name);

/*
 * Conditional GET/HEAD of an existing resource whose strong entity tag is
 * "<tag>" (tag given without the quotes), per RFC 9110 section 13.2.2:
 * If-Match that matches no tag (strong comparison; "*" matches) -> 412;
 * else If-None-Match that matches (weak comparison: W/"<tag>" matches too;
 * "*" matches) -> 304. Every field of each name counts, each a list; a
 * malformed list matches nothing. Returns 0 (serve it), 304 or 412.
 * *use_range is set false when an If-Range does not match strongly (a weak
 * tag, another tag, or a date: we keep no Last-Modified), meaning the Range
 * must be ignored and the whole object served with 200.
 * Call only once the resource is known to exist (a 404 stays a 404).
 */
unsigned http_preconditions(struct http_req *req, const char *tag, bool *use_range);

/* Responses. Each replaces any response set before. */
void http_reply(struct http_req *req, unsigned status, const char *content_type, const void *body,
                size_t len);
void http_reply_buf(struct http_req *req, unsigned status, const char *content_type,
                    struct cas_buf *body); /* takes body's storage */
void http_reply_json(struct http_req *req, unsigned status, struct cas_buf *json);
void http_error(struct http_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of a malloc'd buffer. */
void http_reply_owned(struct http_req *req, unsigned status, const char *content_type, void *body,
                      size_t len);
/*
 * A body of size HTTP_SIZE_UNKNOWN is sent chunked, which is what lets a
 * client tell a stream cut short (HTTP_STREAM_ERROR: no final chunk) from a
 * complete one. An HTTP/1.0 client cannot take chunks, so for it such a
 * reply is refused instead: free_cls(cls) is called and the answer becomes
 * 505 (http_refuse_http10). A route that does costly work before it
 * streams (a balancer opening every backend's listing) can check
 * http_client_can_frame_unknown_length first and refuse at once.
 */
void http_reply_stream(struct http_req *req, unsigned status, const char *content_type,
                       uint64_t size, http_reader_fn reader, void *cls, void (*free_cls)(void *));
/* False for an HTTP/1.0 request: a body of unknown length would reach it
 * unframed, ended by a close that cannot be told from a cut. */
bool http_client_can_frame_unknown_length(const struct http_req *req);
/* 505 HTTP Version Not Supported, JSON error naming the request and
 * HTTP/1.1 (docs/API.md, "HTTP versions"). */
void http_refuse_http10(struct http_req *req);
/* As http_reply_stream, with the size of libmicrohttpd's response buffer
 * (bytes, > 0; http_reply_stream uses HTTP_STREAM_BLOCK): the most a reader
 * is asked for per call, and the most handed to one send(). The buffer is
 * allocated with the response and lives as long as it does, so a larger
 * one trades memory per response for fewer calls (the balancer's relay of
 * large objects, see balancerd/proxy.c). */
#define HTTP_STREAM_BLOCK ((size_t)256 * 1024)
void http_reply_stream_block(struct http_req *req, unsigned status, const char *content_type,
                             uint64_t size, size_t block, http_reader_fn reader, void *cls,
                             void (*free_cls)(void *));
/* 304 Not Modified for an object of size bytes: no body, and the
 * Content-Length a 200 would have carried. */
void http_reply_not_modified(struct http_req *req, uint64_t size);
/* Adds a header to the response set last. */
void http_add_header(struct http_req *req, const char *name, const char *value);

/* The layer's own metrics (requests by route and status, latency, bytes). */
void http_metrics_render(struct http_server *srv, struct cas_buf *out);

uint64_t cas_now_ns(void);

#endif
