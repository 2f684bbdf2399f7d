/*
 * json.c - fuzzes the JSON member readers (cas_json_get_* in common/json.c)
 * that the balancer and the CLI use on every storaged answer (/status, /gc,
 * /capacity, /compact, /ring, GC replies). Properties: a string read fits
 * its buffer and is terminated, whatever the buffer size.
 */
#include "fuzz.h"
#include "json.h"

#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"node", "hash", "id", "objects", "bytes", "active",
                                        "running", "error", "key", "tokens", "removed",
                                        "done_bytes", "total", "available", ""};
    char *json = fuzz_cstr(data, size);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        static const size_t lens[] = {1, 2, 17, 128};
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            char *out = malloc(lens[l]); /* exact size: ASan catches an overrun */
            if (cas_json_get_string(json, names[i], out, lens[l]) == 0)
                FUZZ_CHECK(strlen(out) < lens[l]);
            free(out);
        }
        uint64_t u;
        bool b;
        (void)cas_json_get_u64(json, names[i], &u);
        (void)cas_json_get_bool(json, names[i], &b);
    }
    free(json);
    return 0;
}
