/*
 * replay.c - the index replay benchmark (bench/replay.sh).
 *
 *   cas-bench-replay build DIR COUNT [SIZE]
 *       creates a store in DIR holding COUNT distinct objects of SIZE bytes
 *       (default 100), written through the engine's own operations
 *       (put_begin / put_write / put_commit, sync=false), then closes it.
 *   cas-bench-replay open DIR
 *       opens the store (disk_open: lock, index replay, data file checks)
 *       and prints the time it took, the object table's memory per object
 *       (disk_internals.memory / objects) and the process's RSS growth across
 *       the open. Run it in a fresh process per measurement, so the RSS
 *       figure is not hidden by memory an earlier open left to malloc.
 *   cas-bench-replay churn DIR ROUNDS
 *       grows the index of the store in DIR without changing its objects:
 *       ROUNDS GC cycles, each begun, every object unmarked (gc_mark), and
 *       cancelled: about one record per object per round, so that the next
 *       compaction rewrites the index (bench/snapshot-get.sh).
 */
#define _GNU_SOURCE
#include "disk.h"
#include "hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static int build(const char *dir, uint64_t count, size_t size)
{
    char err[512] = "";
    struct disk_options o = {.dir = dir, .algo = cas_hash_by_name("sha1")};
    struct store *s;
    mkdir(dir, 0755); /* disk_open wants the directory, as storaged's main makes it */
    if (disk_open(&o, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "replay: %s\n", err);
        return 1;
    }
    unsigned char *buf = calloc(1, size < 16 ? 16 : size);
    double t0 = now();
    for (uint64_t i = 0; i < count; i++) {
        memcpy(buf, &i, 8); /* distinct by the counter */
        struct store_put *p;
        struct cas_key key;
        bool created;
        if (s->ops->put_begin(s, NULL, size, &p, err, sizeof(err)) < 0 ||
            s->ops->put_write(p, buf, size, err, sizeof(err)) < 0 ||
            s->ops->put_commit(p, false, &key, &created, err, sizeof(err)) < 0) {
            fprintf(stderr, "replay: put %" PRIu64 ": %s\n", i, err);
            return 1;
        }
    }
    double dt = now() - t0;
    struct store_info info;
    s->ops->info(s, &info);
    printf("build objects=%" PRIu64 " size=%zu seconds=%.2f puts_per_s=%.0f\n", info.objects, size,
           dt, (double)count / dt);
    s->ops->destroy(s);
    free(buf);
    return 0;
}

static int open_once(const char *dir)
{
    char err[512] = "";
    struct disk_options o = {.dir = dir, .algo = cas_hash_by_name("sha1")};
    struct store *s;
    long rss0 = rss_bytes();
    double t0 = now();
    if (disk_open(&o, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "replay: %s\n", err);
        return 1;
    }
    double dt = now() - t0;
    long rss1 = rss_bytes();
    struct store_info info;
    struct disk_replay_stats rs;
    struct disk_internals di;
    s->ops->info(s, &info);
    disk_internals(s, &di);
    disk_replay_stats(s, &rs);
    double per = info.objects ? (double)di.memory / (double)info.objects : 0;
    double rss_per = info.objects ? (double)(rss1 - rss0) / (double)info.objects : 0;
    printf("open objects=%" PRIu64 " records=%" PRIu64 " seconds=%.3f replay_seconds=%.3f "
           "table_bytes=%zu table_bytes_per_object=%.1f rss_growth=%ld rss_bytes_per_object=%.1f\n",
           info.objects, rs.records, dt, rs.seconds, di.memory, per, rss1 - rss0, rss_per);
    s->ops->destroy(s);
    return 0;
}

struct digests {
    unsigned char *d;
    size_t n, cap, len;
};

static void collect(void *cls, const unsigned char *digest, uint64_t size)
{
    struct digests *g = cls;
    (void)size;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1 << 16;
        g->d = realloc(g->d, g->cap * g->len);
        if (!g->d)
            abort();
    }
    memcpy(g->d + g->n++ * g->len, digest, g->len);
}

static int churn(const char *dir, unsigned rounds)
{
    char err[512] = "";
    struct disk_options o = {.dir = dir, .algo = cas_hash_by_name("sha1")};
    struct store *s;
    if (disk_open(&o, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "replay: %s\n", err);
        return 1;
    }
    struct digests g = {.len = s->algo->digest_len};
    struct store_cursor cursor = {0};
    while (!cursor.done)
        if (store_list(s, &cursor, STORE_LIST_LIVE, 0, UINT64_MAX, 65536, collect, &g, err,
                       sizeof(err)) < 0)
            goto fail;
    enum { BATCH = 4096 };
    struct cas_key *keys = calloc(BATCH, sizeof(*keys));
    for (unsigned r = 0; r < rounds; r++) {
        uint64_t id, objs, bytes, unmarked;
        if (s->ops->gc_begin(s, 0, &id, &objs, &bytes, err, sizeof(err)) < 0)
            goto fail;
        for (size_t i = 0; i < g.n; i += BATCH) {
            size_t n = g.n - i < BATCH ? g.n - i : BATCH;
            for (size_t j = 0; j < n; j++) {
                keys[j].algo = s->algo;
                memcpy(keys[j].digest, g.d + (i + j) * g.len, g.len);
            }
            if (s->ops->gc_mark(s, keys, n, &unmarked, err, sizeof(err)) < 0)
                goto fail;
        }
        if (s->ops->gc_cancel(s, id, err, sizeof(err)) < 0)
            goto fail;
    }
    struct store_info info;
    s->ops->info(s, &info);
    struct disk_internals di;
    disk_internals(s, &di);
    printf("churn objects=%" PRIu64 " index_records=%" PRIu64 "\n", info.objects, di.index_records);
    s->ops->destroy(s);
    free(keys);
    free(g.d);
    return 0;
fail:
    fprintf(stderr, "replay: churn: %s\n", err);
    s->ops->destroy(s);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "build"))
        return build(argv[2], strtoull(argv[3], NULL, 0),
                     argc > 4 ? (size_t)strtoull(argv[4], NULL, 0) : 100);
    if (argc == 3 && !strcmp(argv[1], "open"))
        return open_once(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "churn"))
        return churn(argv[2], (unsigned)strtoul(argv[3], NULL, 0));
    fprintf(stderr, "usage: %s build DIR COUNT [SIZE] | open DIR | churn DIR ROUNDS\n", argv[0]);
    return 2;
}
