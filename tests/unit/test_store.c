/*
 * test_store.c - CUnit suite for storaged/store.c: the store_* wrappers
 * check a backend's optional operations once (an absent one gives -ENOTSUP
 * and a message naming the backend, or its documented harmless default),
 * and pass everything else through unchanged. A minimal fake backend (only
 * the required operations) proves a second backend plugs in without the
 * routes looking at s->ops.
 */
#include "buf.h"
#include "hash.h"
#include "objtab.h"
#include "store.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <string.h>

static int calls;

static int fake_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                         uint64_t *bytes, char *err, size_t errlen)
{
    (void)s, (void)err, (void)errlen;
    calls++;
    *id_out = id ? id : 42;
    *objects = *bytes = 0;
    return 0;
}

static int fake_list(struct store *s, const unsigned char *after, enum store_list_state st,
                     uint64_t min, uint64_t max, struct objtab_page *page, char *err, size_t errlen)
{
    (void)s, (void)st, (void)min, (void)max;
    calls++;
    if (after && after[0] == 0x11) {
        snprintf(err, errlen, "bad page");
        return -EIO;
    }
    /* A page of one key, more to come: the wrapper keeps it as the cursor. */
    objtab_page_start(page, after);
    memset(page->recs, 0x11, page->stride);
    page->n = 1;
    page->has_limit = page->cap == 2; /* store_list's max 1 is a page of 2 */
    return 0;
}

static void fake_info(struct store *s, struct store_info *o)
{
    (void)s;
    memset(o, 0, sizeof(*o));
    o->faulted = true;
}

static const struct store_ops fake_ops = {
    .name = "fake", .gc_begin = fake_gc_begin, .list = fake_list, .info = fake_info};

static void test_optional_ops(void)
{
    struct store s = {.ops = &fake_ops};
    char err[256] = "";
    CU_ASSERT_EQUAL(store_compact_start(&s, err, sizeof(err)), -ENOTSUP);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "fake"));
    err[0] = '\0';
    CU_ASSERT_EQUAL(store_drop(&s, NULL, err, sizeof(err)), -ENOTSUP);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "fake backend"));
    /* No tombstones: a copy from another replica is refused, not accepted. */
    CU_ASSERT_EQUAL(store_put_copy(&s, NULL, err, sizeof(err)), -ENOTSUP);
    CU_ASSERT_EQUAL(store_scrub_start(&s, 1000, err, sizeof(err)), -ENOTSUP);
    uint32_t *sums = NULL;
    size_t n = 0;
    uint64_t block = 0;
    CU_ASSERT_EQUAL(store_block_sums(&s, NULL, &sums, &n, &block), -ENOTSUP);
    /* Documented defaults. */
    CU_ASSERT_EQUAL(store_confirm(&s, NULL, true, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(store_quarantined(&s, NULL, NULL), 0);
    uint64_t id = 7;
    CU_ASSERT(!store_gc_active(&s, &id));
    store_compact_wait(&s); /* absent: returns */
    struct cas_buf b;
    cas_buf_init(&b);
    store_metrics(&s, &b);
    CU_ASSERT_EQUAL(b.len, 0);
    cas_buf_free(&b);
    CU_ASSERT_EQUAL(calls, 0);
}

static void test_pass_through(void)
{
    struct store s = {.ops = &fake_ops, .algo = cas_hash_by_name("sha1")};
    char err[256] = "";
    uint64_t id = 0, objects = 1, bytes = 1;
    calls = 0;
    CU_ASSERT_EQUAL(store_gc_begin(&s, 0, &id, &objects, &bytes, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(id, 42);
    /* The wrapper keeps the page's last key as the cursor (hex), refuses a
     * cursor that is not a key of the store, and stops after a page that
     * was not full. */
    struct store_cursor c = {0};
    CU_ASSERT_EQUAL(
        store_list(&s, &c, STORE_LIST_LIVE, 0, UINT64_MAX, 1, NULL, NULL, err, sizeof(err)), 0);
    CU_ASSERT(!c.done);
    CU_ASSERT_STRING_EQUAL(c.token, "1111111111111111111111111111111111111111");
    CU_ASSERT_EQUAL(
        store_list(&s, &c, STORE_LIST_LIVE, 0, UINT64_MAX, 1, NULL, NULL, err, sizeof(err)), -EIO);
    CU_ASSERT_STRING_EQUAL(err, "bad page");
    struct store_cursor bad = {.token = "bad"};
    CU_ASSERT_EQUAL(
        store_list(&s, &bad, STORE_LIST_LIVE, 0, UINT64_MAX, 10, NULL, NULL, err, sizeof(err)),
        -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad list cursor"));
    struct store_cursor last = {0};
    CU_ASSERT_EQUAL(
        store_list(&s, &last, STORE_LIST_LIVE, 0, UINT64_MAX, 10, NULL, NULL, err, sizeof(err)), 0);
    CU_ASSERT(last.done);
    struct store_info in;
    store_info(&s, &in);
    CU_ASSERT(in.faulted);
    CU_ASSERT_EQUAL(calls, 4);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("store", NULL, NULL);
    CU_add_test(s, "optional operations absent: -ENOTSUP naming the backend, or defaults",
                test_optional_ops);
    CU_add_test(s, "required operations passed through; opaque cursor; faulted flag",
                test_pass_through);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
