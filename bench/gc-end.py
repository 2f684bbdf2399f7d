#!/usr/bin/env python3
"""gc-end.py - what recording removals in the data files (removal frames,
docs/FORMAT.md) costs: the time of one gc/end that removes OBJECTS small
objects (half of those stored: the other half is marked), and of DELETEs
one after another (each one now also fdatasyncs a data file).

Starts the given ca-cas-storaged on a fresh directory, stores 2 x OBJECTS
objects of SIZE bytes with ?sync=0 over 8 connections, begins a cycle,
marks half, times gc/end; then times DELETES deletes of the kept objects.

    bench/gc-end.py --storaged build/storaged/ca-cas-storaged [--objects 100000]
        [--size 100] [--deletes 2000] [--dir /var/tmp]
"""
import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storaged", required=True)
    ap.add_argument("--objects", type=int, default=100000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--deletes", type=int, default=2000)
    ap.add_argument("--dir", default=os.environ.get("CAS_BENCH_TMP", "/var/tmp"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cas-bench-gc-end.", dir=a.dir)
    port = free_port()
    log = open(os.path.join(tmp, "storaged.log"), "wb")
    p = subprocess.Popen([a.storaged, "--dir", os.path.join(tmp, "s"), "--listen", f"127.0.0.1:{port}",
                          "--log-level", "warn", "--scrub-rate", "0"], stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        n = 2 * a.objects
        keys = [None] * n

        def put(lo, hi):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for i in range(lo, hi):
                body = i.to_bytes(8, "little") * (a.size // 8) + bytes(a.size % 8)
                k = hashlib.sha1(body).hexdigest()
                c.request("PUT", f"/objects/{k}?sync=0", body=body)
                r = c.getresponse()
                r.read()
                assert r.status in (200, 201), r.status
                keys[i] = k
        t0 = time.time()
        th = [threading.Thread(target=put, args=(j * n // 8, (j + 1) * n // 8)) for j in range(8)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        fill = time.time() - t0
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

        def req(method, path, body=None):
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        import json
        st, b = req("POST", "/gc/begin")
        gid = json.loads(b)["id"]
        kept = keys[0::2]
        for j in range(0, len(kept), 10000):
            st, _ = req("POST", "/gc/mark", "".join(k + "\n" for k in kept[j:j + 10000]).encode())
            assert st == 200
        t0 = time.time()
        st, b = req("POST", f"/gc/end?id={gid}")
        end_s = time.time() - t0
        assert st == 200, b
        removed = json.loads(b)["removed"]
        t0 = time.time()
        for k in kept[:a.deletes]:
            st, _ = req("DELETE", f"/objects/{k}")
            assert st == 204, st
        del_s = time.time() - t0
        print(f"gc-end: objects_stored={n} fill_s={fill:.1f} gc_end_removed={removed} "
              f"gc_end_s={end_s:.3f} deletes={a.deletes} delete_ms_avg={1000 * del_s / a.deletes:.2f}")
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
