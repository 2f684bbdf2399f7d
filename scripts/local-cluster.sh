#!/bin/sh
# local-cluster.sh - a whole ca-cas cluster on this machine: three storageds
# (failure domains local-a, local-b, local-c) and one balancer, on loopback,
# with data under var/local-cluster/ in the checkout and two copies of every
# object (configs/local-cluster.yaml). Builds nothing: pass the build
# directory as $1 (default: build/). Ctrl-C stops exactly the processes it
# started.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
storaged=$build/storaged/ca-cas-storaged
balancerd=$build/balancerd/ca-cas-balancerd
config=$here/configs/local-cluster.yaml
data=$here/var/local-cluster

for bin in "$storaged" "$balancerd"; do
    if [ ! -x "$bin" ]; then
        echo "local-cluster: $bin not found; build first:" >&2
        echo "  cmake -S $here -B $build && cmake --build $build -j" >&2
        exit 2
    fi
done

mkdir -p "$data"
pids=""
stop() {
    trap - INT TERM EXIT
    for pid in $pids; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
    echo "local-cluster: stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

wait_up() { # url name
    i=0
    while ! curl -fs "$1/healthz" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "local-cluster: $2 did not come up; see $data/$2.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

for n in 1 2 3; do
    port=601$n
    "$storaged" --dir "$data/s$n" --listen "127.0.0.1:$port" --capacity 16G \
        >>"$data/s$n.log" 2>&1 &
    pids="$pids $!"
    wait_up "http://127.0.0.1:$port" "s$n"
done
"$balancerd" --config "$config" >>"$data/balancerd.log" 2>&1 &
pids="$pids $!"
wait_up "http://127.0.0.1:6001" balancerd

cat <<MSG
ca-cas local cluster is up: balancer at http://127.0.0.1:6001
  storageds: http://127.0.0.1:6011 (local-a), :6012 (local-b), :6013 (local-c)
  data and logs: $data

Try:
  echo hello | curl -s --data-binary @- http://127.0.0.1:6001/objects
  curl -s http://127.0.0.1:6001/objects/\$(printf 'hello\n' | sha1sum | cut -c1-40)
  curl -s http://127.0.0.1:6001/status
  $build/ca-cas/ca-cas --server http://127.0.0.1:6001 put README.md
  open http://127.0.0.1:6001/ in a browser for the cluster page

Ctrl-C stops the cluster.
MSG
wait
