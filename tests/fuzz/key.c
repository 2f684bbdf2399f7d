/*
 * key.c - fuzzes cas_key_parse (common/key.c), the parser of every key that
 * arrives in a URL, a key list or a CLI argument. Properties: a parsed key
 * prints back as exactly the hex it was given (lowercased), the error
 * message is a terminated string, and the input is only read within len.
 */
#include "fuzz.h"
#include "key.h"

#include <ctype.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: a read past len is a heap overflow ASan reports. */
    char *s = malloc(size ? size : 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    for (size_t a = 0; a < cas_hash_algo_count; a++) {
        const struct cas_hash_algo *algo = &cas_hash_algos[a];
        struct cas_key k;
        char err[512], hex[CAS_MAX_HEX + 1];
        err[0] = '\0';
        int rc = cas_key_parse(s, size, algo, &k, err, sizeof(err));
        if (rc == 0) {
            FUZZ_CHECK(k.algo == algo);
            cas_key_hex(&k, hex);
            FUZZ_CHECK(strlen(hex) == algo->hex_len);
            FUZZ_CHECK(size >= algo->hex_len);
            const char *given = s + size - algo->hex_len;
            for (size_t i = 0; i < algo->hex_len; i++)
                FUZZ_CHECK(tolower((unsigned char)given[i]) == hex[i]);
            struct cas_key again;
            FUZZ_CHECK(cas_key_parse(hex, algo->hex_len, algo, &again, err, sizeof(err)) == 0);
            FUZZ_CHECK(cas_key_equal(&k, &again));
        } else {
            FUZZ_CHECK(rc < 0);
            FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        }
    }
    free(s);
    return 0;
}
