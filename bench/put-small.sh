#!/usr/bin/env bash
# put-small.sh - durable PUT of 4 KiB objects, 32 concurrent: ops/s of
# ca-cas-storaged, and its ratio against one fdatasync per object in a plain
# loop (bench/fsyncloop.c: append 4 KiB + fdatasync, repeated) on the same
# file system. Above 1 means group commit is sharing syncs between writers.
#
#   bench/put-small.sh        env: SECONDS_PER_RUN (10), CONC (32), ROUNDS (2)
source "$(dirname "$0")/lib.sh"
bench_init put-small "$@"
bench_build
DUR=${SECONDS_PER_RUN:-10} CONC=${CONC:-32} ROUNDS=${ROUNDS:-2}
PUTLOAD=$BUILD/bench/cas-bench-putload

rows="" best_s=0 best_r=0
for r in $(seq "$ROUNDS"); do
    port=$(free_port)
    start_storaged "$BENCH_TMP/store$r" "$port"
    s=$("$PUTLOAD" --url "http://127.0.0.1:$port" --size 4096 --count 200000 \
        --concurrency "$CONC" --sync 1 --duration "$DUR" --seed $((200 + r)))
    stop_pid "$STORAGED_PID"
    [ "$(field "$s" fails)" = 0 ] || { echo "putload: $s" >&2; exit 1; }
    f=$("$BUILD/bench/cas-bench-fsyncloop" "$BENCH_TMP/fsyncloop" 2000 4096)
    rm -rf "$BENCH_TMP/store$r" "$BENCH_TMP/fsyncloop"
    os=$(field "$s" ops_per_s); of=$(field "$f" ops_per_s)
    echo "round $r: storaged $os ops/s (p50 $(field "$s" p50_ms) ms, p99 $(field "$s" p99_ms) ms), fdatasync loop $of ops/s"
    rows+="| $r | $os | $(field "$s" p50_ms) / $(field "$s" p99_ms) | $of | $(calc "round($os/$of,2)") |"$'\n'
    best_s=$(calc "max($best_s,$os)"); best_r=$(calc "max($best_r,$of)")
done
ratio=$(calc "round($best_s/$best_r,2)")
echo "put-small: storaged $best_s ops/s, fdatasync loop $best_r ops/s, ratio $ratio"

mkdir -p "$BENCH_TMP/store1"
cat >"$BENCH_TMP/section.md" <<MD
## 4. PUT 4 KiB objects, durable, 32 concurrent (put-small.sh)

$(machine_info "$BENCH_TMP/store1")
- load: bench/putload.c (libcurl multi), $CONC concurrent uploads of distinct 4 KiB objects for ${DUR}s, default sync (durable), fresh store each round; $ROUNDS rounds, best of each
- reference: bench/fsyncloop.c, 2000 x (append 4 KiB + fdatasync) on one file in the same file system

| round | storaged ops/s | p50 / p99 ms | fdatasync loop ops/s | ratio |
|---|---|---|---|---|
${rows}
**storaged $best_s ops/s vs $best_r fdatasync/s in a plain loop: ratio $ratio** (above 1: writers share syncs)
MD
results_section "$BENCH_TMP/section.md"
