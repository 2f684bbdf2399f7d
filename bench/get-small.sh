#!/usr/bin/env bash
# get-small.sh - GET of 4 KiB objects over 32 keep-alive connections:
# requests/s of ca-cas-storaged against nginx serving the same bytes as
# static files (2 workers, sendfile on, access_log off). Target ratio >= 0.7.
#
#   bench/get-small.sh        env: ROUNDS (3), SECONDS_PER_RUN (8), KEYS (1000),
#                             NGINX_WORKERS (2)
source "$(dirname "$0")/lib.sh"
bench_init get-small "$@"
bench_build
ROUNDS=${ROUNDS:-3} DUR=${SECONDS_PER_RUN:-8} NKEYS=${KEYS:-1000} WORKERS=${NGINX_WORKERS:-2}

p1=$(free_port); p2=$(free_port)
start_storaged "$BENCH_TMP/store" "$p1"
mkdir -p "$BENCH_TMP/www/objects"
"$BUILD/bench/cas-bench-putload" --url "http://127.0.0.1:$p1" --size 4096 --count "$NKEYS" \
    --concurrency 8 --sync 0 --seed 11 --files-dir "$BENCH_TMP/www/objects" \
    --keys-out "$BENCH_TMP/keys" >/dev/null
start_nginx "$BENCH_TMP/www" "$p2" "$WORKERS"
k=$(head -1 "$BENCH_TMP/keys")
cmp <(curl -fs "http://127.0.0.1:$p1/objects/$k") <(curl -fs "http://127.0.0.1:$p2/objects/$k")
wrk_lua "$BENCH_TMP/keys" "$BENCH_TMP/get.lua"

run_wrk "http://127.0.0.1:$p1" "$BENCH_TMP/get.lua" 2 32 2 >/dev/null   # warm-up
run_wrk "http://127.0.0.1:$p2" "$BENCH_TMP/get.lua" 2 32 2 >/dev/null
best_s=0 best_n=0 rows=""
for r in $(seq "$ROUNDS"); do
    s=$(run_wrk "http://127.0.0.1:$p1" "$BENCH_TMP/get.lua" 2 32 "$DUR")
    n=$(run_wrk "http://127.0.0.1:$p2" "$BENCH_TMP/get.lua" 2 32 "$DUR")
    rs=$(calc "round($(field "$s" requests)/$(field "$s" seconds))")
    rn=$(calc "round($(field "$n" requests)/$(field "$n" seconds))")
    echo "round $r: storaged $rs req/s (p99 $(field "$s" p99_ms) ms), nginx $rn req/s (p99 $(field "$n" p99_ms) ms)"
    rows+="| $r | $rs | $(field "$s" p50_ms) / $(field "$s" p99_ms) | $rn | $(field "$n" p50_ms) / $(field "$n" p99_ms) | $(calc "round($rs/$rn,3)") |"$'\n'
    [ "$rs" -gt "$best_s" ] && best_s=$rs
    [ "$rn" -gt "$best_n" ] && best_n=$rn
done
ratio=$(calc "round($best_s/$best_n,3)")
verdict=$(calc "'meets' if $ratio >= 0.7 else 'MISSES'")
echo "get-small: storaged $best_s req/s, nginx ($WORKERS workers) $best_n req/s, ratio $ratio ($verdict target 0.7)"

cat >"$BENCH_TMP/section.md" <<MD
## 1. GET 4 KiB objects (get-small.sh)

$(machine_info "$BENCH_TMP/store")
- load: wrk -t2 -c32 -d${DUR}s, Lua script cycling over $NKEYS distinct 4 KiB keys, $ROUNDS rounds alternating servers, best round of each; wrk runs on the same 2 cores
- reference: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $WORKERS worker(s), sendfile on, access_log off, same bytes as static files

| round | storaged req/s | p50 / p99 ms | nginx req/s | p50 / p99 ms | ratio |
|---|---|---|---|---|---|
${rows}
**storaged $best_s req/s vs nginx $best_n req/s: ratio $ratio** (target >= 0.7: $verdict)
MD
results_section "$BENCH_TMP/section.md"
