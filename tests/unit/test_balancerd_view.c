/*
 * test_balancerd_view.c - balancerd's view layer without a network
 * (balancerd/view.c, state.c): a config loaded into a view (and refused
 * with the old view kept), a reload that keeps what was learned about the
 * backends whose URL and domain stay, the ring built from learned tokens
 * (a backend of another hash, or a second one claiming the same node id,
 * is left out; copies land in distinct failure domains), the health
 * snapshot the fan-outs read, and key parsing against the cluster's hash.
 * Nothing is started: balancer_init only loads the config.
 */
#include "balancer.h"
#include "view.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/cas-test-balview-XXXXXX";
static char cfg_path[300];
static char err[1024];

static void write_config(const char *text)
{
    FILE *f = fopen(cfg_path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static const char *three_domains = "listen: 127.0.0.1:6999\n"
                                   "replicas: 2\n"
                                   "backends:\n"
                                   "  - url: http://127.0.0.1:1\n"
                                   "    failure_domain: a\n"
                                   "  - url: http://127.0.0.1:2\n"
                                   "    failure_domain: b\n"
                                   "  - url: http://127.0.0.1:3\n"
                                   "    failure_domain: c\n";

static int init(struct balancer *bal, const char *listen)
{
    struct balancer_options o = {.config_path = cfg_path, .listen = listen};
    err[0] = '\0';
    return balancer_init(bal, &o, err, sizeof(err));
}

/* Tells backend i of the current view what a probe would have: node id,
 * hash and tokens (n evenly spread, offset by i). Caller rebuilds. */
static void learn(struct balancer *bal, size_t i, const char *node, const char *algo, size_t n)
{
    struct backend *b = bal->view->b[i];
    snprintf(b->node, sizeof(b->node), "%s", node);
    b->algo = cas_hash_by_name(algo);
    free(b->tokens);
    b->tokens = calloc(n, sizeof(uint64_t));
    for (size_t k = 0; k < n; k++)
        b->tokens[k] = (UINT64_MAX / n) * k + (uint64_t)i * 7919 + 1;
    b->ntokens = n;
    b->probed = b->up = true;
}

static void rebuild(struct balancer *bal)
{
    pthread_mutex_lock(&bal->lock);
    view_rebuild_locked(bal);
    pthread_mutex_unlock(&bal->lock);
}

static void test_load_config(void)
{
    write_config(three_domains);
    struct balancer bal;
    CU_ASSERT_EQUAL_FATAL(init(&bal, NULL), 0);
    struct view *v = view_get(&bal);
    CU_ASSERT_EQUAL(v->n, 3);
    CU_ASSERT_EQUAL(v->cfg->replicas, 2);
    CU_ASSERT_STRING_EQUAL(v->b[1]->url, "http://127.0.0.1:2");
    CU_ASSERT_STRING_EQUAL(v->b[2]->domain, "c");
    CU_ASSERT_STRING_EQUAL(v->b[0]->last_error, "not probed yet");
    CU_ASSERT_PTR_NULL(v->algo); /* nobody has answered */
    CU_ASSERT_PTR_NULL(v->token);
    CU_ASSERT_STRING_EQUAL(bal.listen, "127.0.0.1:6999");
    /* No backend has tokens: nothing is placed yet. */
    for (size_t i = 0; i < v->n; i++)
        CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, i), 0);
    view_put(v);
    balancer_stop(&bal);

    /* --listen wins over the config. */
    CU_ASSERT_EQUAL_FATAL(init(&bal, "127.0.0.1:7000"), 0);
    CU_ASSERT_STRING_EQUAL(bal.listen, "127.0.0.1:7000");
    balancer_stop(&bal);
}

static void test_bad_config_refused(void)
{
    write_config("backends: [\n");
    struct balancer bal;
    CU_ASSERT(init(&bal, NULL) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, cfg_path));

    /* A reload that fails keeps the view in force, unchanged. */
    write_config(three_domains);
    CU_ASSERT_EQUAL_FATAL(init(&bal, NULL), 0);
    struct view *before = view_get(&bal);
    write_config("replicas: 2\nbackends:\n  - url: http://127.0.0.1:1\n    failure_domain: a\n"
                 "  - url: http://127.0.0.1:1\n    failure_domain: b\n");
    CU_ASSERT(balancer_reload(&bal, err, sizeof(err)) < 0);
    CU_ASSERT(err[0] != '\0');
    struct view *after = view_get(&bal);
    CU_ASSERT_PTR_EQUAL(before, after);
    CU_ASSERT_EQUAL(after->n, 3);
    view_put(after);
    view_put(before);
    balancer_stop(&bal);
}

static void test_reload_keeps_what_was_learned(void)
{
    write_config(three_domains);
    struct balancer bal;
    CU_ASSERT_EQUAL_FATAL(init(&bal, NULL), 0);
    learn(&bal, 0, "n0", "sha1", 8);
    learn(&bal, 1, "n1", "sha1", 8);
    learn(&bal, 2, "n2", "sha1", 8);
    rebuild(&bal);
    /* A request holding the old view keeps using it through the reload. */
    struct view *old = view_get(&bal);
    uint64_t gen = old->generation;
    struct backend *kept = old->b[0];
    /* :1 stays as it is, :2 moves to another domain, :3 goes, :4 comes. */
    write_config("replicas: 2\nbackends:\n"
                 "  - url: http://127.0.0.1:1\n    failure_domain: a\n"
                 "  - url: http://127.0.0.1:2\n    failure_domain: z\n"
                 "  - url: http://127.0.0.1:4\n    failure_domain: c\n");
    CU_ASSERT_EQUAL_FATAL(balancer_reload(&bal, err, sizeof(err)), 0);
    struct view *v = view_get(&bal);
    CU_ASSERT(v->generation > gen);
    CU_ASSERT_EQUAL(v->n, 3);
    CU_ASSERT_PTR_EQUAL(v->b[0], kept); /* the same object, knowledge and all */
    CU_ASSERT_STRING_EQUAL(v->b[0]->node, "n0");
    CU_ASSERT_PTR_NOT_EQUAL(v->b[1], old->b[1]); /* new domain: a new backend ... */
    CU_ASSERT_STRING_EQUAL(v->b[1]->domain, "z");
    CU_ASSERT_STRING_EQUAL(v->b[1]->node, "n1"); /* ... that keeps what it said */
    CU_ASSERT_EQUAL(v->b[1]->ntokens, 8);
    CU_ASSERT_EQUAL(v->b[2]->ntokens, 0); /* :4 is new */
    CU_ASSERT_FALSE(v->b[2]->probed);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 0), 8);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 2), 0);
    /* The old view is intact for its holder. */
    CU_ASSERT_EQUAL(old->n, 3);
    CU_ASSERT_STRING_EQUAL(old->b[2]->url, "http://127.0.0.1:3");
    view_put(old);
    view_put(v);
    balancer_stop(&bal);
}

static void test_ring_members_and_domains(void)
{
    write_config("replicas: 2\nbackends:\n"
                 "  - url: http://127.0.0.1:1\n    failure_domain: a\n"
                 "  - url: http://127.0.0.1:2\n    failure_domain: a\n"
                 "  - url: http://127.0.0.1:3\n    failure_domain: b\n"
                 "  - url: http://127.0.0.1:4\n    failure_domain: b\n"
                 "  - url: http://127.0.0.1:5\n    failure_domain: c\n");
    struct balancer bal;
    CU_ASSERT_EQUAL_FATAL(init(&bal, NULL), 0);
    learn(&bal, 0, "n0", "sha1", 16);
    learn(&bal, 1, "n1", "sha1", 16);
    learn(&bal, 2, "n2", "sha1", 16);
    learn(&bal, 3, "n0", "sha1", 16);   /* claims n0's node id: refused */
    learn(&bal, 4, "n4", "sha256", 16); /* another hash than the cluster's: refused */
    rebuild(&bal);
    struct view *v = view_get(&bal);
    CU_ASSERT_PTR_EQUAL(v->algo, cas_hash_by_name("sha1")); /* the first in config order */
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 0), 16);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 1), 16);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 2), 16);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 3), 0);
    CU_ASSERT_EQUAL(ring_backend_tokens(v->ring, 4), 0);
    /* Two copies of every key, never both in domain a. */
    for (unsigned k = 0; k < 500; k++) {
        struct cas_key key;
        char text[32];
        snprintf(text, sizeof(text), "key %u", k);
        key.algo = cas_hash_by_name("sha1");
        cas_hash_buffer(key.algo, text, strlen(text), key.digest);
        size_t out[8];
        size_t n = ring_home(v->ring, ring_position(&key), v->cfg->replicas, out);
        CU_ASSERT_EQUAL_FATAL(n, 2);
        CU_ASSERT_NOT_EQUAL(out[0], out[1]);
        CU_ASSERT(out[0] <= 2 && out[1] <= 2);
        CU_ASSERT_FALSE(out[0] <= 1 && out[1] <= 1);
    }
    /* The health snapshot: writable needs up, the cluster's hash and tokens. */
    bool writable[5], up[5], down[5];
    v->b[1]->read_only = true;
    v->b[2]->up = false;
    backend_health(&bal, v, writable, up);
    CU_ASSERT_TRUE(writable[0]);
    CU_ASSERT_FALSE(writable[1]); /* read-only */
    CU_ASSERT_FALSE(writable[2]); /* down */
    CU_ASSERT_FALSE(writable[3]); /* not a ring member */
    CU_ASSERT_FALSE(writable[4]); /* other hash */
    CU_ASSERT_TRUE(up[1]);
    CU_ASSERT_FALSE(up[2]);
    /* Known down: probed and not up; a backend never probed is not. */
    v->b[0]->probed = false;
    v->b[0]->up = false;
    backend_known_down(&bal, v, down);
    CU_ASSERT_FALSE(down[0]);
    CU_ASSERT_FALSE(down[1]);
    CU_ASSERT_TRUE(down[2]);
    backend_note_failure(&bal, v->b[2], "connection refused");
    CU_ASSERT_STRING_EQUAL(v->b[2]->last_error, "connection refused");
    view_put(v);
    balancer_stop(&bal);
}

static void test_parse_key(void)
{
    write_config(three_domains);
    struct balancer bal;
    CU_ASSERT_EQUAL_FATAL(init(&bal, NULL), 0);
    struct view *v = view_get(&bal);
    const char *sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    const char *sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    struct cas_key k;
    /* Before any backend answered: the form says which hash. */
    CU_ASSERT_EQUAL(view_parse_key(v, sha1, strlen(sha1), &k, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(k.algo, cas_hash_by_name("sha1"));
    CU_ASSERT_EQUAL(view_parse_key(v, sha256, strlen(sha256), &k, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(k.algo, cas_hash_by_name("sha256"));
    char named[128];
    snprintf(named, sizeof(named), "sha256:%s", sha256);
    CU_ASSERT_EQUAL(view_parse_key(v, named, strlen(named), &k, err, sizeof(err)), 0);
    CU_ASSERT_PTR_EQUAL(k.algo, cas_hash_by_name("sha256"));
    CU_ASSERT(view_parse_key(v, "xyz", 3, &k, err, sizeof(err)) < 0);
    CU_ASSERT(view_parse_key(v, sha1, 39, &k, err, sizeof(err)) < 0);
    /* Only the bytes given are read (the key is not NUL-terminated). */
    char longer[64];
    snprintf(longer, sizeof(longer), "%s/extra", sha1);
    CU_ASSERT_EQUAL(view_parse_key(v, longer, 40, &k, err, sizeof(err)), 0);
    view_put(v);
    /* Once the cluster's hash is known, a key of another hash is refused. */
    learn(&bal, 0, "n0", "sha1", 4);
    rebuild(&bal);
    v = view_get(&bal);
    CU_ASSERT_EQUAL(view_parse_key(v, sha1, strlen(sha1), &k, err, sizeof(err)), 0);
    err[0] = '\0';
    CU_ASSERT(view_parse_key(v, sha256, strlen(sha256), &k, err, sizeof(err)) < 0);
    CU_ASSERT(err[0] != '\0');
    view_put(v);
    balancer_stop(&bal);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg_path, sizeof(cfg_path), "%s/balancer.yaml", dir);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("balancerd_view", NULL, NULL);
    CU_add_test(s, "config loaded into a view", test_load_config);
    CU_add_test(s, "bad config refused, old view kept", test_bad_config_refused);
    CU_add_test(s, "reload keeps what was learned", test_reload_keeps_what_was_learned);
    CU_add_test(s, "ring members, failure domains, health", test_ring_members_and_domains);
    CU_add_test(s, "key parsing against the cluster's hash", test_parse_key);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    unlink(cfg_path);
    rmdir(dir);
    return failed ? 1 : 0;
}
