/*
 * progress.c - the progress bar of long work (big puts and gets, compact,
 * mark-gc of many keys), drawn on stderr only when it is a terminal so that
 * scripts and logs never see it. Redrawn at most ten times a second.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void cli_progress_start(struct cli_progress *p, bool enabled, const char *label, uint64_t total,
                        bool bytes)
{
    memset(p, 0, sizeof(*p));
    p->enabled = enabled;
    p->label = label;
    p->total = total;
    p->bytes = bytes;
    p->start = cli_now();
}

static void amount(const struct cli_progress *p, uint64_t n, char *out, size_t outlen)
{
    if (p->bytes)
        cli_human_bytes(n, out, outlen);
    else
        snprintf(out, outlen, "%llu", (unsigned long long)n);
}

void cli_progress_format(const struct cli_progress *p, double now, int width, char *out,
                         size_t outlen)
{
    char done[32], total[32], rate[48];
    double secs = now - p->start;
    double r = secs > 0 ? (double)p->done / secs : 0;
    amount(p, p->done, done, sizeof(done));
    if (p->bytes) {
        char h[32];
        cli_human_bytes((uint64_t)r, h, sizeof(h));
        snprintf(rate, sizeof(rate), "%s/s", h);
    } else {
        snprintf(rate, sizeof(rate), "%.0f/s", r);
    }
    if (p->total == 0) {
        snprintf(out, outlen, "%s %s %s", p->label, done, rate);
        return;
    }
    amount(p, p->total, total, sizeof(total));
    uint64_t d = p->done < p->total ? p->done : p->total;
    double frac = (double)d / (double)p->total;
    char eta[32] = "";
    if (r > 0 && d < p->total)
        cli_human_duration((double)(p->total - d) / r, eta, sizeof(eta));
    char tail[160];
    snprintf(tail, sizeof(tail), " %3d%% %s/%s %s%s%s", (int)(frac * 100), done, total, rate,
             eta[0] ? " eta " : "", eta);
    int bar = width - (int)strlen(p->label) - (int)strlen(tail) - 3;
    if (bar > 40)
        bar = 40;
    if (bar < 5) {
        snprintf(out, outlen, "%s%s", p->label, tail);
        return;
    }
    char b[48];
    int fill = (int)(frac * bar);
    for (int i = 0; i < bar; i++)
        b[i] = i < fill ? '#' : '.';
    b[bar] = '\0';
    snprintf(out, outlen, "%s [%s]%s", p->label, b, tail);
}

static void draw(struct cli_progress *p, double now)
{
    struct winsize ws;
    int width = 80;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        width = ws.ws_col;
    char line[512];
    cli_progress_format(p, now, width - 1, line, sizeof(line));
    fprintf(stderr, "\r%-*.*s", width - 1, width - 1, line);
    fflush(stderr);
    p->last_draw = now;
    p->drawn = true;
}

void cli_progress_set(struct cli_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = cli_now();
    if (now - p->last_draw >= 0.1 && now - p->start >= 0.3)
        draw(p, now);
}

void cli_progress_add(struct cli_progress *p, uint64_t n)
{
    cli_progress_set(p, p->done + n);
}

void cli_progress_end(struct cli_progress *p)
{
    if (p->enabled && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->drawn = false;
}
