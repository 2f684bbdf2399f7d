/*
 * fsck.c - `ca-cas fsck DIR [--repair]`: the offline check of a storaged
 * directory. The work is the storage engine's own (storaged/fsck.c, linked
 * through cas_store); this file parses the command line, draws progress and
 * prints the problems and the summary, as text or JSON.
 *
 * Exit status: 0 healthy (or repaired), 1 problems found (or the check
 * could not run), 2 usage.
 */
#include "cli.h"
#include "fsck.h"
#include "json.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct fsck_out {
    const struct cli_ctx *ctx;
    struct cli_progress bar;
    struct cas_json *j; /* --json: problems collected here */
};

static void on_say(void *cls, bool problem, const char *msg)
{
    struct fsck_out *o = cls;
    if (o->j) {
        cas_json_begin_object(o->j);
        cas_json_key(o->j, "problem");
        cas_json_bool(o->j, problem);
        cas_json_key(o->j, "message");
        cas_json_string(o->j, msg);
        cas_json_end_object(o->j);
        return;
    }
    cli_progress_end(&o->bar);
    printf("%s%s\n", problem ? "PROBLEM: " : "note: ", msg);
}

static void on_progress(void *cls, uint64_t done, uint64_t total)
{
    struct fsck_out *o = cls;
    o->bar.total = total;
    cli_progress_set(&o->bar, done);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ca-cas fsck DIR [--repair [--new-identity]]\n\n"
               "Offline check of a storaged directory: every index record, every object's\n"
               "bytes against its key, the framing of every data file. Refuses a directory a\n"
               "running storaged holds. --repair rebuilds the index from the data files and\n"
               "takes corrupt objects out, changing nothing else (the old index is kept as\n"
               "index.before-repair.TIME). --new-identity, with --repair, writes a new node\n"
               "file when it is missing or names another hash than the data: a new node id and\n"
               "ring tokens (the node's objects then need a rebalance); an old one is kept as\n"
               "node.replaced.TIME.\n"
               "Exit status: 0 healthy (or repaired), 1 problems found, 2 usage error.\n");
}

int cmd_fsck(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *dir = NULL;
    bool repair = false, new_id = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(argv[i], "--repair") == 0) {
            repair = true;
        } else if (strcmp(argv[i], "--new-identity") == 0) {
            new_id = true;
        } else if (argv[i][0] == '-' || dir) {
            cli_error("fsck: unexpected argument \"%s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        cli_error("fsck: which directory? (ca-cas fsck DIR)");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (new_id && !repair) {
        cli_error("fsck: --new-identity goes with --repair");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    cas_log_set_level("error"); /* the engine's own notes are reported below */
    struct cas_buf jb;
    struct cas_json j;
    struct fsck_out o = {.ctx = ctx};
    cas_buf_init(&jb);
    if (ctx->json) {
        cas_json_init(&j, &jb);
        cas_json_begin_object(&j);
        cas_json_key(&j, "messages");
        cas_json_begin_array(&j);
        o.j = &j;
    }
    cli_progress_start(&o.bar, ctx->progress && !ctx->json, "fsck", 0, true);
    struct fsck_report r;
    char err[1024] = "";
    unsigned flags = (repair ? FSCK_REPAIR : 0) | (new_id ? FSCK_NEW_IDENTITY : 0);
    int rc = store_fsck(dir, flags, on_say, on_progress, &o, &r, err, sizeof(err));
    cli_progress_end(&o.bar);
    if (rc < 0) {
        cas_buf_free(&jb);
        cli_error("fsck %s: %s", dir, err);
        return CLI_EXIT_FAIL;
    }
    bool healthy = r.problems == 0 || r.repaired;
    if (ctx->json) {
        cas_json_end_array(&j);
#define FIELD(name, v)                                                                             \
    do {                                                                                           \
        cas_json_key(&j, name);                                                                    \
        cas_json_u64(&j, v);                                                                       \
    } while (0)
        FIELD("records", r.records);
        FIELD("objects", r.objects);
        FIELD("bytes", r.bytes);
        FIELD("problems", r.problems);
        FIELD("corrupt", r.corrupt);
        FIELD("damaged_records", r.bad_records);
        FIELD("torn_bytes", r.torn_bytes);
        FIELD("lost_objects", r.dropped);
        FIELD("bad_frames", r.bad_frames);
        FIELD("unindexed", r.unindexed);
        FIELD("lost_removals", r.lost_removals);
        FIELD("recovered", r.recovered);
        FIELD("relocated_files", r.relocated);
        cas_json_key(&j, "damaged_header");
        cas_json_bool(&j, r.bad_header);
        cas_json_key(&j, "new_identity");
        cas_json_bool(&j, r.new_identity);
#undef FIELD
        cas_json_key(&j, "repaired");
        cas_json_bool(&j, r.repaired);
        cas_json_key(&j, "healthy");
        cas_json_bool(&j, healthy);
        cas_json_end_object(&j);
        printf("%s\n", jb.data);
        cas_buf_free(&jb);
    } else {
        printf("%s: %" PRIu64 " index records, %" PRIu64 " objects (%" PRIu64
               " bytes) checked, %" PRIu64 " problems",
               dir, r.records, r.objects, r.bytes, r.problems);
        if (r.problems)
            printf(" (%" PRIu64 " corrupt, %" PRIu64 " damaged records, %" PRIu64
                   " torn index bytes, %" PRIu64 " lost, %" PRIu64 " bad frames, %" PRIu64
                   " missing from the index, %" PRIu64 " removed but still indexed)",
                   r.corrupt, r.bad_records, r.torn_bytes, r.dropped, r.bad_frames, r.unindexed,
                   r.lost_removals);
        printf("\n");
        if (r.repaired)
            printf("repaired: index rebuilt, %" PRIu64 " objects put back, %" PRIu64
                   " corrupt taken out\n",
                   r.recovered, r.corrupt);
        else if (r.problems)
            printf("run ca-cas fsck %s --repair to rebuild the index\n", dir);
    }
    return healthy ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
