"""test_write_stamps.py - a balancer's copy of a PUT that reaches a storaged
only after the client's DELETE never undoes that DELETE (X-CAS-Timestamp).

SPEC (Deletion): a DELETE answered 204 is never undone. With replicas 2 and
min_replicas 1, a balancer answers a PUT once one copy is durable; the copy
to the other backend may still be in the network (here: a proxy holds the
request before the storaged sees its head). The client's DELETE is then
answered 204 (one backend deletes, the other records a tombstone); when the
held PUT finally arrives it began after the delete, so the storaged's
in-flight rule (test_write_delete_race.py) does not catch it: it used to
store the object and lift the tombstone (found by an attacking session,
a5 r8). Now the balancer stamps every write and delete it sends with its
clock (X-CAS-Timestamp, unix microseconds) and a storaged refuses (409) a
client write whose stamp is at or before a tombstone's, on the disk and the
S3 backend alike. A direct client's requests are stamped with the storaged's
own clock; bad stamps are refused with 400 and change nothing.

No sleeps: the held request goes on when the test releases it, and the
test waits for the storaged's answer to it.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import TempDirTest, sha1, wait_for  # noqa: E402
from test_write_delete_race import HoldProxy  # noqa: E402

STAMP = "X-CAS-Timestamp"


def now_us():
    return time.time_ns() // 1000


class BalancerDelayedPutTest(tb.ClusterTest):
    """The r8 scenario through a balancer: replicas 2, min_replicas 1, the
    second backend's PUT held before its head until the DELETE is answered."""

    def scenario(self, route, b_on_s3=False):
        a = self.storaged("a", extra=["--capacity", "64G"], s3=None)
        b = self.storaged("b", extra=["--capacity", "64G"], s3=self.s3 if b_on_s3 else None)
        self.stores = [a, b]
        proxy = HoldProxy(b.port, where="head")
        self.addCleanup(proxy.close)
        self.config = os.path.join(self.tmp, "stamps.yaml")
        with open(self.config, "w") as f:
            f.write("replicas: 2\nmin_replicas: 1\ntimeouts:\n  write_straggler_ms: 200\n"
                    f"backends:\n  - url: {a.url}\n    failure_domain: a\n"
                    f"  - url: {proxy.url}\n    failure_domain: b\n")
        bal = tb.Balancer(self.config, self.tmp)
        self.daemons.append(bal)
        bal.start()
        bal.wait_backends(2)
        c = bal.client()
        data = os.urandom(5000)
        key = sha1(data)
        if route == "put":
            r = c.put(data)
        elif route == "post":
            r = c.request("POST", "/objects", body=data)
        else:  # the Cask route with a multipart form
            boundary = "stampsboundary"
            form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    f"filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
                + data + f"\r\n--{boundary}--\r\n".encode()
            r = c.request("POST", "/", body=form,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertIn(r.status, (200, 201), r.body)
        self.assertTrue(proxy.held.is_set(), "the second backend's PUT was not held")
        self.assertEqual(r.header("X-CAS-Copies"), "1")
        self.assertEqual(a.client().request("HEAD", f"/objects/{key}").status, 200)
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 204)
        proxy.release()
        wait_for(proxy.held_answer, 30, "the delayed PUT to be answered")
        self.assertTrue(proxy.held_answer().startswith("HTTP/1.1 409"), proxy.held_answer())
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        for s in (a, b):
            self.assertEqual(s.client().request("HEAD", f"/objects/{key}").status, 404, s.url)
        # B's tombstone still refuses copies (read repair, anti-entropy).
        self.assertEqual(b.client().put(data, query="?replica=1").status, 410)
        # A PUT sent after the DELETE stores it again (SPEC).
        self.assertEqual(b.client().put(data).status, 201)

    def test_put_disk(self):
        self.scenario("put")

    def test_post_disk(self):
        self.scenario("post")

    def test_cask_multipart_disk(self):
        self.scenario("multipart")

    def test_put_s3(self):
        self.scenario("put", b_on_s3=True)

    def test_post_s3(self):
        self.scenario("post", b_on_s3=True)


class StoragedStampTest(TempDirTest):
    """X-CAS-Timestamp at one storaged, sent directly."""

    def test_older_write_refused_newer_stores(self):
        s = self.storaged("s")
        c = s.client()
        data = b"stamped write and delete " + os.urandom(16)
        key = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        t = now_us()
        self.assertEqual(c.request("DELETE", f"/objects/{key}", headers={STAMP: str(t)}).status, 204)
        # Sent before the delete (by its stamp): refused, nothing stored.
        for stamp in (t - 1000000, t - 1, t):
            r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: str(stamp)})
            self.assertEqual(r.status, 409, r.body)
            self.assertIn(b"by a delete sent after this write", r.body)
        r = c.request("POST", "/objects", body=data, headers={STAMP: str(t - 5)})
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        self.assertEqual(c.put(data, query="?replica=1").status, 410)
        # Across a restart: the stamp is in the index's TOMB record.
        c.close()
        s.stop()
        s.start()
        c = s.client()
        r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: str(t - 1)})
        self.assertEqual(r.status, 409, r.body)
        # Sent after it: stored, the tombstone lifted.
        r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: str(t + 1)})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(c.get(key).body, data)
        self.assertEqual(c.put(data, query="?replica=1").status, 200)

    def test_later_delete_stamp_kept(self):
        """Of two deletes of a key, the later stamp stands whichever came
        last, in memory and after a restart."""
        s = self.storaged("s")
        c = s.client()
        data = b"two deletes " + os.urandom(16)
        key = sha1(data)
        t = now_us()
        self.assertEqual(c.request("DELETE", f"/objects/{key}", headers={STAMP: str(t)}).status, 404)
        self.assertEqual(c.request("DELETE", f"/objects/{key}",
                                   headers={STAMP: str(t - 2000000)}).status, 404)
        for restart in (False, True):
            if restart:
                c.close()
                s.stop()
                s.start()
                c = s.client()
            r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: str(t - 1000)})
            self.assertEqual(r.status, 409, r.body)
        self.assertEqual(c.request("PUT", f"/objects/{key}", body=data,
                                   headers={STAMP: str(t + 1)}).status, 201)

    def test_without_stamp_the_node_clock_orders(self):
        s = self.storaged("s")
        c = s.client()
        data = b"direct client " + os.urandom(16)
        key = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 204)
        # A direct PUT after the DELETE is stamped later by the node: stored.
        self.assertEqual(c.put(data).status, 201)
        # A stamp from before that delete, sent now, is refused once deleted again.
        t = now_us()
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 204)
        r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: str(t)})
        self.assertEqual(r.status, 409, r.body)

    def test_bad_stamps_refused(self):
        s = self.storaged("s")
        c = s.client()
        data = b"bad stamps change nothing " + os.urandom(16)
        key = sha1(data)
        future = now_us() + 2 * 3600 * 1000000
        bad = ["", "-1", "+5", "0x10", "1.5", "abc", "5 6", "0", "99999999999999999999999",
               str(future)]
        for v in bad:
            r = c.request("PUT", f"/objects/{key}", body=data, headers={STAMP: v})
            self.assertEqual(r.status, 400, (v, r.body))
            self.assertIn(STAMP.encode(), r.body)
            r = c.request("POST", "/objects", body=data, headers={STAMP: v})
            self.assertEqual(r.status, 400, (v, r.body))
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        self.assertEqual(c.put(data).status, 201)
        # A DELETE with a bad stamp, or one more than an hour behind, deletes
        # nothing and leaves no tombstone.
        for v in bad + [str(now_us() - 2 * 3600 * 1000000)]:
            r = c.request("DELETE", f"/objects/{key}", headers={STAMP: v})
            self.assertEqual(r.status, 400, (v, r.body))
        self.assertEqual(c.get(key).body, data)
        other = b"never deleted " + os.urandom(16)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(other)}",
                                   headers={STAMP: "abc"}).status, 400)
        self.assertEqual(c.put(other, query="?replica=1").status, 201)  # no tombstone
        # A write's stamp may be old (a delayed request): stored when no
        # delete outranks it.
        r = c.request("PUT", f"/objects/{sha1(b'old stamp')}", body=b"old stamp",
                      headers={STAMP: str(now_us() - 3 * 3600 * 1000000)})
        self.assertEqual(r.status, 201, r.body)


class StoragedStampS3Test(StoragedStampTest):
    backend = "s3"


if __name__ == "__main__":
    unittest.main()
