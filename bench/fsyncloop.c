/*
 * fsyncloop.c - the reference for durable small writes: append SIZE bytes to
 * a file and fdatasync it, COUNT times in a plain loop, and print the rate.
 * Appending (not overwriting) matches what the store does to its data
 * files, so each fdatasync also carries the file's new size.
 *
 *   cas-bench-fsyncloop FILE [COUNT] [SIZE]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [COUNT] [SIZE]\n", argv[0]);
        return 2;
    }
    long count = argc > 2 ? atol(argv[2]) : 5000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 4096;
    char *buf = malloc(size);
    if (!buf)
        return 1;
    for (size_t i = 0; i < size; i++)
        buf[i] = (char)(i * 131 + 7);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    double t0 = now();
    off_t off = 0;
    for (long i = 0; i < count; i++) {
        memcpy(buf, &i, sizeof(i));
        if (pwrite(fd, buf, size, off) != (ssize_t)size || fdatasync(fd) < 0) {
            fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
            return 1;
        }
        off += (off_t)size;
    }
    double dt = now() - t0;
    close(fd);
    printf("fsyncloop count=%ld size=%zu seconds=%.3f ops_per_s=%.1f\n", count, size, dt,
           (double)count / dt);
    return 0;
}
