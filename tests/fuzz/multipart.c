/*
 * multipart.c - fuzzes the balancer's reader of a Cask upload
 * (POST / with multipart/form-data: multipart_find in balancerd/proxy.c,
 * over the shared streaming reader common/multipart.c), which finds the
 * "file" part in the body spooled to a file.
 *
 * Input: flags byte, pad byte, the Content-Type value up to the first
 * '\n', then the body. When the flags' high bit is set, the body is put
 * after about 256 KiB of preamble (bytes before the first boundary), so
 * that delimiters and part headers straddle the reader's 256 KiB window.
 * proxy.c is included, not linked, to reach the static function without
 * exporting it. Properties: a found part lies inside the body, follows the
 * blank line that ends its headers, and is followed by a delimiter.
 */
#include "../../balancerd/proxy.c"

#include "fuzz.h"

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool pad = data[0] & 0x80;
    size_t padlen = pad ? 256 * 1024 - 2 - 128 + data[1] : 0;
    data += 2;
    size -= 2;
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    char *ct = fuzz_cstr(data, (size_t)(nl - data));
    const uint8_t *body = nl + 1;
    size_t blen = size - (size_t)(nl + 1 - data);
    int fd = memfd_create("fuzz-multipart", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    char *whole = malloc(padlen + blen + 1);
    if (!whole)
        abort();
    memset(whole, 'p', padlen);
    memcpy(whole + padlen, body, blen);
    size_t total = padlen + blen;
    if (total && write(fd, whole, total) != (ssize_t)total)
        abort();
    uint64_t off = 0, len = 0;
    char err[512];
    if (multipart_find(fd, total, ct, &off, &len, err, sizeof(err)) == 0) {
        FUZZ_CHECK(off <= total && len <= total - off);
        if (len > 0) { /* an empty part has no position to check */
            FUZZ_CHECK(off >= 4 && memcmp(whole + off - 4, "\r\n\r\n", 4) == 0);
            FUZZ_CHECK(off + len + 4 <= total && memcmp(whole + off + len, "\r\n--", 4) == 0);
        }
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    free(whole);
    close(fd);
    free(ct);
    return 0;
}
