/*
 * archive.c - `ca-cas export` and `ca-cas import`: backups as tar streams.
 *
 * export writes one tar member per object, named by its key (lowercase
 * hex), in POSIX pax format (64-bit sizes), to stdout or -o FILE. With no
 * key it exports every live object: the listing (GET /objects) is first
 * spooled to an unnamed temporary file, so memory stays bounded whatever
 * the number of objects. Each object streams from the server into the
 * archive and is hashed on the way; a member's header is written only once
 * its answer has started (an object deleted since the listing is skipped,
 * not written as an empty member), and an export whose bytes do not match
 * a key, or that breaks in the middle of a member, fails loudly (exit 1):
 * such an archive must not be trusted.
 *
 * import reads a tar stream (any compression libarchive knows) from FILE or
 * stdin and PUTs each regular member under the key its name gives (the
 * last path component, any key form the tool accepts). The server checks
 * every body against its key, so a tampered member is refused (422) and
 * nothing is stored for it. The report counts what was stored (201),
 * skipped (already stored, or not a regular file) and refused (a name that
 * is not a key, or bytes that do not match it).
 *
 * With -o FILE the archive goes to a temporary file beside FILE, renamed
 * over it once complete and synced: a failed export leaves FILE as it was.
 * A listing a balancer marks incomplete (X-CAS-Backends-Skipped > 0: a
 * backend left out) is exported all the same, but the export fails and
 * the temporary file is kept under its name instead of replacing FILE
 * (cli_outfile_keep), unless --allow-partial (docs/CLI.md, "Incomplete
 * listings").
 *
 * Tar is written and read by libarchive, never by hand.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "json.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ==================== export ==================== */

struct export_member {
    struct archive *a;
    struct cli_http *h;
    const char *hex;
    struct cas_hash *hash;
    bool header_written;
    uint64_t written;
    time_t mtime;
};

/* Writes the member's header once the answer's size is known. */
static int export_header(struct export_member *m, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, m->hex);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0444);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_mtime(e, m->mtime, 0);
    int r = archive_write_header(m->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK) {
        snprintf(m->h->sink_err, sizeof(m->h->sink_err), "writing the archive: %s",
                 archive_error_string(m->a));
        return -EIO;
    }
    m->header_written = true;
    return 0;
}

static int export_sink(void *cls, const char *data, size_t len)
{
    struct export_member *m = cls;
    if (!m->header_written) {
        if (m->h->content_length == UINT64_MAX) {
            snprintf(m->h->sink_err, sizeof(m->h->sink_err),
                     "the server sent object %s without a Content-Length", m->hex);
            return -EPROTO;
        }
        int rc = export_header(m, m->h->content_length);
        if (rc < 0)
            return rc;
    }
    if (m->written + len > m->h->content_length) {
        snprintf(m->h->sink_err, sizeof(m->h->sink_err),
                 "the server sent more bytes of %s than it announced", m->hex);
        return -EPROTO;
    }
    cas_hash_update(m->hash, data, len);
    if (archive_write_data(m->a, data, len) != (la_ssize_t)len) {
        snprintf(m->h->sink_err, sizeof(m->h->sink_err), "writing the archive: %s",
                 archive_error_string(m->a));
        return -EIO;
    }
    m->written += len;
    return 0;
}

/*
 * Streams one object into the archive. Returns 0 when written, 1 when the
 * object is not (or no longer) stored, or a negative errno with a message
 * in err when the archive is now unusable.
 */
static int export_one(struct cli_client *c, struct archive *a, const struct cas_hash_algo *algo,
                      const char *hex, struct cli_progress *p, uint64_t *bytes, char *err,
                      size_t errlen)
{
    char path[CAS_MAX_HEX + 16];
    snprintf(path, sizeof(path), "/objects/%s", hex);
    struct cli_http h;
    cli_http_init(&h, "GET", path);
    struct export_member m = {.a = a, .h = &h, .hex = hex, .mtime = time(NULL)};
    if (!(m.hash = cas_hash_new(algo))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h.sink = export_sink;
    h.sink_cls = &m;
    h.progress = p;
    int rc = cli_http_do(c, &h, err, errlen);
    if (rc == 0 && h.status == 404 && !m.header_written) {
        rc = 1;
    } else if (rc == 0 && h.status / 100 != 2) {
        char why[CLI_ERR_MAX];
        cli_http_error_text(h.status, h.resp.data, why, sizeof(why));
        snprintf(err, errlen, "GET %s: %s", hex, why);
        rc = -EIO;
    } else if (rc == 0) {
        if (!m.header_written) /* an empty object: no body to start the member */
            rc = h.content_length == 0 || h.content_length == UINT64_MAX
                     ? export_header(&m, 0)
                     : (snprintf(err, errlen, "GET %s: body missing", hex), -EPROTO);
        if (rc == 0 && m.written != (h.content_length == UINT64_MAX ? 0 : h.content_length)) {
            snprintf(err, errlen, "GET %s: %" PRIu64 " of %" PRIu64 " bytes came", hex, m.written,
                     h.content_length);
            rc = -EPROTO;
        }
        unsigned char d[CAS_MAX_DIGEST];
        char got[CAS_MAX_HEX + 1];
        cas_hash_final(m.hash, d);
        cas_hex_encode(d, algo->digest_len, got);
        if (rc == 0 && strcmp(got, hex) != 0) {
            snprintf(err, errlen, "object %s came back with bytes whose digest is %s", hex, got);
            rc = -EIO;
        }
        if (rc == 0)
            *bytes += m.written;
    } else if (m.header_written) {
        snprintf(err + strlen(err), errlen - strlen(err), " (in the middle of %s)", hex);
    }
    cas_hash_free(m.hash);
    cli_http_free(&h);
    return rc;
}

/* Spools the listing (GET /objects) into f: "<key> <size>\n" lines. */
static int spool_write(void *cls, const char *data, size_t len)
{
    return fwrite(data, 1, len, cls) == len ? 0 : -EIO;
}

static const struct cli_usage_text export_usage = {
    "export [KEY...] [-o FILE] [--allow-partial]",
    "Writes the objects (every live one when no KEY is given) as a tar stream\n"
    "to stdout or FILE, one member per object named by its key. Each object\n"
    "is checked against its key on the way; objects removed meanwhile are\n"
    "skipped, but a KEY given that is not stored fails the export (exit 1,\n"
    "FILE left as it was). Restore with `ca-cas import`. When a balancer's listing left a\n"
    "backend out, the objects listed are still written, but the export fails\n"
    "(exit 1) and FILE is not replaced (the partial archive is kept beside it)\n"
    "unless --allow-partial.",
};

int cmd_export(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *out_path = NULL;
    bool allow_partial = false;
    const struct cli_opt opts[] = {
        {"output", 'o', CLI_OPT_STRING, &out_path, "FILE", "write the archive to FILE"},
        {"allow-partial", 0, CLI_OPT_FLAG, &allow_partial, NULL,
         "accept a listing that left a backend out: replace FILE, warn, exit 0"},
    };
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("export", &export_usage, opts, 2, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    char err[CLI_ERR_MAX] = "";
    /* Every key is checked before anything is written. */
    char(*hexes)[CAS_MAX_HEX + 1] = calloc((size_t)npos + 1, sizeof(*hexes));
    if (!hexes) {
        free(pos);
        return CLI_EXIT_FAIL;
    }
    for (int i = 0; i < npos; i++) {
        struct cas_key k;
        if (cli_parse_key(pos[i], strlen(pos[i]), &k, hexes[i], err, sizeof(err)) < 0) {
            cli_error("export: %s", err);
            free(hexes);
            free(pos);
            return CLI_EXIT_USAGE;
        }
    }
    /* With -o FILE the archive is written beside it under a temporary name
     * and renamed over FILE only once complete and synced: a failed export
     * leaves an earlier archive of that name as it was. A device or FIFO
     * (a tape, a pipe to a reader, /dev/stdout) is written into as it is,
     * never replaced (outfile.c). */
    struct cli_outfile out = {.fd = -1};
    int fd = STDOUT_FILENO;
    if (out_path) {
        if (cli_outfile_open(&out, out_path, err, sizeof(err)) < 0) {
            cli_error("export: %s", err);
            free(hexes);
            free(pos);
            return CLI_EXIT_FAIL;
        }
        fd = out.fd;
    }
    if ((!out_path || out.is_stdout) && isatty(STDOUT_FILENO)) {
        cli_error("export: will not write a tar stream to a terminal (redirect it, or -o FILE)");
        free(hexes);
        free(pos);
        return CLI_EXIT_USAGE;
    }
    struct cli_client *c = NULL;
    const struct cas_hash_algo *algo = NULL;
    FILE *list = NULL;
    struct archive *a = NULL;
    uint64_t total = 0, count = 0, bytes = 0, skipped = 0;
    /* Backends the listing left out (X-CAS-Backends-Skipped): the archive
     * then cannot be every live object, whatever else goes well. */
    int left_out = 0;
    char partial[CLI_ERR_MAX] = "";
    int rc = cli_client_new(ctx, &c, err, sizeof(err));
    if (rc == 0)
        rc = cli_client_algo(c, &algo, err, sizeof(err));
    /* The work list: keys from the operands (checked before anything is
     * written), or the server's listing. Sizes are for the progress bar. */
    if (rc == 0 && !(list = tmpfile())) {
        snprintf(err, sizeof(err), "cannot create a temporary file: %s", strerror(errno));
        rc = -errno;
    }
    for (int i = 0; rc == 0 && i < npos; i++)
        fprintf(list, "%s 0\n", hexes[i]);
    if (rc == 0 && npos == 0) {
        struct cli_http h;
        cli_http_init(&h, "GET", "/objects?state=live");
        h.sink = spool_write;
        h.sink_cls = list;
        rc = cli_http_do(c, &h, err, sizeof(err));
        if (rc == 0 && h.status != 200) {
            char why[CLI_ERR_MAX];
            cli_http_error_text(h.status, h.resp.data, why, sizeof(why));
            snprintf(err, sizeof(err), "listing the objects: %s", why);
            rc = -EIO;
        }
        if (rc == 0)
            left_out = cli_listing_skipped(&h, partial, sizeof(partial));
        cli_http_free(&h);
    }
    if (rc == 0 && (fflush(list) != 0 || fseek(list, 0, SEEK_SET) != 0)) {
        snprintf(err, sizeof(err), "temporary file: %s", strerror(errno));
        rc = -EIO;
    }
    char line[256];
    while (rc == 0 && fgets(line, sizeof(line), list)) {
        char *sp = strchr(line, ' ');
        if (sp)
            total += strtoull(sp + 1, NULL, 10);
    }
    if (rc == 0 && fseek(list, 0, SEEK_SET) != 0)
        rc = -EIO;
    if (rc == 0) {
        a = archive_write_new();
        if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_open_fd(a, fd) != ARCHIVE_OK) {
            snprintf(err, sizeof(err), "cannot start the archive: %s",
                     a ? archive_error_string(a) : "out of memory");
            rc = -EIO;
        }
    }
    struct cli_progress p;
    cli_progress_start(&p, ctx->progress, "export", total, true);
    while (rc == 0 && fgets(line, sizeof(line), list)) {
        size_t klen = strcspn(line, " \n");
        line[klen] = '\0';
        if (klen != algo->hex_len) {
            snprintf(err, sizeof(err), "the server listed a malformed key \"%.80s\"", line);
            rc = -EPROTO;
            break;
        }
        rc = export_one(c, a, algo, line, &p, &bytes, err, sizeof(err));
        if (rc == 1) {
            skipped++;
            if (npos > 0) /* asked for by name: say it */
                cli_error("export: %s: not found (skipped)", line);
            rc = 0;
        } else if (rc == 0) {
            count++;
        }
    }
    cli_progress_end(&p);
    if (a) {
        if (rc == 0 && archive_write_close(a) != ARCHIVE_OK) {
            snprintf(err, sizeof(err), "finishing the archive: %s", archive_error_string(a));
            rc = -EIO;
        }
        archive_write_free(a);
    }
    bool kept = out_path && out.tmp; /* FILE is replaced only on success */
    /* An archive of an incomplete listing is finished (every object listed
     * is in it) but does not replace FILE: an earlier, complete backup of
     * that name must not give way to one that lacks objects. It stays
     * beside FILE under its temporary name, synced, for whoever wants what
     * could be had. --allow-partial takes it as FILE. */
    bool withhold = rc == 0 && left_out && !allow_partial;
    /* A KEY given by name that is not stored fails the export, and a failed
     * export leaves FILE as it was ("Output files"): the archive lacks what
     * was asked for, so it must not replace an earlier backup. Its temporary
     * file is removed as on any other failure (the archive is finished and
     * valid on stdout, a FIFO or a device; only the exit status says it). */
    bool named_missing = rc == 0 && npos > 0 && skipped > 0;
    char *kept_as = NULL;
    if (out_path) {
        if (rc == 0 && named_missing) {
            cli_outfile_abort(&out); /* removes only the temporary file */
        } else if (rc == 0 && withhold && kept) {
            if (cli_outfile_keep(&out, &kept_as, err, sizeof(err)) < 0)
                rc = -EIO;
        } else if (rc == 0 && cli_outfile_commit(&out, err, sizeof(err)) < 0) {
            rc = -EIO;
        } else if (rc < 0) {
            cli_outfile_abort(&out); /* removes only the temporary file */
        }
    }
    if (list)
        fclose(list);
    cli_client_free(c);
    free(hexes);
    free(pos);
    if (rc < 0) {
        if (kept && !out.renamed)
            cli_error("export: %s; %s was left as it was", err, out_path);
        else
            cli_error("export: %s; the archive is incomplete and must not be used", err);
        if (left_out) /* the listing was short too: say it as well */
            cli_error("export: %s", partial);
        return CLI_EXIT_FAIL;
    }
    if (ctx->json) {
        struct cas_buf j;
        cas_buf_init(&j);
        cas_buf_printf(&j, "{\"exported\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"skipped\":%" PRIu64,
                       count, bytes, skipped);
        if (left_out) /* only then: the summary of a whole export is as before */
            cas_buf_printf(&j, ",\"complete\":false,\"backends_skipped\":%d", left_out);
        if (kept_as) {
            cas_buf_puts(&j, ",\"kept\":");
            cas_json_escape(&j, kept_as);
        }
        cas_buf_puts(&j, "}");
        fprintf(stderr, "%s\n", j.data ? j.data : "{}");
        cas_buf_free(&j);
    } else {
        fprintf(stderr, "export: %" PRIu64 " objects, %" PRIu64 " bytes; %" PRIu64 " skipped%s\n",
                count, bytes, skipped, left_out ? "; PARTIAL: not every live object" : "");
    }
    if (left_out && allow_partial) {
        cli_warning("export: %s; the archive holds only the %" PRIu64
                    " objects listed (accepted: --allow-partial)",
                    partial, count);
    } else if (left_out && kept_as) {
        cli_error("export: %s; %s was left as it was, and the %" PRIu64
                  " objects listed were written to %s (an incomplete backup)" CLI_PARTIAL_HINT,
                  partial, out_path, count, kept_as);
    } else if (left_out) {
        cli_error("export: %s; the archive written holds only the %" PRIu64
                  " objects listed and must not be taken for a full backup" CLI_PARTIAL_HINT,
                  partial, count);
    }
    if (named_missing && kept)
        cli_error("export: %" PRIu64 " KEY(s) given are not stored; %s was left as it was", skipped,
                  out_path);
    free(kept_as);
    if (withhold || named_missing)
        return CLI_EXIT_FAIL;
    return npos > 0 && skipped ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ==================== import ==================== */

/* One member's bytes on their way to the server, hashed as they pass. */
struct import_body {
    struct archive *a;
    struct cas_hash *hash;
    int err; /* errno-style, with the archive's message in msg */
    char msg[512];
};

static ssize_t import_read(void *cls, char *buf, size_t max)
{
    struct import_body *b = cls;
    la_ssize_t n = archive_read_data(b->a, buf, max);
    if (n < 0) {
        snprintf(b->msg, sizeof(b->msg), "%s", archive_error_string(b->a));
        b->err = EIO;
        return -EIO;
    }
    cas_hash_update(b->hash, buf, (size_t)n);
    return n;
}

/*
 * Reads what the server did not take of the member (it answers "already
 * stored" before the body) and tells whether the whole member hashes to
 * key: 1 yes, 0 no, negative errno when the archive cannot be read.
 */
static int import_member_matches(struct import_body *b, const struct cas_key *key)
{
    static char buf[1 << 16];
    la_ssize_t n;
    while ((n = import_read(b, buf, sizeof(buf))) > 0)
        ;
    if (n < 0)
        return -EIO;
    unsigned char d[CAS_MAX_DIGEST];
    cas_hash_final(b->hash, d);
    return memcmp(d, key->digest, key->algo->digest_len) == 0;
}

static const struct cli_usage_text import_usage = {
    "import [FILE]",
    "Stores every regular member of a tar stream (FILE, or stdin when none or\n"
    "\"-\"; compressed archives too) under the key its name gives. The server\n"
    "checks each against its key. Prints what was stored, skipped (already\n"
    "stored, or not a regular file) and refused (a name that is not a key, or\n"
    "bytes that do not match it); exits 1 when anything was refused.",
};

int cmd_import(int argc, char **argv, const struct cli_ctx *ctx)
{
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("import", &import_usage, NULL, 0, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    if (npos > 1) {
        free(pos);
        cli_error("import: takes one FILE (see ca-cas import --help)");
        return CLI_EXIT_USAGE;
    }
    const char *src = npos == 1 && strcmp(pos[0], "-") != 0 ? pos[0] : NULL;
    char name[300];
    snprintf(name, sizeof(name), "%s", src ? src : "stdin");
    free(pos);

    char err[CLI_ERR_MAX] = "";
    int fd = STDIN_FILENO;
    struct stat st;
    if (src && (fd = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        cli_error("import: cannot open %s: %s", name, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error("import: %s is a directory, not an archive", name);
        if (fd != STDIN_FILENO)
            close(fd);
        return CLI_EXIT_FAIL;
    }
    struct cli_client *c = NULL;
    const struct cas_hash_algo *algo = NULL;
    int rc = cli_client_new(ctx, &c, err, sizeof(err));
    if (rc == 0)
        rc = cli_client_algo(c, &algo, err, sizeof(err));
    struct archive *a = archive_read_new();
    if (rc == 0 && (!a || archive_read_support_filter_all(a) != ARCHIVE_OK ||
                    archive_read_support_format_tar(a) != ARCHIVE_OK ||
                    archive_read_open_fd(a, fd, 1 << 20) != ARCHIVE_OK)) {
        snprintf(err, sizeof(err), "%s is not a readable tar archive: %s", name,
                 a ? archive_error_string(a) : "out of memory");
        rc = -EINVAL;
    }
    uint64_t stored = 0, skipped = 0, refused = 0, bytes = 0;
    struct cli_progress p;
    cli_progress_start(&p, ctx->progress, "import", S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0,
                       true);
    struct archive_entry *e;
    while (rc == 0) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            snprintf(err, sizeof(err), "reading %s: %s", name, archive_error_string(a));
            rc = -EIO;
            break;
        }
        const char *path = archive_entry_pathname(e);
        path = path ? path : "";
        if (archive_entry_filetype(e) != AE_IFREG) {
            if (archive_entry_filetype(e) != AE_IFDIR)
                cli_error("import: %s: not a regular file (skipped)", path);
            skipped++;
            continue;
        }
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        struct cas_key k = {0};
        char hex[CAS_MAX_HEX + 1], kerr[CLI_ERR_MAX] = "";
        if (cli_parse_key(base, strlen(base), &k, hex, kerr, sizeof(kerr)) < 0 || k.algo != algo) {
            cli_error("import: %s: refused: %s", path,
                      k.algo != algo && !kerr[0] ? "a key of another hash algorithm" : kerr);
            refused++;
            continue;
        }
        if (!archive_entry_size_is_set(e)) {
            cli_error("import: %s: refused: the member has no size", path);
            refused++;
            continue;
        }
        char url[CAS_MAX_HEX + 16];
        snprintf(url, sizeof(url), "/objects/%s", hex);
        struct import_body body = {.a = a, .hash = cas_hash_new(algo)};
        if (!body.hash) {
            snprintf(err, sizeof(err), "out of memory");
            rc = -ENOMEM;
            break;
        }
        struct cli_http h;
        cli_http_init(&h, "PUT", url);
        h.body_read = import_read;
        h.body_read_cls = &body;
        h.body_size = (uint64_t)archive_entry_size(e);
        rc = cli_http_do(c, &h, err, sizeof(err));
        if (body.err) {
            snprintf(err, sizeof(err), "reading %s in %s: %s", path, name, body.msg);
            rc = -EIO;
        } else if (rc == 0 && h.status == 201) {
            stored++;
            bytes += h.body_size;
        } else if (rc == 0 && h.status == 200) {
            /* Already stored, so the server did not need the body: check
             * it here, so that a tampered member is reported all the same
             * (the stored copy is untouched either way). */
            int m = import_member_matches(&body, &k);
            if (m < 0) {
                snprintf(err, sizeof(err), "reading %s in %s: %s", path, name, body.msg);
                rc = -EIO;
            } else if (m == 0) {
                cli_error("import: %s: refused: its bytes do not match its name (the stored "
                          "object is untouched)",
                          path);
                refused++;
            } else {
                skipped++;
            }
        } else if (rc == 0 && h.status == 422) {
            cli_error("import: %s: refused: its bytes do not match its name", path);
            refused++;
        } else if (rc == 0) {
            char why[CLI_ERR_MAX];
            cli_http_error_text(h.status, h.resp.data, why, sizeof(why));
            snprintf(err, sizeof(err), "PUT %s: %s", hex, why);
            rc = -EIO;
        }
        cli_progress_add(&p, h.body_size);
        cas_hash_free(body.hash);
        cli_http_free(&h);
    }
    cli_progress_end(&p);
    if (a)
        archive_read_free(a);
    if (fd != STDIN_FILENO)
        close(fd);
    cli_client_free(c);
    if (ctx->json)
        printf("{\"stored\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"skipped\":%" PRIu64
               ",\"refused\":%" PRIu64 "}\n",
               stored, bytes, skipped, refused);
    else
        printf("import: %" PRIu64 " stored (%" PRIu64 " bytes), %" PRIu64 " skipped, %" PRIu64
               " refused\n",
               stored, bytes, skipped, refused);
    if (rc < 0) {
        cli_error("import: %s", err);
        return CLI_EXIT_FAIL;
    }
    return refused ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
