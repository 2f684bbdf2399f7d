/*
 * num.c - strict parsing of numbers from requests, options and configs
 * (see num.h for the accepted forms and why strtoull alone is not enough).
 */
#include "num.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cas_parse_u64_n(const char *s, size_t len, uint64_t *out)
{
    if (!s || len == 0)
        return -EINVAL;
    uint64_t v = 0;
    bool overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true; /* keep checking the form: "99...9x" is -EINVAL */
        else
            v = v * 10 + d;
    }
    if (overflow)
        return -ERANGE;
    *out = v;
    return 0;
}

int cas_parse_u64(const char *s, uint64_t *out)
{
    return cas_parse_u64_n(s, s ? strlen(s) : 0, out);
}

int cas_parse_id(const char *s, uint64_t *out)
{
    uint64_t v;
    int rc = cas_parse_u64(s, &v);
    if (rc == 0 && v == 0)
        return -EINVAL;
    if (rc == 0)
        *out = v;
    return rc;
}

static size_t digits(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

int cas_parse_real(const char *s, double *out)
{
    if (!s)
        return -EINVAL;
    /* Check the form first, so strtod never sees "inf", "nan", "0x1p3",
     * a sign or white space. */
    size_t i = digits(s);
    if (i == 0)
        return -EINVAL;
    if (s[i] == '.') {
        size_t f = digits(s + i + 1);
        if (f == 0)
            return -EINVAL;
        i += 1 + f;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-')
            i++;
        size_t e = digits(s + i);
        if (e == 0)
            return -EINVAL;
        i += e;
    }
    if (s[i] != '\0')
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end)
        return -EINVAL;
    if (!isfinite(v) || (errno == ERANGE && v != 0))
        return -ERANGE; /* "1e400" */
    *out = v;
    return 0;
}

int cas_parse_bit(const char *s, bool *out)
{
    if (s && (s[0] == '0' || s[0] == '1') && s[1] == '\0') {
        *out = s[0] == '1';
        return 0;
    }
    return -EINVAL;
}
