/*
 * json.h - writing JSON into a cas_buf.
 *
 * A tiny streaming writer: the caller opens objects and arrays, adds
 * members, and the writer places the commas. Strings are escaped per RFC
 * 8259. Reading is jansson's: cas_json_get_* below look up one member.
 */
#ifndef CAS_JSON_H
#define CAS_JSON_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cas_json {
    struct cas_buf *out;
    int depth;
    bool need_comma[32];
};

void cas_json_init(struct cas_json *j, struct cas_buf *out);
void cas_json_begin_object(struct cas_json *j);
void cas_json_end_object(struct cas_json *j);
void cas_json_begin_array(struct cas_json *j);
void cas_json_end_array(struct cas_json *j);
/* Starts a member "name": inside an object; follow with one value. */
void cas_json_key(struct cas_json *j, const char *name);
void cas_json_string(struct cas_json *j, const char *s);
void cas_json_u64(struct cas_json *j, uint64_t v);
void cas_json_i64(struct cas_json *j, int64_t v);
void cas_json_double(struct cas_json *j, double v);
void cas_json_bool(struct cas_json *j, bool v);
void cas_json_null(struct cas_json *j);

/* Escapes s as a JSON string (with quotes) onto b. The output is always
 * valid UTF-8 and valid JSON, whatever s holds: control characters become
 * \u00XX, and so does each byte that is not part of a well-formed
 * UTF-8 sequence (RFC 3629: overlong forms, surrogates, truncated sequences,
 * bytes 0xC0, 0xC1, 0xF5-0xFF), keeping its value; valid UTF-8 is copied. */
void cas_json_escape(struct cas_buf *b, const char *s);

/* Length (1-4) of the well-formed UTF-8 sequence at p (avail bytes there),
 * or 0 when p does not start one. */
size_t cas_utf8_valid_prefix(const unsigned char *p, size_t avail);

/*
 * Lookups of one top-level member in a JSON text, as the CLI, the balancer
 * and rebalance need for the daemons' small replies. The text is parsed
 * with jansson as a whole: it must be one JSON object (RFC 8259), UTF-8,
 * no member name twice, no \u0000 in a string, integers within
 * [-2^63, 2^63-1] (numbers beyond: send them as strings). Only members of
 * the top-level object count; one of the same name nested deeper does not.
 * Each call parses the text again: for small documents.
 * Returns 0 when found and well typed; -ENOENT when the object has no such
 * member (cas_json_get_string: or the member is not a string); -EINVAL when
 * the text is not such an object (also: empty, truncated) or the value has
 * the wrong type or does not fit.
 *  - get_string: the string unescaped, cut to outlen - 1 bytes (always NUL
 *    terminated; outlen 0 is -EINVAL).
 *  - get_u64: an integer >= 0, or a string of decimal digits (ids travel
 *    as strings) up to 2^64-1; fractions and exponents are -EINVAL.
 *  - get_bool: true or false.
 */
int cas_json_get_string(const char *json, const char *name, char *out, size_t outlen);
int cas_json_get_u64(const char *json, const char *name, uint64_t *out);
int cas_json_get_bool(const char *json, const char *name, bool *out);

#endif
