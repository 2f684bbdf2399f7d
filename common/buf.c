/*
 * buf.c - growable byte buffer (see buf.h).
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cas_buf_init(struct cas_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void cas_buf_free(struct cas_buf *b)
{
    free(b->data);
    cas_buf_init(b);
}

void cas_buf_reset(struct cas_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int cas_buf_reserve(struct cas_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

void cas_buf_append(struct cas_buf *b, const void *data, size_t len)
{
    if (cas_buf_reserve(b, len) < 0)
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void cas_buf_puts(struct cas_buf *b, const char *s)
{
    cas_buf_append(b, s, strlen(s));
}

void cas_buf_vprintf(struct cas_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || cas_buf_reserve(b, (size_t)n) < 0)
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void cas_buf_printf(struct cas_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cas_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *cas_buf_steal(struct cas_buf *b, size_t *len)
{
    if (cas_buf_reserve(b, 0) < 0) {
        cas_buf_free(b);
        return NULL;
    }
    char *p = b->data;
    if (len)
        *len = b->len;
    cas_buf_init(b);
    return p;
}
