/*
 * objects.c - the object commands of ca-cas: put, get, stat, missing, rm
 * and list.
 *
 * put hashes each file locally (the server's algorithm, from GET /ring),
 * asks POST /objects/missing which keys the server lacks, and streams only
 * those with PUT /objects/{key}. Data that cannot be read twice (a pipe on
 * stdin) goes up once with POST /objects while being hashed here, and the
 * server's key is checked against ours. get streams to stdout or a file and
 * checks whole objects against their key on the way.
 */
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MISSING_BATCH 10000
#define READ_CHUNK (1u << 20)

/* Writes all of buf to fd. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void print_buf(struct cas_buf *b)
{
    if (b->len)
        fwrite(b->data, 1, b->len, stdout);
    cas_buf_reset(b);
}

/* ==================== put ==================== */

struct put_item {
    const char *name; /* as given; "-" is stdin */
    int fd;
    bool regular;    /* readable twice: hash first, then PUT */
    uint64_t offset; /* where the data starts (stdin may be mid-file) */
    uint64_t size;
    char hex[CAS_MAX_HEX + 1];
    bool failed;
    bool present; /* the server has it already */
    bool uploaded;
    int copies, replicas; /* from the write's answer; -1 unknown */
};

/* A write through a balancer that made fewer copies than the cluster keeps
 * succeeded (min_replicas were durable) but leaves the object exposed until
 * the balancer completes it: say so on stderr, whatever the output mode. */
static void put_warn_copies(const struct put_item *it)
{
    if (it->copies >= 0 && it->replicas > 0 && it->copies < it->replicas)
        fprintf(stderr,
                "ca-cas: warning: put %s: stored %d of %d copies (the cluster is degraded; "
                "the rest are made when backends allow)\n",
                it->name, it->copies, it->replicas);
}

/* Hashes a regular file's bytes from item->offset to its end. */
static int put_hash_file(struct put_item *it, const struct cas_hash_algo *algo, bool progress,
                         char *err, size_t errlen)
{
    struct cas_hash *h = cas_hash_new(algo);
    char *buf = malloc(READ_CHUNK);
    if (!h || !buf) {
        cas_hash_free(h);
        free(buf);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct cli_progress p;
    char label[300];
    snprintf(label, sizeof(label), "hash %s", it->name);
    cli_progress_start(&p, progress && it->size >= (64u << 20), label, it->size, true);
    uint64_t done = 0;
    int rc = 0;
    while (done < it->size) {
        size_t want = it->size - done < READ_CHUNK ? (size_t)(it->size - done) : READ_CHUNK;
        ssize_t r = pread(it->fd, buf, want, (off_t)(it->offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "reading: %s", r < 0 ? strerror(errno) : "file shrank");
            rc = r < 0 ? -errno : -EIO;
            break;
        }
        cas_hash_update(h, buf, (size_t)r);
        done += (uint64_t)r;
        cli_progress_set(&p, done);
    }
    cli_progress_end(&p);
    if (rc == 0) {
        struct cas_key k = {.algo = algo};
        cas_hash_final(h, k.digest);
        cas_key_hex(&k, it->hex);
    }
    cas_hash_free(h);
    free(buf);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct missing_acc {
    struct cli_client *c;
    char **keys; /* keys the server lacks */
    size_t n, cap;
    long status;
};

/* Sends a batch to POST /objects/missing and keeps the answer's keys. */
static int missing_collect(void *cls, const char *body, size_t len, size_t count, char *err,
                           size_t errlen)
{
    struct missing_acc *m = cls;
    struct cas_buf out;
    cas_buf_init(&out);
    int rc = cli_call(m->c, "POST", "/objects/missing", body, len, &out, &m->status, err, errlen);
    for (char *s = out.data; rc == 0 && s && *s;) {
        size_t n = strcspn(s, "\r\n");
        if (n) {
            if (m->n == m->cap) {
                size_t cap = m->cap ? 2 * m->cap : 64;
                char **k = realloc(m->keys, cap * sizeof(*k));
                if (!k) {
                    rc = -ENOMEM;
                    break;
                }
                m->keys = k;
                m->cap = cap;
            }
            m->keys[m->n++] = strndup(s, n);
        }
        s += n;
        while (*s == '\r' || *s == '\n')
            s++;
    }
    cas_buf_free(&out);
    (void)count;
    return rc;
}

/*
 * Marks the items the server already holds. When the server cannot answer
 * (an old one without /objects/missing) everything is sent; only an
 * unreachable server is an error.
 */
static int put_find_present(struct cli_client *c, struct put_item *items, int n, char *err,
                            size_t errlen)
{
    struct missing_acc m = {.c = c};
    struct cli_keylist kl;
    cli_keylist_init(&kl, MISSING_BATCH, missing_collect, &m);
    int rc = 0, asked = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (items[i].failed || !items[i].regular)
            continue;
        char *k = items[i].hex;
        rc = cli_keylist_add_args(&kl, &k, 1, err, errlen);
        asked++;
    }
    if (rc == 0)
        rc = cli_keylist_flush(&kl, err, errlen);
    cli_keylist_free(&kl);
    /* One sorted answer serves both checks: each item it does not name is
     * present, and it may name only keys that were asked: anything else (an
     * upload's {"key":...} from a server that is not ours, a page) would
     * otherwise read as "nothing missing" and the files as stored. */
    bool malformed = false;
    if (rc == 0 && asked && m.n) {
        qsort(m.keys, m.n, sizeof(*m.keys), cmp_str);
        size_t u = 0; /* duplicates out: one flag per distinct key */
        for (size_t j = 0; j < m.n; j++) {
            if (u && !strcmp(m.keys[u - 1], m.keys[j]))
                free(m.keys[j]);
            else
                m.keys[u++] = m.keys[j];
        }
        m.n = u;
        bool *named = calloc(m.n, sizeof(*named));
        if (!named) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        }
        for (int i = 0; rc == 0 && i < n; i++) {
            if (items[i].failed || !items[i].regular)
                continue;
            char *k = items[i].hex;
            char **hit = bsearch(&k, m.keys, m.n, sizeof(*m.keys), cmp_str);
            if (hit)
                named[hit - m.keys] = true;
            else
                items[i].present = true;
        }
        for (size_t j = 0; rc == 0 && j < m.n; j++)
            if (!named[j]) {
                snprintf(err, errlen,
                         "POST /objects/missing: the answer names \"%.80s\", "
                         "which was not asked (not a ca-cas server?)",
                         m.keys[j]);
                rc = -EPROTO;
                malformed = true;
            }
        free(named);
    } else if (rc == 0 && asked) {
        for (int i = 0; i < n; i++) /* nothing missing */
            if (!items[i].failed && items[i].regular)
                items[i].present = true;
    }
    for (size_t i = 0; i < m.n; i++)
        free(m.keys[i]);
    free(m.keys);
    if (rc < 0 && !malformed && m.status != 0 && m.status != 401)
        rc = 0; /* the server answered, just not this: send everything */
    return rc;
}

/* Opens a hashed file again for sending; it must not have changed size. */
static int put_reopen(struct put_item *it, char *err, size_t errlen)
{
    if (it->fd >= 0)
        return 0;
    struct stat st;
    it->fd = open(it->name, O_RDONLY | O_CLOEXEC);
    if (it->fd < 0 || fstat(it->fd, &st) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -errno;
    }
    if ((uint64_t)st.st_size != it->size) {
        snprintf(err, errlen, "changed size while being stored (%llu bytes, then %llu)",
                 (unsigned long long)it->size, (unsigned long long)st.st_size);
        return -EAGAIN;
    }
    return 0;
}

/* Streams a regular file with PUT /objects/{key}. */
static int put_upload_file(struct cli_client *c, struct put_item *it, const char *query,
                           bool progress, char *err, size_t errlen)
{
    char path[128 + CAS_MAX_HEX];
    snprintf(path, sizeof(path), "/objects/%s%s", it->hex, query);
    struct cli_progress p;
    char label[300];
    snprintf(label, sizeof(label), "put %s", it->name);
    cli_progress_start(&p, progress && it->size >= (64u << 20), label, it->size, true);
    struct cli_http h;
    cli_http_init(&h, "PUT", path);
    h.body_fd = it->fd;
    h.body_offset = it->offset;
    h.body_size = it->size;
    h.progress = &p;
    int rc = cli_http_do(c, &h, err, errlen);
    cli_progress_end(&p);
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, errlen);
        rc = -EIO;
    }
    it->copies = h.copies;
    it->replicas = h.replicas;
    cli_http_free(&h);
    return rc;
}

/* Streams unseekable data with POST /objects, hashing it on the way, and
 * checks the server's key against ours. */
static int put_upload_stream(struct cli_client *c, struct put_item *it,
                             const struct cas_hash_algo *algo, const char *query, bool progress,
                             char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/objects%s", query);
    struct cas_hash *hash = cas_hash_new(algo);
    if (!hash) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct cli_progress p;
    char label[300];
    snprintf(label, sizeof(label), "put %s", it->name);
    cli_progress_start(&p, progress, label, 0, true);
    struct cli_http h;
    cli_http_init(&h, "POST", path);
    h.body_fd = it->fd;
    h.body_hash = hash;
    h.progress = &p;
    int rc = cli_http_do(c, &h, err, errlen);
    cli_progress_end(&p);
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, errlen);
        rc = -EIO;
    }
    it->copies = h.copies;
    it->replicas = h.replicas;
    if (rc == 0) {
        struct cas_key mine = {.algo = algo}, theirs;
        cas_hash_final(hash, mine.digest);
        cas_key_hex(&mine, it->hex);
        const char *body = h.resp.data ? h.resp.data : "";
        const char *loc = strrchr(h.location, '/');
        const char *ks = body;
        size_t klen = strcspn(body, " \t\r\n");
        if (klen == 0 && loc) { /* no body: the Location header tells */
            ks = loc + 1;
            klen = strlen(ks);
        }
        char hex[CAS_MAX_HEX + 1], why[CLI_ERR_MAX];
        if (cli_parse_key(ks, klen, &theirs, hex, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "the server's answer has no key: %s", why);
            rc = -EPROTO;
        } else if (theirs.algo != mine.algo) {
            /* Not corruption: --hash named another algorithm than the
             * server's. The object is stored, under the server's key. */
            snprintf(err, errlen,
                     "the server's keys are %s but --hash is %s: it stored the data as %s; "
                     "drop --hash or give --hash %s",
                     theirs.algo->name, mine.algo->name, hex, theirs.algo->name);
            rc = -EPROTO;
        } else if (!cas_key_equal(&mine, &theirs)) {
            snprintf(err, errlen, "the server stored key %s but the data sent hashes to %s", hex,
                     it->hex);
            rc = -EPROTO;
        }
    }
    cli_http_free(&h);
    cas_hash_free(hash);
    return rc;
}

static const struct cli_usage_text put_usage = {
    "put [FILE...] [--hash ALGO] [--no-sync]",
    "Stores each FILE (stdin when none, or for \"-\") and prints its key, one line per\n"
    "file, in the order given. Keys are computed here; objects the server already\n"
    "holds are not sent again.",
};

int cmd_put(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *hash_name = NULL;
    bool no_sync = false;
    const struct cli_opt opts[] = {
        {"hash", 0, CLI_OPT_STRING, &hash_name, "ALGO",
         "key algorithm (sha1, sha256); default: ask the server"},
        {"no-sync", 0, CLI_OPT_FLAG, &no_sync, NULL,
         "let the server answer before the data is on stable storage"},
    };
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("put", &put_usage, opts, 2, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    static char *stdin_name[] = {"-"};
    char **names = npos ? pos : stdin_name;
    int n = npos ? npos : 1;
    char err[CLI_ERR_MAX];
    int exit_code = CLI_EXIT_OK;

    const struct cas_hash_algo *algo = NULL;
    if (hash_name && !(algo = cas_hash_by_name(hash_name))) {
        cli_error("put: --hash \"%s\": want sha1 or sha256", hash_name);
        free(pos);
        return CLI_EXIT_USAGE;
    }
    int stdin_uses = 0;
    for (int i = 0; i < n; i++)
        stdin_uses += strcmp(names[i], "-") == 0;
    if (stdin_uses > 1) {
        cli_error("put: stdin (\"-\") given more than once");
        free(pos);
        return CLI_EXIT_USAGE;
    }
    struct cli_client *c = NULL;
    struct put_item *items = calloc((size_t)n, sizeof(*items));
    if (!items || cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("put: %s", items ? err : "out of memory");
        free(items);
        free(pos);
        return CLI_EXIT_FAIL;
    }
    if (!algo && cli_client_algo(c, &algo, err, sizeof(err)) < 0) {
        cli_error("put: %s", err);
        exit_code = CLI_EXIT_FAIL;
        goto out;
    }

    /* 1. open and hash what can be read twice */
    for (int i = 0; i < n; i++) {
        struct put_item *it = &items[i];
        it->name = names[i];
        it->fd = -1;
        bool is_stdin = strcmp(it->name, "-") == 0;
        it->fd = is_stdin ? STDIN_FILENO : open(it->name, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (it->fd < 0 || fstat(it->fd, &st) < 0) {
            cli_error("put %s: %s", it->name, strerror(errno));
            it->failed = true;
            exit_code = CLI_EXIT_FAIL;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            cli_error("put %s: is a directory", it->name);
            it->failed = true;
            exit_code = CLI_EXIT_FAIL;
            continue;
        }
        off_t at = is_stdin ? lseek(it->fd, 0, SEEK_CUR) : 0;
        it->regular = S_ISREG(st.st_mode) && at >= 0 && at <= st.st_size;
        if (!it->regular)
            continue;
        it->offset = (uint64_t)at;
        it->size = (uint64_t)(st.st_size - at);
        if (put_hash_file(it, algo, ctx->progress, err, sizeof(err)) < 0) {
            cli_error("put %s: %s", it->name, err);
            it->failed = true;
            exit_code = CLI_EXIT_FAIL;
        }
        if (!is_stdin) { /* reopened to send: thousands of files, few descriptors */
            close(it->fd);
            it->fd = -1;
        }
    }

    /* 2. ask which the server lacks */
    if (put_find_present(c, items, n, err, sizeof(err)) < 0) {
        cli_error("put: %s", err);
        exit_code = CLI_EXIT_FAIL;
        goto out;
    }

    /* 3. send them, print the keys in order */
    const char *query = no_sync ? "?sync=0" : "";
    struct cas_buf jb;
    struct cas_json j;
    cas_buf_init(&jb);
    cas_json_init(&j, &jb);
    if (ctx->json)
        cas_json_begin_array(&j);
    for (int i = 0; i < n; i++) {
        struct put_item *it = &items[i];
        if (it->failed)
            continue;
        for (int k = 0; k < i && it->regular && !it->present; k++)
            if (items[k].regular && !items[k].failed && strcmp(items[k].hex, it->hex) == 0)
                it->present = true; /* the same data given twice */
        int rc = 0;
        if (!it->regular)
            rc = put_upload_stream(c, it, algo, query, ctx->progress, err, sizeof(err));
        else if (!it->present && (rc = put_reopen(it, err, sizeof(err))) == 0)
            rc = put_upload_file(c, it, query, ctx->progress, err, sizeof(err));
        if (it->fd > STDIN_FILENO) {
            close(it->fd);
            it->fd = -1;
        }
        if (rc < 0) {
            cli_error("put %s: %s", it->name, err);
            it->failed = true;
            exit_code = CLI_EXIT_FAIL;
            continue;
        }
        it->uploaded = !it->present;
        if (it->uploaded)
            put_warn_copies(it);
        if (ctx->json) {
            cas_json_begin_object(&j);
            cas_json_key(&j, "file");
            cas_json_string(&j, it->name);
            cas_json_key(&j, "key");
            cas_json_string(&j, it->hex);
            if (it->regular) {
                cas_json_key(&j, "size");
                cas_json_u64(&j, it->size);
            }
            cas_json_key(&j, "uploaded");
            cas_json_bool(&j, it->uploaded);
            cas_json_end_object(&j);
        } else {
            printf("%s\n", it->hex);
            fflush(stdout);
        }
    }
    if (ctx->json) {
        cas_json_end_array(&j);
        cas_buf_puts(&jb, "\n");
        print_buf(&jb);
    }
    cas_buf_free(&jb);
out:
    for (int i = 0; i < n; i++)
        if (items[i].fd > STDIN_FILENO)
            close(items[i].fd);
    free(items);
    free(pos);
    cli_client_free(c);
    return exit_code;
}

/* ==================== get ==================== */

struct get_sink {
    struct cli_http *h;
    int fd;
    const char *dest;
    struct cas_hash *hash; /* whole objects only */
    bool ranged;
    uint64_t offset, size; /* for a server that ignored Range */
    uint64_t pos;          /* bytes of the answer seen */
    uint64_t written;
};

static int get_write(void *cls, const char *data, size_t len)
{
    struct get_sink *s = cls;
    if (s->ranged && s->h->status == 200) {
        /* The whole object came: cut out the range ourselves. */
        uint64_t start = s->pos, end = s->pos + len;
        s->pos = end;
        uint64_t lo = s->offset > start ? s->offset : start;
        uint64_t hi =
            s->size == UINT64_MAX || s->offset + s->size > end ? end : s->offset + s->size;
        if (lo >= hi)
            return 0;
        data += lo - start;
        len = (size_t)(hi - lo);
    }
    if (s->hash)
        cas_hash_update(s->hash, data, len);
    int rc = write_all(s->fd, data, len);
    if (rc < 0) {
        snprintf(s->h->sink_err, sizeof(s->h->sink_err), "writing to %s: %s", s->dest,
                 strerror(-rc));
        return rc;
    }
    s->written += len;
    return 0;
}

static const struct cli_usage_text get_usage = {
    "get KEY... [-o FILE [--continue]] [--offset N] [--size N] [--no-verify]",
    "Writes the bytes of each object to stdout (or FILE), one after the other.\n"
    "--offset and --size take a part of each. Whole objects are checked against\n"
    "their key on the way unless --no-verify. With --continue (one KEY, -o FILE),\n"
    "a partial FILE left by an interrupted get is completed with a Range request\n"
    "and the whole file checked against the key.",
};

/*
 * For get --continue: the object's size (HEAD), the bytes FILE already
 * holds (*have; UINT64_MAX when it is complete), a digest state fed with
 * them (*prefix, unless no_verify), and fd positioned after them. A FILE
 * longer than the object, or complete but with other bytes, is -EBADMSG.
 */
static int get_resume_prepare(struct cli_client *c, int fd, const char *file, const char *hex,
                              const struct cas_key *key, bool no_verify, uint64_t *have,
                              struct cas_hash **prefix, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "--continue: %s is not a regular file", file);
        return -EINVAL;
    }
    char path[64 + CAS_MAX_HEX];
    snprintf(path, sizeof(path), "/objects/%s", hex);
    struct cli_http h;
    cli_http_init(&h, "HEAD", path);
    int rc = cli_http_do(c, &h, err, errlen);
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, errlen);
        rc = -EIO;
    }
    uint64_t size = h.content_length;
    cli_http_free(&h);
    if (rc < 0)
        return rc;
    *have = (uint64_t)st.st_size;
    if (size != UINT64_MAX && *have > size) {
        snprintf(err, errlen,
                 "%s has %llu bytes, more than the object's %llu: not a partial "
                 "download of it (left as it was)",
                 file, (unsigned long long)*have, (unsigned long long)size);
        return -EBADMSG;
    }
    if (!no_verify) {
        if (!(*prefix = cas_hash_new(key->algo))) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        char buf[1 << 16];
        for (uint64_t at = 0; at < *have;) {
            ssize_t n = pread(fd, buf, sizeof(buf), (off_t)at);
            if (n <= 0) {
                snprintf(err, errlen, "reading %s: %s", file, n < 0 ? strerror(errno) : "short");
                return -EIO;
            }
            cas_hash_update(*prefix, buf, (size_t)n);
            at += (uint64_t)n;
        }
    }
    if (lseek(fd, (off_t)*have, SEEK_SET) < 0) {
        snprintf(err, errlen, "seeking in %s: %s", file, strerror(errno));
        return -EIO;
    }
    if (*have == size)
        *have = UINT64_MAX; /* nothing left to fetch; the check says the rest */
    return 0;
}

/* Fetches one object (or part) into sink s; 1 when it does not exist. */
static int get_one(struct cli_client *c, const char *hex, struct get_sink *s, uint64_t offset,
                   uint64_t size, bool progress, char *err, size_t errlen)
{
    char path[64 + CAS_MAX_HEX];
    snprintf(path, sizeof(path), "/objects/%s", hex);
    char range[64];
    bool ranged = offset > 0 || size != UINT64_MAX;
    if (size == 0) { /* nothing to fetch; the object must still exist */
        struct cli_http h;
        cli_http_init(&h, "HEAD", path);
        int rc = cli_http_do(c, &h, err, errlen);
        if (rc == 0 && h.status / 100 != 2) {
            cli_http_error_text(h.status, h.resp.data, err, errlen);
            rc = h.status == 404 ? 1 : -EIO;
        }
        cli_http_free(&h);
        return rc;
    }
    if (size != UINT64_MAX && size > UINT64_MAX - offset)
        size = UINT64_MAX; /* offset + size past 2^64: to the end, never wrapped */
    if (size != UINT64_MAX)
        snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)offset,
                 (unsigned long long)(offset + size - 1));
    else
        snprintf(range, sizeof(range), "%llu-", (unsigned long long)offset);
    struct cli_progress p;
    char label[128];
    snprintf(label, sizeof(label), "get %.12s", hex);
    cli_progress_start(&p, progress, label, 0, true);
    struct cli_http h;
    cli_http_init(&h, "GET", path);
    h.range = ranged ? range : NULL;
    h.sink = get_write;
    h.sink_cls = s;
    h.progress = &p;
    s->h = &h;
    s->ranged = ranged;
    s->offset = offset;
    s->size = size;
    s->pos = 0;
    int rc = cli_http_do(c, &h, err, errlen);
    cli_progress_end(&p);
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, errlen);
        rc = h.status == 404 ? 1 : -EIO;
    } else if (rc == 0 && ranged && h.status == 200 && offset > 0 && offset >= s->pos) {
        /* The whole object came (the Range was not applied) and the
         * offset is past its end: what a 416 says. */
        snprintf(err, errlen, "range not satisfiable: offset %llu is past the object's %llu bytes",
                 (unsigned long long)offset, (unsigned long long)s->pos);
        rc = -EIO;
    }
    cli_http_free(&h);
    s->h = NULL;
    return rc;
}

int cmd_get(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *outfile = NULL;
    uint64_t offset = 0, size = UINT64_MAX;
    bool no_verify = false, cont = false;
    const struct cli_opt opts[] = {
        {"output", 'o', CLI_OPT_STRING, &outfile, "FILE", "write to FILE instead of stdout"},
        {"continue", 'C', CLI_OPT_FLAG, &cont, NULL, "resume a partial FILE (with -o, one KEY)"},
        {"offset", 0, CLI_OPT_SIZE, &offset, "N", "start at byte N of each object"},
        {"size", 0, CLI_OPT_SIZE, &size, "N", "at most N bytes of each object"},
        {"no-verify", 0, CLI_OPT_FLAG, &no_verify, NULL, "do not check data against the key"},
    };
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("get", &get_usage, opts, 5, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    if (npos == 0) {
        cli_error("get: no key given (see ca-cas get --help)");
        free(pos);
        return CLI_EXIT_USAGE;
    }
    if (cont && (!outfile || npos != 1 || offset || size != UINT64_MAX)) {
        cli_error("get: --continue needs -o FILE and one KEY, without --offset or --size");
        free(pos);
        return CLI_EXIT_USAGE;
    }
    char err[CLI_ERR_MAX];
    struct cas_key *keys = calloc((size_t)npos, sizeof(*keys));
    char(*hex)[CAS_MAX_HEX + 1] = calloc((size_t)npos, sizeof(*hex));
    int exit_code = CLI_EXIT_OK;
    for (int i = 0; i < npos && keys && hex; i++)
        if (cli_parse_key(pos[i], strlen(pos[i]), &keys[i], hex[i], err, sizeof(err)) < 0) {
            cli_error("get: %s", err);
            exit_code = CLI_EXIT_USAGE;
            break;
        }
    if (!keys || !hex) {
        cli_error("get: out of memory");
        exit_code = CLI_EXIT_FAIL;
    }
    struct cli_client *c = NULL;
    int fd = STDOUT_FILENO;
    const char *dest = outfile ? outfile : "stdout";
    if (exit_code == CLI_EXIT_OK && cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("get: %s", err);
        exit_code = CLI_EXIT_FAIL;
    }
    /* Without --continue, -o FILE is written through a temporary file
     * beside it (or straight into a device or FIFO): whatever fails, FILE
     * is left as it was (outfile.c). With --continue FILE is the partial
     * download itself, added to in place. */
    struct cli_outfile out = {.fd = -1};
    bool created = false; /* --continue made FILE: remove it if still empty */
    if (exit_code == CLI_EXIT_OK && outfile && !cont) {
        if (cli_outfile_open(&out, outfile, err, sizeof(err)) < 0) {
            cli_error("get: %s", err);
            exit_code = CLI_EXIT_FAIL;
        } else {
            fd = out.fd;
            if (out.is_stdout)
                dest = "stdout";
        }
    } else if (exit_code == CLI_EXIT_OK && outfile) {
        fd = open(outfile, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            fd = open(outfile, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            created = fd >= 0;
        }
        if (fd < 0) {
            cli_error("get: cannot open %s: %s", outfile, strerror(errno));
            exit_code = CLI_EXIT_FAIL;
        }
    }
    uint64_t total = 0, have = 0, had = 0;
    struct cas_hash *prefix = NULL;
    /* --continue: FILE's bytes plus what came do not hash to the key */
    bool corrupt = false;
    struct stat cst;
    if (exit_code == CLI_EXIT_OK && cont && fstat(fd, &cst) == 0 && S_ISREG(cst.st_mode))
        had = (uint64_t)cst.st_size;
    if (exit_code == CLI_EXIT_OK && cont) {
        int rc = get_resume_prepare(c, fd, outfile, hex[0], &keys[0], no_verify, &have, &prefix,
                                    err, sizeof(err));
        if (rc < 0) {
            cli_error("get %s: %s", hex[0], err);
            exit_code = CLI_EXIT_FAIL;
        }
        offset = have;
    }
    for (int i = 0; i < npos && exit_code == CLI_EXIT_OK; i++) {
        bool whole = offset == 0 && size == UINT64_MAX && !no_verify;
        struct get_sink s = {.fd = fd, .dest = dest};
        if (cont && prefix) { /* the hash goes on from the bytes already there */
            s.hash = prefix;
            prefix = NULL;
        } else if (whole && !(s.hash = cas_hash_new(keys[i].algo))) {
            cli_error("get: out of memory");
            exit_code = CLI_EXIT_FAIL;
            break;
        }
        int rc = cont && have == UINT64_MAX
                     ? 0 /* complete already */
                     : get_one(c, hex[i], &s, offset, size, ctx->progress, err, sizeof(err));
        if (rc == 1) {
            cli_error("get %s: %s", hex[i], err);
            exit_code = CLI_EXIT_FAIL;
        } else if (rc < 0) {
            cli_error("get %s: %s", hex[i], err);
            exit_code = CLI_EXIT_FAIL;
        } else if (s.hash) {
            struct cas_key got = {.algo = keys[i].algo};
            cas_hash_final(s.hash, got.digest);
            if (!cas_key_equal(&got, &keys[i])) {
                char gh[CAS_MAX_HEX + 1];
                cas_key_hex(&got, gh);
                if (cont && had > 0)
                    cli_error("get %s: %s with the data received hashes to %s: its first %llu "
                              "bytes are not this object's, or the data is corrupt (%s is left "
                              "as it was; remove it and get again)",
                              hex[i], outfile, gh, (unsigned long long)had, outfile);
                else
                    cli_error("get %s: the data received hashes to %s: corrupt, discarded", hex[i],
                              gh);
                exit_code = CLI_EXIT_FAIL;
                corrupt = true;
            }
        }
        total += s.written;
        cas_hash_free(s.hash);
    }
    if (outfile && !cont) {
        if (exit_code == CLI_EXIT_OK && cli_outfile_commit(&out, err, sizeof(err)) < 0) {
            cli_error("get: %s", err);
            exit_code = CLI_EXIT_FAIL;
        } else if (exit_code != CLI_EXIT_OK) {
            cli_outfile_abort(&out); /* removes only the temporary file */
        }
    } else if (outfile && fd >= 0) {
        /* --continue: bytes that failed their check are taken back off, so
         * FILE ends as it began; a partial transfer stays, to resume. */
        if (corrupt && ftruncate(fd, (off_t)had) < 0)
            cli_error("get: cutting %s back to its %llu bytes: %s", outfile,
                      (unsigned long long)had, strerror(errno));
        if (exit_code == CLI_EXIT_OK && fsync(fd) < 0) {
            cli_error("get: syncing %s: %s", outfile, strerror(errno));
            exit_code = CLI_EXIT_FAIL;
        }
        struct stat st;
        if (exit_code != CLI_EXIT_OK && created && fstat(fd, &st) == 0 && st.st_size == 0)
            unlink(outfile); /* made by this command, still empty */
        if (close(fd) < 0 && exit_code == CLI_EXIT_OK) {
            cli_error("get: writing %s: %s", outfile, strerror(errno));
            exit_code = CLI_EXIT_FAIL;
        }
    }
    cas_hash_free(prefix);
    if (exit_code == CLI_EXIT_OK && ctx->json && outfile && !out.is_stdout) {
        struct cas_buf b;
        struct cas_json j;
        cas_buf_init(&b);
        cas_json_init(&j, &b);
        cas_json_begin_object(&j);
        cas_json_key(&j, "file");
        cas_json_string(&j, outfile);
        cas_json_key(&j, "bytes");
        cas_json_u64(&j, total);
        cas_json_key(&j, "keys");
        cas_json_begin_array(&j);
        for (int i = 0; i < npos; i++)
            cas_json_string(&j, hex[i]);
        cas_json_end_array(&j);
        cas_json_end_object(&j);
        cas_buf_puts(&b, "\n");
        print_buf(&b);
        cas_buf_free(&b);
    }
    cli_client_free(c);
    free(keys);
    free(hex);
    free(pos);
    return exit_code;
}

/* The keys of a KEY... command, in canonical hex. */
typedef char key_hex[CAS_MAX_HEX + 1];

/*
 * The start every KEY... command shares: parses the command line, checks
 * every key before anything is sent, and connects. Returns 0 with *keys (to
 * free) and *c, or -1 with the exit status in *code.
 */
static int begin_keys_command(const char *name, const struct cli_usage_text *usage, int argc,
                              char **argv, const struct cli_ctx *ctx, key_hex **keys, int *nkeys,
                              struct cli_client **c, int *code)
{
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    key_hex *hex = calloc((size_t)argc + 1, sizeof(*hex));
    char err[CLI_ERR_MAX];
    *code = CLI_EXIT_FAIL;
    if (!pos || !hex)
        goto fail;
    if (cli_args_command(name, usage, NULL, 0, argc, argv, pos, nkeys, code) < 0)
        goto fail;
    *code = CLI_EXIT_USAGE;
    if (*nkeys == 0) {
        cli_error("%s: no key given (see ca-cas %s --help)", name, name);
        goto fail;
    }
    for (int i = 0; i < *nkeys; i++) {
        struct cas_key k;
        if (cli_parse_key(pos[i], strlen(pos[i]), &k, hex[i], err, sizeof(err)) < 0) {
            cli_error("%s: %s", name, err);
            goto fail;
        }
    }
    *code = CLI_EXIT_FAIL;
    if (cli_client_new(ctx, c, err, sizeof(err)) < 0) {
        cli_error("%s: %s", name, err);
        goto fail;
    }
    free(pos);
    *keys = hex;
    return 0;
fail:
    free(pos);
    free(hex);
    return -1;
}

/*
 * One key of a KEY... command: prints its text line or adds its JSON object
 * to j. Returns KEY_OK, KEY_FAILED (the command exits 1, the next key goes
 * on) or KEY_STOP (the server is gone: the other keys would fail alike).
 */
enum key_outcome { KEY_OK, KEY_FAILED, KEY_STOP };
typedef enum key_outcome (*key_fn)(struct cli_client *c, const struct cli_ctx *ctx, const char *hex,
                                   struct cas_json *j);

/* Runs fn on each key of a KEY... command, in order; with --json the
 * objects fn adds form one array printed at the end. Returns the exit
 * status. */
static int run_keys_command(const char *name, const struct cli_usage_text *usage, int argc,
                            char **argv, const struct cli_ctx *ctx, key_fn fn)
{
    key_hex *keys;
    int npos, code;
    struct cli_client *c;
    if (begin_keys_command(name, usage, argc, argv, ctx, &keys, &npos, &c, &code) < 0)
        return code;
    int exit_code = CLI_EXIT_OK;
    struct cas_buf b;
    struct cas_json j;
    cas_buf_init(&b);
    cas_json_init(&j, &b);
    if (ctx->json)
        cas_json_begin_array(&j);
    for (int i = 0; i < npos; i++) {
        enum key_outcome o = fn(c, ctx, keys[i], &j);
        if (o != KEY_OK)
            exit_code = CLI_EXIT_FAIL;
        if (o == KEY_STOP)
            break;
    }
    if (ctx->json) {
        cas_json_end_array(&j);
        cas_buf_puts(&b, "\n");
        print_buf(&b);
    }
    cas_buf_free(&b);
    cli_client_free(c);
    free(keys);
    return exit_code;
}

/* ==================== stat ==================== */

static const struct cli_usage_text stat_usage = {
    "stat KEY...",
    "Prints \"<key> <size>\" for each object stored, \"<key> missing\" for each not;\n"
    "exits 1 when any is missing.",
};

static enum key_outcome stat_one(struct cli_client *c, const struct cli_ctx *ctx, const char *hex,
                                 struct cas_json *j)
{
    char err[CLI_ERR_MAX];
    char path[64 + CAS_MAX_HEX];
    snprintf(path, sizeof(path), "/objects/%s", hex);
    struct cli_http h;
    cli_http_init(&h, "HEAD", path);
    int rc = cli_http_do(c, &h, err, sizeof(err));
    if (rc < 0 || (h.status / 100 != 2 && h.status != 404)) {
        if (rc == 0)
            cli_http_error_text(h.status, h.resp.data, err, sizeof(err));
        cli_error("stat %s: %s", hex, err);
        cli_http_free(&h);
        return rc < 0 ? KEY_STOP : KEY_FAILED;
    }
    bool present = h.status / 100 == 2;
    if (ctx->json) {
        cas_json_begin_object(j);
        cas_json_key(j, "key");
        cas_json_string(j, hex);
        cas_json_key(j, "present");
        cas_json_bool(j, present);
        if (present) {
            cas_json_key(j, "size");
            cas_json_u64(j, h.content_length);
        }
        cas_json_end_object(j);
    } else if (present) {
        printf("%s %llu\n", hex, (unsigned long long)h.content_length);
    } else {
        printf("%s missing\n", hex);
    }
    cli_http_free(&h);
    return present ? KEY_OK : KEY_FAILED;
}

int cmd_stat(int argc, char **argv, const struct cli_ctx *ctx)
{
    return run_keys_command("stat", &stat_usage, argc, argv, ctx, stat_one);
}

/* ==================== missing ==================== */

struct missing_print {
    struct cli_client *c;
    const struct cli_ctx *ctx;
    struct cas_json *j;
    struct cas_buf *jb;
    uint64_t found;
};

static int missing_print_batch(void *cls, const char *body, size_t len, size_t count, char *err,
                               size_t errlen)
{
    struct missing_print *m = cls;
    struct cas_buf out;
    cas_buf_init(&out);
    int rc = cli_call(m->c, "POST", "/objects/missing", body, len, &out, NULL, err, errlen);
    for (char *s = out.data; rc == 0 && s && *s;) {
        size_t n = strcspn(s, "\r\n");
        if (n) {
            m->found++;
            if (m->ctx->json) {
                char key[CAS_MAX_HEX + 8];
                snprintf(key, sizeof(key), "%.*s", (int)(n < sizeof(key) ? n : sizeof(key) - 1), s);
                cas_json_string(m->j, key);
                print_buf(m->jb);
            } else {
                fwrite(s, 1, n, stdout);
                fputc('\n', stdout);
            }
        }
        s += n;
        while (*s == '\r' || *s == '\n')
            s++;
    }
    cas_buf_free(&out);
    (void)count;
    return rc;
}

static const struct cli_usage_text missing_usage = {
    "missing [FILE]",
    "Reads keys, one per line, from FILE (stdin when none or \"-\") and prints those\n"
    "the server does not store. Lines may carry more after the key (as list --long\n"
    "prints); the first word counts.",
};

int cmd_missing(int argc, char **argv, const struct cli_ctx *ctx)
{
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("missing", &missing_usage, NULL, 0, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    if (npos > 1) {
        cli_error("missing: one FILE at most (see ca-cas missing --help)");
        free(pos);
        return CLI_EXIT_USAGE;
    }
    const char *name = npos && strcmp(pos[0], "-") != 0 ? pos[0] : NULL;
    FILE *f = name ? fopen(name, "r") : stdin;
    if (!f) {
        cli_error("missing: cannot open %s: %s", name, strerror(errno));
        free(pos);
        return CLI_EXIT_FAIL;
    }
    char err[CLI_ERR_MAX];
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("missing: %s", err);
        if (name)
            fclose(f);
        free(pos);
        return CLI_EXIT_FAIL;
    }
    struct cas_buf jb;
    struct cas_json j;
    cas_buf_init(&jb);
    cas_json_init(&j, &jb);
    if (ctx->json)
        cas_json_begin_array(&j);
    struct missing_print m = {.c = c, .ctx = ctx, .j = &j, .jb = &jb};
    struct cli_keylist kl;
    cli_keylist_init(&kl, MISSING_BATCH, missing_print_batch, &m);
    int rc = cli_keylist_add_stream(&kl, f, name ? name : "stdin", err, sizeof(err));
    if (rc == 0)
        rc = cli_keylist_flush(&kl, err, sizeof(err));
    cli_keylist_free(&kl);
    if (ctx->json) {
        cas_json_end_array(&j);
        cas_buf_puts(&jb, "\n");
        print_buf(&jb);
    }
    cas_buf_free(&jb);
    if (rc < 0)
        cli_error("missing: %s", err);
    if (name)
        fclose(f);
    cli_client_free(c);
    free(pos);
    return rc == -EINVAL ? CLI_EXIT_USAGE : rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ==================== rm ==================== */

static const struct cli_usage_text rm_usage = {
    "rm KEY...",
    "Removes each object now; the space comes back at the next compaction.\n"
    "Exits 1 when any was not stored.",
};

static enum key_outcome rm_one(struct cli_client *c, const struct cli_ctx *ctx, const char *hex,
                               struct cas_json *j)
{
    char err[CLI_ERR_MAX];
    char path[64 + CAS_MAX_HEX];
    snprintf(path, sizeof(path), "/objects/%s", hex);
    long status;
    int rc = cli_call(c, "DELETE", path, NULL, 0, NULL, &status, err, sizeof(err));
    if (rc < 0) {
        cli_error("rm %s: %s", hex, err);
        if (status == 0)
            return KEY_STOP;
    }
    if (ctx->json) {
        cas_json_begin_object(j);
        cas_json_key(j, "key");
        cas_json_string(j, hex);
        cas_json_key(j, "removed");
        cas_json_bool(j, rc == 0);
        if (rc < 0) {
            cas_json_key(j, "error");
            cas_json_string(j, err);
        }
        cas_json_end_object(j);
    }
    return rc < 0 ? KEY_FAILED : KEY_OK;
}

int cmd_rm(int argc, char **argv, const struct cli_ctx *ctx)
{
    return run_keys_command("rm", &rm_usage, argc, argv, ctx, rm_one);
}

/* ==================== list ==================== */

struct list_sink {
    const struct cli_ctx *ctx;
    bool lng;
    struct cas_buf partial; /* a line cut between two chunks */
    struct cas_buf jb;
    struct cas_json j;
    uint64_t count;
    const struct cli_http *h;
    bool allow_partial;
    /* --json and the head said the listing is incomplete: the lines are
     * dropped, not printed, since the JSON array would stream out in
     * pieces before the failure is known otherwise (decided at the first
     * byte: libcurl hands every header over before the body). */
    bool checked, withhold;
};

static void list_line(struct list_sink *s, const char *line, size_t len)
{
    size_t klen = strcspn(line, " \t");
    if (klen > len)
        klen = len;
    if (klen == 0)
        return;
    s->count++;
    if (s->ctx->json && s->withhold)
        return;
    if (s->ctx->json) {
        char key[CAS_MAX_HEX + 16];
        snprintf(key, sizeof(key), "%.*s", (int)(klen < sizeof(key) ? klen : sizeof(key) - 1),
                 line);
        cas_json_begin_object(&s->j);
        cas_json_key(&s->j, "key");
        cas_json_string(&s->j, key);
        if (klen < len) {
            cas_json_key(&s->j, "size");
            cas_json_u64(&s->j, strtoull(line + klen + 1, NULL, 10));
        }
        cas_json_end_object(&s->j);
        if (s->jb.len >= 65536)
            print_buf(&s->jb);
    } else {
        fwrite(line, 1, s->lng ? len : klen, stdout);
        fputc('\n', stdout);
    }
}

static int list_write(void *cls, const char *data, size_t len)
{
    struct list_sink *s = cls;
    if (!s->checked) {
        char why[CLI_ERR_MAX];
        s->withhold =
            s->ctx->json && !s->allow_partial && cli_listing_skipped(s->h, why, sizeof(why));
        s->checked = true;
    }
    while (len) {
        const char *nl = memchr(data, '\n', len);
        if (!nl) {
            cas_buf_append(&s->partial, data, len);
            return s->partial.len > 4096 ? -EPROTO : 0;
        }
        size_t n = (size_t)(nl - data);
        if (s->partial.len) {
            cas_buf_append(&s->partial, data, n);
            list_line(s, s->partial.data, s->partial.len);
            cas_buf_reset(&s->partial);
        } else {
            list_line(s, data, n);
        }
        data = nl + 1;
        len -= n + 1;
    }
    return 0;
}

static const struct cli_usage_text list_usage = {
    "list [--garbage] [--min-size N] [--max-size N] [--long] [--allow-partial]",
    "Prints the stored keys, one per line (with --long, \"<key> <size>\"). --garbage\n"
    "lists the objects still marked in the current GC cycle instead; sizes filter\n"
    "min-size <= size < max-size. A listing a balancer marks as incomplete (a\n"
    "backend left out) is printed but fails (exit 1) unless --allow-partial.",
};

int cmd_list(int argc, char **argv, const struct cli_ctx *ctx)
{
    bool garbage = false, lng = false, allow_partial = false;
    uint64_t min_size = 0, max_size = UINT64_MAX;
    const struct cli_opt opts[] = {
        {"garbage", 0, CLI_OPT_FLAG, &garbage, NULL, "objects marked in the current GC cycle"},
        {"min-size", 0, CLI_OPT_SIZE, &min_size, "N", "only objects of N bytes or more"},
        {"max-size", 0, CLI_OPT_SIZE, &max_size, "N", "only objects smaller than N bytes"},
        {"long", 'l', CLI_OPT_FLAG, &lng, NULL, "print each key's size too"},
        {"allow-partial", 0, CLI_OPT_FLAG, &allow_partial, NULL,
         "accept a listing that left a backend out (warn, exit 0)"},
    };
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("list", &list_usage, opts, 5, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    free(pos);
    if (npos > 0) {
        cli_error("list: takes no operands (see ca-cas list --help)");
        return CLI_EXIT_USAGE;
    }
    char path[256], err[CLI_ERR_MAX];
    int n = snprintf(path, sizeof(path), "/objects?state=%s", garbage ? "garbage" : "live");
    if (min_size)
        n += snprintf(path + n, sizeof(path) - (size_t)n, "&min_size=%llu",
                      (unsigned long long)min_size);
    if (max_size != UINT64_MAX)
        snprintf(path + n, sizeof(path) - (size_t)n, "&max_size=%llu",
                 (unsigned long long)max_size);
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("list: %s", err);
        return CLI_EXIT_FAIL;
    }
    struct cli_http h;
    struct list_sink s = {.ctx = ctx, .lng = lng, .h = &h, .allow_partial = allow_partial};
    cas_buf_init(&s.partial);
    cas_buf_init(&s.jb);
    cas_json_init(&s.j, &s.jb);
    if (ctx->json)
        cas_json_begin_array(&s.j);
    cli_http_init(&h, "GET", path);
    h.sink = list_write;
    h.sink_cls = &s;
    int rc = cli_http_do(c, &h, err, sizeof(err));
    if (rc == 0 && h.status / 100 != 2) {
        cli_http_error_text(h.status, h.resp.data, err, sizeof(err));
        rc = -EIO;
    }
    if (rc == 0 && s.partial.len) /* a last line without its newline */
        list_line(&s, s.partial.data, s.partial.len);
    /* A balancer that left backends out says so in the head: the keys
     * listed are true, but the list is not every key. Text lines are out
     * already (as with a listing cut short); the status tells a script. */
    char partial[CLI_ERR_MAX];
    int skipped = rc == 0 ? cli_listing_skipped(&h, partial, sizeof(partial)) : 0;
    if (ctx->json) {
        cas_json_end_array(&s.j);
        cas_buf_puts(&s.jb, "\n");
        if (rc == 0 && (!skipped || allow_partial)) /* nothing half-made */
            print_buf(&s.jb);
    }
    if (rc < 0)
        cli_error("list: %s", err);
    else if (skipped && allow_partial)
        cli_warning("list: %s (accepted: --allow-partial)", partial);
    else if (skipped)
        cli_error("list: %s" CLI_PARTIAL_HINT, partial);
    cli_http_free(&h);
    cas_buf_free(&s.partial);
    cas_buf_free(&s.jb);
    cli_client_free(c);
    return rc < 0 || (skipped && !allow_partial) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
