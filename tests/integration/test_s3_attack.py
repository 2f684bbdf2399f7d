"""test_s3_attack.py - attacks on the S3 backend (ca-cas-storaged --backend
s3) from a hostile or broken bucket, each a fault found in review (issue 10):

- a bucket that answers, but drips its answers a few bytes a second (fast
  enough for libcurl's low-speed check, which alone bounded an attempt):
  a GET and a PUT through the storaged still end with an error within
  STALL_BOUND seconds, nothing is acknowledged, the node answers /healthz
  meanwhile, and works again once the bucket does.

The bucket sits behind s3proxy.S3Proxy (in front of s3rver); DripProxy adds
the drip. Every daemon is reaped by PID, pass or fail.
"""
import os
import sys
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import sha1  # noqa: E402
from s3proxy import S3Proxy  # noqa: E402
from test_s3_backend import STALL_BOUND, S3Test, fetch  # noqa: E402

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


class SlowDrip(S3Test):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.proxy = DripProxy(self.s3)
        self.daemons.append(self.proxy)
        self.s = self.storaged(s3=self.proxy)
        self.c = self.s.client(timeout=STALL_BOUND + 60)
        self.addCleanup(self.c.close)

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


if __name__ == "__main__":
    unittest.main()
