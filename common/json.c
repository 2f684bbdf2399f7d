/*
 * json.c - JSON writer and top-level member lookups over jansson (see json.h).
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
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

/*
 * The readers parse the whole text with jansson and look the member up in
 * the top-level object only: a member of the same name inside a nested
 * object does not count. A text that is not one well-formed JSON object
 * (truncated, trailing text, invalid UTF-8, \u0000 in a string, a member
 * name given twice, an integer beyond the range jansson holds, i.e.
 * 2^63-1) is refused as a whole: the lookup answers -EINVAL.
 */
static int load_member(const char *json, const char *name, json_t **root, json_t **member)
{
    *root = NULL;
    *member = NULL;
    if (!json || !name)
        return -EINVAL;
    json_error_t je;
    json_t *r = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!r)
        return -EINVAL;
    if (!json_is_object(r)) {
        json_decref(r);
        return -EINVAL;
    }
    *root = r;
    *member = json_object_get(r, name);
    return *member ? 0 : -ENOENT;
}

int cas_json_get_string(const char *json, const char *name, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return -EINVAL;
    json_t *root, *v;
    int rc = load_member(json, name, &root, &v);
    if (rc == 0 && !json_is_string(v))
        rc = -ENOENT; /* as before: a member that is not a string is not found */
    if (rc == 0) {
        size_t n = json_string_length(v);
        if (n >= outlen)
            n = outlen - 1; /* cut, as callers showing error messages expect */
        memcpy(out, json_string_value(v), n);
        out[n] = '\0';
    }
    json_decref(root);
    return rc;
}

int cas_json_get_u64(const char *json, const char *name, uint64_t *out)
{
    json_t *root, *v;
    int rc = load_member(json, name, &root, &v);
    if (rc == 0) {
        if (json_is_integer(v)) {
            json_int_t x = json_integer_value(v);
            if (x < 0)
                rc = -EINVAL;
            else
                *out = (uint64_t)x;
        } else if (json_is_string(v)) {
            /* ids travel as strings to survive JavaScript's doubles; the
             * whole string is decimal digits and fits 64 bits */
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            if (len == 0 || len != strspn(s, "0123456789")) {
                rc = -EINVAL;
            } else {
                errno = 0;
                unsigned long long x = strtoull(s, NULL, 10);
                if (errno == ERANGE)
                    rc = -EINVAL;
                else
                    *out = x;
            }
        } else {
            rc = -EINVAL; /* a fraction, a boolean, null, an object... */
        }
    }
    json_decref(root);
    return rc;
}

int cas_json_get_bool(const char *json, const char *name, bool *out)
{
    json_t *root, *v;
    int rc = load_member(json, name, &root, &v);
    if (rc == 0) {
        if (json_is_boolean(v))
            *out = json_is_true(v);
        else
            rc = -EINVAL;
    }
    json_decref(root);
    return rc;
}
