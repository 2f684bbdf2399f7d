/*
 * jsonview.c - JSON for people: `ca-cas status` shows the server's /status
 * document, whatever members it holds, as indented "name: value" lines with
 * arrays as "- " items, byte counts also in KiB/MiB/GiB and uptimes in
 * hours. The text is parsed into a small tree first (status documents are
 * a few KiB), then printed.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum jv_type { JV_OBJECT, JV_ARRAY, JV_STRING, JV_NUMBER, JV_LITERAL };

struct jv_node {
    enum jv_type type;
    char *name; /* member name inside an object */
    char *text; /* scalars: the value as printed */
    struct jv_node *child, *last, *next;
    size_t count;
};

struct jv_parser {
    const char *p;
    int depth;
    char *err;
    size_t errlen;
};

static void jv_free(struct jv_node *n)
{
    while (n) {
        struct jv_node *next = n->next;
        jv_free(n->child);
        free(n->name);
        free(n->text);
        free(n);
        n = next;
    }
}

static void skip_ws(struct jv_parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static int fail(struct jv_parser *ps, const char *what)
{
    snprintf(ps->err, ps->errlen, "bad JSON: %s near \"%.20s\"", what, ps->p);
    return -EINVAL;
}

static void put_utf8(struct cas_buf *b, unsigned cp)
{
    char u[4];
    if (cp < 0x80) {
        u[0] = (char)cp;
        cas_buf_append(b, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        cas_buf_append(b, u, 2);
    } else {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        cas_buf_append(b, u, 3);
    }
}

/* Parses a string at ps->p (on its opening quote) into a new C string. */
static int parse_string(struct jv_parser *ps, char **out)
{
    struct cas_buf b;
    cas_buf_init(&b);
    ps->p++;
    while (*ps->p && *ps->p != '"') {
        char c = *ps->p++;
        if (c != '\\') {
            cas_buf_append(&b, &c, 1);
            continue;
        }
        char e = *ps->p++;
        switch (e) {
        case 'n':
            cas_buf_puts(&b, "\n");
            break;
        case 't':
            cas_buf_puts(&b, "\t");
            break;
        case 'r':
            cas_buf_puts(&b, "\r");
            break;
        case 'b':
            cas_buf_puts(&b, "\b");
            break;
        case 'f':
            cas_buf_puts(&b, "\f");
            break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                char h = *ps->p;
                if (!isxdigit((unsigned char)h)) {
                    cas_buf_free(&b);
                    return fail(ps, "bad \\u escape");
                }
                cp = cp * 16 +
                     (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                ps->p++;
            }
            put_utf8(&b, cp >= 0xd800 && cp < 0xe000 ? '?' : cp);
            break;
        }
        case '\0':
            ps->p--; /* back on the terminator: the message quotes from there */
            cas_buf_free(&b);
            return fail(ps, "unfinished string");
        default:
            cas_buf_append(&b, &e, 1);
            break;
        }
    }
    if (*ps->p != '"') {
        cas_buf_free(&b);
        return fail(ps, "unfinished string");
    }
    ps->p++;
    cas_buf_puts(&b, "");
    *out = cas_buf_steal(&b, NULL);
    return *out ? 0 : -ENOMEM;
}

static int parse_value(struct jv_parser *ps, struct jv_node **out);

static void add_child(struct jv_node *parent, struct jv_node *c)
{
    if (parent->last)
        parent->last->next = c;
    else
        parent->child = c;
    parent->last = c;
    parent->count++;
}

/* Parses the members of an object or the items of an array. */
static int parse_container(struct jv_parser *ps, struct jv_node *n)
{
    bool obj = n->type == JV_OBJECT;
    char close = obj ? '}' : ']';
    if (++ps->depth > 64)
        return fail(ps, "nested too deep");
    ps->p++;
    skip_ws(ps);
    if (*ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        char *name = NULL;
        skip_ws(ps);
        if (obj) {
            if (*ps->p != '"')
                return fail(ps, "expected a member name");
            int rc = parse_string(ps, &name);
            if (rc < 0)
                return rc;
            skip_ws(ps);
            if (*ps->p != ':') {
                free(name);
                return fail(ps, "expected ':'");
            }
            ps->p++;
        }
        struct jv_node *c = NULL;
        int rc = parse_value(ps, &c);
        if (c) { /* even half-parsed: freed with the tree */
            c->name = name;
            add_child(n, c);
        } else {
            free(name);
        }
        if (rc < 0)
            return rc;
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_value(struct jv_parser *ps, struct jv_node **out)
{
    skip_ws(ps);
    struct jv_node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    *out = n;
    char c = *ps->p;
    if (c == '{' || c == '[') {
        n->type = c == '{' ? JV_OBJECT : JV_ARRAY;
        return parse_container(ps, n);
    }
    if (c == '"') {
        n->type = JV_STRING;
        return parse_string(ps, &n->text);
    }
    const char *s = ps->p;
    if (c == '-' || isdigit((unsigned char)c)) {
        n->type = JV_NUMBER;
        while (*ps->p && strchr("+-0123456789.eE", *ps->p))
            ps->p++;
    } else {
        n->type = JV_LITERAL;
        static const char *lits[] = {"true", "false", "null"};
        for (int i = 0; i < 3 && ps->p == s; i++)
            if (strncmp(s, lits[i], strlen(lits[i])) == 0)
                ps->p += strlen(lits[i]);
        if (ps->p == s)
            return fail(ps, "unexpected character");
    }
    n->text = strndup(s, (size_t)(ps->p - s));
    return n->text ? 0 : -ENOMEM;
}

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

static void print_scalar(struct cas_buf *b, const struct jv_node *n)
{
    if (n->type == JV_STRING) {
        cas_buf_puts(b, n->text[0] ? n->text : "\"\"");
        return;
    }
    cas_buf_puts(b, n->text);
    if (n->type != JV_NUMBER || !n->name || strchr(n->text, '-') || strchr(n->text, '.'))
        return;
    unsigned long long v = strtoull(n->text, NULL, 10);
    char h[48];
    if (strstr(n->name, "uptime") && v >= 60) {
        cli_human_duration((double)v, h, sizeof(h));
        cas_buf_printf(b, " (%s)", h);
    } else if (speaks_of_bytes(n->name) && !strstr(n->name, "objects") && v >= 1024) {
        cli_human_bytes(v, h, sizeof(h));
        cas_buf_printf(b, " (%s)", h);
    }
}

static bool all_scalars(const struct jv_node *n)
{
    for (const struct jv_node *c = n->child; c; c = c->next)
        if (c->type == JV_OBJECT || c->type == JV_ARRAY)
            return false;
    return true;
}

static void print_members(struct cas_buf *b, const struct jv_node *obj, int indent,
                          bool first_inline);

/* Prints "name: value" (or "name:" and a nested block) at indent. */
static void print_member(struct cas_buf *b, const struct jv_node *n, int indent, bool inline_)
{
    if (!inline_)
        cas_buf_printf(b, "%*s", indent, "");
    cas_buf_printf(b, "%s:", n->name ? n->name : "");
    if (n->type == JV_OBJECT) {
        if (!n->child) {
            cas_buf_puts(b, " {}\n");
            return;
        }
        cas_buf_puts(b, "\n");
        print_members(b, n, indent + 2, false);
    } else if (n->type == JV_ARRAY) {
        if (!n->child) {
            cas_buf_puts(b, " (none)\n");
        } else if (all_scalars(n) && n->count > 16) {
            cas_buf_printf(b, " (%zu items)\n", n->count);
        } else if (all_scalars(n)) {
            const char *sep = " ";
            for (const struct jv_node *c = n->child; c; c = c->next) {
                cas_buf_puts(b, sep);
                print_scalar(b, c);
                sep = ", ";
            }
            cas_buf_puts(b, "\n");
        } else {
            cas_buf_puts(b, "\n");
            for (const struct jv_node *c = n->child; c; c = c->next) {
                cas_buf_printf(b, "%*s- ", indent + 2, "");
                if (c->type == JV_OBJECT && c->child) {
                    print_members(b, c, indent + 4, true);
                } else if (c->type == JV_OBJECT || c->type == JV_ARRAY) {
                    cas_buf_puts(b, c->type == JV_OBJECT ? "{}\n" : "(list)\n");
                } else {
                    print_scalar(b, c);
                    cas_buf_puts(b, "\n");
                }
            }
        }
    } else {
        cas_buf_puts(b, " ");
        print_scalar(b, n);
        cas_buf_puts(b, "\n");
    }
}

static void print_members(struct cas_buf *b, const struct jv_node *obj, int indent,
                          bool first_inline)
{
    for (const struct jv_node *c = obj->child; c; c = c->next) {
        print_member(b, c, indent, first_inline);
        first_inline = false;
    }
}

int cli_jsonview(const char *json, struct cas_buf *out, char *err, size_t errlen)
{
    struct jv_parser ps = {.p = json, .err = err, .errlen = errlen};
    struct jv_node *root = NULL;
    int rc = parse_value(&ps, &root);
    if (rc == 0) {
        skip_ws(&ps);
        if (*ps.p)
            rc = fail(&ps, "trailing text");
    }
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc == 0) {
        if (root->type == JV_OBJECT) {
            print_members(out, root, 0, false);
        } else if (root->type == JV_ARRAY) {
            root->name = strdup("items");
            print_member(out, root, 0, false);
        } else {
            print_scalar(out, root);
            cas_buf_puts(out, "\n");
        }
    }
    jv_free(root);
    return rc;
}
