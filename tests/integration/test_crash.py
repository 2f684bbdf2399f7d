"""test_crash.py - kill -9 in the middle of writes and of compaction: after
each restart every acknowledged object reads back byte for byte, and the
store starts cleanly."""
import http.client
import os
import random
import threading
import time
import unittest

from harness import TempDirTest, sha1

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))
ROUNDS = int(os.environ.get("CAS_CRASH_ROUNDS", "6" if SANITIZED else "20"))


def blob(seed, size):
    return random.Random(seed).randbytes(size)


class KillDuringWrites(TempDirTest):
    def test_kill9_during_32_concurrent_puts(self):
        s = self.storaged()
        acked = {}  # key -> (seed, size)
        lock = threading.Lock()
        rng = random.Random(1234)
        seed_counter = [0]
        for rnd in range(ROUNDS):
            stop = threading.Event()

            def writer(wid):
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
                while not stop.is_set():
                    with lock:
                        seed_counter[0] += 1
                        seed = seed_counter[0]
                    size = random.Random(seed).choice([0, 1, 100, 4096, 4096, 65536, 300_000])
                    data = blob(seed, size)
                    key = sha1(data)
                    try:
                        conn.request("PUT", f"/objects/{key}", body=data)
                        r = conn.getresponse()
                        r.read()
                    except (OSError, http.client.HTTPException):
                        return
                    if r.status in (200, 201):
                        with lock:
                            acked[key] = (seed, size, rnd)
                    else:
                        stop.set()
                        raise AssertionError(f"PUT answered {r.status}")

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.1, 0.8))
            s.kill9()  # mid-write, at a random moment
            stop.set()
            for t in threads:
                t.join(30)
            s.start()
            c = s.client()
            # Every object acknowledged in this round, byte for byte; the
            # earlier rounds' objects by presence (all bytes again at the end).
            listed = {}
            for line in c.request("GET", "/objects").body.decode().splitlines():
                k, n = line.split()
                listed[k] = int(n)
            for key, (seed, size, r0) in list(acked.items()):
                self.assertEqual(listed.get(key), size, f"round {rnd}: acknowledged {key} lost")
                if r0 == rnd:
                    r = c.get(key)
                    self.assertEqual(r.status, 200, f"round {rnd}: acknowledged {key} lost")
                    self.assertEqual(r.body, blob(seed, size), f"round {rnd}: {key} changed")
            c.close()
        c = s.client()
        for key, (seed, size, _) in acked.items():
            r = c.get(key)
            self.assertEqual((r.status, r.body), (200, blob(seed, size)), key)
        c.close()
        log = s.log_text()
        self.assertNotIn("damaged", log)
        self.assertNotIn("dropped, never served", log)
        self.assertGreater(len(acked), ROUNDS * 10)


class KillDuringCompaction(TempDirTest):
    def test_kill9_during_compaction(self):
        s = self.storaged()
        c = s.client()
        live = {}
        for i in range(400):
            data = blob(10_000 + i, 250_000)
            self.assertEqual(c.put(data, query="?sync=0").status, 201)
            if i % 2:
                live[sha1(data)] = i
            else:
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(data)}").status, 204)
        before = c.request("GET", "/capacity").json()
        self.assertGreater(before["unreclaimed"], 190 * 250_000)
        c.close()
        rng = random.Random(99)
        for rnd in range(6 if SANITIZED else 10):
            c = s.client()
            r = c.request("POST", "/compact")
            self.assertIn(r.status, (202,))
            time.sleep(rng.uniform(0.0, 0.15))
            c.close()
            s.kill9()
            s.start()
            c = s.client()
            for key, i in live.items():
                r = c.get(key)
                self.assertEqual(r.status, 200, f"round {rnd}: {key} lost")
                self.assertEqual(r.body, blob(10_000 + i, 250_000))
            c.close()
        c = s.client()
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        after = c.request("GET", "/capacity").json()
        self.assertEqual(after["unreclaimed"], 0)
        self.assertEqual(after["objects"], len(live))
        # No leftover generations: exactly 50 data files.
        self.assertEqual(len([n for n in os.listdir(s.dir) if n.startswith("data-")]), 50)
        c.close()


class TrafficDuringCompaction(TempDirTest):
    def test_reads_and_writes_go_on_while_compacting(self):
        s = self.storaged()
        c = s.client()
        keep = {}
        for i in range(300):
            data = blob(50_000 + i, 300_000)
            c.put(data, query="?sync=0")
            if i % 3:
                keep[sha1(data)] = i
            else:
                c.request("DELETE", f"/objects/{sha1(data)}")
        c.close()
        errors = []
        stop = threading.Event()
        written = {}

        def reader():
            rc = s.client()
            keys = list(keep.items())
            n = 0
            while not stop.is_set():
                k, i = keys[n % len(keys)]
                r = rc.get(k)
                if r.status != 200 or r.body != blob(50_000 + i, 300_000):
                    errors.append(f"GET {k}: {r.status}")
                n += 1
            rc.close()

        def writer():
            wc = s.client()
            n = 0
            while not stop.is_set():
                data = blob(90_000 + n, 200_000)
                r = wc.put(data)
                if r.status != 201:
                    errors.append(f"PUT: {r.status}")
                written[sha1(data)] = n
                n += 1
            wc.close()

        threads = [threading.Thread(target=reader), threading.Thread(target=reader),
                   threading.Thread(target=writer)]
        for t in threads:
            t.start()
        c = s.client()
        r = c.request("POST", "/compact?wait=1")
        stop.set()
        for t in threads:
            t.join(60)
        self.assertEqual(r.status, 200)
        self.assertEqual(errors, [])
        self.assertGreater(len(written), 0)
        st = c.request("GET", "/compact").json()
        self.assertEqual(st["runs"], 1)
        for k, n in written.items():
            self.assertEqual(c.get(k).body, blob(90_000 + n, 200_000))
        c.close()


if __name__ == "__main__":
    unittest.main()
