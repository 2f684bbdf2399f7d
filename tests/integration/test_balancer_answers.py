"""test_balancer_answers.py - a balancer answers as a storaged does, and
passes over a backend whose answer cannot be right.

Faults found by an attacking session (a3), each as a kind:

- Range (RFC 9110 14.2, common/range.c): a last-byte-pos or suffix length
  past 2^64-1 means "to the end"; a Range the storaged ignores is ignored
  (200 whole); an unsatisfiable one is 416 with the same Content-Range. The
  balancer's answer must be the storaged's, never 503.
- A backend's 4xx (ProxyLiesTest): a 416 to a GET without a Range, a 416
  to a Range that fits the size it states, a 400 to a key the balancer
  accepted, a 412 or 304 to a request without preconditions are that
  backend's failures: the next copy serves, and the failover is counted.
  A 416 that fits is relayed.
- Keys with a slash (/objects/KEY%2F, /objects//KEY, ../ encoded, /file/
  forms): 400 naming the key, as a storaged answers, not 404 "no route".
- Pooled https:// connections (libcurl, common/ctl_reuse.c): a stray
  answer waiting on an idle connection is never read as the next request's.
"""
import http.client
import json
import os
import re
import sys
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancer_integrity as tbi  # noqa: E402  (the module: its tests are not run again here)
from harness import TempDirTest, sha1  # noqa: E402
from test_balancerd import Balancer  # noqa: E402
from fakestoraged import make_pki  # noqa: E402

HUGE = "99999999999999999999999"  # 23 digits, past 2^64


def raw(port, method, path, headers=None, body=None, tls_ca=None):
    """(status, headers dict with lower-case names, body); path sent as is."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class AnswerFake(tbi.FakeBackend):
    """The integrity tests' fake storaged, plus: mode "status:CODE[:CR]"
    answers every object GET with CODE (and Content-Range CR when given);
    "extra-glued" sends each answer followed at once, in the same write, by
    a copy of itself (once); tls: a (cert, key) pair to serve HTTPS."""

    def __init__(self, mode="ok", tls=None, seed=7):
        super().__init__(mode, "ok", seed, tls)

    def obj(self, sock, key, method, hdrs):
        data = self.objects.get(key)
        if data is not None and method == "GET" and self.mode.startswith("status:"):
            with self.lock:
                self.gets += 1
            parts = self.mode.split(":", 2)
            extra = f"Content-Range: {parts[2]}\r\n" if len(parts) > 2 else ""
            sock.sendall(self.resp(f"{parts[1]} Lie", b'{"error":"lie"}', extra))
            return True
        if data is not None and method == "GET" and self.mode == "extra-glued":
            with self.lock:
                self.gets += 1
                first = self.gets == 1
            one = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data
            sock.sendall(one + one if first else one)
            if first:
                self.junk_sent.set()
            return True
        return super().obj(sock, key, method, hdrs)


class AnswersTest(TempDirTest):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.fakes = []
        self.addCleanup(lambda: [f.close() for f in self.fakes])

    def balancer(self, urls, replicas=1, ca=None, wait_up=None):
        cfg = os.path.join(self.tmp, f"b{len(self.daemons)}.yaml")
        with open(cfg, "w") as fh:
            fh.write(f"replicas: {replicas}\n")
            if ca:
                fh.write(f"ca_file: {ca}\n")
            fh.write("backends:\n")
            for i, u in enumerate(urls):
                fh.write(f"  - url: {u}\n    failure_domain: d{i}\n")
        b = Balancer(cfg, self.tmp, extra=["--hedge-max-ms", "0"])
        self.daemons.append(b)
        b.start()
        b.wait_backends(len(urls) if wait_up is None else wait_up)
        return b

    def fake(self, mode="ok", tls=None):
        f = AnswerFake(mode, tls)
        self.fakes.append(f)
        return f

    def failovers(self, b):
        text = raw(b.port, "GET", "/metrics")[2].decode()
        m = re.search(r"^cas_balancer_failovers_total (\d+)", text, re.M)
        return int(m.group(1))


class RangeTest(AnswersTest):
    def test_balancer_answers_every_range_as_the_storaged(self):
        s = self.storaged("s1")
        b = self.balancer([s.url])
        ranges = [
            # valid, numbers past 2^64: to the end / the whole object
            "bytes=0-18446744073709551615", f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes=5-{HUGE}",
            "bytes=-18446744073709551615", "bytes=10-19", "bytes=-7", "bytes=3-",
            # long but valid (leading zeros): forwarded as parsed, never too long
            "bytes=0-" + "0" * 7000 + "9", "bytes=" + "0" * 3000 + "2-" + "0" * 3000 + "5",
            # not one the storaged serves: ignored, 200 whole
            "bytes=0-1,3-4", "Bytes=0-5", "bytes= 1-2", "items=0-1", "bytes=5-1", "bytes=-",
            "bytes=0x1-", "bytes=1--2",
            # unsatisfiable: 416 with the size
            f"bytes={HUGE}-", "bytes=-0", "bytes=18446744073709551615-",
        ]
        for size in (0, 1000, 2_000_000):  # 0: the empty object, whose every range is 416
            data = os.urandom(size)
            key = sha1(data)
            self.assertEqual(s.client().put(data, key).status, 201)
            for rg in ranges + [f"bytes={size}-", f"bytes={size - 1}-{HUGE}"]:
                want = raw(s.port, "GET", "/objects/" + key, {"Range": rg})
                got = raw(b.port, "GET", "/objects/" + key, {"Range": rg})
                what = f"{size}-byte object, Range: {rg}"
                self.assertEqual(got[0], want[0], f"{what}: balancer {got[0]} {got[2][:100]!r}")
                self.assertEqual(got[1].get("content-range"), want[1].get("content-range"), what)
                if want[0] in (200, 206):
                    self.assertEqual(got[2], want[2], what)
                    self.assertEqual(got[1].get("content-length"), str(len(want[2])), what)


class ProxyLiesTest(AnswersTest):
    def liar_then_storaged(self, mode, size=100_000):
        s = self.storaged(f"s{len(self.fakes)}")
        f = self.fake(mode)
        b = self.balancer([f.url, s.url], replicas=2)
        fring = f.ring()
        sring = s.client().request("GET", "/ring").json()
        while True:  # an object whose read order asks the fake first
            data = os.urandom(size)
            key = sha1(data)
            ring = sorted([(int(t, 16), 0) for t in fring["tokens"]] +
                          [(int(t, 16), 1) for t in sring["tokens"]])
            pos = int(key[:16], 16)
            if next((w for t, w in ring if t >= pos), ring[0][1]) == 0:
                break
        f.objects[key] = data
        self.assertEqual(s.client().put(data, key).status, 201)
        return b, f, s, key, data

    def test_impossible_answers_move_on_to_the_next_copy(self):
        cases = [
            ("status:416:bytes */1", None),          # 416 to a GET without a Range
            ("status:416", "bytes=0-9"),              # 416 without Content-Range
            ("status:416:bytes */100000", "bytes=0-9"),  # the range fits the size it states
            ("status:416:bytes */0", "bytes=-5"),     # empty, but the key says it is not
            ("status:400", None),                     # the key was ours to judge
            ("status:400", "bytes=1-2"),
            ("status:412", None),                     # no precondition was sent
            ("status:304", None),
            ("status:403", None),
        ]
        for size in (100_000, 1_000_000):
            for mode, rg in cases:
                with self.subTest(mode=mode, range=rg, size=size):
                    try:
                        self.one_liar(mode, rg, size)
                    finally:  # each case on its own daemons, whatever happened
                        for f in self.fakes:
                            f.close()
                        for d in self.daemons:
                            d.kill9()
                        self.daemons.clear()

    def one_liar(self, mode, rg, size):
        b, f, s, key, data = self.liar_then_storaged(mode, size)
        before = self.failovers(b)
        for path in ("/objects/" + key, f"/file/{key}/"):
            st, hdrs, body = raw(b.port, "GET", path, {"Range": rg} if rg else {})
            if rg:
                a, _, e = rg[6:].partition("-")
                a, e = (size - int(e), size - 1) if a == "" else (int(a), int(e))
                self.assertEqual((st, body), (206, data[a:e + 1]), f"{path}: {body[:100]!r}")
            else:
                self.assertEqual((st, body), (200, data), f"{path}: {body[:100]!r}")
        self.assertGreaterEqual(f.gets, 2, "the fake was not asked first")
        self.assertGreaterEqual(self.failovers(b) - before, 2, "failovers not counted")

    def test_a_416_that_fits_is_relayed(self):
        b, f, s, key, data = self.liar_then_storaged("status:416:bytes */100000")
        rg = "bytes=100000-"
        want = raw(s.port, "GET", "/objects/" + key, {"Range": rg})
        got = raw(b.port, "GET", "/objects/" + key, {"Range": rg})
        self.assertEqual(want[0], 416)
        self.assertEqual((got[0], got[1].get("content-range")), (416, want[1].get("content-range")))


class SlashKeyTest(AnswersTest):
    def test_keys_with_a_slash_are_400_naming_the_key(self):
        s = self.storaged("s1")
        b = self.balancer([s.url])
        data = b"slash key test\n"
        k = sha1(data)
        self.assertEqual(raw(b.port, "PUT", "/objects/" + k, body=data)[0], 201)
        paths = [f"/objects/{k}%2F", f"/objects//{k}", f"/objects/..%2F{k}", f"/objects/{k}/..",
                 f"/objects/{k}/x/y", f"/file/{k}%2F/", f"/file//{k}/", f"/file/{k}/x/"]
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            for p in paths:
                if p.startswith("/file/") and method in ("PUT", "DELETE"):
                    continue
                body = data if method == "PUT" else None
                want = raw(s.port, method, p, body=body)
                got = raw(b.port, method, p, body=body)
                what = f"{method} {p}: storaged {want[0]} {want[2][:80]!r}, balancer {got[0]} {got[2][:80]!r}"
                self.assertEqual(want[0], 400, what)
                self.assertEqual(got[0], 400, what)
                if method != "HEAD":
                    self.assertEqual(json.loads(got[2]), json.loads(want[2]), what)
        # Nothing was deleted or stored under another name.
        self.assertEqual(raw(b.port, "GET", "/objects/" + k)[2], data)


class TlsPoolTest(AnswersTest):
    def pki(self):
        return make_pki(os.path.join(self.tmp, "pki"))

    def stray_answer(self, mode, size):
        ca, cert = self.pki()
        f = self.fake(mode, tls=cert)
        b = self.balancer([f.url], ca=ca)
        objs = [os.urandom(size) for _ in range(4)]
        for o in objs:
            f.objects[sha1(o)] = o
        st, _, body = raw(b.port, "GET", "/objects/" + sha1(objs[0]))
        self.assertEqual((st, body == objs[0]), (200, True))
        # The repeated answer now waits on the pooled connection (in the
        # socket, or already inside OpenSSL for "extra-glued").
        self.assertTrue(f.junk_sent.wait(10))
        time.sleep(0.2)  # loopback delivery of what sendall has handed over
        for o in objs[1:]:
            st, _, body = raw(b.port, "GET", "/objects/" + sha1(o))
            self.assertEqual((st, body == o), (200, True), f"HTTP {st}: {body[:100]!r}")
        self.assertNotIn("does not match its key", b.log_text())

    def test_stray_answer_after_a_pause_is_not_read_as_the_next(self):
        self.stray_answer("extra-once", 100_000)

    def test_stray_answer_in_the_same_write_is_not_read_as_the_next(self):
        for size in (100, 100_000):
            with self.subTest(size=size):
                try:
                    self.stray_answer("extra-glued", size)
                finally:
                    for f in self.fakes:
                        f.close()
                    for d in self.daemons:
                        d.kill9()
                    self.daemons.clear()


if __name__ == "__main__":
    unittest.main()
