/*
 * rebalance.c - `ca-cas rebalance --config FILE`: puts every object of the
 * cluster described by a balancer's config exactly on its home backends.
 *
 * The work is the engine's (common/rebalance.h), shared with the
 * balancer's background anti-entropy; this file reads the options, asks
 * the backends for their rings, prints the plan (--dry-run) or runs it
 * with a progress bar, and prints a summary. Ctrl-C stops after the copies
 * in flight are cut (a second one kills): a run stopped anywhere leaves
 * extra copies at worst, which the next run removes.
 */
#include "cli.h"
#include "config.h"
#include "json.h"
#include "num.h"
#include "rebalance.h"
#include "token.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile int interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C kills */
}

static const struct cli_usage_text rebalance_usage = {
    "rebalance --config FILE [--dry-run] [--concurrency N] [--max-mbps N]",
    "Lists every backend of the cluster in FILE (a balancer's YAML config),\n"
    "computes each object's home with the balancer's placement, copies every\n"
    "missing home copy from a holder (the receiving storaged checks the digest),\n"
    "and, once an object's home is complete and confirmed, removes its copies\n"
    "outside it. Backends that are down are left alone and reported; nothing is\n"
    "removed for an object whose home has a backend down, nor at all while some\n"
    "backend's ring is unknown. Safe to interrupt, to run again, and to run\n"
    "while clients read and write or while another rebalance runs.\n"
    "--dry-run prints the plan: objects, copies to make, copies to remove, bytes\n"
    "to move. Exit 1 when a copy or removal failed, a backend was down, or the\n"
    "run was interrupted.",
};

struct ui {
    const struct cli_ctx *ctx;
    struct cli_progress bar;
    bool bar_started;
};

static void on_progress(void *cls, const struct rb_stats *s)
{
    struct ui *ui = cls;
    if (!ui->bar_started) {
        cli_progress_start(&ui->bar, ui->ctx->progress, "rebalance", s->copy_bytes_planned, true);
        ui->bar_started = true;
    }
    cli_progress_set(&ui->bar, s->bytes_streamed);
}

static void on_event(void *cls, bool warning, const char *msg)
{
    struct ui *ui = cls;
    if (ui->bar_started)
        cli_progress_end(&ui->bar);
    if (warning)
        cli_error("rebalance: %s", msg);
}

static void print_json(const struct rb_stats *s, const struct rb_cluster *c, bool dry_run)
{
    struct cas_buf b;
    cas_buf_init(&b);
    struct cas_json j;
    cas_json_init(&j, &b);
    cas_json_begin_object(&j);
#define U64(name, v)                                                                               \
    do {                                                                                           \
        cas_json_key(&j, name);                                                                    \
        cas_json_u64(&j, v);                                                                       \
    } while (0)
    cas_json_key(&j, "dry_run");
    cas_json_bool(&j, dry_run);
    U64("backends", s->backends);
    U64("backends_down", s->backends_down);
    cas_json_key(&j, "down");
    cas_json_begin_array(&j);
    for (size_t i = 0; i < c->n; i++)
        if (!c->b[i].up) {
            cas_json_begin_object(&j);
            cas_json_key(&j, "url");
            cas_json_string(&j, c->b[i].url);
            cas_json_key(&j, "error");
            cas_json_string(&j, c->b[i].error);
            cas_json_end_object(&j);
        }
    cas_json_end_array(&j);
    U64("objects", s->objects);
    U64("bytes", s->bytes);
    U64("objects_ok", s->objects_ok);
    U64("objects_home_unavailable", s->objects_home_unavailable);
    U64("copies_planned", s->copies_planned);
    U64("copy_bytes_planned", s->copy_bytes_planned);
    U64("removals_planned", s->removals_planned);
    U64("removal_bytes_planned", s->removal_bytes_planned);
    U64("removals_held", s->removals_held);
    U64("copies_made", s->copies_made);
    U64("bytes_copied", s->bytes_copied);
    U64("copies_failed", s->copies_failed);
    U64("objects_vanished", s->objects_vanished);
    U64("removals_made", s->removals_made);
    U64("removals_failed", s->removals_failed);
    U64("removals_skipped", s->removals_skipped);
#undef U64
    cas_json_key(&j, "seconds");
    cas_json_double(&j, s->seconds);
    cas_json_key(&j, "mb_per_s");
    cas_json_double(&j, s->seconds > 0 ? (double)s->bytes_copied / 1e6 / s->seconds : 0);
    cas_json_key(&j, "interrupted");
    cas_json_bool(&j, s->interrupted);
    cas_json_end_object(&j);
    printf("%s\n", b.data);
    cas_buf_free(&b);
}

static void print_plan(const struct rb_stats *s)
{
    char h1[32], h2[32], h3[32];
    cli_human_bytes(s->bytes, h1, sizeof(h1));
    cli_human_bytes(s->copy_bytes_planned, h2, sizeof(h2));
    cli_human_bytes(s->removal_bytes_planned, h3, sizeof(h3));
    printf("backends:           %llu (%llu down)\n", (unsigned long long)s->backends,
           (unsigned long long)s->backends_down);
    printf("objects:            %llu (%s)\n", (unsigned long long)s->objects, h1);
    printf("already at home:    %llu\n", (unsigned long long)s->objects_ok);
    printf("copies to make:     %llu\n", (unsigned long long)s->copies_planned);
    printf("bytes to move:      %llu (%s)\n", (unsigned long long)s->copy_bytes_planned, h2);
    printf("copies to remove:   %llu (%s)\n", (unsigned long long)s->removals_planned, h3);
    if (s->removals_held)
        printf("copies kept:        %llu (their home is incomplete)\n",
               (unsigned long long)s->removals_held);
    if (s->objects_home_unavailable)
        printf("home unavailable:   %llu objects (a home backend down or read-only)\n",
               (unsigned long long)s->objects_home_unavailable);
}

static void print_summary(const struct rb_stats *s)
{
    char h[32], t[32];
    cli_human_bytes(s->bytes_copied, h, sizeof(h));
    cli_human_duration(s->seconds, t, sizeof(t));
    printf("rebalance%s: %llu objects checked; %llu copies made (%s, %.1f MB/s), "
           "%llu removed, in %s\n",
           s->interrupted ? " (interrupted)" : "", (unsigned long long)s->objects,
           (unsigned long long)s->copies_made, h,
           s->seconds > 0 ? (double)s->bytes_copied / 1e6 / s->seconds : 0.0,
           (unsigned long long)s->removals_made, t);
    if (s->copies_failed || s->removals_failed || s->removals_skipped || s->removals_held)
        printf("left undone: %llu copies failed, %llu removals failed, %llu copies kept "
               "(home not confirmed), %llu kept (home incomplete)\n",
               (unsigned long long)s->copies_failed, (unsigned long long)s->removals_failed,
               (unsigned long long)s->removals_skipped, (unsigned long long)s->removals_held);
    if (s->backends_down)
        printf("backends down, left alone: %llu\n", (unsigned long long)s->backends_down);
}

int cmd_rebalance(int argc, char **argv, const struct cli_ctx *ctx)
{
    const char *config = NULL, *mbps = NULL;
    bool dry_run = false;
    uint64_t concurrency = RB_DEFAULT_CONCURRENCY;
    const struct cli_opt opts[] = {
        {"config", 'c', CLI_OPT_STRING, &config, "FILE", "the balancer's YAML config (required)"},
        {"dry-run", 'n', CLI_OPT_FLAG, &dry_run, NULL, "print the plan, change nothing"},
        {"concurrency", 0, CLI_OPT_UINT, &concurrency, "N", "copies at once (default 4)"},
        {"max-mbps", 0, CLI_OPT_STRING, &mbps, "N",
         "bandwidth limit in MB/s (10^6 bytes) over the bytes copied (default 100, 0: none)"},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos, code;
    if (!pos)
        return CLI_EXIT_FAIL;
    if (cli_args_command("rebalance", &rebalance_usage, opts, nopts, argc, argv, pos, &npos,
                         &code) < 0) {
        free(pos);
        return code;
    }
    if (npos > 0) {
        cli_error("rebalance: unexpected operand \"%s\" (see ca-cas rebalance --help)", pos[0]);
        free(pos);
        return CLI_EXIT_USAGE;
    }
    free(pos);
    if (!config) {
        cli_error("rebalance: --config FILE is required (see ca-cas rebalance --help)");
        return CLI_EXIT_USAGE;
    }
    double max_mbps = RB_DEFAULT_MAX_MBPS;
    if (mbps) {
        if (cas_parse_real(mbps, &max_mbps) < 0) {
            cli_error("rebalance: --max-mbps \"%s\" is not a number of MB/s (such as 50 or 12.5)",
                      mbps);
            return CLI_EXIT_USAGE;
        }
    }
    if (concurrency < 1 || concurrency > 256) {
        cli_error("rebalance: --concurrency must be from 1 to 256");
        return CLI_EXIT_USAGE;
    }

    char err[CLI_ERR_MAX];
    struct config *cfg = NULL;
    if (config_load(config, &cfg, err, sizeof(err)) < 0) {
        cli_error("rebalance: %s", err);
        return CLI_EXIT_USAGE;
    }
    /* The config's token is the cluster's; --token-file is the fallback. */
    char *token = NULL;
    if (cfg->token_file && cas_token_read(cfg->token_file, &token, err, sizeof(err)) < 0) {
        cli_error("rebalance: %s", err);
        config_free(cfg);
        return CLI_EXIT_FAIL;
    }
    struct rb_cluster *c = NULL;
    int rc = rb_cluster_probe(cfg, token ? token : ctx->token, 2000, &c, err, sizeof(err));
    free(token);
    config_free(cfg);
    if (rc < 0) {
        cli_error("rebalance: %s", err);
        return CLI_EXIT_FAIL;
    }

    struct ui ui = {.ctx = ctx};
    struct rb_options o = {
        .concurrency = (unsigned)concurrency,
        .max_mbps = max_mbps,
        .dry_run = dry_run,
        .stop = &interrupted,
        .progress = on_progress,
        .event = on_event,
        .cls = &ui,
    };
    struct rb_stats st;
    void (*old_int)(int) = signal(SIGINT, on_sigint);
    void (*old_term)(int) = signal(SIGTERM, on_sigint);
    rc = rebalance_run(c, &o, &st, err, sizeof(err));
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    if (ui.bar_started)
        cli_progress_end(&ui.bar);
    if (rc < 0 && rc != -EINTR) {
        cli_error("rebalance: %s", err);
        rb_cluster_free(c);
        return CLI_EXIT_FAIL;
    }
    if (ctx->json)
        print_json(&st, c, dry_run);
    else if (dry_run)
        print_plan(&st);
    else
        print_summary(&st);
    rb_cluster_free(c);
    if (rc == -EINTR) {
        cli_error("rebalance: interrupted; run it again to finish");
        return CLI_EXIT_FAIL;
    }
    bool undone = st.copies_failed || st.removals_failed || st.removals_skipped || st.backends_down;
    return dry_run || !undone ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
