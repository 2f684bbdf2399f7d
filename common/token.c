/*
 * token.c - reading the shared bearer token (see token.h).
 */
#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cas_token_read(const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
        return -errno;
    }
    char line[1024];
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                 line[n - 1] == '\t'))
        line[--n] = '\0';
    if (!n) {
        snprintf(err, errlen, "token file %s is empty", path);
        return -EINVAL;
    }
    *out = strdup(line);
    return *out ? 0 : -ENOMEM;
}
