/*
 * keylines.c - fuzzes the key-list reader of POST /objects/missing and
 * POST /gc/mark (keylines_feed in storaged/routes_objects.c) with every key
 * line parsed as the routes do (cas_key_parse). The first input byte picks
 * how the body is cut into the chunks the HTTP server hands over, so that
 * lines straddling chunks are covered. Properties: the same body cut
 * differently gives the same lines; every line handed over is at most
 * 255 bytes and holds no '\n'.
 */
#include "fuzz.h"
#include "routes.h"

struct seen {
    uint64_t lines, keys, hash, last_lineno;
};

static int on_line(void *cls, const char *line, size_t len, uint64_t lineno)
{
    struct seen *s = cls;
    FUZZ_CHECK(len < 256);
    FUZZ_CHECK(memchr(line, '\n', len) == NULL);
    FUZZ_CHECK(lineno > s->last_lineno);
    s->last_lineno = lineno;
    s->lines++;
    for (size_t i = 0; i < len; i++)
        s->hash = s->hash * 31 + (unsigned char)line[i];
    s->hash = s->hash * 31 + lineno;
    struct cas_key k;
    char err[400];
    if (cas_key_parse(line, len, cas_hash_by_name("sha1"), &k, err, sizeof(err)) == 0)
        s->keys++;
    return 0;
}

static struct seen run(const char *body, size_t len, size_t chunk)
{
    struct keylines kl;
    memset(&kl, 0, sizeof(kl));
    struct seen s = {0};
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        char *piece = malloc(n); /* exact size: ASan catches reads past a chunk */
        memcpy(piece, body + off, n);
        FUZZ_CHECK(keylines_feed(&kl, piece, n, on_line, &s) == 0);
        free(piece);
    }
    FUZZ_CHECK(keylines_finish(&kl, on_line, &s) == 0);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = 1 + data[0] % 64;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct seen whole = run(body, len, len ? len : 1);
    struct seen cut = run(body, len, chunk);
    FUZZ_CHECK(whole.lines == cut.lines && whole.keys == cut.keys && whole.hash == cut.hash);
    return 0;
}
