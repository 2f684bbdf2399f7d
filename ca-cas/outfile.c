/*
 * outfile.c - writing a file the user named (-o FILE) without ever losing
 * what was there before when the command fails.
 *
 * Used by `get -o` and `export -o`. The rule, by what FILE is when the
 * command starts (docs/CLI.md, "Output files"):
 *
 *   "-"                 standard output.
 *   the same file as standard output (/dev/stdout, /dev/fd/1, ...):
 *                       standard output, as the shell opened it.
 *   a regular file, or nothing yet:
 *                       the bytes go to FILE.partial-XXXXXX beside it
 *                       (.ca-cas-partial-XXXXXX in FILE's directory when
 *                       that name would be over NAME_MAX) (created O_EXCL,
 *                       same directory, so same file system); on success
 *                       it is fsynced and renamed over FILE and the
 *                       directory fsynced; on failure, SIGINT or SIGTERM
 *                       only the temporary file is removed. (export of an
 *                       incomplete listing keeps it instead, synced, under
 *                       its temporary name: cli_outfile_keep.) A symlink to a regular
 *                       file is followed: its target is replaced, the link
 *                       stays.
 *   anything else (a device, a FIFO, a socket, a symlink to one):
 *                       written straight into, as `cat > FILE` would
 *                       (no O_CREAT, no O_TRUNC); never truncated,
 *                       unlinked or renamed, even on failure.
 *   a directory, a symlink to nothing:
 *                       refused before any request (-EISDIR / -ENOENT).
 *
 * Functions return 0 or a negative errno and fill err.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The temporary file being written, for the signal handler: SIGINT or
 * SIGTERM removes it (unlink is async-signal-safe) and then ends the
 * process as the signal would have. One at a time: the CLI writes one
 * output file at a time. */
static char pending_tmp[PATH_MAX];
static struct sigaction old_int, old_term;

static void on_signal(int sig)
{
    if (pending_tmp[0])
        unlink(pending_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_tmp(const char *tmp)
{
    if (strlen(tmp) >= sizeof(pending_tmp))
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    memcpy(pending_tmp, tmp, strlen(tmp) + 1);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
}

static void unguard_tmp(void)
{
    if (!pending_tmp[0])
        return;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    pending_tmp[0] = '\0';
}

/* The temporary name beside target: TARGET.partial-XXXXXX, or, when that
 * file name would be over NAME_MAX, .ca-cas-partial-XXXXXX in the same
 * directory. NULL when out of memory. */
static char *tmp_name_for(const char *target)
{
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    char *out = NULL;
    if (strlen(base) + strlen(".partial-XXXXXX") <= NAME_MAX) {
        if (asprintf(&out, "%s.partial-XXXXXX", target) < 0)
            out = NULL;
    } else if (asprintf(&out, "%.*s.ca-cas-partial-XXXXXX", (int)(base - target), target) < 0) {
        out = NULL;
    }
    return out;
}

/* The mode a shell redirect would give a new file: 0666 less the umask. */
static mode_t outfile_new_mode(void)
{
    mode_t m = umask(022);
    umask(m);
    return 0666 & ~m;
}

/* Is the file st the one on standard output? */
static bool outfile_is_stdout(const struct stat *st)
{
    struct stat so;
    return fstat(STDOUT_FILENO, &so) == 0 && so.st_dev == st->st_dev && so.st_ino == st->st_ino;
}

int cli_outfile_open(struct cli_outfile *o, const char *name, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->name = name;
    struct stat st, lst;
    if (strcmp(name, "-") == 0) {
        o->fd = STDOUT_FILENO;
        o->is_stdout = true;
        return 0;
    }
    if (stat(name, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s is a directory", name);
            return -EISDIR;
        }
        bool link = lstat(name, &lst) == 0 && S_ISLNK(lst.st_mode);
        if ((!S_ISREG(st.st_mode) || link) && outfile_is_stdout(&st)) {
            /* /dev/stdout and the like: the shell's redirection, as is
             * (a >> stays an append). */
            o->fd = STDOUT_FILENO;
            o->is_stdout = true;
            return 0;
        }
        if (!S_ISREG(st.st_mode)) {
            /* A device or FIFO: written into as it is, never replaced. */
            o->fd = open(name, O_WRONLY | O_NOCTTY | O_CLOEXEC);
            if (o->fd < 0) {
                int e = errno;
                snprintf(err, errlen, "cannot open %s: %s", name, strerror(e));
                return -e;
            }
            return 0;
        }
        /* A regular file (maybe through symlinks): replace the file, not
         * the links that lead to it. */
        if (!(o->target = realpath(name, NULL))) {
            int e = errno;
            snprintf(err, errlen, "cannot resolve %s: %s", name, strerror(e));
            return -e;
        }
        o->mode = st.st_mode & 07777;
        o->uid = st.st_uid;
        o->gid = st.st_gid;
        o->existed = true;
    } else if (errno != ENOENT) {
        int e = errno;
        snprintf(err, errlen, "cannot use %s: %s", name, strerror(e));
        return -e;
    } else if (lstat(name, &lst) == 0) {
        snprintf(err, errlen, "%s is a symbolic link to a file that does not exist", name);
        return -ENOENT;
    } else if (!(o->target = strdup(name))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    } else {
        o->mode = outfile_new_mode();
    }
    if (!(o->tmp = tmp_name_for(o->target))) {
        free(o->target);
        o->target = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    o->fd = mkostemp(o->tmp, O_CLOEXEC); /* O_EXCL: never an existing file */
    if (o->fd >= 0)
        guard_tmp(o->tmp);
    if (o->fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", o->tmp, strerror(e));
        free(o->tmp);
        free(o->target);
        o->tmp = o->target = NULL;
        return -e;
    }
    if (o->existed && fchown(o->fd, o->uid, o->gid) < 0) {
        /* Best effort, as an editor saving over someone else's file:
         * only root may give a file away. */
    }
    if (fchmod(o->fd, o->mode) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot set the mode of %s: %s", o->tmp, strerror(e));
        cli_outfile_abort(o);
        return -e;
    }
    return 0;
}

/* fsync of the directory holding path, so that a rename in it lasts. */
static int outfile_sync_dir(const char *path, char *err, size_t errlen)
{
    char *copy = strdup(path);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    const char *dir = dirname(copy);
    int rc = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s was written but its directory %s could not be synced: %s", path,
                 dir, strerror(-rc));
    }
    if (dfd >= 0)
        close(dfd);
    free(copy);
    return rc;
}

/* Syncs and closes o's temporary file (o->fd becomes -1). 0, or -errno
 * with err naming the file. */
static int tmp_sync_close(struct cli_outfile *o, char *err, size_t errlen)
{
    int rc = 0;
    if (fsync(o->fd) < 0) {
        rc = -errno;
        snprintf(err, errlen, "syncing %s: %s", o->tmp, strerror(-rc));
    }
    if (close(o->fd) < 0 && rc == 0) {
        rc = -errno;
        snprintf(err, errlen, "writing %s: %s", o->tmp, strerror(-rc));
    }
    o->fd = -1;
    return rc;
}

int cli_outfile_commit(struct cli_outfile *o, char *err, size_t errlen)
{
    int rc = 0;
    if (o->is_stdout) {
        o->fd = -1;
        return 0;
    }
    if (!o->tmp) { /* a device or FIFO: nothing to sync or rename */
        if (o->fd >= 0 && close(o->fd) < 0) {
            rc = -errno;
            snprintf(err, errlen, "writing %s: %s", o->name, strerror(-rc));
        }
        o->fd = -1;
        return rc;
    }
    rc = tmp_sync_close(o, err, errlen);
    if (rc == 0 && rename(o->tmp, o->target) < 0) {
        rc = -errno;
        snprintf(err, errlen, "renaming %s to %s: %s", o->tmp, o->target, strerror(-rc));
    }
    if (rc < 0)
        unlink(o->tmp);
    unguard_tmp();
    if (rc == 0) {
        o->renamed = true;
        rc = outfile_sync_dir(o->target, err, errlen);
    }
    free(o->tmp);
    free(o->target);
    o->tmp = o->target = NULL;
    return rc;
}

int cli_outfile_keep(struct cli_outfile *o, char **kept, char *err, size_t errlen)
{
    assert(o->tmp && o->fd >= 0); /* only a temporary file beside FILE is kept */
    *kept = NULL;
    int rc = tmp_sync_close(o, err, errlen);
    if (rc == 0)
        rc = outfile_sync_dir(o->tmp, err, errlen);
    if (rc < 0)
        unlink(o->tmp);
    unguard_tmp();
    if (rc == 0)
        *kept = o->tmp;
    else
        free(o->tmp);
    free(o->target);
    o->tmp = o->target = NULL;
    return rc;
}

void cli_outfile_abort(struct cli_outfile *o)
{
    if (!o->is_stdout && o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp) {
        unlink(o->tmp); /* ours alone: created O_EXCL */
        unguard_tmp();
    }
    free(o->tmp);
    free(o->target);
    o->tmp = o->target = NULL;
}
