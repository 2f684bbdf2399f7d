/*
 * range.c - parsing the Range header of a GET (see range.h).
 */
#include "range.h"

#include <stdlib.h>
#include <string.h>

int range_spec_parse(const char *h, struct range_spec *r)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 1;
    const char *p = h + 6;
    char *e;
    /* strtoull saturates at ULLONG_MAX (ERANGE): a huge number is "past
     * any end", as RFC 9110 reads it. */
    if (*p == '-') {
        if (p[1] < '0' || p[1] > '9')
            return 1;
        unsigned long long n = strtoull(p + 1, &e, 10);
        if (*e)
            return 1;
        r->suffix = true;
        r->a = 0;
        r->b = n;
        return 0;
    }
    if (*p < '0' || *p > '9')
        return 1;
    unsigned long long a = strtoull(p, &e, 10);
    if (*e != '-')
        return 1;
    unsigned long long b = UINT64_MAX;
    if (e[1]) {
        if (e[1] < '0' || e[1] > '9')
            return 1;
        char *e2;
        b = strtoull(e + 1, &e2, 10);
        if (*e2 || b < a)
            return 1;
    }
    r->suffix = false;
    r->a = a;
    r->b = b;
    return 0;
}

int range_resolve(const struct range_spec *r, uint64_t size, uint64_t *start, uint64_t *end)
{
    if (r->suffix) {
        if (r->b == 0 || size == 0)
            return -1;
        *start = r->b >= size ? 0 : size - r->b;
        *end = size;
        return 0;
    }
    if (r->a >= size)
        return -1;
    *start = r->a;
    *end = r->b >= size ? size : r->b + 1;
    return 0;
}

int range_parse(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
    struct range_spec r;
    if (range_spec_parse(h, &r))
        return 1;
    return range_resolve(&r, size, start, end);
}
