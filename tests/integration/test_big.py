"""test_big.py - a 2 GiB object streamed into and out of a storaged while its
resident memory stays under 64 MiB."""
import hashlib
import http.client
import os
import threading
import time
import unittest

from harness import TempDirTest, peak_rss_kib, rss_kib

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))
SIZE = (256 if SANITIZED else 2048) * 1024 * 1024
BLOCK = 1024 * 1024


def blocks(base, size):
    """Distinct blocks made on the fly, so the test never holds the object."""
    for i in range(size // BLOCK):
        yield i.to_bytes(8, "little") + base[8:]


class BigObject(TempDirTest):
    def test_2gib_round_trip_bounded_memory(self):
        s = self.storaged()
        h = hashlib.sha1()
        base = os.urandom(BLOCK)
        for p in blocks(base, SIZE):
            h.update(p)
        key = h.hexdigest()
        peak = [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(s.pid))
                time.sleep(0.05)

        w = threading.Thread(target=watch)
        w.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
            conn.putrequest("PUT", f"/objects/{key}")
            conn.putheader("Content-Length", str(SIZE))
            conn.endheaders()
            for p in blocks(base, SIZE):
                conn.send(p)
            r = conn.getresponse()
            self.assertEqual(r.status, 201, r.read())
            r.read()
            conn.request("GET", f"/objects/{key}")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), SIZE)
            g = hashlib.sha1()
            n = 0
            while True:
                chunk = r.read(4 * BLOCK)
                if not chunk:
                    break
                g.update(chunk)
                n += len(chunk)
            self.assertEqual(n, SIZE)
            self.assertEqual(g.hexdigest(), key)
            conn.close()
        finally:
            done.set()
            w.join()
        print(f"\n  storaged peak RSS {peak[0]} KiB while streaming {SIZE >> 20} MiB in and out", end=" ")
        limit = 64 * 1024 if not SANITIZED else 512 * 1024
        self.assertLess(peak[0], limit, f"storaged RSS peaked at {peak[0]} KiB")
        if not SANITIZED:
            self.assertLess(peak_rss_kib(s.pid), limit)


if __name__ == "__main__":
    unittest.main()
