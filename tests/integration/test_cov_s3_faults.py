"""test_cov_s3_faults.py - the S3 backend's local index (--dir/s3-index) on
a dying disk: an fdatasync that fails (tests/integration/faultinject.c, an
LD_PRELOAD library, only for the index) answers that write with an error,
turns the store read-only loudly (/status, /healthz, /metrics, the log),
reads go on, and a restart on a healthy disk writes again with every
acknowledged object there. The disk backend's twin is test_faults.py; SPEC's
Durability rule is the same for both.
"""
import os

from harness import BUILD, TempDirTest, sha1

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


class S3IndexSyncFailure(TempDirTest):
    backend = "s3"

    def test_index_sync_error_turns_read_only(self):
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        trigger = os.path.join(self.tmp, "fail-now")
        env = {"LD_PRELOAD": FAULTLIB, "CAS_FAULT_FILE": trigger, "CAS_FAULT_ONLY": "/s3-index",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        s = self.storaged(env=env)
        c = s.client(30)
        good = os.urandom(10_000)
        self.assertEqual(c.put(good).status, 201)
        open(trigger, "w").close()
        failed = os.urandom(10_000)
        r = c.put(failed)
        self.assertEqual(r.status, 500, r.body)
        self.assertIn("not durable", r.json()["error"])
        r = c.put(os.urandom(100))
        self.assertEqual(r.status, 503, r.body)
        self.assertIn("read-only", r.json()["error"])
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(good)}").status, 503)
        self.assertEqual(c.request("POST", "/gc/begin").status, 503)
        self.assertEqual(c.get(sha1(good)).body, good)  # reads go on
        st = c.request("GET", "/status").json()
        self.assertTrue(st["read_only"])
        self.assertIn("I/O error on index fdatasync", st["read_only_reason"])
        self.assertEqual(c.request("GET", "/healthz").status, 503)
        self.assertIn("cas_read_only 1", c.request("GET", "/metrics").body.decode())
        self.assertIn("STORE IS NOW READ-ONLY", s.log_text())
        os.unlink(trigger)  # the disk "recovers": read-only until restarted
        self.assertEqual(c.put(os.urandom(100)).status, 503)
        c.close()
        s.kill9()
        s.start()
        c = s.client(30)
        self.assertEqual(c.get(sha1(good)).body, good)
        # The write answered 500 was never acknowledged: gone, or whole.
        r = c.get(sha1(failed))
        self.assertIn(r.status, (200, 404))
        if r.status == 200:
            self.assertEqual(r.body, failed)
        self.assertIn(c.put(failed).status, (200, 201))
        self.assertEqual(c.get(sha1(failed)).body, failed)
        self.assertEqual(c.request("GET", "/healthz").status, 200)
        c.close()

    def test_compaction_that_cannot_sync_changes_nothing(self):
        """The rewritten index (s3-index.snap) cannot be made durable: the
        compaction answers an error, the old index stays in use, no .snap is
        left, and every object is there after a restart."""
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        trigger = os.path.join(self.tmp, "fail-now")
        env = {"LD_PRELOAD": FAULTLIB, "CAS_FAULT_FILE": trigger, "CAS_FAULT_ONLY": "/s3-index.snap",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        s = self.storaged(env=env)
        c = s.client(30)
        objs = [os.urandom(1000 + i) for i in range(3)]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(objs[2])}").status, 204)
        index = os.path.join(s.dir, "s3-index")
        with open(index, "rb") as f:
            before = f.read()
        open(trigger, "w").close()
        r = c.request("POST", "/compact?wait=1")
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertIn("s3-index.snap", r.json()["error"])
        self.assertFalse(os.path.exists(index + ".snap"))
        with open(index, "rb") as f:
            self.assertEqual(f.read(), before)
        os.unlink(trigger)
        self.assertEqual(c.put(b"after the failed compaction").status, 201)  # the old index goes on
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        c.close()
        s.kill9()
        s.start()
        c = s.client(30)
        for d in objs[:2] + [b"after the failed compaction"]:
            self.assertEqual(c.get(sha1(d)).body, d)
        self.assertEqual(c.get(sha1(objs[2])).status, 404)
        c.close()
