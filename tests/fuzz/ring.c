/*
 * ring.c - fuzzes the two readers of a storaged's GET /ring answer: the
 * balancer's probe (apply_ring in balancerd/probe.c) and `ca-cas
 * rebalance` (rb_parse_ring in common/rebalance.c). probe.c is included,
 * not linked, to reach its static reader without exporting it. Properties:
 * an accepted answer has a known hash and at least one token, and the node
 * id is a terminated string that fits its field; and the two readers agree
 * (accept the same answers, read the same node, hash and tokens), since
 * placement must be the same in every balancer and in the rebalancer.
 */
#include "../../balancerd/probe.c"

#include "fuzz.h"
#include "rebalance.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = fuzz_cstr(data, size);
    char node[128], err[256];
    const struct cas_hash_algo *algo = NULL;
    uint64_t *tokens = NULL;
    size_t n = 0;
    int rc = rb_parse_ring(json, node, sizeof(node), &algo, &tokens, &n, err, sizeof(err));
    if (rc == 0) {
        FUZZ_CHECK(algo != NULL && tokens != NULL && n > 0);
        FUZZ_CHECK(strlen(node) < sizeof(node));
    } else {
        FUZZ_CHECK(tokens == NULL && n == 0);
    }

    struct backend *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    b->url = "http://fuzz:1";
    bool applied = apply_ring(b, json, strlen(json), err, sizeof(err));
    if (applied) {
        FUZZ_CHECK(b->algo != NULL && b->tokens != NULL && b->ntokens > 0);
        FUZZ_CHECK(strlen(b->node) < sizeof(b->node));
        /* The same answer again changes nothing. */
        FUZZ_CHECK(!apply_ring(b, json, strlen(json), err, sizeof(err)));
    }
    FUZZ_CHECK(applied == (rc == 0));
    if (applied && rc == 0) {
        FUZZ_CHECK(strcmp(b->node, node) == 0 && b->algo == algo && b->ntokens == n);
        FUZZ_CHECK(memcmp(b->tokens, tokens, n * sizeof(*tokens)) == 0);
    }
    free(tokens);
    free(b->tokens);
    free(b);
    free(json);
    return 0;
}
