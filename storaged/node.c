/*
 * node.c - the node file: "ca-cas node 1", then "id", "hash" and "tokens"
 * lines, then one 16-hex-digit token per line. Written once through a
 * temporary file, fsync and rename, so it is either whole or absent.
 */
#define _GNU_SOURCE
#include "node.h"
#include "format.h"
#include "num.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t node_token_count(uint64_t capacity_bytes)
{
    uint64_t n = capacity_bytes >> 30;
    if (n < NODE_MIN_TOKENS)
        n = NODE_MIN_TOKENS;
    if (n > NODE_MAX_TOKENS)
        n = NODE_MAX_TOKENS;
    return (size_t)n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* True when s is exactly n hex digits followed by a newline (or the end). */
static bool hex_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return s[n] == '\n' || s[n] == '\0';
}

static int parse(FILE *f, const char *dir, struct node_identity *out, char *err, size_t errlen)
{
    char line[256], hash[32] = "";
    size_t declared = 0;
    if (!fgets(line, sizeof(line), f) || strncmp(line, "ca-cas node 1", 13) != 0)
        goto bad;
    if (!fgets(line, sizeof(line), f) || strncmp(line, "id ", 3) != 0 || !hex_line(line + 3, 16))
        goto bad;
    memcpy(out->id, line + 3, 16);
    out->id[16] = '\0';
    if (!fgets(line, sizeof(line), f) || sscanf(line, "hash %31s", hash) != 1)
        goto bad;
    out->algo = cas_hash_by_name(hash);
    if (!out->algo)
        goto bad;
    uint64_t ntok = 0;
    if (!fgets(line, sizeof(line), f) || strncmp(line, "tokens ", 7) != 0 ||
        cas_parse_u64_n(line + 7, strcspn(line + 7, "\n"), &ntok) < 0 || ntok < 1 ||
        ntok > NODE_MAX_TOKENS)
        goto bad;
    declared = (size_t)ntok;
    out->tokens = calloc(declared, sizeof(uint64_t));
    if (!out->tokens)
        return -ENOMEM;
    for (size_t i = 0; i < declared; i++) {
        if (!fgets(line, sizeof(line), f) || !hex_line(line, 16) ||
            sscanf(line, "%" SCNx64, &out->tokens[i]) != 1)
            goto bad;
    }
    out->ntokens = declared;
    qsort(out->tokens, out->ntokens, sizeof(uint64_t), cmp_u64);
    return 0;
bad:
    snprintf(err, errlen,
             "%s/node is damaged (expected the ca-cas node format); "
             "restore it from a backup: it holds the node id and ring tokens",
             dir);
    free(out->tokens);
    out->tokens = NULL;
    return -EINVAL;
}

int node_create(int dirfd, const char *dir, const struct cas_hash_algo *algo, uint64_t capacity,
                struct node_identity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    unsigned char id[8];
    out->ntokens = node_token_count(capacity);
    out->tokens = calloc(out->ntokens, sizeof(uint64_t));
    if (!out->tokens)
        return -ENOMEM;
    if (RAND_bytes(id, sizeof(id)) != 1 ||
        RAND_bytes((unsigned char *)out->tokens, (int)(out->ntokens * sizeof(uint64_t))) != 1) {
        snprintf(err, errlen, "cannot get random bytes for the node id");
        free(out->tokens);
        out->tokens = NULL;
        return -EIO;
    }
    for (int i = 0; i < 8; i++)
        snprintf(out->id + 2 * i, 3, "%02x", id[i]);
    out->algo = algo;
    qsort(out->tokens, out->ntokens, sizeof(uint64_t), cmp_u64);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "node.tmp.%d", (int)getpid());
    unlinkat(dirfd, tmp, 0); /* a leftover of a crashed start with our pid */
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot write %s/%s: %s", dir, tmp, strerror(e));
        if (fd >= 0) {
            close(fd);
            unlinkat(dirfd, tmp, 0);
        }
        free(out->tokens);
        out->tokens = NULL;
        return -e;
    }
    fprintf(f, "ca-cas node 1\nid %s\nhash %s\ntokens %zu\n", out->id, algo->name, out->ntokens);
    for (size_t i = 0; i < out->ntokens; i++)
        fprintf(f, "%016" PRIx64 "\n", out->tokens[i]);
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) < 0)
        rc = -errno;
    if (fclose(f) != 0 && !rc)
        rc = -errno;
    /* link, not rename: of two daemons starting at once, one identity wins. */
    if (!rc && linkat(dirfd, tmp, dirfd, "node", 0) < 0)
        rc = -errno;
    unlinkat(dirfd, tmp, 0);
    if (!rc && fsync(dirfd) < 0)
        rc = -errno;
    if (rc) {
        snprintf(err, errlen, "cannot write %s/node: %s", dir, strerror(-rc));
        free(out->tokens);
        out->tokens = NULL;
        return rc;
    }
    return 0;
}

bool node_dir_holds_store(int dirfd, char *what, size_t whatlen)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        snprintf(what, whatlen, "the directory cannot be listed: %s", strerror(errno));
        return true; /* cannot tell: assume it does, and write nothing */
    }
    rewinddir(d); /* a dup shares the directory position */
    struct dirent *de;
    bool found = false;
    /* readdir returns NULL at the end and on an error alike; errno tells
     * them apart. An error is "cannot tell", as above. */
    while (!found && (errno = 0, de = readdir(d))) {
        unsigned n;
        uint64_t gen;
        if (!strcmp(de->d_name, "index") || !strcmp(de->d_name, "index.new") ||
            fmt_datafile_parse(de->d_name, &n, &gen)) {
            snprintf(what, whatlen, "%s is there", de->d_name);
            found = true;
        }
    }
    if (!found && errno != 0) {
        snprintf(what, whatlen, "the directory cannot be listed: %s", strerror(errno));
        found = true;
    }
    closedir(d);
    return found;
}

int node_load(int dirfd, const char *dir, struct node_identity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int fd = fmt_open_regular(dirfd, dir, "node", O_RDONLY, err, errlen);
    if (fd == -ENOENT)
        snprintf(err, errlen, "%s is not a storaged directory: cannot read %s/node: %s", dir, dir,
                 strerror(ENOENT));
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    int rc = parse(f, dir, out, err, errlen);
    fclose(f);
    return rc;
}

/* Does the directory hold other stores, one folder down (a folder with a
 * node file: the parent of /srv/ca-cas/disk1, disk2 given as --dir by
 * mistake)? Names the first in what. A directory that cannot be listed
 * was refused by node_dir_holds_store already. */
static bool dir_holds_stores_below(int dirfd, char *what, size_t whatlen)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    rewinddir(d);
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d))) {
        char node[NAME_MAX + 8];
        struct stat st;
        if (de->d_name[0] == '.' || snprintf(node, sizeof(node), "%s/node", de->d_name) >=
                                        (int)sizeof(node))
            continue;
        if (fstatat(dirfd, node, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            snprintf(what, whatlen, "%s", node);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* The algorithm the index header names; NULL when there is no valid one. */
static const struct cas_hash_algo *index_algo(int dirfd, const char *dir)
{
    char err[512];
    unsigned char b[FMT_RECORD_SIZE];
    struct fmt_record r;
    int fd = fmt_open_regular(dirfd, dir, "index", O_RDONLY, err, sizeof(err));
    if (fd < 0)
        return NULL;
    bool ok = pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) && fmt_record_decode(b, &r) &&
              r.type == REC_HEADER && !memcmp(r.digest, FMT_INDEX_MAGIC, 8);
    close(fd);
    return ok ? cas_hash_by_id(r.algo) : NULL;
}

int node_load_or_create(int dirfd, const char *dir, const struct cas_hash_algo *asked_algo,
                        uint64_t capacity, struct node_identity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct stat st;
    if (fstatat(dirfd, "node", &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
        char what[300];
        if (node_dir_holds_store(dirfd, what, sizeof(what))) {
            /* A lost node file: a new one would be a new identity (new id,
             * new tokens: every object misplaced in the ring), and of the
             * wrong hash if the store is not SHA-1. Write nothing. */
            snprintf(err, errlen,
                     "%s/node is missing but %s holds a store (%s). The node file is the "
                     "node's identity (id and ring tokens): restore it from a backup. If there "
                     "is none, ca-cas fsck %s --repair --new-identity writes a new one (the node "
                     "then joins the ring as a new node, and its objects must be rebalanced)",
                     dir, dir, what, dir);
            return -EINVAL;
        }
        if (dir_holds_stores_below(dirfd, what, sizeof(what))) {
            snprintf(err, errlen,
                     "%s is not a store but holds one (%s/%s): give each store's own folder "
                     "as --dir (one storaged per disk); nothing was written",
                     dir, dir, what);
            return -EINVAL;
        }
        int rc = node_create(dirfd, dir, asked_algo ? asked_algo : cas_hash_by_name("sha1"),
                             capacity, out, err, errlen);
        if (rc != -EEXIST) /* else another daemon made it first: load theirs */
            return rc;
    }
    int rc = node_load(dirfd, dir, out, err, errlen);
    if (rc == 0 && asked_algo && asked_algo != out->algo) {
        const struct cas_hash_algo *held = index_algo(dirfd, dir);
        if (held && held != out->algo)
            snprintf(err, errlen,
                     "%s/node says the store uses %s keys but its index holds %s keys: the node "
                     "file belongs to another store. Restore the right node file from a backup "
                     "(if there is none, ca-cas fsck %s --repair --new-identity writes one)",
                     dir, out->algo->name, held->name, dir);
        else
            snprintf(err, errlen, "%s was created with --hash %s and cannot serve %s keys", dir,
                     out->algo->name, asked_algo->name);
        node_free(out);
        return -EINVAL;
    }
    return rc;
}

void node_free(struct node_identity *n)
{
    free(n->tokens);
    n->tokens = NULL;
    n->ntokens = 0;
}
