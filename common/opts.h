/*
 * opts.h - command-line options that also read the environment.
 *
 * A daemon describes its options in a table; each option --some-name also
 * reads CAS_SOME_NAME from the environment, and a flag on the command line
 * wins over the environment. Sizes accept K, M, G, T suffixes (powers of
 * 1024, with or without "iB").
 */
#ifndef CAS_OPTS_H
#define CAS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cas_opt_type { CAS_OPT_STRING, CAS_OPT_SIZE, CAS_OPT_UINT, CAS_OPT_FLAG };

struct cas_opt {
    const char *name; /* without the leading dashes */
    enum cas_opt_type type;
    void *out;       /* const char **, uint64_t *, uint64_t *, bool * */
    const char *arg; /* argument name for --help, NULL for flags */
    const char *help;
};

/*
 * Fills each option's out from the environment, then from argv. Returns 0,
 * 1 when --help or --version was asked for (printed), or -EINVAL with a message in
 * err for an unknown option, a missing argument or a bad number.
 */
int cas_opts_parse(const struct cas_opt *opts, size_t n, int argc, char **argv, const char *usage,
                   char *err, size_t errlen);

void cas_opts_usage(FILE *f, const struct cas_opt *opts, size_t n, const char *usage);

/* Parses "123", "10G", "512MiB"; -EINVAL on anything else. */
int cas_parse_size(const char *s, uint64_t *out);

#endif
