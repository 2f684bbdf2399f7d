/*
 * tagcache.c - block tags of verified objects (tagcache.h): a hash table
 * of objects by key, a least-recently-used list across it, and the tags
 * (RFC 8439's ChaCha20-Poly1305 over no plaintext, OpenSSL's EVP).
 *
 * Keys are placed in the table (and in the table of objects missed once)
 * by a keyed hash of their digest, SipHash-2-4 under a secret of its own,
 * not by the digest's first bytes: clients choose the objects they store,
 * and could otherwise grind digests that all fall in one bucket (a chain
 * walked under the lock by every large GET).
 */
#define _GNU_SOURCE
#include "tagcache.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct tag_entry {
    struct tag_entry *chain;      /* next in its bucket */
    uint64_t place;               /* place_of() its key */
    struct tag_entry *prev, *next; /* LRU list: prev is more recent */
    const struct cas_hash_algo *algo;
    unsigned char digest[CAS_MAX_DIGEST];
    uint64_t size;
    size_t n;
    unsigned char tags[]; /* n * TAG_LEN */
};

struct tag_cache {
    pthread_mutex_t lock;
    unsigned char secret[32]; /* the tag key: never leaves this struct */
    EVP_CIPHER *aead;
    EVP_MAC_CTX *siphash; /* keyed with a second secret; dup'ed per use */
    size_t budget, used;
    struct tag_entry **bucket;
    size_t mask; /* buckets - 1 (a power of two) */
    struct tag_entry *mru, *lru;
    /* The objects missed once: the first 8 bytes of their digests, one
     * slot per value of their place's high bits (a newer miss takes the
     * slot). A miss of an object found here is tagged; others only noted,
     * so that an object read once never pays for tags. */
    uint64_t *seen;
    size_t seen_mask;
    struct tag_cache_stats st;
};

size_t tag_count(uint64_t size)
{
    return (size_t)((size + TAG_BLOCK - 1) / TAG_BLOCK);
}

struct tag_cache *tag_cache_new(size_t budget, char *err, size_t errlen)
{
    struct tag_cache *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    /* About one bucket per 4 KiB of budget: short chains for objects of
     * a few MiB, never fewer than 64 buckets. */
    size_t nb = 64;
    while (nb < budget / 4096 && nb < ((size_t)1 << 24))
        nb <<= 1;
    c->bucket = calloc(nb, sizeof(*c->bucket));
    c->mask = nb - 1;
    /* One slot per 64 bytes of budget (more than the objects the budget
     * holds), 8 bytes each: 1/8 of the budget, at least 8 KiB. */
    size_t ns = 1024;
    while (ns < budget / 64 && ns < ((size_t)1 << 24))
        ns <<= 1;
    c->seen = calloc(ns, sizeof(*c->seen));
    c->seen_mask = ns - 1;
    c->budget = budget;
    c->aead = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    EVP_MAC *sip = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    c->siphash = sip ? EVP_MAC_CTX_new(sip) : NULL;
    EVP_MAC_free(sip); /* the context keeps its own reference */
    unsigned char sipkey[16];
    size_t out = 8;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &out),
                      OSSL_PARAM_construct_end()};
    const char *why = NULL;
    if (!c->bucket || !c->seen)
        why = "out of memory";
    else if (!c->aead)
        why = "OpenSSL has no ChaCha20-Poly1305 (a FIPS-mode OpenSSL leaves it out)";
    else if (!c->siphash)
        why = "OpenSSL has no SipHash";
    else if (getrandom(c->secret, sizeof(c->secret), 0) != (ssize_t)sizeof(c->secret) ||
             getrandom(sipkey, sizeof(sipkey), 0) != (ssize_t)sizeof(sipkey))
        why = "getrandom(2) failed";
    else if (!EVP_MAC_init(c->siphash, sipkey, sizeof(sipkey), p))
        why = "OpenSSL cannot key SipHash";
    OPENSSL_cleanse(sipkey, sizeof(sipkey));
    if (why) {
        snprintf(err, errlen, "%s", why);
        tag_cache_free(c);
        return NULL;
    }
    return c;
}

void tag_cache_free(struct tag_cache *c)
{
    if (!c)
        return;
    for (struct tag_entry *e = c->mru, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(c->bucket);
    free(c->seen);
    EVP_CIPHER_free(c->aead);
    EVP_MAC_CTX_free(c->siphash);
    OPENSSL_cleanse(c->secret, sizeof(c->secret));
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void tag_cache_stats(struct tag_cache *c, struct tag_cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}

/* Where key goes: SipHash of its algorithm and digest under the cache's
 * own key; the low bits pick its bucket, the high bits its slot among the
 * objects missed once. 0 when OpenSSL fails (one bucket: slow, still
 * right). */
static uint64_t place_of(struct tag_cache *c, const struct cas_key *key)
{
    uint64_t h = 0;
    size_t len = 0;
    unsigned char id = (unsigned char)key->algo->id;
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(c->siphash);
    if (m && EVP_MAC_update(m, &id, 1) &&
        EVP_MAC_update(m, key->digest, key->algo->digest_len) &&
        EVP_MAC_final(m, (unsigned char *)&h, &len, sizeof(h)) && len == sizeof(h)) {
        EVP_MAC_CTX_free(m);
        return h;
    }
    EVP_MAC_CTX_free(m);
    return 0;
}

static struct tag_entry **slot(struct tag_cache *c, uint64_t place)
{
    return &c->bucket[place & c->mask];
}

static bool same_key(const struct tag_entry *e, const struct cas_key *key)
{
    return e->algo == key->algo && memcmp(e->digest, key->digest, key->algo->digest_len) == 0;
}

static void lru_unlink(struct tag_cache *c, struct tag_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->mru = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->lru = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct tag_cache *c, struct tag_entry *e)
{
    e->prev = NULL;
    e->next = c->mru;
    if (c->mru)
        c->mru->prev = e;
    c->mru = e;
    if (!c->lru)
        c->lru = e;
}

/* Memory an entry of n tags takes, counted against the budget. */
static size_t entry_size(size_t n)
{
    return sizeof(struct tag_entry) + n * TAG_LEN;
}

static size_t entry_bytes(const struct tag_entry *e)
{
    return entry_size(e->n);
}

/* Takes e out of the table and the list and frees it (under lock). */
static void drop(struct tag_cache *c, struct tag_entry *e)
{
    struct tag_entry **p = slot(c, e->place);
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    lru_unlink(c, e);
    c->used -= entry_bytes(e);
    c->st.objects--;
    c->st.bytes = c->used;
    free(e);
}

/* The cached tags of key when they were taken for size bytes, as a copy
 * (malloc'd; the caller frees it); NULL otherwise (a miss, counted), with
 * *admit true when this is not the object's first miss (its tags are
 * worth taking). The caller counts a hit once the tags are in use. */
static unsigned char *lookup(struct tag_cache *c, const struct cas_key *key, uint64_t place,
                             uint64_t size, bool *admit)
{
    unsigned char *out = NULL;
    uint64_t fp;
    memcpy(&fp, key->digest, sizeof(fp));
    fp ^= (uint64_t)key->algo->id;
    *admit = false;
    pthread_mutex_lock(&c->lock);
    struct tag_entry *e = *slot(c, place);
    uint64_t walked = 0;
    for (; e && !same_key(e, key); e = e->chain)
        walked++;
    if (walked > c->st.longest_chain)
        c->st.longest_chain = walked;
    if (e && e->size == size && (out = malloc(e->n * TAG_LEN + 1))) {
        memcpy(out, e->tags, e->n * TAG_LEN);
        lru_unlink(c, e);
        lru_push(c, e);
    } else {
        c->st.misses++;
        uint64_t *s = &c->seen[(place >> 32) & c->seen_mask];
        *admit = *s == fp;
        *s = fp;
    }
    pthread_mutex_unlock(&c->lock);
    return out;
}

/* Stores n tags of key (size bytes), replacing what was there, then drops
 * the least recently used objects until the budget holds. Only streams
 * whose tags fit the budget are opened (tag_stream_open), so e does. */
static void store(struct tag_cache *c, const struct cas_key *key, uint64_t place, uint64_t size,
                  const unsigned char *tags, size_t n)
{
    struct tag_entry *e = malloc(sizeof(*e) + n * TAG_LEN);
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    e->place = place;
    e->algo = key->algo;
    memcpy(e->digest, key->digest, sizeof(e->digest));
    e->size = size;
    e->n = n;
    memcpy(e->tags, tags, n * TAG_LEN);
    pthread_mutex_lock(&c->lock);
    struct tag_entry *old = *slot(c, place);
    while (old && !same_key(old, key))
        old = old->chain;
    if (old)
        drop(c, old);
    struct tag_entry **s = slot(c, place);
    e->chain = *s;
    *s = e;
    lru_push(c, e);
    c->used += entry_bytes(e);
    c->st.objects++;
    while (c->used > c->budget && c->lru != e) {
        drop(c, c->lru);
        c->st.evictions++;
    }
    c->st.bytes = c->used;
    pthread_mutex_unlock(&c->lock);
}

/* ---- streams ------------------------------------------------------------ */

struct tag_stream {
    struct tag_cache *c;
    struct cas_key key;
    uint64_t place; /* place_of(key) */
    uint64_t size, pos; /* bytes fed so far */
    size_t n;
    bool checking, open; /* open: a block's tag is under way */
    int failed;          /* the first error, returned from then on */
    unsigned char *tags; /* checking: the cached tags; else the computed ones */
    EVP_CIPHER_CTX *mac;
};

/* Starts block i's tag. Its nonce (12 bytes, RFC 8439 2.8) is the
 * block's number and the first 8 bytes of the object's digest: the
 * one-time Poly1305 key ChaCha20 derives from it differs for each block
 * of each object. */
static int block_begin(struct tag_stream *s, size_t i)
{
    unsigned char nonce[12];
    uint32_t bi = (uint32_t)i;
    for (int k = 0; k < 4; k++)
        nonce[k] = (unsigned char)(bi >> (24 - 8 * k));
    memcpy(nonce + 4, s->key.digest, 8);
    if (!EVP_EncryptInit_ex2(s->mac, s->c->aead, s->c->secret, nonce, NULL))
        return -EIO;
    s->open = true;
    return 0;
}

struct tag_stream *tag_stream_open(struct tag_cache *c, const struct cas_key *key, uint64_t size)
{
    struct tag_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c = c;
    s->key = *key;
    s->place = place_of(c, key);
    s->size = size;
    s->n = tag_count(size);
    bool admit;
    s->tags = lookup(c, key, s->place, size, &admit);
    s->checking = s->tags != NULL;
    /* Tags that could never be kept are not taken (the room for them is
     * also what a backend's Content-Length alone would make us allocate). */
    if (!s->tags && (!admit || s->n > TAG_MAX_COUNT || entry_size(s->n) > c->budget)) {
        free(s);
        return NULL;
    }
    if (!s->tags)
        s->tags = malloc(s->n * TAG_LEN + 1);
    s->mac = EVP_CIPHER_CTX_new();
    /* The first block's tag is started now: when OpenSSL fails, it fails
     * before a byte is relayed, and the caller hashes instead. */
    bool ok = s->tags && s->mac && (s->n == 0 || block_begin(s, 0) == 0);
    if (s->checking) {
        pthread_mutex_lock(&c->lock);
        if (ok)
            c->st.hits++;
        else
            c->st.misses++;
        pthread_mutex_unlock(&c->lock);
    }
    if (!ok) {
        tag_stream_close(s);
        return NULL;
    }
    return s;
}

bool tag_stream_checking(const struct tag_stream *s)
{
    return s->checking;
}

int tag_stream_update(struct tag_stream *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (s->failed)
        return s->failed;
    if (len > s->size - s->pos)
        return s->failed = -EBADMSG;
    while (len > 0) {
        size_t i = (size_t)(s->pos / TAG_BLOCK);
        if (!s->open && block_begin(s, i) < 0)
            return s->failed = -EIO;
        uint64_t end = (uint64_t)(i + 1) * TAG_BLOCK;
        if (end > s->size)
            end = s->size;
        size_t take = end - s->pos < len ? (size_t)(end - s->pos) : len;
        /* The bytes are the AEAD's associated data: only Poly1305 runs. */
        int outl = 0;
        if (take > 0 && !EVP_EncryptUpdate(s->mac, NULL, &outl, p, (int)take))
            return s->failed = -EIO;
        p += take;
        len -= take;
        s->pos += take;
        if (s->pos == end) {
            unsigned char tag[TAG_LEN];
            int outl = 0;
            s->open = false;
            if (!EVP_EncryptFinal_ex(s->mac, tag, &outl) ||
                !EVP_CIPHER_CTX_ctrl(s->mac, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag))
                return s->failed = -EIO;
            if (!s->checking)
                memcpy(s->tags + i * TAG_LEN, tag, TAG_LEN);
            else if (CRYPTO_memcmp(tag, s->tags + i * TAG_LEN, TAG_LEN) != 0)
                return s->failed = -EBADMSG;
        }
    }
    return 0;
}

void tag_stream_commit(struct tag_stream *s)
{
    if (!s->checking && !s->failed && s->pos == s->size)
        store(s->c, &s->key, s->place, s->size, s->tags, s->n);
}

void tag_stream_close(struct tag_stream *s)
{
    if (!s)
        return;
    EVP_CIPHER_CTX_free(s->mac);
    free(s->tags);
    free(s);
}
