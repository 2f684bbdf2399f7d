/*
 * config.c - loading the balancer's YAML config with libyaml's document
 * API (see config.h). The whole file is loaded as a node tree, then walked;
 * each node carries its start mark, which gives every message its line and
 * column.
 */
#define _GNU_SOURCE
#include "config.h"
#include "httpd.h"
#include "num.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

struct parse {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t errlen;
    struct config *c;
};

static int fail_at(struct parse *p, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "name:line:col: message" and returns -EINVAL. */
static int fail_at(struct parse *p, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t line = node ? node->start_mark.line + 1 : 1;
    size_t col = node ? node->start_mark.column + 1 : 1;
    snprintf(p->err, p->errlen, "%s:%zu:%zu: %s", p->name, line, col, msg);
    return -EINVAL;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_string(struct parse *p, const yaml_node_t *n, const char *key, char **out)
{
    const char *s = scalar(n);
    if (!s || !*s)
        return fail_at(p, n, "%s must be a non-empty string", key);
    free(*out);
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

static int get_uint(struct parse *p, const yaml_node_t *n, const char *key, unsigned max,
                    unsigned *out)
{
    const char *s = scalar(n);
    uint64_t v;
    if (!s || cas_parse_u64(s, &v) < 0 || v < 1 || v > max)
        return fail_at(p, n, "%s must be a whole number from 1 to %u, not \"%s\"", key, max,
                       s ? s : "");
    *out = (unsigned)v;
    return 0;
}

/* YAML 1.2 core booleans: true/false (any case); anything else is refused. */
static int get_bool(struct parse *p, const yaml_node_t *n, const char *key, bool *out)
{
    const char *s = scalar(n);
    if (s && !strcasecmp(s, "true"))
        *out = true;
    else if (s && !strcasecmp(s, "false"))
        *out = false;
    else
        return fail_at(p, n, "%s must be true or false, not \"%s\"", key, s ? s : "(not a scalar)");
    return 0;
}

/* "90", "90s", "15m", "6h", "7d" -> seconds. */
static int get_duration(struct parse *p, const yaml_node_t *n, const char *key, uint64_t *out)
{
    const char *s = scalar(n);
    size_t nd = s ? strspn(s, "0123456789") : 0;
    uint64_t v = 0, mult = 0;
    const char *end = s ? s + nd : "";
    if (!strcmp(end, "") || !strcmp(end, "s"))
        mult = 1;
    else if (!strcmp(end, "m"))
        mult = 60;
    else if (!strcmp(end, "h"))
        mult = 3600;
    else if (!strcmp(end, "d"))
        mult = 86400;
    if (!s || !mult || cas_parse_u64_n(s, nd, &v) < 0 || v == 0 || v > UINT64_MAX / mult)
        return fail_at(p, n, "%s must be a duration such as 30s, 15m, 6h or 7d, not \"%s\"", key,
                       s ? s : "");
    *out = v * mult;
    return 0;
}

/* A finite number above 0, in plain decimal (cas_parse_real: no sign, no
 * space, no "inf" or "nan", which /status could not print as JSON). */
static int get_number(struct parse *p, const yaml_node_t *n, const char *key, double *out)
{
    const char *s = scalar(n);
    double v;
    if (!s || cas_parse_real(s, &v) < 0 || !(v > 0))
        return fail_at(p, n, "%s must be a finite number above 0 (such as 50 or 12.5), not \"%s\"",
                       key, s ? s : "");
    *out = v;
    return 0;
}

/* Checks "host:port" (host non-empty, port 1..65535). */
static bool valid_hostport(const char *s, size_t len)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (!colon || colon == s || (size_t)(colon - s) + 1 >= len)
        return false;
    if (s[0] == '[' && colon[-1] != ']')
        return false; /* an IPv6 literal needs its brackets */
    unsigned long port = 0;
    for (const char *q = colon + 1; q < s + len; q++) {
        if (*q < '0' || *q > '9')
            return false;
        port = port * 10 + (unsigned long)(*q - '0');
        if (port > 65535)
            return false;
    }
    for (const char *q = s; q < colon; q++)
        if (*q == '/' || *q == ' ' || *q == '@' || *q == '?' || *q == '#')
            return false;
    return port > 0;
}

/* url: http[s]://host:port[/] -> normalised copy without the slash. */
static int parse_url(struct parse *p, const yaml_node_t *n, char **out)
{
    const char *s = scalar(n);
    if (!s)
        return fail_at(p, n, "url must be a string such as http://10.0.0.11:6010");
    size_t skip = !strncmp(s, "http://", 7) ? 7 : !strncmp(s, "https://", 8) ? 8 : 0;
    size_t len = strlen(s);
    while (len > skip && s[len - 1] == '/')
        len--;
    if (!skip || !valid_hostport(s + skip, len - skip))
        return fail_at(p, n, "url \"%s\" is not of the form http://host:port", s);
    *out = strndup(s, len);
    return *out ? 0 : -ENOMEM;
}

/* Cantera's addr: host:port -> http://host:port. */
static int parse_addr(struct parse *p, const yaml_node_t *n, char **out)
{
    const char *s = scalar(n);
    if (!s || !valid_hostport(s, strlen(s)))
        return fail_at(p, n, "addr \"%s\" is not of the form host:port", s ? s : "");
    if (asprintf(out, "http://%s", s) < 0)
        return -ENOMEM;
    return 0;
}

/* Fails when the key of pair (in mapping n) was given before in n: YAML
 * keeps both and the last would silently win (a second `replicas: 1`
 * under a `replicas: 3`). what names the mapping ("" for the root). */
static int given_twice(struct parse *p, const yaml_node_t *n, const yaml_node_pair_t *pair,
                       const char *what)
{
    const yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    const char *key = scalar(k);
    for (const yaml_node_pair_t *q = n->data.mapping.pairs.start; key && q < pair; q++) {
        const yaml_node_t *kq = yaml_document_get_node(p->doc, q->key);
        const char *earlier = scalar(kq);
        if (earlier && !strcmp(earlier, key))
            return fail_at(p, k, "%s%s given twice (first at line %d)", what, key,
                           (int)kq->start_mark.line + 1);
    }
    return 0;
}

static int parse_backend(struct parse *p, const yaml_node_t *n, struct config_backend *b)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(p, n, "a backend must be a mapping with url and failure_domain");
    b->line = (int)n->start_mark.line + 1;
    b->column = (int)n->start_mark.column + 1;
    const yaml_node_t *where_url = NULL;
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
        const char *key = scalar(k);
        int rc;
        if (!key)
            return fail_at(p, k, "backend keys must be strings");
        if (!strcmp(key, "url") || !strcmp(key, "addr")) {
            if (where_url)
                return fail_at(p, k, "backend has both url and addr (or one twice)");
            where_url = k;
            rc = !strcmp(key, "url") ? parse_url(p, v, &b->url) : parse_addr(p, v, &b->url);
        } else if (!strcmp(key, "failure_domain") || !strcmp(key, "failure-domain")) {
            if (b->domain)
                return fail_at(p, k, "backend has failure_domain twice");
            rc = get_string(p, v, key, &b->domain);
        } else {
            return fail_at(p, k,
                           "unknown backend key \"%s\" (expected url or addr, and "
                           "failure_domain or failure-domain)",
                           key);
        }
        if (rc < 0)
            return rc;
    }
    if (!b->url)
        return fail_at(p, n, "backend has no url (or addr)");
    if (!b->domain)
        return fail_at(p, n, "backend %s has no failure_domain (or failure-domain)", b->url);
    return 0;
}

static int parse_backends(struct parse *p, const yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(p, n, "backends must be a list");
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return fail_at(p, n, "backends is empty: a cluster needs at least one backend");
    struct config *c = p->c;
    c->backends = calloc(count, sizeof(*c->backends));
    if (!c->backends)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        c->nbackends = i + 1;
        int rc = parse_backend(p, item, &c->backends[i]);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->backends[j].url, c->backends[i].url))
                return fail_at(p, item, "duplicate backend %s (first at line %d)",
                               c->backends[i].url, c->backends[j].line);
    }
    return 0;
}

static int parse_anti_entropy(struct parse *p, const yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(p, n, "anti_entropy must be a mapping with interval and max_mbps");
    bool interval = false;
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
        const char *key = scalar(k);
        int rc = given_twice(p, n, pair, "anti_entropy.");
        if (rc < 0)
            return rc;
        interval |= key && !strcmp(key, "interval");
        if (key && !strcmp(key, "interval"))
            rc = get_duration(p, v, "anti_entropy.interval", &p->c->ae_interval_s);
        else if (key && !strcmp(key, "max_mbps"))
            rc = get_number(p, v, "anti_entropy.max_mbps", &p->c->ae_max_mbps);
        else
            return fail_at(p, k, "unknown anti_entropy key \"%s\" (expected interval, max_mbps)",
                           key ? key : "?");
        if (rc < 0)
            return rc;
    }
    /* A section that would silently leave anti-entropy off is a mistake. */
    if (!interval)
        return fail_at(p, n,
                       "anti_entropy needs an interval (such as 1h); without anti-entropy, leave the section out");
    return 0;
}

static int parse_timeouts(struct parse *p, const yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(p, n,
                       "timeouts must be a mapping with fanout_ms, write_straggler_ms, gc_ms");
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
        const char *key = scalar(k);
        int rc = given_twice(p, n, pair, "timeouts.");
        if (rc < 0)
            return rc;
        if (key && !strcmp(key, "fanout_ms"))
            rc = get_uint(p, v, "timeouts.fanout_ms", 3600u * 1000, &p->c->fanout_ms);
        else if (key && !strcmp(key, "write_straggler_ms"))
            rc = get_uint(p, v, "timeouts.write_straggler_ms", 3600u * 1000,
                          &p->c->write_straggler_ms);
        else if (key && !strcmp(key, "gc_ms"))
            rc = get_uint(p, v, "timeouts.gc_ms", 24u * 3600 * 1000, &p->c->gc_ms);
        else
            return fail_at(
                p, k, "unknown timeouts key \"%s\" (expected fanout_ms, write_straggler_ms, gc_ms)",
                key ? key : "?");
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Walks the root mapping, then checks the rules that span several keys. */
static int parse_root(struct parse *p, const yaml_node_t *root)
{
    if (!root)
        return fail_at(p, NULL, "the config is empty");
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(p, root, "the config must be a mapping (listen, replicas, backends, ...)");
    const yaml_node_t *n_replicas = NULL, *n_min = NULL, *n_backends = NULL, *n_client = NULL;
    struct config *c = p->c;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
        const char *key = scalar(k);
        int rc = given_twice(p, root, pair, "");
        if (rc < 0)
            return rc;
        if (!key)
            return fail_at(p, k, "keys must be strings");
        if (!strcmp(key, "listen")) {
            rc = get_string(p, v, key, &c->listen);
            char bad[512];
            if (rc == 0 && http_listen_check(c->listen, bad, sizeof(bad)) < 0)
                return fail_at(p, v, "listen: %s", bad);
        } else if (!strcmp(key, "token_file")) {
            rc = get_string(p, v, key, &c->token_file);
        } else if (!strcmp(key, "auth_reads")) {
            rc = get_bool(p, v, key, &c->auth_reads);
        } else if (!strcmp(key, "ca_file")) {
            rc = get_string(p, v, key, &c->ca_file);
        } else if (!strcmp(key, "tls_client_cert")) {
            n_client = k;
            rc = get_string(p, v, key, &c->tls_client_cert);
        } else if (!strcmp(key, "tls_client_key")) {
            n_client = k;
            rc = get_string(p, v, key, &c->tls_client_key);
        } else if (!strcmp(key, "replicas")) {
            n_replicas = v;
            rc = get_uint(p, v, key, 64, &c->replicas);
        } else if (!strcmp(key, "min_replicas")) {
            n_min = v;
            rc = get_uint(p, v, key, 64, &c->min_replicas);
        } else if (!strcmp(key, "backends")) {
            n_backends = v;
            rc = parse_backends(p, v);
        } else if (!strcmp(key, "anti_entropy")) {
            rc = parse_anti_entropy(p, v);
        } else if (!strcmp(key, "timeouts")) {
            rc = parse_timeouts(p, v);
        } else if (!strcmp(key, "quarantine_interval")) {
            rc = get_duration(p, v, key, &c->quarantine_interval_s);
        } else if (!strcmp(key, "gc_agree_max_keys")) {
            rc = get_uint(p, v, key, CONFIG_GC_AGREE_MAX_KEYS_MAX, &c->gc_agree_max_keys);
        } else {
            return fail_at(p, k,
                           "unknown key \"%s\" (expected listen, replicas, min_replicas, "
                           "token_file, auth_reads, backends, anti_entropy, timeouts, "
                           "quarantine_interval, gc_agree_max_keys, ca_file, tls_client_cert, "
                           "tls_client_key)",
                           key);
        }
        if (rc < 0)
            return rc;
    }
    if (!n_backends)
        return fail_at(p, root, "no backends: the config needs a backends list");
    if (!c->tls_client_cert != !c->tls_client_key)
        return fail_at(p, n_client, "tls_client_cert and tls_client_key go together");
    if (!c->quarantine_interval_s)
        c->quarantine_interval_s = CONFIG_QUARANTINE_INTERVAL;
    if (!c->gc_agree_max_keys)
        c->gc_agree_max_keys = CONFIG_GC_AGREE_MAX_KEYS;

    c->ndomains = 0;
    for (size_t i = 0; i < c->nbackends; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->backends[j].domain, c->backends[i].domain))
                seen = true;
        if (!seen)
            c->ndomains++;
    }
    if (!n_replicas)
        c->replicas = c->ndomains < 3 ? (unsigned)c->ndomains : 3;
    if (!n_min)
        c->min_replicas = c->replicas;
    if (!c->fanout_ms)
        c->fanout_ms = CONFIG_FANOUT_MS_DEFAULT;
    if (!c->write_straggler_ms)
        c->write_straggler_ms = CONFIG_STRAGGLER_MS_DEFAULT;
    if (!c->gc_ms)
        c->gc_ms = CONFIG_GC_MS_DEFAULT;
    if (c->min_replicas > c->replicas)
        return fail_at(p, n_min, "min_replicas (%u) is more than replicas (%u)", c->min_replicas,
                       c->replicas);
    if (c->replicas > c->ndomains)
        return fail_at(p, n_replicas,
                       "replicas is %u but the backends span only %zu failure domain%s: each "
                       "copy needs its own",
                       c->replicas, c->ndomains, c->ndomains == 1 ? "" : "s");
    return 0;
}

int config_parse(const char *text, size_t len, const char *name, struct config **out, char *err,
                 size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct parse p = {.doc = &doc, .name = name, .err = err, .errlen = errlen};
    *out = NULL;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *m =
            parser.problem_mark.line || parser.problem_mark.column || !parser.context
                ? &parser.problem_mark
                : &parser.context_mark;
        snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", name, m->line + 1, m->column + 1,
                 parser.problem ? parser.problem : "bad YAML", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    p.c = calloc(1, sizeof(*p.c));
    int rc = p.c ? 0 : -ENOMEM;
    if (rc == 0 && !(p.c->path = strdup(name)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = parse_root(&p, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "%s: out of memory", name);
        config_free(p.c);
        return rc;
    }
    *out = p.c;
    return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                snprintf(err, errlen, "%s: larger than 16 MiB, not a config", path);
                free(text);
                fclose(f);
                return -EFBIG;
            }
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return -ENOMEM;
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "%s: read error", path);
        free(text);
        return -EIO;
    }
    int rc = config_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nbackends; i++) {
        free(c->backends[i].url);
        free(c->backends[i].domain);
    }
    free(c->backends);
    free(c->path);
    free(c->listen);
    free(c->token_file);
    free(c->ca_file);
    free(c->tls_client_cert);
    free(c->tls_client_key);
    free(c);
}
