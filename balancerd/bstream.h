/*
 * bstream.h - pulling a backend's response body through libcurl, on
 * demand (transport layer, above upstream.h).
 */
#ifndef CAS_BAL_BSTREAM_H
#define CAS_BAL_BSTREAM_H

#include "upstream.h"

struct bstream;

/* Sends method to url with an optional Range header and waits for the
 * response headers (at most first_byte_timeout_ms). Returns 0 with the
 * head filled, or -errno with err set (nothing received: try another
 * backend). */
int bstream_open(struct balancer *bal, const struct view *v, const char *url, const char *method,
                 const char *range, struct bstream **out, struct bstream_head *head, char *err,
                 size_t errlen);
/* bstream_open with head_ms instead of first_byte_timeout_ms: the longest
 * wait for the response headers (a listing's shorter bound, cluster.c). A
 * wait past it is -ETIMEDOUT with err "no data for N ms". */
int bstream_open_within(struct balancer *bal, const struct view *v, const char *url,
                        const char *method, const char *range, unsigned head_ms,
                        struct bstream **out, struct bstream_head *head, char *err, size_t errlen);
/* bstream_open_within that keeps at most window bytes (1 to 512 KiB) of
 * body waiting for the reader, instead of 512 KiB: a listing holds one
 * stream per backend at once (cluster.c). */
int bstream_open_window(struct balancer *bal, const struct view *v, const char *url,
                        const char *method, const char *range, unsigned head_ms, size_t window,
                        struct bstream **out, struct bstream_head *head, char *err, size_t errlen);
/* Limits the total time bstream_read may spend waiting for the backend
 * over the rest of the body to budget_ns (0: no limit); past it a read
 * fails with -ETIMEDOUT. Time the caller spends elsewhere (a slow client)
 * is not counted: the limit is on the backend's slowness. */
void bstream_set_read_budget(struct bstream *s, uint64_t budget_ns);
/* Up to max bytes of body: > 0, 0 at the end, -errno on failure. */
ssize_t bstream_read(struct bstream *s, char *buf, size_t max, char *err, size_t errlen);
void bstream_close(struct bstream *s);

#endif
