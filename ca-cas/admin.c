/*
 * admin.c - the operator commands of ca-cas: compact (start, then follow
 * GET /compact until it is done, with a progress bar), capacity (the
 * server's figures as labelled lines) and status (the server's /status
 * document made readable).
 */
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_INTERVAL_MS 200

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The operands check shared by the commands that take none. */
static int no_operands(const char *cmd, const struct cli_usage_text *u, const struct cli_opt *opts,
                       size_t n, int argc, char **argv)
{
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command(cmd, u, opts, n, argc, argv, pos, &npos, &code) < 0) {
        free(pos);
        return code;
    }
    if (npos > 0) {
        cli_error("%s: unexpected operand \"%s\" (see ca-cas %s --help)", cmd, pos[0], cmd);
        free(pos);
        return CLI_EXIT_USAGE;
    }
    free(pos);
    return -1;
}

/* Prints a server's JSON answer as it came, one line. */
static void print_json_line(const char *json)
{
    size_t len = strlen(json);
    while (len && (json[len - 1] == '\n' || json[len - 1] == ' ' || json[len - 1] == '\r'))
        len--;
    printf("%.*s\n", (int)len, json);
}

/* GET /capacity's unreclaimed figure; -1 when the server does not tell. */
static int64_t unreclaimed_now(struct cli_client *c)
{
    struct cas_buf b;
    char err[CLI_ERR_MAX];
    uint64_t v;
    cas_buf_init(&b);
    int64_t r = -1;
    if (cli_call(c, "GET", "/capacity", NULL, 0, &b, NULL, err, sizeof(err)) == 0 &&
        cas_json_get_u64(b.data, "unreclaimed", &v) == 0)
        r = (int64_t)v;
    cas_buf_free(&b);
    return r;
}

/* Follows GET /compact until it says running:false; left_out gets what it
 * says about a data file left out for want of room ("" none). */
static int compact_wait(struct cli_client *c, bool progress, uint64_t *done_bytes,
                        char *left_out, size_t left_len, char *err, size_t errlen)
{
    struct cli_progress p;
    cli_progress_start(&p, progress, "compact", 0, true);
    struct cas_buf b;
    cas_buf_init(&b);
    int rc;
    for (;;) {
        rc = cli_call(c, "GET", "/compact", NULL, 0, &b, NULL, err, errlen);
        if (rc < 0)
            break;
        bool running = false;
        uint64_t done = 0, total = 0;
        if (cas_json_get_bool(b.data, "running", &running) < 0) {
            snprintf(err, errlen, "GET /compact: no \"running\" in the answer: %.200s", b.data);
            rc = -EPROTO;
            break;
        }
        cas_json_get_u64(b.data, "done_bytes", &done);
        cas_json_get_u64(b.data, "total_bytes", &total);
        *done_bytes = done;
        if (!running) {
            if (cas_json_get_string(b.data, "left_out", left_out, left_len) < 0)
                left_out[0] = '\0';
            break;
        }
        p.total = total;
        cli_progress_set(&p, done);
        sleep_ms(POLL_INTERVAL_MS);
    }
    cli_progress_end(&p);
    cas_buf_free(&b);
    return rc;
}

static const struct cli_usage_text compact_usage = {
    "compact [--no-wait]",
    "Reclaims the space of removed objects and waits until it is done, showing\n"
    "progress when stderr is a terminal. When a compaction is already running it\n"
    "waits for that one, then starts another. A data file the server left out for\n"
    "want of room (a full disk) is named on stderr, with the bytes it needs.",
};

int cmd_compact(int argc, char **argv, const struct cli_ctx *ctx)
{
    bool no_wait = false;
    const struct cli_opt opts[] = {
        {"no-wait", 0, CLI_OPT_FLAG, &no_wait, NULL, "start it and return at once"},
    };
    int code = no_operands("compact", &compact_usage, opts, 1, argc, argv);
    if (code >= 0)
        return code;
    char err[CLI_ERR_MAX];
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("compact: %s", err);
        return CLI_EXIT_FAIL;
    }
    int64_t before = no_wait ? -1 : unreclaimed_now(c);
    int rc = 0;
    long status = 0;
    uint64_t done = 0;
    char left_out[512] = "";
    bool started = false;
    for (int attempt = 0; attempt < 2 && !started; attempt++) {
        rc = cli_call(c, "POST", "/compact", NULL, 0, NULL, &status, err, sizeof(err));
        if (rc == 0) {
            started = true;
        } else if (status == 409 && !no_wait && attempt == 0) {
            if (!ctx->json)
                fprintf(stderr, "ca-cas: compact: one is already running; waiting for it\n");
            rc = compact_wait(c, ctx->progress, &done, left_out, sizeof(left_out), err,
                              sizeof(err));
            if (rc < 0)
                break;
        } else {
            break;
        }
    }
    if (started && !no_wait)
        rc = compact_wait(c, ctx->progress, &done, left_out, sizeof(left_out), err, sizeof(err));
    if (rc < 0) {
        cli_error("compact: %s", err);
        cli_client_free(c);
        return CLI_EXIT_FAIL;
    }
    int64_t after = no_wait ? -1 : unreclaimed_now(c);
    int64_t reclaimed = before >= 0 && after >= 0 && before > after ? before - after : 0;
    if (ctx->json) {
        printf("{\"started\":true,\"finished\":%s,\"done_bytes\":%llu", no_wait ? "false" : "true",
               (unsigned long long)done);
        if (before >= 0 && after >= 0)
            printf(",\"reclaimed\":%lld,\"unreclaimed\":%lld", (long long)reclaimed,
                   (long long)after);
        if (left_out[0]) {
            struct cas_buf q;
            struct cas_json j;
            cas_buf_init(&q);
            cas_json_init(&j, &q);
            cas_json_string(&j, left_out);
            printf(",\"left_out\":%s", q.data ? q.data : "\"\"");
            cas_buf_free(&q);
        }
        printf("}\n");
    } else if (no_wait) {
        printf("compaction started\n");
    } else {
        char h[32];
        cli_human_bytes((uint64_t)reclaimed, h, sizeof(h));
        if (before >= 0 && after >= 0)
            printf("compaction finished: %lld bytes reclaimed (%s), %lld still unreclaimed\n",
                   (long long)reclaimed, h, (long long)after);
        else
            printf("compaction finished\n");
        if (left_out[0]) /* the disk had no room for some of it */
            fprintf(stderr, "ca-cas: compact: %s\n", left_out);
    }
    cli_client_free(c);
    return CLI_EXIT_OK;
}

static const struct cli_usage_text capacity_usage = {
    "capacity",
    "Prints the server's capacity in bytes, one labelled line each: total,\n"
    "available, unreclaimed (what compact gives back), garbage (what end-gc would\n"
    "remove), objects (a count) and bytes (stored).",
};

int cmd_capacity(int argc, char **argv, const struct cli_ctx *ctx)
{
    int code = no_operands("capacity", &capacity_usage, NULL, 0, argc, argv);
    if (code >= 0)
        return code;
    char err[CLI_ERR_MAX];
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("capacity: %s", err);
        return CLI_EXIT_FAIL;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    int rc = cli_call(c, "GET", "/capacity", NULL, 0, &b, NULL, err, sizeof(err));
    if (rc < 0) {
        cli_error("capacity: %s", err);
    } else if (ctx->json) {
        print_json_line(b.data);
    } else {
        static const char *fields[] = {"total",   "available", "unreclaimed",
                                       "garbage", "objects",   "bytes"};
        for (size_t i = 0; i < 6; i++) {
            uint64_t v;
            if (cas_json_get_u64(b.data, fields[i], &v) < 0) {
                printf("%-12s unknown\n", fields[i]);
                continue;
            }
            char h[32] = "";
            if (strcmp(fields[i], "objects") != 0)
                cli_human_bytes(v, h, sizeof(h));
            printf("%-12s %llu%s%s%s\n", fields[i], (unsigned long long)v, h[0] ? " (" : "", h,
                   h[0] ? ")" : "");
        }
        /* A balancer whose backends did not all answer sums the others. */
        bool partial = false;
        uint64_t up = 0;
        if (cas_json_get_bool(b.data, "partial", &partial) == 0 && partial) {
            cas_json_get_u64(b.data, "backends_up", &up);
            fprintf(stderr,
                    "ca-cas: warning: capacity: partial: only %llu backends answered; the "
                    "figures leave the others out (see --json for their last known figures)\n",
                    (unsigned long long)up);
        }
    }
    cas_buf_free(&b);
    cli_client_free(c);
    return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static const struct cli_usage_text status_usage = {
    "status",
    "Prints the server's status: role, node, uptime, objects, capacity, GC and\n"
    "compaction, and for a balancer each backend with its health.",
};

int cmd_status(int argc, char **argv, const struct cli_ctx *ctx)
{
    int code = no_operands("status", &status_usage, NULL, 0, argc, argv);
    if (code >= 0)
        return code;
    char err[CLI_ERR_MAX];
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("status: %s", err);
        return CLI_EXIT_FAIL;
    }
    struct cas_buf b, out;
    cas_buf_init(&b);
    cas_buf_init(&out);
    int rc = cli_call(c, "GET", "/status", NULL, 0, &b, NULL, err, sizeof(err));
    if (rc == 0 && !ctx->json) {
        cas_buf_printf(&out, "server: %s\n", ctx->server);
        rc = cli_jsonview(b.data, &out, err, sizeof(err));
    }
    if (rc < 0)
        cli_error("status: %s", err);
    else if (ctx->json)
        print_json_line(b.data);
    else
        fwrite(out.data, 1, out.len, stdout);
    /* A balancer with backends down shows their last known figures. */
    uint64_t down = 0;
    if (rc == 0 && cas_json_get_u64(b.data, "backends_down", &down) == 0 && down > 0)
        fprintf(stderr,
                "ca-cas: warning: status: %llu backend%s down; %s figures are the last known "
                "ones (marked stale)\n",
                (unsigned long long)down, down == 1 ? " is" : "s are", down == 1 ? "its" : "their");
    cas_buf_free(&b);
    cas_buf_free(&out);
    cli_client_free(c);
    return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
