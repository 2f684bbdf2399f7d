/*
 * range.h - the Range request header of GET /objects/{key} (RFC 9110
 * section 14.2), one reading of it for both daemons: a storaged serves the
 * range it parses, and a balancer forwards only a Range it parses the same
 * way and checks a backend's 206 or 416 against it (balancerd/proxy.c).
 * Kept apart from the routes so the unit tests and the fuzzer
 * (tests/fuzz/range.c) reach it directly.
 */
#ifndef CAS_RANGE_H
#define CAS_RANGE_H

#include <stdbool.h>
#include <stdint.h>

/* One range as asked, before the object's size is known. */
struct range_spec {
    bool suffix; /* "bytes=-n": the last n bytes (n in b) */
    uint64_t a;  /* first byte ("a-b", "a-") */
    uint64_t b;  /* last byte, UINT64_MAX for "a-"; n for a suffix */
};

/*
 * Parses the Range header h (NUL-terminated, or NULL when absent) without
 * the object's size. Only one "bytes=" range is served: "a-b", "a-" and
 * "-n"; a number past 2^64-1 counts as 2^64-1 (RFC 9110: a last-byte-pos
 * at or past the end means the end). Returns 0 with *r filled, or 1 when
 * there is no usable Range header (serve the whole object: absent, another
 * unit, several ranges, syntax error, b < a). Whether the answer is 1 does
 * not depend on the size.
 */
int range_spec_parse(const char *h, struct range_spec *r);

/*
 * The bytes r selects in an object of size bytes: 0 with [*start, *end)
 * (end exclusive, within size, not empty), or -1 when r is unsatisfiable
 * for that size (416).
 */
int range_resolve(const struct range_spec *r, uint64_t size, uint64_t *start, uint64_t *end);

/*
 * range_spec_parse then range_resolve: 0 and [*start, *end) for a range;
 * 1 when there is no usable Range header (outputs untouched); -1 when the
 * range is unsatisfiable (416).
 */
int range_parse(const char *h, uint64_t size, uint64_t *start, uint64_t *end);

#endif
