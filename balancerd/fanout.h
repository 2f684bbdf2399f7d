/*
 * fanout.h - pushing one request body to several backends at once
 * (transport layer, above upstream.h).
 */
#ifndef CAS_BAL_FANOUT_H
#define CAS_BAL_FANOUT_H

#include "upstream.h"

struct fanout;

struct fanout_result {
    size_t backend; /* index in the view */
    long status;    /* 0: failed before an answer */
    char err[256];
    struct cas_buf resp;
};

/* Starts method on every url (body of content_length bytes, or chunked
 * when content_length < 0). */
int fanout_start(struct balancer *bal, const struct view *v, const char *method, char **urls,
                 const size_t *backends, size_t n, int64_t content_length, struct fanout **out);
/* The same with one more request header on every target ("Name: value",
 * e.g. a client write's X-CAS-Timestamp; NULL: none). */
int fanout_start_with(struct balancer *bal, const struct view *v, const char *method, char **urls,
                      const size_t *backends, size_t n, int64_t content_length, const char *header,
                      struct fanout **out);
/* Lets the fan-out drop a target that lags behind `need` others (they took
 * the chunk it has not, or answered 2xx at the end) for straggler_ms; by
 * default need is every target (nothing is dropped for lagging). A
 * target whose backend the probes mark down is dropped in any case. */
void fanout_set_quorum(struct fanout *f, size_t need, unsigned straggler_ms);
/* Longest wait for an answer once the body is sent (default 600 s: a
 * backend syncs before answering). */
void fanout_set_answer_timeout(struct fanout *f, unsigned ms);
/* Streams the next len bytes to every target still alive; returns how many
 * are alive (0: all have answered or failed). */
size_t fanout_feed(struct fanout *f, const char *data, size_t len);
/* Ends the body and waits for every answer. */
void fanout_finish(struct fanout *f);
size_t fanout_count(const struct fanout *f);
const struct fanout_result *fanout_result(const struct fanout *f, size_t i);
void fanout_free(struct fanout *f);

#endif
