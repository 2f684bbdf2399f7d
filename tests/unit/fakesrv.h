/*
 * fakesrv.h - a scripted HTTP server for the unit suites of the ca-cas
 * tool's commands (test_cli_*.c): it answers
 * each request with the first scripted answer whose method and path match
 * (each used at most `times` times, 0 = always; 404 when none matches) and
 * records what it was asked (method, path, the query parameters the tool
 * sends, the body). It runs on common/httpd.c on a loopback port, so the
 * tool's real libcurl client talks to it; it also captures stdout and
 * stderr of the code under test. Header-only: each suite is one executable.
 */
#ifndef CAS_TEST_FAKESRV_H
#define CAS_TEST_FAKESRV_H

#include "buf.h"
#include "cli.h"
#include "httpd.h"
#include "log.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAKE_MAX 32

struct fake_answer {
    const char *method;
    const char *path; /* without the query */
    unsigned status;
    const char *body;
    const char *header; /* "Name: value" or NULL */
    int times;          /* 0: every time */
};

struct fake_request {
    char method[8];
    char path[256];
    char id[32];   /* ?id= */
    char wait[8];  /* ?wait= */
    char query[128]; /* state, min_size, max_size, sync as "name=value&..." */
    char *body;    /* malloc'd, NUL-terminated */
    size_t body_len;
};

static struct {
    pthread_mutex_t lock;
    struct fake_answer answers[FAKE_MAX];
    int used[FAKE_MAX];
    int nanswers;
    struct fake_request reqs[FAKE_MAX];
    int nreqs;
    struct http_server *srv;
    char url[64];
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static inline void fake_reset(void)
{
    pthread_mutex_lock(&fake.lock);
    for (int i = 0; i < fake.nreqs; i++)
        free(fake.reqs[i].body);
    memset(fake.reqs, 0, sizeof(fake.reqs));
    memset(fake.used, 0, sizeof(fake.used));
    fake.nreqs = 0;
    fake.nanswers = 0;
    pthread_mutex_unlock(&fake.lock);
}

static inline void fake_on(const char *method, const char *path, unsigned status, const char *body,
                    int times)
{
    pthread_mutex_lock(&fake.lock);
    if (fake.nanswers < FAKE_MAX)
        fake.answers[fake.nanswers++] =
            (struct fake_answer){method, path, status, body, NULL, times};
    pthread_mutex_unlock(&fake.lock);
}

static inline void fake_on_header(const char *method, const char *path, unsigned status,
                           const char *body, const char *header)
{
    pthread_mutex_lock(&fake.lock);
    if (fake.nanswers < FAKE_MAX)
        fake.answers[fake.nanswers++] =
            (struct fake_answer){method, path, status, body, header, 0};
    pthread_mutex_unlock(&fake.lock);
}

static inline int fake_body(struct http_req *req, const char *data, size_t len)
{
    cas_buf_append(req->ctx, data, len);
    return 0;
}

static inline void fake_cleanup(struct http_req *req)
{
    cas_buf_free(req->ctx);
    free(req->ctx);
}

static inline void fake_done(struct http_req *req)
{
    struct cas_buf *body = req->ctx;
    const char *method = req->is_head ? "HEAD" : req->method;
    pthread_mutex_lock(&fake.lock);
    if (fake.nreqs < FAKE_MAX) {
        struct fake_request *r = &fake.reqs[fake.nreqs++];
        snprintf(r->method, sizeof(r->method), "%s", method);
        snprintf(r->path, sizeof(r->path), "%s", req->url);
        const char *q = http_query(req, "id");
        snprintf(r->id, sizeof(r->id), "%s", q ? q : "");
        q = http_query(req, "wait");
        snprintf(r->wait, sizeof(r->wait), "%s", q ? q : "");
        static const char *names[] = {"state", "min_size", "max_size", "sync"};
        size_t qn = 0;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if ((q = http_query(req, names[i])) && qn < sizeof(r->query))
                qn += (size_t)snprintf(r->query + qn, sizeof(r->query) - qn, "%s%s=%s",
                                       qn ? "&" : "", names[i], q);
        r->body = calloc(1, body->len + 1);
        if (r->body && body->len)
            memcpy(r->body, body->data, body->len);
        r->body_len = body->len;
    }
    const struct fake_answer *a = NULL;
    for (int i = 0; i < fake.nanswers && !a; i++) {
        const struct fake_answer *c = &fake.answers[i];
        bool same_method = strcmp(c->method, method) == 0 ||
                           (req->is_head && strcmp(c->method, "GET") == 0);
        if (same_method && strcmp(c->path, req->url) == 0 &&
            (c->times == 0 || fake.used[i] < c->times)) {
            fake.used[i]++;
            a = c;
        }
    }
    struct fake_answer copy = a ? *a : (struct fake_answer){0};
    pthread_mutex_unlock(&fake.lock);
    if (!a) {
        http_error(req, 404, "no scripted answer for %s %s", method, req->url);
        return;
    }
    http_reply(req, copy.status, "application/json", copy.body, strlen(copy.body));
    if (copy.header) {
        char name[64];
        const char *colon = strchr(copy.header, ':');
        snprintf(name, sizeof(name), "%.*s", (int)(colon - copy.header), copy.header);
        http_add_header(req, name, colon + 2);
    }
}

static inline void fake_handler(struct http_req *req)
{
    req->ctx = calloc(1, sizeof(struct cas_buf));
    cas_buf_init(req->ctx);
    req->cleanup = fake_cleanup;
    req->on_body = fake_body;
    req->on_done = fake_done;
}

static const struct http_route fake_routes[] = {
    {"GET", "/**", fake_handler, HTTP_PUBLIC, "get", NULL},
    {"POST", "/**", fake_handler, HTTP_PUBLIC, "post", NULL},
    {"PUT", "/**", fake_handler, HTTP_PUBLIC, "put", NULL},
    {"DELETE", "/**", fake_handler, HTTP_PUBLIC, "delete", NULL},
};

/* Starts the server; fills fake.url ("http://127.0.0.1:PORT"). */
static inline int fake_start(void)
{
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .routes = fake_routes,
        .nroutes = sizeof(fake_routes) / sizeof(fake_routes[0]),
        .max_connections = 8,
    };
    char err[256];
    /* The server's request log would land in the captured stderr. */
    cas_log_set_level("error");
    if (http_server_start(&cfg, &fake.srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "fake server: %s\n", err);
        return -1;
    }
    snprintf(fake.url, sizeof(fake.url), "http://127.0.0.1:%u", http_server_port(fake.srv));
    return 0;
}

static inline void fake_stop(void)
{
    fake_reset();
    if (fake.srv)
        http_server_stop(fake.srv, 1000);
    fake.srv = NULL;
}

/* A context pointing at the fake server (or at url when given). */
static inline struct cli_ctx fake_ctx(bool json, const char *url)
{
    struct cli_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    snprintf(ctx.server, sizeof(ctx.server), "%s", url ? url : fake.url);
    ctx.json = json;
    return ctx;
}

/* ---- stdout and stderr of the code under test ---- */

static char cap_out_path[] = "/tmp/cas-test-out-XXXXXX";
static char cap_err_path[] = "/tmp/cas-test-err-XXXXXX";
static int cap_saved_out = -1, cap_saved_err = -1;

static inline void capture_init(void)
{
    close(mkstemp(cap_out_path));
    close(mkstemp(cap_err_path));
    cap_saved_out = dup(STDOUT_FILENO);
    cap_saved_err = dup(STDERR_FILENO);
}

static inline void capture_fini(void)
{
    unlink(cap_out_path);
    unlink(cap_err_path);
}

static inline void capture_begin(void)
{
    fflush(stdout);
    fflush(stderr);
    int o = open(cap_out_path, O_WRONLY | O_TRUNC);
    int e = open(cap_err_path, O_WRONLY | O_TRUNC);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    close(o);
    close(e);
}

static inline char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 65536);
    if (f && buf)
        fread(buf, 1, 65535, f);
    if (f)
        fclose(f);
    return buf;
}

/* Restores stdout and stderr; *out and *err get what was written (free). */
static inline void capture_end(char **out, char **err)
{
    fflush(stdout);
    fflush(stderr);
    dup2(cap_saved_out, STDOUT_FILENO);
    dup2(cap_saved_err, STDERR_FILENO);
    *out = slurp(cap_out_path);
    *err = slurp(cap_err_path);
}

/* Runs a command with argv given as a NULL-terminated list; returns its
 * exit status, its stdout and stderr in *out and *err (free them). */
static inline int run_cmd(int (*cmd)(int, char **, const struct cli_ctx *), const struct cli_ctx *ctx,
                   char **out, char **err, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    capture_begin();
    int rc = cmd(argc, argv, ctx);
    capture_end(out, err);
    return rc;
}

#endif
