#!/usr/bin/env bash
# tls.sh - the cost of HTTPS: GET of 4 KiB objects (requests/s, wrk -t2 -c32)
# and of 64 MiB objects (MB/s, wrk -t1 -c1) from ca-cas-storaged over TLS,
# against the same storaged build over plain HTTP, and against nginx with
# TLS serving the same bytes as static files. All three run at once and the
# rounds alternate between them, so the ratios hold even on a loaded
# machine. A throw-away CA and an ECDSA P-256 certificate are made with
# openssl; the TLS version and cipher negotiated are recorded.
#
#   bench/tls.sh        env: ROUNDS (2), SECONDS_PER_RUN (5), KEYS (500), NGINX_WORKERS (2)
source "$(dirname "$0")/lib.sh"
bench_init tls "$@"
bench_build
ROUNDS=${ROUNDS:-2} DUR=${SECONDS_PER_RUN:-5} NKEYS=${KEYS:-500} WORKERS=${NGINX_WORKERS:-2}
BIG=$((64 << 20)) NBIG=2

# Certificates for 127.0.0.1.
pki=$BENCH_TMP/pki
make_pki "$pki"

# One store loaded over plain HTTP, then copied: the plain and the TLS
# storaged serve the same bytes from the same build.
p_plain=$(free_port); p_tls=$(free_port); p_ngx=$(free_port)
start_storaged "$BENCH_TMP/store" "$p_plain"
mkdir -p "$BENCH_TMP/www/objects"
"$BUILD/bench/cas-bench-putload" --url "http://127.0.0.1:$p_plain" --size 4096 --count "$NKEYS" \
    --concurrency 8 --sync 0 --seed 11 --files-dir "$BENCH_TMP/www/objects" \
    --keys-out "$BENCH_TMP/keys-small" >/dev/null
"$BUILD/bench/cas-bench-putload" --url "http://127.0.0.1:$p_plain" --size $BIG --count $NBIG \
    --concurrency 2 --sync 0 --seed 23 --files-dir "$BENCH_TMP/www/objects" \
    --keys-out "$BENCH_TMP/keys-big" >/dev/null
stop_pid "$STORAGED_PID"
cp -a "$BENCH_TMP/store" "$BENCH_TMP/store-tls"
start_storaged "$BENCH_TMP/store" "$p_plain"
"$STORAGED" --dir "$BENCH_TMP/store-tls" --listen "127.0.0.1:$p_tls" --log-level warn \
    --tls-cert "$pki/srv.pem" --tls-key "$pki/srv.key" 2>>"$BENCH_TMP/storaged-tls.log" &
BENCH_PIDS+=("$!")

conf=$BENCH_TMP/nginx
mkdir -p "$conf/tmp"
cat >"$conf/nginx.conf" <<NGINX
user root;
daemon off;
master_process on;
worker_processes $WORKERS;
pid $conf/nginx.pid;
error_log $conf/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    types { }
    client_body_temp_path $conf/tmp/body;
    proxy_temp_path $conf/tmp/proxy;
    fastcgi_temp_path $conf/tmp/fastcgi;
    uwsgi_temp_path $conf/tmp/uwsgi;
    scgi_temp_path $conf/tmp/scgi;
    server {
        listen 127.0.0.1:$p_ngx ssl reuseport;
        ssl_certificate $pki/srv.pem;
        ssl_certificate_key $pki/srv.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $BENCH_TMP/www;
        location /objects/ { }
    }
}
NGINX
nginx -c "$conf/nginx.conf" -p "$conf" -e "$conf/error.log" &
BENCH_PIDS+=("$!")

wait_https() {
    for _ in $(seq 100); do
        [[ $(curl -s --cacert "$pki/ca.pem" -o /dev/null -w '%{http_code}' "$1" || true) != 000 ]] && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}
wait_https "https://127.0.0.1:$p_tls/healthz"
wait_https "https://127.0.0.1:$p_ngx/"

# Same bytes from all three (and everything in the page cache).
for k in $(head -3 "$BENCH_TMP/keys-small") $(cat "$BENCH_TMP/keys-big"); do
    a=$(curl -fs "http://127.0.0.1:$p_plain/objects/$k" | sha1sum | cut -c1-40)
    b=$(curl -fs --cacert "$pki/ca.pem" "https://127.0.0.1:$p_tls/objects/$k" | sha1sum | cut -c1-40)
    c=$(curl -fs --cacert "$pki/ca.pem" "https://127.0.0.1:$p_ngx/objects/$k" | sha1sum | cut -c1-40)
    [ "$a" = "$k" ] && [ "$b" = "$k" ] && [ "$c" = "$k" ] ||
        { echo "object $k: plain $a, tls $b, nginx $c" >&2; exit 1; }
done
proto() { # PORT: negotiated version and cipher, as wrk's OpenSSL sees them
    echo | openssl s_client -CAfile "$pki/ca.pem" -connect "127.0.0.1:$1" 2>/dev/null |
        sed -n 's/^New, \(.*\), Cipher is \(.*\)/\1 \2/p' | head -1
}
proto_cas=$(proto "$p_tls"); proto_ngx=$(proto "$p_ngx")

wrk_lua "$BENCH_TMP/keys-small" "$BENCH_TMP/small.lua"
wrk_lua "$BENCH_TMP/keys-big" "$BENCH_TMP/big.lua"
urls=("http://127.0.0.1:$p_plain" "https://127.0.0.1:$p_tls" "https://127.0.0.1:$p_ngx")
names=("storaged http" "storaged https" "nginx https")
for u in "${urls[@]}"; do run_wrk "$u" "$BENCH_TMP/small.lua" 2 32 1 >/dev/null; done # warm-up

rows_small="" rows_big=""
declare -A best_small best_big
for i in 0 1 2; do best_small[$i]=0; best_big[$i]=0; done
for r in $(seq "$ROUNDS"); do
    line="| $r |"
    for i in 0 1 2; do
        o=$(run_wrk "${urls[$i]}" "$BENCH_TMP/small.lua" 2 32 "$DUR")
        v=$(calc "round($(field "$o" requests)/$(field "$o" seconds))")
        line+=" $v ($(field "$o" p99_ms)) |"
        [ "$v" -gt "${best_small[$i]}" ] && best_small[$i]=$v
        echo "4 KiB round $r: ${names[$i]} $v req/s, p99 $(field "$o" p99_ms) ms"
    done
    rows_small+="$line"$'\n'
    line="| $r |"
    for i in 0 1 2; do
        o=$(run_wrk "${urls[$i]}" "$BENCH_TMP/big.lua" 1 1 "$DUR")
        v=$(calc "round($(field "$o" bytes)/$(field "$o" seconds)/1e6)")
        line+=" $v |"
        [ "$v" -gt "${best_big[$i]}" ] && best_big[$i]=$v
        echo "64 MiB round $r: ${names[$i]} $v MB/s"
    done
    rows_big+="$line"$'\n'
done
ratio() { calc "round($1/$2,3)"; }
s_tls_plain=$(ratio "${best_small[1]}" "${best_small[0]}")
s_tls_ngx=$(ratio "${best_small[1]}" "${best_small[2]}")
b_tls_plain=$(ratio "${best_big[1]}" "${best_big[0]}")
b_tls_ngx=$(ratio "${best_big[1]}" "${best_big[2]}")
echo "tls 4 KiB: https/http $s_tls_plain, storaged/nginx (both https) $s_tls_ngx"
echo "tls 64 MiB: https/http $b_tls_plain, storaged/nginx (both https) $b_tls_ngx"

cat >"$BENCH_TMP/section.md" <<MD
## TLS: the cost of HTTPS (tls.sh)

$(machine_info "$BENCH_TMP/store")
- servers, all up at once, rounds alternating between them: one storaged over plain HTTP, the same build over HTTPS (\`--tls-cert/--tls-key\`, libmicrohttpd + GnuTLS $(pkg-config --modversion gnutls), negotiated: $proto_cas) on a copy of the same store, and nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') with TLS ($WORKERS workers, $proto_ngx; sendfile cannot apply under TLS) serving the same bytes as static files
- the machine was shared with other engineers' builds and tests while this ran (see the load average): absolute figures are low and noisy; compare the servers within a round, all three were measured back to back in the same run
- certificate: ECDSA P-256, made by the script; wrk (OpenSSL) on the same 2 cores
- 4 KiB: wrk -t2 -c32 -d${DUR}s over $NKEYS keys (keep-alive: handshakes are not what is measured); 64 MiB: wrk -t1 -c1 -d${DUR}s over $NBIG objects; page cache warm; $ROUNDS rounds, best of each

| round | storaged http req/s (p99 ms) | storaged https req/s (p99 ms) | nginx https req/s (p99 ms) |
|---|---|---|---|
${rows_small}
| round | storaged http MB/s | storaged https MB/s | nginx https MB/s |
|---|---|---|---|
${rows_big}
- **4 KiB: storaged https ${best_small[1]} req/s = $s_tls_plain x its plain http (${best_small[0]}), $s_tls_ngx x nginx https (${best_small[2]})**
- **64 MiB: storaged https ${best_big[1]} MB/s = $b_tls_plain x its plain http (${best_big[0]}), $b_tls_ngx x nginx https (${best_big[2]})**
MD
results_section "$BENCH_TMP/section.md"
