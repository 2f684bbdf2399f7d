"""test_cluster_hash.py - one storaged of another hash in a cluster.

A cluster uses one hash algorithm (docs/API.md), and a balancer refuses
backends of another, naming them. Which one is "another" is decided by the
majority of the backends (common/hash.h cas_hash_of_cluster), not by the
first one in the config: a new storaged started by mistake with --hash
sha256 and listed first must be the one refused (logged once), while the
sha1 objects already stored stay readable and writes go on to the sha1
backends; `ca-cas rebalance` judges the same way.
"""
import json
import os
import subprocess
import unittest

from harness import BUILD, TempDirTest, sha1
from test_balancerd import Balancer

CLI = os.path.join(BUILD, "ca-cas", "ca-cas")


class OddHashListedFirst(TempDirTest):
    def test_the_odd_backend_is_refused_not_the_cluster(self):
        s1, s2 = self.storaged("s1"), self.storaged("s2")
        odd = self.storaged("n256", extra=["--hash", "sha256"])
        data = os.urandom(5000)
        key = sha1(data)
        for s in (s1, s2):
            self.assertEqual(s.client().put(data, key).status, 201)
        cfg = os.path.join(self.tmp, "b.yaml")
        with open(cfg, "w") as fh:
            fh.write("replicas: 1\nbackends:\n")
            for i, s in enumerate((odd, s1, s2)):
                fh.write(f"  - url: {s.url}\n    failure_domain: d{i}\n")
        b = Balancer(cfg, self.tmp)
        self.daemons.append(b)
        b.start()
        st = b.wait_backends(2)
        self.assertEqual(st["hash"], "sha1")
        odd_st = next(x for x in st["backends"] if x["url"] == odd.url)
        self.assertIn("refused: its keys are sha256, the cluster's are sha1", odd_st["last_error"])
        self.assertFalse(odd_st["in_ring"])
        c = b.client()
        r = c.request("GET", "/objects/" + key)
        self.assertEqual((r.status, r.body), (200, data))
        new = os.urandom(7000)
        self.assertIn(c.put(new, sha1(new)).status, (200, 201))
        self.assertEqual(odd.client().request("HEAD", "/objects/" + sha1(new)).status, 400)
        log = b.log_text()
        self.assertEqual(log.count(f"backend {odd.url} refused: its keys are sha256"), 1, log[-2000:])
        # ca-cas rebalance judges the same way: the odd one is refused.
        out = subprocess.run([CLI, "rebalance", "--config", cfg, "--dry-run"],
                             capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
        self.assertIn(f"{odd.url}", text)
        self.assertIn("its keys are sha256, the cluster's are sha1", text)
        self.assertNotIn(f"backend {s1.url} (d1) is down", text)
        self.assertEqual(out.returncode, 0, text)


if __name__ == "__main__":
    unittest.main()
