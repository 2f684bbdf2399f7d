"""test_listing_bounded.py - GET /objects in ascending key order, and a
balancer's listing in bounded memory (attack finding g5).

A balancer used to keep a set of every key it had listed, to print each key
once: its memory grew with the number of objects, per listing, and any client
could open many. Now each storaged lists in ascending key order (disk and S3
backends: pages of the object table, storaged/objtab.c) and the balancer
merges the backends' streams holding one line of each (balancerd/cluster.c).
The kinds checked here:

- order: a storaged's listing (disk, S3) is strictly ascending and complete,
  with state, min_size and max_size; so is a balancer's, over backends that
  overlap, are disjoint, or mix disk and S3, each key once;
- a backend whose stream is not strictly ascending (or not "<key> <size>")
  cuts the balancer's listing (no final chunk, logged), never a duplicate;
- memory: concurrent listings of a few hundred thousand keys through a
  balancer leave its RSS near where it was (the old set grew ~20 MiB per
  listing of 400k keys).
"""
import hashlib
import http.client
import os
import random
import subprocess
import sys
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancer_integrity as tbi  # noqa: E402  (the module: its tests are not run again here)
from harness import STORAGED, TempDirTest, peak_rss_kib, rss_kib, sha1, wait_for  # noqa: E402
from test_balancerd import Balancer, ClusterTest  # noqa: E402


def listing(port, query="", timeout=120):
    """GET /objects?query: (status, [(key, size)], complete, headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/objects" + query)
        r = c.getresponse()
        try:
            body, complete = r.read(), True
        except http.client.IncompleteRead as e:
            body, complete = e.partial, False
        heads = {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()
    if r.status != 200:
        return r.status, body, complete, heads
    out = []
    for line in body.decode().splitlines():
        k, _, s = line.partition(" ")
        out.append((k, int(s)))
    return r.status, out, complete, heads


def ascending(pairs):
    return all(a[0] < b[0] for a, b in zip(pairs, pairs[1:]))


class StoragedOrder(TempDirTest):
    """A storaged's own listing: ascending, complete, filters applied."""

    def test_listing_is_in_ascending_key_order_with_filters(self):
        s = self.storaged()
        c = s.client()
        rnd = random.Random(5)
        objs = {}
        for i in range(150):
            data = os.urandom(rnd.randrange(0, 300))
            self.assertIn(c.put(data).status, (200, 201))
            objs[sha1(data)] = len(data)
        st, got, complete, _ = listing(s.port)
        self.assertEqual((st, complete), (200, True))
        self.assertTrue(ascending(got))
        self.assertEqual(dict(got), objs)
        self.assertEqual(len(got), len(objs))
        st, got, complete, _ = listing(s.port, "?min_size=100&max_size=200")
        self.assertTrue(complete and ascending(got))
        self.assertEqual(dict(got), {k: v for k, v in objs.items() if 100 <= v < 200})
        # Garbage: the marked ones (all but those unmarked by mark), in order.
        self.assertEqual(c.request("POST", "/gc/begin").status, 200)
        keep = sorted(objs)[::3]
        self.assertEqual(c.request("POST", "/gc/mark", body="\n".join(keep).encode()).status, 200)
        st, got, complete, _ = listing(s.port, "?state=garbage&min_size=50")
        self.assertTrue(complete and ascending(got))
        self.assertEqual(dict(got), {k: v for k, v in objs.items() if k not in keep and v >= 50})
        # Removed objects are gone from the order too.
        for k in keep[:10]:
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        st, got, complete, _ = listing(s.port)
        self.assertTrue(complete and ascending(got))
        self.assertEqual(set(k for k, _ in got), set(objs) - set(keep[:10]))
        for q in ("?state=all", "?min_size=-1", "?max_size=1e3"):
            self.assertEqual(listing(s.port, q)[0], 400, q)


    def test_many_pages_with_a_small_page(self):
        # --list-page-keys 1024: a listing of NOBJ keys takes several pages
        # (several scans of the table), each resumed after the last key.
        s = self.storaged(extra=["--list-page-keys", "1024"])
        c = s.client()
        objs = {}
        for i in range(self.NOBJ):
            data = b"page-%d" % i
            self.assertIn(c.put(data, query="?sync=0").status, (200, 201))
            objs[sha1(data)] = len(data)
        st, got, complete, _ = listing(s.port)
        self.assertEqual((st, complete), (200, True))
        self.assertTrue(ascending(got))
        self.assertEqual(dict(got), objs)
        st, got, complete, _ = listing(s.port, "?min_size=9")
        self.assertTrue(complete and ascending(got))
        self.assertEqual(dict(got), {k: v for k, v in objs.items() if v >= 9})

    NOBJ = 3000


class PageSizeOption(TempDirTest):
    def test_out_of_range_is_refused(self):
        for bad in ("1023", "16777217", "x"):
            p = subprocess.run([STORAGED, "--dir", os.path.join(self.tmp, "s"), "--listen",
                                "127.0.0.1:1", "--list-page-keys", bad],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"--list-page-keys", p.stderr, bad)
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "s")), bad)


class StoragedOrderS3(StoragedOrder):
    """The same against the S3 backend (its own table of the bucket's objects)."""
    backend = "s3"
    NOBJ = 1200  # over one page of 1024 keys: the first page overflows


class BalancerMerge(ClusterTest):
    """A balancer's listing: the backends' merged in order, each key once."""

    def test_overlapping_and_disjoint_backends_merge_in_order(self):
        self.cluster(n=3, replicas=2)
        b = self.balancer()
        bc = b.client()
        objs = {}
        for i in range(120):  # two copies each: the backends overlap
            data = b"merge-%d-" % i + os.urandom(i)
            self.assertIn(bc.put(data).status, (200, 201))
            objs[sha1(data)] = len(data)
        for i, s in enumerate(self.stores):  # one copy each, on one backend: disjoint
            for j in range(20):
                data = b"only-%d-%d" % (i, j)
                self.assertEqual(s.client().put(data).status, 201)
                objs[sha1(data)] = len(data)
        every = b"on-every-backend"
        for s in self.stores:
            s.client().put(every)
        objs[sha1(every)] = len(every)
        st, got, complete, heads = listing(b.port)
        self.assertEqual((st, complete, heads.get("x-cas-backends-skipped")), (200, True, "0"))
        self.assertTrue(ascending(got))  # strictly: no key twice
        self.assertEqual(dict(got), objs)
        # The filters reach every backend and the merge keeps the order.
        st, got, complete, _ = listing(b.port, "?min_size=10&max_size=60")
        self.assertTrue(complete and ascending(got))
        self.assertEqual(dict(got), {k: v for k, v in objs.items() if 10 <= v < 60})
        # Garbage through the balancer: what end would remove, in order.
        gc = bc.request("POST", "/gc/begin")
        self.assertEqual(gc.status, 200)
        keep = sorted(objs)[1::2]
        self.assertEqual(bc.request("POST", "/gc/mark", body="\n".join(keep).encode()).status, 200)
        st, got, complete, _ = listing(b.port, "?state=garbage")
        self.assertTrue(complete and ascending(got))
        self.assertEqual(dict(got), {k: v for k, v in objs.items() if k not in keep})
        for q in ("?state=dead", "?min_size=x", "?max_size=99999999999999999999"):
            self.assertEqual(listing(b.port, q)[0], 400, q)

    def test_disk_and_s3_backends_merge_in_order(self):
        self.disk_and_s3()
        b = self.balancer()
        objs = {}
        for i in range(60):
            data = b"mixed-%d" % i
            self.assertIn(b.client().put(data).status, (200, 201))
            objs[sha1(data)] = len(data)
        extra = b"only-on-s3"
        self.assertEqual(self.stores[1].client().put(extra).status, 201)
        objs[sha1(extra)] = len(extra)
        st, got, complete, _ = listing(b.port)
        self.assertEqual((st, complete), (200, True))
        self.assertTrue(ascending(got))
        self.assertEqual(dict(got), objs)

    def test_auth_through_the_merge(self):
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("s3cret-token-for-listing\n")
        self.stores = [self.storaged(f"s{i}", extra=["--capacity", "64G", "--token-file", tok])
                       for i in range(2)]
        self.domains, self.replicas = ["d0", "d1"], 2
        self.config = os.path.join(self.tmp, "balancerd.yaml")
        self.write_config(2, extra_yaml=f"token_file: {tok}\n")
        b = self.balancer(token="s3cret-token-for-listing")
        hdr = {"Authorization": "Bearer s3cret-token-for-listing"}
        keys = set()
        for i in range(30):
            data = b"auth-%d" % i
            r = b.client().request("PUT", f"/objects/{sha1(data)}", body=data, headers=hdr)
            self.assertIn(r.status, (200, 201))
            keys.add(sha1(data))
        self.assertEqual(listing(b.port)[0], 401)
        c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=60)
        c.request("GET", "/objects", headers=hdr)
        r = c.getresponse()
        lines = r.read().decode().splitlines()
        c.close()
        self.assertEqual(r.status, 200)
        got = [l.split()[0] for l in lines]
        self.assertEqual(got, sorted(keys))


class ListFake(tbi.FakeBackend):
    """A storaged look-alike whose GET /objects answers `listing` (bytes, a
    body sent with its Content-Length); everything else as the integrity
    tests' fake (ring, status, gc, capacity). Counts listings served."""

    def __init__(self, body, seed=7):
        self.body = body
        self.listings = 0
        super().__init__("ok", "ok", seed)

    def route(self, sock, method, path, hdrs):
        if method == "GET" and path == "/objects":
            with self.lock:
                self.listings += 1
            sock.sendall((f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          f"Content-Length: {len(self.body)}\r\n\r\n").encode())
            sock.sendall(self.body)
            return True
        if path == "/healthz":
            path = "/status"
        return super().route(sock, method, path, hdrs)


def keys_body(keys, size=7):
    return b"".join(b"%s %d\n" % (k.encode(), size) for k in keys)


class FakeBackendTest(TempDirTest):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.fakes = []
        self.addCleanup(lambda: [f.close() for f in self.fakes])

    def fake(self, body, seed):
        f = ListFake(body, seed)
        self.fakes.append(f)
        return f

    def balancer(self, urls, extra=()):
        cfg = os.path.join(self.tmp, f"b{len(self.daemons)}.yaml")
        with open(cfg, "w") as fh:
            fh.write("replicas: 1\nbackends:\n")
            for i, u in enumerate(urls):
                fh.write(f"  - url: {u}\n    failure_domain: d{i}\n")
        b = Balancer(cfg, self.tmp, extra=list(extra))
        self.daemons.append(b)
        b.start()
        b.wait_backends(len(urls))
        return b


class OutOfOrderBackend(FakeBackendTest):
    """A backend stream that is not strictly ascending cuts the listing."""

    def cut(self, bad_body, what):
        good = sorted(sha1(b"good-%d" % i) for i in range(200))
        f1 = self.fake(keys_body(good), 1)
        f2 = self.fake(bad_body, 2)
        b = self.balancer([f1.url, f2.url])
        st, got, complete, _ = listing(b.port)
        self.assertEqual(st, 200)
        self.assertFalse(complete, f"{what}: the listing was shown complete")
        keys = [k for k, _ in got]
        self.assertEqual(len(keys), len(set(keys)), f"{what}: a key twice")
        self.assertTrue(ascending(got), what)
        wait_for(lambda: "listing cut" in b.log_text(), 5, f"{what}: the cut logged")
        return b

    def test_descending_pair_cuts_the_listing(self):
        ks = sorted(sha1(b"bad-%d" % i) for i in range(100))
        ks[50], ks[51] = ks[51], ks[50]
        b = self.cut(keys_body(ks), "out of order")
        self.assertIn("not in ascending key order", b.log_text())

    def test_repeated_key_cuts_the_listing(self):
        ks = sorted(sha1(b"bad-%d" % i) for i in range(100))
        ks.insert(30, ks[30])
        self.cut(keys_body(ks), "repeated key")

    def test_old_table_order_stream_cuts_the_listing(self):
        # What a storaged from before ordered listings sends: table order.
        ks = [sha1(b"old-%d" % i) for i in range(500)]
        self.cut(keys_body(ks), "unordered")

    def test_malformed_lines_cut_the_listing(self):
        ok = sorted(sha1(b"m-%d" % i) for i in range(20))
        for bad in (b"zz" * 20 + b" 5\n", ok[5].encode() + b"\n", ok[5].encode() + b" 5x\n",
                    ok[5].encode() + b" 5\n" + b"x" * 300 + b"\n"):
            with self.subTest(bad=bad[:50]):
                body = keys_body(ok[:5]) + bad + keys_body(ok[6:])
                self.cut(body, "malformed")

    def test_sorted_fakes_merge(self):
        a = sorted(sha1(b"a-%d" % i) for i in range(300))
        bks = sorted(sha1(b"b-%d" % i) for i in range(300)) + a[::7]
        f1 = self.fake(keys_body(a), 1)
        f2 = self.fake(keys_body(sorted(set(bks))), 2)
        b = self.balancer([f1.url, f2.url])
        st, got, complete, _ = listing(b.port)
        self.assertEqual((st, complete), (200, True))
        self.assertEqual([k for k, _ in got], sorted(set(a) | set(bks)))


class ListingMemory(FakeBackendTest):
    """Concurrent listings of 2 x 200k keys through a balancer: its peak RSS
    stays within a few MiB of where it started. The old set of keys took
    ~20 MiB per listing (4 listings: ~80 MiB); the merge holds a 64 KiB
    window and a line per backend."""

    NKEYS = 200_000
    LISTINGS = 4
    # AddressSanitizer keeps freed memory in quarantine: a looser bound,
    # still far below the old set's growth (which ASan makes larger).
    BOUND_MIB = 48 if os.environ.get("CAS_SANITIZED") else 16

    def test_concurrent_listings_hold_bounded_memory(self):
        halves = [[], []]
        for i in range(2 * self.NKEYS):
            k = hashlib.sha1(b"%d" % i).hexdigest()
            halves[i % 2].append(k)
        for h in halves:
            h.sort()
        fakes = [self.fake(keys_body(h), i + 1) for i, h in enumerate(halves)]
        want = keys_body(sorted(halves[0] + halves[1]))
        b = self.balancer([f.url for f in fakes])
        pid = b.proc.pid
        base = rss_kib(pid)
        # All listings open at once, read in turns, so that they are in
        # flight together (a listing's memory counts while it is open).
        conns = []
        for _ in range(self.LISTINGS):
            c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=120)
            c.request("GET", "/objects")
            conns.append(c)
        resps = [c.getresponse() for c in conns]
        bodies = [[] for _ in resps]
        live = set(range(len(resps)))
        while live:
            for i in list(live):
                d = resps[i].read(256 * 1024)
                if not d:
                    live.discard(i)
                else:
                    bodies[i].append(d)
        for c in conns:
            c.close()
        peak = peak_rss_kib(pid)
        self.assertEqual(sum(f.listings for f in fakes), 2 * self.LISTINGS)
        grown = (peak - base) / 1024
        self.assertLess(grown, self.BOUND_MIB,
                        f"{self.LISTINGS} listings of {2 * self.NKEYS} keys grew the balancer "
                        f"from {base // 1024} MiB by {grown:.1f} MiB")
        for i, body in enumerate(bodies):
            self.assertEqual(b"".join(body), want, f"listing {i}")


if __name__ == "__main__":
    unittest.main()
