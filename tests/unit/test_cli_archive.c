/*
 * test_cli_archive.c - CUnit suite for ca-cas/archive.c (export, import)
 * against a scripted server (fakesrv.h). export writes one tar member per
 * object named by its key, checks every object's bytes against its key on
 * the way and calls the archive unusable when one does not match, skips
 * objects gone meanwhile, and refuses bad keys before it touches the output
 * file. import stores regular members under the key their name gives and
 * refuses names that are not keys and bytes that do not match (also when
 * the server already holds the object and so never saw them). A listing a
 * balancer marks incomplete (X-CAS-Backends-Skipped) fails the export and
 * never replaces -o FILE, unless --allow-partial.
 */
#define _GNU_SOURCE
#include "fakesrv.h"
#include "hash.h"

#include <dirent.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sys/stat.h>

#define K1 "0123456789abcdef0123456789abcdef01234567"
#define EMPTY "da39a3ee5e6b4b0d3255bfef95601890afd80709" /* sha1("") */
#define HELLO "f572d396fae9206628714fb2ce00f72e94f2258f" /* sha1("hello\n") */

static char dir[] = "/tmp/cas-test-archive-XXXXXX";

static const char *path_of(const char *name)
{
    static char p[4][300];
    static int next;
    char *s = p[next++ % 4];
    snprintf(s, 300, "%s/%s", dir, name);
    return s;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* Reads a tar file: member names and contents as "name=content|...". */
static void tar_contents(const char *path, char *out, size_t outlen)
{
    out[0] = '\0';
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    CU_ASSERT_EQUAL_FATAL(archive_read_open_filename(a, path, 10240), ARCHIVE_OK);
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        char data[256] = "";
        la_ssize_t n = archive_read_data(a, data, sizeof(data) - 1);
        if (n > 0)
            data[n] = '\0';
        size_t len = strlen(out);
        snprintf(out + len, outlen - len, "%s=%s|", archive_entry_pathname(e), data);
    }
    archive_read_free(a);
}

/* A tar with the given members: type 'f' file, 'd' directory, 'l' symlink. */
struct member {
    char type;
    const char *name;
    const char *data;
};

static void make_tar(const char *path, const struct member *m, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    CU_ASSERT_EQUAL_FATAL(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_perm(e, 0644);
        if (m[i].type == 'd') {
            archive_entry_set_filetype(e, AE_IFDIR);
        } else if (m[i].type == 'l') {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, "elsewhere");
        } else {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(m[i].data));
        }
        archive_write_header(a, e);
        if (m[i].type == 'f')
            archive_write_data(a, m[i].data, strlen(m[i].data));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void test_export_round_trip(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err, tar[1024];
    const char *file = path_of("all.tar");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 200, HELLO " 6\n" EMPTY " 0\n" K1 " 3\n", 0);
    fake_on("GET", "/objects/" HELLO, 200, "hello\n", 0);
    fake_on("GET", "/objects/" EMPTY, 200, "", 0);
    fake_on("GET", "/objects/" K1, 404, "{\"error\":\"not found\"}", 0); /* removed meanwhile */
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL), CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "export: 2 objects, 6 bytes; 1 skipped"));
    tar_contents(file, tar, sizeof(tar));
    CU_ASSERT_STRING_EQUAL(tar, HELLO "=hello\n|" EMPTY "=|");
    free(out);
    free(err);

    /* And back: both stored (201), the empty one already there (200). */
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("PUT", "/objects/" HELLO, 201, HELLO "\n", 0);
    fake_on("PUT", "/objects/" EMPTY, 200, EMPTY "\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", file, NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(out, "import: 1 stored (6 bytes), 1 skipped, 0 refused\n");
    CU_ASSERT_EQUAL_FATAL(fake.nreqs, 3);
    CU_ASSERT_STRING_EQUAL(fake.reqs[1].body, "hello\n");
    free(out);
    free(err);
}

static void test_export_bad_bytes(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *file = path_of("bad.tar");
    write_file(file, "an earlier archive");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 200, K1 " 6\n", 0);
    fake_on("GET", "/objects/" K1, 200, "hello\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(err, "object " K1 " came back with bytes whose digest is " HELLO));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.tar was left as it was"));
    /* The export failed half-way: the earlier archive of that name is as
     * it was, and no temporary file is left beside it. */
    char *kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        CU_ASSERT_PTR_NULL(strstr(de->d_name, ".partial-"));
    if (d)
        closedir(d);
    free(out);
    free(err);

    /* A listing line that is no key of the server's algorithm. */
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 200, "abc 6\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the server listed a malformed key \"abc\""));
    free(out);
    free(err);

    /* The listing refused. */
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 503, "{\"error\":\"busy\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "listing the objects: busy (HTTP 503)"));
    free(out);
    free(err);
}

static void test_export_named_keys(void)
{
    struct cli_ctx ctx = fake_ctx(true, NULL);
    char *out, *err, tar[1024];
    const char *file = path_of("named.tar");
    write_file(file, "an earlier archive");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects/" HELLO, 200, "hello\n", 0);
    fake_on("GET", "/objects/" K1, 404, "{\"error\":\"not found\"}", 0);
    /* A key asked for by name and not found: said, and exit 1. */
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file,
                            "F572D396FAE9206628714FB2CE00F72E94F2258F", K1, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, K1 ": not found (skipped)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"exported\":1,\"bytes\":6,\"skipped\":1}"));
    /* No listing asked. */
    for (int i = 0; i < fake.nreqs; i++)
        CU_ASSERT_STRING_NOT_EQUAL(fake.reqs[i].path, "/objects");
    /* ...and a failed export leaves FILE as it was (CLI.md "Output files"):
     * an archive without K1 must not replace an earlier backup. */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "left as it was"));
    char *kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    free(out);
    free(err);
    /* All named keys found: FILE is replaced. */
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, HELLO, NULL),
                    CLI_EXIT_OK);
    tar_contents(file, tar, sizeof(tar));
    CU_ASSERT_STRING_EQUAL(tar, HELLO "=hello\n|");
    free(out);
    free(err);
}

static void test_export_bad_key_keeps_file(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *file = path_of("keep.tar");
    write_file(file, "an earlier archive");
    fake_reset();
    CU_ASSERT_EQUAL(
        run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, HELLO, "nokey", NULL),
        CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nokey"));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    /* The file of that name is untouched. */
    char *kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    free(out);
    free(err);
}

static void test_import_refusals(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *file = path_of("mixed.tar");
    const struct member m[] = {
        {'d', "objects/", NULL},
        {'f', "objects/" HELLO, "hello\n"},
        {'f', "objects/notakey", "x"},
        {'f', "objects/" K1, "not K1's bytes"},
        {'f', "objects/" EMPTY, "tampered"},
        {'l', "objects/link", NULL},
        {'f', "objects/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ""},
    };
    make_tar(file, m, sizeof(m) / sizeof(m[0]));
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("PUT", "/objects/" HELLO, 201, HELLO "\n", 0);
    fake_on("PUT", "/objects/" K1, 422, "{\"error\":\"digest mismatch\"}", 0);
    /* Already stored: the server does not read the body; the tool checks. */
    fake_on("PUT", "/objects/" EMPTY, 200, EMPTY "\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", file, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "import: 1 stored (6 bytes), 2 skipped, 4 refused\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "objects/notakey: refused"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "objects/" K1 ": refused: its bytes do not match its name"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "objects/" EMPTY ": refused: its bytes do not match its "
                                       "name (the stored object is untouched)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "objects/link: not a regular file (skipped)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a key of another hash algorithm"));
    free(out);
    free(err);

    /* --json counts. */
    ctx.json = true;
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", file, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "{\"stored\":1,\"bytes\":6,\"skipped\":2,\"refused\":4}\n");
    free(out);
    free(err);
}

static void test_import_bad_input(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *junk = path_of("junk.tar");
    write_file(junk, "this is not a tar archive at all, just some text\n");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", junk, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, junk));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", dir, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory, not an archive"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", "/nonexistent.tar", NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open /nonexistent.tar"));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", junk, junk, NULL),
                    CLI_EXIT_USAGE);
    free(out);
    free(err);
    /* Only the one GET /ring of the junk archive reached the server. */
    for (int i = 0; i < fake.nreqs; i++)
        CU_ASSERT_STRING_EQUAL(fake.reqs[i].method, "GET");

    /* A refusal other than 422 stops the import and is named. */
    const char *one = path_of("one.tar");
    const struct member m[] = {{'f', HELLO, "hello\n"}};
    make_tar(one, m, 1);
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("PUT", "/objects/" HELLO, 507, "{\"error\":\"disk full\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", one, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "import: PUT " HELLO ": disk full (HTTP 507)"));
    free(out);
    free(err);
}

/* No "NAME.partial-*" temporary file is left in the test directory. */
static void assert_no_partial(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        CU_ASSERT_PTR_NULL(strstr(de->d_name, ".partial-"));
    if (d)
        closedir(d);
}

/* Runs export with stdout on fd (a terminal, a full device), stderr
 * captured; returns the exit status. */
static int export_to_fd(int fd, const struct cli_ctx *ctx, char **err)
{
    char *argv[] = {"export", NULL};
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    capture_begin();
    dup2(fd, STDOUT_FILENO);
    int rc = cmd_export(1, argv, ctx);
    char *out;
    capture_end(&out, err);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    free(out);
    return rc;
}

static void test_export_failures_keep_the_file(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *file = path_of("kept.tar");
    /* An object the server fails to send: named, the earlier file kept. */
    write_file(file, "an earlier archive");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 200, HELLO " 6\n", 0);
    fake_on("GET", "/objects/" HELLO, 500, "{\"error\":\"disk on fire\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "export: GET " HELLO ": disk on fire (HTTP 500)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "kept.tar was left as it was"));
    char *kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    assert_no_partial();
    free(out);
    free(err);

    /* -o in a directory that does not exist: nothing asked of the server. */
    fake_reset();
    CU_ASSERT_EQUAL(
        run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", path_of("no/such.tar"), NULL),
        CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "export: cannot create "));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    free(out);
    free(err);

    /* -o naming a directory: refused before anything is asked of the
     * server; the directory stays, no temporary file is made. */
    const char *subdir = path_of("adir");
    CU_ASSERT_EQUAL_FATAL(mkdir(subdir, 0755), 0);
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("GET", "/objects", 200, HELLO " 6\n", 0);
    fake_on("GET", "/objects/" HELLO, 200, "hello\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", subdir, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory"));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    struct stat st;
    CU_ASSERT(stat(subdir, &st) == 0 && S_ISDIR(st.st_mode));
    assert_no_partial();
    rmdir(subdir);
    free(out);
    free(err);
}

static void test_export_stdout_terminal_or_full(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *err;
    /* A terminal: refused before anything is asked. */
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CU_ASSERT_FATAL(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0);
    int tty = open(ptsname(m), O_RDWR | O_NOCTTY);
    CU_ASSERT_FATAL(tty >= 0);
    fake_reset();
    CU_ASSERT_EQUAL(export_to_fd(tty, &ctx, &err), CLI_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "will not write a tar stream to a terminal"));
    CU_ASSERT_EQUAL(fake.nreqs, 0);
    free(err);
    close(tty);
    close(m);

    /* A device that takes nothing: the failure is said, never "N objects". */
    int full = open("/dev/full", O_WRONLY);
    CU_ASSERT_FATAL(full >= 0);
    for (int big = 0; big < 2; big++) {
        /* small: fails when the archive is finished (libarchive writes in
         * 10 KiB blocks); big: fails while a member is written */
        static char data[64 * 1024];
        memset(data, 'z', sizeof(data));
        size_t len = big ? sizeof(data) - 1 : 6;
        data[len] = '\0';
        unsigned char d[CAS_MAX_DIGEST];
        char hex[CAS_MAX_HEX + 1], listing[80], path[64];
        const struct cas_hash_algo *sha1 = cas_hash_by_name("sha1");
        cas_hash_buffer(sha1, data, len, d);
        cas_hex_encode(d, sha1->digest_len, hex);
        snprintf(listing, sizeof(listing), "%s %zu\n", hex, len);
        snprintf(path, sizeof(path), "/objects/%s", hex);
        fake_reset();
        fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
        fake_on("GET", "/objects", 200, listing, 0);
        fake_on("GET", path, 200, data, 0);
        CU_ASSERT_EQUAL(export_to_fd(full, &ctx, &err), CLI_EXIT_FAIL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, big ? "writing the archive" : "finishing the archive"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "the archive is incomplete and must not be used"));
        CU_ASSERT_PTR_NULL(strstr(err, "objects,"));
        free(err);
    }
    close(full);
}

/* A damaged archive: the members before the damage are stored, then the
 * import stops with the archive's name and exits 1. */
static void test_import_damaged_archive(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err;
    const char *file = path_of("damaged.tar");
    const struct member m[] = {{'f', HELLO, "hello\n"}, {'f', K1, "second"}};
    make_tar(file, m, 2);
    /* pax_restricted without extended headers: 512-byte header, one block
     * of data; the second header starts at 1024. Scribble over it. */
    FILE *f = fopen(file, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fseek(f, 1024 + 100, SEEK_SET), 0);
    fputs("garbage garbage garbage garbage garbage", f);
    fclose(f);
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on("PUT", "/objects/" HELLO, 201, HELLO "\n", 0);
    fake_on("PUT", "/objects/" K1, 201, K1 "\n", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_import, &ctx, &out, &err, "import", file, NULL), CLI_EXIT_FAIL);
    CU_ASSERT_STRING_EQUAL(out, "import: 1 stored (6 bytes), 0 skipped, 0 refused\n");
    char want[400];
    snprintf(want, sizeof(want), "import: reading %s: ", file);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    for (int i = 0; i < fake.nreqs; i++)
        CU_ASSERT_STRING_NOT_EQUAL(fake.reqs[i].path, "/objects/" K1);
    free(out);
    free(err);
}

/* The one FILE.partial-* in dir (its path), or "" when none; asserts there
 * is at most one. */
static const char *the_partial(void)
{
    static char found[600];
    found[0] = '\0';
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".partial-")) {
            snprintf(found, sizeof(found), "%s/%s", dir, de->d_name);
            n++;
        }
    if (d)
        closedir(d);
    CU_ASSERT(n <= 1);
    return found;
}

static void script_partial_listing(const char *skipped)
{
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on_header("GET", "/objects", 200, HELLO " 6\n", skipped);
    fake_on("GET", "/objects/" HELLO, 200, "hello\n", 0);
}

/* A balancer's listing that left backends out (X-CAS-Backends-Skipped):
 * what was listed is written, but the export fails and never replaces
 * FILE; --allow-partial takes it with a warning. */
static void test_export_incomplete_listing(void)
{
    struct cli_ctx ctx = fake_ctx(false, NULL);
    char *out, *err, tar[1024];
    const char *file = path_of("partial.tar");
    write_file(file, "an earlier archive");
    script_partial_listing("X-CAS-Backends-Skipped: 2");
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "export: 1 objects, 6 bytes; 0 skipped; PARTIAL"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the server left 2 backends out"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "partial.tar was left as it was"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--allow-partial"));
    char *kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    /* What was listed is kept beside FILE, complete as an archive. */
    const char *partial = the_partial();
    CU_ASSERT_FATAL(partial[0] != '\0');
    CU_ASSERT_PTR_NOT_NULL(strstr(err, partial));
    tar_contents(partial, tar, sizeof(tar));
    CU_ASSERT_STRING_EQUAL(tar, HELLO "=hello\n|");
    unlink(partial);
    free(out);
    free(err);

    /* --json: the summary says it; the error too. */
    ctx.json = true;
    cli_json_errors = true; /* what main() sets for --json */
    script_partial_listing("X-CAS-Backends-Skipped: 1");
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"exported\":1,\"bytes\":6,\"skipped\":0,"
                                       "\"complete\":false,\"backends_skipped\":1,\"kept\":\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "{\"error\":\"export: the listing is incomplete"));
    unlink(the_partial());
    free(out);
    free(err);
    ctx.json = false;
    cli_json_errors = false;

    /* An unreadable count is no count: incomplete all the same. */
    script_partial_listing("X-CAS-Backends-Skipped: many");
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unreadable X-CAS-Backends-Skipped"));
    unlink(the_partial());
    free(out);
    free(err);

    /* --allow-partial: FILE replaced, a warning, exit 0. */
    script_partial_listing("X-CAS-Backends-Skipped: 1");
    CU_ASSERT_EQUAL(
        run_cmd(cmd_export, &ctx, &out, &err, "export", "--allow-partial", "-o", file, NULL),
        CLI_EXIT_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning: export: the listing is incomplete"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(accepted: --allow-partial)"));
    tar_contents(file, tar, sizeof(tar));
    CU_ASSERT_STRING_EQUAL(tar, HELLO "=hello\n|");
    assert_no_partial();
    free(out);
    free(err);

    /* 0 skipped is a whole listing: as before. */
    write_file(file, "an earlier archive");
    script_partial_listing("X-CAS-Backends-Skipped: 0");
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL), CLI_EXIT_OK);
    CU_ASSERT_STRING_EQUAL(err, "export: 1 objects, 6 bytes; 0 skipped\n");
    tar_contents(file, tar, sizeof(tar));
    CU_ASSERT_STRING_EQUAL(tar, HELLO "=hello\n|");
    assert_no_partial();
    free(out);
    free(err);

    /* A failure of its own as well: the failure is said, and the short
     * listing too; nothing kept. */
    write_file(file, "an earlier archive");
    fake_reset();
    fake_on("GET", "/ring", 200, "{\"hash\":\"sha1\"}", 0);
    fake_on_header("GET", "/objects", 200, HELLO " 6\n", "X-CAS-Backends-Skipped: 1");
    fake_on("GET", "/objects/" HELLO, 500, "{\"error\":\"disk on fire\"}", 0);
    CU_ASSERT_EQUAL(run_cmd(cmd_export, &ctx, &out, &err, "export", "-o", file, NULL),
                    CLI_EXIT_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "disk on fire"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "left 1 backend out"));
    kept = slurp(file);
    CU_ASSERT_STRING_EQUAL(kept, "an earlier archive");
    free(kept);
    assert_no_partial();
    free(out);
    free(err);
    unlink(file);
}

int main(void)
{
    if (!mkdtemp(dir) || fake_start() < 0)
        return 1;
    capture_init();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("archive", NULL, NULL);
    CU_add_test(s, "export and import round trip", test_export_round_trip);
    CU_add_test(s, "export: wrong bytes, malformed listing, refused listing",
                test_export_bad_bytes);
    CU_add_test(s, "export: named keys, one not found", test_export_named_keys);
    CU_add_test(s, "export: a bad key leaves -o FILE untouched", test_export_bad_key_keeps_file);
    CU_add_test(s, "import: names, bytes, types refused or skipped", test_import_refusals);
    CU_add_test(s, "import: not an archive, directory, missing file, refusal",
                test_import_bad_input);
    CU_add_test(s, "export: server error, -o unusable: the file kept",
                test_export_failures_keep_the_file);
    CU_add_test(s, "export: stdout a terminal or a full device",
                test_export_stdout_terminal_or_full);
    CU_add_test(s, "import: a damaged archive stops, named", test_import_damaged_archive);
    CU_add_test(s, "export: a listing that left backends out fails, FILE kept",
                test_export_incomplete_listing);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    capture_fini();
    fake_stop();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
