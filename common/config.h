/*
 * config.h - the balancer's YAML config (docs/OPERATIONS.md).
 *
 * Read with libyaml. Two spellings of a backend are accepted:
 *
 *   - url: http://10.0.0.11:6010        - addr: 10.0.0.11:6010
 *     failure_domain: rack-a              failure-domain: 1      (Cantera)
 *
 * Every error is reported as "FILE:LINE:COLUMN: message" (1-based), pointing
 * at the offending node: unknown keys, wrong types, a missing backend list,
 * duplicate backends, min_replicas > replicas, or more replicas than there
 * are failure domains. The balancer and `ca-cas rebalance` both load their
 * config through this module.
 */
#ifndef CAS_CONFIG_H
#define CAS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_backend {
    char *url;    /* normalised: "http://host:port", no trailing slash */
    char *domain; /* failure domain, as text ("1" for the Cantera integer) */
    int line;     /* where it was declared, for messages */
    int column;
};

struct config {
    char *path;
    char *listen;     /* NULL when not set */
    char *token_file; /* NULL when not set */
    bool auth_reads;  /* auth_reads: true - object reads need the token too */
    /* TLS to https:// backends (OPERATIONS.md "TLS"); paths, NULL when not
     * set. ca_file: PEM CA bundle the backends' certificates must chain to
     * (NULL: the system store). tls_client_cert/tls_client_key: a client
     * certificate for backends that require one (both or neither). */
    char *ca_file;
    char *tls_client_cert;
    char *tls_client_key;
    unsigned replicas;     /* default: 3, or the number of failure domains if fewer */
    unsigned min_replicas; /* default: replicas */
    struct config_backend *backends;
    size_t nbackends;
    size_t ndomains;
    /* anti_entropy: {interval, max_mbps}; stored for the repair scanner. */
    uint64_t ae_interval_s; /* 0: not set */
    double ae_max_mbps;     /* 0: not set */
    /* timeouts: {fanout_ms, write_straggler_ms, gc_ms} (OPERATIONS.md "What happens
     * when a backend hangs"). fanout_ms bounds the wait on each backend of
     * an operation that asks every backend (capacity, missing, GC, ...);
     * write_straggler_ms is how long a write waits for the copies beyond
     * min_replicas once min_replicas are durable. Defaults applied by the
     * parser: CONFIG_FANOUT_MS_DEFAULT, CONFIG_STRAGGLER_MS_DEFAULT. */
    unsigned fanout_ms;
    unsigned write_straggler_ms;
    /* timeouts.gc_ms: the same bound for gc/begin and gc/end, whose work on
     * a backend grows with its object count. */
    unsigned gc_ms;
    /* quarantine_interval: how often a balancer asks each backend for the
     * copies it took out of service (GET /quarantine) to repair them. */
    uint64_t quarantine_interval_s; /* seconds; CONFIG_QUARANTINE_INTERVAL when not set */
    /* gc_agree_max_keys: garbage keys a balancer holds in memory at once
     * when it makes the replicas agree before gc/end (balancerd/gcagree.c;
     * about 60 bytes each); more are compared in several passes.
     * CONFIG_GC_AGREE_MAX_KEYS when not set. */
    unsigned gc_agree_max_keys;
};

#define CONFIG_FANOUT_MS_DEFAULT 5000u
#define CONFIG_STRAGGLER_MS_DEFAULT 2000u
#define CONFIG_GC_MS_DEFAULT 60000u
#define CONFIG_QUARANTINE_INTERVAL 15
#define CONFIG_GC_AGREE_MAX_KEYS (1u << 20)
#define CONFIG_GC_AGREE_MAX_KEYS_MAX (1u << 26)

/*
 * Loads and checks the config at path. On error returns a negative errno
 * and writes "path:line:column: message" (or "path: message" when the file
 * cannot be read) to err.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Same from text in memory; name stands for the file in messages. */
int config_parse(const char *text, size_t len, const char *name, struct config **out, char *err,
                 size_t errlen);

void config_free(struct config *c);

#endif
