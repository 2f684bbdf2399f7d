"""test_frontends.py - several balancers behind a real load balancer, as the
system is deployed: HAProxy and nginx (Debian's packages) run the configs
shipped in configs/frontends/ (only addresses and ports rewritten) in front
of two balancers and three storageds.

Each front end: round trips of small objects and a big one (2.25 GiB, past
2^31, through nginx, whose config sets the body limits, on the plain build;
a quarter GiB through HAProxy and under the sanitizers, to keep the suite's
time: byte for byte, memory of
every process bounded), the Cask routes, a GC cycle begun through one
balancer and ended through the other; one balancer SIGKILLed under steady
GET/PUT traffic (failures counted, and none once the front end has had
time to notice: the window is printed); a rolling SIGTERM restart of both
balancers under the same traffic without a single failed request."""
import hashlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import Daemon, free_port, request_kept_alive, sha1
from test_balancerd import Balancer, ClusterTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "frontends")
BIG_GIB = float(os.environ.get("CAS_FRONTEND_BIG_GIB",
                               "0.25" if os.environ.get("CAS_SANITIZED") else "2.25"))
# how long a front end may take to stop sending requests to a dead balancer
NOTICE_S = 4.0


def peak_rss_tree_kib(pid):
    """The largest VmHWM of pid and its children (nginx's workers)."""
    peaks = [harness.peak_rss_kib(pid)]
    try:
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            peaks.append(harness.peak_rss_kib(int(child)))
    except OSError:
        pass
    return max(peaks)


class Traffic:
    """Steady GETs and PUTs through the front end from a few threads, each
    failure recorded with its start time."""

    def __init__(self, port, keys, threads=4):
        self.port, self.keys = port, keys
        self.stop_flag = threading.Event()
        self.failures = []  # (start time, what)
        self.done = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def run(self, i):
        conn = None
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            put = n % 5 == 0
            if put:
                body = f"traffic {i} {n} {time.time()}".encode()
                method, path = "PUT", f"/objects/{sha1(body)}"
            else:
                key, body = self.keys[n % len(self.keys)]
                method, path = "GET", f"/objects/{key}"
            t0 = time.time()
            conn, status, data = request_kept_alive(conn, self.port, method, path,
                                                    body if put else None)
            ok = status in (200, 201) and (put or data == body)
            with self.lock:
                self.done += 1
                if not ok:
                    self.failures.append((t0, f"{method} {data[:80]!r}"))
            time.sleep(0.002)


class FrontendTest(ClusterTest):
    frontend = None  # "haproxy" or "nginx"

    def setUp(self):
        super().setUp()
        self.assertTrue(shutil.which(self.frontend),
                        f"{self.frontend} missing (scripts/install-deps.sh installs it)")

    def start_cluster(self, drain_ms=0):
        self.cluster(n=3, replicas=2)
        self.bals = [Balancer(self.config, self.tmp, extra=["--drain-ms", str(drain_ms)])
                     for _ in range(2)]
        for b in self.bals:
            self.daemons.append(b)
            b.start()
            b.wait_backends(3)
        self.port = free_port()
        self.front = self.start_frontend([b.port for b in self.bals])
        # the front end has checked both balancers: requests succeed
        deadline = time.time() + 20
        ok = 0
        while ok < 10:
            self.assertLess(time.time(), deadline, "the front end never served")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/healthz")
                ok = ok + 1 if c.getresponse().status == 200 else 0
                c.close()
            except OSError:
                ok = 0
            time.sleep(0.1)
        time.sleep(2.5)  # both marked up (rise 2 at 1 s)

    def start_frontend(self, ports):
        if self.frontend == "haproxy":
            with open(os.path.join(CONFIGS, "haproxy.cfg")) as f:
                cfg = f.read()
            cfg = cfg.replace("10.0.0.11:6001", f"127.0.0.1:{ports[0]}")
            cfg = cfg.replace("10.0.0.12:6001", f"127.0.0.1:{ports[1]}")
            cfg = cfg.replace("bind *:8080", f"bind 127.0.0.1:{self.port}")
            path = os.path.join(self.tmp, "haproxy.cfg")
            with open(path, "w") as f:
                f.write(cfg)
            argv = ["haproxy", "-db", "-f", path]
        else:
            with open(os.path.join(CONFIGS, "nginx.conf")) as f:
                cfg = f.read()
            cfg = cfg.replace("10.0.0.11:6001", f"127.0.0.1:{ports[0]}")
            cfg = cfg.replace("10.0.0.12:6001", f"127.0.0.1:{ports[1]}")
            cfg = cfg.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
            snippet = os.path.join(self.tmp, "ca-cas.conf")
            with open(snippet, "w") as f:
                f.write(cfg)
            prefix = os.path.join(self.tmp, "nginx")
            os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
            main = os.path.join(self.tmp, "nginx.conf")
            with open(main, "w") as f:
                f.write(f"""daemon off;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {snippet};
}}
""")
            argv = ["nginx", "-p", prefix, "-c", main]
        d = Daemon(argv, os.path.join(self.tmp, f"{self.frontend}.log"))
        self.daemons.append(d)
        # SIGTERM first: nginx's workers outlive a SIGKILLed master
        self.addCleanup(d.stop)
        d.start(("127.0.0.1", self.port))
        return d

    def fe(self, timeout=120):
        return harness.Client("127.0.0.1", self.port, timeout)

    def served_by(self, path_re):
        """Which balancers logged a request matching path_re."""
        return [i for i, b in enumerate(self.bals) if re.search(path_re, b.log_text())]

    def count_logged(self, path_re):
        """How many requests matching path_re each balancer logged."""
        return [len(re.findall(path_re, b.log_text())) for b in self.bals]

    def test_round_trips_cask_gc_and_big_object(self):
        self.start_cluster()
        c = self.fe()
        objs = [os.urandom(1000 + i) for i in range(40)]
        for data in objs:
            r = c.put(data)
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(r.header("X-CAS-Copies"), "2")
            self.assertEqual(r.body, (sha1(data) + "\n").encode())  # as a storaged answers
        for data in objs:
            self.assertEqual(c.get(sha1(data)).body, data)
        # both balancers served, and logged the client from X-Forwarded-For
        self.assertEqual(self.served_by(r"GET /objects/"), [0, 1])
        self.assertIn("for=127.0.0.1", self.bals[0].log_text() + self.bals[1].log_text())
        # Cask routes
        boundary = "xYzZy"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\ncask bytes\r\n--{boundary}--\r\n").encode()
        r = c.request("POST", "/", body=body,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["key"], "sha1:" + sha1(b"cask bytes"))
        self.assertEqual(c.request("GET", f"/file/{sha1(b'cask bytes')}/").body, b"cask bytes")
        # GC begun through one balancer, ended through the other (both via
        # the front end, each on a new connection; repeated until the front
        # end picked different balancers, as it spreads connections; nginx's
        # two workers each keep their own least_conn/round-robin state, so a
        # cycle lands on one balancer about half the time: 24 tries leave a
        # 2^-24 chance of never crossing; 8 tries (2^-8) failed once here)
        keep = objs[0]
        for attempt in range(24):
            # stored behind the balancers' backs: no balancer has touched it
            # lately (a balancer keeps what it served in the last moments)
            drop = os.urandom(500)
            for s in self.stores:
                self.assertEqual(s.client().put(drop).status, 201)
            begins, ends = self.count_logged(r"POST /gc/begin "), self.count_logged(r"POST /gc/end ")
            r = self.fe().request("POST", f"/gc/begin?id={1000 + attempt}")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(self.fe().request("POST", "/gc/mark", body=
                             "\n".join(sha1(d) for d in objs if d != drop) + "\n").status, 200)
            self.fe().request("GET", "/objects/" + sha1(b"cask bytes"))
            r = self.fe().request("POST", f"/gc/end?id={1000 + attempt}")
            self.assertEqual(r.status, 200, r.body)
            time.sleep(0.2)  # the log line follows the answer
            began = [i for i, (a, b) in enumerate(zip(begins, self.count_logged(r"POST /gc/begin ")))
                     if b > a]
            ended = [i for i, (a, b) in enumerate(zip(ends, self.count_logged(r"POST /gc/end ")))
                     if b > a]
            self.assertEqual((len(began), len(ended)), (1, 1), (began, ended))
            self.assertEqual(c.get(sha1(drop)).status, 404)
            self.assertEqual(c.get(sha1(keep)).body, keep)
            if began != ended:
                break
        self.assertNotEqual(began, ended, "every cycle went through one balancer")
        # a big object streams through: PUT and GET, verified, memory bounded
        size = int((BIG_GIB if self.big else min(BIG_GIB, 0.25)) * (1 << 30))
        block = os.urandom(1 << 20)
        h = hashlib.sha1()
        for off in range(0, size, len(block)):
            h.update(block[:min(len(block), size - off)])
        key = h.hexdigest()

        def body_gen():
            for off in range(0, size, len(block)):
                yield block[:min(len(block), size - off)]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("PUT", f"/objects/{key}", body=body_gen(),
                     headers={"Content-Length": str(size)})
        r = conn.getresponse()
        self.assertEqual(r.status, 201, r.read())
        r.read()
        conn.request("GET", f"/objects/{key}")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        got, n = hashlib.sha1(), 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            got.update(chunk)
            n += len(chunk)
        conn.close()
        self.assertEqual((n, got.hexdigest()), (size, key))
        peaks = {f"{os.path.basename(d.argv[0])}:{d.pid}": harness.peak_rss_kib(d.pid)
                 for d in self.stores + self.bals}
        peaks[self.frontend] = peak_rss_tree_kib(self.front.pid)
        sys.stderr.write(f" peak RSS KiB {peaks} ")
        for name, kib in peaks.items():
            self.assertLess(kib, (256 if name == self.frontend else 96) * 1024, peaks)

    def steady_keys(self):
        c = self.fe()
        keys = []
        for i in range(50):
            data = os.urandom(2000)
            self.assertIn(c.put(data).status, (200, 201))
            keys.append((sha1(data), data))
        return keys

    def test_balancer_killed_under_traffic(self):
        self.start_cluster()
        t = Traffic(self.port, self.steady_keys()).start()
        time.sleep(2)
        before = t.done
        killed_at = time.time()
        self.bals[0].kill9()
        time.sleep(NOTICE_S + 3)
        t.stop()
        rate = (t.done - before) / (time.time() - killed_at)
        late = [f for f in t.failures if f[0] > killed_at + NOTICE_S]
        window = max((f[0] for f in t.failures), default=killed_at) - killed_at
        sys.stderr.write(f" {self.frontend}: {t.done} requests (~{rate:.0f}/s), "
                         f"{len(t.failures)} failed, last failure {window * 1000:.0f} ms after "
                         f"the SIGKILL ")
        self.assertGreater(rate, 50, "too little traffic to mean anything")
        self.assertEqual(late, [], f"failures after {NOTICE_S} s: {late[:5]}")

    def test_rolling_sigterm_restart_without_failures(self):
        self.start_cluster(drain_ms=3000)
        t = Traffic(self.port, self.steady_keys()).start()
        time.sleep(1.5)
        for i in range(2):
            old = self.bals[i]
            self.assertEqual(old.stop(timeout=30), 0)
            new = Balancer(self.config, self.tmp, port=old.port, extra=["--drain-ms", "3000"])
            self.daemons.append(new)
            new.start()
            new.wait_backends(3)
            self.bals[i] = new
            time.sleep(3)  # the front end sees it healthy again (rise 2)
        time.sleep(1)
        t.stop()
        sys.stderr.write(f" {self.frontend}: {t.done} requests through two restarts, "
                         f"{len(t.failures)} failed ")
        self.assertGreater(t.done, 300)
        self.assertEqual(t.failures, [], t.failures[:5])


class HAProxyFrontend(FrontendTest):
    frontend = "haproxy"
    big = False


class NginxFrontend(FrontendTest):
    frontend = "nginx"
    big = True  # the object past 2^31 goes through this front end


del FrontendTest  # the base class holds no tests of its own

if __name__ == "__main__":
    unittest.main()
