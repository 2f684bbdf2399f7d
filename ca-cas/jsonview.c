/*
 * jsonview.c - JSON for people: `ca-cas status` shows the server's /status
 * document, whatever members it holds, as indented "name: value" lines with
 * arrays as "- " items, byte counts also in KiB/MiB/GiB and uptimes in
 * hours. jansson parses the text into a tree (status documents are a few
 * KiB; members keep their order), then it is printed.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- printing ---- */

static bool speaks_of_bytes(const char *name)
{
    static const char *words[] = {"bytes",    "total", "available", "unreclaimed", "garbage",
                                  "capacity", "used",  "free",      "size"};
    if (!name)
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(name, words[i]))
            return true;
    return false;
}

static bool is_container(const json_t *v)
{
    return json_is_object(v) || json_is_array(v);
}

/* A scalar as the text had it: strings unquoted ("" when empty), integers
 * in decimal, reals in the shortest form that reads back (%.17g at most),
 * true, false, null. name (the member's, or NULL in a list) picks the
 * human form added to a count of bytes or seconds. */
static void print_scalar(struct cas_buf *b, const char *name, const json_t *v)
{
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        cas_buf_puts(b, t[0] ? t : "\"\"");
        return;
    }
    if (json_is_real(v)) {
        char t[40];
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(t, sizeof(t), "%.*g", prec, d);
            if (strtod(t, NULL) == d)
                break;
        }
        cas_buf_puts(b, t);
        return;
    }
    if (!json_is_integer(v)) {
        cas_buf_puts(b, json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
        return;
    }
    json_int_t x = json_integer_value(v);
    cas_buf_printf(b, "%" JSON_INTEGER_FORMAT, x);
    if (!name || x < 0)
        return;
    unsigned long long u = (unsigned long long)x;
    char h[48];
    if (strstr(name, "uptime") && u >= 60) {
        cli_human_duration((double)u, h, sizeof(h));
        cas_buf_printf(b, " (%s)", h);
    } else if (speaks_of_bytes(name) && !strstr(name, "objects") && u >= 1024) {
        cli_human_bytes(u, h, sizeof(h));
        cas_buf_printf(b, " (%s)", h);
    }
}

static bool all_scalars(const json_t *arr)
{
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
    {
        if (is_container(c))
            return false;
    }
    return true;
}

static void print_members(struct cas_buf *b, const json_t *obj, int indent, bool first_inline);

/* Prints "name: value" (or "name:" and a nested block) at indent. */
static void print_member(struct cas_buf *b, const char *name, const json_t *v, int indent,
                         bool inline_)
{
    if (!inline_)
        cas_buf_printf(b, "%*s", indent, "");
    cas_buf_printf(b, "%s:", name);
    if (json_is_object(v)) {
        if (json_object_size(v) == 0) {
            cas_buf_puts(b, " {}\n");
            return;
        }
        cas_buf_puts(b, "\n");
        print_members(b, v, indent + 2, false);
    } else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        size_t i;
        json_t *c;
        if (n == 0) {
            cas_buf_puts(b, " (none)\n");
        } else if (all_scalars(v) && n > 16) {
            cas_buf_printf(b, " (%zu items)\n", n);
        } else if (all_scalars(v)) {
            const char *sep = " ";
            json_array_foreach(v, i, c)
            {
                cas_buf_puts(b, sep);
                print_scalar(b, NULL, c);
                sep = ", ";
            }
            cas_buf_puts(b, "\n");
        } else {
            cas_buf_puts(b, "\n");
            json_array_foreach(v, i, c)
            {
                cas_buf_printf(b, "%*s- ", indent + 2, "");
                if (json_is_object(c) && json_object_size(c)) {
                    print_members(b, c, indent + 4, true);
                } else if (is_container(c)) {
                    cas_buf_puts(b, json_is_object(c) ? "{}\n" : "(list)\n");
                } else {
                    print_scalar(b, NULL, c);
                    cas_buf_puts(b, "\n");
                }
            }
        }
    } else {
        cas_buf_puts(b, " ");
        print_scalar(b, name, v);
        cas_buf_puts(b, "\n");
    }
}

static void print_members(struct cas_buf *b, const json_t *obj, int indent, bool first_inline)
{
    const char *name;
    json_t *v;
    /* jansson (>= 2.8) iterates members in the order the text had them */
    json_object_foreach((json_t *)obj, name, v)
    {
        print_member(b, name, v, indent, first_inline);
        first_inline = false;
    }
}

int cli_jsonview(const char *json, struct cas_buf *out, char *err, size_t errlen)
{
    if (!json) {
        snprintf(err, errlen, "bad JSON: no text");
        return -EINVAL;
    }
    /* Any value at the top; a member name twice is refused (which one
     * would the reader mean?), as cas_json_get_* do. */
    json_error_t je;
    json_t *root = json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "bad JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return -EINVAL;
    }
    if (json_is_object(root))
        print_members(out, root, 0, false);
    else if (json_is_array(root))
        print_member(out, "items", root, 0, false);
    else {
        print_scalar(out, NULL, root);
        cas_buf_puts(out, "\n");
    }
    json_decref(root);
    return 0;
}
