/*
 * test_format.c - the bytes on disk (storaged/format.c): index records and
 * frame headers round-trip, every single flipped bit in either is caught,
 * the documented layout (little-endian integers, CRC-32 in front, "CASO"
 * magic) holds, and data file names parse only in their canonical form.
 */
#define _GNU_SOURCE
#include "format.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

static void sample_record(struct fmt_record *r, int type)
{
    memset(r, 0, sizeof(*r));
    r->type = (uint8_t)type;
    r->flags = PUT_MARKED;
    r->file = 49;
    r->algo = CAS_HASH_SHA256;
    r->offset = UINT64_C(0x0102030405060708);
    r->size = UINT64_C(0x1122334455667788);
    r->aux = UINT64_MAX - 5;
    for (int i = 0; i < CAS_MAX_DIGEST; i++)
        r->digest[i] = (unsigned char)(0xa0 + i);
}

static void sample_frame(struct fmt_frame *f)
{
    memset(f, 0, sizeof(*f));
    f->algo = CAS_HASH_SHA1;
    f->size = UINT64_C(1) << 40; /* 1 TiB */
    f->written_at = 1700000000;
    for (int i = 0; i < 20; i++)
        f->digest[i] = (unsigned char)(i * 13 + 1);
}

static void test_record_round_trip(void)
{
    for (int type = REC_HEADER; type <= REC_GC_CANCEL; type++) {
        struct fmt_record r, back;
        unsigned char buf[FMT_RECORD_SIZE];
        sample_record(&r, type);
        fmt_record_encode(&r, buf);
        memset(&back, 0x55, sizeof(back));
        CU_ASSERT_TRUE_FATAL(fmt_record_decode(buf, &back));
        CU_ASSERT_EQUAL(back.type, type);
        CU_ASSERT_EQUAL(back.flags, r.flags);
        CU_ASSERT_EQUAL(back.file, r.file);
        CU_ASSERT_EQUAL(back.algo, r.algo);
        CU_ASSERT_EQUAL(back.offset, r.offset);
        CU_ASSERT_EQUAL(back.size, r.size);
        CU_ASSERT_EQUAL(back.aux, r.aux);
        CU_ASSERT_EQUAL(memcmp(back.digest, r.digest, CAS_MAX_DIGEST), 0);
    }
    /* Extremes. */
    struct fmt_record r, back;
    unsigned char buf[FMT_RECORD_SIZE];
    memset(&r, 0xff, sizeof(r));
    fmt_record_encode(&r, buf);
    CU_ASSERT_TRUE(fmt_record_decode(buf, &back));
    CU_ASSERT_EQUAL(back.offset, UINT64_MAX);
    CU_ASSERT_EQUAL(back.size, UINT64_MAX);
    CU_ASSERT_EQUAL(back.type, 0xff);
}

/* Record layout: CRC-32 (zlib) of bytes 4..63 in bytes 0..3, little-endian
 * integers; documented in format.h. */
static void test_record_layout(void)
{
    struct fmt_record r;
    unsigned char buf[FMT_RECORD_SIZE];
    sample_record(&r, REC_PUT);
    fmt_record_encode(&r, buf);
    uint32_t crc = (uint32_t)crc32(0, buf + 4, FMT_RECORD_SIZE - 4);
    CU_ASSERT_EQUAL(buf[0], crc & 0xff);
    CU_ASSERT_EQUAL(buf[3], crc >> 24);
    static const unsigned char off_le[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    static const unsigned char size_le[8] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
    CU_ASSERT_PTR_NOT_NULL(memmem(buf, sizeof(buf), off_le, 8));
    CU_ASSERT_PTR_NOT_NULL(memmem(buf, sizeof(buf), size_le, 8));
    CU_ASSERT_PTR_NOT_NULL(memmem(buf, sizeof(buf), r.digest, CAS_MAX_DIGEST));
    /* Deterministic: the same record encodes to the same bytes. */
    unsigned char again[FMT_RECORD_SIZE];
    fmt_record_encode(&r, again);
    CU_ASSERT_EQUAL(memcmp(buf, again, FMT_RECORD_SIZE), 0);
}

static void test_record_every_bit_flip_caught(void)
{
    for (int type = REC_HEADER; type <= REC_GC_CANCEL; type++) {
        struct fmt_record r, back;
        unsigned char buf[FMT_RECORD_SIZE];
        sample_record(&r, type);
        fmt_record_encode(&r, buf);
        int missed = 0;
        for (int bit = 0; bit < FMT_RECORD_SIZE * 8; bit++) {
            buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (fmt_record_decode(buf, &back))
                missed++;
            buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        CU_ASSERT_EQUAL(missed, 0);
        CU_ASSERT_TRUE(fmt_record_decode(buf, &back));
    }
}

/* An all-zero block (a hole, a zero-filled tail) is never a record. */
static void test_record_zeros_rejected(void)
{
    unsigned char buf[FMT_RECORD_SIZE] = {0};
    struct fmt_record back;
    CU_ASSERT_FALSE(fmt_record_decode(buf, &back));
    struct fmt_record r;
    memset(&r, 0, sizeof(r)); /* type 0 with a valid CRC */
    fmt_record_encode(&r, buf);
    CU_ASSERT_FALSE(fmt_record_decode(buf, &back));
    memset(buf, 0xff, sizeof(buf));
    CU_ASSERT_FALSE(fmt_record_decode(buf, &back));
}

/* Byte 9 holds the frame's flags; with FMT_FRAME_STAMPED bytes 24..31 are
 * the write's stamp in microseconds (fmt_frame_stamp), without it they are
 * seconds and the frame has no stamp. A frame with no flags is byte for
 * byte what was written before the flags (bytes 9..11 zero); the flags are
 * covered by the header CRC and survive being marked removed in place. */
static void test_frame_flags(void)
{
    struct fmt_frame f, back;
    unsigned char buf[FMT_FRAME_HEADER];
    sample_frame(&f);
    fmt_frame_encode(&f, buf);
    CU_ASSERT_EQUAL(buf[9], 0);
    CU_ASSERT_EQUAL(buf[10], 0);
    CU_ASSERT_EQUAL(buf[11], 0);
    CU_ASSERT_TRUE_FATAL(fmt_frame_decode(buf, &back));
    CU_ASSERT_EQUAL(back.flags, 0);
    CU_ASSERT_EQUAL(fmt_frame_stamp(&back), 0);
    f.flags = FMT_FRAME_STAMPED | FMT_FRAME_COPY;
    f.written_at = UINT64_C(1796010706123456);
    fmt_frame_encode(&f, buf);
    CU_ASSERT_EQUAL(buf[9], FMT_FRAME_STAMPED | FMT_FRAME_COPY);
    CU_ASSERT_EQUAL(buf[10], 0);
    CU_ASSERT_EQUAL(buf[11], 0);
    uint64_t at24 = 0;
    for (int i = 7; i >= 0; i--)
        at24 = at24 << 8 | buf[24 + i];
    CU_ASSERT_EQUAL(at24, f.written_at);
    memset(&back, 0x55, sizeof(back));
    CU_ASSERT_TRUE_FATAL(fmt_frame_decode(buf, &back));
    CU_ASSERT_EQUAL(back.flags, FMT_FRAME_STAMPED | FMT_FRAME_COPY);
    CU_ASSERT_EQUAL(fmt_frame_stamp(&back), f.written_at);
    /* A flag bit changed is caught by the CRC. */
    buf[9] ^= FMT_FRAME_COPY;
    CU_ASSERT_FALSE(fmt_frame_decode(buf, &back));
    buf[9] ^= FMT_FRAME_COPY;
    /* Marked removed in place: still the same flags and stamp. */
    struct fmt_removal rm;
    CU_ASSERT_TRUE_FATAL(fmt_frame_kill(buf));
    memset(&back, 0, sizeof(back));
    CU_ASSERT_EQUAL(fmt_frame_at(buf, f.algo, UINT64_MAX, &back, &rm), FMT_AT_DEAD);
    CU_ASSERT_EQUAL(back.flags, FMT_FRAME_STAMPED | FMT_FRAME_COPY);
    CU_ASSERT_EQUAL(fmt_frame_stamp(&back), f.written_at);
}

static void test_frame_round_trip(void)
{
    struct fmt_frame f, back;
    unsigned char buf[FMT_FRAME_HEADER];
    sample_frame(&f);
    fmt_frame_encode(&f, buf);
    memset(&back, 0x55, sizeof(back));
    CU_ASSERT_TRUE_FATAL(fmt_frame_decode(buf, &back));
    CU_ASSERT_EQUAL(back.algo, f.algo);
    CU_ASSERT_EQUAL(back.size, f.size);
    CU_ASSERT_EQUAL(back.written_at, f.written_at);
    CU_ASSERT_EQUAL(memcmp(back.digest, f.digest, CAS_MAX_DIGEST), 0);
    /* The magic "CASO" leads, little-endian. */
    CU_ASSERT_EQUAL(memcmp(buf, "CASO", 4), 0);
    f.size = UINT64_MAX;
    f.algo = CAS_HASH_SHA256;
    memset(f.digest, 0xff, CAS_MAX_DIGEST);
    fmt_frame_encode(&f, buf);
    CU_ASSERT_TRUE(fmt_frame_decode(buf, &back));
    CU_ASSERT_EQUAL(back.size, UINT64_MAX);
    CU_ASSERT_EQUAL(back.algo, CAS_HASH_SHA256);
}

static void test_frame_every_bit_flip_caught(void)
{
    struct fmt_frame f, back;
    unsigned char buf[FMT_FRAME_HEADER];
    sample_frame(&f);
    fmt_frame_encode(&f, buf);
    int missed = 0;
    for (int bit = 0; bit < FMT_FRAME_HEADER * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        if (fmt_frame_decode(buf, &back)) {
            missed++;
            printf("\n  frame bit %d flipped, still decodes\n", bit);
        }
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    CU_ASSERT_EQUAL(missed, 0);
    CU_ASSERT_TRUE(fmt_frame_decode(buf, &back));
    unsigned char zeros[FMT_FRAME_HEADER] = {0};
    CU_ASSERT_FALSE(fmt_frame_decode(zeros, &back));
}

/* An index record is never mistaken for a frame header and vice versa. */
static void test_record_is_not_frame(void)
{
    struct fmt_record r;
    struct fmt_frame f;
    unsigned char buf[64];
    sample_record(&r, REC_PUT);
    fmt_record_encode(&r, buf);
    CU_ASSERT_FALSE(fmt_frame_decode(buf, &f));
    sample_frame(&f);
    fmt_frame_encode(&f, buf);
    CU_ASSERT_FALSE(fmt_record_decode(buf, &r));
}

static void sample_removal(struct fmt_removal *h, const unsigned char *entries, uint64_t count)
{
    memset(h, 0, sizeof(*h));
    h->algo = CAS_HASH_SHA1;
    h->kind = RM_GC;
    h->count = count;
    h->written_at = 1700000000;
    h->entries_crc = fmt_removal_entries_crc(entries, count);
}

/* A removal frame's header and entries round-trip, in the documented layout:
 * "CASR", header CRC-32, algo, kind, entries CRC-32, count, time; entries of
 * 32 digest bytes (SHA-1 zero-padded) and a little-endian offset. */
static void test_removal_round_trip(void)
{
    unsigned char entries[3 * FMT_REMOVAL_ENTRY], digest[CAS_MAX_DIGEST];
    unsigned char sha1[20];
    for (int i = 0; i < 20; i++)
        sha1[i] = (unsigned char)(0xc0 + i);
    uint64_t offs[3] = {0, 4096, UINT64_C(0x0102030405060708)};
    for (int i = 0; i < 3; i++) {
        sha1[0] = (unsigned char)i;
        fmt_removal_entry_put(entries, (uint64_t)i, sha1, 20, offs[i]);
    }
    /* Layout of entry 2: digest, zero padding, offset little-endian. */
    const unsigned char *e2 = entries + 2 * FMT_REMOVAL_ENTRY;
    CU_ASSERT_EQUAL(e2[0], 2);
    CU_ASSERT_EQUAL(e2[19], 0xc0 + 19);
    for (int i = 20; i < 32; i++)
        CU_ASSERT_EQUAL(e2[i], 0);
    CU_ASSERT_EQUAL(e2[32], 0x08);
    CU_ASSERT_EQUAL(e2[39], 0x01);
    for (int i = 0; i < 3; i++) {
        uint64_t off;
        fmt_removal_entry_get(entries, (uint64_t)i, digest, &off);
        CU_ASSERT_EQUAL(off, offs[i]);
        CU_ASSERT_EQUAL(digest[0], i);
        CU_ASSERT_EQUAL(memcmp(digest + 1, sha1 + 1, 19), 0);
    }
    struct fmt_removal h, back;
    sample_removal(&h, entries, 3);
    unsigned char buf[FMT_FRAME_HEADER];
    fmt_removal_encode(&h, buf);
    CU_ASSERT_EQUAL(memcmp(buf, "CASR", 4), 0);
    CU_ASSERT_EQUAL(buf[8], CAS_HASH_SHA1);
    CU_ASSERT_EQUAL(buf[9], RM_GC);
    CU_ASSERT_EQUAL(buf[16], 3);
    CU_ASSERT_EQUAL((uint32_t)crc32(crc32(0, buf, 4), buf + 8, 56),
                    (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
                        (uint32_t)buf[7] << 24);
    memset(&back, 0x55, sizeof(back));
    CU_ASSERT_TRUE_FATAL(fmt_removal_decode(buf, &back));
    CU_ASSERT_EQUAL(back.algo, h.algo);
    CU_ASSERT_EQUAL(back.kind, h.kind);
    CU_ASSERT_EQUAL(back.count, 3);
    CU_ASSERT_EQUAL(back.written_at, h.written_at);
    CU_ASSERT_EQUAL(back.entries_crc, fmt_removal_entries_crc(entries, 3));
    CU_ASSERT_EQUAL(fmt_removal_len(3), 64 + 3 * 40);
    /* A damaged entry fails the entries' CRC. */
    entries[FMT_REMOVAL_ENTRY + 33] ^= 1;
    CU_ASSERT_NOT_EQUAL(fmt_removal_entries_crc(entries, 3), back.entries_crc);
}

/* Every flipped bit of a removal frame header is caught; counts of 0 and
 * above FMT_REMOVAL_MAX, and non-zero padding, are refused even with a
 * good CRC. */
static void test_removal_rejects(void)
{
    unsigned char entries[FMT_REMOVAL_ENTRY] = {1, 2, 3};
    struct fmt_removal h, back;
    sample_removal(&h, entries, 1);
    unsigned char buf[FMT_FRAME_HEADER];
    fmt_removal_encode(&h, buf);
    int missed = 0;
    for (int bit = 0; bit < FMT_FRAME_HEADER * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        missed += fmt_removal_decode(buf, &back);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    CU_ASSERT_EQUAL(missed, 0);
    CU_ASSERT_TRUE(fmt_removal_decode(buf, &back));
    h.count = 0;
    fmt_removal_encode(&h, buf);
    CU_ASSERT_FALSE(fmt_removal_decode(buf, &back));
    h.count = (uint64_t)FMT_REMOVAL_MAX + 1;
    fmt_removal_encode(&h, buf);
    CU_ASSERT_FALSE(fmt_removal_decode(buf, &back));
    h.count = FMT_REMOVAL_MAX;
    fmt_removal_encode(&h, buf);
    CU_ASSERT_TRUE(fmt_removal_decode(buf, &back));
    /* Padding must be zero: set a byte and fix the CRC by hand. */
    buf[40] = 1;
    uLong c = crc32(crc32(0, buf, 4), buf + 8, 56);
    for (int i = 0; i < 4; i++)
        buf[4 + i] = (unsigned char)(c >> (8 * i));
    CU_ASSERT_FALSE(fmt_removal_decode(buf, &back));
}

/* The removal's stamp (a client delete's X-CAS-Timestamp, unix
 * microseconds) is header bytes 32..39, little-endian, covered by the
 * header CRC; a frame written before it was kept (zeros there) decodes with
 * stamp 0, and fmt_removal_stamp then stands written_at * 10^6 for it.
 * Bytes 40..63 stay padding that must be zero. */
static void test_removal_stamp(void)
{
    unsigned char entries[FMT_REMOVAL_ENTRY] = {7};
    struct fmt_removal h, back;
    unsigned char buf[FMT_FRAME_HEADER];
    sample_removal(&h, entries, 1);
    h.kind = RM_CLIENT;
    h.stamp = UINT64_C(1700001800123456); /* a balancer's clock, 30 min ahead */
    fmt_removal_encode(&h, buf);
    CU_ASSERT_EQUAL(buf[32], 0x40);
    uint64_t got = 0;
    for (int i = 0; i < 8; i++)
        got |= (uint64_t)buf[32 + i] << (8 * i);
    CU_ASSERT_EQUAL(got, h.stamp);
    for (int i = 40; i < FMT_FRAME_HEADER; i++)
        CU_ASSERT_EQUAL(buf[i], 0);
    memset(&back, 0x55, sizeof(back));
    CU_ASSERT_TRUE_FATAL(fmt_removal_decode(buf, &back));
    CU_ASSERT_EQUAL(back.stamp, h.stamp);
    CU_ASSERT_EQUAL(back.written_at, h.written_at);
    CU_ASSERT_EQUAL(fmt_removal_stamp(&back), h.stamp);
    /* Every flipped bit of the stamp is caught by the header CRC. */
    int missed = 0;
    for (int bit = 32 * 8; bit < 40 * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        missed += fmt_removal_decode(buf, &back);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    CU_ASSERT_EQUAL(missed, 0);
    /* A frame from before the stamp: zeros at 32..63 read as stamp 0, and
     * its stamp is its whole seconds. */
    h.stamp = 0;
    fmt_removal_encode(&h, buf);
    for (int i = 32; i < FMT_FRAME_HEADER; i++)
        CU_ASSERT_EQUAL(buf[i], 0);
    CU_ASSERT_TRUE_FATAL(fmt_removal_decode(buf, &back));
    CU_ASSERT_EQUAL(back.stamp, 0);
    CU_ASSERT_EQUAL(fmt_removal_stamp(&back), UINT64_C(1700000000) * 1000000);
    /* The highest stamp round-trips; a written_at too large for
     * microseconds saturates instead of wrapping. */
    h.stamp = UINT64_MAX;
    fmt_removal_encode(&h, buf);
    CU_ASSERT_TRUE(fmt_removal_decode(buf, &back));
    CU_ASSERT_EQUAL(back.stamp, UINT64_MAX);
    back.stamp = 0;
    back.written_at = UINT64_MAX / 1000;
    CU_ASSERT_EQUAL(fmt_removal_stamp(&back), UINT64_MAX);
}

/* Object frames, removal frames and index records are never taken for one
 * another; fmt_frame_at tells them apart and checks that a frame fits. */
static void test_removal_not_object(void)
{
    unsigned char entries[FMT_REMOVAL_ENTRY] = {0};
    struct fmt_removal h, rm;
    struct fmt_frame f;
    struct fmt_record r;
    unsigned char buf[FMT_FRAME_HEADER];
    sample_removal(&h, entries, 1);
    fmt_removal_encode(&h, buf);
    CU_ASSERT_FALSE(fmt_frame_decode(buf, &f));
    CU_ASSERT_FALSE(fmt_record_decode(buf, &r));
    CU_ASSERT_EQUAL(fmt_frame_at(buf, CAS_HASH_SHA1, fmt_removal_len(1), &f, &rm), FMT_AT_REMOVAL);
    CU_ASSERT_EQUAL(fmt_frame_at(buf, CAS_HASH_SHA1, fmt_removal_len(1) - 1, &f, &rm), FMT_AT_NONE);
    CU_ASSERT_EQUAL(fmt_frame_at(buf, CAS_HASH_SHA256, 1000, &f, &rm), FMT_AT_NONE);
    sample_frame(&f);
    f.size = 10;
    fmt_frame_encode(&f, buf);
    CU_ASSERT_FALSE(fmt_removal_decode(buf, &rm));
    CU_ASSERT_EQUAL(fmt_frame_at(buf, CAS_HASH_SHA1, fmt_frame_len(10), &f, &rm), FMT_AT_OBJECT);
    CU_ASSERT_EQUAL(fmt_frame_at(buf, CAS_HASH_SHA1, fmt_frame_len(10) - 1, &f, &rm), FMT_AT_NONE);
    sample_record(&r, REC_PUT);
    fmt_record_encode(&r, buf);
    CU_ASSERT_FALSE(fmt_removal_decode(buf, &rm));
}

/* fmt_next_frame finds a removal frame header after junk as it finds an
 * object frame's. */
static void test_next_frame_finds_removal(void)
{
    char path[] = "/tmp/test_format.XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    unlink(path);
    unsigned char junk[300];
    memset(junk, 'C', sizeof(junk));
    memcpy(junk + 10, "CASR", 4); /* a magic with no valid header */
    unsigned char entries[FMT_REMOVAL_ENTRY] = {9};
    struct fmt_removal h;
    sample_removal(&h, entries, 1);
    unsigned char hdr[FMT_FRAME_HEADER];
    fmt_removal_encode(&h, hdr);
    CU_ASSERT_EQUAL(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    CU_ASSERT_EQUAL(pwrite(fd, hdr, sizeof(hdr), 123), (ssize_t)sizeof(hdr));
    CU_ASSERT_EQUAL(pwrite(fd, entries, sizeof(entries), 123 + 64), (ssize_t)sizeof(entries));
    unsigned char buf[4096];
    CU_ASSERT_EQUAL(fmt_next_frame(fd, 0, 300, buf, sizeof(buf)), 123);
    CU_ASSERT_EQUAL(fmt_next_frame(fd, 124, 300, buf, sizeof(buf)), 300);
    close(fd);
}

static void test_datafile_names(void)
{
    char name[32];
    fmt_datafile_name(0, 0, name, sizeof(name));
    CU_ASSERT_STRING_EQUAL(name, "data-00.g0");
    fmt_datafile_name(7, 3, name, sizeof(name));
    CU_ASSERT_STRING_EQUAL(name, "data-07.g3");
    fmt_datafile_name(49, UINT64_MAX, name, sizeof(name));
    CU_ASSERT_STRING_EQUAL(name, "data-49.g18446744073709551615");
    uint64_t gens[] = {0, 1, 9, 10, 12345, UINT64_C(1) << 63, UINT64_MAX};
    for (unsigned n = 0; n < FMT_NFILES; n++) {
        for (size_t g = 0; g < sizeof(gens) / sizeof(gens[0]); g++) {
            unsigned pn = 999;
            uint64_t pg = 7;
            fmt_datafile_name(n, gens[g], name, sizeof(name));
            CU_ASSERT_TRUE(fmt_datafile_parse(name, &pn, &pg));
            CU_ASSERT_EQUAL(pn, n);
            CU_ASSERT_EQUAL(pg, gens[g]);
        }
    }
}

static void test_datafile_parse_rejects(void)
{
    static const char *bad[] = {
        "data-50.g0",
        "data-99.g1",
        "data-1.g0",
        "data-001.g0",
        "data-01.g",
        "data-01.g01",
        "data-01.g1x",
        "data-01",
        "data-01.",
        "index",
        "LOCK",
        "node",
        "data-01.g1.tmp",
        "xdata-01.g1",
        "data-01.g-1",
        "data-+1.g1",
        "data- 1.g1",
        "data-01.g 1",
        "data-01.g+1",
        "data-01.G1",
        "DATA-01.g1",
        "data-01.g18446744073709551616",
        "",
        "data-ab.g1",
        "index.new",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned n = 123;
        uint64_t g = 456;
        bool ok = fmt_datafile_parse(bad[i], &n, &g);
        CU_ASSERT_FALSE(ok);
        if (ok)
            printf("\n  \"%s\" parsed as a data file name\n", bad[i]);
        CU_ASSERT_EQUAL(n, 123);
        CU_ASSERT_EQUAL(g, 456);
    }
}

/* fmt_open_regular opens regular files only: every other kind of entry
 * is refused by name and kind, and a missing one is an error unless
 * O_CREAT asks to create it. */
static void test_open_regular_only(void)
{
    char dir[] = "/tmp/cas-test-format-XXXXXX", path[256], err[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CU_ASSERT_FATAL(dirfd >= 0);
    snprintf(path, sizeof(path), "%s/sub", dir);
    CU_ASSERT_EQUAL(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/sock", dir);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    CU_ASSERT_EQUAL(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(path, sizeof(path), "%s/link", dir);
    CU_ASSERT_EQUAL(symlink("/etc/passwd", path), 0);

    static const struct {
        const char *name, *kind;
    } cases[] = {{"sub", "is a directory"}, {"sock", "is a socket"}, {"link", "is a symbolic link"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(fmt_open_regular(dirfd, dir, cases[i].name, O_RDWR | O_CREAT, err,
                                         sizeof(err)),
                        -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].kind));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].name));
    }
    /* The kinds the daemon cannot meet here are worded too. */
    CU_ASSERT_EQUAL(fmt_not_regular(dir, "dev", S_IFCHR, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a device"));
    CU_ASSERT_EQUAL(fmt_not_regular(dir, "blk", S_IFBLK, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a device"));
    /* Missing: an error naming it, unless asked to create it. */
    CU_ASSERT_EQUAL(fmt_open_regular(dirfd, dir, "index", O_RDONLY, err, sizeof(err)), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "index"));
    int fd = fmt_open_regular(dirfd, dir, "index", O_RDWR | O_CREAT, err, sizeof(err));
    CU_ASSERT(fd >= 0);
    /* Blocking I/O again, as documented. */
    if (fd >= 0) {
        CU_ASSERT_FALSE(fcntl(fd, F_GETFL) & O_NONBLOCK);
        close(fd);
    }
    close(s);
    close(dirfd);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("format", NULL, NULL);
    CU_add_test(s, "record round trip", test_record_round_trip);
    CU_add_test(s, "only regular files opened", test_open_regular_only);
    CU_add_test(s, "record layout", test_record_layout);
    CU_add_test(s, "record: every bit flip caught", test_record_every_bit_flip_caught);
    CU_add_test(s, "record: zeros rejected", test_record_zeros_rejected);
    CU_add_test(s, "frame round trip", test_frame_round_trip);
    CU_add_test(s, "frame flags: stamp and copy", test_frame_flags);
    CU_add_test(s, "frame: every bit flip caught", test_frame_every_bit_flip_caught);
    CU_add_test(s, "record and frame not confused", test_record_is_not_frame);
    CU_add_test(s, "removal frame round trip", test_removal_round_trip);
    CU_add_test(s, "removal frame: damage and bad counts refused", test_removal_rejects);
    CU_add_test(s, "removal frame: the delete's stamp", test_removal_stamp);
    CU_add_test(s, "removal frame, object frame, record not confused", test_removal_not_object);
    CU_add_test(s, "next frame finds a removal frame", test_next_frame_finds_removal);
    CU_add_test(s, "data file names", test_datafile_names);
    CU_add_test(s, "data file names: rejects", test_datafile_parse_rejects);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
