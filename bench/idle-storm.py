#!/usr/bin/env python3
"""idle-storm.py - a second client's latency while one address holds
thousands of idle and slow-drip connections, on storaged and on a balancer.

Starts a storaged (one 4 KiB object) and a balancer in front of it on
loopback, then for each daemon:
  1. quiet: PROBES GETs of the 4 KiB object from 127.0.0.2, each on a new
     connection (connect + request + full answer), latency p50/p99/max;
  2. storm: from 127.0.0.1, SOCKETS connections (a tenth of them drip one
     header byte every 0.5 s, the rest never send a byte), re-opened as the
     daemon closes them (at most REOPEN_PER_S a second), held for the whole
     measurement; the same probes from 127.0.0.2 meanwhile. Reported: probe
     latency, failed probes, connections the daemon held, its RSS before and
     its peak (VmHWM) during.
Daemons run with their defaults (no guard option is passed), so the script
also measures a build from before the guards existed.

  bench/idle-storm.py [--build DIR] [--sockets 10000] [--seconds 15]
                      [--probes 300] [--write-results]
--write-results refreshes the idle-storm section of bench/RESULTS.md.
"""
import argparse
import datetime
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import hashlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(port, method, path, body=b"", source=None, timeout=10):
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
              .encode() + body)
    out = b""
    while True:
        x = s.recv(65536)
        if not x:
            break
        out += x
    s.close()
    return int(out.split(b" ", 2)[1]) if out else 0


def wait_up(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"daemon exited with {proc.returncode}")
        try:
            if http(port, "GET", "/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("daemon did not come up")


def rss(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def probe_series(port, path, n, stop=None):
    lat, failed = [], 0
    for _ in range(n):
        if stop and stop.is_set():
            break
        t0 = time.monotonic()
        try:
            ok = http(port, "GET", path, source="127.0.0.2", timeout=5) == 200
        except OSError:
            ok = False
        dt = time.monotonic() - t0
        if ok:
            lat.append(dt)
        else:
            failed += 1
        time.sleep(0.02)
    return lat, failed


class Storm(threading.Thread):
    def __init__(self, port, n, reopen_per_s):
        super().__init__(daemon=True)
        self.port, self.n, self.reopen_per_s = port, n, reopen_per_s
        self.stop = threading.Event()
        self.socks = [None] * n
        self.held = []

    def open_one(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return None
        return s

    def alive(self, s):
        try:
            return s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def run(self):
        head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100000
        pos = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            budget = int(self.reopen_per_s * 0.5)
            held = 0
            for i in range(self.n):
                s = self.socks[i]
                if s is not None and not self.alive(s):
                    s.close()
                    s = self.socks[i] = None
                if s is None and budget > 0:
                    budget -= 1
                    s = self.socks[i] = self.open_one()
                if s is None:
                    continue
                held += 1
                if i % 10 == 0:  # a drip socket
                    try:
                        s.send(head[pos:pos + 1])
                    except OSError:
                        pass
            pos += 1
            self.held.append(held)
            self.stop.wait(max(0.0, 0.5 - (time.monotonic() - t0)))
        for s in self.socks:
            if s:
                s.close()


def server_held(pid, port):
    """Established connections of the daemon on its port (from /proc)."""
    n = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, st = parts[1], parts[3]
                    if st == "01" and int(local.split(":")[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(name, proc, port, path, args):
    quiet, qfail = probe_series(port, path, args.probes)
    rss0 = rss(proc.pid)
    storm = Storm(port, args.sockets, args.reopen_per_s)
    storm.start()
    time.sleep(2)  # let the storm build up
    held_by_server = server_held(proc.pid, port)
    stop = threading.Event()
    timer = threading.Timer(args.seconds, stop.set)
    timer.start()
    busy, bfail = probe_series(port, path, 10 ** 9, stop)
    timer.cancel()
    peak = rss(proc.pid, "VmHWM:")
    rss1 = rss(proc.pid)
    storm.stop.set()
    storm.join()
    client_held = max(storm.held) if storm.held else 0
    r = dict(name=name, quiet=quiet, qfail=qfail, busy=busy, bfail=bfail, rss0=rss0, rss1=rss1, peak=peak,
             client_held=client_held, server_held=held_by_server)
    ms = lambda v: f"{v * 1000:.2f}"
    print(f"{name}: quiet p50 {ms(pct(quiet, .5))} p99 {ms(pct(quiet, .99))} ms ({qfail} failed); "
          f"storm p50 {ms(pct(busy, .5))} p99 {ms(pct(busy, .99))} max {ms(max(busy) if busy else float('nan'))} ms, "
          f"{len(busy)} served, {bfail} failed; held by daemon {held_by_server}; "
          f"RSS {rss0} -> {rss1} KiB (peak {peak})", flush=True)
    # Let the daemon drop what is left before the next measurement.
    time.sleep(1)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("CAS_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--sockets", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--reopen-per-s", type=int, default=2000)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.sockets + 500:
        sys.exit(f"open files hard limit {hard} too low for {args.sockets} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="cas-storm-")
    procs = []
    try:
        sp = free_port()
        s = subprocess.Popen([f"{build}/storaged/ca-cas-storaged", "--dir", f"{tmp}/s", "--listen",
                              f"127.0.0.1:{sp}", "--scrub-rate", "0", "--log-level", "warn"],
                             stdout=open(f"{tmp}/s.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(s)
        wait_up(sp, s)
        data = os.urandom(4096)
        key = hashlib.sha1(data).hexdigest()
        assert http(sp, "PUT", f"/objects/{key}", data) == 201
        with open(f"{tmp}/b.yaml", "w") as f:
            f.write(f"replicas: 1\nbackends:\n  - url: http://127.0.0.1:{sp}\n    failure_domain: a\n")
        bp = free_port()
        b = subprocess.Popen([f"{build}/balancerd/ca-cas-balancerd", "--config", f"{tmp}/b.yaml", "--listen",
                              f"127.0.0.1:{bp}", "--log-level", "warn"],
                             stdout=open(f"{tmp}/b.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(b)
        wait_up(bp, b)
        time.sleep(1.5)  # the balancer probes its backend
        rows = [measure("storaged", s, sp, f"/objects/{key}", args),
                measure("balancer", b, bp, f"/objects/{key}", args)]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.write_results:
        write_results(args, build, rows)


def write_results(args, build, rows):
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    ms = lambda v: f"{v * 1000:.2f}"
    lines = ["## Idle-connection storm (idle-storm.py)", "",
             f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; built from: {rev}; load average "
             f"at end: {' '.join(load)} (2 cores shared with other work: absolute figures are noisy)",
             f"- command: `bench/idle-storm.py --build {os.path.relpath(build, ROOT)} --sockets {args.sockets} "
             f"--seconds {args.seconds:g} --probes {args.probes} --write-results`",
             f"- storm: {args.sockets} sockets from 127.0.0.1 (a tenth dripping one header byte every 0.5 s, "
             f"the rest silent), re-opened as they are closed (at most {args.reopen_per_s}/s); probes: GET of a "
             "4 KiB object from 127.0.0.2, a new connection each; daemons with default options", "",
             "| daemon | quiet p50 / p99 ms | storm p50 / p99 / max ms | probes served / failed under storm "
             "| connections held by daemon | RSS before -> peak KiB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {ms(pct(r['quiet'], .5))} / {ms(pct(r['quiet'], .99))} | "
                     f"{ms(pct(r['busy'], .5))} / {ms(pct(r['busy'], .99))} / "
                     f"{ms(max(r['busy'])) if r['busy'] else 'n/a'} | {len(r['busy'])} / {r['bfail']} | "
                     f"{r['server_held']} | {r['rss0']} -> {r['peak']} |")
    section = "\n".join(lines) + "\n"
    path = os.path.join(ROOT, "bench", "RESULTS.md")
    text = open(path).read()
    begin, end = "<!-- begin idle-storm -->\n", "<!-- end idle-storm -->\n"
    if begin in text and end in text:
        a = text.index(begin) + len(begin)
        text = text[:a] + section + text[text.index(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + begin + section + end
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
