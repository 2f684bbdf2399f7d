/*
 * stats.c - the arithmetic behind `ca-cas bench`: latency percentiles and
 * the put:get mix, kept apart from the libcurl loop so tests can reach them.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void cli_stats_sort(double *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_double);
}

/*
 * Nearest rank: the smallest value with at least p% of the set at or below
 * it. It always answers a measured latency, never an interpolated one.
 */
double cli_stats_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    double rank = ceil(p / 100.0 * (double)n - 1e-9); /* 99.9% of 1000 is 999, not 999.0000001 */
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    return sorted[i < n ? i : n - 1];
}

static int parse_weight(const char *s, size_t len, unsigned *out)
{
    if (len == 0 || len > 9)
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int cli_bench_parse_mix(const char *s, unsigned *put, unsigned *get, char *err, size_t errlen)
{
    if (strcmp(s, "put") == 0) {
        *put = 1;
        *get = 0;
        return 0;
    }
    if (strcmp(s, "get") == 0) {
        *put = 0;
        *get = 1;
        return 0;
    }
    const char *colon = strchr(s, ':');
    unsigned p, g;
    if (!colon || parse_weight(s, (size_t)(colon - s), &p) < 0 ||
        parse_weight(colon + 1, strlen(colon + 1), &g) < 0) {
        snprintf(err, errlen, "--mix \"%s\": want PUT:GET weights such as 1:1 or 20:80", s);
        return -EINVAL;
    }
    if (p == 0 && g == 0) {
        snprintf(err, errlen, "--mix \"%s\": both weights are zero", s);
        return -EINVAL;
    }
    *put = p;
    *get = g;
    return 0;
}
