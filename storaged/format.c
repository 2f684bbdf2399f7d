/*
 * format.c - encoding and checking index records and frame headers (see
 * format.h and docs/FORMAT.md).
 */
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void fmt_record_encode(const struct fmt_record *r, unsigned char out[FMT_RECORD_SIZE])
{
    out[4] = r->type;
    out[5] = r->flags;
    out[6] = r->file;
    out[7] = r->algo;
    put64(out + 8, r->offset);
    put64(out + 16, r->size);
    put64(out + 24, r->aux);
    memcpy(out + 32, r->digest, CAS_MAX_DIGEST);
    put32(out, (uint32_t)crc32(0, out + 4, FMT_RECORD_SIZE - 4));
}

bool fmt_record_decode(const unsigned char in[FMT_RECORD_SIZE], struct fmt_record *r)
{
    if (get32(in) != (uint32_t)crc32(0, in + 4, FMT_RECORD_SIZE - 4))
        return false;
    r->type = in[4];
    r->flags = in[5];
    r->file = in[6];
    r->algo = in[7];
    r->offset = get64(in + 8);
    r->size = get64(in + 16);
    r->aux = get64(in + 24);
    memcpy(r->digest, in + 32, CAS_MAX_DIGEST);
    return r->type != 0;
}

void fmt_frame_encode(const struct fmt_frame *f, unsigned char out[FMT_FRAME_HEADER])
{
    memset(out, 0, FMT_FRAME_HEADER);
    put32(out, FMT_FRAME_MAGIC);
    out[8] = f->algo;
    out[9] = f->flags;
    put32(out + 12, f->sums_crc);
    put64(out + 16, f->size);
    put64(out + 24, f->written_at);
    memcpy(out + 32, f->digest, CAS_MAX_DIGEST);
    uLong c = crc32(0, out, 4);
    c = crc32(c, out + 8, FMT_FRAME_HEADER - 8);
    put32(out + 4, (uint32_t)c);
}

static bool frame_decode_as(const unsigned char in[FMT_FRAME_HEADER], uint32_t magic,
                            struct fmt_frame *f)
{
    if (get32(in) != magic)
        return false;
    uLong c = crc32(0, in, 4);
    c = crc32(c, in + 8, FMT_FRAME_HEADER - 8);
    if (get32(in + 4) != (uint32_t)c)
        return false;
    f->algo = in[8];
    f->flags = in[9];
    f->sums_crc = get32(in + 12);
    f->size = get64(in + 16);
    f->written_at = get64(in + 24);
    memcpy(f->digest, in + 32, CAS_MAX_DIGEST);
    return true;
}

void fmt_removal_encode(const struct fmt_removal *h, unsigned char out[FMT_FRAME_HEADER])
{
    memset(out, 0, FMT_FRAME_HEADER);
    put32(out, FMT_REMOVAL_MAGIC);
    out[8] = h->algo;
    out[9] = h->kind;
    put32(out + 12, h->entries_crc);
    put64(out + 16, h->count);
    put64(out + 24, h->written_at);
    put64(out + 32, h->stamp);
    uLong c = crc32(0, out, 4);
    c = crc32(c, out + 8, FMT_FRAME_HEADER - 8);
    put32(out + 4, (uint32_t)c);
}

bool fmt_removal_decode(const unsigned char in[FMT_FRAME_HEADER], struct fmt_removal *h)
{
    if (get32(in) != FMT_REMOVAL_MAGIC)
        return false;
    uLong c = crc32(0, in, 4);
    c = crc32(c, in + 8, FMT_FRAME_HEADER - 8);
    if (get32(in + 4) != (uint32_t)c || in[10] || in[11])
        return false;
    /* Bytes 32..39: the delete's stamp (0 in frames written before it was
     * kept); the rest stays zero. */
    for (int i = 40; i < FMT_FRAME_HEADER; i++)
        if (in[i])
            return false;
    h->algo = in[8];
    h->kind = in[9];
    h->entries_crc = get32(in + 12);
    h->count = get64(in + 16);
    h->written_at = get64(in + 24);
    h->stamp = get64(in + 32);
    return h->count >= 1 && h->count <= FMT_REMOVAL_MAX;
}

uint32_t fmt_removal_entries_crc(const unsigned char *entries, uint64_t count)
{
    uLong c = crc32(0, NULL, 0);
    uint64_t len = count * FMT_REMOVAL_ENTRY;
    for (uint64_t at = 0; at < len;) { /* crc32 takes a uInt length */
        uint64_t n = len - at > (1u << 30) ? (1u << 30) : len - at;
        c = crc32(c, entries + at, (uInt)n);
        at += n;
    }
    return (uint32_t)c;
}

void fmt_removal_entry_put(unsigned char *entries, uint64_t i, const unsigned char *digest,
                           size_t digest_len, uint64_t offset)
{
    unsigned char *p = entries + i * FMT_REMOVAL_ENTRY;
    memset(p, 0, CAS_MAX_DIGEST);
    memcpy(p, digest, digest_len);
    put64(p + CAS_MAX_DIGEST, offset);
}

void fmt_removal_entry_get(const unsigned char *entries, uint64_t i,
                           unsigned char digest[CAS_MAX_DIGEST], uint64_t *offset)
{
    const unsigned char *p = entries + i * FMT_REMOVAL_ENTRY;
    memcpy(digest, p, CAS_MAX_DIGEST);
    *offset = get64(p + CAS_MAX_DIGEST);
}

bool fmt_frame_decode(const unsigned char in[FMT_FRAME_HEADER], struct fmt_frame *f)
{
    return frame_decode_as(in, FMT_FRAME_MAGIC, f);
}

bool fmt_frame_kill(unsigned char h[FMT_FRAME_HEADER])
{
    struct fmt_frame f;
    if (!fmt_frame_decode(h, &f))
        return false;
    put32(h, FMT_DEAD_MAGIC);
    uLong c = crc32(0, h, 4);
    c = crc32(c, h + 8, FMT_FRAME_HEADER - 8);
    put32(h + 4, (uint32_t)c);
    return true;
}

enum fmt_at fmt_frame_at(const unsigned char h[FMT_FRAME_HEADER], unsigned algo, uint64_t room,
                         struct fmt_frame *f, struct fmt_removal *rm)
{
    if (fmt_frame_decode(h, f))
        return f->algo == algo && f->size <= room && fmt_frame_len(f->size) <= room ? FMT_AT_OBJECT
                                                                                    : FMT_AT_NONE;
    if (frame_decode_as(h, FMT_DEAD_MAGIC, f))
        return f->algo == algo && f->size <= room && fmt_frame_len(f->size) <= room ? FMT_AT_DEAD
                                                                                    : FMT_AT_NONE;
    if (fmt_removal_decode(h, rm))
        return rm->algo == algo && fmt_removal_len(rm->count) <= room ? FMT_AT_REMOVAL
                                                                      : FMT_AT_NONE;
    return FMT_AT_NONE;
}

uint64_t fmt_next_frame(int fd, uint64_t from, uint64_t fsize, unsigned char *buf, size_t buflen)
{
    unsigned char h[FMT_FRAME_HEADER];
    struct fmt_frame fr;
    struct fmt_removal rm;
    for (uint64_t p = from; p + FMT_FRAME_HEADER <= fsize;) {
        ssize_t n = pread(fd, buf, buflen, (off_t)p);
        if (n < 4)
            break;
        for (ssize_t i = 0; i + 4 <= n; i++) {
            if (memcmp(buf + i, "CAS", 3) != 0 ||
                (buf[i + 3] != 'O' && buf[i + 3] != 'R' && buf[i + 3] != 'D'))
                continue;
            if (pread(fd, h, sizeof(h), (off_t)(p + (uint64_t)i)) == (ssize_t)sizeof(h) &&
                (fmt_frame_decode(h, &fr) || fmt_removal_decode(h, &rm) ||
                 frame_decode_as(h, FMT_DEAD_MAGIC, &fr)))
                return p + (uint64_t)i;
        }
        p += (uint64_t)n - 3;
    }
    return fsize;
}

int fmt_walk_next(struct fmt_walk *w)
{
    if (w->next + FMT_FRAME_HEADER > w->fsize)
        return 0;
    unsigned char h[FMT_FRAME_HEADER];
    w->at = w->next;
    if (pread(w->fd, h, sizeof(h), (off_t)w->at) != (ssize_t)sizeof(h))
        return -EIO;
    w->what = fmt_frame_at(h, w->algo, w->fsize - w->at, &w->fr, &w->rm);
    switch (w->what) {
    case FMT_AT_NONE:
        w->next = fmt_next_frame(w->fd, w->at + 1, w->fsize, w->buf, w->buflen);
        break;
    case FMT_AT_REMOVAL:
        w->next = w->at + fmt_removal_len(w->rm.count);
        break;
    default:
        w->next = w->at + fmt_frame_len(w->fr.size);
    }
    return 1;
}

void fmt_datafile_name(unsigned n, uint64_t gen, char *buf, size_t len)
{
    snprintf(buf, len, "data-%02u.g%llu", n, (unsigned long long)gen);
}

bool fmt_datafile_parse(const char *name, unsigned *n, uint64_t *gen)
{
    unsigned a;
    unsigned long long g;
    int used = 0;
    if (sscanf(name, "data-%2u.g%llu%n", &a, &g, &used) != 2 || name[used] != '\0' ||
        a >= FMT_NFILES || strncmp(name, "data-", 5) != 0)
        return false;
    char canon[32];
    fmt_datafile_name(a, g, canon, sizeof(canon));
    if (strcmp(canon, name) != 0)
        return false;
    *n = a;
    *gen = g;
    return true;
}

int fmt_not_regular(const char *dir, const char *name, unsigned mode, char *err, size_t errlen)
{
    const char *what = S_ISLNK(mode)                    ? "a symbolic link"
                       : S_ISFIFO(mode)                 ? "a FIFO"
                       : S_ISDIR(mode)                  ? "a directory"
                       : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
                       : S_ISSOCK(mode)                 ? "a socket"
                                                        : "not a regular file";
    snprintf(err, errlen,
             "%s/%s is %s, not a regular file; ca-cas never follows, opens or replaces it: "
             "move it out of the directory (restore the real file from a backup if you have one)",
             dir, name, what);
    return -EINVAL;
}

int fmt_open_regular(int dirfd, const char *dir, const char *name, int flags, char *err,
                     size_t errlen)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(st.st_mode))
            return fmt_not_regular(dir, name, st.st_mode, err, errlen);
    } else if (errno != ENOENT || !(flags & O_CREAT)) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s/%s: %s", dir, name, strerror(e));
        return -e;
    }
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) /* replaced by a symlink since the check */
            return fmt_not_regular(dir, name, S_IFLNK, err, errlen);
        snprintf(err, errlen, "cannot open %s/%s: %s", dir, name, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int rc = fmt_not_regular(dir, name, st.st_mode, err, errlen);
        close(fd);
        return rc;
    }
    /* Back to blocking I/O (O_NONBLOCK means nothing for a regular file, but
     * keep the descriptor as plain as the rest of the code expects). */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

void fmt_gc_id_refusal(uint64_t id, bool active, uint64_t cur, uint64_t last, char *err,
                       size_t errlen)
{
    if (active && id == cur)
        snprintf(err, errlen,
                 "GC cycle %" PRIu64 " is already active: a new cycle needs a new id (ids only "
                 "grow; begin without ?id to get one)",
                 id);
    else
        snprintf(err, errlen,
                 "GC id %" PRIu64 " is not above the last one begun here (%" PRIu64
                 "): a new cycle needs a new id (ids only grow; begin without ?id to get one)",
                 id, last);
}
