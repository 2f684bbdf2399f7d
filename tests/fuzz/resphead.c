/*
 * resphead.c - fuzzes the balancer's reader of a backend's HTTP response
 * head (balancerd/upstream.c: upstream_head_end, upstream_parse_head), the
 * code that decides whether a storaged's answer to an object GET may be
 * relayed. The input is what the backend sends.
 *
 * Properties: the head's end, when found, lies inside the input; an
 * accepted final head has a status of three digits (200..999), a Content-Length
 * of -1 (none) or a plain non-negative number, and terminated strings that
 * fit their fields; and parsing is deterministic (the same head twice gives
 * the same answer). (Refusing disagreeing Content-Length values is checked
 * case by case in tests/unit/test_upstream.c.)
 */
#include "../../balancerd/upstream.c"

#include "fuzz.h"

static void run(const uint8_t *data, size_t size, bool is_head)
{
    const char *buf = (const char *)data;
    size_t hlen = upstream_head_end(buf, size);
    FUZZ_CHECK(hlen <= size);
    if (hlen == 0)
        return;
    struct bstream_head h1, h2;
    struct upstream_framing f1, f2;
    char err[512];
    memset(&h1, 0, sizeof(h1));
    memset(&h2, 0, sizeof(h2));
    int r1 = upstream_parse_head(buf, hlen, is_head, &h1, &f1, err, sizeof(err));
    int r2 = upstream_parse_head(buf, hlen, is_head, &h2, &f2, err, sizeof(err));
    FUZZ_CHECK(r1 == r2);
    if (r1 < 0) {
        FUZZ_CHECK(strlen(err) < sizeof(err));
        return;
    }
    if (f1.informational) /* 1xx: the real head follows; nothing else to check */
        return;
    FUZZ_CHECK(h1.status >= 200 && h1.status <= 999);
    FUZZ_CHECK(h1.content_length >= -1);
    FUZZ_CHECK(h1.content_length == h2.content_length && h1.status == h2.status);
    FUZZ_CHECK(strlen(h1.content_range) < sizeof(h1.content_range));
    FUZZ_CHECK(strlen(h1.etag) < sizeof(h1.etag));
    FUZZ_CHECK(strlen(h1.content_type) < sizeof(h1.content_type));
    FUZZ_CHECK(memcmp(&f1, &f2, sizeof(f1)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, false);
    run(data, size, true);
    return 0;
}
