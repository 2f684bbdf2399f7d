"""test_faults.py - an fdatasync that fails (a dying disk, simulated with an
LD_PRELOAD library) turns the store read-only, loudly; reads go on; nothing
acknowledged is lost; a restart on a healthy disk writes again."""
import os
import unittest

from harness import BUILD, TempDirTest, sha1

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


class FsyncFailure(TempDirTest):
    def setUp(self):
        super().setUp()
        # the build makes the fault library: its absence is a failure, not a skip
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")

    def test_fsync_error_turns_read_only(self):
        trigger = os.path.join(self.tmp, "fail-now")
        env = {"LD_PRELOAD": FAULTLIB, "CAS_FAULT_FILE": trigger,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        s = self.storaged(env=env)
        c = s.client()
        good = os.urandom(10_000)
        self.assertEqual(c.put(good).status, 201)
        open(trigger, "w").close()
        lost = os.urandom(10_000)
        r = c.put(lost)
        self.assertEqual(r.status, 500)
        self.assertIn("Input/output error", r.json()["error"])
        r = c.put(os.urandom(100))
        self.assertEqual(r.status, 503)
        self.assertIn("read-only", r.json()["error"])
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(good)}").status, 503)
        self.assertEqual(c.request("POST", "/gc/begin").status, 503)
        self.assertEqual(c.get(sha1(good)).body, good)  # reads go on
        st = c.request("GET", "/status").json()
        self.assertTrue(st["read_only"])
        self.assertIn("I/O error", st["read_only_reason"])
        self.assertEqual(c.request("GET", "/healthz").status, 503)
        self.assertIn("cas_read_only 1", c.request("GET", "/metrics").body.decode())
        self.assertIn("STORE IS NOW READ-ONLY", s.log_text())
        os.unlink(trigger)  # the disk "recovers": the store stays read-only until restarted
        self.assertEqual(c.put(os.urandom(100)).status, 503)
        c.close()
        s.kill9()
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(good)).body, good)
        self.assertEqual(c.get(sha1(lost)).status, 404)
        self.assertEqual(c.put(lost).status, 201)
        self.assertEqual(c.request("GET", "/healthz").status, 200)
        c.close()


if __name__ == "__main__":
    unittest.main()
