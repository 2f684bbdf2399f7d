/*
 * putload.c - load generator for PUT benchmarks (bench/put-*.sh) and the
 * object loader of the GET benchmarks.
 *
 * Generates COUNT distinct objects of SIZE bytes from a seeded PRNG (the
 * same seed gives the same bytes, so --dump can hand a reference tool the
 * very bytes that were uploaded), computes their keys with common/hash.h
 * before any timing starts, then keeps CONCURRENCY uploads in flight through
 * one libcurl multi handle (keep-alive connections) until every object is
 * sent or --duration runs out. Prints one line of key=value figures.
 *
 *   cas-bench-putload --url http://127.0.0.1:PORT [--size B] [--count N]
 *       [--concurrency C] [--sync 0|1] [--seed S] [--duration SECS]
 *       [--dump FILE]           write the objects' bytes to FILE and exit
 *       [--files-dir DIR]       also write each object to DIR/<key> (nginx root)
 *       [--keys-out FILE]       write the keys, one per line
 */
#define _GNU_SOURCE
#include "hash.h"
#include "key.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct slot {
    CURL *easy;
    size_t obj;
    double t0;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t sz, size_t n, void *cls)
{
    return sz * n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) {
            close(fd);
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *dump = NULL, *files_dir = NULL, *keys_out = NULL;
    size_t size = 1 << 20, count = 1000, conc = 4;
    int sync = 1;
    uint64_t seed = 1;
    double duration = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "putload: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--size"))
            size = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--count"))
            count = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--concurrency"))
            conc = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--sync"))
            sync = atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--duration"))
            duration = atof(v);
        else if (!strcmp(a, "--dump"))
            dump = v;
        else if (!strcmp(a, "--files-dir"))
            files_dir = v;
        else if (!strcmp(a, "--keys-out"))
            keys_out = v;
        else {
            fprintf(stderr, "putload: unknown option %s\n", a);
            return 2;
        }
    }
    if ((!url && !dump) || !size || !count || !conc) {
        fprintf(stderr, "usage: see the comment at the top of bench/putload.c\n");
        return 2;
    }

    /* The objects: splitmix64 over the whole buffer, distinct by construction. */
    size_t total = size * count;
    unsigned char *data = malloc(total);
    if (!data) {
        fprintf(stderr, "putload: cannot allocate %zu bytes\n", total);
        return 1;
    }
    uint64_t x = seed * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + 8 <= total; i += 8) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        memcpy(data + i, &z, 8);
    }
    for (size_t i = total & ~(size_t)7; i < total; i++)
        data[i] = (unsigned char)i;
    if (dump) {
        int rc = write_file(dump, data, total);
        if (rc < 0) {
            fprintf(stderr, "putload: %s: %s\n", dump, strerror(-rc));
            return 1;
        }
        return 0;
    }

    const struct cas_hash_algo *algo = cas_hash_by_name("sha1");
    char (*urls)[256] = malloc(count * sizeof(*urls));
    FILE *kf = keys_out ? fopen(keys_out, "w") : NULL;
    if (!urls || (keys_out && !kf)) {
        fprintf(stderr, "putload: cannot set up keys\n");
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        unsigned char d[CAS_MAX_DIGEST];
        char hex[CAS_MAX_HEX + 1];
        cas_hash_buffer(algo, data + i * size, size, d);
        cas_hex_encode(d, algo->digest_len, hex);
        snprintf(urls[i], sizeof(urls[i]), "%s/objects/%s%s", url, hex, sync ? "" : "?sync=0");
        if (kf)
            fprintf(kf, "%s\n", hex);
        if (files_dir) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", files_dir, hex);
            int rc = write_file(path, data + i * size, size);
            if (rc < 0) {
                fprintf(stderr, "putload: %s: %s\n", path, strerror(-rc));
                return 1;
            }
        }
    }
    if (kf)
        fclose(kf);

    curl_global_init(CURL_GLOBAL_ALL);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    struct slot *slots = calloc(conc, sizeof(*slots));
    double *lat = malloc(count * sizeof(double));
    size_t next = 0, done = 0, fails = 0, created = 0, existed = 0;
    long other_status = 0;
    double t0 = now(), deadline = duration > 0 ? t0 + duration : 0;

    for (size_t s = 0; s < conc && next < count; s++) {
        CURL *e = slots[s].easy = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[s]);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    }
    int active = 0;
    for (size_t s = 0; s < conc && next < count; s++) {
        struct slot *sl = &slots[s];
        sl->obj = next++;
        curl_easy_setopt(sl->easy, CURLOPT_URL, urls[sl->obj]);
        curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, data + sl->obj * size);
        curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
        sl->t0 = now();
        curl_multi_add_handle(multi, sl->easy);
        active++;
    }
    while (active) {
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            struct slot *sl;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&sl);
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            double t = now();
            if (m->data.result != CURLE_OK) {
                fails++;
                if (fails <= 3)
                    fprintf(stderr, "putload: %s: %s\n", urls[sl->obj],
                            curl_easy_strerror(m->data.result));
            } else if (code == 201) {
                created++;
            } else if (code == 200) {
                existed++;
            } else {
                other_status = code;
                fails++;
            }
            lat[done++] = t - sl->t0;
            curl_multi_remove_handle(multi, e);
            active--;
            if (next < count && (!deadline || t < deadline)) {
                sl->obj = next++;
                curl_easy_setopt(e, CURLOPT_URL, urls[sl->obj]);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, data + sl->obj * size);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
                sl->t0 = t;
                curl_multi_add_handle(multi, e);
                active++;
            }
        }
        if (active)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double dt = now() - t0;
    qsort(lat, done, sizeof(double), cmp_double);
    double p50 = done ? lat[done / 2] * 1e3 : 0, p99 = done ? lat[(size_t)(done * 0.99)] * 1e3 : 0;
    printf("putload size=%zu concurrency=%zu sync=%d ops=%zu created=%zu existed=%zu fails=%zu "
           "seconds=%.3f ops_per_s=%.1f mb_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n",
           size, conc, sync, done, created, existed, fails, dt, (double)done / dt,
           (double)done * (double)size / dt / 1e6, p50, p99);
    if (other_status)
        fprintf(stderr, "putload: unexpected HTTP status %ld\n", other_status);
    for (size_t s = 0; s < conc; s++)
        if (slots[s].easy)
            curl_easy_cleanup(slots[s].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    return fails ? 1 : 0;
}
