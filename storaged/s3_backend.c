/*
 * s3_backend.c - the top of the S3 backend: its store_ops table (naming
 * the operations of s3_store.c and s3_gc.c), destroy (which stops the
 * scrubber and leaves the clean-stop marker of s3_open.c), and the
 * registry's entry, s3_backend (s3.h), whose open allocates the store and
 * has s3_open_state bring it up. Nothing below calls into this file.
 */
#define _GNU_SOURCE
#include "s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void s3_destroy(struct store *s)
{
    struct s3_store *st = s3_of(s);
    if (!st)
        return;
    s3_scrub_stop(st);
    /* Clean: every write acknowledged or refused, nothing half uploaded
     * (debris: an unrecorded upload is still in the bucket). */
    if (st->opened && !st->debris && st->journal.fd >= 0 &&
        __atomic_load_n(&st->read_only, __ATOMIC_SEQ_CST) != 2)
        s3_mark_clean(st);
    s3_claim_release(st); /* this node no longer runs on the bucket */
    if (st->journal.fd >= 0)
        journal_destroy(&st->journal);
    objtab_destroy(&st->tab);
    objtab_destroy(&st->tombs);
    s3_client_free(&st->cli);
    if (st->lockfd >= 0)
        close(st->lockfd);
    if (st->dirfd >= 0)
        close(st->dirfd);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->gc_lock);
    pthread_cond_destroy(&st->changed);
    pthread_mutex_destroy(&st->scrub_mu);
    pthread_cond_destroy(&st->scrub_cv);
    free(st->dir);
    free(st);
}

const struct store_ops s3_ops = {
    .name = "s3",
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .put_copy = s3_put_copy,
    .put_stamp = s3_put_stamp,
    .open = s3_open_obj,
    .pread = s3_pread,
    .close = s3_close_obj,
    .block_sums = s3_block_sums,
    .sums_for_ranges_only = true,
    .quarantine = s3_quarantine,
    .confirm = s3_confirm,
    .stat = s3_stat,
    .remove = s3_remove,
    .remove_at = s3_remove_at,
    .drop = s3_drop,
    .quarantined = s3_quarantined,
    .list = s3_list,
    .gc_begin = s3_gc_begin,
    .gc_mark = s3_gc_mark,
    .use_keys = s3_use_keys,
    .gc_end = s3_gc_end,
    .gc_cancel = s3_gc_cancel,
    .gc_active = s3_gc_active,
    .gc_history = s3_gc_history,
    .compact_start = s3_compact_start,
    .scrub_start = s3_scrub_start,
    .info = s3_info,
    .metrics = s3_metrics,
    .destroy = s3_destroy,
};

static int s3_backend_open(const struct store_options *o, struct store **out, char *err,
                           size_t errlen)
{
    if (!o->capacity) {
        snprintf(err, errlen,
                 "--capacity (or CAS_CAPACITY) is required with --backend s3: a "
                 "bucket has no size, and the capacity sizes the ring");
        return -EINVAL;
    }
    struct s3_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->base.ops = &s3_ops;
    int rc = s3_open_state(st, o, err, errlen);
    if (rc < 0) {
        s3_destroy(&st->base);
        return rc;
    }
    *out = &st->base;
    return 0;
}

const struct store_backend s3_backend = {
    .name = "s3",
    .open = s3_backend_open,
    .prepare = s3_prepare,
    .usage = "s3: objects in an S3-compatible bucket, --dir holds the node's state; "
             "--s3-endpoint URL --s3-bucket NAME [--s3-region R] [--s3-access-key-file F "
             "--s3-secret-key-file F] (or CAS_S3_ACCESS_KEY / CAS_S3_SECRET_KEY) --capacity BYTES",
};
