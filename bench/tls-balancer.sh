#!/usr/bin/env bash
# tls-balancer.sh - the cost of https:// backends behind a balancer: GET of
# 4 KiB objects (requests/s, wrk -t2 -c32), and of one 64 MiB object (MB/s,
# curl, one at a time) through ca-cas-balancerd whose backend is one
# storaged over HTTPS (pooled TLS connections: GnuTLS in upstream.c since
# reads from https backends are hedged; libcurl, bstream.c, before),
# against the same balancer build in front of the same storaged build over
# plain HTTP (pooled sockets, upstream.c). Both
# run at once and the rounds alternate, so the ratio holds on a loaded
# machine. Made to measure the check of a pooled TLS connection before its
# reuse (common/ctl.c, "a connection with unread bytes is never reused").
# Prints its figures; does not write bench/RESULTS.md.
#
#   bench/tls-balancer.sh   env: ROUNDS (3), SECONDS_PER_RUN (5), KEYS (500),
#                           BEFORE (another ca-cas-balancerd binary, e.g. one
#                           built before a change: measured too, in front of
#                           the same https backend, in the same rounds)
source "$(dirname "$0")/lib.sh"
bench_init tls-balancer "$@"
bench_build
cmake --build "$BUILD" -j2 --target ca-cas-balancerd >/dev/null
BALANCERD=$BUILD/balancerd/ca-cas-balancerd
ROUNDS=${ROUNDS:-3} DUR=${SECONDS_PER_RUN:-5} NKEYS=${KEYS:-500}

pki=$BENCH_TMP/pki
make_pki "$pki"

p_plain=$(free_port); p_tls=$(free_port); b_plain=$(free_port); b_tls=$(free_port)
start_storaged "$BENCH_TMP/store" "$p_plain"
"$BUILD/bench/cas-bench-putload" --url "http://127.0.0.1:$p_plain" --size 4096 --count "$NKEYS" \
    --concurrency 8 --sync 0 --seed 11 --keys-out "$BENCH_TMP/keys-small" >/dev/null
head -c $((64 << 20)) /dev/urandom >"$BENCH_TMP/large"
large_key=$(sha1sum "$BENCH_TMP/large" | cut -d" " -f1)
curl -fs -X PUT --data-binary "@$BENCH_TMP/large" "http://127.0.0.1:$p_plain/objects/$large_key" >/dev/null
stop_pid "$STORAGED_PID"
cp -a "$BENCH_TMP/store" "$BENCH_TMP/store-tls"
start_storaged "$BENCH_TMP/store" "$p_plain"
"$STORAGED" --dir "$BENCH_TMP/store-tls" --listen "127.0.0.1:$p_tls" --log-level warn \
    --tls-cert "$pki/srv.pem" --tls-key "$pki/srv.key" 2>>"$BENCH_TMP/storaged-tls.log" &
BENCH_PIDS+=("$!")
for _ in $(seq 100); do
    curl -fs --cacert "$pki/ca.pem" -o /dev/null "https://127.0.0.1:$p_tls/healthz" && break
    sleep 0.1
done

start_balancer() { # PORT BACKEND_URL [BINARY]
    cat >"$BENCH_TMP/b$1.yaml" <<YAML
replicas: 1
ca_file: $pki/ca.pem
backends:
  - url: $2
    failure_domain: a
YAML
    "${3:-$BALANCERD}" --config "$BENCH_TMP/b$1.yaml" --listen "127.0.0.1:$1" --log-level warn \
        2>>"$BENCH_TMP/balancer-$1.log" &
    BENCH_PIDS+=("$!")
    wait_http "http://127.0.0.1:$1/healthz"
    local k
    k=$(head -1 "$BENCH_TMP/keys-small")
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/objects/$k" && return 0
        sleep 0.1
    done
    echo "balancer on $1 does not serve $k" >&2
    return 1
}
start_balancer "$b_plain" "http://127.0.0.1:$p_plain"
start_balancer "$b_tls" "https://127.0.0.1:$p_tls"

urls=("http://127.0.0.1:$b_plain" "http://127.0.0.1:$b_tls")
names=("balancer, http backend" "balancer, https backend")
if [ -n "${BEFORE:-}" ]; then
    b_before=$(free_port)
    start_balancer "$b_before" "https://127.0.0.1:$p_tls" "$BEFORE"
    urls+=("http://127.0.0.1:$b_before")
    names+=("BEFORE balancer, https backend")
fi

wrk_lua "$BENCH_TMP/keys-small" "$BENCH_TMP/small.lua"
for u in "${urls[@]}"; do run_wrk "$u" "$BENCH_TMP/small.lua" 2 32 1 >/dev/null; done # warm-up
declare -A best
for i in "${!urls[@]}"; do best[$i]=0; done
for r in $(seq "$ROUNDS"); do
    for i in "${!urls[@]}"; do
        o=$(run_wrk "${urls[$i]}" "$BENCH_TMP/small.lua" 2 32 "$DUR")
        v=$(calc "round($(field "$o" requests)/$(field "$o" seconds))")
        [ "$v" -gt "${best[$i]}" ] && best[$i]=$v
        echo "4 KiB round $r: ${names[$i]} $v req/s, p50 $(field "$o" p50_ms) ms, p99 $(field "$o" p99_ms) ms"
    done
done
declare -A bestl
for i in "${!urls[@]}"; do bestl[$i]=0; done
for r in $(seq "$ROUNDS"); do
    for i in "${!urls[@]}"; do
        for _ in 1 2 3; do
            v=$(curl -fs -o /dev/null -w '%{speed_download}' "${urls[$i]}/objects/$large_key")
            v=$(calc "round($v/1e6)")
            [ "$v" -gt "${bestl[$i]}" ] && bestl[$i]=$v
        done
        echo "64 MiB round $r: ${names[$i]} best so far ${bestl[$i]} MB/s"
    done
done
echo "best: ${names[0]} ${best[0]} req/s, ${names[1]} ${best[1]} req/s; https/http $(calc "round(${best[1]}/${best[0]},3)")"
echo "best 64 MiB: ${names[0]} ${bestl[0]} MB/s, ${names[1]} ${bestl[1]} MB/s; https/http $(calc "round(${bestl[1]}/${bestl[0]},3)")"
if [ -n "${BEFORE:-}" ]; then
    echo "best: ${names[2]} ${best[2]} req/s; https this build / https BEFORE $(calc "round(${best[1]}/${best[2]},3)")"
    echo "best 64 MiB: ${names[2]} ${bestl[2]} MB/s; https this build / https BEFORE $(calc "round(${bestl[1]}/${bestl[2]},3)")"
fi
echo "load average at start: $BENCH_LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg); built from $(git -C "$ROOT" rev-parse --short HEAD)"
