/*
 * prom.c - Prometheus text-format helpers shared by the daemons (prom.h).
 */
#define _GNU_SOURCE
#include "prom.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void prom_label_value(struct cas_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            cas_buf_puts(out, "\\\\");
        else if (*s == '"')
            cas_buf_puts(out, "\\\"");
        else if (*s == '\n')
            cas_buf_puts(out, "\\n");
        else
            cas_buf_append(out, s, 1);
    }
}

void prom_header(struct cas_buf *out, const char *name, const char *type, const char *help)
{
    cas_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Seconds since the epoch at which the system booted (btime of /proc/stat). */
static int boot_time(uint64_t *out)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -errno;
    char line[256];
    int rc = -ENOENT;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %" SCNu64, out) == 1) {
            rc = 0;
            break;
        }
    fclose(f);
    return rc;
}

void prom_process_metrics(struct cas_buf *out)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* Fields after the command name, which may hold spaces and ')'. */
        const char *p = strrchr(buf, ')');
        unsigned long utime, stime;
        unsigned long long start, vsize;
        long rss;
        if (p && tick > 0 &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                   "%llu %llu %ld",
                   &utime, &stime, &start, &vsize, &rss) == 5) {
            prom_header(out, "process_cpu_seconds_total", "counter",
                        "Total user and system CPU time spent in seconds.");
            cas_buf_printf(out, "process_cpu_seconds_total %.2f\n",
                           (double)(utime + stime) / (double)tick);
            prom_header(out, "process_resident_memory_bytes", "gauge",
                        "Resident memory size in bytes.");
            cas_buf_printf(out, "process_resident_memory_bytes %lld\n", (long long)rss * page);
            prom_header(out, "process_virtual_memory_bytes", "gauge",
                        "Virtual memory size in bytes.");
            cas_buf_printf(out, "process_virtual_memory_bytes %llu\n", vsize);
            uint64_t btime;
            if (boot_time(&btime) == 0) {
                prom_header(out, "process_start_time_seconds", "gauge",
                            "Start time of the process since unix epoch in seconds.");
                cas_buf_printf(out, "process_start_time_seconds %.2f\n",
                               (double)btime + (double)start / (double)tick);
            }
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long fds = -1; /* the directory's own descriptor is not one of ours */
        while (readdir(d))
            fds++;
        closedir(d);
        fds -= 2; /* "." and ".." */
        prom_header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        cas_buf_printf(out, "process_open_fds %ld\n", fds < 0 ? 0 : fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        prom_header(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        cas_buf_printf(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    prom_header(out, "cas_build_info", "gauge",
                "The program and version of this daemon (value 1).");
    cas_buf_puts(out, "cas_build_info{program=\"");
    prom_label_value(out, program_invocation_short_name);
    cas_buf_puts(out, "\",version=\"");
    prom_label_value(out, CAS_VERSION);
    cas_buf_puts(out, "\"} 1\n");
}
