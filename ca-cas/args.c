/*
 * args.c - option parsing for the ca-cas commands, and their --help text.
 *
 * Unlike common/opts.c (daemon options, all named, also read from CAS_*
 * variables), a command mixes options with operands (keys, files) and reads
 * nothing from the environment, so it has its own small parser. Options may
 * appear anywhere; "--" ends them so that a file named "-x" can be given.
 */
#include "cli.h"
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* Stores val into o->out according to its type. */
static int set_opt(const struct cli_opt *o, const char *val, char *err, size_t errlen)
{
    switch (o->type) {
    case CLI_OPT_FLAG:
        *(bool *)o->out = true;
        return 0;
    case CLI_OPT_STRING:
        *(const char **)o->out = val;
        return 0;
    case CLI_OPT_SIZE:
        if (cas_parse_size(val, (uint64_t *)o->out) < 0) {
            snprintf(err, errlen, "--%s: \"%s\" is not a size (bytes, or with K/M/G/T)", o->name,
                     val);
            return -EINVAL;
        }
        return 0;
    case CLI_OPT_UINT: {
        const char *p = val;
        while (isdigit((unsigned char)*p))
            p++;
        if (!*val || *p || cas_parse_size(val, (uint64_t *)o->out) < 0) {
            snprintf(err, errlen, "--%s: \"%s\" is not a number", o->name, val);
            return -EINVAL;
        }
        return 0;
    }
    case CLI_OPT_DURATION:
        if (cli_parse_duration(val, (double *)o->out) < 0) {
            snprintf(err, errlen, "--%s: \"%s\" is not a duration (e.g. 10, 1.5s, 2m)", o->name,
                     val);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static const struct cli_opt *find_long(const struct cli_opt *opts, size_t n, const char *name,
                                       size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static const struct cli_opt *find_short(const struct cli_opt *opts, size_t n, char c)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].short_name && opts[i].short_name == c)
            return &opts[i];
    return NULL;
}

int cli_args_parse(const struct cli_opt *opts, size_t n, int argc, char **argv, char **pos,
                   int *npos, char *err, size_t errlen)
{
    bool only_operands = false;
    *npos = 0;
    for (int a = 1; a < argc; a++) {
        char *arg = argv[a];
        if (only_operands || arg[0] != '-' || strcmp(arg, "-") == 0) {
            pos[(*npos)++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_operands = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        const struct cli_opt *o;
        const char *val = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(opts, n, name, len);
            if (!o) {
                snprintf(err, errlen, "unknown option \"%.*s\"", (int)(len + 2), arg);
                return -EINVAL;
            }
            if (eq) {
                if (o->type == CLI_OPT_FLAG) {
                    snprintf(err, errlen, "option --%s takes no value", o->name);
                    return -EINVAL;
                }
                val = eq + 1;
            }
        } else {
            o = find_short(opts, n, arg[1]);
            if (!o) {
                snprintf(err, errlen, "unknown option \"-%c\"", arg[1]);
                return -EINVAL;
            }
            if (arg[2]) {
                if (o->type == CLI_OPT_FLAG) {
                    snprintf(err, errlen, "option -%c takes no value", arg[1]);
                    return -EINVAL;
                }
                val = arg + 2; /* -oFILE */
            }
        }
        if (o->type != CLI_OPT_FLAG && !val) {
            if (a + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return -EINVAL;
            }
            val = argv[++a];
        }
        if (set_opt(o, val, err, errlen) < 0)
            return -EINVAL;
    }
    return 0;
}

void cli_args_usage(FILE *f, const char *cmd, const struct cli_usage_text *u,
                    const struct cli_opt *opts, size_t n)
{
    fprintf(f, "usage: ca-cas [GLOBAL OPTIONS] %s\n\n", u->usage);
    if (u->about)
        fprintf(f, "%s\n", u->about);
    fprintf(f, "\noptions:\n");
    for (size_t i = 0; i < n; i++) {
        char left[64];
        char shortname[8] = "";
        if (opts[i].short_name)
            snprintf(shortname, sizeof(shortname), "-%c, ", opts[i].short_name);
        snprintf(left, sizeof(left), "%s--%s%s%s", shortname, opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-26s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-26s %s\n", "-h, --help", "print this help");
    fprintf(f, "\nglobal options (see ca-cas --help): --server URL, --token-file F, --json\n");
    (void)cmd;
}

int cli_args_command(const char *cmd, const struct cli_usage_text *u, const struct cli_opt *opts,
                     size_t n, int argc, char **argv, char **pos, int *npos, int *exit_code)
{
    char err[CLI_ERR_MAX];
    int rc = cli_args_parse(opts, n, argc, argv, pos, npos, err, sizeof(err));
    if (rc == 0)
        return 0;
    if (rc == 1) {
        cli_args_usage(stdout, cmd, u, opts, n);
        *exit_code = CLI_EXIT_OK;
    } else {
        cli_error("%s: %s (see ca-cas %s --help)", cmd, err, cmd);
        *exit_code = CLI_EXIT_USAGE;
    }
    return -1;
}
