/*
 * gc.c - the garbage-collection cycle from the command line:
 *
 *   id=$(ca-cas begin-gc)          every object marked
 *   ca-cas mark-gc < keep.txt      the ones to keep unmarked, in batches
 *   ca-cas end-gc "$id"            the rest removed
 *
 * mark-gc streams its keys in batches of MARK_BATCH per request, so a kept
 * set of millions of keys costs constant memory on both sides.
 */
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MARK_BATCH 50000 /* about 2 MiB of sha1 keys per request */

/* Prints a JSON reply as it came, or a chosen line of text. */
static void print_reply(const struct cli_ctx *ctx, const char *json, const char *text)
{
    if (ctx->json) {
        size_t len = strlen(json);
        while (len && (json[len - 1] == '\n' || json[len - 1] == ' '))
            len--;
        printf("%.*s\n", (int)len, json);
    } else {
        printf("%s\n", text);
    }
}

/* Runs a command that takes no operand but what argv_max allows. */
static int gc_start(const char *cmd, const struct cli_usage_text *u, const struct cli_opt *opts,
                    size_t nopts, int argc, char **argv, char ***pos, int *npos, int max_pos)
{
    *pos = calloc((size_t)argc + 1, sizeof(**pos));
    int code;
    if (!*pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command(cmd, u, opts, nopts, argc, argv, *pos, npos, &code) < 0)
        return code;
    if (max_pos >= 0 && *npos > max_pos) {
        cli_error("%s: unexpected operand \"%s\" (see ca-cas %s --help)", cmd, (*pos)[max_pos],
                  cmd);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

static const struct cli_usage_text begin_usage = {
    "begin-gc [--id N]",
    "Starts a GC cycle, cancelling any other: every stored object is marked, and\n"
    "what is read, written or marked (mark-gc) before end-gc survives. Prints the\n"
    "cycle's id, for end-gc.",
};

int cmd_begin_gc(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *id = NULL;
    const struct cli_opt opts[] = {
        {"id", 0, CLI_OPT_STRING, &id, "N", "use this cycle id (a number) instead of a new one"},
    };
    char **pos;
    int npos;
    int code = gc_start("begin-gc", &begin_usage, opts, 1, argc, argv, &pos, &npos, 0);
    free(pos);
    if (code >= 0)
        return code;
    char path[96], err[CLI_ERR_MAX];
    if (id) {
        if (!*id || strlen(id) > 20 || strspn(id, "0123456789") != strlen(id)) {
            cli_error("begin-gc: --id \"%s\" is not a number", id);
            return CLI_EXIT_USAGE;
        }
        snprintf(path, sizeof(path), "/gc/begin?id=%s", id);
    } else {
        snprintf(path, sizeof(path), "/gc/begin");
    }
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("begin-gc: %s", err);
        return CLI_EXIT_FAIL;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    int rc = cli_call(c, "POST", path, NULL, 0, &b, NULL, err, sizeof(err));
    char got[64] = "";
    if (rc == 0 && cas_json_get_string(b.data, "id", got, sizeof(got)) < 0) {
        uint64_t n; /* an id sent as a number */
        if (cas_json_get_u64(b.data, "id", &n) == 0)
            snprintf(got, sizeof(got), "%llu", (unsigned long long)n);
    }
    if (rc == 0 && !got[0]) {
        snprintf(err, sizeof(err), "the server's answer has no cycle id: %.200s", b.data);
        rc = -EPROTO;
    }
    if (rc < 0)
        cli_error("begin-gc: %s", err);
    else
        print_reply(ctx, b.data, got);
    cas_buf_free(&b);
    cli_client_free(c);
    return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

struct mark_state {
    struct cli_client *c;
    struct cli_progress progress;
    uint64_t unmarked;
    uint64_t sent;
};

static int mark_batch(void *cls, const char *body, size_t len, size_t count, char *err,
                      size_t errlen)
{
    struct mark_state *m = cls;
    struct cas_buf b;
    cas_buf_init(&b);
    int rc = cli_call(m->c, "POST", "/gc/mark", body, len, &b, NULL, err, errlen);
    uint64_t n = 0;
    /* An answer without the count is not the server's (SPEC: 200
     * {"unmarked":n}): the keys cannot be taken as unmarked. */
    if (rc == 0 && (!b.data || cas_json_get_u64(b.data, "unmarked", &n) < 0)) {
        snprintf(err, errlen,
                 "POST /gc/mark: the answer has no \"unmarked\" count "
                 "(not a ca-cas server?): %.80s",
                 b.data ? b.data : "");
        rc = -EPROTO;
    }
    if (rc == 0)
        m->unmarked += n;
    cas_buf_free(&b);
    m->sent += count;
    cli_progress_set(&m->progress, m->sent);
    return rc;
}

static const struct cli_usage_text mark_usage = {
    "mark-gc [KEY...]",
    "Unmarks the given objects (keys from stdin, one per line, when none are given)\n"
    "so that they survive the current GC cycle. Prints how many were unmarked.",
};

int cmd_mark_gc(int argc, char **argv, const struct cli_ctx *ctx)
{
    char **pos;
    int npos;
    int code = gc_start("mark-gc", &mark_usage, NULL, 0, argc, argv, &pos, &npos, -1);
    if (code >= 0) {
        free(pos);
        return code;
    }
    char err[CLI_ERR_MAX];
    struct mark_state m = {0};
    if (cli_client_new(ctx, &m.c, err, sizeof(err)) < 0) {
        cli_error("mark-gc: %s", err);
        free(pos);
        return CLI_EXIT_FAIL;
    }
    cli_progress_start(&m.progress, ctx->progress, "mark-gc keys", 0, false);
    struct cli_keylist kl;
    cli_keylist_init(&kl, MARK_BATCH, mark_batch, &m);
    int rc = npos ? cli_keylist_add_args(&kl, pos, npos, err, sizeof(err))
                  : cli_keylist_add_stream(&kl, stdin, "stdin", err, sizeof(err));
    if (rc == 0)
        rc = cli_keylist_flush(&kl, err, sizeof(err));
    cli_progress_end(&m.progress);
    if (rc < 0) {
        cli_error("mark-gc: %s (after %llu keys sent, %llu unmarked)", err,
                  (unsigned long long)m.sent, (unsigned long long)m.unmarked);
    } else if (ctx->json) {
        printf("{\"keys\":%llu,\"unmarked\":%llu}\n", (unsigned long long)kl.total,
               (unsigned long long)m.unmarked);
    } else {
        /* The server's count is of copies: through a balancer, one per
         * backend that held the key (docs/API.md POST /gc/mark). */
        printf("%llu keys sent, %llu copies unmarked\n", (unsigned long long)kl.total,
               (unsigned long long)m.unmarked);
    }
    cli_keylist_free(&kl);
    cli_client_free(m.c);
    free(pos);
    return rc == -EINVAL ? CLI_EXIT_USAGE : rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static const struct cli_usage_text end_usage = {
    "end-gc ID",
    "Ends GC cycle ID (as begin-gc printed it): every object still marked is\n"
    "removed. Compaction gives the space back.",
};

int cmd_end_gc(int argc, char **argv, const struct cli_ctx *ctx)
{
    char **pos;
    int npos;
    int code = gc_start("end-gc", &end_usage, NULL, 0, argc, argv, &pos, &npos, 1);
    if (code >= 0) {
        free(pos);
        return code;
    }
    if (npos != 1) {
        cli_error("end-gc: the cycle id is missing (see ca-cas end-gc --help)");
        free(pos);
        return CLI_EXIT_USAGE;
    }
    const char *id = pos[0];
    if (!*id || strlen(id) > 20 || strspn(id, "0123456789") != strlen(id)) {
        cli_error("end-gc: \"%s\" is not a cycle id (a number, as begin-gc prints)", id);
        free(pos);
        return CLI_EXIT_USAGE;
    }
    char path[96], err[CLI_ERR_MAX];
    snprintf(path, sizeof(path), "/gc/end?id=%s", id);
    struct cli_client *c;
    if (cli_client_new(ctx, &c, err, sizeof(err)) < 0) {
        cli_error("end-gc: %s", err);
        free(pos);
        return CLI_EXIT_FAIL;
    }
    struct cas_buf b;
    cas_buf_init(&b);
    int rc = cli_call(c, "POST", path, NULL, 0, &b, NULL, err, sizeof(err));
    uint64_t removed = 0, bytes = 0;
    /* Without its count the answer is not the server's (SPEC: 200
     * {"removed":n,"bytes":b}): "removed 0" would be a guess. */
    if (rc == 0 && (!b.data || cas_json_get_u64(b.data, "removed", &removed) < 0 ||
                    cas_json_get_u64(b.data, "bytes", &bytes) < 0)) {
        snprintf(err, sizeof(err),
                 "the answer has no \"removed\" and \"bytes\" counts "
                 "(not a ca-cas server?): %.80s",
                 b.data ? b.data : "");
        rc = -EPROTO;
    }
    if (rc < 0) {
        cli_error("end-gc %s: %s", id, err);
    } else {
        char hb[32], text[160];
        cli_human_bytes(bytes, hb, sizeof(hb));
        snprintf(text, sizeof(text), "removed %llu objects, %llu bytes (%s)",
                 (unsigned long long)removed, (unsigned long long)bytes, hb);
        print_reply(ctx, b.data, text);
    }
    cas_buf_free(&b);
    cli_client_free(c);
    free(pos);
    return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
