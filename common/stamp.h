/*
 * stamp.h - write stamps: the X-CAS-Timestamp header a balancer puts on
 * every client write (PUT, POST, Cask POST) and client DELETE it sends to
 * its backends, so that a storaged orders a client write against a
 * delete's tombstone by when the client's requests were sent, not by when
 * they reached it (docs/OPERATIONS.md, "What a DELETE promises"; the
 * answer OpenStack Swift gives with its X-Timestamp).
 *
 * A stamp is unix time in microseconds (CLOCK_REALTIME), written as plain
 * decimal digits. A storaged takes its own clock at the request head as
 * the stamp of a request that carries none (a client talking to it
 * directly).
 */
#ifndef CAS_STAMP_H
#define CAS_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAS_STAMP_HEADER "X-CAS-Timestamp"

/* How far a stamp may be from the receiver's clock: ahead, for any
 * request (a stamp far in the future would let a write outrank every
 * later delete); behind, for a DELETE (its tombstone lives
 * DISK_TOMBSTONE_TTL from its stamp, so a stamp far in the past would
 * leave it expired at once). 1 hour in microseconds. */
#define CAS_STAMP_SKEW_US (UINT64_C(3600) * 1000000)

/* Now, in unix microseconds. */
uint64_t cas_stamp_now(void);

/*
 * Checks an X-CAS-Timestamp value against now (unix microseconds):
 * exactly 1 to 20 ASCII digits (no sign, space or other character), a
 * value from 1 up to now + CAS_STAMP_SKEW_US, and, when is_delete, not
 * below now - CAS_STAMP_SKEW_US. 0 with *out set, or -EINVAL with err
 * saying why (the caller answers 400 and changes nothing).
 */
int cas_stamp_parse(const char *s, uint64_t now, bool is_delete, uint64_t *out, char *err,
                    size_t errlen);

#endif
