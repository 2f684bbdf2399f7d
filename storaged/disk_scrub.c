/*
 * disk_scrub.c - the background scrubber: reads every object and checks its
 * bytes against its key (and its block checksums), at most --scrub-rate
 * bytes per second, one full pass after another.
 *
 * A pass walks the data files in order (0..49) and each file by frame
 * offset; the position (file, offset) is saved in the file `scrub` about
 * once a second, so a restart resumes where the scrubber stopped. A
 * corrupt object is taken out of service like one caught while serving
 * (reads answer 404, a balancer repairs it), logged with its key and
 * location, and counted.
 */
#define _GNU_SOURCE
#include "crc32c.h"
#include "disk_internal.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK FMT_BLOCK
#define SCRUB_MIN_PASS 60.0 /* seconds */

struct scrub_item {
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t offset;
};

static int by_offset(const void *a, const void *b)
{
    const struct scrub_item *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps until the bytes read so far fit the rate; false when told to stop. */
static bool pace(struct disk_store *d, double started, uint64_t bytes)
{
    double due = started + (double)bytes / (double)d->scrub_rate;
    pthread_mutex_lock(&d->scrub_lock);
    while (!d->scrub_stop) {
        double left = due - now_s();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (left > 1 ? 1 : left);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&d->scrub_cond, &d->scrub_lock, &ts);
    }
    bool go = !d->scrub_stop;
    pthread_mutex_unlock(&d->scrub_lock);
    return go;
}

static void save_position(struct disk_store *d)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "ca-cas scrub 1\n%u %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                     d->scrub_file, d->scrub_offset, d->scrub_passes, d->scrub_last_pass);
    /* A new file, never one that is there: a symlink there is not followed,
     * a FIFO not blocked on (the name is unlinked, then created O_EXCL). */
    unlinkat(d->dirfd, "scrub.tmp", 0);
    int fd = openat(d->dirfd, "scrub.tmp", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0644);
    if (fd < 0)
        return;
    bool ok = write(fd, buf, (size_t)n) == n;
    close(fd);
    /* No fsync: losing a little progress to a crash only repeats some work. */
    if (!ok || renameat(d->dirfd, "scrub.tmp", d->dirfd, "scrub") < 0)
        unlinkat(d->dirfd, "scrub.tmp", 0);
}

static void load_position(struct disk_store *d)
{
    char err[512];
    int fd = fmt_open_regular(d->dirfd, d->dir, "scrub", O_RDONLY, err, sizeof(err));
    if (fd < 0) { /* never blocks on a FIFO there: start from the beginning */
        if (fd != -ENOENT)
            log_warn("scrub position not read: %s", err);
        return;
    }
    char buf[160];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    unsigned f;
    uint64_t off, passes, last;
    if (sscanf(buf, "ca-cas scrub 1\n%u %" SCNu64 " %" SCNu64 " %" SCNu64, &f, &off, &passes,
               &last) == 4 &&
        f < FMT_NFILES) {
        d->scrub_file = f;
        d->scrub_offset = off;
        d->scrub_passes = passes;
        d->scrub_last_pass = last;
    }
}

/* Checks one object; returns the bytes read, or 0 when it was gone. */
static uint64_t scrub_one(struct disk_store *d, const unsigned char *digest, unsigned char *buf,
                          struct cas_hash *h, double started, uint64_t *budget, bool *stop)
{
    struct cas_key key = {.algo = d->base.algo};
    memcpy(key.digest, digest, d->base.algo->digest_len);
    struct store_obj *o;
    uint64_t size;
    char err[256];
    uint64_t corrupt_before = __atomic_load_n(&d->corrupt_found, __ATOMIC_RELAXED);
    if (disk_open_obj(&d->base, &key, false, &o, &size, err, sizeof(err)) < 0) {
        /* Removed meanwhile, or its frame header was bad (already taken out). */
        if (__atomic_load_n(&d->corrupt_found, __ATOMIC_RELAXED) != corrupt_before)
            __atomic_fetch_add(&d->scrub_corrupt, 1, __ATOMIC_RELAXED);
        return 0;
    }
    uint32_t *sums = NULL;
    size_t nsums = 0;
    uint64_t block;
    bool table = disk_block_sums(o, &sums, &nsums, &block) == 0;
    size_t bad_blocks = 0;
    cas_hash_reset(h);
    uint64_t at = 0;
    bool ok = true;
    while (at < size) {
        size_t want = size - at > CHUNK ? CHUNK : (size_t)(size - at);
        ssize_t n = disk_pread(o, buf, want, at);
        if (n != (ssize_t)want) {
            ok = false;
            break;
        }
        cas_hash_update(h, buf, want);
        if (table && htole32(cas_crc32c(0, buf, want)) != sums[at / FMT_BLOCK])
            bad_blocks++;
        at += want;
        *budget += want;
        __atomic_fetch_add(&d->scrub_bytes, want, __ATOMIC_RELAXED);
        if (!pace(d, started, *budget)) {
            *stop = true;
            free(sums);
            disk_close_obj(o);
            return at;
        }
    }
    unsigned char got[CAS_MAX_DIGEST];
    cas_hash_final(h, got);
    char hex[CAS_MAX_HEX + 1];
    cas_key_hex(&key, hex);
    if (!ok || memcmp(got, digest, d->base.algo->digest_len) != 0) {
        disk_quarantine(o, !ok ? "unreadable (found by scrub)"
                               : "bytes do not match the key (found by scrub)");
        __atomic_fetch_add(&d->scrub_corrupt, 1, __ATOMIC_RELAXED);
    } else if (!table || bad_blocks) {
        log_warn("scrub: object %s is intact but its block checksum table is damaged "
                 "(reads check the key instead)",
                 hex);
    }
    __atomic_fetch_add(&d->scrub_objects, 1, __ATOMIC_RELAXED);
    free(sums);
    disk_close_obj(o);
    return at;
}

static void *scrub_main(void *arg)
{
    struct disk_store *d = arg;
    unsigned char *buf = malloc(CHUNK);
    struct cas_hash *h = cas_hash_new(d->base.algo);
    if (!buf || !h) {
        log_error("scrub: out of memory; not scrubbing");
        free(buf);
        cas_hash_free(h);
        return NULL;
    }
    double started = now_s(), last_save = started, pass_started = started;
    uint64_t budget = 0;
    bool stop = false;
    log_info("scrub: running at %" PRIu64 " bytes/s from data file %u offset %" PRIu64,
             d->scrub_rate, d->scrub_file, d->scrub_offset);
    while (!stop) {
        /* The live objects of the current data file from the saved offset on. */
        unsigned n = d->scrub_file;
        struct scrub_item *items = NULL;
        size_t count = 0, cap = 0;
        struct objtab_entry en;
        pthread_rwlock_rdlock(&d->lock);
        for (uint32_t e = 0; e < d->tab.used; e++) {
            if (!objtab_get(&d->tab, e, &en) || en.file != n || en.offset < d->scrub_offset)
                continue;
            if (count == cap) {
                cap = cap ? cap * 2 : 256;
                struct scrub_item *x = realloc(items, cap * sizeof(*x));
                if (!x)
                    break;
                items = x;
            }
            memcpy(items[count].digest, en.digest, d->tab.digest_len);
            items[count].offset = en.offset;
            count++;
        }
        pthread_rwlock_unlock(&d->lock);
        if (count)
            qsort(items, count, sizeof(*items), by_offset);
        for (size_t i = 0; i < count && !stop; i++) {
            d->scrub_offset = items[i].offset;
            scrub_one(d, items[i].digest, buf, h, started, &budget, &stop);
            if (!stop)
                d->scrub_offset = items[i].offset + 1;
            if (now_s() - last_save > 1) {
                save_position(d);
                last_save = now_s();
            }
        }
        free(items);
        if (stop)
            break;
        d->scrub_file = (n + 1) % FMT_NFILES;
        d->scrub_offset = 0;
        if (d->scrub_file == 0) {
            d->scrub_passes++;
            d->scrub_last_pass = (uint64_t)time(NULL);
            log_info("scrub: pass %" PRIu64 " finished: %" PRIu64
                     " objects checked in all, %" PRIu64 " corrupt found",
                     d->scrub_passes, __atomic_load_n(&d->scrub_objects, __ATOMIC_RELAXED),
                     __atomic_load_n(&d->scrub_corrupt, __ATOMIC_RELAXED));
            save_position(d);
            /* A small store would be read over and over as fast as the disk
             * allows: passes start at most once a SCRUB_MIN_PASS. */
            if (!pace(d, pass_started + SCRUB_MIN_PASS, 0))
                stop = true;
            pass_started = now_s();
        }
        if (!pace(d, started, budget))
            break;
    }
    save_position(d);
    free(buf);
    cas_hash_free(h);
    return NULL;
}

int disk_scrub_start(struct store *s, uint64_t bytes_per_second)
{
    struct disk_store *d = disk_of(s);
    if (!bytes_per_second || d->scrub_running)
        return 0;
    d->scrub_rate = bytes_per_second;
    d->scrub_stop = false;
    load_position(d); /* before the thread: /status shows it from the start */
    int rc = pthread_create(&d->scrub_thread, NULL, scrub_main, d);
    if (rc != 0)
        return -rc;
    d->scrub_running = true;
    return 0;
}

void disk_scrub_stop(struct disk_store *d)
{
    if (!d->scrub_running)
        return;
    pthread_mutex_lock(&d->scrub_lock);
    d->scrub_stop = true;
    pthread_cond_broadcast(&d->scrub_cond);
    pthread_mutex_unlock(&d->scrub_lock);
    pthread_join(d->scrub_thread, NULL);
    d->scrub_running = false;
}
