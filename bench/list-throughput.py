#!/usr/bin/env python3
"""list-throughput.py - GET /objects throughput, directly from a storaged and
through a balancer, and the balancer's memory while it lists.

    python3 bench/list-throughput.py [--objects N] [--rounds R] [--concurrent C] BUILD [BUILD...]

Builds two identical disk stores of N objects of 32 bytes (default 300000)
with the first BUILD's cas-bench-replay (configure it with -DCAS_BENCH=ON),
then for each BUILD, in turn and R times (default 3), alternating: starts the
two storageds and two balancers on them (one with one backend, one with both:
every key on both, the merge's worst case), and times one listing read to
the end with a plain socket client: keys/s directly, through the one-backend
balancer and through the two-backend one (whose answer has N keys, each
once). Then C (default 8) concurrent listings through the two-backend
balancer, each client reading 1 MiB at a time with 20 ms between, and the balancer's RSS
growth (VmHWM - VmRSS at the start). Prints one line of figures per build and
round, and the medians. Data under $CAS_BENCH_TMP (default /var/tmp); only
the processes it started are stopped.
"""
import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402  (free_port, rss_kib, peak_rss_kib)


def wait_up(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"daemon on {port} exited")
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                c.close()
                return
            c.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"daemon on {port} not up")


def listing(port, pace=None):
    """Reads one whole GET /objects; (lines, seconds, complete). pace:
    seconds to wait after each MiB read (a slow client)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.time()
    c.request("GET", "/objects")
    r = c.getresponse()
    lines, complete = 0, True
    try:
        while True:
            d = r.read(1 << 20)
            if not d:
                break
            lines += d.count(b"\n")
            if pace:
                time.sleep(pace)
    except http.client.IncompleteRead:
        complete = False
    c.close()
    return lines, time.time() - t0, complete


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=300000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("builds", nargs="+")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cas-bench-list.", dir=os.environ.get("CAS_BENCH_TMP", "/var/tmp"))
    procs = []
    try:
        replay = os.path.join(a.builds[0], "bench", "cas-bench-replay")
        t0 = time.time()
        for n in ("s1", "s2"):
            # A storaged's first start writes the node file; then the
            # objects go in through the engine (no HTTP, no fsync).
            port = harness.free_port()
            p = subprocess.Popen([os.path.join(a.builds[0], "storaged", "ca-cas-storaged"), "--dir",
                                  os.path.join(tmp, n), "--listen", f"127.0.0.1:{port}"],
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_up(port, p)
            p.terminate()
            p.wait(20)
            procs.clear()
            subprocess.run([replay, "build", os.path.join(tmp, n), str(a.objects), "32"], check=True,
                           stdout=subprocess.DEVNULL)
        print(f"# two stores of {a.objects} objects built in {time.time() - t0:.1f} s", flush=True)
        res = {b: [] for b in a.builds}
        for r in range(a.rounds):
            for b in a.builds:
                ports = {}
                for n in ("s1", "s2"):
                    ports[n] = harness.free_port()
                    p = subprocess.Popen([os.path.join(b, "storaged", "ca-cas-storaged"), "--dir",
                                          os.path.join(tmp, n), "--listen", f"127.0.0.1:{ports[n]}",
                                          "--scrub-rate", "0", "--log-level", "warn"],
                                         stderr=open(os.path.join(tmp, f"{n}.log"), "ab"))
                    procs.append(p)
                    wait_up(ports[n], p)
                bals = {}
                for name, members in (("one", ["s1"]), ("two", ["s1", "s2"])):
                    cfg = os.path.join(tmp, f"{name}.yaml")
                    with open(cfg, "w") as f:
                        f.write(f"replicas: {len(members)}\nbackends:\n")
                        for i, m in enumerate(members):
                            f.write(f"  - url: http://127.0.0.1:{ports[m]}\n    failure_domain: d{i}\n")
                    port = harness.free_port()
                    p = subprocess.Popen([os.path.join(b, "balancerd", "ca-cas-balancerd"), "--config", cfg,
                                          "--listen", f"127.0.0.1:{port}", "--log-level", "warn"],
                                         stderr=open(os.path.join(tmp, f"{name}.log"), "ab"))
                    procs.append(p)
                    wait_up(port, p)
                    bals[name] = (port, p)
                time.sleep(1.5)  # the balancers' first probes
                direct_lines, direct_s, ok1 = listing(ports["s1"])
                one_lines, one_s, ok2 = listing(bals["one"][0])
                two_lines, two_s, ok3 = listing(bals["two"][0])
                pid = bals["two"][1].pid
                rss0 = harness.rss_kib(pid)
                ts = [threading.Thread(target=listing, args=(bals["two"][0], 0.02))
                      for _ in range(a.concurrent)]
                c0 = time.time()
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                conc_s = time.time() - c0
                hwm = harness.peak_rss_kib(pid)
                fig = {
                    "direct_keys_s": a.objects / direct_s,
                    "bal1_keys_s": a.objects / one_s,
                    "bal2_keys_s": a.objects / two_s,
                    "rss_growth_mib": (hwm - rss0) / 1024,
                    "concurrent_s": conc_s,
                }
                ok = direct_lines == one_lines == two_lines == a.objects and ok1 and ok2 and ok3
                res[b].append(fig)
                print(f"round {r + 1} {b}: " + " ".join(f"{k}={v:.1f}" for k, v in fig.items()) +
                      ("" if ok else f" LINES DIFFER {direct_lines} {one_lines} {two_lines}"), flush=True)
                for p in procs:
                    p.terminate()
                for p in procs:
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                procs.clear()
        for b in a.builds:
            med = {k: statistics.median(f[k] for f in res[b]) for k in res[b][0]}
            print(f"median {b}: " + " ".join(f"{k}={v:.1f}" for k, v in med.items()))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
