#!/usr/bin/env bash
# gc-agree.sh - what the agreement step of gc/end through a balancer costs
# (balancerd/gcagree.c: list every backend's garbage, ask the others about
# those keys, unmark the copies held live elsewhere).
#
# Two storageds holding the same OBJECTS small objects, one balancer. Two
# ends are timed through the balancer:
#   - "disagree": every object unmarked (POST /gc/mark) on storaged b only,
#     so a lists OBJECTS garbage keys, b is asked about all of them and a
#     gets OBJECTS unmarks; nothing is removed (the worst case for asking);
#   - "agree": nothing used, every object garbage on both; the end lists
#     2 x OBJECTS keys, asks nothing and removes everything.
# Each is compared with the same end sent to the storageds directly
# ("direct", no agreement step), measured on a copy of the same state.
#
#   bench/gc-agree.sh        env: OBJECTS (100000)
source "$(dirname "$0")/lib.sh"
bench_init gc-agree "$@"
if [ -z "${CAS_BENCH_NO_BUILD:-}" ]; then
    bench_build
    cmake --build "$BUILD" -j2 --target ca-cas-balancerd >/dev/null
fi
BALANCERD=$BUILD/balancerd/ca-cas-balancerd
N=${OBJECTS:-100000}

pa=$(free_port); pb=$(free_port); pl=$(free_port)
start_storaged "$BENCH_TMP/a" "$pa" --scrub-rate 0
start_storaged "$BENCH_TMP/b" "$pb" --scrub-rate 0
cat >"$BENCH_TMP/bal.yaml" <<YAML
replicas: 2
timeouts:
  gc_ms: 600000
backends:
  - url: http://127.0.0.1:$pa
    failure_domain: a
  - url: http://127.0.0.1:$pb
    failure_domain: b
YAML
"$BALANCERD" --config "$BENCH_TMP/bal.yaml" --listen "127.0.0.1:$pl" --log-level info \
    2>>"$BENCH_TMP/balancerd.log" &
BENCH_PIDS+=($!)
wait_http "http://127.0.0.1:$pl/healthz"
sleep 1.5 # the first probes

python3 - "$pa" "$pb" "$pl" "$N" "$BENCH_TMP" <<'PY'
import hashlib, http.client, json, sys, threading, time
pa, pb, pl, n, tmp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
keys = [hashlib.sha1(b"gc-agree object %d" % i).hexdigest() for i in range(n)]

def call(port, method, path, body=None, timeout=900):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

def fill():
    def worker(port, part):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in part:
            c.request("PUT", f"/objects/{keys[i]}?sync=0", body=b"gc-agree object %d" % i)
            r = c.getresponse(); r.read()
            assert r.status in (200, 201), r.status
        c.close()
    ts = [threading.Thread(target=worker, args=(p, range(k, n, 4))) for p in (pa, pb) for k in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]

def begin():
    st, body = call(pl, "POST", "/gc/begin")
    assert st == 200, body
    return json.loads(body)["id"]

def timed_end(port, gid):
    t = time.time(); st, body = call(port, "POST", f"/gc/end?id={gid}"); dt = time.time() - t
    assert st == 200, body
    return dt, json.loads(body)

def unmark_on_b():
    body = "".join(k + "\n" for k in keys).encode()
    st, r = call(pb, "POST", "/gc/mark", body)
    assert st == 200, r

t = time.time(); fill(); print(f"stored {n} objects on each of 2 storageds in {time.time() - t:.1f} s")
# direct: the same states, ended at the storageds themselves (no agreement)
gid = begin(); unmark_on_b()
da, _ = timed_end(pa, gid); db, _ = timed_end(pb, gid)
print(f"disagree, direct ends (a then b): {da + db:.2f} s (nothing removed on b, all {n} on a)")
fill()  # a's objects back
gid = begin(); unmark_on_b()
dt, r = timed_end(pl, gid)
print(f"disagree, through the balancer: {dt:.2f} s, {r}; {n} keys listed, {n} asked, {n} unmarked: "
      f"{n / dt:.0f} keys/s")
gid = begin()
dt, r = timed_end(pl, gid)
print(f"agree (all garbage), through the balancer: {dt:.2f} s, {r}; {2 * n} keys listed: "
      f"{2 * n / dt:.0f} keys listed/s (including the removal itself)")
fill()
gid = begin()
da, _ = timed_end(pa, gid); db, _ = timed_end(pb, gid)
print(f"agree (all garbage), direct ends: {da + db:.2f} s")
PY
grep "garbage copies kept" "$BENCH_TMP/balancerd.log" | tail -1 | sed 's/^.*GC/balancer log: GC/'
