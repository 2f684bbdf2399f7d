/*
 * stamp.c - the X-CAS-Timestamp write stamp: the clock and the strict
 * parser (stamp.h says what a stamp is and why it exists).
 */
#include "stamp.h"
#include "num.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t cas_stamp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int cas_stamp_parse(const char *s, uint64_t now, bool is_delete, uint64_t *out, char *err,
                    size_t errlen)
{
    uint64_t v;
    if (!s || cas_parse_u64(s, &v) < 0 || v == 0) {
        snprintf(err, errlen,
                 CAS_STAMP_HEADER " \"%.40s\": want unix microseconds, decimal digits only",
                 s ? s : "");
        return -EINVAL;
    }
    if (v > now + CAS_STAMP_SKEW_US) {
        snprintf(err, errlen,
                 CAS_STAMP_HEADER " %" PRIu64 " is %" PRIu64 " s ahead of this node's clock "
                                  "(at most %" PRIu64 " s allowed): check the sender's clock",
                 v, (v - now) / 1000000, CAS_STAMP_SKEW_US / 1000000);
        return -EINVAL;
    }
    if (is_delete && v + CAS_STAMP_SKEW_US < now) {
        snprintf(err, errlen,
                 CAS_STAMP_HEADER " %" PRIu64 " of a DELETE is %" PRIu64 " s behind this node's "
                                  "clock (at most %" PRIu64 " s allowed): check the sender's clock",
                 v, (now - v) / 1000000, CAS_STAMP_SKEW_US / 1000000);
        return -EINVAL;
    }
    *out = v;
    return 0;
}
