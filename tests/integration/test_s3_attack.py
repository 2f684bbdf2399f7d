"""test_s3_attack.py - attacks on the S3 backend (ca-cas-storaged --backend
s3) from a hostile or broken bucket, each a fault found in review (issue 10):

- a bucket that answers, but drips its answers a few bytes a second (fast
  enough for libcurl's low-speed check, which alone bounded an attempt):
  a GET and a PUT through the storaged still end with an error within
  STALL_BOUND seconds, nothing is acknowledged, the node answers /healthz
  meanwhile, and works again once the bucket does.

The bucket sits behind s3proxy.S3Proxy (in front of s3rver); DripProxy adds
the drip, ForgeProxy forged listings. Every daemon is reaped by PID, pass or fail.
"""
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import STORAGED, s3_backend_args, sha1  # noqa: E402
from s3proxy import S3Proxy  # noqa: E402
from test_s3_backend import STALL_BOUND, ProxiedS3Test, S3Test, fetch  # noqa: E402

DRIP_PAUSE = 0.2  # seconds between the bytes of a dripped answer: 5 bytes/s


class _DripSocket:
    """The proxy's client socket, but answer bodies go out one byte per
    DRIP_PAUSE while proxy.dripping is set (the rest at full speed once it
    is cleared). Heads go out whole: libcurl counts only body bytes in its
    low-speed check, so a dripped head already failed in seconds."""

    def __init__(self, sock, proxy):
        self._sock, self._proxy = sock, proxy

    def sendall(self, data):
        data = memoryview(bytes(data))
        if bytes(data[:5]) == b"HTTP/":
            self._sock.sendall(data)
            return
        while data and self._proxy.dripping.is_set():
            self._sock.sendall(data[:1])
            data = data[1:]
            time.sleep(DRIP_PAUSE)
        if data:
            self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class DripProxy(S3Proxy):
    """S3Proxy with one more fault: drip() slows every answer from then on
    to one byte per DRIP_PAUSE; clear() stops it."""

    def __init__(self, server):
        self.dripping = threading.Event()
        super().__init__(server)

    def drip(self):
        self.dripping.set()

    def clear(self):
        self.dripping.clear()
        super().clear()

    def _serve(self, sock):
        super()._serve(_DripSocket(sock, self))


class SlowDrip(ProxiedS3Test):
    proxy_class = DripProxy
    client_timeout = STALL_BOUND + 60
    s3_timeout_ms = 3000  # the drip is given up on in seconds, not the default 15 s

    def test_dripping_bucket_errors_within_bound(self):
        old = os.urandom(10_000)
        self.assertEqual(self.c.put(old).status, 201)
        results = {}

        def get():
            t0 = time.monotonic()
            results["get"] = fetch(self.s.port, sha1(old), timeout=STALL_BOUND + 60)
            results["get_s"] = time.monotonic() - t0

        self.proxy.drip()
        try:
            t = threading.Thread(target=get, daemon=True)
            t.start()
            self.assert_answers(self.s)
            t.join(STALL_BOUND + 30)
        finally:
            self.proxy.clear()
        t.join(STALL_BOUND + 60)
        self.assertIn("get_s", results, "the GET never ended")
        status, body, complete = results["get"]
        # Never a wrong body presented as complete; an error within the bound.
        self.assertFalse(status == 200 and complete and body != old)
        self.assertLess(results["get_s"], STALL_BOUND, "a dripping bucket held a GET")
        self.assertFalse(status == 200 and complete, "a dripped read was served after the bound")
        # Not corruption: the object is served once the bucket is well again.
        self.assertEqual(self.c.get(sha1(old)).body, old)
        new = os.urandom(20_000)
        self.assertEqual(self.c.put(new).status, 201)
        self.assertEqual(self.c.get(sha1(new)).body, new)
        self.assert_healthy(self.s)
        self.assert_bucket_clean()



class _ForgeFile:
    """The read side of _ForgeSocket: notes each request line read."""

    def __init__(self, f, owner):
        self._f, self._owner = f, owner

    def readline(self, *a):
        line = self._f.readline(*a)
        if b" HTTP/1." in line and line.split(b" ", 1)[0].isalpha():
            self._owner.request_line = line.decode("latin-1")
            self._owner._proxy.maybe_hold(self._owner.request_line)
        return line

    def __getattr__(self, name):
        return getattr(self._f, name)


class _ForgeSocket:
    """The proxy's client socket; an answer to a request that
    proxy.forge(request_line) has bytes for is replaced by them whole (the
    server's own answer is dropped)."""

    def __init__(self, sock, proxy):
        self._sock, self._proxy = sock, proxy
        self.request_line, self._swallow = "", False

    def makefile(self, *a, **kw):
        return _ForgeFile(self._sock.makefile(*a, **kw), self)

    def sendall(self, data):
        data = bytes(data)
        if data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 100 "):
            forged = self._proxy.forge(self.request_line)
            self._swallow = forged is not None
            if forged is not None:
                self._sock.sendall(forged)
                return
        if not self._swallow:
            self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class ForgeProxy(S3Proxy):
    """S3Proxy whose ListObjectsV2 answers for a prefix can be forged:
    pages(n) gives the n-th forged page's (keys, next token) for the
    listing's n-th request (0 first); None lets the bucket answer."""

    def __init__(self, server):
        self.pages = None
        self.listed = 0
        self.holds = {}  # "METHOD /path" -> [threading.Event released, threading.Event reached]
        super().__init__(server)

    def hold(self, method, key):
        """Requests `method` on bucket key `key` wait, unsent, until
        release_hold(); returns the Event set when one has arrived."""
        reached = threading.Event()
        self.holds[f"{method} /{self.bucket}/{key}"] = [threading.Event(), reached]
        return reached

    def release_hold(self, method, key):
        self.holds[f"{method} /{self.bucket}/{key}"][0].set()

    def maybe_hold(self, request_line):
        target = " ".join(request_line.split(" ", 2)[:2]).split("?", 1)[0]
        h = self.holds.get(target)
        if h is not None:
            h[1].set()
            h[0].wait(120)

    def clear(self):
        for released, _ in self.holds.values():
            released.set()
        super().clear()

    def forge(self, request_line):
        # The claims' listing of a fresh bucket's start (s3_claim.c) is left
        # to the bucket: the pages forged are those of the index's rebuild.
        if self.pages is None or "list-type=2" not in request_line or "prefix=cas-claims" in request_line:
            return None
        with self.lock:
            n = self.listed
            self.listed += 1
        keys, token = self.pages(n)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{self.bucket}</Name><Prefix>objects/</Prefix><KeyCount>{len(keys)}</KeyCount>"
                "<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
                + "".join(f"<Contents><Key>{k}</Key><Size>1</Size></Contents>" for k in keys)
                + f"<NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>").encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def _serve(self, sock):
        super()._serve(_ForgeSocket(sock, self))


class LoopingListing(S3Test):
    """A first start rebuilds the index from a listing of the bucket."""

    # Far more pages than the node may follow: a node that has not refused
    # by then would have listed for ever. The page after them is refused by
    # any node (IsTruncated without a token), so a failing run ends.
    PAGES = 5000

    def start_on(self, pages):
        proxy = ForgeProxy(self.s3)
        self.daemons.append(proxy)
        proxy.pages = pages
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
        try:
            p = subprocess.run([STORAGED, "--dir", os.path.join(self.tmp, "node"), "--listen", "127.0.0.1:0"]
                               + s3_backend_args(proxy), capture_output=True, text=True, timeout=120, env=env)
        except subprocess.TimeoutExpired:
            self.fail(f"the storaged still listing after {proxy.listed} pages")
        self.assertEqual(p.returncode, 1, p.stderr)  # a refusal, not a crash or a hang
        self.assertNotIn("Sanitizer", p.stderr)
        self.assertRegex(p.stderr, r"(?i)list")
        self.assertLess(proxy.listed, self.PAGES)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "node", "s3-index")))
        return p

    def test_same_page_again_refused(self):
        key = "objects/" + sha1(b"x")
        self.start_on(lambda n: ([key], "again") if n < self.PAGES else ([], ""))

    def test_tokens_in_a_circle_refused(self):
        self.start_on(lambda n: ([], "ab"[n % 2]) if n < self.PAGES else ([], ""))



class GcEndRace(S3Test):
    def test_post_during_gc_end_delete_not_lost(self):
        proxy = ForgeProxy(self.s3)
        self.daemons.append(proxy)
        s = self.storaged(s3=proxy)
        c = s.client(timeout=120)
        self.addCleanup(c.close)
        data = os.urandom(1000)
        key = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        gid = c.request("POST", "/gc/begin").json()["id"]  # the key is garbage: not marked live
        put_held = proxy.hold("PUT", f"objects/{key}")
        del_held = proxy.hold("DELETE", f"objects/{key}")
        out = {}

        def put():
            c2 = s.client(timeout=120)
            try:
                # A POST: its key is known only once the body is in, so
                # nothing marks it live before the upload (a PUT under its
                # key does, at its start).
                out["put"] = c2.request("POST", "/objects", body=data).status
            finally:
                c2.close()

        def end():
            c3 = s.client(timeout=120)
            try:
                out["end"] = c3.request("POST", f"/gc/end?id={gid}").status
            finally:
                c3.close()

        tp = threading.Thread(target=put, daemon=True)
        te = threading.Thread(target=end, daemon=True)
        try:
            tp.start()
            self.assertTrue(put_held.wait(30), "the PUT's upload never reached the bucket")
            te.start()  # flags the key, then its DELETE is held
            self.assertTrue(del_held.wait(30), "gc/end's DELETE never reached the bucket")
            proxy.release_hold("PUT", f"objects/{key}")  # the upload lands first
            # A node that acknowledges here does so at once; one that waits
            # for the delete under way blocks until the DELETE is released.
            tp.join(5)
            proxy.release_hold("DELETE", f"objects/{key}")
            tp.join(60)
            te.join(60)
        finally:
            proxy.clear()
        self.assertFalse(tp.is_alive() or te.is_alive(), "a request never ended")
        self.assertEqual(out.get("end"), 200)
        if out.get("put") == 201:
            r = c.get(key)
            self.assertEqual(r.status, 200, "a POST answered 201 and gc/end removed it anyway")
            self.assertEqual(r.body, data)
            self.assertIn(key, self.s3.content_objects())
        else:
            self.assertGreaterEqual(out.get("put"), 500)
        self.assert_bucket_clean()


if __name__ == "__main__":
    unittest.main()
