/*
 * test_s3_index.c - CUnit suite for the S3 backend's local journal,
 * s3-index (storaged/s3_store.c, s3_replay): what a replay rebuilds (objects,
 * the GC cycle and its marks, tombstones, quarantined keys), a torn tail cut,
 * a damaged record followed by good ones or a bad header refused with the
 * file left as it was. Also the per-block CRC-32C table a write builds
 * (storaged/s3_sums.c): one CRC-32C per 1 MiB block whatever the chunks the
 * body arrives in, the last block shorter, only objects over one block.
 * No bucket is needed: the store is built by hand.
 */
#include "s3_internal.h"
#include "crc32c.h"

#include <endian.h>

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-s3index-XXXXXX";

static struct s3_store *new_store(void)
{
    struct s3_store *st = calloc(1, sizeof(*st));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    st->base.algo = cas_hash_by_name("sha1");
    st->dir = dir;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    st->tombstone_ttl = S3_TOMBSTONE_TTL;
    CU_ASSERT_FATAL(objtab_init(&st->tab, 20) == 0 && objtab_init(&st->tombs, 20) == 0);
    return st;
}

static void free_store(struct s3_store *st)
{
    objtab_destroy(&st->tab);
    objtab_destroy(&st->tombs);
    close(st->dirfd);
    free(st);
}

static void digest_of(int n, unsigned char d[20])
{
    memset(d, 0, 20);
    d[0] = (unsigned char)n;
    d[19] = 0xa5;
}

static struct fmt_record rec(int type, int n, uint64_t size, uint64_t aux)
{
    struct fmt_record r;
    memset(&r, 0, sizeof(r));
    r.type = (uint8_t)type;
    r.algo = (uint8_t)cas_hash_by_name("sha1")->id;
    if (n)
        digest_of(n, r.digest);
    r.size = size;
    r.aux = aux;
    return r;
}

static struct fmt_record header(void)
{
    struct fmt_record r = rec(REC_HEADER, 0, 0, FMT_INDEX_VERSION);
    memcpy(r.digest, S3_INDEX_MAGIC, 8);
    return r;
}

/* Writes the records (then tail bytes of junk) to a new s3-index; its fd. */
static int write_index(const struct fmt_record *r, size_t n, const void *tail, size_t taillen)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, S3_INDEX);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    unsigned char buf[FMT_RECORD_SIZE];
    for (size_t i = 0; i < n; i++) {
        fmt_record_encode(&r[i], buf);
        CU_ASSERT_FATAL(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    }
    if (taillen)
        CU_ASSERT_FATAL(write(fd, tail, taillen) == (ssize_t)taillen);
    return fd;
}

static uint64_t file_size(int fd)
{
    struct stat sb;
    fstat(fd, &sb);
    return (uint64_t)sb.st_size;
}

static bool present(struct s3_store *st, int n, uint64_t *size, unsigned *flags)
{
    unsigned char d[20];
    digest_of(n, d);
    struct objtab_entry en;
    uint32_t e = objtab_find(&st->tab, d);
    if (e == OBJTAB_NONE || !objtab_get(&st->tab, e, &en))
        return false;
    if (size)
        *size = en.size;
    if (flags)
        *flags = en.flags;
    return true;
}

static void test_replay_state(void)
{
    uint64_t now = (uint64_t)time(NULL);
    struct fmt_record r[] = {
        header(),
        rec(REC_PUT, 1, 10, 0),
        rec(REC_PUT, 2, 20, 0),
        rec(REC_PUT, 3, 30, 0),
        rec(REC_GC_BEGIN, 0, 0, 77),
        rec(REC_UNMARK, 1, 0, 0),
        rec(REC_DEL, 2, 0, DEL_CLIENT),
        rec(REC_TOMB, 2, 0, now),
        rec(REC_PUT, 4, 40, 0), /* written during the cycle: not marked */
        rec(REC_DEL, 5, 0, DEL_CORRUPT),
    };
    r[7].flags = TOMB_DELETED;
    int fd = write_index(r, sizeof(r) / sizeof(r[0]), NULL, 0);
    struct s3_store *st = new_store();
    uint64_t end = 0, size = 0;
    unsigned flags = 0;
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(s3_replay(st, fd, &end, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(end, sizeof(r) / sizeof(r[0]) * FMT_RECORD_SIZE);
    CU_ASSERT_EQUAL(st->objects, 3);
    CU_ASSERT_EQUAL(st->bytes, 80);
    CU_ASSERT(st->gc_active);
    CU_ASSERT_EQUAL(st->gc_id, 77);
    CU_ASSERT(present(st, 1, &size, &flags) && size == 10 && !(flags & OBJTAB_MARKED));
    CU_ASSERT(!present(st, 2, NULL, NULL));
    CU_ASSERT(present(st, 3, &size, &flags) && (flags & OBJTAB_MARKED));
    CU_ASSERT(present(st, 4, &size, &flags) && !(flags & OBJTAB_MARKED));
    CU_ASSERT_EQUAL(st->garbage_objects, 1); /* 3 only */
    CU_ASSERT_EQUAL(st->garbage_bytes, 30);
    unsigned char d[20];
    struct objtab_entry en;
    digest_of(2, d);
    uint32_t t = objtab_find(&st->tombs, d);
    CU_ASSERT(t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_DELETED);
    digest_of(5, d);
    t = objtab_find(&st->tombs, d);
    CU_ASSERT(t != OBJTAB_NONE && objtab_get(&st->tombs, t, &en) && en.flags == TOMB_QUARANTINED);
    free_store(st);
    close(fd);
}

static void test_gc_end_keeps_what_was_not_deleted(void)
{
    /* gc/end writes a DEL for each object it removed before GC_END: what is
     * still marked at GC_END was not removed from the bucket, and stays. */
    struct fmt_record r[] = {
        header(),
        rec(REC_PUT, 1, 10, 0),
        rec(REC_PUT, 2, 20, 0),
        rec(REC_GC_BEGIN, 0, 0, 9),
        rec(REC_DEL, 1, 0, DEL_CLIENT),
        rec(REC_GC_END, 0, 0, 9),
        rec(REC_PUT, 1, 10, 0), /* a new PUT of the same bytes brings it back */
    };
    int fd = write_index(r, sizeof(r) / sizeof(r[0]), NULL, 0);
    struct s3_store *st = new_store();
    uint64_t end;
    unsigned flags = 9;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(s3_replay(st, fd, &end, err, sizeof(err)), 0);
    CU_ASSERT(!st->gc_active);
    CU_ASSERT_EQUAL(st->objects, 2);
    CU_ASSERT(present(st, 2, NULL, &flags) && flags == 0);
    CU_ASSERT(present(st, 1, NULL, &flags) && flags == 0);
    CU_ASSERT_EQUAL(st->garbage_objects, 0);
    free_store(st);
    close(fd);
}

static void test_torn_tail_cut(void)
{
    struct fmt_record r[] = {header(), rec(REC_PUT, 1, 10, 0), rec(REC_PUT, 2, 20, 0)};
    /* A half-written record. */
    int fd = write_index(r, 3, "0123456789012345678901234567890", 31);
    struct s3_store *st = new_store();
    uint64_t end;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(s3_replay(st, fd, &end, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(end, 3 * FMT_RECORD_SIZE);
    CU_ASSERT_EQUAL(file_size(fd), 3 * FMT_RECORD_SIZE);
    CU_ASSERT_EQUAL(st->objects, 2);
    free_store(st);
    close(fd);

    /* A whole last record whose checksum fails: cut too. */
    unsigned char junk[FMT_RECORD_SIZE];
    memset(junk, 0x5a, sizeof(junk));
    fd = write_index(r, 3, junk, sizeof(junk));
    st = new_store();
    CU_ASSERT_EQUAL_FATAL(s3_replay(st, fd, &end, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(file_size(fd), 3 * FMT_RECORD_SIZE);
    free_store(st);
    close(fd);
}

static void test_damage_refused(void)
{
    struct fmt_record r[] = {header(), rec(REC_PUT, 1, 10, 0), rec(REC_PUT, 2, 20, 0)};
    int fd = write_index(r, 3, NULL, 0);
    /* Damage the middle record: good ones follow it. */
    unsigned char b = 0xff;
    CU_ASSERT_FATAL(pwrite(fd, &b, 1, FMT_RECORD_SIZE + 9) == 1);
    struct s3_store *st = new_store();
    uint64_t end;
    char err[512] = "";
    CU_ASSERT_EQUAL(s3_replay(st, fd, &end, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "damaged record"));
    CU_ASSERT_EQUAL(file_size(fd), 3 * FMT_RECORD_SIZE); /* nothing changed */
    free_store(st);
    close(fd);

    /* A disk store's index header (CASINDEX) is not an S3 index. */
    struct fmt_record h = header();
    memcpy(h.digest, FMT_INDEX_MAGIC, 8);
    fd = write_index(&h, 1, NULL, 0);
    st = new_store();
    CU_ASSERT_EQUAL(s3_replay(st, fd, &end, err, sizeof(err)), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not an S3 backend index"));
    free_store(st);
    close(fd);

    /* Records of another hash algorithm. */
    struct fmt_record other[] = {header(), rec(REC_PUT, 1, 10, 0)};
    other[1].algo = (uint8_t)cas_hash_by_name("sha256")->id;
    fd = write_index(other, 2, NULL, 0);
    st = new_store();
    CU_ASSERT_EQUAL(s3_replay(st, fd, &end, err, sizeof(err)), -EINVAL);
    free_store(st);
    close(fd);

    /* An unknown record type. */
    struct fmt_record unk[] = {header(), rec(99, 1, 10, 0)};
    fd = write_index(unk, 2, NULL, 0);
    st = new_store();
    CU_ASSERT_EQUAL(s3_replay(st, fd, &end, err, sizeof(err)), -EINVAL);
    free_store(st);
    close(fd);
}

/* The table of size bytes fed in chunks of chunk bytes equals the CRC-32C
 * of each block computed in one go. */
static void check_sums(size_t size, size_t chunk)
{
    unsigned char *data = malloc(size ? size : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)(i * 131 + (i >> 11));
    struct s3_sums t = {0};
    for (size_t off = 0; off < size; off += chunk)
        CU_ASSERT_EQUAL_FATAL(
            s3_sums_update(&t, data + off, size - off < chunk ? size - off : chunk), 0);
    CU_ASSERT_EQUAL(s3_sums_finish(&t), 0);
    CU_ASSERT_EQUAL(t.n, (size_t)fmt_blocks(size));
    for (size_t b = 0; b < t.n && b < fmt_blocks(size); b++) {
        size_t off = b * FMT_BLOCK, len = size - off < FMT_BLOCK ? size - off : FMT_BLOCK;
        CU_ASSERT_EQUAL(le32toh(t.v[b]), cas_crc32c(0, data + off, len));
    }
    s3_sums_free(&t);
    free(data);
}

static void test_block_sums(void)
{
    check_sums(3 * FMT_BLOCK + 12345, 65536); /* the routes' chunks */
    check_sums(3 * FMT_BLOCK + 12345, 4093);  /* chunks across block ends */
    check_sums(2 * FMT_BLOCK, 3 * FMT_BLOCK); /* ends on a block end: no empty block */
    check_sums(FMT_BLOCK + 1, 1000);          /* a last block of one byte */
    CU_ASSERT_FALSE(s3_sums_wanted(0));
    CU_ASSERT_FALSE(s3_sums_wanted(FMT_BLOCK));
    CU_ASSERT_TRUE(s3_sums_wanted(FMT_BLOCK + 1));
}

/* tombs/<hex>.deleted's body (docs/FORMAT.md "The S3 backend"): the delete's
 * stamp in decimal microseconds and a newline; empty (written before the
 * stamp was kept) reads as 0, today's meaning; anything else is refused with
 * 0, never a guess. */
static void test_tomb_stamp_body(void)
{
    uint64_t v = 99;
    CU_ASSERT_EQUAL(s3_tomb_stamp_parse("1796012068729869\n", 17, &v), 0);
    CU_ASSERT_EQUAL(v, UINT64_C(1796012068729869));
    CU_ASSERT_EQUAL(s3_tomb_stamp_parse("1796012068729869", 16, &v), 0);
    CU_ASSERT_EQUAL(v, UINT64_C(1796012068729869));
    v = 99;
    CU_ASSERT_EQUAL(s3_tomb_stamp_parse("", 0, &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(s3_tomb_stamp_parse("\n", 1, &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    char max[32];
    snprintf(max, sizeof(max), "%llu", (unsigned long long)TIME_MAX);
    CU_ASSERT_EQUAL(s3_tomb_stamp_parse(max, strlen(max), &v), 0);
    CU_ASSERT_EQUAL(v, TIME_MAX);
    snprintf(max, sizeof(max), "%llu", (unsigned long long)TIME_MAX + 1);
    const char *bad[] = {"0\n",           "-1\n",   " 12\n", "12 \n",
                         "0x10\n",        "12\n\n", "1e6\n", "18446744073709551616\n",
                         "not a stamp\n", max};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 99;
        CU_ASSERT_EQUAL(s3_tomb_stamp_parse(bad[i], strlen(bad[i]), &v), -EINVAL);
        CU_ASSERT_EQUAL(v, 0);
    }
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("s3_index", NULL, NULL);
    CU_add_test(s, "replay: objects, GC cycle and marks, tombstones, quarantine",
                test_replay_state);
    CU_add_test(s, "replay: GC_END keeps what has no DEL", test_gc_end_keeps_what_was_not_deleted);
    CU_add_test(s, "replay: a torn tail is cut", test_torn_tail_cut);
    CU_add_test(s, "replay: damage before good records, bad header, other algo: refused",
                test_damage_refused);
    CU_add_test(s, "block table: one CRC-32C per block, whatever the chunks", test_block_sums);
    CU_add_test(s, "tombs/<hex>.deleted body: the delete's stamp", test_tomb_stamp_body);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, S3_INDEX);
    unlink(path);
    rmdir(dir);
    return failed ? 1 : 0;
}
