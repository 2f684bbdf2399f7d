/*
 * keylist.c - keys in bulk: read from operands or from a stream one per
 * line, checked, and handed on in batches of bounded size. `missing` and
 * `mark-gc` send each batch as one request body, so millions of keys flow
 * through in constant memory.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends one key (checked, normalised) to the batch; flushes when full. */
static int add_key(struct cli_keylist *kl, const char *s, size_t len, const char *where, char *err,
                   size_t errlen)
{
    struct cas_key k;
    char hex[CAS_MAX_HEX + 1];
    char why[CLI_ERR_MAX];
    if (cli_parse_key(s, len, &k, hex, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", where, why);
        return -EINVAL;
    }
    cas_buf_puts(&kl->batch, hex);
    cas_buf_puts(&kl->batch, "\n");
    if (kl->batch.oom) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    kl->count++;
    kl->total++;
    if (kl->count >= kl->max)
        return cli_keylist_flush(kl, err, errlen);
    return 0;
}

void cli_keylist_init(struct cli_keylist *kl, size_t max, cli_keylist_fn fn, void *cls)
{
    memset(kl, 0, sizeof(*kl));
    cas_buf_init(&kl->batch);
    kl->max = max ? max : 1;
    kl->fn = fn;
    kl->cls = cls;
}

void cli_keylist_free(struct cli_keylist *kl)
{
    cas_buf_free(&kl->batch);
}

int cli_keylist_flush(struct cli_keylist *kl, char *err, size_t errlen)
{
    if (kl->count == 0)
        return 0;
    int rc = kl->fn(kl->cls, kl->batch.data, kl->batch.len, kl->count, err, errlen);
    cas_buf_reset(&kl->batch);
    kl->count = 0;
    return rc;
}

int cli_keylist_add_args(struct cli_keylist *kl, char **keys, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        int rc = add_key(kl, keys[i], strlen(keys[i]), "argument", err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Lines may carry more than a key ("<key> <size>" as `list --long` prints):
 * the first word is taken. Blank lines are skipped.
 */
int cli_keylist_add_stream(struct cli_keylist *kl, FILE *f, const char *name, char *err,
                           size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strcspn(s, " \t\r\n");
        if (n == 0)
            continue;
        char where[300];
        snprintf(where, sizeof(where), "%s line %llu", name, (unsigned long long)lineno);
        rc = add_key(kl, s, n, where, err, errlen);
        if (rc < 0)
            break;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "reading %s: %s", name, strerror(errno));
        rc = -EIO;
    }
    free(line);
    return rc;
}
