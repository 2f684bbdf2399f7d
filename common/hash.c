/*
 * hash.c - the hash_algos table and a thin wrapper over OpenSSL's EVP digest
 * interface, so that the rest of the code never names an algorithm.
 */
#include "hash.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const void *evp_sha1(void)
{
    return EVP_sha1();
}

static const void *evp_sha256(void)
{
    return EVP_sha256();
}

const struct cas_hash_algo cas_hash_algos[] = {
    {CAS_HASH_SHA1, "sha1", 20, 40, evp_sha1},
    {CAS_HASH_SHA256, "sha256", 32, 64, evp_sha256},
};
const size_t cas_hash_algo_count = sizeof(cas_hash_algos) / sizeof(cas_hash_algos[0]);

struct cas_hash {
    const struct cas_hash_algo *algo;
    EVP_MD_CTX *ctx;
};

const struct cas_hash_algo *cas_hash_by_name(const char *name)
{
    for (size_t i = 0; i < cas_hash_algo_count; i++)
        if (name && strcmp(cas_hash_algos[i].name, name) == 0)
            return &cas_hash_algos[i];
    return NULL;
}

const struct cas_hash_algo *cas_hash_of_cluster(const struct cas_hash_algo *const *algos,
                                                size_t n)
{
    const struct cas_hash_algo *best = NULL;
    size_t best_count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!algos[i] || algos[i] == best)
            continue;
        size_t count = 0;
        for (size_t j = 0; j < n; j++)
            count += algos[j] == algos[i];
        if (count > best_count) { /* strictly more: earlier wins a tie */
            best = algos[i];
            best_count = count;
        }
    }
    return best;
}

const struct cas_hash_algo *cas_hash_by_id(int id)
{
    for (size_t i = 0; i < cas_hash_algo_count; i++)
        if ((int)cas_hash_algos[i].id == id)
            return &cas_hash_algos[i];
    return NULL;
}

struct cas_hash *cas_hash_new(const struct cas_hash_algo *algo)
{
    struct cas_hash *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->algo = algo;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) {
        free(h);
        return NULL;
    }
    cas_hash_reset(h);
    return h;
}

void cas_hash_reset(struct cas_hash *h)
{
    EVP_DigestInit_ex(h->ctx, (const EVP_MD *)h->algo->evp(), NULL);
}

void cas_hash_update(struct cas_hash *h, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate(h->ctx, data, len);
}

void cas_hash_final(struct cas_hash *h, unsigned char *out)
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, out, &n);
}

void cas_hash_free(struct cas_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

/*
 * One-shot digests are hot on small objects (the balancer checks every
 * 4 KiB body it relays). EVP_Digest allocates a context and, with OpenSSL
 * 3, looks the algorithm up again on every call, a fair share of hashing
 * 4 KiB: each thread keeps one context (freed when the thread ends), and
 * the algorithms are fetched once. Any failure falls back to EVP_Digest.
 */
#define ONESHOT_MAX_ALGOS 8
static EVP_MD *oneshot_md[ONESHOT_MAX_ALGOS];
static pthread_once_t oneshot_once = PTHREAD_ONCE_INIT;
static pthread_key_t oneshot_key;
static bool oneshot_key_ok;

static void oneshot_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void oneshot_init(void)
{
    for (size_t i = 0; i < cas_hash_algo_count && i < ONESHOT_MAX_ALGOS; i++) {
        const EVP_MD *legacy = cas_hash_algos[i].evp();
        oneshot_md[i] = legacy ? EVP_MD_fetch(NULL, EVP_MD_get0_name(legacy), NULL) : NULL;
    }
    oneshot_key_ok = pthread_key_create(&oneshot_key, oneshot_ctx_free) == 0;
}

void cas_hash_buffer(const struct cas_hash_algo *algo, const void *data, size_t len,
                     unsigned char *out)
{
    pthread_once(&oneshot_once, oneshot_init);
    size_t i = (size_t)(algo - cas_hash_algos);
    EVP_MD *md = oneshot_key_ok && i < ONESHOT_MAX_ALGOS ? oneshot_md[i] : NULL;
    EVP_MD_CTX *ctx = md ? pthread_getspecific(oneshot_key) : NULL;
    if (md && !ctx && (ctx = EVP_MD_CTX_new()) && pthread_setspecific(oneshot_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    unsigned int n = 0;
    if (ctx && EVP_DigestInit_ex2(ctx, md, NULL) && EVP_DigestUpdate(ctx, data, len) &&
        EVP_DigestFinal_ex(ctx, out, &n))
        return;
    EVP_Digest(data, len, out, &n, (const EVP_MD *)algo->evp(), NULL);
}
