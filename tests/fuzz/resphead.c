/*
 * resphead.c - fuzzes the balancer's reader of a backend's HTTP response
 * (balancerd/upstream.c: exchange, parse_head, upconn_read), the code that
 * turns a storaged's answer to an object GET into the bytes a client gets.
 * The input is what the backend sends; it arrives over a socketpair that
 * is closed after it, as from a backend that answers and hangs up.
 *
 * upstream.c is included, not linked, so that its static parser is reached
 * without being exported (others edit that file: this target only calls
 * exchange and upconn_read by name). Properties: an accepted head has a
 * final status (200..999); a body with a Content-Length never yields more
 * bytes than it says, and the buffer bookkeeping stays inside the buffer.
 */
#include "../../balancerd/upstream.c"

#include "fuzz.h"

static void run(const uint8_t *data, size_t size, bool is_head)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0)
            break; /* what did not fit is not sent: a shorter answer */
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    struct upconn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->fd = sv[0];
    c->io_timeout_ms = 1000;
    snprintf(c->key, sizeof(c->key), "fuzz");
    static const char req[] = "GET /objects/x HTTP/1.1\r\nHost: fuzz\r\n\r\n";
    struct bstream_head head;
    memset(&head, 0, sizeof(head));
    bool nothing;
    char err[512];
    int rc = exchange(c, req, sizeof(req) - 1, is_head, 1000, &head, &nothing, err, sizeof(err));
    if (rc == 0) {
        FUZZ_CHECK(head.status >= 200 && head.status <= 999);
        FUZZ_CHECK(c->start <= c->end && c->end <= sizeof(c->buf));
        int64_t got = 0, want = c->until_close ? -1 : c->left;
        char buf[4096];
        for (;;) {
            ssize_t n = upconn_read(c, buf, sizeof(buf), err, sizeof(err));
            if (n <= 0)
                break;
            FUZZ_CHECK((size_t)n <= sizeof(buf));
            got += n;
            FUZZ_CHECK(c->start <= c->end && c->end <= sizeof(c->buf));
        }
        if (want >= 0)
            FUZZ_CHECK(got <= want);
        FUZZ_CHECK(strlen(head.content_range) < sizeof(head.content_range));
    }
    close(sv[0]);
    close(sv[1]);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, false);
    run(data, size, true);
    return 0;
}
