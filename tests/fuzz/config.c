/*
 * config.c - fuzzes the balancer's YAML config (common/config.c) through
 * config_parse, the in-memory form of config_load (the same code after the
 * file is read). Properties: an error names the file; an accepted config
 * keeps its promises (backends, replicas within 1..backends, min_replicas
 * within 1..replicas, normalised URLs without a trailing slash).
 */
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    struct config *c = NULL;
    char err[1024];
    err[0] = '\0';
    int rc = config_parse(text, size, "fuzz.yaml", &c, err, sizeof(err));
    if (rc == 0) {
        FUZZ_CHECK(c != NULL);
        FUZZ_CHECK(c->nbackends > 0);
        FUZZ_CHECK(c->replicas >= 1 && c->min_replicas >= 1);
        FUZZ_CHECK(c->min_replicas <= c->replicas);
        FUZZ_CHECK(c->replicas <= c->ndomains);
        for (size_t i = 0; i < c->nbackends; i++) {
            FUZZ_CHECK(c->backends[i].url && c->backends[i].domain);
            size_t l = strlen(c->backends[i].url);
            FUZZ_CHECK(l > 0 && c->backends[i].url[l - 1] != '/');
        }
        config_free(c);
    } else {
        FUZZ_CHECK(rc < 0);
        FUZZ_CHECK(strncmp(err, "fuzz.yaml", 9) == 0);
    }
    free(text);
    return 0;
}
