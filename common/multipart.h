/*
 * multipart.h - the streaming multipart/form-data reader both daemons use
 * for Cask's `POST /` (and the storaged's `POST /local/`): it hands over the
 * bytes of the one part named "file", as they arrive, in bounded memory.
 *
 * Why not libmicrohttpd's MHD_PostProcessor: it cannot tell a body that
 * ends without its closing delimiter from a whole one (the storaged stored
 * such parts short by the bytes it held back), it concatenates two parts of
 * the same name, and it needs an MHD connection, which the balancer's
 * spooled body does not have. The rules here (RFC 2046 section 5.1.1, RFC
 * 7578):
 *  - the boundary comes from the Content-Type's boundary parameter (token or
 *    quoted string, 1 to 70 characters of RFC 2046's bchars);
 *  - the body is a preamble (ignored), then parts each opened by
 *    "--boundary" at the start of the body or after CRLF, followed by
 *    optional spaces or tabs and CRLF, then headers up to an empty line
 *    (at most MP_MAX_HEADERS bytes), then the part's bytes up to the next
 *    CRLF "--boundary"; "--boundary--" closes the body (the epilogue is
 *    ignored);
 *  - a part is the file when its Content-Disposition is form-data with the
 *    parameter name exactly "file" (case matters, as in an HTML form);
 *    other parts are skipped;
 *  - refused (-EINVAL, with a message): no closing delimiter, no part named
 *    "file", two parts named "file" (a form with <input multiple> sends one
 *    part per file: storing one of them silently would lose the others),
 *    anything after a delimiter but padding, CRLF or "--", headers too long.
 *
 * Memory: the struct itself (about MP_MAX_HEADERS bytes); part bytes are
 * passed through without copying, except a delimiter-sized tail held back
 * between calls.
 */
#ifndef CAS_MULTIPART_H
#define CAS_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_MAX_BOUNDARY 70
#define MP_MAX_HEADERS 8192
#define MP_FIELD "file"

/* Bytes of the file part; off is their offset in the body. Returns 0, or a
 * negative errno that stops the reader (mp_feed returns it). */
typedef int (*mp_data_fn)(void *cls, const char *data, size_t len, uint64_t off);

struct mp_reader {
    mp_data_fn on_data;
    void *cls;
    char delim[4 + MP_MAX_BOUNDARY + 1]; /* CRLF "--" boundary */
    size_t dlen;
    int state;
    size_t held;   /* bytes of delim matched at the end of the last input */
    uint64_t fed;  /* body bytes fed so far */
    bool in_file;  /* the current part is the file */
    bool saw_file; /* a part named "file" has begun */
    size_t after;  /* bytes of the delimiter line's tail read */
    char hdr[MP_MAX_HEADERS];
    size_t hlen;
    char err[160];
};

/*
 * Prepares r for a body of Content-Type content_type. -EINVAL (message in
 * err) when it is not multipart/form-data with a valid boundary.
 */
int mp_init(struct mp_reader *r, const char *content_type, mp_data_fn on_data, void *cls, char *err,
            size_t errlen);

/* Feeds the next len bytes of the body. 0, or -EINVAL (malformed; message
 * in r->err), or what on_data returned. After an error, stop feeding. */
int mp_feed(struct mp_reader *r, const char *data, size_t len);

/* The body has ended: 0 when it was whole and held exactly one file part;
 * -EINVAL with a message in r->err otherwise. */
int mp_finish(struct mp_reader *r);

/* True when content_type names multipart/form-data (case-insensitive). */
bool mp_is_form(const char *content_type);

#endif
