/*
 * node.c - fuzzes the reader of a storaged's identity file, `node` (node id,
 * hash algorithm, ring tokens: node_load in storaged/node.c), read at every
 * start and by fsck. Properties: an accepted file has a 16-hex-digit id, a
 * known algorithm, 1 to NODE_MAX_TOKENS tokens (fewer than the 64 a new
 * node gets are read: see docs/TESTING.md), sorted (placement walks them
 * in order).
 */
#define _GNU_SOURCE
#include "fuzz.h"
#include "node.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], path[300];

static void remove_dir(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_make_dir("node", dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/node", dir);
    atexit(remove_dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        abort();
    struct node_identity n;
    char err[512] = "";
    int rc = node_load(dfd, dir, &n, err, sizeof(err));
    close(dfd);
    if (rc == 0) {
        FUZZ_CHECK(strlen(n.id) == 16);
        for (int i = 0; i < 16; i++)
            FUZZ_CHECK(isxdigit((unsigned char)n.id[i]));
        FUZZ_CHECK(n.algo != NULL);
        FUZZ_CHECK(n.ntokens >= 1 && n.ntokens <= NODE_MAX_TOKENS); /* the reader takes 1.. */
        for (size_t i = 1; i < n.ntokens; i++)
            FUZZ_CHECK(n.tokens[i - 1] <= n.tokens[i]);
        node_free(&n);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    return 0;
}
