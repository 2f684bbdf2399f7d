#!/usr/bin/env bash
# get-large.sh - GET of 64 MiB objects (4 distinct ones, page cache warm),
# verified against the key as they stream (storaged always does): MB/s of
# ca-cas-storaged against nginx serving the same bytes as static files
# (2 workers, sendfile on, access_log off), over 1 and over 4 connections.
# Target ratio >= 0.7.
#
#   bench/get-large.sh        env: ROUNDS (2), SECONDS_PER_RUN (8), NGINX_WORKERS (2)
source "$(dirname "$0")/lib.sh"
bench_init get-large "$@"
bench_build
ROUNDS=${ROUNDS:-2} DUR=${SECONDS_PER_RUN:-8} WORKERS=${NGINX_WORKERS:-2}
SIZE=$((64 << 20)) NOBJ=4

p1=$(free_port); p2=$(free_port)
start_storaged "$BENCH_TMP/store" "$p1"
mkdir -p "$BENCH_TMP/www/objects"
"$BUILD/bench/cas-bench-putload" --url "http://127.0.0.1:$p1" --size $SIZE --count $NOBJ \
    --concurrency 2 --sync 0 --seed 23 --files-dir "$BENCH_TMP/www/objects" \
    --keys-out "$BENCH_TMP/keys" >/dev/null
start_nginx "$BENCH_TMP/www" "$p2" "$WORKERS"
while read -r k; do # same bytes from both, and both copies in the page cache
    a=$(curl -fs "http://127.0.0.1:$p1/objects/$k" | sha1sum | cut -c1-40)
    b=$(curl -fs "http://127.0.0.1:$p2/objects/$k" | sha1sum | cut -c1-40)
    [ "$a" = "$k" ] && [ "$b" = "$k" ] || { echo "object $k: storaged $a, nginx $b" >&2; exit 1; }
done <"$BENCH_TMP/keys"
wrk_lua "$BENCH_TMP/keys" "$BENCH_TMP/get.lua"

mbps() { calc "round($(field "$1" bytes)/$(field "$1" seconds)/1e6)"; }
rows="" summary=""
for mode in "1 1" "2 4"; do
    set -- $mode
    threads=$1 conns=$2 best_s=0 best_n=0
    for r in $(seq "$ROUNDS"); do
        s=$(run_wrk "http://127.0.0.1:$p1" "$BENCH_TMP/get.lua" "$threads" "$conns" "$DUR")
        n=$(run_wrk "http://127.0.0.1:$p2" "$BENCH_TMP/get.lua" "$threads" "$conns" "$DUR")
        ms=$(mbps "$s"); mn=$(mbps "$n")
        echo "$conns conn, round $r: storaged $ms MB/s, nginx $mn MB/s"
        rows+="| $conns | $r | $ms | $mn | $(calc "round($ms/$mn,3)") |"$'\n'
        [ "$ms" -gt "$best_s" ] && best_s=$ms
        [ "$mn" -gt "$best_n" ] && best_n=$mn
    done
    ratio=$(calc "round($best_s/$best_n,3)")
    verdict=$(calc "'meets' if $ratio >= 0.7 else 'MISSES'")
    echo "get-large $conns conn: storaged $best_s MB/s, nginx $best_n MB/s, ratio $ratio ($verdict target 0.7)"
    summary+="- **$conns connection(s): storaged $best_s MB/s vs nginx $best_n MB/s: ratio $ratio** (target >= 0.7: $verdict)"$'\n'
done

cat >"$BENCH_TMP/section.md" <<MD
## 2. GET 64 MiB objects (get-large.sh)

$(machine_info "$BENCH_TMP/store")
- load: wrk (-t1 -c1, and -t2 -c4) -d${DUR}s cycling over $NOBJ distinct 64 MiB objects, page cache warm, $ROUNDS rounds alternating servers, best round of each; MB = 10^6 bytes received by wrk (wrk on the same 2 cores)
- storaged verifies every byte against the key as it streams (SHA-1)
- reference: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $WORKERS worker(s), sendfile on, access_log off, same bytes as static files

| connections | round | storaged MB/s | nginx MB/s | ratio |
|---|---|---|---|---|
${rows}
${summary}
MD
results_section "$BENCH_TMP/section.md"
