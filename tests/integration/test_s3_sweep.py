"""test_s3_sweep.py - the S3 backend's start-up sweep after a crash never
deletes what it could not read.

After a crash (no s3-clean marker) the storaged reads back every object
the index does not list: one that hashes to its key is adopted, one read
whole that does not is deleted. Found by an attacking session (a6 d9): an
object that could not be read at that moment (a 503 storm, a body cut
short in transit) was deleted too; with an s3-index restored from a
backup, that was an acknowledged object gone from the bucket. Now it is
left as it is, unlisted, and the next start (clean or not) reads it again.
"""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import sha1  # noqa: E402
from test_s3_backend import ProxiedS3Test  # noqa: E402


class SweepUnreadable(ProxiedS3Test):
    s3_timeout_ms = 2000  # the faults below are given up on quickly

    def crash_with_an_unlisted_object(self):
        """A stored, then K stored after a backup of s3-index, a kill -9,
        and the backup put back: K is in the bucket, not in the index."""
        a, k = os.urandom(30_000), os.urandom(40_000)
        self.assertEqual(self.c.put(a).status, 201)
        index = os.path.join(self.s.dir, "s3-index")
        shutil.copy(index, index + ".backup")
        self.assertEqual(self.c.put(k).status, 201)
        self.s.kill9()
        os.replace(index + ".backup", index)
        self.assertIn(sha1(k), self.s3.content_objects())
        return a, k

    def check(self, arm):
        a, k = self.crash_with_an_unlisted_object()
        self.proxy.only = lambda method, path: method == "GET" and "/objects/" in path
        arm()
        self.s.start()
        self.assertIn(sha1(k), self.s3.content_objects(), "an unreadable object was deleted")
        self.assertIn("cannot be read now", self.s.log_text())
        self.assertEqual(self.c.get(sha1(k)).status, 404)  # unlisted meanwhile
        # The bucket is well again; a clean stop and start read it again.
        self.proxy.clear()
        self.s.stop()
        self.assertFalse(os.path.exists(os.path.join(self.s.dir, "s3-clean")))
        self.s.start()
        self.assertEqual(self.c.get(sha1(k)).body, k)
        self.assertEqual(self.c.get(sha1(a)).body, a)
        self.s.stop()  # nothing left to check: a clean stop again
        self.assertTrue(os.path.exists(os.path.join(self.s.dir, "s3-clean")))

    def test_503_storm_during_the_sweep_deletes_nothing(self):
        self.check(lambda: self.proxy.fail(10_000, 503))

    def test_bodies_cut_in_transit_during_the_sweep_delete_nothing(self):
        self.check(lambda: self.proxy.truncate(10_000))


if __name__ == "__main__":
    unittest.main()
