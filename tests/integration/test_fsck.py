"""test_fsck.py - `ca-cas fsck DIR [--repair]` on a healthy store, one with
a flipped byte, one with a truncated index, and one a daemon holds."""
import json
import os
import subprocess
import unittest

from harness import CLI, TempDirTest, sha1
from test_recovery import flip, frames


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


class Fsck(TempDirTest):
    def populated(self, n=8, size=50_000):
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(size + i) for i in range(n)]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        c.close()
        return s, objs

    def test_running_daemon_refused(self):
        s, _ = self.populated(1)
        rc, out, err = fsck(s.dir)
        self.assertEqual(rc, 1)
        self.assertIn("in use by another storaged", err)
        self.assertIn(str(s.pid), err)

    def test_healthy(self):
        s, objs = self.populated()
        s.stop()
        rc, out, err = fsck(s.dir)
        self.assertEqual(rc, 0, out + err)
        self.assertIn(f"{len(objs)} objects", out)
        self.assertIn("0 problems", out)
        p = subprocess.run([CLI, "--json", "fsck", s.dir], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0)
        j = json.loads(p.stdout)
        self.assertEqual((j["objects"], j["problems"], j["healthy"]), (len(objs), 0, True))

    def test_flipped_byte_found_and_taken_out(self):
        s, objs = self.populated()
        s.stop()
        bad = objs[3]
        for name, payload, size, key in frames(s.dir):
            if key == sha1(bad):
                flip(os.path.join(s.dir, name), payload + 7)
        rc, out, _ = fsck(s.dir)
        self.assertEqual(rc, 1)
        self.assertIn(f"corrupt object {sha1(bad)}", out)
        self.assertIn("1 corrupt", out)
        rc, out, _ = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        self.assertIn("1 corrupt taken out", out)
        rc, out, _ = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        self.assertIn(f"{len(objs) - 1} objects", out)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(bad)).status, 404)
        for d in objs:
            if d is not bad:
                self.assertEqual(c.get(sha1(d)).body, d)
        c.close()

    def test_truncated_index_rebuilt(self):
        s, objs = self.populated()
        s.stop()
        index = os.path.join(s.dir, "index")
        os.truncate(index, os.path.getsize(index) - 3 * 64 - 10)  # three records and a half gone
        rc, out, _ = fsck(s.dir)
        self.assertEqual(rc, 1)
        self.assertIn("torn tail", out)
        self.assertIn("missing from the index", out)
        rc, out, _ = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        self.assertIn("4 objects put back", out)
        rc, out, _ = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        s.start()
        c = s.client()
        for d in objs:
            self.assertEqual(c.get(sha1(d)).body, d)
        c.close()

    def test_lost_index_refused_then_rebuilt(self):
        s, objs = self.populated()
        s.stop()
        os.unlink(os.path.join(s.dir, "index"))
        with self.assertRaises(RuntimeError) as cm:  # never starts afresh over the data
            s.start()
        self.assertIn("fsck", str(cm.exception))
        rc, out, _ = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        c = s.client()
        for d in objs:
            self.assertEqual(c.get(sha1(d)).body, d)
        c.close()

    def test_deleted_objects_stay_deleted(self):
        s, objs = self.populated()
        c = s.client()
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(objs[0])}").status, 204)
        c.close()
        s.stop()
        rc, out, _ = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        self.assertEqual(s.client().get(sha1(objs[0])).status, 404)

    def test_usage(self):
        rc, _, err = fsck()
        self.assertEqual(rc, 2)
        rc, _, err = fsck(os.path.join(self.tmp, "nowhere"))
        self.assertEqual(rc, 1)
        self.assertIn("nowhere", err)


if __name__ == "__main__":
    unittest.main()
