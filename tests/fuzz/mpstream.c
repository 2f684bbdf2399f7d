/*
 * mpstream.c - fuzzes the streaming multipart/form-data reader both daemons
 * use for Cask uploads (mp_init, mp_feed, mp_finish in common/multipart.c)
 * the way the HTTP layer drives it: the body arrives in chunks of any size.
 *
 * Input: one byte choosing the chunk size, the Content-Type value up to the
 * first '\n', then the body. Properties: the body fed whole and fed in
 * chunks gives the same verdict and the same file bytes (a delimiter or a
 * header split across chunks changes nothing); the file bytes arrive in
 * order, at offsets inside the body, and are a contiguous run of it; an
 * error leaves a message.
 */
#include "fuzz.h"
#include "multipart.h"

#include <errno.h>

struct got {
    const char *body;
    size_t blen;
    uint64_t start, next; /* body offset of the first file byte, of the next expected */
    bool any;
    uint64_t hash, n;
};

static int on_data(void *cls, const char *data, size_t len, uint64_t off)
{
    struct got *g = cls;
    FUZZ_CHECK(off <= g->blen && len <= g->blen - off);
    FUZZ_CHECK(memcmp(data, g->body + off, len) == 0); /* the body's own bytes */
    if (!g->any) {
        g->any = true;
        g->start = g->next = off;
    }
    FUZZ_CHECK(off == g->next); /* in order, no gap, no overlap */
    g->next = off + len;
    for (size_t i = 0; i < len; i++)
        g->hash = g->hash * 131 + (unsigned char)data[i];
    g->n += len;
    return 0;
}

/* Feeds the body in chunks of chunk bytes; the verdict (0 or -errno). */
static int run(const char *ct, const char *body, size_t blen, size_t chunk, struct got *g)
{
    memset(g, 0, sizeof(*g));
    g->body = body;
    g->blen = blen;
    struct mp_reader *r = malloc(sizeof(*r));
    if (!r)
        abort();
    char err[256] = "";
    int rc = mp_init(r, ct, on_data, g, err, sizeof(err));
    if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0');
        free(r);
        return rc;
    }
    for (size_t off = 0; rc == 0 && off < blen; off += chunk) {
        size_t n = blen - off < chunk ? blen - off : chunk;
        char *piece = malloc(n); /* exact size: ASan catches reads past a chunk */
        memcpy(piece, body + off, n);
        rc = mp_feed(r, piece, n);
        free(piece);
    }
    if (rc == 0)
        rc = mp_finish(r);
    if (rc < 0)
        FUZZ_CHECK(memchr(r->err, '\0', sizeof(r->err)) && r->err[0] != '\0');
    free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = 1 + data[0] % 97;
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    if (!nl)
        return 0;
    char *ct = fuzz_cstr(data + 1, (size_t)(nl - data - 1));
    const char *body = (const char *)nl + 1;
    size_t blen = size - (size_t)(nl + 1 - data);
    struct got whole, cut;
    int a = run(ct, body, blen, blen ? blen : 1, &whole);
    int b = run(ct, body, blen, chunk, &cut);
    FUZZ_CHECK(a == b);
    if (a == 0) {
        FUZZ_CHECK(whole.n == cut.n && whole.hash == cut.hash);
        FUZZ_CHECK(!whole.any || whole.start == cut.start);
    }
    free(ct);
    return 0;
}
