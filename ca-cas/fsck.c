/*
 * fsck.c - PLACEHOLDER for `ca-cas fsck DIR [--repair]`, the offline check
 * of a storaged directory.
 *
 * TEMPORARY: the lead engineer replaces this file with the real check,
 * which links the storage engine library (cas_store). Until then the
 * command says it is not built and fails.
 */
#include "cli.h"

int cmd_fsck(int argc, char **argv, const struct cli_ctx *ctx)
{
    (void)argc;
    (void)argv;
    (void)ctx;
    cli_error("fsck: not yet built");
    return CLI_EXIT_FAIL;
}
