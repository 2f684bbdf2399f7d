/*
 * ringjson.c - parse and check a storaged's GET /ring answer (ringjson.h).
 */
#include "ringjson.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exactly n lowercase hex digits (the form a storaged writes). */
static bool lower_hex(const char *s, size_t len, size_t n)
{
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static uint64_t hex64(const char *s)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 4) | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    return v;
}

int ringjson_parse(const char *json, size_t len, char *node, size_t nodelen,
                   const struct cas_hash_algo **algo, uint64_t **tokens, size_t *ntokens, char *err,
                   size_t errlen)
{
    *tokens = NULL;
    *ntokens = 0;
    *algo = NULL;
    if (nodelen)
        node[0] = '\0';
    if (!json || len > RINGJSON_MAX_BYTES) {
        snprintf(err, errlen, "GET /ring: answer of %zu bytes (at most %u)", json ? len : 0,
                 RINGJSON_MAX_BYTES);
        return -EPROTO;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "GET /ring: not valid JSON (%s at byte %d)", je.text, je.position);
        return -EPROTO;
    }
    int rc = -EPROTO;
    uint64_t *tok = NULL;
    json_t *jnode = json_object_get(root, "node");
    json_t *jhash = json_object_get(root, "hash");
    json_t *jtok = json_object_get(root, "tokens");
    if (!json_is_object(root) || !json_is_string(jnode) || !json_is_string(jhash)) {
        snprintf(err, errlen, "GET /ring: no node or hash");
        goto out;
    }
    const char *ns = json_string_value(jnode);
    if (!lower_hex(ns, json_string_length(jnode), 16) || nodelen < 17) {
        snprintf(err, errlen, "GET /ring: node id \"%.40s\" is not 16 lowercase hex digits", ns);
        goto out;
    }
    const char *hs = json_string_value(jhash);
    *algo = strlen(hs) == json_string_length(jhash) ? cas_hash_by_name(hs) : NULL;
    if (!*algo) {
        snprintf(err, errlen, "GET /ring: unknown hash \"%.40s\"", hs);
        goto out;
    }
    if (!json_is_array(jtok)) {
        snprintf(err, errlen, "GET /ring: no tokens");
        goto out;
    }
    size_t n = json_array_size(jtok);
    if (n < RINGJSON_TOKENS_MIN || n > RINGJSON_TOKENS_MAX) {
        snprintf(err, errlen, "GET /ring: %zu tokens (a node has %d to %d)", n, RINGJSON_TOKENS_MIN,
                 RINGJSON_TOKENS_MAX);
        goto out;
    }
    tok = malloc(n * sizeof(*tok));
    if (!tok) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(jtok, i);
        if (!json_is_string(t) || !lower_hex(json_string_value(t), json_string_length(t), 16)) {
            snprintf(err, errlen, "GET /ring: token %zu is not 16 lowercase hex digits", i);
            goto out;
        }
        tok[i] = hex64(json_string_value(t));
    }
    memcpy(node, ns, 17);
    *tokens = tok;
    *ntokens = n;
    tok = NULL;
    rc = 0;
out:
    if (rc < 0)
        *algo = NULL;
    free(tok);
    json_decref(root);
    return rc;
}
