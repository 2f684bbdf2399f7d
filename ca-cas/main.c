/*
 * main.c - the ca-cas executable: global options, then one command from
 * the table in commands.c. Everything else lives in the cas_cli library.
 */
#include "cli.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int run(int argc, char **argv, char **rest);

int main(int argc, char **argv)
{
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest)
        return CLI_EXIT_FAIL;
    int code = run(argc, argv, rest);
    free(rest);
    return code;
}

/* Everything but the argv copy, so that every way out frees it. */
static int run(int argc, char **argv, char **rest)
{
    struct cli_globals g;
    int nrest;
    char err[CLI_ERR_MAX];
    if (cli_globals_parse(argc, argv, &g, rest, &nrest, err, sizeof(err)) < 0) {
        /* --json asks for JSON errors, usage errors included, even when
         * another global option is what failed to parse */
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
            if (strcmp(argv[i], "--json") == 0)
                cli_json_errors = true;
        cli_error("%s (see ca-cas --help)", err);
        return CLI_EXIT_USAGE;
    }
    cli_json_errors = g.json;
    if (g.version) {
        printf("ca-cas %s\n", CAS_VERSION);
        return CLI_EXIT_OK;
    }
    if (nrest > 0 && strcmp(rest[0], "help") == 0 && nrest > 1) {
        rest[0] = rest[1]; /* "ca-cas help put" is "ca-cas put --help" */
        rest[1] = "--help";
        nrest = 2;
    } else if (nrest > 0 && strcmp(rest[0], "help") == 0) {
        g.help = true;
        nrest = 0;
    }
    if (nrest == 0) {
        cli_usage(g.help ? stdout : stderr);
        return g.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    const struct cli_command *cmd = cli_command_find(rest[0]);
    if (!cmd) {
        cli_error("unknown command \"%s\" (see ca-cas --help)", rest[0]);
        return CLI_EXIT_USAGE;
    }
    struct cli_ctx ctx;
    if (cli_ctx_setup(&g, &ctx, err, sizeof(err)) < 0) {
        cli_error("%s", err);
        return CLI_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to report, not a death */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int code = cmd->run(nrest, rest, &ctx);
    if (fflush(stdout) != 0 && code == CLI_EXIT_OK) {
        cli_error("%s: writing the output failed", cmd->name);
        code = CLI_EXIT_FAIL;
    }
    curl_global_cleanup();
    free(ctx.token);
    free(ctx.cacert_pem);
    return code;
}
