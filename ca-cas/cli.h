/*
 * cli.h - the insides of the ca-cas command-line tool, shared by its command
 * files and reachable from the unit tests.
 *
 * main.c parses the global options into a struct cli_ctx and calls one
 * cmd_* function per command. A command returns the process exit status
 * (CLI_EXIT_*) instead of exiting, so that every command stays callable from
 * a test. Around the commands sit a few modules:
 *
 *   args.c      option parsing for each command (cli_args_*), --help text
 *   client.c    libcurl wrapper: one keep-alive connection, the bearer
 *               token, streaming bodies both ways, server error messages
 *   progress.c  the progress bar drawn on stderr when it is a terminal
 *   util.c      server URL, key and size parsing, human-readable figures
 *   jsonview.c  JSON text rendered as indented "name: value" lines
 *   stats.c     latency percentiles for bench
 */
#ifndef CAS_CLI_H
#define CAS_CLI_H

#include "buf.h"
#include "hash.h"
#include "key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1  /* an object was not found, or an operation failed */
#define CLI_EXIT_USAGE 2 /* bad command line */

#define CLI_DEFAULT_SERVER "http://127.0.0.1:6001"
#define CLI_URL_MAX 1024
#define CLI_ERR_MAX 1024

/* What every command gets: the global options. */
struct cli_ctx {
    char server[CLI_URL_MAX]; /* base URL, no trailing '/' */
    char *token;              /* bearer token, NULL when none */
    /* --cacert: PEM CA bundle that an https:// server must chain to, read
     * whole (NULL: libcurl's system store). */
    char *cacert_pem;
    size_t cacert_len;
    bool json;                /* --json: print JSON instead of text */
    bool progress;            /* draw progress bars (stderr is a terminal) */
};

/* ---- commands (one exit status each; argv[0] is the command name) ---- */

int cmd_put(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_get(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_stat(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_missing(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_rm(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_list(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_begin_gc(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_mark_gc(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_end_gc(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_compact(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_capacity(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_status(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_bench(int argc, char **argv, const struct cli_ctx *ctx);
/* Backup: a tar stream of objects named by key, and back (archive.c,
 * libarchive). */
int cmd_export(int argc, char **argv, const struct cli_ctx *ctx);
int cmd_import(int argc, char **argv, const struct cli_ctx *ctx);
/* Copies missing home replicas, then removes copies outside the home;
 * lives in rebalance.c (engine: common/rebalance.h). */
int cmd_rebalance(int argc, char **argv, const struct cli_ctx *ctx);
/* Offline check of a storaged directory; lives in fsck.c (links cas_store). */
int cmd_fsck(int argc, char **argv, const struct cli_ctx *ctx);

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv, const struct cli_ctx *ctx);
    const char *summary; /* one line for the tool's --help */
};

/* The command table, in the order --help lists it; NULL-terminated. */
extern const struct cli_command cli_commands[];
const struct cli_command *cli_command_find(const char *name);
/* The tool's --help text. */
void cli_usage(FILE *f);

/* The global options as given, before defaults and the environment. */
struct cli_globals {
    const char *server;
    const char *token_file;
    const char *cacert;
    bool json;
    bool help;
    bool version;
};

/*
 * Takes the global options out of argv wherever they stand (up to a "--"
 * after the command); the rest, from the command name on, goes to rest
 * (argc slots). -EINVAL with a message on an unknown option before the
 * command or a missing value.
 */
int cli_globals_parse(int argc, char **argv, struct cli_globals *g, char **rest, int *nrest,
                      char *err, size_t errlen);
/* Fills ctx: server from --server, $CA_CAS_SERVER or the default; token
 * from --token-file, $CA_CAS_TOKEN_FILE or $CAS_TOKEN_FILE; CA bundle from
 * --cacert or $CA_CAS_CACERT. */
int cli_ctx_setup(const struct cli_globals *g, struct cli_ctx *ctx, char *err, size_t errlen);

/* Prints "ca-cas: <message>" on stderr; with --json (cli_json_errors),
 * {"error": "<message>"} instead. */
extern bool cli_json_errors;
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ca-cas: warning: <message>"; with --json, {"warning": "<message>"}. */
void cli_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- args.c: a command's options ---- */

enum cli_opt_type {
    CLI_OPT_FLAG,     /* bool */
    CLI_OPT_STRING,   /* const char * */
    CLI_OPT_SIZE,     /* uint64_t, K/M/G/T suffixes */
    CLI_OPT_UINT,     /* uint64_t, plain number */
    CLI_OPT_DURATION, /* double seconds: "10", "1.5s", "2m", "1h", "250ms" */
};

struct cli_opt {
    const char *name; /* long name, without "--" */
    char short_name;  /* e.g. 'o' for -o, 0 for none */
    enum cli_opt_type type;
    void *out;
    const char *arg; /* value name in --help; NULL for flags */
    const char *help;
};

/* How a command describes itself for --help. */
struct cli_usage_text {
    const char *usage; /* "get KEY... [-o FILE] [--offset N] [--size N]" */
    const char *about; /* a paragraph, may hold newlines */
};

/*
 * Parses argv[1..argc) against opts: options may come before, between or
 * after the operands; "--" ends the options; "-" is an operand. Operands
 * are stored in order in pos (argc slots) and counted in *npos. Returns 0,
 * 1 when --help/-h was given, or -EINVAL with a message in err.
 */
int cli_args_parse(const struct cli_opt *opts, size_t n, int argc, char **argv, char **pos,
                   int *npos, char *err, size_t errlen);
void cli_args_usage(FILE *f, const char *cmd, const struct cli_usage_text *u,
                    const struct cli_opt *opts, size_t n);
/*
 * What commands call: parses, prints help or the usage error. Returns 0 to
 * go on, or -1 with *exit_code set (0 after --help, 2 on a usage error).
 * pos must hold argc pointers.
 */
int cli_args_command(const char *cmd, const struct cli_usage_text *u, const struct cli_opt *opts,
                     size_t n, int argc, char **argv, char **pos, int *npos, int *exit_code);

/* ---- util.c ---- */

/*
 * Turns a --server value into a base URL: "host:port" means http, a
 * trailing '/' is dropped, schemes other than http and https are refused.
 */
int cli_server_url(const char *in, char *out, size_t outlen, char *err, size_t errlen);
/* Reads a token file whole or refuses it (cas_token_read, common/token.h). */
int cli_read_token(const char *path, char **token, char *err, size_t errlen);
/*
 * Parses a key given by a user: any algorithm the tool knows, told apart by
 * prefix or length. Fills out (lowercase hex in hex, NUL-terminated).
 */
int cli_parse_key(const char *s, size_t len, struct cas_key *out, char *hex, char *err,
                  size_t errlen);
/* "10", "1.5s", "250ms", "2m", "1h" into seconds. */
int cli_parse_duration(const char *s, double *out);
/* 1536 -> "1.5 KiB"; below 1024 "123 B". */
void cli_human_bytes(uint64_t n, char *out, size_t outlen);
/* Seconds as "3d 4h", "2h 5m", "1m 30s", "12.3s". */
void cli_human_duration(double s, char *out, size_t outlen);
/* Monotonic seconds. */
double cli_now(void);

/* ---- stats.c ---- */

/* Sorts v in place (ascending). */
void cli_stats_sort(double *v, size_t n);
/* Nearest-rank percentile p (0..100) of sorted v; 0 for an empty set. */
double cli_stats_percentile(const double *sorted, size_t n, double p);
/* "put:get" weights such as "1:1", "30:70", "100:0", or "put" / "get". */
int cli_bench_parse_mix(const char *s, unsigned *put, unsigned *get, char *err, size_t errlen);

/* ---- keylist.c: keys in bulk, in batches ---- */

/* Takes one batch: body is the keys, one per line (lowercase hex). */
typedef int (*cli_keylist_fn)(void *cls, const char *body, size_t len, size_t count, char *err,
                              size_t errlen);

struct cli_keylist {
    struct cas_buf batch;
    size_t count; /* keys in the batch */
    size_t max;   /* keys per batch */
    uint64_t total;
    cli_keylist_fn fn;
    void *cls;
};

void cli_keylist_init(struct cli_keylist *kl, size_t max, cli_keylist_fn fn, void *cls);
void cli_keylist_free(struct cli_keylist *kl);
/* Keys from operands; a bad one fails with -EINVAL naming it. */
int cli_keylist_add_args(struct cli_keylist *kl, char **keys, int n, char *err, size_t errlen);
/* Keys from a stream, one per line (first word of each; blank lines skipped);
 * a bad one fails with -EINVAL naming name and the line number. */
int cli_keylist_add_stream(struct cli_keylist *kl, FILE *f, const char *name, char *err,
                           size_t errlen);
/* Hands the last, partial batch on. */
int cli_keylist_flush(struct cli_keylist *kl, char *err, size_t errlen);

/* ---- jsonview.c ---- */

/*
 * Renders a JSON text as indented "name: value" lines, arrays as "- "
 * items; numbers whose member names speak of bytes get a human form
 * appended. -EINVAL with a message when json does not parse.
 */
int cli_jsonview(const char *json, struct cas_buf *out, char *err, size_t errlen);

/* ---- outfile.c: -o FILE without losing FILE on failure ---- */

/* An output file being written; see outfile.c for the rule by file type. */
struct cli_outfile {
    int fd;           /* write here */
    const char *name; /* as the user gave it */
    char *target;     /* the regular file replaced at commit (symlinks resolved) */
    char *tmp;        /* target.partial-XXXXXX, NULL when written straight in */
    bool is_stdout;   /* "-" or the same file as stdout: fd is STDOUT_FILENO */
    bool existed;     /* target was there: its mode and owner are kept */
    bool renamed;     /* commit got as far as the rename (only the directory
                       * fsync can have failed after it) */
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

/* Opens name for writing before any request is made: a temporary file
 * beside a regular (or absent) name, the file itself for a device or
 * FIFO, stdout for "-" or /dev/stdout. Refuses a directory and a dangling
 * symlink. Returns 0 or -errno with err filled; on error nothing is left. */
int cli_outfile_open(struct cli_outfile *o, const char *name, char *err, size_t errlen);
/* Success: fsyncs and closes the temporary file, renames it over the
 * target and fsyncs the directory (SPEC, Durability). Returns 0 or -errno
 * (the temporary file is then removed, the target untouched, unless only
 * the directory fsync failed). */
int cli_outfile_commit(struct cli_outfile *o, char *err, size_t errlen);
/* Failure: closes, removes the temporary file only; the name the user gave
 * (file, link, device, FIFO) is left as it was. */
void cli_outfile_abort(struct cli_outfile *o);
/* Neither: the temporary file beside FILE (there must be one) is fsynced,
 * closed and left under its name, which *kept gets (free it); FILE is left
 * as it was (export of an incomplete listing). Returns 0, or -errno with
 * err filled (the temporary file is then removed, *kept NULL). */
int cli_outfile_keep(struct cli_outfile *o, char **kept, char *err, size_t errlen);

/* ---- progress.c ---- */

struct cli_progress {
    bool enabled;
    bool bytes; /* units: bytes, else items */
    const char *label;
    uint64_t total; /* 0: unknown */
    uint64_t done;
    double start;
    double last_draw;
    bool drawn;
};

void cli_progress_start(struct cli_progress *p, bool enabled, const char *label, uint64_t total,
                        bool bytes);
void cli_progress_set(struct cli_progress *p, uint64_t done);
void cli_progress_add(struct cli_progress *p, uint64_t n);
/* Clears the bar's line. */
void cli_progress_end(struct cli_progress *p);
/* The bar as text, without the leading '\r'; for tests and for drawing. */
void cli_progress_format(const struct cli_progress *p, double now, int width, char *out,
                         size_t outlen);

/* ---- client.c: HTTP to the server ---- */

struct cli_client;

/* One request. Set it up with cli_http_init, then the fields wanted. */
struct cli_http {
    const char *method; /* GET, HEAD, PUT, POST, DELETE */
    const char *path;   /* "/objects/..." with any query string */
    const char *range;  /* "a-b" for Range: bytes=a-b, or NULL */
    const char *content_type;

    /* Request body: memory (body, body_len) or a file descriptor read from
     * body_offset (body_size bytes; UINT64_MAX: until EOF, sent chunked). */
    const char *body;
    size_t body_len;
    int body_fd;
    uint64_t body_offset;
    uint64_t body_size;
    struct cas_hash *body_hash; /* when set, sees every byte sent */
    /* Or a reader: fills buf with up to max bytes of the body_size bytes to
     * send, returns the count (0 only at the end) or a negative errno. The
     * body cannot be rewound then. */
    ssize_t (*body_read)(void *cls, char *buf, size_t max);
    void *body_read_cls;

    /* Response body of a 2xx answer goes to sink (when set); otherwise, and
     * for every error answer, it is kept in resp (bounded). A sink returns
     * 0, or a negative errno with a message in sink_err to abort. */
    int (*sink)(void *cls, const char *data, size_t len);
    void *sink_cls;
    char sink_err[CLI_ERR_MAX];

    struct cli_progress *progress; /* advanced by bytes sent or received */

    /* Results. */
    long status;
    struct cas_buf resp;
    uint64_t content_length; /* UINT64_MAX when not given */
    char location[256];      /* Location header, if any */
    /* A balancer's write answer: X-CAS-Copies (durable copies made) and
     * X-CAS-Replicas (copies the cluster keeps); -1 when not sent. */
    int copies;
    int replicas;
    /* A balancer's listing (GET /objects): X-CAS-Backends-Skipped, the
     * backends it left out; -1 when not sent (a storaged: complete),
     * CLI_SKIPPED_UNREADABLE when sent but not a number. Read it through
     * cli_listing_skipped. */
    int backends_skipped;
};
#define CLI_SKIPPED_UNREADABLE (-2)

int cli_client_new(const struct cli_ctx *ctx, struct cli_client **out, char *err, size_t errlen);
void cli_client_free(struct cli_client *c);
const struct cli_ctx *cli_client_ctx(const struct cli_client *c);

void cli_http_init(struct cli_http *h, const char *method, const char *path);
void cli_http_free(struct cli_http *h);
/*
 * Sends the request and takes the answer. Returns 0 once an HTTP answer
 * came (whatever its status), or a negative errno with a message in err
 * when the server could not be reached or the transfer broke (or the sink
 * refused the data).
 */
int cli_http_do(struct cli_client *c, struct cli_http *h, char *err, size_t errlen);
/*
 * What went wrong, in words, for a non-2xx answer: the server's JSON error
 * message when there is one, else the body's first line, else the status
 * reason; always ending in "(HTTP nnn)".
 */
void cli_http_error_text(long status, const char *body, char *out, size_t outlen);
/*
 * The common case: a request with an optional in-memory body whose answer
 * (small, JSON or text) lands in out. Returns 0 on a 2xx, -EIO with the
 * server's message in err otherwise (*status tells which, may be NULL).
 */
int cli_call(struct cli_client *c, const char *method, const char *path, const char *body,
             size_t body_len, struct cas_buf *out, long *status, char *err, size_t errlen);
/*
 * Every command that reads a listing (list, export) asks this once the
 * answer came: 0 when the listing is whole (no X-CAS-Backends-Skipped, or
 * 0); else the number of backends the balancer left out (1 when the header
 * is unreadable) and msg says so (CLI_PARTIAL_HINT says what to do).
 * Such a listing lacks every object held only by those backends: a
 * command must not present it as complete, nor delete, skip or conclude
 * anything from an object's absence in it (docs/CLI.md, "Incomplete
 * listings").
 */
int cli_listing_skipped(const struct cli_http *h, char *msg, size_t msglen);
/* What to do about it, appended to that message when refusing. */
#define CLI_PARTIAL_HINT                                                                           \
    "; bring the backends back (`ca-cas status` names those that are down) and run again, or "     \
    "pass --allow-partial to accept an incomplete listing"
/*
 * The server's hash algorithm, from GET /ring (field "hash"), asked once
 * per client; sha1 when the server does not say.
 */
int cli_client_algo(struct cli_client *c, const struct cas_hash_algo **algo, char *err,
                    size_t errlen);

#endif
