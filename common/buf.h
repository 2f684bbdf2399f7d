/*
 * buf.h - a growable byte buffer, the building block for JSON, Prometheus
 * text and HTTP bodies assembled in memory.
 */
#ifndef CAS_BUF_H
#define CAS_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct cas_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; later appends are dropped */
};

void cas_buf_init(struct cas_buf *b);
void cas_buf_free(struct cas_buf *b);
void cas_buf_reset(struct cas_buf *b);
int cas_buf_reserve(struct cas_buf *b, size_t extra);
void cas_buf_append(struct cas_buf *b, const void *data, size_t len);
void cas_buf_puts(struct cas_buf *b, const char *s);
void cas_buf_printf(struct cas_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cas_buf_vprintf(struct cas_buf *b, const char *fmt, va_list ap);
/* Hands the storage to the caller (free() it) and leaves b empty. */
char *cas_buf_steal(struct cas_buf *b, size_t *len);

#endif
