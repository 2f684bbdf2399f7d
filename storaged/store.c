/*
 * store.c - the backend registry and the store_* wrappers that the storaged
 * routes call (store.h). The wrappers are where an optional operation is
 * checked, once: the routes never look at s->ops themselves, so a backend
 * that lacks, say, block checksums or compaction plugs in without an edit
 * to the HTTP layer.
 */
#include "store.h"
#include "disk.h"
#include "objtab.h"
#include "hash.h"
#include "s3.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the registry ---------------------------------------------------------- */

const struct store_backend *const store_backends[] = {&disk_backend, &s3_backend, NULL};

const struct store_backend *store_backend_find(const char *name)
{
    for (size_t i = 0; name && store_backends[i]; i++)
        if (strcmp(store_backends[i]->name, name) == 0)
            return store_backends[i];
    return NULL;
}

const char *store_backend_names(void)
{
    static char names[128];
    if (!names[0]) {
        size_t off = 0;
        for (size_t i = 0; store_backends[i] && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    store_backends[i]->name);
    }
    return names;
}

/* ---- wrappers ---------------------------------------------------------------- */

static int unsupported(struct store *s, const char *what, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "the %s backend does not support %s", s->ops->name, what);
    return -ENOTSUP;
}

int store_put_begin(struct store *s, const struct cas_key *expect, uint64_t size_hint,
                    struct store_put **out, char *err, size_t errlen)
{
    return s->ops->put_begin(s, expect, size_hint, out, err, errlen);
}

int store_put_write(struct store *s, struct store_put *p, const void *data, size_t len, char *err,
                    size_t errlen)
{
    return s->ops->put_write(p, data, len, err, errlen);
}

int store_put_commit(struct store *s, struct store_put *p, bool sync, struct cas_key *key,
                     bool *created, char *err, size_t errlen)
{
    return s->ops->put_commit(p, sync, key, created, err, errlen);
}

void store_put_abort(struct store *s, struct store_put *p)
{
    s->ops->put_abort(p);
}

int store_put_copy(struct store *s, struct store_put *p, char *err, size_t errlen)
{
    /* A backend without tombstones accepts every copy: 0, not -ENOTSUP,
     * would lose the delete guarantee, so it is refused instead. */
    if (!s->ops->put_copy)
        return unsupported(s, "copies from other replicas (no tombstones)", err, errlen);
    return s->ops->put_copy(p, err, errlen);
}

int store_open(struct store *s, const struct cas_key *key, bool touch, struct store_obj **out,
               uint64_t *size, char *err, size_t errlen)
{
    return s->ops->open(s, key, touch, out, size, err, errlen);
}

ssize_t store_pread(struct store *s, struct store_obj *o, void *buf, size_t len, uint64_t off)
{
    return s->ops->pread(o, buf, len, off);
}

void store_close(struct store *s, struct store_obj *o)
{
    s->ops->close(o);
}

int store_block_sums(struct store *s, struct store_obj *o, uint32_t **sums, size_t *n,
                     uint64_t *block)
{
    if (!s->ops->block_sums)
        return -ENOTSUP;
    return s->ops->block_sums(o, sums, n, block);
}

bool store_sums_serve(struct store *s, uint64_t start, uint64_t end, uint64_t size)
{
    return !(s->ops->sums_for_ranges_only && start == 0 && end == size);
}

void store_quarantine(struct store *s, struct store_obj *o, const char *why)
{
    s->ops->quarantine(o, why);
}

int store_confirm(struct store *s, struct store_obj *o, bool sync, char *err, size_t errlen)
{
    return s->ops->confirm ? s->ops->confirm(o, sync, err, errlen) : 0;
}

int store_stat(struct store *s, const struct cas_key *key, uint64_t *size)
{
    return s->ops->stat(s, key, size);
}

int store_put_stamp(struct store *s, struct store_put *p, uint64_t stamp, char *err, size_t errlen)
{
    return s->ops->put_stamp ? s->ops->put_stamp(p, stamp, err, errlen) : 0;
}

int store_remove(struct store *s, const struct cas_key *key, uint64_t stamp, char *err,
                 size_t errlen)
{
    if (s->ops->remove_at)
        return s->ops->remove_at(s, key, stamp, err, errlen);
    return s->ops->remove(s, key, err, errlen);
}

int store_drop(struct store *s, const struct cas_key *key, char *err, size_t errlen)
{
    if (!s->ops->drop)
        return unsupported(s, "dropping a copy without a tombstone", err, errlen);
    return s->ops->drop(s, key, err, errlen);
}

int store_quarantined(struct store *s, store_list_fn fn, void *cls)
{
    return s->ops->quarantined ? s->ops->quarantined(s, fn, cls) : 0;
}

int store_list_page(struct store *s, struct store_cursor *cursor, enum store_list_state state,
                    uint64_t min_size, uint64_t max_size, struct objtab_page *page, char *err,
                    size_t errlen)
{
    size_t dlen = s->algo->digest_len;
    unsigned char after[CAS_MAX_DIGEST];
    page->n = 0;
    if (cursor->done)
        return 0;
    bool from = cursor->token[0] != '\0';
    if (from &&
        (strlen(cursor->token) != 2 * dlen || cas_hex_decode(cursor->token, dlen, after) < 0)) {
        snprintf(err, errlen, "bad list cursor \"%.64s\"", cursor->token);
        return -EINVAL;
    }
    if (page->digest_len != dlen) {
        snprintf(err, errlen, "list page made for %zu-byte keys, the store's are %zu",
                 page->digest_len, dlen);
        return -EINVAL;
    }
    int rc = s->ops->list(s, from ? after : NULL, state, min_size, max_size, page, err, errlen);
    if (rc < 0)
        return rc;
    bool more = page->has_limit; /* keys were left for a later page */
    if (more && page->n > 0)
        cas_hex_encode(objtab_page_key(page, page->n - 1), dlen, cursor->token);
    else
        cursor->done = true;
    return 0;
}

int store_list(struct store *s, struct store_cursor *cursor, enum store_list_state state,
               uint64_t min_size, uint64_t max_size, size_t max, store_list_fn fn, void *cls,
               char *err, size_t errlen)
{
    struct objtab_page page;
    if (objtab_page_init(&page, s->algo->digest_len, max ? max : 1) < 0) {
        snprintf(err, errlen, "out of memory for a list page of %zu keys", max);
        return -ENOMEM;
    }
    int rc = store_list_page(s, cursor, state, min_size, max_size, &page, err, errlen);
    for (size_t i = 0; rc == 0 && fn && i < page.n; i++)
        fn(cls, objtab_page_key(&page, i), objtab_page_size(&page, i));
    objtab_page_free(&page);
    return rc;
}

int store_gc_begin(struct store *s, uint64_t id, uint64_t *id_out, uint64_t *objects,
                   uint64_t *bytes, char *err, size_t errlen)
{
    return s->ops->gc_begin(s, id, id_out, objects, bytes, err, errlen);
}

int store_gc_mark(struct store *s, const struct cas_key *keys, size_t n, uint64_t *unmarked,
                  char *err, size_t errlen)
{
    return s->ops->gc_mark(s, keys, n, unmarked, err, errlen);
}

int store_use_keys(struct store *s, const struct cas_key *keys, size_t n, bool *present, char *err,
                   size_t errlen)
{
    return s->ops->use_keys(s, keys, n, present, err, errlen);
}

int store_gc_end(struct store *s, uint64_t id, uint64_t *removed, uint64_t *bytes, char *err,
                 size_t errlen)
{
    return s->ops->gc_end(s, id, removed, bytes, err, errlen);
}

int store_gc_cancel(struct store *s, uint64_t id, char *err, size_t errlen)
{
    return s->ops->gc_cancel(s, id, err, errlen);
}

bool store_gc_active(struct store *s, uint64_t *id)
{
    return s->ops->gc_active ? s->ops->gc_active(s, id) : false;
}

void store_gc_history(struct store *s, uint64_t *last_id, uint64_t *ended_id)
{
    *last_id = *ended_id = 0;
    if (s->ops->gc_history)
        s->ops->gc_history(s, last_id, ended_id);
}

int store_compact_start(struct store *s, char *err, size_t errlen)
{
    if (!s->ops->compact_start)
        return unsupported(s, "compaction", err, errlen);
    return s->ops->compact_start(s, err, errlen);
}

void store_compact_wait(struct store *s)
{
    if (s->ops->compact_wait)
        s->ops->compact_wait(s);
}

int store_scrub_start(struct store *s, uint64_t bytes_per_second, char *err, size_t errlen)
{
    if (!s->ops->scrub_start)
        return unsupported(s, "scrubbing", err, errlen);
    int rc = s->ops->scrub_start(s, bytes_per_second);
    if (rc < 0 && err && errlen)
        snprintf(err, errlen, "cannot start the %s backend's scrubber: %s", s->ops->name,
                 strerror(-rc));
    return rc;
}

void store_info(struct store *s, struct store_info *out)
{
    s->ops->info(s, out);
    store_gc_history(s, &out->gc_last_id, &out->gc_ended_id);
}

void store_metrics(struct store *s, struct cas_buf *out)
{
    if (s->ops->metrics)
        s->ops->metrics(s, out);
}

void store_status_scrub(struct store *s, struct cas_json *j)
{
    if (s->ops->status_scrub)
        s->ops->status_scrub(s, j);
}

void store_destroy(struct store *s)
{
    if (s)
        s->ops->destroy(s);
}
