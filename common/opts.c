/*
 * opts.c - options from argv and CAS_* environment variables (see opts.h).
 */
#include "opts.h"
#include "num.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cas_parse_size(const char *s, uint64_t *out)
{
    if (!s)
        return -EINVAL;
    size_t ndig = strspn(s, "0123456789");
    uint64_t v;
    if (cas_parse_u64_n(s, ndig, &v) < 0) /* no digits, or too many for 64 bits */
        return -EINVAL;
    const char *end = s + ndig;
    unsigned shift = 0;
    if (*end) {
        const char *units = "KMGTP";
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (!u)
            return -EINVAL;
        shift = 10 * (unsigned)(u - units + 1);
        end++;
        if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
            end += strlen(end);
        if (*end)
            return -EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static int set_value(const struct cas_opt *o, const char *val, const char *origin, char *err,
                     size_t errlen)
{
    switch (o->type) {
    case CAS_OPT_STRING:
        *(const char **)o->out = val;
        return 0;
    case CAS_OPT_SIZE:
    case CAS_OPT_UINT:
        if ((o->type == CAS_OPT_SIZE ? cas_parse_size(val, (uint64_t *)o->out)
                                     : cas_parse_u64(val, (uint64_t *)o->out)) < 0) {
            snprintf(err, errlen, "%s: \"%s\" is not a %s", origin, val,
                     o->type == CAS_OPT_SIZE ? "size (bytes, or with K/M/G/T)" : "number");
            return -EINVAL;
        }
        return 0;
    case CAS_OPT_FLAG:
        if (strcmp(val, "1") == 0 || strcasecmp(val, "true") == 0 || strcasecmp(val, "yes") == 0)
            *(bool *)o->out = true;
        else if (strcmp(val, "0") == 0 || strcasecmp(val, "false") == 0 ||
                 strcasecmp(val, "no") == 0 || !*val)
            *(bool *)o->out = false;
        else {
            snprintf(err, errlen, "%s: \"%s\" is not a boolean (1/0, true/false)", origin, val);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static void env_name(const char *name, char *out, size_t outlen)
{
    size_t j = (size_t)snprintf(out, outlen, "CAS_");
    for (const char *p = name; *p && j + 1 < outlen; p++)
        out[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

void cas_opts_usage(FILE *f, const struct cas_opt *opts, size_t n, const char *usage)
{
    fprintf(f, "usage: %s\n\noptions (each also read from the environment as CAS_<NAME>):\n",
            usage);
    for (size_t i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-28s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-28s %s\n", "--help", "print this help");
    fprintf(f, "  %-28s %s\n", "--version", "print the version");
}

int cas_opts_parse(const struct cas_opt *opts, size_t n, int argc, char **argv, const char *usage,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char env[96];
        env_name(opts[i].name, env, sizeof(env));
        const char *v = getenv(env);
        if (v && set_value(&opts[i], v, env, err, errlen) < 0)
            return -EINVAL;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cas_opts_usage(stdout, opts, n, usage);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            const char *prog = strrchr(argv[0], '/');
            printf("%s %s\n", prog ? prog + 1 : argv[0], CAS_VERSION);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", arg);
            return -EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct cas_opt *o = NULL;
        for (size_t i = 0; i < n; i++)
            if (strlen(opts[i].name) == nlen && strncmp(opts[i].name, name, nlen) == 0)
                o = &opts[i];
        if (!o) {
            snprintf(err, errlen, "unknown option \"%s\" (see --help)", arg);
            return -EINVAL;
        }
        const char *val;
        if (o->type == CAS_OPT_FLAG && !eq) {
            val = "1";
        } else if (eq) {
            val = eq + 1;
        } else if (a + 1 < argc) {
            val = argv[++a];
        } else {
            snprintf(err, errlen, "option --%s needs a value (see --help)", o->name);
            return -EINVAL;
        }
        if (set_value(o, val, arg, err, errlen) < 0)
            return -EINVAL;
    }
    return 0;
}
