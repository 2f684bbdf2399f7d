/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of each 1 MiB block of an
 * object on disk. Uses the SSE4.2 crc32 instruction when the CPU has it
 * (several GB/s, well above SHA-1), a table otherwise.
 */
#ifndef CAS_CRC32C_H
#define CAS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes; the standard CRC-32C value:
 * cas_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t cas_crc32c(uint32_t crc, const void *buf, size_t len);
/* The same value through the table (slicing-by-8) alone, whatever the CPU:
 * what machines without SSE4.2 (and other architectures) compute, so that
 * the unit tests check that path on every machine. */
uint32_t cas_crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
