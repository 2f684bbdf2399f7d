/*
 * commands.c - the ca-cas command table, the tool's --help, and the global
 * options (--server, --token-file, --json), which may be given before or
 * after the command name.
 */
#include "cli.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct cli_command cli_commands[] = {
    {"put", cmd_put, "store files (stdin when none); prints one key per line"},
    {"get", cmd_get, "object bytes to stdout or -o FILE (--offset, --size)"},
    {"stat", cmd_stat, "size and presence of objects"},
    {"missing", cmd_missing, "keys (stdin or FILE) the server does not store"},
    {"rm", cmd_rm, "remove objects"},
    {"list", cmd_list, "stored keys (--garbage, --min-size, --max-size, --long)"},
    {"begin-gc", cmd_begin_gc, "start a GC cycle; prints its id"},
    {"mark-gc", cmd_mark_gc, "keep objects through the current GC cycle (keys or stdin)"},
    {"end-gc", cmd_end_gc, "end GC cycle ID, removing what is still marked"},
    {"compact", cmd_compact, "reclaim the space of removed objects, waiting for it"},
    {"capacity", cmd_capacity, "total, available, unreclaimed, garbage, objects, bytes"},
    {"status", cmd_status, "the server's status, readable"},
    {"fsck", cmd_fsck, "offline check of a storaged directory (--repair)"},
    {"bench", cmd_bench, "load generator: ops/s, MB/s, latency percentiles"},
    {"export", cmd_export, "objects (all live ones, or KEY...) as a tar stream"},
    {"import", cmd_import, "store every object of a tar stream (FILE or stdin)"},
    {"rebalance", cmd_rebalance, "put every object on its home backends (--config, --dry-run)"},
    {NULL, NULL, NULL},
};

const struct cli_command *cli_command_find(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void cli_usage(FILE *f)
{
    fprintf(f, "usage: ca-cas [--server URL] [--token-file F] [--cacert F] [--json] COMMAND "
               "[ARGS...]\n\n"
               "The client and operator tool of ca-cas, a content-addressed store. Talks to a\n"
               "balancer or a single storaged alike.\n\ncommands:\n");
    for (const struct cli_command *c = cli_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nglobal options (before or after the command):\n"
               "  --server URL        the server: a URL, or host:port meaning http\n"
               "                      (default $CA_CAS_SERVER, else " CLI_DEFAULT_SERVER ")\n"
               "  --token-file F      send the bearer token in F (default $CA_CAS_TOKEN_FILE,\n"
               "                      else $CAS_TOKEN_FILE)\n"
               "  --cacert F          verify an https:// server against the PEM CA bundle in F\n"
               "                      (default $CA_CAS_CACERT, else the system store)\n"
               "  --json              print JSON instead of text\n"
               "  --version           print the version\n"
               "  -h, --help          this help; ca-cas COMMAND --help for a command's\n"
               "\nexit status: 0 success, 1 an object was not found or an operation failed,\n"
               "2 usage error.\n");
}

/* Takes a global option at argv[*a] if it is one; 1 taken, 0 not, <0 error. */
static int take_global(int argc, char **argv, int *a, struct cli_globals *g, char *err,
                       size_t errlen)
{
    const char *arg = argv[*a];
    static const char *valued[] = {"--server", "--token-file", "--cacert"};
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(valued[i]);
        if (strncmp(arg, valued[i], len) != 0 || (arg[len] != '\0' && arg[len] != '='))
            continue;
        const char *val;
        if (arg[len] == '=') {
            val = arg + len + 1;
        } else if (*a + 1 < argc) {
            val = argv[++*a];
        } else {
            snprintf(err, errlen, "option %s needs a value", valued[i]);
            return -EINVAL;
        }
        if (i == 0)
            g->server = val;
        else if (i == 1)
            g->token_file = val;
        else
            g->cacert = val;
        return 1;
    }
    if (strcmp(arg, "--json") == 0) {
        g->json = true;
        return 1;
    }
    return 0;
}

int cli_globals_parse(int argc, char **argv, struct cli_globals *g, char **rest, int *nrest,
                      char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    *nrest = 0;
    bool have_cmd = false, ended = false;
    for (int a = 1; a < argc; a++) {
        if (!ended && strcmp(argv[a], "--") == 0 && have_cmd) {
            ended = true; /* the command's operands from here on */
            rest[(*nrest)++] = argv[a];
            continue;
        }
        if (!ended) {
            int rc = take_global(argc, argv, &a, g, err, errlen);
            if (rc < 0)
                return rc;
            if (rc)
                continue;
        }
        if (!have_cmd) {
            const char *arg = argv[a];
            if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                g->help = true;
                continue;
            }
            if (strcmp(arg, "--version") == 0) {
                g->version = true;
                continue;
            }
            if (arg[0] == '-') {
                snprintf(err, errlen, "unknown option \"%s\" before the command", arg);
                return -EINVAL;
            }
            have_cmd = true;
        }
        rest[(*nrest)++] = argv[a];
    }
    return 0;
}

int cli_ctx_setup(const struct cli_globals *g, struct cli_ctx *ctx, char *err, size_t errlen)
{
    memset(ctx, 0, sizeof(*ctx));
    const char *server = g->server;
    if (!server || !*server)
        server = getenv("CA_CAS_SERVER");
    if (!server || !*server)
        server = CLI_DEFAULT_SERVER;
    char why[CLI_ERR_MAX];
    if (cli_server_url(server, ctx->server, sizeof(ctx->server), why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s%s", g->server ? "--server: " : "$CA_CAS_SERVER: ", why);
        return -EINVAL;
    }
    const char *tf = g->token_file;
    if (!tf || !*tf)
        tf = getenv("CA_CAS_TOKEN_FILE");
    if (!tf || !*tf)
        tf = getenv("CAS_TOKEN_FILE");
    if (tf && *tf && cli_read_token(tf, &ctx->token, err, errlen) < 0)
        return -EINVAL;
    const char *ca = g->cacert;
    if (!ca || !*ca)
        ca = getenv("CA_CAS_CACERT");
    if (ca && *ca &&
        cas_pem_read_ca(ca, g->cacert ? "--cacert" : "$CA_CAS_CACERT", &ctx->cacert_pem,
                        &ctx->cacert_len, err, errlen) < 0) {
        free(ctx->token);
        ctx->token = NULL;
        return -EINVAL;
    }
    ctx->json = g->json;
    cli_json_errors = g->json;
    ctx->progress = isatty(STDERR_FILENO);
    return 0;
}
