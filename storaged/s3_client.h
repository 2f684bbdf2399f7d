/*
 * s3_client.h - requests to one bucket of an S3-compatible server, through
 * libcurl: path-style URLs (ENDPOINT/BUCKET/KEY), AWS Signature V4 by
 * libcurl itself (CURLOPT_AWS_SIGV4), connections shared between threads,
 * bounded retries with backoff where S3 clients retry (connection failures,
 * timeouts, truncated bodies, 500/502/503/504 including SlowDown; never
 * 4xx), and timeouts that turn a hung server into an error in seconds.
 */
#ifndef CAS_S3_CLIENT_H
#define CAS_S3_CLIENT_H

#include "buf.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_ERROR_BODY_MAX (4u << 20) /* bytes of an XML answer kept in memory */

struct s3_client {
    char *endpoint; /* without a trailing slash */
    char *bucket;
    char *region;
    char *userpwd; /* "access:secret" for CURLOPT_USERPWD; never logged */
    char sigv4[160];
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
    long connect_timeout_ms; /* per attempt (default 3000) */
    long low_speed_s;        /* an attempt that moves no byte this long fails (default 5) */
    unsigned max_attempts;   /* first try plus retries (default 4) */
    uint64_t deadline_ms;    /* no retry starts after this long (default 15000) */
    /* Every attempt ends, whatever trickles: attempt_base_ms (default
     * 15000) plus the bytes it moves or makes the server handle
     * (s3_req.body_len, out_cap, work_bytes) at min_rate bytes/s (default
     * 1 MiB/s). low_speed_s alone let a bucket that sends a byte a second
     * hold a request for ever. */
    uint64_t attempt_base_ms, min_rate;
    uint64_t requests, retries, failures; /* counters (atomic) */
};

/* Sets the bound of one request from timeout_ms (S3_DEFAULT_TIMEOUT_MS
 * when 0): no retry starts after timeout_ms (deadline_ms), each attempt
 * ends after timeout_ms plus its bytes at min_rate (attempt_base_ms), and
 * an attempt that moves no byte for a third of it (at least 1 s) fails
 * (low_speed_s). Before the client is used. */
void s3_client_set_timeout(struct s3_client *c, uint64_t timeout_ms);

/* endpoint: http(s)://host[:port][/path]; region NULL or "" means us-east-1.
 * 0, or -EINVAL / -ENOMEM with a message. */
int s3_client_init(struct s3_client *c, const char *endpoint, const char *bucket,
                   const char *region, const char *access_key, const char *secret_key, char *err,
                   size_t errlen);
void s3_client_free(struct s3_client *c);

struct s3_req {
    const char *method; /* GET, HEAD, PUT, POST, DELETE */
    const char *key;    /* object key in the bucket; NULL: the bucket itself */
    const char *query;  /* URL-encoded, parameters in sorted order (SigV4's canonical
                         * query), or NULL */
    const void *body;   /* PUT/POST body in memory (NULL, 0: empty) */
    size_t body_len;
    const char *payload_sha256;    /* its SHA-256 in hex when known; NULL: UNSIGNED-PAYLOAD */
    uint64_t range_off, range_len; /* Range: bytes=off-(off+len-1) when range_len > 0 */
    const char *header;            /* one more request header ("x-amz-copy-source: ..."), or NULL */
    char *out;                     /* a 2xx GET body goes here, at most out_cap bytes; */
    size_t out_cap;                /* NULL: into resp->body (bounded, S3_ERROR_BODY_MAX) */
    uint64_t work_bytes;           /* bytes the server handles without sending them (a
                                    * copy, a multipart completion): lengthens the
                                    * attempt's time bound (s3_client.attempt_base_ms) */
};

struct s3_resp {
    long status;            /* HTTP status of the last attempt */
    size_t out_len;         /* bytes written to req->out */
    struct cas_buf body;    /* other bodies (XML); the caller frees it (s3_resp_free) */
    int64_t content_length; /* -1 unknown */
    char etag[200];         /* the ETag header, quotes kept; "" when none */
};

/* Sends the request, retrying as described above. 0 when the server
 * answered (any status: the caller judges it, s3_status_error words it);
 * -EIO (transport failure, timeout, truncated or over-long body after the
 * last attempt) or -ENOMEM with a message naming the method, key and cause. */
int s3_do(struct s3_client *c, const struct s3_req *req, struct s3_resp *resp, char *err,
          size_t errlen);
void s3_resp_free(struct s3_resp *resp);

/* "PUT objects/ab..: 403 AccessDenied: message" from a non-2xx answer
 * (the XML <Error>'s code and message when there is one). */
void s3_status_error(const struct s3_req *req, const struct s3_resp *resp, char *err,
                     size_t errlen);

/* True for statuses a retry may cure (500, 502, 503, 504). */
bool s3_status_retryable(long status);

/* Percent-encodes s for a query value (RFC 3986 unreserved kept). */
int s3_query_escape(const char *s, char *out, size_t outlen);

/* True when q is already SigV4's canonical query string (AWS SigV4 for S3,
 * "CanonicalQueryString"): name=value pairs joined by '&', each byte
 * unreserved (A-Z a-z 0-9 - _ . ~) or %XX with upper-case hex, sorted by
 * name and then value, every name with its '='. libcurl 7.88 signs the
 * query exactly as given (it neither sorts nor encodes it), so s3_do
 * refuses any other form with -EINVAL instead of sending a request that
 * checking servers answer 403 SignatureDoesNotMatch. */
bool s3_query_canonical(const char *q);

#endif
