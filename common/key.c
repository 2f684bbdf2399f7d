/*
 * key.c - parsing and printing object keys (see key.h for the accepted forms).
 */
#include "key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Each hex digit's value + 1; 0 for any other byte. A table rather than
 * comparisons: random hex mispredicts those branches, and a listing through
 * a balancer decodes every key it relays (balancerd/cluster.c). */
static const unsigned char hex_plus1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int hexval(unsigned char c)
{
    return (int)hex_plus1[c] - 1;
}

int cas_hex_decode(const char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)in[2 * i]), lo = hexval((unsigned char)in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

void cas_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Copies at most 80 printable bytes of a bad key for an error message. */
static void quote_bad(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t j = 0;
    for (size_t i = 0; i < len && i < 80 && j + 5 < buflen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[j++] = (char)c;
        else
            j += (size_t)snprintf(buf + j, buflen - j, "\\x%02x", c);
    }
    if (len > 80 && j + 4 < buflen) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j < buflen ? j : buflen - 1] = '\0';
}

int cas_key_parse(const char *s, size_t len, const struct cas_hash_algo *algo, struct cas_key *out,
                  char *err, size_t errlen)
{
    const char *hex = s;
    size_t hexlen = len;
    char shown[400];

    const char *colon = memchr(s, ':', len);
    if (colon) {
        size_t plen = (size_t)(colon - s);
        if (plen != strlen(algo->name) || memcmp(s, algo->name, plen) != 0) {
            quote_bad(s, len, shown, sizeof(shown));
            snprintf(err, errlen, "bad key \"%s\": this store's keys are %s", shown, algo->name);
            return -EINVAL;
        }
        hex = colon + 1;
        hexlen = len - plen - 1;
    }
    if (hexlen != algo->hex_len) {
        quote_bad(s, len, shown, sizeof(shown));
        snprintf(err, errlen, "bad key \"%s\": a %s key is %zu hex digits, not %zu", shown,
                 algo->name, algo->hex_len, hexlen);
        return -EINVAL;
    }
    if (cas_hex_decode(hex, algo->digest_len, out->digest) < 0) {
        quote_bad(s, len, shown, sizeof(shown));
        snprintf(err, errlen, "bad key \"%s\": not hexadecimal", shown);
        return -EINVAL;
    }
    out->algo = algo;
    return 0;
}

void cas_key_hex(const struct cas_key *k, char *buf)
{
    cas_hex_encode(k->digest, k->algo->digest_len, buf);
}

bool cas_key_equal(const struct cas_key *a, const struct cas_key *b)
{
    return a->algo == b->algo && memcmp(a->digest, b->digest, a->algo->digest_len) == 0;
}

uint64_t cas_key_position(const struct cas_key *k)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | k->digest[i];
    return v;
}
