/*
 * fsck.c - PLACEHOLDER for `ca-cas fsck DIR [--repair]`, the offline check
 * of a storaged directory.
 *
 * TEMPORARY: the lead engineer replaces this file with the real check,
 * which links the storage engine library (cas_store). Until then the
 * command says it is not built and fails.
 */
#include "cli.h"

#include <string.h>

int cmd_fsck(int argc, char **argv, const struct cli_ctx *ctx)
{
    (void)ctx;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: ca-cas fsck DIR [--repair]\n\n"
                   "Offline check of a storaged directory (not yet built).\n");
            return CLI_EXIT_OK;
        }
    cli_error("fsck: not yet built");
    return CLI_EXIT_FAIL;
}
