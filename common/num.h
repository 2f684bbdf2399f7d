/*
 * num.h - the one strict parser for numbers that come from outside: query
 * parameters (?id=, ?min_size=, ?wait=, ?sync=), command-line options,
 * environment variables and config files.
 *
 * strtoull and strtod are too lenient for input a person or a program
 * typed: they skip leading white space, take a sign ("-1" becomes
 * 2^64-1), saturate on overflow and read "inf", "nan" and hex. Here a
 * number is exactly what it looks like or it is refused:
 *  - an unsigned integer is one or more ASCII digits, nothing else (no
 *    sign, no space, no "0x"), and fits in 64 bits;
 *  - a real number is digits, optionally "." and digits, optionally an
 *    exponent "e" or "E" with an optional sign and digits, and is finite.
 * Each function returns 0 with *out set, or -EINVAL (not a number of that
 * form) or -ERANGE (a well-formed number that does not fit), leaving *out
 * unchanged.
 */
#ifndef CAS_NUM_H
#define CAS_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* s (NUL-terminated, may be NULL: -EINVAL) as a decimal uint64_t. */
int cas_parse_u64(const char *s, uint64_t *out);

/* The first len bytes of s as a decimal uint64_t (s need not end there). */
int cas_parse_u64_n(const char *s, size_t len, uint64_t *out);

/* s as a decimal uint64_t from 1 to UINT64_MAX (ids where 0 means "none"). */
int cas_parse_id(const char *s, uint64_t *out);

/* s as a finite, non-negative real number in the form described above. */
int cas_parse_real(const char *s, double *out);

/* A yes/no query parameter: exactly "0" or "1". */
int cas_parse_bit(const char *s, bool *out);

#endif
