# cluster.sh - the set-up the balancer benchmarks share (POSIX sh, sourced
# by ab-balancer.sh, balancer-cpu.sh, bench-balancer.sh, frontends.sh and
# hedged-read.sh; the single-storaged benchmarks use lib.sh).
#
#   cluster_init NAME BUILD_DIR     tools from BUILD_DIR (storaged, balancerd,
#                                   cli), a temporary folder $tmp, and an
#                                   EXIT trap that stops only the PIDs in
#                                   $pids (SIGCONT first: a benchmark may
#                                   have frozen one) and removes $tmp
#   cluster_storageds [OPTIONS]     three storageds (failure domains d1-d3,
#                                   no background scrub: on stores this
#                                   small it rescans without pause, noise
#                                   that is not what is measured), fresh
#                                   data folders, and $tmp/balancer.yaml
#                                   with replicas 2; sets $ports (their
#                                   ports), $spids (their PIDs) and $direct
#                                   (the first one's URL); waits for them
#   cluster_stop                    stops every process started so far
#   cluster_balancer BIN [OPTIONS]  one balancer BIN on $tmp/balancer.yaml;
#                                   sets $bal_port, $bal_pid, $bal (URL);
#                                   waits for it
#   freeport, wait_up URL, mkobj FILE BYTES (random bytes in $tmp/FILE,
#   prints its SHA-1 key), wrk_run URL CONNS (wrk -t2 for $secs),
#   reqs WRK_OUTPUT (requests/s), mbps WRK_OUTPUT (MB/s, MB = 10^6 bytes),
#   median N..., ratio A B (A/B, two decimals)

cluster_init() { # NAME BUILD_DIR
    case $2 in /*) build=$2 ;; *) build=$(pwd)/$2 ;; esac
    storaged=$build/storaged/ca-cas-storaged
    balancerd=$build/balancerd/ca-cas-balancerd
    cli=$build/ca-cas/ca-cas
    for tool in "$storaged" "$balancerd"; do
        [ -x "$tool" ] || { echo "bench: $tool not built" >&2; exit 2; }
    done
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/cas-$1-XXXXXX")
    pids=""
    trap cluster_cleanup EXIT
    trap 'exit 130' INT TERM
}

cluster_stop() { # stops every process in $pids and forgets them
    for pid in $pids; do
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    pids=""
}

cluster_cleanup() {
    cluster_stop
    rm -rf "$tmp"
}

freeport() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() { # URL: waits (10 s at most) for URL/healthz to answer 2xx
    i=0
    until curl -fs "$1/healthz" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "bench: $1 not up" >&2; exit 1; }
        sleep 0.1
    done
}

cluster_storageds() { # [storaged options]
    ports="" spids=""
    { echo "replicas: 2"; echo "backends:"; } >"$tmp/balancer.yaml"
    for n in 1 2 3; do
        p=$(freeport)
        rm -rf "$tmp/s$n"
        "$storaged" --dir "$tmp/s$n" --listen "127.0.0.1:$p" --log-level warn --scrub-rate 0 "$@" \
            >"$tmp/s$n.log" 2>&1 &
        pids="$pids $!" spids="$spids $!" ports="$ports $p"
        printf '  - url: http://127.0.0.1:%s\n    failure_domain: d%s\n' "$p" "$n" >>"$tmp/balancer.yaml"
    done
    for p in $ports; do wait_up "http://127.0.0.1:$p"; done
    direct=http://127.0.0.1:$(echo $ports | cut -d' ' -f1)
}

cluster_balancer() { # BIN [balancerd options]
    bin=$1
    shift
    bal_port=$(freeport)
    "$bin" --config "$tmp/balancer.yaml" --listen "127.0.0.1:$bal_port" --log-level warn \
        --spool-dir "$tmp" "$@" >"$tmp/balancerd-$bal_port.log" 2>&1 &
    bal_pid=$!
    pids="$pids $bal_pid"
    bal=http://127.0.0.1:$bal_port
    wait_up "$bal"
}

mkobj() { # FILE BYTES
    head -c "$2" /dev/urandom >"$tmp/$1"
    sha1sum "$tmp/$1" | cut -c1-40
}

wrk_run() { wrk -t2 -c"$2" -d"${secs}s" "$1" 2>&1; }
reqs() { echo "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
mbps() {
    echo "$1" | awk '/Transfer\/sec/ {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v);
        m = u=="GB" ? 1073.741824 : u=="MB" ? 1.048576 : u=="KB" ? 0.001024 : 0.000001;
        printf "%.0f", v*m}'
}
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a/b : 0}'; }
