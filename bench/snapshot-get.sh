#!/usr/bin/env bash
# snapshot-get.sh - GET latency while the index snapshot of a big store runs.
# Builds a store of OBJECTS objects of 100 bytes through the engine's own
# operations (bench/replay.c build), grows its index with GC cycles that
# change no object (replay.c churn) so that the next compaction rewrites it,
# starts storaged, and measures open-loop GET latency of one 100-byte object
# (bench/latency.py, RATE requests/s for SECONDS_PER_RUN s) twice: with
# nothing else running, and with POST /compact sent 1 s in, which (no dead
# bytes) only rewrites the index: a snapshot of every object.
#
#   bench/snapshot-get.sh     env: OBJECTS (1000000), RATE (400), SECONDS_PER_RUN (8), ROUNDS (2)
source "$(dirname "$0")/lib.sh"
bench_init snapshot-get "$@"
bench_build
OBJECTS=${OBJECTS:-1000000} RATE=${RATE:-400} DUR=${SECONDS_PER_RUN:-8} ROUNDS=${ROUNDS:-2}
REPLAY=$BUILD/bench/cas-bench-replay
LAT="python3 $BENCH_DIR/latency.py"
pick() { # LINE WORD: the number after WORD in a latency.py line
    awk -v w="$2" '{for (i = 1; i < NF; i++) if ($i == w) {print $(i + 1); exit}}' <<<"$1"
}

b=$("$REPLAY" build "$BENCH_TMP/store" "$OBJECTS" 100)
echo "$b"
# replay.c's object i is its 8-byte counter followed by zeros: object 0 is 100 zero bytes.
key=$(python3 -c 'import hashlib; print(hashlib.sha1(bytes(100)).hexdigest())')
rows=""
for r in $(seq "$ROUNDS"); do
    c=$("$REPLAY" churn "$BENCH_TMP/store" 2)
    port=$(free_port)
    start_storaged "$BENCH_TMP/store" "$port" --scrub-rate 0
    url=http://127.0.0.1:$port
    curl -fs -o /dev/null "$url/objects/$key"
    base=$($LAT "$url/objects/$key" "$RATE" "$DUR")
    (
        sleep 1
        t0=$(date +%s.%N)
        curl -fs -o /dev/null -X POST "$url/compact"
        while curl -fs "$url/compact" | grep -q '"running":true'; do sleep 0.05; done
        echo "$(date +%s.%N) - $t0" | bc >"$BENCH_TMP/snap-seconds"
    ) &
    poller=$!
    during=$($LAT "$url/objects/$key" "$RATE" "$DUR")
    wait "$poller"
    snap=$(cat "$BENCH_TMP/snap-seconds")
    recs=$(curl -fs "$url/metrics" | awk '$1 == "cas_index_records" {print $2}')
    stop_pid "$STORAGED_PID"
    echo "round $r: $c; snapshot took ${snap}s (index now ${recs:-?} records)"
    echo "  without snapshot: $base"
    echo "  during snapshot:  $during"
    rows+="| $r | $(field "$c" index_records) | $snap | $(pick "$base" p50) / $(pick "$base" p99) / $(pick "$base" max) | $(pick "$during" p50) / $(pick "$during" p99) / $(pick "$during" max) |"$'\n'
done

cat >"$BENCH_TMP/section.md" <<MD
## GET latency during an index snapshot of $(field "$b" objects) objects (snapshot-get.sh)

$(machine_info "$BENCH_TMP/store")
- store: $(field "$b" objects) objects of 100 bytes (bench/replay.c build), index grown by 2 GC cycles that unmark every object (replay.c churn) so that compaction rewrites it
- load: bench/latency.py, open loop, $RATE GET/s of one 100-byte object for ${DUR}s, 16 connections; "during": POST /compact sent 1 s in (no dead bytes: the compaction is the index snapshot alone); snapshot time from POST to GET /compact saying it is done

| round | index records before | snapshot s | without: p50 / p99 / max ms | during: p50 / p99 / max ms |
|---|---|---|---|---|
${rows}
MD
results_section "$BENCH_TMP/section.md"
