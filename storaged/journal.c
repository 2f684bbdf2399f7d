/*
 * journal.c - index appends and group commit (see journal.h).
 */
#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void journal_init(struct journal *j, int fd, uint64_t end)
{
    memset(j, 0, sizeof(*j));
    j->fd = fd;
    j->end = end;
    j->synced = end;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
}

void journal_destroy(struct journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
}

int journal_append(struct journal *j, const struct fmt_record *recs, size_t n,
                   struct journal_pos *pos)
{
    unsigned char stackbuf[16 * FMT_RECORD_SIZE];
    unsigned char *buf = n <= 16 ? stackbuf : malloc(n * FMT_RECORD_SIZE);
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        fmt_record_encode(&recs[i], buf + i * FMT_RECORD_SIZE);
    uint64_t at = __atomic_load_n(&j->end, __ATOMIC_ACQUIRE);
    size_t len = n * FMT_RECORD_SIZE, done = 0;
    int rc = 0;
    while (done < len) {
        ssize_t w = pwrite(j->fd, buf + done, len - done, (off_t)(at + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    if (buf != stackbuf)
        free(buf);
    if (rc < 0) {
        /* Leave no partial record behind for the next append to follow. */
        if (ftruncate(j->fd, (off_t)at) < 0)
            return -EIO;
        return rc;
    }
    __atomic_store_n(&j->end, at + len, __ATOMIC_RELEASE);
    __atomic_fetch_add(&j->records, n, __ATOMIC_RELAXED);
    if (pos) {
        pos->end = at + len;
        pos->gen = __atomic_load_n(&j->gen, __ATOMIC_ACQUIRE);
    }
    return 0;
}

void journal_now(struct journal *j, struct journal_pos *pos)
{
    pos->gen = __atomic_load_n(&j->gen, __ATOMIC_ACQUIRE);
    pos->end = __atomic_load_n(&j->end, __ATOMIC_ACQUIRE);
}

int journal_sync(struct journal *j, const struct journal_pos *pos)
{
    int rc = 0;
    pthread_mutex_lock(&j->lock);
    while (j->gen == pos->gen && j->synced < pos->end) {
        if (j->sync_err) {
            rc = j->sync_err;
            break;
        }
        if (j->syncing) {
            pthread_cond_wait(&j->cond, &j->lock);
            continue;
        }
        j->syncing = 1;
        uint64_t target = __atomic_load_n(&j->end, __ATOMIC_ACQUIRE);
        int fd = j->fd;
        pthread_mutex_unlock(&j->lock);
        int r = fdatasync(fd);
        int e = errno;
        pthread_mutex_lock(&j->lock);
        j->syncing = 0;
        j->syncs++;
        if (r < 0)
            j->sync_err = -e;
        else if (target > j->synced)
            j->synced = target;
        pthread_cond_broadcast(&j->cond);
    }
    if (!rc && j->sync_err && j->gen == pos->gen && j->synced < pos->end)
        rc = j->sync_err;
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void journal_replace(struct journal *j, int fd, uint64_t end)
{
    int old = journal_swap(j, fd, end);
    if (old >= 0)
        close(old);
}

int journal_swap(struct journal *j, int fd, uint64_t end)
{
    pthread_mutex_lock(&j->lock);
    while (j->syncing)
        pthread_cond_wait(&j->cond, &j->lock);
    int old = j->fd;
    j->fd = fd;
    __atomic_store_n(&j->end, end, __ATOMIC_RELEASE);
    j->synced = end;
    __atomic_fetch_add(&j->gen, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
    return old;
}
