"""test_copy_path.py - the one copy path between backends (common/copy.c)
end to end, through `ca-cas rebalance` against real storageds.

A target whose file system is full answers 507 to each copy: the pass
reports every such copy with the status and the target, exits 1, stores
nothing on the target (its directory is as before) and removes nothing
from the source. Once space is back, the next pass copies every object
whole. (The unit suite, tests/unit/test_copy.c, covers the other sources
and targets with scripted servers: wrong bytes, stalls, 404/410, 403/410.)
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import CLI, sha1  # noqa: E402


class FullTarget(tb.ClusterTest):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.tmp, "small")
        os.mkdir(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.mnt]))

    def rebalance(self):
        r = subprocess.run([CLI, "--json", "rebalance", "--config", self.config],
                           capture_output=True, text=True, timeout=120)
        return r, (json.loads(r.stdout) if r.stdout.strip() else None)

    def test_full_target_refuses_every_copy_then_takes_them_once_space_is_back(self):
        src = self.storaged("s0", extra=["--capacity", "64G"])
        dst = self.storaged("small/s1", extra=["--capacity", "64G"])
        self.stores, self.domains, self.replicas = [src, dst], ["d0", "d1"], 2
        self.config = os.path.join(self.tmp, "balancerd.yaml")
        self.write_config(2)
        self.rings = [s.client().request("GET", "/ring").json() for s in self.stores]
        # Objects on the source only: with replicas 2 on two backends, each
        # needs a copy on the full one. Each is larger than what is left
        # there once the filler has taken the rest.
        datas = [tb.blob(f"full-{i}", (3 << 19) + i * 4096) for i in range(3)]
        c = src.client()
        for d in datas:
            self.assertIn(c.put(d).status, (200, 201))
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        before = sorted(os.listdir(dst.dir))

        r, st = self.rebalance()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(st["copies_failed"], len(datas), st)
        self.assertEqual(st["copies_made"], 0, st)
        for d in datas:
            line = [ln for ln in r.stderr.splitlines() if sha1(d) in ln]
            self.assertTrue(line, r.stderr)
            self.assertIn("507", line[0])
            self.assertIn(dst.url, line[0])
        self.assertEqual(sorted(os.listdir(dst.dir)), before)
        for d in datas:
            self.assertEqual(dst.client().request("HEAD", f"/objects/{sha1(d)}").status, 404)
            self.assertEqual(src.client().get(sha1(d)).body, d)  # nothing removed

        os.unlink(filler)
        r, st = self.rebalance()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(st["copies_made"], len(datas), st)
        for d in datas:
            self.assertEqual(dst.client().get(sha1(d)).body, d)
            self.assertEqual(src.client().get(sha1(d)).body, d)


if __name__ == "__main__":
    unittest.main()
