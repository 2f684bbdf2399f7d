"""test_http_fuzz.py - hostile HTTP against a storaged and a balancer.

A storaged and a balancer (with two storageds behind it) get a bounded
number of generated requests (grammar-built from the route table, then
some of them mutated byte by byte): random and misspelt methods, paths with
mutated keys (case, prefixes, lengths, slashes, percent escapes, very long),
random Range / If-* / Content-Length / Transfer-Encoding / Expect headers,
random and multipart bodies, pipelined requests on keep-alive connections,
requests cut off mid-head or mid-body, and malformed request lines on raw
sockets. Afterwards: every daemon still runs, /healthz answers, every
object stored before the fuzzing reads back byte for byte, the RSS of each
fuzzed daemon stayed bounded, and each stops cleanly on SIGTERM (exit 0;
under ASan that includes no leak report).

The generator never sends what would legitimately destroy the objects the
test checks: no GC cycle is begun, and no DELETE names one of them (checked
on the final bytes of every request, after percent-decoding). Everything
else goes. Seeded (CAS_HTTP_FUZZ_SEED, printed), so a failure replays; the
number of requests is CAS_HTTP_FUZZ_REQUESTS per daemon (a time budget
also bounds the run on a slow machine, and the count sent is printed).
"""
import hashlib
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, TempDirTest, rss_kib, sha1  # noqa: E402
from test_balancerd import Balancer  # noqa: E402

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))
REQUESTS = int(os.environ.get("CAS_HTTP_FUZZ_REQUESTS", "20000"))
BUDGET_S = float(os.environ.get("CAS_HTTP_FUZZ_SECONDS", "35"))  # per daemon
SEED = int(os.environ.get("CAS_HTTP_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 30))))
THREADS = 4
# RSS of a fuzzed daemon at the end; ASan keeps freed memory in quarantine
# (256 MiB by default) and shadow memory besides.
RSS_LIMIT_KIB = (768 if SANITIZED else 128) * 1024

ROUTES = [
    ("GET", "/objects/{key}"), ("HEAD", "/objects/{key}"), ("PUT", "/objects/{key}"),
    ("DELETE", "/objects/{key}"), ("POST", "/objects"), ("GET", "/objects{query}"),
    ("POST", "/objects/missing"), ("POST", "/gc/mark"), ("POST", "/gc/end{query}"),
    ("POST", "/gc/cancel{query}"), ("GET", "/gc"), ("GET", "/compact"), ("POST", "/compact"),
    ("GET", "/capacity"), ("GET", "/ring"), ("GET", "/status"), ("GET", "/status/"),
    ("GET", "/metrics"), ("GET", "/healthz"), ("POST", "/"), ("GET", "/"),
    ("GET", "/file/{key}/"), ("GET", "/file/{key}"), ("GET", "/local/{key}/"),
    ("HEAD", "/local/{key}"), ("POST", "/local/"),
]
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
           "get", "PROPFIND", "G\x00T", "", "X" * 300]


def blob(i, size):
    seed = hashlib.sha256(b"http-fuzz %d" % i).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Gen:
    """Builds requests as bytes. kind: 'framed' (complete, keep-alive safe),
    'open' (the server may wait for more: send, then half-close)."""

    def __init__(self, rnd, keys):
        self.r = rnd
        self.keys = keys  # the stored keys (lowercase hex)

    def key(self):
        r = self.r
        k = r.choice(self.keys) if self.keys and r.random() < 0.5 else "%040x" % r.getrandbits(160)
        m = r.randrange(16)
        if m == 0:
            k = k.upper()
        elif m == 1:
            k = "sha1:" + k
        elif m == 2:
            k = r.choice(["sha256:", "md5:", "SHA1:", ":", "sha1::"]) + k
        elif m == 3:
            k = k[:r.randrange(len(k))]
        elif m == 4:
            k = k + r.choice(["0", "00", "/", "/x", "..", "%00", "?x=1", "#f"])
        elif m == 5:
            i = r.randrange(len(k))
            k = k[:i] + r.choice("gzG/.%~ \t\\'\"") + k[i + 1:]
        elif m == 6:
            k = "../" * r.randrange(1, 5) + "etc/passwd"
        elif m == 7:
            k = "%" + "%".join("%02x" % ord(c) for c in k)
        elif m == 8:
            k = "%064x" % r.getrandbits(256)
        elif m == 9:
            k = "a" * r.choice([0, 1, 41, 1000, 5000, 20000])
        elif m == 10:
            k = urllib.parse.quote(bytes(r.randrange(256) for _ in range(r.randrange(1, 50))))
        return k

    def query(self):
        r = self.r
        parts = []
        for name in r.sample(["state", "min_size", "max_size", "id", "sync", "wait", "x"], r.randrange(4)):
            v = r.choice(["live", "garbage", "0", "1", "-1", "18446744073709551616", "abc", "",
                          str(r.getrandbits(64)), "%00", "1e3", " 5"])
            parts.append(f"{name}={v}")
        if not parts:
            return r.choice(["", "?", "?&&", "?=", "?state"])
        return "?" + "&".join(parts)

    def range_value(self):
        r = self.r
        n = lambda: str(r.choice([0, 1, 2, 99, 100, 1 << 20, (1 << 64) - 1, 1 << 64, r.getrandbits(70)]))
        return r.choice([
            f"bytes={n()}-{n()}", f"bytes={n()}-", f"bytes=-{n()}", "bytes=-0", "bytes=0-0,5-9",
            f"bytes={n()}-{n()},{n()}-", "bytes=", "bytes=-", "items=0-5", "bytes=5-1",
            "bytes= 1-2", "bytes=1-2 ", "bytes=+1-2", "bytes=0x10-", "bytes=-" + "9" * 60,
        ])

    def etag(self):
        r = self.r
        k = r.choice(self.keys) if self.keys else "0" * 40
        return r.choice([f'"{k}"', k, "*", f'W/"{k}"', f'"{k}", "x"', '""', '"', "x" * 5000,
                         f'"{k.upper()}"', "Mon, 01 Jan 2024 00:00:00 GMT"])

    def body(self):
        r = self.r
        c = r.randrange(6)
        if c == 0:
            return b""
        if c == 1:
            return bytes(r.getrandbits(8) for _ in range(r.randrange(1, 300)))
        if c == 2:
            lines = []
            for _ in range(r.randrange(1, 20)):
                lines.append(self.key().encode(errors="replace"))
            return r.choice([b"\n", b"\r\n", b"\n\n"]).join(lines) + r.choice([b"", b"\n"])
        if c == 3:
            return self.multipart()[1]
        if c == 4:
            return blob(r.randrange(1000), r.choice([10, 1000, 70000]))
        return b"\x00" * r.randrange(1, 100)

    def multipart(self):
        r = self.r
        b = r.choice(["XyZ", "----cas7d3", "q", "a" * 100, "", "\"q\"", "x;y"])
        parts = []
        for _ in range(r.randrange(0, 4)):
            name = r.choice(["file", "note", "upload", "", "file\""])
            disp = f'Content-Disposition: form-data; name="{name}"'
            if r.random() < 0.5:
                disp += '; filename="f.bin"'
            parts.append(f"--{b}\r\n{disp}\r\n\r\n".encode() + self.r.choice([b"data", b"", b"--" + b.encode()]) + b"\r\n")
        tail = r.choice([f"--{b}--\r\n".encode(), b"", f"--{b}".encode(), b"--"])
        ct = r.choice([f"multipart/form-data; boundary={b}", "multipart/form-data",
                       f'multipart/form-data; boundary="{b}"', "multipart/form-data; boundary=",
                       "multipart/mixed; boundary=q", "application/x-www-form-urlencoded"])
        return ct, b"".join(parts) + tail

    def request(self):
        """(bytes, framed): one request from the route table."""
        r = self.r
        method, path = r.choice(ROUTES)
        if r.random() < 0.15:
            method = r.choice(METHODS)
        path = path.replace("{key}", self.key()).replace("{query}", self.query())
        if r.random() < 0.05:
            path = r.choice(["*", "", "//objects", "/objects/../status", "http://x/status",
                             "/" + "a/" * 2000, "/%", "/%zz", "/\x7f"])
        headers = [("Host", "fuzz")] if r.random() < 0.95 else []
        body = b""
        if method in ("PUT", "POST") or r.random() < 0.1:
            body = self.body()
        framed = True
        for _ in range(r.randrange(4)):
            h = r.randrange(8)
            if h == 0:
                headers.append(("Range", self.range_value()))
            elif h == 1:
                headers.append((r.choice(["If-None-Match", "If-Match", "If-Range"]), self.etag()))
            elif h == 2:
                headers.append(("Expect", r.choice(["100-continue", "100-Continue", "200-ok", ""])))
            elif h == 3:
                ct, mb = self.multipart()
                headers.append(("Content-Type", ct))
                if method == "POST" and r.random() < 0.7:
                    body = mb
            elif h == 4:
                headers.append(("Authorization", r.choice(["Bearer x", "Bearer ", "Basic Zm9v", "x" * 9000])))
            elif h == 5:
                headers.append(("X-" + "h" * r.randrange(1, 50), "v" * r.randrange(0, 3000)))
            elif h == 6:
                headers.append(("Connection", r.choice(["close", "keep-alive", "Upgrade", "x"])))
            else:
                headers.append(("Accept-Encoding", "gzip"))
        te = r.random() < 0.1
        if te:
            headers.append(("Transfer-Encoding", r.choice(["chunked", "chunked", "gzip, chunked", "identity", "chunked, identity"])))
            # Only a bare "chunked" frames a body: any other coding is
            # answered 501 and the connection closed (the rest of the batch
            # is never read), so such a request ends its batch.
            if "chunked" in headers[-1][1]:
                out = b""
                rest = body
                while rest:
                    n = r.randrange(1, len(rest) + 1)
                    out += b"%x\r\n" % n + rest[:n] + b"\r\n"
                    rest = rest[n:]
                body = out + b"0\r\n\r\n"
            if headers[-1][1] != "chunked":
                framed = False
        else:
            cl = len(body)
            c = r.randrange(20)
            if c == 0:
                cl = r.choice(["-1", "abc", str(1 << 64), "1e3", " 5", "5, 5", ""])
                framed = False
            elif c == 1:
                cl = len(body) + r.randrange(1, 100)  # the body is cut short
                framed = False
            elif c == 2 and body:
                cl = r.randrange(len(body))  # the rest reads as the next request
                framed = False
            if body or c in (0, 1) or method in ("PUT", "POST"):
                headers.append(("Content-Length", str(cl)))
        if any(h[0] == "Expect" for h in headers):
            framed = False  # the server may answer before the body, then read it or not
        head = f"{method} {path} HTTP/1.1\r\n".encode(errors="replace")
        for k, v in headers:
            head += f"{k}: {v}\r\n".encode(errors="replace")
        return head + b"\r\n" + body, framed

    def mutate(self, data):
        r = self.r
        data = bytearray(data)
        for _ in range(r.randrange(1, 6)):
            if not data:
                break
            m = r.randrange(6)
            i = r.randrange(len(data))
            if m == 0:
                data[i] = r.getrandbits(8)
            elif m == 1:
                del data[i:i + r.randrange(1, 20)]
            elif m == 2:
                data[i:i] = r.choice([b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"\r\n\r\n", b"%"])
            elif m == 3:
                j = r.randrange(len(data))
                data[i:i] = data[min(i, j):max(i, j)][:200]
            elif m == 4:
                data[i:i] = bytes([r.getrandbits(8)]) * r.randrange(1, 500)
            else:
                data = data[:i]
        return bytes(data)

    def raw_line(self):
        r = self.r
        return r.choice([
            b"GET\r\n\r\n", b"GET /\r\n\r\n", b" / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n", b"GET  /  HTTP/1.1\r\n\r\n", b"\r\n\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
            bytes(r.getrandbits(8) for _ in range(r.randrange(1, 200))) + b"\r\n\r\n",
        ])


def unsafe(req, keys):
    """True if req could destroy a checked object: begin a GC cycle, or
    DELETE a stored key (in any spelling the server might decode)."""
    low = urllib.parse.unquote_to_bytes(req).lower()
    if b"gc/begin" in low:
        return True
    if b"delete" in low and any(k.encode() in low for k in keys):
        return True
    return False


class Fuzzer:
    def __init__(self, port, keys, seed):
        self.port, self.keys, self.seed = port, keys, seed
        self.sent = 0
        self.connections = 0
        self.statuses = {}
        self.stalls = []
        self.lock = threading.Lock()
        self.last = {}  # thread -> the last batch sent, for a failure message

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def read_all(self, s, timeout):
        s.settimeout(timeout)
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    return out, True
                out += b
        except socket.timeout:
            return out, False
        except OSError:
            return out, True

    def tally(self, out):
        # Status lines (an object body holding "HTTP/1." would count too:
        # this is a summary for the log, not an assertion).
        with self.lock:
            i = out.find(b"HTTP/1.")
            while i >= 0:
                code = out[i + 9:i + 12]
                if code.isdigit():
                    self.statuses[code] = self.statuses.get(code, 0) + 1
                i = out.find(b"HTTP/1.", i + 12)

    def one(self, g, tid):
        r = g.r
        c = r.randrange(100)
        try:
            if c < 60:  # pipelined keep-alive batch, then a closing request
                batch, n = b"", 0
                for _ in range(r.randrange(1, 8)):
                    req, framed = g.request()
                    if unsafe(req, self.keys):
                        continue
                    n += 1
                    batch += req
                    if not framed:
                        break
                else:
                    framed = True
                if framed:
                    batch += b"GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n"
                    n += 1
                self.last[tid] = batch[:2000]
                s = self.connect()
                try:
                    s.sendall(batch)
                    if not framed:
                        s.shutdown(socket.SHUT_WR)
                    out, closed = self.read_all(s, 20)
                finally:
                    s.close()
                self.tally(out)
                if framed and not closed:
                    with self.lock:
                        self.stalls.append(batch[:300])
                return n
            if c < 80:  # one mutated request, then half-close
                req = g.mutate(g.request()[0])
                if unsafe(req, self.keys):
                    return 0
                self.last[tid] = req[:2000]
                s = self.connect()
                try:
                    s.sendall(req)
                    s.shutdown(socket.SHUT_WR)
                    out, _ = self.read_all(s, 20)
                finally:
                    s.close()
                self.tally(out)
                return 1
            if c < 90:  # cut off mid-request: FIN or RST
                req = g.request()[0]
                if unsafe(req, self.keys):
                    return 0
                req = req[:r.randrange(1, len(req) + 1)]
                self.last[tid] = req[:2000]
                s = self.connect()
                try:
                    if r.random() < 0.5:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.sendall(req)
                finally:
                    s.close()
                return 1
            req = g.raw_line()  # malformed request line or head
            self.last[tid] = req[:2000]
            s = self.connect()
            try:
                s.sendall(req)
                s.shutdown(socket.SHUT_WR)
                out, _ = self.read_all(s, 20)
            finally:
                s.close()
            self.tally(out)
            return 1
        except ConnectionRefusedError:
            raise  # nobody listens: the daemon died
        except OSError:
            return 1  # the server may close on a bad request before reading it all
        finally:
            with self.lock:
                self.connections += 1

    def run(self, total, budget_s, alive):
        deadline = time.time() + budget_s
        errors = []

        def worker(tid):
            g = Gen(random.Random(self.seed * 1000 + tid), self.keys)
            while True:
                with self.lock:
                    if self.sent >= total or time.time() > deadline:
                        return
                try:
                    n = self.one(g, tid)
                except OSError as e:  # connection refused (or no connection at all)
                    errors.append((tid, repr(e)))
                    return
                with self.lock:
                    self.sent += n
                if self.connections % 500 == 0 and not alive():
                    errors.append((tid, "daemon died"))
                    return

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors


class HttpFuzzTest(TempDirTest):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.stores = [self.storaged(f"s{i}", extra=["--capacity", "64G"]) for i in range(2)]
        self.config = os.path.join(self.tmp, "balancerd.yaml")
        with open(self.config, "w") as f:
            f.write("replicas: 2\nbackends:\n")
            for i, s in enumerate(self.stores):
                f.write(f"  - url: {s.url}\n    failure_domain: d{i}\n")
        self.bal = Balancer(self.config, self.tmp)
        self.daemons.append(self.bal)
        self.bal.start()
        self.bal.wait_backends(2)

    def store_objects(self, client, base):
        objs = {}
        for i, size in enumerate([0, 1, 100, 4096, 65537, (1 << 20) + 3]):
            data = blob(base + i, size)
            r = client.put(data)
            self.assertIn(r.status, (200, 201), r.body)
            objs[sha1(data)] = data
        return objs

    def check_objects(self, client, objs, where):
        for k, data in objs.items():
            r = client.get(k)
            self.assertEqual(r.status, 200, f"{where}: object {k} ({len(data)} bytes) after fuzzing: {r.body[:200]}")
            self.assertTrue(r.body == data, f"{where}: object {k} does not read back byte for byte")

    def fuzz(self, daemon, name, keys, seed, others):
        f = Fuzzer(daemon.port, keys, seed)
        t0 = time.time()
        alive = lambda: daemon.running() and all(o.running() for o in others)
        errors = f.run(REQUESTS, BUDGET_S, alive)
        took = time.time() - t0
        rss = rss_kib(daemon.pid) if daemon.running() else 0
        codes = " ".join(f"{k.decode(errors='replace')}:{v}" for k, v in sorted(f.statuses.items()))
        print(f"\n  http fuzz {name}: seed {seed}, {f.sent} requests on {f.connections} connections "
              f"in {took:.1f} s, RSS {rss // 1024} MiB; answers {codes}", file=sys.stderr)
        last = "\n".join(repr(b[:300]) for b in f.last.values())
        for d, dn in [(daemon, name)] + [(o, "a backend") for o in others]:
            self.assertTrue(d.running(), f"{dn} died during HTTP fuzzing (seed {seed}); last requests:\n{last}\n"
                            + d.log_text()[-3000:])
        self.assertEqual(errors, [], f"{name}: (seed {seed}) last requests:\n{last}")
        self.assertEqual(f.stalls, [], f"{name}: complete pipelined requests never answered (seed {seed})")
        self.assertGreater(f.sent, 1000, f"{name}: too few requests sent to mean anything")
        self.assertLess(rss, RSS_LIMIT_KIB, f"{name}: RSS {rss} KiB after fuzzing")
        return f

    def test_storaged_and_balancer_survive_hostile_http(self):
        sd, bal = self.stores[0], self.bal
        direct = self.store_objects(sd.client(), 0)
        through = self.store_objects(bal.client(), 100)
        keys = sorted(set(direct) | set(through))
        self.fuzz(sd, "storaged", keys, SEED, [])
        self.fuzz(bal, "balancer", keys, SEED + 1, self.stores)
        for d, name in [(sd, "storaged"), (self.stores[1], "storaged 2"), (bal, "balancer")]:
            r = Client("127.0.0.1", d.port, 10).request("GET", "/healthz")
            self.assertEqual(r.status, 200, f"{name} /healthz after fuzzing")
        self.check_objects(sd.client(), direct, "storaged")
        self.check_objects(bal.client(), through, "balancer")
        # A clean stop: exit 0, and under ASan no leak report (a leak
        # aborts the process at exit).
        for d, name in [(bal, "balancer"), (sd, "storaged"), (self.stores[1], "storaged 2")]:
            rc = d.stop()
            self.assertEqual(rc, 0, f"{name} did not stop cleanly after fuzzing:\n" + d.log_text()[-3000:])


if __name__ == "__main__":
    import unittest
    unittest.main()
