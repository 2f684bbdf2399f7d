/*
 * range.c - parsing the Range header of a GET (see range.h).
 */
#include "range.h"

#include <stdlib.h>
#include <string.h>

int range_parse(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 1;
    const char *p = h + 6;
    char *e;
    if (*p == '-') {
        if (p[1] < '0' || p[1] > '9')
            return 1;
        unsigned long long n = strtoull(p + 1, &e, 10);
        if (*e)
            return 1;
        if (n == 0 || size == 0)
            return -1;
        *start = n >= size ? 0 : size - n;
        *end = size;
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
    if (a >= size)
        return -1;
    *start = a;
    *end = b >= size ? size : b + 1;
    return 0;
}
