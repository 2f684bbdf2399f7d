"""test_first_block.py - a large read that fails at its first block fails
before the answer's head, so a balancer moves on to a good copy.

A storaged reads (and, with a block table, checks) the first block of a
large GET before it answers: a bad first block is a 404 (the copy is
quarantined), bytes that cannot be read (a bucket object gone, a bucket that
hangs) a 500, never a "200 OK" cut at once. Through a balancer, with a good
copy elsewhere, every such read returns the whole object. Found by an
attacking session (a flipped byte in the first MiB, an S3 object lost
behind the node's back, a SIGSTOPped S3 server): the storaged answered 200
before reading a byte and the balancer relayed the cut body.
"""
import http.client
import os
import signal
import sys
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import sha1  # noqa: E402
from test_recovery import flip, frames  # noqa: E402

MIB = 1 << 20


def fetch(port, key, headers=None, timeout=60):
    """GET on a fresh connection: (status, body, complete)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", f"/objects/{key}", headers=headers or {})
        r = c.getresponse()
        try:
            return r.status, r.read(), True
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            return r.status, getattr(e, "partial", b""), False
    finally:
        c.close()


class DiskFirstBlock(tb.ClusterTest):
    def test_bad_first_block_is_404_and_balancer_reads_the_good_copy(self):
        self.cluster(n=2, replicas=2)
        bal = self.balancer()
        c = bal.client()
        objs = [os.urandom(3 * MIB + i) for i in range(4)]
        for o in objs:
            self.assertEqual(c.put(o).status, 201)
        keys = [sha1(o) for o in objs]
        a = self.stores[0]
        a.stop()
        # objects 0-1: a byte of the first block; 2: of the second; 3 intact
        where = {0: 100, 1: MIB - 1, 2: MIB + 5}
        for name, payload, size, key in frames(a.dir):
            i = keys.index(key) if key in keys else None
            if i in where:
                flip(os.path.join(a.dir, name), payload + where[i])
        a.start()
        # Directly: the first block is read and checked before the head.
        for i in (0, 1):
            st, body, complete = fetch(a.port, keys[i])
            self.assertEqual(st, 404, body[:200])
            self.assertIn(b"corrupt", body)
            self.assertEqual(fetch(a.port, keys[i])[0], 404)  # quarantined now
        # A range that starts in the bad block: the same.
        st, body, _ = fetch(a.port, keys[2], {"Range": f"bytes={MIB + 1}-{MIB + 100}"})
        self.assertEqual(st, 404, body[:200])
        self.assertEqual(fetch(a.port, keys[2])[0], 404)  # quarantined by that read
        st, body, complete = fetch(a.port, keys[3])
        self.assertEqual((st, body == objs[3], complete), (200, True, True))
        # Through the balancer: every object whole, from the good copy.
        for k, o in zip(keys, objs):
            st, body, complete = fetch(bal.port, k)
            self.assertEqual((st, len(body), body == o, complete), (200, len(o), True, True))

    def test_bad_later_block_still_cuts_after_the_head(self):
        s = self.storaged("s", extra=["--capacity", "64G"])
        o = os.urandom(3 * MIB)
        k = sha1(o)
        self.assertEqual(s.client().put(o).status, 201)
        s.stop()
        for name, payload, size, key in frames(s.dir):
            if key == k:
                flip(os.path.join(s.dir, name), payload + 2 * MIB + 7)
        s.start()
        st, body, complete = fetch(s.port, k)
        self.assertEqual(st, 200)
        self.assertFalse(complete)
        self.assertLessEqual(len(body), 2 * MIB)
        self.assertEqual(body, o[:len(body)])


class S3FirstBlock(tb.ClusterTest):
    """A disk storaged and an S3 storaged, replicas 2."""

    def setup_pair(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.disk_and_s3()
        bal = self.balancer()
        objs = [os.urandom(3 * MIB + i) for i in range(4)]
        for o in objs:
            self.assertEqual(bal.client().put(o).status, 201)
        return bal, objs

    def test_object_lost_from_bucket_is_500_before_the_head(self):
        bal, objs = self.setup_pair()
        s3node = self.stores[1]
        lost = objs[:3]
        for o in lost:
            for name in self.s3.content_objects()[sha1(o)]:
                if name.startswith("objects/"):
                    st, _ = self.s3.request("DELETE", f"/{self.s3.bucket}/{name}")
                    self.assertIn(st, (200, 204))
        for o in lost:
            st, body, complete = fetch(s3node.port, sha1(o))
            self.assertEqual(st, 500, body[:200])
            self.assertIn(b"cannot read", body)
        # Through the balancer: whole, from the disk copy.
        for o in objs:
            st, body, complete = fetch(bal.port, sha1(o))
            self.assertEqual((st, body == o, complete), (200, True, True))

    def test_hung_bucket_fails_over_before_the_first_byte(self):
        bal, objs = self.setup_pair()
        os.kill(self.s3.proc.pid, signal.SIGSTOP)
        try:
            for o in objs:
                t0 = time.monotonic()
                st, body, complete = fetch(bal.port, sha1(o))
                took = time.monotonic() - t0
                self.assertEqual((st, body == o, complete), (200, True, True))
                # Hedged to the disk copy, not after the S3 client's timeout.
                self.assertLess(took, 5.0)
        finally:
            os.kill(self.s3.proc.pid, signal.SIGCONT)


if __name__ == "__main__":
    unittest.main()
