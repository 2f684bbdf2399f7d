/*
 * range.h - the Range request header of GET /objects/{key} (RFC 9110
 * section 14.2), kept apart from the routes so the unit tests and the
 * fuzzer (tests/fuzz/range.c) reach it directly.
 */
#ifndef CAS_RANGE_H
#define CAS_RANGE_H

#include <stdint.h>

/*
 * Parses the Range header h (NUL-terminated, or NULL when absent) against
 * an object of size bytes. Only one "bytes=" range is served: "a-b",
 * "a-" and "-n". Returns 0 and sets [*start, *end) (end exclusive, within
 * size) for a range; 1 when there is no usable Range header (serve the
 * whole object: absent, another unit, several ranges, syntax error);
 * -1 when the range is unsatisfiable (416).
 */
int range_parse(const char *h, uint64_t size, uint64_t *start, uint64_t *end);

#endif
