"""test_s3_backend.py - the S3 backend (ca-cas-storaged --backend s3) beyond
the storaged API (which test_storaged_api.py runs against it):

- a balancer with one disk and one S3 storaged in different failure domains
  (replicas 2): put, get from each, GC, delete;
- kill -9 of an S3 storaged in the middle of concurrent writes: every
  acknowledged write reads back byte for byte after the restart, and the
  bucket holds nothing whose bytes do not match its key;
- local state (--dir) lost: a storaged restarted on the same bucket serves
  the objects again (rebuilt from the bucket) with the same identity (ring),
  and what was deleted or collected stays gone; a GC cycle survives kill -9;
- integrity: a copy changed in the bucket behind the node's back is never
  served whole, is taken out of service and counted, and a PUT of the right
  bytes replaces it; 50 stalled uploads do not block a write;
- options: --capacity required, a missing bucket and refused credentials
  refuse to start (exit 1, no sanitizer report);
- faults through s3proxy.py (a fault-injecting proxy in front of s3rver):
  503 SlowDown and 500 retried (also on multipart parts, and counted in
  cas_s3_retries_total), 403 a clear error and nothing acknowledged, a
  truncated body never delivered as complete, a stalled bucket answered
  with an error within STALL_BOUND seconds while the storaged stays up, and
  the bucket down (s3rver stopped) then back;
- block tables (sums/<hex>.crc32c): a range near the end of a large object
  reads about its own blocks from the bucket (bytes counted by s3proxy.py),
  a bad block in a range is refused and quarantines, the table survives a
  lost --dir, a damaged, missing or foreign table falls back to the key, a
  forged one is never trusted for a whole body;
- pipelined parts: a large PUT holds at most two parts in memory, a part
  failing while the next is received fails the write with nothing visible.

Each test starts its own s3rver (s3fixture.S3Server) and daemons; all are
reaped by PID, pass or fail.
"""
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import STORAGED, Client, TempDirTest, s3_backend_args, sha1, wait_for  # noqa: E402
from s3proxy import S3Proxy  # noqa: E402

# How long a request may take to fail when the bucket hangs or is down:
# "seconds, not minutes" (docs/TESTING.md). Generous for the ASan build.
STALL_BOUND = 30


def fetch(port, key, timeout=STALL_BOUND + 30):
    """GET /objects/key on a fresh connection: (status, body, complete),
    where complete is False when the body ended before Content-Length."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", f"/objects/{key}")
        r = c.getresponse()
        try:
            return r.status, r.read(), True
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            partial = getattr(e, "partial", b"")
            return r.status, partial, False
    except (ConnectionError, http.client.RemoteDisconnected):
        return None, b"", False
    finally:
        c.close()


class S3Test(TempDirTest):
    backend = "s3"

    def assert_bucket_clean(self, s3=None):
        """Nothing in the bucket whose bytes do not hash to its key."""
        self.assertEqual((s3 or self.s3).unverified_objects(), [])

    def assert_healthy(self, s):
        r = Client("127.0.0.1", s.port, 5).request("GET", "/healthz")
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(s.running())

    def assert_answers(self, s):
        """While the bucket is out the node stays up and answers at once;
        /healthz may report it (200, or 503 with the reason)."""
        t0 = time.monotonic()
        r = Client("127.0.0.1", s.port, 5).request("GET", "/healthz")
        self.assertIn(r.status, (200, 503), r.body)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertTrue(s.running())


class BalancerDiskAndS3(tb.ClusterTest):
    """replicas 2 over one disk storaged (domain "disk") and one S3 storaged
    (domain "s3"): every object has one copy in each."""

    def test_put_get_each_gc_delete(self):
        self.disk_and_s3()
        bal = self.balancer()
        c = bal.client()
        blobs = [os.urandom(n) for n in (0, 1, 1000, 300_000, 5 * 1024 * 1024 + 3)]
        for b in blobs:
            r = c.put(b)
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(r.header("X-CAS-Copies"), "2")
        for b in blobs:
            k = sha1(b)
            for s in self.stores:
                r = s.client().get(k)
                self.assertEqual((r.status, r.body), (200, b), s.url)
            self.assertEqual(c.get(k).body, b)
        self.assertEqual(set(self.s3.content_objects()), {sha1(b) for b in blobs})
        # GC through the balancer: keep the first three, drop the others.
        gid = c.request("POST", "/gc/begin").json()["id"]
        r = c.request("POST", "/gc/mark", body="".join(sha1(b) + "\n" for b in blobs[:3]))
        self.assertEqual(r.status, 200, r.body)
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        for s in self.stores:
            for b in blobs[:3]:
                self.assertEqual(s.client().get(sha1(b)).body, b, s.url)
            for b in blobs[3:]:
                self.assertEqual(s.client().get(sha1(b)).status, 404, s.url)
        # Delete through the balancer: gone from both, and from the bucket.
        k = sha1(blobs[2])
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        for s in self.stores:
            self.assertEqual(s.client().get(k).status, 404, s.url)
        self.assertEqual(c.get(k).status, 404)
        self.s3node_compacted()
        self.assertEqual(set(self.s3.content_objects()), {sha1(b) for b in blobs[:2]})
        self.assert_bucket_clean()
        # Reads fail over to the S3 copy when the disk node is down.
        self.stores[0].kill9()
        bal.wait_backends(1)
        for b in blobs[:2]:
            self.assertEqual(c.get(sha1(b)).body, b)

    def s3node_compacted(self):
        r = self.stores[1].client().request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)

    def assert_bucket_clean(self):
        self.assertEqual(self.s3.unverified_objects(), [])


class CrashAndRebuild(S3Test):
    def test_kill9_during_concurrent_writes(self):
        """Writers race a kill -9: what was acknowledged survives intact,
        nothing in the bucket is unverified, and the node serves again."""
        s = self.storaged()
        acked, attempted, lock = {}, {}, threading.Lock()
        stop = threading.Event()
        enough = threading.Event()

        def writer(w):
            i = 0
            while not stop.is_set():
                data = os.urandom(1000 + (w * 7919 + i * 104729) % (3 * 1024 * 1024))
                k = sha1(data)
                with lock:
                    attempted[k] = data
                try:
                    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
                    c.request("PUT", f"/objects/{k}", body=data)
                    status = c.getresponse().status
                    c.close()
                except (OSError, http.client.HTTPException):
                    return
                if status in (200, 201):
                    with lock:
                        acked[k] = data
                        if len(acked) >= 24:
                            enough.set()
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        try:
            self.assertTrue(enough.wait(120), "writers got too few acknowledgements")
            s.kill9()  # writes are in flight: six writers, none waits
        finally:
            stop.set()
            for t in threads:
                t.join(90)
        self.assertGreater(len(attempted), len(acked))  # some writes were cut off
        s.start()
        c = s.client()
        for k, data in acked.items():
            r = c.get(k)
            self.assertEqual(r.status, 200, k)
            self.assertEqual(r.body, data, k)
        self.assert_bucket_clean()
        in_bucket = set(self.s3.content_objects())
        self.assertLessEqual(set(acked), in_bucket)
        self.assertLessEqual(in_bucket, set(attempted))
        # What the node lists is what it serves: no acknowledged key missing.
        listed = {line.split()[0] for line in c.request("GET", "/objects").body.decode().splitlines()}
        self.assertLessEqual(set(acked), listed)
        for k in listed:
            self.assertEqual(sha1(c.get(k).body), k)
        self.assertEqual(c.put(b"after the crash").status, 201)

    def test_local_state_lost_rebuilt_from_bucket(self):
        """--dir removed: the objects come back from the bucket; what was
        deleted (DELETE 204, gc/end) does not."""
        s = self.storaged()
        c = s.client()
        ring = c.request("GET", "/ring").json()
        blobs = [os.urandom(n) for n in (1, 4096, 2 * 1024 * 1024)]
        deleted, collected = os.urandom(5000), os.urandom(6000)
        for b in blobs + [deleted, collected]:
            self.assertEqual(c.put(b).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(deleted)}").status, 204)
        gid = c.request("POST", "/gc/begin").json()["id"]
        c.request("POST", "/gc/mark", body="".join(sha1(b) + "\n" for b in blobs))
        self.assertEqual(c.request("POST", f"/gc/end?id={gid}").json()["removed"], 1)
        c.close()
        self.assertEqual(s.stop(), 0)
        import shutil
        shutil.rmtree(s.dir)
        s.start()
        c = s.client()
        # The same identity: a new node id or new tokens would misplace
        # every object of this node in its cluster.
        self.assertEqual(c.request("GET", "/ring").json(), ring)
        for b in blobs:
            self.assertEqual(c.get(sha1(b)).body, b)
            self.assertEqual(c.request("HEAD", f"/objects/{sha1(b)}").header("Content-Length"), str(len(b)))
        listed = dict(line.split() for line in c.request("GET", "/objects").body.decode().splitlines())
        self.assertEqual(listed, {sha1(b): str(len(b)) for b in blobs})
        cap = c.request("GET", "/capacity").json()
        self.assertEqual((cap["objects"], cap["bytes"]), (len(blobs), sum(map(len, blobs))))
        self.assertEqual(c.put(blobs[0]).status, 200)
        for gone in (deleted, collected):
            self.assertEqual(c.get(sha1(gone)).status, 404)
        self.assertEqual(set(self.s3.content_objects()), {sha1(b) for b in blobs})

    def test_gc_cycle_survives_kill9(self):
        """A storaged killed mid-cycle keeps the cycle and its marks."""
        s = self.storaged()
        c = s.client()
        keep, drop = os.urandom(3000), os.urandom(4000)
        for b in (keep, drop):
            self.assertEqual(c.put(b).status, 201)
        gid = c.request("POST", "/gc/begin").json()["id"]
        self.assertEqual(c.request("POST", "/gc/mark", body=sha1(keep) + "\n").json(), {"unmarked": 1})
        c.close()
        s.kill9()
        s.start()
        c = s.client()
        st = c.request("GET", "/gc").json()
        self.assertEqual((st["active"], st["id"]), (True, gid))
        self.assertEqual(c.request("POST", f"/gc/end?id={gid}").json(), {"removed": 1, "bytes": len(drop)})
        self.assertEqual(c.get(sha1(keep)).body, keep)
        self.assertEqual(c.get(sha1(drop)).status, 404)
        self.assertEqual(set(self.s3.content_objects()), {sha1(keep)})


class Integrity(S3Test):
    def corrupt(self, key, data):
        """Replaces the bucket's copy of `key` with `data`, behind the node's back."""
        names = self.s3.content_objects()[key]
        for name in names:
            status, _ = self.s3.request("PUT", f"/{self.s3.bucket}/{name}", body=data)
            self.assertEqual(status, 200)

    def check_corruption(self, size, bad):
        """The bucket's copy of a `size`-byte object replaced by bad(data):
        never delivered as a complete body, counted, no longer served (the
        balancer then repairs it from another replica); a PUT of the right
        bytes replaces the bad copy (it is not "already stored")."""
        s = self.storaged()
        c = s.client()
        data = os.urandom(size)
        k = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        self.corrupt(k, bad(data))
        status, body, complete = fetch(s.port, k)
        self.assertFalse(status == 200 and complete, "a corrupt object was served whole")
        status, body, complete = fetch(s.port, k)
        self.assertNotEqual(status, 200, "a corrupt object is still served after it was found")
        m = c.request("GET", "/metrics").body.decode()
        self.assertRegex(m, r"cas_corrupt_objects_total [1-9]")
        r = c.put(data)
        self.assertIn(r.status, (200, 201), r.body)
        self.assertEqual(c.get(k).body, data)
        self.assertEqual(self.s3.get_object(self.s3.content_objects()[k][0]), data)
        self.assert_bucket_clean()

    def test_corrupt_bytes_in_bucket(self):
        """Same size, one bit flipped."""
        self.check_corruption(3 * 1024 * 1024, lambda d: d[:-1] + bytes([d[-1] ^ 1]))

    def test_object_shortened_in_bucket(self):
        """The bucket's object is now half as long as the node recorded: not
        a transfer cut short (which is retried) but a bad copy for good."""
        self.check_corruption(3 * 1024 * 1024, lambda d: d[: len(d) // 2])

    def test_scrub_finds_changed_shortened_and_lost_copies(self):
        """The scrubber reads every object back from the bucket: a copy with
        one bit flipped, one cut to half its length and one deleted behind
        the node's back are each taken out of service in one pass and
        listed for repair; the intact ones stay served."""
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(n) for n in (10, 5000, 1_500_000, 3_000_000, 200_000)]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        flipped, shortened, lost = sha1(objs[1]), sha1(objs[3]), sha1(objs[4])
        self.corrupt(flipped, objs[1][:-1] + bytes([objs[1][-1] ^ 1]))
        self.corrupt(shortened, objs[3][: len(objs[3]) // 2])
        for name in self.s3.content_objects()[lost]:
            status, _ = self.s3.request("DELETE", f"/{self.s3.bucket}/{name}")
            self.assertIn(status, (200, 204))
        c.close()
        s.stop()
        s.extra += ["--scrub-rate", "500"]
        s.argv += ["--scrub-rate", "500"]
        s.start()
        c = s.client()
        st = wait_for(lambda: (lambda j: j["scrub"] if j["scrub"]["passes"] >= 1 else None)(
            c.request("GET", "/status").json()), 60, "one scrub pass")
        self.assertEqual(st["corrupt"], 3, st)
        bad = {flipped, shortened, lost}
        for d in objs:
            r = c.request("HEAD", f"/objects/{sha1(d)}")
            self.assertEqual(r.status, 404 if sha1(d) in bad else 200, sha1(d))
        q = c.request("GET", "/quarantine").body.decode()
        for k in bad:
            self.assertIn(k, q)
        for d in objs:
            if sha1(d) not in bad:
                self.assertEqual(c.get(sha1(d)).body, d)

    def test_stalled_uploads_do_not_block_writes(self):
        """50 clients start an upload and stop sending (slow links, a crashed
        client): another PUT still answers within seconds."""
        s = self.storaged()
        socks = []
        try:
            for i in range(50):
                so = socket.create_connection(("127.0.0.1", s.port))
                so.sendall(f"PUT /objects/{sha1(str(i).encode())} HTTP/1.1\r\nHost: x\r\n"
                           f"Content-Length: 1000000\r\n\r\n".encode() + b"0123456789")
                socks.append(so)
            t0 = time.monotonic()
            r = Client("127.0.0.1", s.port, 20).put(b"a normal write")
            self.assertLess(time.monotonic() - t0, 10)
            self.assertEqual(r.status, 201, r.body)
        finally:
            for so in socks:
                so.close()
        self.assertEqual(set(self.s3.content_objects()), {sha1(b"a normal write")})


class Options(S3Test):
    def run_storaged(self, args, timeout=30):
        return subprocess.run([STORAGED, "--dir", os.path.join(self.tmp, "opt"), "--listen", "127.0.0.1:0"] + args,
                              capture_output=True, text=True, timeout=timeout,
                              env={k: v for k, v in os.environ.items() if not k.startswith("CAS_")})

    def test_capacity_required(self):
        p = self.run_storaged(self.s3.storaged_args())
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--capacity", p.stderr)

    def test_missing_bucket_refused(self):
        args = s3_backend_args(self.s3)
        args[args.index("--s3-bucket") + 1] = "no-such-bucket"
        p = self.run_storaged(args)
        self.assertEqual(p.returncode, 1, p.stderr)  # a refusal, not a crash or a leak report
        self.assertNotIn("Sanitizer", p.stderr)
        self.assertIn("no-such-bucket", p.stderr)

    def test_refused_credentials_refused(self):
        bad = os.path.join(self.tmp, "bad-key")
        with open(bad, "w") as f:
            f.write("NOT-A-KEY\n")
        args = s3_backend_args(self.s3)
        args[args.index("--s3-access-key-file") + 1] = bad
        p = self.run_storaged(args)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("Sanitizer", p.stderr)
        self.assertRegex(p.stderr, r"(?i)InvalidAccessKeyId|403|credential|denied")

    def test_capacity_sizes_ring_and_available(self):
        s = self.storaged(extra=["--capacity", "200G"])
        c = s.client()
        self.assertEqual(len(c.request("GET", "/ring").json()["tokens"]), 200)
        self.assertEqual(c.put(b"x" * 1000).status, 201)
        cap = c.request("GET", "/capacity").json()
        self.assertEqual(cap["total"], 200 * 1024 ** 3)
        self.assertEqual(cap["available"], cap["total"] - 1000)


class ProxiedS3Test(S3Test):
    """A storaged that reaches s3rver through a proxy (self.proxy, of
    proxy_class: s3proxy.S3Proxy or a subclass), its client self.c waiting
    up to client_timeout seconds."""

    proxy_class = S3Proxy
    client_timeout = STALL_BOUND + 30
    s3_timeout_ms = None  # --s3-timeout-ms; None: the default (15 s)

    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.proxy = self.proxy_class(self.s3)
        self.daemons.append(self.proxy)
        extra = ["--s3-timeout-ms", str(self.s3_timeout_ms)] if self.s3_timeout_ms else None
        self.s = self.storaged(s3=self.proxy, extra=extra)
        self.c = self.s.client(timeout=self.client_timeout)
        self.addCleanup(self.c.close)


class Faults(ProxiedS3Test):
    """The storaged talks to s3rver through a fault-injecting proxy, with
    --s3-timeout-ms 3000: stalls are given up on within a few seconds."""

    s3_timeout_ms = 3000

    def test_503_slowdown_and_500_are_retried(self):
        for status in (503, 500):
            data = os.urandom(100_000) + str(status).encode()
            self.proxy.fail(2, status)
            r = self.c.put(data)
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(self.proxy.count(f"failed {status}"), 2)
            self.assertIn(sha1(data), self.s3.content_objects())
            self.proxy.fail(2, status)
            self.assertEqual(self.c.get(sha1(data)).body, data)
        self.assert_bucket_clean()
        # Operators see the retries.
        m = self.c.request("GET", "/metrics").body.decode()
        retries = [int(l.split()[1]) for l in m.splitlines() if l.startswith("cas_s3_retries_total ")]
        self.assertEqual(len(retries), 1, "no cas_s3_retries_total in /metrics")
        self.assertGreaterEqual(retries[0], 4)  # at least the PUTs' four

    def test_large_bodies_multipart_retried_and_verified(self):
        """Bodies over one part (multipart uploads, and a POST whose key is
        known only at the end): 503s retried, a 403 half-way fails the
        write with nothing visible, a wrong digest leaves nothing visible,
        and no upload leaves extra objects behind."""
        def others():
            # Content objects and the block tables of those stored (docs/FORMAT.md).
            names = set(self.s3.list_objects())
            content = self.s3.content_objects()
            return (names - {n for v in content.values() for n in v}
                    - {f"sums/{k}.crc32c" for k in content})

        self.assertEqual(self.c.put(b"first").status, 201)  # the node's own objects exist by now
        baseline = others()
        big = os.urandom(20 * 1024 * 1024 + 5)
        self.proxy.fail(2, 503, after=2)
        r = self.c.put(big)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.proxy.count("failed 503"), 2)
        self.assertEqual(self.c.get(sha1(big)).body, big)
        posted = os.urandom(18 * 1024 * 1024 + 1)
        self.proxy.fail(1, 500, after=3)
        r = self.c.request("POST", "/objects", body=posted)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.c.get(sha1(posted)).body, posted)
        denied = os.urandom(20 * 1024 * 1024 + 7)
        self.proxy.fail(1000, 403, after=2)
        r = self.c.put(denied)
        self.proxy.clear()
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertEqual(self.c.get(sha1(denied)).status, 404)
        r = self.c.put(big[:-1] + b"X", key=sha1(big[:-1] + b"Y"))
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(set(self.s3.content_objects()), {sha1(b"first"), sha1(big), sha1(posted)})
        self.assert_bucket_clean()
        self.assertEqual(others(), baseline)

    def test_403_is_a_clear_error_and_nothing_acknowledged(self):
        data = os.urandom(50_000)
        self.proxy.fail(1000, 403)
        r = self.c.put(data)
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertRegex(r.json()["error"], r"(?i)AccessDenied|403|denied")
        self.assertLess(self.proxy.count("failed 403"), 10)  # 403 is not retried like 503
        self.proxy.clear()
        self.assertNotIn(sha1(data), self.s3.content_objects())
        self.assertEqual(self.c.get(sha1(data)).status, 404)
        self.assertEqual(self.c.put(data).status, 201)
        self.assert_healthy(self.s)

    def test_truncated_body_never_delivered_complete(self):
        data = os.urandom(3 * 1024 * 1024 + 11)
        k = sha1(data)
        self.assertEqual(self.c.put(data).status, 201)
        self.proxy.truncate(1000)  # every read of the bucket is cut short
        status, body, complete = fetch(self.s.port, k)
        self.assertFalse(status == 200 and complete, "a truncated body was delivered as complete")
        self.assertGreater(self.proxy.count("truncated"), 0)
        self.proxy.clear()
        self.proxy.truncate(1)  # once: a retry may serve it, but only whole and right
        status, body, complete = fetch(self.s.port, k)
        if status == 200 and complete:
            self.assertEqual(body, data)
        self.proxy.clear()
        # A transport error is not corruption: the object is still served.
        self.assertEqual(self.c.get(k).body, data)
        self.assert_healthy(self.s)

    def test_stalled_bucket_errors_within_bound(self):
        old = os.urandom(10_000)
        self.assertEqual(self.c.put(old).status, 201)
        data = os.urandom(20_000)
        self.proxy.stall()
        try:
            t0 = time.monotonic()
            r = self.c.put(data)
            put_seconds = time.monotonic() - t0
            self.assertGreaterEqual(r.status, 500, r.body)
            # --s3-timeout-ms bounds it: the last attempt starts by 3 s and
            # fails after 1 s without a byte (the default would take 15-20 s).
            self.assertLess(put_seconds, 4 * self.s3_timeout_ms / 1000)
            self.assertGreater(self.proxy.count("stalled"), 0)
            t0 = time.monotonic()
            status, body, complete = fetch(self.s.port, sha1(old))
            self.assertLess(time.monotonic() - t0, 4 * self.s3_timeout_ms / 1000)
            self.assertFalse(status == 200 and complete and body != old)
            self.assert_answers(self.s)
        finally:
            self.proxy.clear()
        self.assertNotIn(sha1(data), self.s3.content_objects())
        self.assertEqual(self.c.put(data).status, 201)
        self.assertEqual(self.c.get(sha1(old)).body, old)
        self.assert_healthy(self.s)



class BucketDown(S3Test):
    def test_bucket_down_then_back(self):
        s = self.storaged()  # straight to s3rver: its port refuses connections while down
        self.c = s.client(timeout=STALL_BOUND + 30)
        self.addCleanup(self.c.close)
        old = os.urandom(10_000)
        self.assertEqual(self.c.put(old).status, 201)
        self.s3.stop()
        data = os.urandom(20_000)
        t0 = time.monotonic()
        r = self.c.put(data)
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertLess(time.monotonic() - t0, STALL_BOUND)
        self.assertIn("error", r.json())
        r = self.c.request("POST", "/objects", body=data)
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assert_answers(s)
        self.s3.start()
        self.assertNotIn(sha1(data), self.s3.content_objects())
        self.assertEqual(self.c.put(data).status, 201)
        self.assertEqual(self.c.get(sha1(data)).body, data)
        self.assertEqual(self.c.get(sha1(old)).body, old)
        self.assert_bucket_clean()
        self.assert_healthy(s)


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


BLOCK = 1 << 20


def sums_sidecar(key, data):
    """The sidecar sums/<key>.crc32c (docs/FORMAT.md) a storaged with sha1
    keys writes for `data` under `key`: what a forger would have to write."""
    import hashlib
    import struct
    head = b"CASS3SUM" + struct.pack("<IIQB7x", 1, BLOCK, len(data), 1)
    body = head + bytes.fromhex(key)
    for off in range(0, len(data), BLOCK):
        body += struct.pack("<I", crc32c(data[off:off + BLOCK]))
    return body + hashlib.sha1(body).digest()


def fetch_range(port, key, first, last, timeout=STALL_BOUND + 30):
    """GET /objects/key with Range bytes=first-last: (status, body, complete)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", f"/objects/{key}", headers={"Range": f"bytes={first}-{last}"})
        r = c.getresponse()
        try:
            return r.status, r.read(), True
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            return r.status, getattr(e, "partial", b""), False
    except (ConnectionError, http.client.RemoteDisconnected):
        return None, b"", False
    finally:
        c.close()


class BlockTables(ProxiedS3Test):
    """Ranged GETs checked by the per-block CRC-32C table kept in the bucket
    next to each object over one block (sums/<hex>.crc32c): a range reads
    about its own bytes from the bucket, not the object from its start; a
    bad block is refused and the copy taken out of service; the table
    survives a lost --dir; a damaged, missing or foreign table only costs
    speed (the whole-object check), and a forged one is never trusted over
    the key for a whole body. Bytes read from the bucket are counted by
    s3proxy.py."""

    SIZE = 20 * BLOCK + 12345  # over two multipart parts

    def put(self, size=None):
        data = os.urandom(size or self.SIZE)
        k = sha1(data)
        r = self.c.put(data)
        self.assertEqual(r.status, 201, r.body)
        return data, k

    def read_tail(self, data, k, n=BLOCK + BLOCK // 2):
        """GETs the last n bytes; (bytes of objects/ and of sums/ read from the bucket)."""
        self.proxy.sent.clear()
        status, body, complete = fetch_range(self.s.port, k, len(data) - n, len(data) - 1)
        self.assertEqual((status, complete), (206, True))
        self.assertEqual(body, data[-n:])
        return self.proxy.body_bytes("GET", "objects/"), self.proxy.body_bytes("GET", "sums/")

    def corrupted(self):
        m = self.c.request("GET", "/metrics").body.decode()
        return [int(l.split()[1]) for l in m.splitlines() if l.startswith("cas_corrupt_objects_total ")][0]

    def test_range_near_end_reads_only_its_blocks(self):
        data, k = self.put()
        self.assertIn(f"sums/{k}.crc32c", self.s3.list_objects())
        obj, sums = self.read_tail(data, k)
        # The range's 1.5 MiB touch three blocks (the last one short).
        self.assertGreater(obj, 0)
        self.assertLessEqual(obj, 2 * BLOCK + 12345)
        self.assertLess(sums, 200)  # 21 CRCs, a header and two keys
        # A range in the middle: only its blocks too.
        self.proxy.sent.clear()
        status, body, _ = fetch_range(self.s.port, k, 7 * BLOCK + 5, 9 * BLOCK - 1)
        self.assertEqual((status, body), (206, data[7 * BLOCK + 5:9 * BLOCK]))
        self.assertLessEqual(self.proxy.body_bytes("GET", "objects/"), 2 * BLOCK)
        # A whole body is checked against the key: read whole.
        self.proxy.sent.clear()
        self.assertEqual(self.c.get(k).body, data)
        self.assertGreaterEqual(self.proxy.body_bytes("GET", "objects/"), len(data))
        self.assertEqual(self.corrupted(), 0)
        # Deleting the object removes its table too.
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        self.assertNotIn(f"sums/{k}.crc32c", self.s3.list_objects())

    def test_corrupt_block_in_range_refused_and_quarantined(self):
        data, k = self.put(6 * BLOCK + 100)
        bad = bytearray(data)
        bad[4 * BLOCK + 777] ^= 1
        status, _ = self.s3.request("PUT", f"/{self.s3.bucket}/objects/{k}", body=bytes(bad))
        self.assertEqual(status, 200)
        # A range in a good block is served (and read alone).
        status, body, complete = fetch_range(self.s.port, k, BLOCK, 2 * BLOCK - 1)
        self.assertEqual((status, complete, body), (206, True, data[BLOCK:2 * BLOCK]))
        # A range over the bad block never arrives complete.
        status, body, complete = fetch_range(self.s.port, k, 3 * BLOCK, 5 * BLOCK - 1)
        self.assertFalse(status == 206 and complete, "a bad block was served")
        self.assertNotIn(bytes(bad[4 * BLOCK:4 * BLOCK + 1000]), body)
        # Taken out of service, counted, listed as quarantined.
        self.assertEqual(self.c.get(k).status, 404)
        self.assertEqual(self.corrupted(), 1)
        self.assertIn(k, self.c.request("GET", "/quarantine").body.decode())
        # A PUT of the right bytes brings it back.
        self.assertEqual(self.c.put(data).status, 201)
        self.assertLessEqual(self.read_tail(data, k)[0], 3 * BLOCK)
        self.assert_bucket_clean()

    def test_table_survives_rebuild_from_bucket(self):
        import shutil
        data, k = self.put()
        self.c.close()
        self.assertEqual(self.s.stop(), 0)
        shutil.rmtree(self.s.dir)
        self.s.start()
        self.c = self.s.client(timeout=STALL_BOUND + 30)
        obj, _ = self.read_tail(data, k)
        self.assertLessEqual(obj, 2 * BLOCK + 12345)
        self.assertEqual(self.corrupted(), 0)

    def test_missing_damaged_or_foreign_table_falls_back(self):
        """Each only costs the whole-object check: the range is served, read
        from the object's start, and nothing is quarantined."""
        data, k = self.put()
        other, k2 = self.put(3 * BLOCK)
        name = f"/{self.s3.bucket}/sums/{k}.crc32c"
        _, good = self.s3.request("GET", name)
        damaged = bytearray(good)
        damaged[40 + 4 * 3] ^= 0x10  # a CRC in the table
        _, foreign = self.s3.request("GET", f"/{self.s3.bucket}/sums/{k2}.crc32c")
        for what, table in (("damaged", bytes(damaged)), ("short", good[:-1]),
                            ("another key's", foreign), ("missing", None)):
            with self.subTest(table=what):
                if table is None:
                    self.assertIn(self.s3.request("DELETE", name)[0], (200, 204))
                else:
                    self.assertEqual(self.s3.request("PUT", name, body=table)[0], 200)
                obj, _ = self.read_tail(data, k)
                self.assertGreaterEqual(obj, len(data) - 2 * BLOCK)  # hashed from the start
                self.assertEqual(self.corrupted(), 0)
        self.assertEqual(self.c.get(k).body, data)

    def test_forged_table_never_trusted_over_the_key(self):
        """The bucket's object replaced by other bytes of the same size,
        with a table that is right for them: a whole body is still checked
        against the key, never delivered complete, and the copy is taken
        out of service."""
        data, k = self.put(2 * BLOCK + 1)
        bad = os.urandom(len(data))
        self.assertEqual(self.s3.request("PUT", f"/{self.s3.bucket}/objects/{k}", body=bad)[0], 200)
        self.assertEqual(self.s3.request("PUT", f"/{self.s3.bucket}/sums/{k}.crc32c",
                                         body=sums_sidecar(k, bad))[0], 200)
        status, body, complete = fetch(self.s.port, k)
        self.assertFalse(status == 200 and complete, "forged bytes were served whole")
        self.assertEqual(self.c.get(k).status, 404)
        self.assertEqual(self.corrupted(), 1)
        # The node's own table for the right bytes is what the fixture forges.
        self.assertEqual(self.c.put(data).status, 201)
        _, table = self.s3.request("GET", f"/{self.s3.bucket}/sums/{k}.crc32c")
        self.assertEqual(table, sums_sidecar(k, data))

    def test_scrub_writes_missing_or_damaged_tables(self):
        """The scrubber, having checked an object against its key, writes
        its table again when it is missing (an older build's object) or
        damaged; then ranges read only their blocks again."""
        objs = [self.put(2 * BLOCK + 1) for _ in range(3)]
        (lost, kl), (damaged, kd), (fine, kf) = objs
        self.assertIn(self.s3.request("DELETE", f"/{self.s3.bucket}/sums/{kl}.crc32c")[0], (200, 204))
        _, t = self.s3.request("GET", f"/{self.s3.bucket}/sums/{kd}.crc32c")
        self.assertEqual(self.s3.request("PUT", f"/{self.s3.bucket}/sums/{kd}.crc32c",
                                         body=t[:40] + bytes([t[40] ^ 1]) + t[41:])[0], 200)
        self.c.close()
        self.s.stop()
        self.s.extra += ["--scrub-rate", "500"]
        self.s.argv += ["--scrub-rate", "500"]
        self.s.start()
        self.c = self.s.client(timeout=STALL_BOUND + 30)
        st = wait_for(lambda: (lambda j: j["scrub"] if j["scrub"]["passes"] >= 1 else None)(
            self.c.request("GET", "/status").json()), 60, "one scrub pass")
        self.assertEqual(st["corrupt"], 0, st)
        m = self.c.request("GET", "/metrics").body.decode()
        self.assertIn("cas_s3_block_tables_rewritten_total 2\n", m)
        for data, k in objs:
            _, table = self.s3.request("GET", f"/{self.s3.bucket}/sums/{k}.crc32c")
            self.assertEqual(table, sums_sidecar(k, data), k)
            obj, _ = self.read_tail(data, k, n=BLOCK // 2)
            self.assertLessEqual(obj, BLOCK + 1)
        self.assertEqual(self.corrupted(), 0)


class PipelinedParts(ProxiedS3Test):
    """A PUT over one part uploads each 8 MiB part on a worker while the
    next is received: at most two parts of a write in memory (the peak RSS
    of the storaged stays far below the body's size), and a part that fails
    while the next one is received fails the write with nothing visible."""

    SANITIZED = bool(os.environ.get("CAS_SANITIZED"))
    client_timeout = STALL_BOUND + 60

    def test_large_put_bounded_memory(self):
        import harness
        data = os.urandom(96 << 20)
        before = harness.peak_rss_kib(self.s.pid)
        r = self.c.put(data)
        self.assertEqual(r.status, 201, r.body)
        peak = harness.peak_rss_kib(self.s.pid)
        sys.stderr.write(f" peak RSS KiB {before} -> {peak} ")
        if not self.SANITIZED:  # ASan keeps freed memory in quarantine
            # Two 8 MiB parts, the CompleteMultipartUpload body and the
            # table: a body held whole would be 96 MiB.
            self.assertLess(peak - before, 40 << 10)
        self.assertEqual(self.c.get(sha1(data)).body, data)
        self.assert_bucket_clean()

    def test_part_failing_while_next_received(self):
        data = os.urandom(40 << 20)
        # The upload's start and its first two parts go through; the third
        # part (on the worker while the fourth is received) is refused.
        self.proxy.fail(1000, 403, after=3)
        r = self.c.put(data)
        self.proxy.clear()
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertEqual(self.c.get(sha1(data)).status, 404)
        self.assertNotIn(sha1(data), self.s3.content_objects())
        self.assertNotIn(f"sums/{sha1(data)}.crc32c", self.s3.list_objects())
        # The next write of the same bytes goes through.
        self.assertEqual(self.c.put(data).status, 201)
        self.assertEqual(self.c.get(sha1(data)).body, data)
        self.assert_bucket_clean()


if __name__ == "__main__":
    unittest.main()
