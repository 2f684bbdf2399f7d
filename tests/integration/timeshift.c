/*
 * timeshift.c - an LD_PRELOAD library for the integration tests: the wall
 * clock of the process it is loaded into runs $CAS_TIMESHIFT_S seconds
 * ahead (negative: behind). time(), gettimeofday() and clock_gettime() of
 * the wall clocks (CLOCK_REALTIME and its coarse variant) are shifted; the
 * monotonic clocks are left alone, so timeouts and durations are unchanged.
 * A test starts a daemon with it to see what a store does when it starts
 * days later than it stopped (a tombstone expired: test_adoption_order.py)
 * without waiting for days. Everything else goes to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift_s(void)
{
    static long long shift;
    static int known;
    if (!known) {
        const char *s = getenv("CAS_TIMESHIFT_S");
        shift = s ? strtoll(s, NULL, 10) : 0;
        known = 1;
    }
    return shift;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(clk, ts);
    if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE))
        ts->tv_sec += (time_t)shift_s();
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}
