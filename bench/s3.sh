#!/usr/bin/env bash
# s3.sh - the S3 backend's overhead: PUT and GET MB/s of ca-cas-storaged
# --backend s3 (client -> storaged -> s3rver) against a plain `curl`
# upload/download of the same bytes straight to the same s3rver, signed
# with curl's --aws-sigv4 (the same signing the backend gets from libcurl).
# Sizes 1 MiB and 64 MiB; one request at a time on both sides, one curl
# process per object on both sides, so the ratio is what the backend adds.
# s3rver comes from tests/s3 (scripts/install-deps.sh installs it).
#
#   bench/s3.sh        env: COUNT_1M (32), COUNT_64M (4), ROUNDS (2)
source "$(dirname "$0")/lib.sh"
bench_init s3 "$@"
bench_build
COUNT_1M=${COUNT_1M:-32} COUNT_64M=${COUNT_64M:-4} ROUNDS=${ROUNDS:-2}
S3RVER=$ROOT/tests/s3/node_modules/.bin/s3rver
[ -x "$S3RVER" ] || { echo "s3.sh: $S3RVER missing: run scripts/install-deps.sh" >&2; exit 1; }
BUCKET=cas-bench
printf 'S3RVER\n' >"$BENCH_TMP/access-key"
printf 'S3RVER\n' >"$BENCH_TMP/secret-key"
chmod 600 "$BENCH_TMP/access-key" "$BENCH_TMP/secret-key"
SIGV4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

s3port=$(free_port)
mkdir -p "$BENCH_TMP/s3rver"
"$S3RVER" -d "$BENCH_TMP/s3rver" -a 127.0.0.1 -p "$s3port" --silent --no-vhost-buckets \
    --configure-bucket "$BUCKET" >>"$BENCH_TMP/s3rver.log" 2>&1 &
BENCH_PIDS+=("$!")
wait_http "http://127.0.0.1:$s3port/$BUCKET"
S3URL=http://127.0.0.1:$s3port

# objects SIZE COUNT DIR: COUNT distinct files of SIZE bytes, named by SHA-1.
objects() {
    mkdir -p "$3"
    local i f k
    for i in $(seq "$2"); do
        f=$3/tmp
        head -c "$1" /dev/urandom >"$f"
        k=$(sha1sum "$f" | cut -c1-40)
        mv "$f" "$3/$k"
    done
}

# timed CMD...: runs CMD, prints its wall time in seconds.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    calc "$t1 - $t0"
}

# Each loop fails on the first non-2xx answer (--fail) or short body.
put_storaged() { local f; for f in "$1"/*; do curl -sS --fail -o /dev/null -T "$f" "$2/objects/$(basename "$f")"; done; }
get_storaged() { local f; for f in "$1"/*; do curl -sS --fail -o "$BENCH_TMP/got" "$2/objects/$(basename "$f")"; cmp -s "$f" "$BENCH_TMP/got"; done; }
put_curl() { local f; for f in "$1"/*; do curl -sS --fail -o /dev/null "${SIGV4[@]}" -T "$f" "$S3URL/$BUCKET/ref/$3/$(basename "$f")"; done; }
get_curl() { local f; for f in "$1"/*; do curl -sS --fail -o "$BENCH_TMP/got" "${SIGV4[@]}" "$S3URL/$BUCKET/ref/$3/$(basename "$f")"; cmp -s "$f" "$BENCH_TMP/got"; done; }

rows="" summary=""
for spec in "1M $((1 << 20)) $COUNT_1M" "64M $((64 << 20)) $COUNT_64M"; do
    read -r label size count <<<"$spec"
    objects "$size" "$count" "$BENCH_TMP/data-$label"
    mb=$(calc "$size * $count / 1e6")
    best_sp=0 best_cp=0 best_sg=0 best_cg=0
    for r in $(seq "$ROUNDS"); do
        port=$(free_port)
        start_storaged "$BENCH_TMP/node-$label-$r" "$port" --backend s3 --capacity 100G \
            --s3-endpoint "$S3URL" --s3-bucket "$BUCKET" --s3-region us-east-1 \
            --s3-access-key-file "$BENCH_TMP/access-key" --s3-secret-key-file "$BENCH_TMP/secret-key" \
            || { cat "$BENCH_TMP/storaged.log" >&2; exit 1; }
        url=http://127.0.0.1:$port
        # Alternate who goes first so that neither always meets a warm s3rver.
        if [ $((r % 2)) -eq 1 ]; then
            sp=$(timed put_storaged "$BENCH_TMP/data-$label" "$url"); cp=$(timed put_curl "$BENCH_TMP/data-$label" "$url" "$label-$r")
            sg=$(timed get_storaged "$BENCH_TMP/data-$label" "$url"); cg=$(timed get_curl "$BENCH_TMP/data-$label" "$url" "$label-$r")
        else
            cp=$(timed put_curl "$BENCH_TMP/data-$label" "$url" "$label-$r"); sp=$(timed put_storaged "$BENCH_TMP/data-$label" "$url")
            cg=$(timed get_curl "$BENCH_TMP/data-$label" "$url" "$label-$r"); sg=$(timed get_storaged "$BENCH_TMP/data-$label" "$url")
        fi
        # Remove this round's objects from the bucket so the next PUT is new.
        curl -sS --fail -o /dev/null -X POST "$url/gc/begin"
        gid=$(curl -sS --fail "$url/gc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
        curl -sS --fail -o /dev/null -X POST "$url/gc/end?id=$gid"
        stop_pid "$STORAGED_PID"
        msp=$(calc "round($mb/$sp,1)"); mcp=$(calc "round($mb/$cp,1)")
        msg=$(calc "round($mb/$sg,1)"); mcg=$(calc "round($mb/$cg,1)")
        echo "$label round $r: PUT storaged $msp MB/s, curl $mcp MB/s; GET storaged $msg MB/s, curl $mcg MB/s"
        rows+="| $label | $r | $msp | $mcp | $(calc "round($msp/$mcp,3)") | $msg | $mcg | $(calc "round($msg/$mcg,3)") |"$'\n'
        best_sp=$(calc "max($best_sp,$msp)"); best_cp=$(calc "max($best_cp,$mcp)")
        best_sg=$(calc "max($best_sg,$msg)"); best_cg=$(calc "max($best_cg,$mcg)")
    done
    line="$label: PUT $best_sp vs $best_cp MB/s (ratio $(calc "round($best_sp/$best_cp,3)")), GET $best_sg vs $best_cg MB/s (ratio $(calc "round($best_sg/$best_cg,3)"))"
    echo "s3 $line"
    summary+="- **$line** (best of $ROUNDS rounds, storaged vs curl)"$'\n'
    rm -rf "$BENCH_TMP/data-$label"
done

cat >"$BENCH_TMP/section.md" <<MD
## S3 backend against plain curl to the same s3rver (s3.sh)

$(machine_info "$BENCH_TMP/s3rver")
- server: s3rver $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$ROOT/tests/s3/node_modules/s3rver/package.json" | head -1) (tests/s3) on loopback, Node $(node --version), its files in the data dir above
- load: one request at a time, one \`curl\` process per object on both sides; $COUNT_1M objects of 1 MiB, $COUNT_64M of 64 MiB, distinct random bytes; each GET compared with the bytes put; MB = 10^6
- storaged: \`--backend s3 --capacity 100G\`, default sync; client -> storaged -> s3rver
- reference: \`curl --aws-sigv4 "aws:amz:us-east-1:s3"\` (UNSIGNED-PAYLOAD) PUT/GET of the same files straight to s3rver

| size | round | PUT storaged MB/s | PUT curl MB/s | ratio | GET storaged MB/s | GET curl MB/s | ratio |
|---|---|---|---|---|---|---|---|
${rows}
${summary}
MD
results_section "$BENCH_TMP/section.md"
