/*
 * s3.h - the S3 backend: every object in an S3-compatible bucket under
 * objects/<hex key>, the node's small state in --dir (the node file, and
 * s3-index: a journal of 64-byte records in the disk index's format saying
 * what the bucket holds, the GC cycle and its marks, tombstones and
 * quarantined keys). Layout in docs/FORMAT.md ("The S3 backend").
 *
 * Writes are hashed while they arrive and become visible in the bucket only
 * after the digest checks out (a body up to one part is PUT from memory; a
 * larger one is a multipart upload, each part uploaded on a worker thread
 * while the next is received, completed only then, aborted otherwise; an
 * object over one block also gets its per-block CRC-32C table, s3_sums.c);
 * a write is acknowledged after the bucket answered 200 and its index
 * record is durable. A lost --dir is rebuilt from the bucket: the node
 * file from its copy (cas-node), the index from a listing of objects/.
 */
#ifndef CAS_S3_H
#define CAS_S3_H

#include "store.h"

#define S3_PART_SIZE (8u << 20) /* bytes buffered per write; the multipart part size */

/* --s3-timeout-ms: the longest one bucket request may take, retries
 * included (s3_client_set_timeout). 15 s suits a bucket across a WAN; a
 * bucket on the same network can be given less, so a hung one is given up
 * on sooner. */
#define S3_DEFAULT_TIMEOUT_MS 15000u
#define S3_MIN_TIMEOUT_MS 300u
#define S3_MAX_TIMEOUT_MS 3600000u

/* The registry's entry (store.h): "s3". */
extern const struct store_backend s3_backend;

/* Before the node file is loaded: when dir has no node file and the bucket
 * holds a copy (a lost --dir), writes it back, so the node keeps its id and
 * ring tokens. Also checks that the bucket exists and takes the
 * credentials: -ENOENT no such bucket, -EACCES refused, -EIO unreachable,
 * each with a message. */
int s3_prepare(const struct store_options *opts, int dirfd, char *err, size_t errlen);

#endif
