/*
 * ringjson.h - the one reader of a storaged's GET /ring answer.
 *
 * The balancer (balancerd/probe.c, its probes) and `ca-cas rebalance`
 * (common/rebalance.c) both build the ring from these answers, and SPEC
 * requires both to place every object identically: they must accept and
 * refuse exactly the same answers, so they share this parser.
 *
 * An answer is accepted only when it is exactly what SPEC describes:
 *   {"node":"<16 lowercase hex>","hash":"sha1"|"sha256",
 *    "tokens":["<16 lowercase hex>", ...]}
 * a complete JSON object (jansson, duplicate members refused), with between
 * RINGJSON_TOKENS_MIN and RINGJSON_TOKENS_MAX tokens (a storaged makes one
 * per GiB of capacity, clamped to that range). Other members are ignored.
 * Anything else (a truncated document, a token "-1", "0x12" or of another
 * length, 100,000 tokens) is refused whole: a backend that sends it stays
 * out of the ring rather than taking placements it has no right to.
 */
#ifndef CAS_RINGJSON_H
#define CAS_RINGJSON_H

#include "hash.h"

#include <stddef.h>
#include <stdint.h>

#define RINGJSON_TOKENS_MIN 64
#define RINGJSON_TOKENS_MAX 16384
/* Longest answer read: 16384 tokens take about 320 KB. */
#define RINGJSON_MAX_BYTES (1u << 20)

/*
 * Parses json[0..len) into node (NUL-terminated; nodelen >= 17), *algo and
 * a malloc'ed array of *ntokens tokens in the order given (the caller frees
 * it). Returns 0, -EPROTO with err naming what is wrong (and *tokens NULL),
 * or -ENOMEM.
 */
int ringjson_parse(const char *json, size_t len, char *node, size_t nodelen,
                   const struct cas_hash_algo **algo, uint64_t **tokens, size_t *ntokens, char *err,
                   size_t errlen);

#endif
