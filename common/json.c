/*
 * json.c - JSON writer and flat-member lookups (see json.h).
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cas_json_init(struct cas_json *j, struct cas_buf *out)
{
    memset(j, 0, sizeof(*j));
    j->out = out;
}

static void before_value(struct cas_json *j)
{
    if (j->need_comma[j->depth])
        cas_buf_append(j->out, ",", 1);
    j->need_comma[j->depth] = true;
}

static void open_scope(struct cas_json *j, char c)
{
    before_value(j);
    cas_buf_append(j->out, &c, 1);
    if (j->depth < 31)
        j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_scope(struct cas_json *j, char c)
{
    if (j->depth > 0)
        j->depth--;
    cas_buf_append(j->out, &c, 1);
}

void cas_json_begin_object(struct cas_json *j)
{
    open_scope(j, '{');
}

void cas_json_end_object(struct cas_json *j)
{
    close_scope(j, '}');
}

void cas_json_begin_array(struct cas_json *j)
{
    open_scope(j, '[');
}

void cas_json_end_array(struct cas_json *j)
{
    close_scope(j, ']');
}

size_t cas_utf8_valid_prefix(const unsigned char *p, size_t avail)
{
    /* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    else if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

void cas_json_escape(struct cas_buf *b, const char *s)
{
    cas_buf_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left) {
        size_t n = 1;
        switch (*p) {
        case '"':
            cas_buf_puts(b, "\\\"");
            break;
        case '\\':
            cas_buf_puts(b, "\\\\");
            break;
        case '\n':
            cas_buf_puts(b, "\\n");
            break;
        case '\r':
            cas_buf_puts(b, "\\r");
            break;
        case '\t':
            cas_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20) {
                cas_buf_printf(b, "\\u%04x", *p);
            } else if (*p < 0x80) {
                cas_buf_append(b, p, 1);
            } else if ((n = cas_utf8_valid_prefix(p, left)) > 0) {
                cas_buf_append(b, p, n);
            } else {
                /* Not UTF-8: the byte as the code point of the same value,
                 * so the text stays valid and no byte is lost. */
                n = 1;
                cas_buf_printf(b, "\\u%04x", *p);
            }
        }
        p += n;
        left -= n;
    }
    cas_buf_append(b, "\"", 1);
}

void cas_json_key(struct cas_json *j, const char *name)
{
    before_value(j);
    cas_json_escape(j->out, name);
    cas_buf_append(j->out, ":", 1);
    j->need_comma[j->depth] = false; /* the value follows without a comma */
}

void cas_json_string(struct cas_json *j, const char *s)
{
    before_value(j);
    cas_json_escape(j->out, s ? s : "");
}

void cas_json_u64(struct cas_json *j, uint64_t v)
{
    before_value(j);
    cas_buf_printf(j->out, "%" PRIu64, v);
}

void cas_json_i64(struct cas_json *j, int64_t v)
{
    before_value(j);
    cas_buf_printf(j->out, "%" PRId64, v);
}

void cas_json_double(struct cas_json *j, double v)
{
    before_value(j);
    cas_buf_printf(j->out, "%.6g", v);
}

void cas_json_bool(struct cas_json *j, bool v)
{
    before_value(j);
    cas_buf_puts(j->out, v ? "true" : "false");
}

void cas_json_null(struct cas_json *j)
{
    before_value(j);
    cas_buf_puts(j->out, "null");
}

/* Finds the start of the value of top-level member name, or NULL. */
static const char *find_member(const char *json, const char *name)
{
    size_t nlen = strlen(name);
    int depth = 0;
    for (const char *p = json; *p; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *s = p + 1;
            const char *e = s;
            while (*e && *e != '"') {
                if (*e == '\\' && e[1])
                    e++;
                e++;
            }
            if (!*e)
                return NULL;
            p = e;
            if (depth != 1)
                continue;
            const char *q = e + 1;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                q++;
            if (*q != ':')
                continue;
            if ((size_t)(e - s) == nlen && memcmp(s, name, nlen) == 0) {
                q++;
                while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                    q++;
                return q;
            }
        }
    }
    return NULL;
}

int cas_json_get_string(const char *json, const char *name, char *out, size_t outlen)
{
    const char *v = find_member(json, name);
    if (!v || *v != '"' || outlen == 0)
        return -ENOENT;
    size_t j = 0;
    for (v++; *v && *v != '"'; v++) {
        char c = *v;
        if (c == '\\' && v[1]) {
            v++;
            c = *v == 'n' ? '\n' : *v == 't' ? '\t' : *v;
        }
        if (j + 1 < outlen)
            out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

int cas_json_get_u64(const char *json, const char *name, uint64_t *out)
{
    const char *v = find_member(json, name);
    if (!v)
        return -ENOENT;
    if (*v == '"') /* ids travel as strings to survive JavaScript's doubles */
        v++;
    if (*v < '0' || *v > '9') /* strtoull would take "-1" as a huge number */
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || errno)
        return -EINVAL;
    *out = x;
    return 0;
}

int cas_json_get_bool(const char *json, const char *name, bool *out)
{
    const char *v = find_member(json, name);
    if (!v)
        return -ENOENT;
    if (strncmp(v, "true", 4) == 0)
        *out = true;
    else if (strncmp(v, "false", 5) == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}
