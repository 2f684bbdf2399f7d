/*
 * record.c - fuzzes the decoders of the bytes on disk (storaged/format.c):
 * 64-byte index records, 64-byte frame headers and data-file names.
 * Properties: whatever decodes re-encodes to the same 64 bytes (the CRC
 * covers every byte, so nothing is silently dropped or invented), and a
 * parsed data-file name prints back as itself.
 */
#include "format.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= FMT_RECORD_SIZE) {
        struct fmt_record r;
        unsigned char again[FMT_RECORD_SIZE];
        if (fmt_record_decode(data, &r)) {
            fmt_record_encode(&r, again);
            FUZZ_CHECK(memcmp(again, data, FMT_RECORD_SIZE) == 0);
        }
        struct fmt_frame f;
        if (fmt_frame_decode(data, &f)) {
            /* Byte 9 is the flags (read back); bytes 10-11 are reserved:
             * written as zero, not read back. */
            unsigned char masked[FMT_FRAME_HEADER];
            memcpy(masked, data, sizeof(masked));
            memset(masked + 10, 0, 2);
            FUZZ_CHECK(fmt_frame_stamp(&f) == ((f.flags & FMT_FRAME_STAMPED) ? f.written_at : 0));
            fmt_frame_encode(&f, again);
            FUZZ_CHECK(memcmp(again + 8, masked + 8, FMT_FRAME_HEADER - 8) == 0);
            (void)fmt_frame_len(f.size);
        }
    }
    char *name = fuzz_cstr(data, size);
    unsigned n;
    uint64_t gen;
    if (fmt_datafile_parse(name, &n, &gen)) {
        char back[64];
        fmt_datafile_name(n, gen, back, sizeof(back));
        FUZZ_CHECK(strcmp(back, name) == 0);
        FUZZ_CHECK(n < FMT_NFILES);
    }
    free(name);
    return 0;
}
