/*
 * range.c - fuzzes range_parse (common/range.c), the Range header of a
 * GET. The input is the header; the object size is taken from its first 8
 * bytes when it has more than 8, else a few fixed sizes. Properties: a
 * range lies inside the object and is not empty.
 */
#include "fuzz.h"
#include "range.h"

static void check(const char *h, uint64_t size)
{
    uint64_t start = 7, end = 7;
    int r = range_parse(h, size, &start, &end);
    FUZZ_CHECK(r == 0 || r == 1 || r == -1);
    if (r == 0) {
        FUZZ_CHECK(start < end);
        FUZZ_CHECK(end <= size);
    } else {
        FUZZ_CHECK(start == 7 && end == 7); /* untouched */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = {0, 1, 10, 1024 * 1024, UINT64_MAX};
    char *h = fuzz_cstr(data, size);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        check(h, sizes[i]);
    if (size > 8) {
        uint64_t osize;
        memcpy(&osize, data, 8);
        char *h2 = fuzz_cstr(data + 8, size - 8);
        check(h2, osize);
        free(h2);
    }
    free(h);
    return 0;
}
