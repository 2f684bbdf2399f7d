/*
 * multipart.c - the streaming multipart/form-data reader (see multipart.h
 * for the rules it follows and why it is not MHD_PostProcessor).
 *
 * The delimiter is CRLF "--" boundary; the body is read as if it began with
 * CRLF, so that the first delimiter needs no special case. CR appears in
 * the delimiter only at its first byte (a boundary holds no CR), so a
 * partial match held at the end of one input can only start at that CR,
 * and when it fails, the held bytes are part data and the search goes on
 * from the first byte of the new input.
 */
#define _GNU_SOURCE
#include "multipart.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    MP_PREAMBLE, /* before the first delimiter (ignored) */
    MP_AFTER,    /* after a delimiter: "--", padding, CRLF */
    MP_HEADERS,  /* a part's headers, up to the empty line */
    MP_DATA,     /* a part's bytes */
    MP_CLOSED,   /* after the closing delimiter (epilogue, ignored) */
    MP_FAILED,
};

static int fail(struct mp_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct mp_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    r->state = MP_FAILED;
    return -EINVAL;
}

bool mp_is_form(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen("multipart/form-data");
    return strncasecmp(ct, "multipart/form-data", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

/* RFC 2046 bchars (space allowed, but not last). */
static bool bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("'()+_,-./:=? ", c) != NULL;
}

/*
 * Reads the next ";name=value" parameter from *p (a header value after its
 * first token). Names are case-insensitive (lowered here); a value is a
 * token or a quoted string (backslash escapes). False at the end or on a
 * malformed parameter (*bad set).
 */
static bool next_param(const char **p, char *name, size_t nlen, char *val, size_t vlen, bool *bad)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return false;
    if (*s != ';') {
        *bad = true;
        return false;
    }
    s++;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = 0;
    while (*s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t') {
        if (n + 1 >= nlen) {
            *bad = true;
            return false;
        }
        char c = *s++;
        name[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    name[n] = '\0';
    while (*s == ' ' || *s == '\t')
        s++;
    if (n == 0 || *s != '=') {
        *bad = true;
        return false;
    }
    s++;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t v = 0;
    if (*s == '"') {
        s++;
        while (*s && *s != '"') {
            if (*s == '\\' && s[1])
                s++;
            if (v + 1 >= vlen) {
                *bad = true;
                return false;
            }
            val[v++] = *s++;
        }
        if (*s != '"') {
            *bad = true;
            return false;
        }
        s++;
    } else {
        while (*s && *s != ';' && *s != ' ' && *s != '\t') {
            if (v + 1 >= vlen) {
                *bad = true;
                return false;
            }
            val[v++] = *s++;
        }
    }
    val[v] = '\0';
    *p = s;
    return true;
}

int mp_init(struct mp_reader *r, const char *ct, mp_data_fn on_data, void *cls, char *err,
            size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->on_data = on_data;
    r->cls = cls;
    if (!mp_is_form(ct)) {
        snprintf(err, errlen, "not a multipart/form-data body");
        return -EINVAL;
    }
    const char *p = strchr(ct, ';');
    char name[32], val[MP_MAX_BOUNDARY + 2];
    bool bad = false, found = false;
    while (p && next_param(&p, name, sizeof(name), val, sizeof(val), &bad)) {
        if (strcmp(name, "boundary") != 0)
            continue;
        if (found) {
            snprintf(err, errlen, "multipart/form-data with two boundary parameters");
            return -EINVAL;
        }
        found = true;
        size_t n = strlen(val);
        bool ok = n >= 1 && n <= MP_MAX_BOUNDARY && val[n - 1] != ' ';
        for (size_t i = 0; ok && i < n; i++)
            ok = bchar(val[i]);
        if (!ok) {
            snprintf(err, errlen,
                     "multipart/form-data boundary must be 1 to %d letters, digits or "
                     "'()+_,-./:=? (not ending in a space)",
                     MP_MAX_BOUNDARY);
            return -EINVAL;
        }
        r->dlen = (size_t)snprintf(r->delim, sizeof(r->delim), "\r\n--%s", val);
    }
    if (bad || !found) {
        snprintf(err, errlen,
                 bad ? "malformed multipart/form-data Content-Type parameters"
                     : "multipart/form-data without a boundary");
        return -EINVAL;
    }
    r->state = MP_PREAMBLE;
    r->held = 2; /* the body reads as if it began with CRLF */
    return 0;
}

/* Part bytes: to on_data when the part is the file, else dropped. */
static int emit(struct mp_reader *r, const char *data, size_t len, uint64_t off)
{
    if (!len || r->state != MP_DATA || !r->in_file)
        return 0;
    return r->on_data(r->cls, data, len, off);
}

/* Parses the headers of the part that begins (hdr holds them, without the
 * empty line) and decides whether it is the file. */
static int part_begins(struct mp_reader *r)
{
    r->in_file = false;
    char *line = r->hdr;
    r->hdr[r->hlen] = '\0';
    while (*line) {
        char *eol = strstr(line, "\r\n");
        if (eol)
            *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon && (size_t)(colon - line) == strlen("Content-Disposition") &&
            strncasecmp(line, "Content-Disposition", (size_t)(colon - line)) == 0) {
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t tl = strlen("form-data");
            if (strncasecmp(v, "form-data", tl) != 0 ||
                (v[tl] && v[tl] != ';' && v[tl] != ' ' && v[tl] != '\t'))
                return fail(r, "multipart part is not form-data");
            const char *p = v + tl;
            char name[32], val[256];
            bool bad = false;
            while (next_param(&p, name, sizeof(name), val, sizeof(val), &bad))
                if (strcmp(name, "name") == 0 && strcmp(val, MP_FIELD) == 0)
                    r->in_file = true;
            if (bad)
                return fail(r, "malformed Content-Disposition in a multipart part");
        }
        if (!eol)
            break;
        line = eol + 2;
    }
    if (r->in_file && r->saw_file)
        return fail(r, "multipart/form-data body has two parts named \"" MP_FIELD
                       "\"; send one file per request");
    if (r->in_file)
        r->saw_file = true;
    return 0;
}

/* A delimiter was found: the current part (if any) ends. */
static void delimiter_found(struct mp_reader *r)
{
    r->state = MP_AFTER;
    r->after = 0;
    r->in_file = false;
}

/*
 * MP_PREAMBLE and MP_DATA: looks for the delimiter in data, with r->held
 * bytes of it matched before. Returns the bytes consumed (up to the end of
 * a delimiter found, or all), or a negative errno.
 */
static long scan_part(struct mp_reader *r, const char *data, size_t len, uint64_t base)
{
    /* Go on with a partial match held from the last input. */
    if (r->held) {
        size_t want = r->dlen - r->held, m = 0;
        while (m < want && m < len && data[m] == r->delim[r->held + m])
            m++;
        if (m == want) {
            r->held = 0;
            delimiter_found(r);
            return (long)m;
        }
        if (m == len) {
            r->held += m;
            return (long)len;
        }
        /* Not a delimiter: the held bytes were part data (from the last
         * input; in the preamble, partly the virtual CRLF). */
        int rc = emit(r, r->delim, r->held, base - r->held);
        r->held = 0;
        if (rc < 0)
            return rc;
    }
    const char *hit = memmem(data, len, r->delim, r->dlen);
    if (hit) {
        size_t n = (size_t)(hit - data);
        int rc = emit(r, data, n, base);
        if (rc < 0)
            return rc;
        delimiter_found(r);
        return (long)(n + r->dlen);
    }
    /* Hold back a tail that could begin the delimiter: it starts at a CR
     * among the last dlen - 1 bytes. */
    size_t from = len > r->dlen - 1 ? len - (r->dlen - 1) : 0, keep = 0;
    for (size_t i = from; i < len; i++) {
        if (data[i] != '\r')
            continue;
        size_t tail = len - i;
        if (memcmp(data + i, r->delim, tail) == 0) {
            keep = tail;
            break;
        }
    }
    int rc = emit(r, data, len - keep, base);
    if (rc < 0)
        return rc;
    r->held = keep;
    return (long)len;
}

int mp_feed(struct mp_reader *r, const char *data, size_t len)
{
    size_t at = 0;
    while (at < len) {
        uint64_t base = r->fed + at;
        switch (r->state) {
        case MP_PREAMBLE:
        case MP_DATA: {
            long n = scan_part(r, data + at, len - at, base);
            if (n < 0) {
                if (r->state != MP_FAILED)
                    snprintf(r->err, sizeof(r->err), "cannot store the file part");
                r->state = MP_FAILED;
                r->fed += at;
                return (int)n;
            }
            at += (size_t)n;
            break;
        }
        case MP_AFTER: {
            /* "--" (close), or [spaces/tabs] CRLF (a part follows). */
            char c = data[at++];
            if (r->after == 0 && c == '-') {
                r->after = 1;
            } else if (r->after == 1) {
                if (c != '-')
                    return fail(r, "malformed multipart delimiter");
                r->state = MP_CLOSED;
            } else if ((c == ' ' || c == '\t') && r->after != 3) {
                r->after = 2;
            } else if (c == '\r' && r->after != 3) {
                r->after = 3;
            } else if (c == '\n' && r->after == 3) {
                r->state = MP_HEADERS;
                r->hlen = 0;
            } else {
                return fail(r, "malformed multipart delimiter (the boundary appears in a "
                               "part, or garbage follows it)");
            }
            break;
        }
        case MP_HEADERS: {
            /* Headers end with an empty line: CRLF CRLF, or a CRLF at once
             * when the part has none. */
            char c = data[at++];
            if (r->hlen + 1 >= sizeof(r->hdr))
                return fail(r, "multipart part headers longer than %d bytes", MP_MAX_HEADERS);
            r->hdr[r->hlen++] = c;
            bool none = r->hlen == 2 && !memcmp(r->hdr, "\r\n", 2);
            bool end = r->hlen >= 4 && !memcmp(r->hdr + r->hlen - 4, "\r\n\r\n", 4);
            if (none || end) {
                r->hlen -= none ? 2 : 4;
                int rc = part_begins(r);
                if (rc < 0)
                    return rc;
                r->state = MP_DATA;
            }
            break;
        }
        case MP_CLOSED:
            at = len; /* the epilogue */
            break;
        default:
            return -EINVAL;
        }
        if (r->state == MP_FAILED)
            return -EINVAL;
    }
    r->fed += len;
    return 0;
}

int mp_finish(struct mp_reader *r)
{
    if (r->state == MP_FAILED)
        return -EINVAL;
    if (r->state != MP_CLOSED)
        return fail(r, r->state == MP_PREAMBLE
                           ? "multipart/form-data body holds no part (no boundary line)"
                           : "multipart/form-data body ends without its closing boundary");
    if (!r->saw_file)
        return fail(r, "multipart/form-data body has no part named \"" MP_FIELD "\"");
    return 0;
}
