/*
 * s3_claim.c - one bucket per storaged: the claim cas-claims/<node id> that
 * a storaged holds in its bucket while it runs, how a fresh bucket is taken
 * safely against another storaged taking it at the same moment, and the
 * check that keeps a --dir without a node file from becoming a second
 * process of a node that runs (s3_open.c calls these; s3_backend.c's
 * destroy releases the claim at the stop).
 *
 * Two storageds on one bucket would share every objects/<hex>: "two
 * copies" would be one, and one node's delete would remove the other's
 * copy. A plain "GET cas-node -> 404, PUT cas-node" lets two nodes that
 * start together both pass. Taking a fresh bucket (no cas-node) needs
 * nothing from the server but S3's strong read-after-write and
 * list-after-write consistency (AWS since 2020, MinIO, Ceph RGW, s3rver),
 * so it holds where conditional writes are not supported (s3rver ignores
 * If-None-Match on PUT):
 *
 *   1. PUT cas-claims/<node id>           (our claim)
 *   2. LIST cas-claims/                   another node's claim there:
 *                                         remove ours, wait a random
 *                                         100-600 ms, try again (at most
 *                                         S3_CLAIM_ROUNDS rounds), then
 *                                         refuse naming the claims
 *   3. GET cas-node                       another node's: remove our claim,
 *                                         refuse; ours: done
 *   4. PUT cas-node, If-None-Match: *     412 (it exists): back to a GET
 *                                         and compare; 501: the server has
 *                                         no conditional writes, PUT again
 *                                         without (the claims protect)
 *   5. GET cas-node, compare              (read back)
 *   6. the claim stays while the process runs; DELETE at the stop
 *
 * Why two nodes never both pass: of the two LISTs (step 2), take the later
 * one, by B. It happened after A's claim was written (A wrote it before its
 * own, earlier LIST), so B saw A's claim unless A had removed it, which A
 * does only after refusing or after writing cas-node and stopping: then
 * B's GET (step 3) sees A's cas-node and B refuses. Both may refuse (each
 * saw the other's claim in every round); the operator starts one again.
 *
 * A --dir without a node file takes the identity in the bucket's cas-node
 * (a lost --dir, s3_open.c's s3_prepare), but not while that node's claim
 * is there (s3_claim_check_restore): a second, empty --dir pointed at a
 * bucket in use would otherwise run as a second process of the same node.
 * cas-node is written after the claim and the claim removed only at the
 * stop, so whoever reads cas-node while the node runs finds its claim.
 *
 * A claim left by a crash stays: a restart of that node (same --dir, same
 * id) writes it again and goes on (s3_claim_hold); anything else is
 * refused with a message naming the claim (node id, host, pid, time) and
 * how to remove it. Claims never expire by themselves: a node paused for a
 * long time (SIGSTOP, a frozen VM) would otherwise come back to a bucket
 * that another process took as abandoned.
 */
#define _GNU_SOURCE
#include "s3_internal.h"
#include "log.h"
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define S3_CLAIMS_PREFIX "cas-claims/"
#define S3_CLAIM_ROUNDS 3
#define S3_CLAIMS_NAMED 4     /* other claims read and named in a refusal */
#define S3_CLAIM_BODY_MAX 512 /* bytes of another node's claim read */

/* "cas-claims/<node id>" of the node whose node file is dir/node. */
static int claim_key(struct s3_store *st, char *key, size_t keylen, char *id, size_t idlen,
                     char *err, size_t errlen)
{
    struct node_identity ni = {0};
    int rc = node_load(st->dirfd, st->dir, &ni, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(key, keylen, S3_CLAIMS_PREFIX "%s", ni.id);
    snprintf(id, idlen, "%s", ni.id);
    node_free(&ni);
    return 0;
}

/* DELETE of key; 0 when it is gone (404 included), -EIO with a message. */
static int delete_key(struct s3_client *cli, const char *key, char *err, size_t errlen)
{
    struct s3_req rq = {.method = "DELETE", .key = key};
    struct s3_resp rs;
    int rc = s3_do(cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 204 && rs.status != 200 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc;
}

/* Removes our claim (a refusal, a failure, the stop); a failure to do so
 * is logged (the claim then blocks other starts until removed: the log
 * and their refusals say so), never replaces the caller's message. */
static void withdraw(struct s3_store *st, const char *key)
{
    char e[512];
    if (delete_key(&st->cli, key, e, sizeof(e)) < 0)
        log_warn("s3: cannot remove our claim %s from the bucket %s: %s (while it is there, "
                 "other starts on this bucket and a restore into an empty --dir are refused; "
                 "this node's own restart takes it over; remove it by hand otherwise)",
                 key, st->cli.bucket, e);
}

void s3_claim_release(struct s3_store *st)
{
    char key[64], id[24], e[512];
    if (!st->claimed)
        return;
    st->claimed = false;
    if (claim_key(st, key, sizeof(key), id, sizeof(id), e, sizeof(e)) == 0)
        withdraw(st, key);
    else
        log_warn("s3: cannot remove our claim from the bucket %s: %s", st->cli.bucket, e);
}

/* PUT of our claim: who, where, when (for another node's refusal message). */
static int put_claim(struct s3_store *st, const char *key, const char *id, char *err, size_t errlen)
{
    char host[256] = "?", when[64] = "?", body[512];
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(body, sizeof(body), "ca-cas bucket claim\nnode %s\nhost %s\npid %d\ntime %s\n",
                     id, host, (int)getpid(), when);
    struct s3_req rq = {.method = "PUT", .key = key, .body = body, .body_len = (size_t)n};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc;
}

/* The claims under cas-claims/ other than own (one page: a bucket with
 * more than 1000 claims is refused as not a sane one). *page is the
 * listing (the caller frees it); *others counts the other claims. */
static int list_claims(struct s3_store *st, const char *own, struct s3_list_page *page,
                       size_t *others, char *err, size_t errlen)
{
    struct s3_req rq = {.method = "GET", .query = "list-type=2&max-keys=1000&prefix=cas-claims%2F"};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    if (rc == 0)
        rc = s3_xml_list(rs.body.data ? rs.body.data : "", rs.body.len, page, err, errlen);
    s3_resp_free(&rs);
    if (rc == 0 && page->truncated) {
        snprintf(err, errlen,
                 "listing %s of the bucket %s: more than one page (over 1000 claims): not a "
                 "bucket a storaged can take",
                 S3_CLAIMS_PREFIX, st->cli.bucket);
        rc = -E2BIG;
    }
    *others = 0;
    for (size_t i = 0; rc == 0 && i < page->n; i++)
        if (strcmp(page->items[i].key, own) != 0)
            (*others)++;
    return rc;
}

/* Appends "KEY (node .., host .., pid .., time ..)" for another node's
 * claim to msg: its body read back, one line per field, anything not
 * printable shown as '?'. */
static void describe_claim(struct s3_client *cli, const char *key, char *msg, size_t msglen)
{
    char body[S3_CLAIM_BODY_MAX + 1], e[256];
    struct s3_req rq = {.method = "GET", .key = key, .out = body, .out_cap = S3_CLAIM_BODY_MAX};
    struct s3_resp rs;
    size_t used = strlen(msg);
    int rc = s3_do(cli, &rq, &rs, e, sizeof(e));
    if (rc < 0 || rs.status != 200) {
        snprintf(msg + used, msglen - used, "%s%s", used ? "; " : "", key);
        s3_resp_free(&rs);
        return;
    }
    body[rs.out_len] = '\0';
    s3_resp_free(&rs);
    /* Skip the first line (the format's name); the others become "a, b". */
    char *p = strchr(body, '\n'), fields[S3_CLAIM_BODY_MAX + 1] = "";
    size_t fl = 0;
    for (p = p ? p + 1 : body; *p && fl + 2 < sizeof(fields); p++) {
        if (*p == '\n') {
            if (p[1]) {
                fields[fl++] = ',';
                fields[fl++] = ' ';
            }
        } else {
            fields[fl++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        }
    }
    fields[fl] = '\0';
    snprintf(msg + used, msglen - used, "%s%s (%.200s)", used ? "; " : "", key, fields);
}

/* GET cas-node into buf: 1 with *len when there is one, 0 when none (404),
 * negative errno with a message otherwise. */
static int get_node_copy(struct s3_store *st, char *buf, size_t cap, size_t *len, char *err,
                         size_t errlen)
{
    struct s3_req rq = {.method = "GET", .key = S3_NODE_KEY, .out = buf, .out_cap = cap};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 200) {
        *len = rs.out_len;
        rc = 1;
    } else if (rc == 0 && rs.status != 404) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc;
}

/* PUT cas-node only if none exists (If-None-Match: *, S3's conditional
 * write): 0 written, 1 the server says one exists (412: the caller reads
 * it), negative errno with a message. A server without conditional writes
 * (501 NotImplemented) gets a plain PUT: the claims protect then. */
static int put_node_copy(struct s3_store *st, const char *local, size_t llen, char *err,
                         size_t errlen)
{
    struct s3_req rq = {.method = "PUT",
                        .key = S3_NODE_KEY,
                        .body = local,
                        .body_len = llen,
                        .header = "If-None-Match: *"};
    struct s3_resp rs;
    int rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 501) {
        s3_resp_free(&rs);
        rq.header = NULL;
        rc = s3_do(&st->cli, &rq, &rs, err, errlen);
    }
    if (rc == 0 && rs.status == 412) {
        rc = 1;
    } else if (rc == 0 && rs.status == 409) {
        /* AWS: ConditionalRequestConflict, another write of the key under way. */
        snprintf(err, errlen,
                 "the bucket %s: another node is writing %s at the same time (409): one bucket "
                 "per storaged; start again to see which node holds it",
                 st->cli.bucket, S3_NODE_KEY);
        rc = -EBUSY;
    } else if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    return rc;
}

static int another_node(struct s3_store *st, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "the bucket %s holds another node's state (%s differs from %s/node): one "
             "bucket per storaged; nothing was changed",
             st->cli.bucket, S3_NODE_KEY, st->dir);
    return -EINVAL;
}

/* Steps 3-5 (our claim is the only one): cas-node ours when it returns 0. */
static int take(struct s3_store *st, const char *local, size_t llen, char *remote, char *err,
                size_t errlen)
{
    size_t rlen = 0;
    int rc = get_node_copy(st, remote, S3_NODE_FILE_MAX, &rlen, err, errlen);
    if (rc == 0) {
        rc = put_node_copy(st, local, llen, err, errlen);
        if (rc < 0)
            return rc;
        /* Read back (and, after a 412, read the copy that is there). */
        rc = get_node_copy(st, remote, S3_NODE_FILE_MAX, &rlen, err, errlen);
        if (rc == 0) {
            snprintf(err, errlen,
                     "the bucket %s: %s is not there just after it was written (the server does "
                     "not read its own writes: one bucket per storaged cannot be made sure)",
                     st->cli.bucket, S3_NODE_KEY);
            return -EIO;
        }
    }
    if (rc < 0)
        return rc;
    if (rlen != llen || memcmp(local, remote, llen) != 0)
        return another_node(st, err, errlen);
    return 0;
}

int s3_claim_bucket(struct s3_store *st, const char *local, size_t llen, char *err, size_t errlen)
{
    char key[64], id[24];
    int rc = claim_key(st, key, sizeof(key), id, sizeof(id), err, errlen);
    if (rc < 0)
        return rc;
    char *remote = malloc(S3_NODE_FILE_MAX);
    if (!remote) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (unsigned round = 1;; round++) {
        struct s3_list_page page = {0};
        size_t others = 0;
        rc = put_claim(st, key, id, err, errlen);
        if (rc < 0) {
            withdraw(st, key); /* a PUT that failed may still have landed */
            break;
        }
        rc = list_claims(st, key, &page, &others, err, errlen);
        if (rc == 0 && others == 0) {
            s3_list_page_free(&page);
            rc = take(st, local, llen, remote, err, errlen);
            if (rc == 0) {
                st->claimed = true; /* held while this process runs */
                log_info("s3: the bucket %s is this node's (%s written)", st->cli.bucket,
                         S3_NODE_KEY);
            } else {
                withdraw(st, key);
            }
            break;
        }
        withdraw(st, key);
        if (rc < 0) {
            s3_list_page_free(&page);
            break;
        }
        if (round < S3_CLAIM_ROUNDS) {
            s3_list_page_free(&page);
            uint32_t r = 0;
            if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                r = (uint32_t)getpid();
            struct timespec ts = {0, (long)(100 + r % 500) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        char names[1200] = "";
        const char *first = NULL;
        for (size_t i = 0, named = 0; i < page.n && named < S3_CLAIMS_NAMED; i++)
            if (strcmp(page.items[i].key, key) != 0) {
                if (!first)
                    first = page.items[i].key;
                describe_claim(&st->cli, page.items[i].key, names, sizeof(names));
                named++;
            }
        snprintf(err, errlen,
                 "the bucket %s is being claimed by another storaged: %s%s; one bucket per "
                 "storaged, so this node did not start and changed nothing. If no storaged with "
                 "that node id is starting on this bucket, the claim is stale (a start that "
                 "crashed): start that node again, or remove the claim from the bucket (for "
                 "example: aws s3 rm s3://%s/%s), then start this one again",
                 st->cli.bucket, names, others > S3_CLAIMS_NAMED ? " and more" : "", st->cli.bucket,
                 others == 1 && first ? first : S3_CLAIMS_PREFIX "<node id>");
        s3_list_page_free(&page);
        rc = -EBUSY;
        break;
    }
    free(remote);
    return rc;
}

int s3_claim_hold(struct s3_store *st, char *err, size_t errlen)
{
    char key[64], id[24];
    int rc = claim_key(st, key, sizeof(key), id, sizeof(id), err, errlen);
    if (rc == 0 && (rc = put_claim(st, key, id, err, errlen)) < 0) {
        char e2[512];
        snprintf(e2, sizeof(e2), "%s", err);
        snprintf(err, errlen, "cannot write this node's claim %s to the bucket %s: %s", key,
                 st->cli.bucket, e2);
    }
    if (rc == 0)
        st->claimed = true;
    return rc;
}

/* The "id <16 hex>" line of a node file's text, into id (17 bytes); false
 * when there is none. */
static bool node_text_id(const char *text, size_t len, char *id)
{
    for (size_t i = 0; i + 3 + 16 <= len; i++) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "id ", 3) == 0) {
            for (size_t j = 0; j < 16; j++) {
                char ch = text[i + 3 + j];
                if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
                    return false;
                id[j] = ch;
            }
            id[16] = '\0';
            return i + 3 + 16 == len || text[i + 3 + 16] == '\n';
        }
    }
    return false;
}

int s3_claim_check_restore(struct s3_client *cli, const char *node, size_t len, char *err,
                           size_t errlen)
{
    char id[17], key[64];
    if (!node_text_id(node, len, id))
        return 0; /* not a node file: node_load refuses it with its own message */
    snprintf(key, sizeof(key), S3_CLAIMS_PREFIX "%s", id);
    struct s3_req rq = {.method = "HEAD", .key = key};
    struct s3_resp rs;
    int rc = s3_do(cli, &rq, &rs, err, errlen);
    if (rc == 0 && rs.status == 404) {
        s3_resp_free(&rs);
        return 0;
    }
    if (rc == 0 && rs.status != 200) {
        s3_status_error(&rq, &rs, err, errlen);
        rc = -EIO;
    }
    s3_resp_free(&rs);
    if (rc < 0)
        return rc;
    char names[600] = "";
    describe_claim(cli, key, names, sizeof(names));
    snprintf(err, errlen,
             "the bucket %s belongs to node %s, which is running or did not stop cleanly (its "
             "claim: %s); this --dir is empty, and restoring the node's identity from the bucket "
             "would make a second process of that node on it (one bucket per storaged), so "
             "nothing was changed. "
             "Start the node with its own --dir; if it is not running anywhere (its --dir was "
             "lost), remove its claim from the bucket (for example: aws s3 rm s3://%s/%s) and "
             "start this one again",
             cli->bucket, id, names, cli->bucket, key);
    return -EBUSY;
}
