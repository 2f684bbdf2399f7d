"""test_scrub.py - the background scrubber: it finds every injected
corruption within one pass, takes those objects out of service, resumes
where it stopped after a restart, and a balancer then serves the right
bytes and restores the bad copies."""
import os
import time
import unittest

from harness import sha1, TempDirTest, wait_for
from test_balancerd import ClusterTest, placement
from test_recovery import flip, frames

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))


class Scrub(TempDirTest):
    def test_finds_every_injected_corruption_in_one_pass(self):
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(n) for n in [10, 5000, 100_000, 1_500_000, 3_000_000] * 4]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        c.close()
        s.stop()
        bad = {sha1(objs[i]) for i in (1, 3, 7, 14, 19)}
        for name, payload, size, key in frames(s.dir):
            if key in bad:
                flip(os.path.join(s.dir, name), payload + size - 1)
        s.extra += ["--scrub-rate", "500"]
        s.argv += ["--scrub-rate", "500"]
        s.start()
        c = s.client()
        st = wait_for(lambda: (lambda j: j["scrub"] if j["scrub"]["passes"] >= 1 else None)(
            c.request("GET", "/status").json()), 60, "one scrub pass")
        self.assertEqual(st["corrupt"], len(bad))
        self.assertGreaterEqual(st["objects"], len(objs))
        self.assertGreater(st["last_pass_finished"], 0)
        for d in objs:
            r = c.request("HEAD", f"/objects/{sha1(d)}")
            self.assertEqual(r.status, 404 if sha1(d) in bad else 200)
        m = c.request("GET", "/metrics").body.decode()
        self.assertIn(f"cas_scrub_corrupt_total {len(bad)}", m)
        self.assertIn(f"cas_corrupt_objects_total {len(bad)}", m)
        log = s.log_text()
        for k in bad:
            self.assertIn(k, log)
        c.close()

    def test_resumes_after_restart(self):
        s = self.storaged()
        c = s.client()
        for i in range(60):
            c.put(os.urandom(200_000), query="?sync=0")
        c.close()
        s.stop()
        s.extra += ["--scrub-rate", "2"]
        s.argv += ["--scrub-rate", "2"]
        s.start()
        time.sleep(2.5)
        self.assertEqual(s.stop(), 0)
        with open(os.path.join(s.dir, "scrub")) as f:
            saved = f.read().split("\n")[1].split()
        file, offset = int(saved[0]), int(saved[1])
        self.assertTrue(file > 0 or offset > 0, saved)
        s.start()
        st = s.client().request("GET", "/status").json()["scrub"]
        self.assertTrue((st["file"], st["offset"]) >= (file, offset), (st, saved))

    def test_rate_zero_is_off(self):
        s = self.storaged(extra=["--scrub-rate", "0"])
        st = s.client().request("GET", "/status").json()["scrub"]
        self.assertFalse(st["running"])


class ScrubThenRepair(ClusterTest):
    def test_balancer_serves_right_bytes_and_restores_copy(self):
        self.cluster(n=3, replicas=2)
        b = self.balancer()
        c = b.client()
        objs = [os.urandom(300_000 + i) for i in range(24)]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        victim = self.stores[0]
        victim_keys = {l.split()[0] for l in victim.client().request("GET", "/objects").body.decode().splitlines()}
        self.assertTrue(victim_keys)
        victim.stop()
        for name, payload, size, key in frames(victim.dir):
            if key in victim_keys:
                flip(os.path.join(victim.dir, name), payload + 5)
        victim.extra += ["--scrub-rate", "500"]
        victim.argv += ["--scrub-rate", "500"]
        victim.start()
        vc = victim.client()
        wait_for(lambda: vc.request("GET", "/status").json()["scrub"]["passes"] >= 1, 60, "scrub pass")
        self.assertEqual(vc.request("GET", "/status").json()["scrub"]["corrupt"], len(victim_keys))
        b.wait_backends(3)
        for d in objs:  # the balancer fails over and repairs the copies the scrub took out
            r = c.get(sha1(d))
            self.assertEqual((r.status, r.body), (200, d))
        # Reads go to the first home first: where that is the victim, the
        # balancer met the 404 and copied the object back.
        first = [k for k in victim_keys if placement(self.rings, self.domains, k, 2)[0] == 0]
        self.assertTrue(first, "no object has the victim as its first home; use more objects")
        wait_for(lambda: all(vc.request("HEAD", f"/objects/{k}").status == 200 for k in first),
                 30, "read repair of the scrubbed copies")
        for k in first:
            self.assertEqual(sha1(vc.get(k).body), k)


if __name__ == "__main__":
    unittest.main()
