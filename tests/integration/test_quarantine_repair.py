"""test_quarantine_repair.py - a copy that a storaged takes out of service
comes back without any client read.

The scrubber finds corrupted copies and quarantines them; the storaged lists
them at GET /quarantine (admin auth); balancers poll the list every
`quarantine_interval` and copy a good replica back (PUT ?replica=1); the
storaged forgets the key once a good copy is stored. Two balancers doing it
at once is harmless.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import sha1, TempDirTest, wait_for  # noqa: E402
from test_recovery import flip, frames  # noqa: E402

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))


def metric(text, name):
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


class QuarantineRepair(tb.ClusterTest):
    def test_scrubbed_copies_restored_without_a_client_read(self):
        self.cluster(n=3, replicas=2, extra_yaml="quarantine_interval: 1s\n")
        bals = [self.balancer(), self.balancer()]  # both poll and repair
        c = bals[0].client()
        datas = [tb.blob(f"q-{i}", n) for i, n in enumerate([700, 20000, 300000, 1500000] * 3)]
        for d in datas:
            self.assertEqual(c.put(d).status, 201)
        keys = [sha1(d) for d in datas]
        victim_i = self.home(keys[0])[0]
        victim = self.stores[victim_i]
        bad = {k for k in keys if victim_i in self.home(k)}
        self.assertGreaterEqual(len(bad), 1)
        victim.stop()
        flipped = 0
        for name, payload, size, key in frames(victim.dir):
            if key in bad:
                flip(os.path.join(victim.dir, name), payload + size // 2)
                flipped += 1
        self.assertEqual(flipped, len(bad))
        victim.extra += ["--scrub-rate", "500"]
        victim.argv += ["--scrub-rate", "500"]
        victim.start()
        vc = victim.client()

        def status():
            return vc.request("GET", "/status").json()["scrub"]

        # The scrubber finds them; from then on the balancers have to act.
        wait_for(lambda: status()["corrupt"] == len(bad), 60, "the scrubber to find every corrupt copy")
        found = time.time()

        def restored():
            return all(vc.request("HEAD", f"/objects/{k}").status == 200 for k in bad)

        wait_for(restored, 60 if SANITIZED else 30, "the balancers to restore every copy")
        took = time.time() - found
        self.assertLess(took, 60, "restored, but later than a minute after the scrub found it")
        for d in datas:
            k = sha1(d)
            if k in bad:
                r = vc.get(k)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, d)  # the right bytes, on that storaged
        wait_for(lambda: vc.request("GET", "/quarantine").body == b"", 10, "the quarantine list to empty")
        self.assertIn("cas_quarantined_objects 0\n", vc.request("GET", "/metrics").body.decode())
        self.assertEqual(vc.request("GET", "/status").json()["quarantined_objects"], 0)
        for k in keys:
            self.assertEqual(sorted(self.holders(k)), sorted(self.home(k)), k)
        # No client read went through a balancer; the polls found the copies,
        # and a repair done twice (two balancers) failed nowhere. (A poll
        # that read the list just before it emptied has counted by now.)
        time.sleep(1.5)
        total_found = 0
        for b in bals:
            m = b.client().request("GET", "/metrics").body.decode()
            total_found += metric(m, "cas_balancer_quarantined_copies_found_total")
            self.assertGreater(metric(m, "cas_balancer_quarantine_polls_total"), 0)
            self.assertEqual(metric(m, "cas_balancer_read_repairs_failed_total"), 0, b.log_text())
            self.assertEqual(metric(m, "cas_balancer_corrupt_copies_total"), 0)
        self.assertGreaterEqual(total_found, len(bad))
        # Nothing left to repair: the next polls find nothing new.
        time.sleep(2.5)
        again = sum(metric(b.client().request("GET", "/metrics").body.decode(),
                           "cas_balancer_quarantined_copies_found_total") for b in bals)
        self.assertEqual(again, total_found)


class QuarantineList(TempDirTest):
    def test_lists_quarantined_keys_with_admin_auth_and_across_restart(self):
        token = os.path.join(self.tmp, "token")
        with open(token, "w") as f:
            f.write("s3cret-token-for-quarantine\n")
        s = self.storaged(extra=["--token-file", token])
        auth = {"Authorization": "Bearer s3cret-token-for-quarantine"}
        c = s.client()
        good, corrupt = os.urandom(5000), os.urandom(6000)
        for d in (good, corrupt):
            self.assertEqual(c.request("PUT", f"/objects/{sha1(d)}", body=d, headers=auth).status, 201)
        self.assertEqual(c.request("GET", "/quarantine").status, 401)
        self.assertEqual(c.request("GET", "/quarantine", headers=auth).body, b"")
        s.stop()
        for name, payload, size, key in frames(s.dir):
            if key == sha1(corrupt):
                flip(os.path.join(s.dir, name), payload + 10)
        s.start()
        c = s.client()
        # The read finds it corrupt: never served, taken out of service.
        self.assertNotEqual(c.get(sha1(corrupt)).status, 200)
        wait_for(lambda: c.request("HEAD", f"/objects/{sha1(corrupt)}").status == 404, 10,
                 "the corrupt copy to be taken out of service")
        r = c.request("GET", "/quarantine", headers=auth)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode(), sha1(corrupt) + "\n")
        self.assertEqual(c.request("GET", "/status", headers=auth).json()["quarantined_objects"], 1)
        s.stop()
        s.start()
        c = s.client()
        self.assertEqual(c.request("GET", "/quarantine", headers=auth).body.decode(), sha1(corrupt) + "\n")
        # A client PUT of the right bytes replaces it and empties the list.
        self.assertEqual(c.request("PUT", f"/objects/{sha1(corrupt)}", body=corrupt, headers=auth).status, 201)
        self.assertEqual(c.request("GET", "/quarantine", headers=auth).body, b"")
        self.assertEqual(c.get(sha1(good)).body, good)


if __name__ == "__main__":
    unittest.main()
