"""test_listing_complete.py - a listing that left objects out never looks
complete to its user (attack round 8, findings 2 and 4).

Two kinds:

- A balancer that leaves a backend out of GET /objects (known down, or too
  slow to start its listing) says so only in `X-CAS-Backends-Skipped: n`.
  Every consumer of a listing in the CLI (`list`, `list --garbage`,
  `export` of every live object) must treat n > 0 as incomplete: a message
  on stderr naming how many backends were left out, exit 1, unless
  `--allow-partial` (warning, exit 0). `export -o FILE` still writes what
  was listed but never replaces FILE with it (the partial archive is kept
  beside FILE); on stdout the archive is written and the status says it is
  partial. A listing cut in the middle (a backend dying mid-stream) fails
  too, and leaves FILE as it was. Nothing in the CLI deletes from a
  listing; the GC end a listing would preview is refused by the balancer
  while a backend is out (checked here: nothing removed).
- HTTP/1.0 has no chunked coding, so a listing (length unknown up front)
  could not show a cut: both daemons answer GET /objects over HTTP/1.0 with
  505 and a JSON error naming HTTP/1.1 (the balancer before it asks any
  backend), while objects are still served over HTTP/1.0.
"""
import glob
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_listing_bounded as tlb  # noqa: E402  (the module: its tests are not run again here)
from harness import CLI, sha1, wait_for  # noqa: E402
from test_balancerd import ClusterTest  # noqa: E402


def cas(server, *args):
    p = subprocess.run([CLI, "--server", server] + [str(a) for a in args],
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def raw(port, method, path, version):
    """One request on its own connection, read until the server closes:
    (status line, {header: value}, body as sent on the wire)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(f"{method} {path} {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {l.partition(":")[0].strip().lower(): l.partition(":")[2].strip() for l in lines[1:]}
    return lines[0], hdrs, body


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return sorted(t.getnames())


class BackendLeftOut(ClusterTest):
    """Two storageds behind a balancer with replicas 1 (each object on one
    of them); one taken out before the listing."""

    NOBJ = 30

    def populate(self):
        # A frozen backend is found down within a probe's fan-out bound
        # (1 s here, instead of the default's seconds).
        self.cluster(n=2, replicas=1, extra_yaml="timeouts:\n  fanout_ms: 1000\n")
        self.bal = self.balancer()
        self.url = f"http://127.0.0.1:{self.bal.port}"
        c = self.bal.client()
        self.keys = {}
        for i in range(self.NOBJ):
            data = b"listing-complete %d" % i
            self.assertIn(c.put(data, sha1(data)).status, (200, 201))
            self.keys[sha1(data)] = data
        self.on = [set(), set()]
        for i, s in enumerate(self.stores):
            st, got, complete, _ = tlb.listing(s.port)
            self.assertEqual((st, complete), (200, True))
            self.on[i] = {k for k, _ in got}
        self.assertTrue(self.on[0] and self.on[1], "both backends hold objects")
        self.assertEqual(self.on[0] | self.on[1], set(self.keys))

    def take_out(self, how):
        s = self.stores[1]
        s.proc.send_signal(signal.SIGSTOP if how == "stop" else signal.SIGKILL)
        if how == "stop":
            self.addCleanup(lambda: s.running() and s.proc.send_signal(signal.SIGCONT))
        self.bal.wait_backends(1, timeout=20)
        st, got, complete, heads = tlb.listing(self.bal.port)
        self.assertEqual((st, complete, heads.get("x-cas-backends-skipped")), (200, True, "1"))
        self.assertEqual({k for k, _ in got}, self.on[0])

    def assert_partial_message(self, err, what):
        self.assertIn("left 1 backend out", err, what)
        self.assertIn("--allow-partial", err, what)

    def check_list(self):
        want = "".join(k + "\n" for k in sorted(self.on[0])).encode()
        code, out, err = cas(self.url, "list")
        self.assertEqual(code, 1, f"list of an incomplete listing must fail: {err}")
        self.assertEqual(out, want, "the keys listed are still printed")
        self.assert_partial_message(err, "list")
        code, out, err = cas(self.url, "--json", "list", "--long")
        self.assertEqual(code, 1, err)
        self.assertEqual(out, b"", "--json prints nothing half-made")
        self.assertIn("left 1 backend out", json.loads(err.splitlines()[-1])["error"])
        code, out, err = cas(self.url, "list", "--allow-partial")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, want)
        self.assertIn("warning: list: the listing is incomplete", err)

    def check_export(self):
        # -o FILE over an earlier backup: FILE stays; what was listed is
        # kept beside it, named on stderr.
        path = os.path.join(self.tmp, "backup.tar")
        with open(path, "wb") as f:
            f.write(b"an earlier, complete backup")
        code, _, err = cas(self.url, "export", "-o", path)
        self.assertEqual(code, 1, f"export of an incomplete listing must fail: {err}")
        self.assert_partial_message(err, "export -o")
        self.assertIn("PARTIAL", err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"an earlier, complete backup", "FILE replaced")
        kept = glob.glob(path + ".partial-*")
        self.assertEqual(len(kept), 1, kept)
        self.assertIn(kept[0], err)
        with open(kept[0], "rb") as f:
            self.assertEqual(members(f.read()), sorted(self.on[0]))
        os.unlink(kept[0])
        # stdout: the archive of what was listed, and exit 1.
        code, out, err = cas(self.url, "export")
        self.assertEqual(code, 1, err)
        self.assert_partial_message(err, "export to stdout")
        self.assertIn("must not be taken for a full backup", err)
        self.assertEqual(members(out), sorted(self.on[0]))
        # --json: the summary says it.
        code, out, err = cas(self.url, "--json", "export", "-o", os.path.join(self.tmp, "j.tar"))
        self.assertEqual(code, 1, err)
        summary = json.loads(err.splitlines()[0])
        self.assertEqual((summary["complete"], summary["backends_skipped"]), (False, 1), summary)
        self.assertEqual(summary["exported"], len(self.on[0]))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "j.tar")))
        for k in glob.glob(os.path.join(self.tmp, "j.tar.partial-*")):
            os.unlink(k)
        # --allow-partial: FILE replaced, a warning, exit 0.
        code, _, err = cas(self.url, "export", "--allow-partial", "-o", path)
        self.assertEqual(code, 0, err)
        self.assertIn("warning: export: the listing is incomplete", err)
        with open(path, "rb") as f:
            self.assertEqual(members(f.read()), sorted(self.on[0]))
        self.assertEqual(glob.glob(path + ".partial-*"), [])
        # Keys given by name need no listing: unaffected.
        k = sorted(self.on[0])[0]
        code, out, err = cas(self.url, "export", k)
        self.assertEqual((code, members(out)), (0, [k]), err)

    def test_backend_stopped_before_the_listing(self):
        self.populate()
        self.take_out("stop")
        self.check_list()
        self.check_export()

    def test_backend_killed_before_the_listing(self):
        self.populate()
        self.take_out("kill")
        self.check_list()
        self.check_export()

    def test_garbage_listing_and_gc_end_with_a_backend_out(self):
        # `list --garbage` previews what end-gc removes: incomplete too. And
        # the end itself removes nothing while a backend is out.
        self.populate()
        code, out, err = cas(self.url, "begin-gc")
        self.assertEqual(code, 0, err)
        gc_id = out.decode().strip()
        self.take_out("stop")
        code, out, err = cas(self.url, "list", "--garbage")
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "".join(k + "\n" for k in sorted(self.on[0])).encode())
        self.assert_partial_message(err, "list --garbage")
        code, _, err = cas(self.url, "end-gc", gc_id)
        self.assertEqual(code, 1, err)
        st, got, complete, _ = tlb.listing(self.stores[0].port)
        self.assertEqual({k for k, _ in got}, self.on[0], "nothing removed")


class SlowListingFake(tlb.ListFake):
    """Answers its probes, but never starts its listing until released."""

    def __init__(self, body, seed):
        self.release = threading.Event()
        super().__init__(body, seed)

    def route(self, sock, method, path, hdrs):
        if method == "GET" and path == "/objects":
            self.release.wait(30)
            return False
        return super().route(sock, method, path, hdrs)

    def close(self):
        self.release.set()
        super().close()


class DyingListingFake(tlb.ListFake):
    """Announces its whole listing, sends half of it, and closes."""

    def route(self, sock, method, path, hdrs):
        if method == "GET" and path == "/objects":
            sock.sendall((f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          f"Content-Length: {len(self.body)}\r\n\r\n").encode())
            sock.sendall(self.body[: len(self.body) // 2])
            return False
        return super().route(sock, method, path, hdrs)


class ListingFakes(tlb.FakeBackendTest):
    """Backends that are up by their probes but whose listing fails."""

    def two(self, cls):
        self.a = sorted(sha1(b"a-%d" % i) for i in range(200))
        b = sorted(sha1(b"b-%d" % i) for i in range(2000))
        f1 = self.fake(tlb.keys_body(self.a), 1)
        f2 = cls(tlb.keys_body(b), 2)
        self.fakes.append(f2)
        bal = self.balancer([f1.url, f2.url], extra=["--stall-ms", "100"])
        return bal, f"http://127.0.0.1:{bal.port}"

    def test_backend_too_slow_to_start_its_listing(self):
        # Not known down (its probes answer): left out after the listing
        # head's bound, and counted in the header all the same.
        bal, url = self.two(SlowListingFake)
        code, out, err = cas(url, "list")
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "".join(k + "\n" for k in self.a).encode())
        self.assertIn("left 1 backend out", err)
        self.assertTrue(all(b["up"] for b in bal.status()["backends"]))
        code, out, err = cas(url, "export", "-o", os.path.join(self.tmp, "x.tar"))
        self.assertEqual(code, 1, err)
        self.assertIn("left 1 backend out", err)

    def test_backend_dying_in_the_middle_of_its_listing(self):
        # The balancer cuts its answer (no final chunk): a failed listing.
        _, url = self.two(DyingListingFake)
        code, out, err = cas(url, "list")
        self.assertEqual(code, 1, err)
        self.assertIn("list: ", err)
        path = os.path.join(self.tmp, "backup.tar")
        with open(path, "wb") as f:
            f.write(b"earlier")
        code, _, err = cas(url, "export", "-o", path)
        self.assertEqual(code, 1, err)
        self.assertIn("was left as it was", err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"earlier")
        self.assertEqual(glob.glob(path + ".partial-*"), [], "nothing kept of a cut listing")
        code, _, err = cas(url, "list", "--allow-partial")
        self.assertEqual(code, 1, "--allow-partial does not accept a cut listing: " + err)


class Http10Listing(tlb.FakeBackendTest):
    """GET /objects over HTTP/1.0: 505 naming HTTP/1.1, never a 200 whose
    end is a plain close."""

    def assert_refused(self, port, path, method="GET"):
        line, hdrs, body = raw(port, method, path, "HTTP/1.0")
        self.assertIn(" 505 ", line, f"{method} {path} over HTTP/1.0: {line}")
        if method == "GET":
            self.assertIn("HTTP/1.1", json.loads(body)["error"])
            self.assertEqual(int(hdrs["content-length"]), len(body))

    def test_storaged_refuses_a_listing_over_http10(self):
        s = self.storaged()
        c = s.client()
        data = b"http10"
        self.assertIn(c.put(data, sha1(data)).status, (200, 201))
        for path in ("/objects", "/objects?state=garbage", "/objects?min_size=1"):
            self.assert_refused(s.port, path)
        self.assert_refused(s.port, "/objects", "HEAD")
        # HTTP/1.1: the listing, chunked, with its final chunk.
        line, hdrs, body = raw(s.port, "GET", "/objects", "HTTP/1.1")
        self.assertIn(" 200 ", line)
        self.assertEqual(hdrs.get("transfer-encoding"), "chunked")
        self.assertTrue(body.endswith(b"0\r\n\r\n"))
        self.assertIn(sha1(data).encode(), body)
        # Objects have a length: still served over HTTP/1.0.
        line, hdrs, body = raw(s.port, "GET", f"/objects/{sha1(data)}", "HTTP/1.0")
        self.assertIn(" 200 ", line)
        self.assertEqual(body, data)

    def test_balancer_refuses_a_listing_over_http10_before_asking_backends(self):
        # One backend out of order: the listing would be cut.
        good = sorted(sha1(b"good-%d" % i) for i in range(2000))
        bad = sorted(sha1(b"bad-%d" % i) for i in range(2000))
        bad[1500], bad[1501] = bad[1501], bad[1500]
        f1 = self.fake(tlb.keys_body(good), 1)
        f2 = self.fake(tlb.keys_body(bad), 2)
        b = self.balancer([f1.url, f2.url])
        for path in ("/objects", "/objects?state=live&max_size=100"):
            self.assert_refused(b.port, path)
        self.assert_refused(b.port, "/objects", "HEAD")
        self.assertEqual((f1.listings, f2.listings), (0, 0), "no backend asked")
        # HTTP/1.1: cut as documented (no final chunk).
        line, hdrs, body = raw(b.port, "GET", "/objects", "HTTP/1.1")
        self.assertIn(" 200 ", line)
        self.assertEqual(hdrs.get("transfer-encoding"), "chunked")
        self.assertFalse(body.endswith(b"0\r\n\r\n"))
        wait_for(lambda: "listing cut" in b.log_text(), 5, "the cut logged")


class Http10ThroughCluster(ClusterTest):
    def test_balancer_over_storageds(self):
        self.cluster(n=2, replicas=1)
        b = self.balancer()
        data = b"through the balancer"
        self.assertIn(b.client().put(data, sha1(data)).status, (200, 201))
        line, hdrs, body = raw(b.port, "GET", "/objects", "HTTP/1.0")
        self.assertIn(" 505 ", line)
        self.assertIn("HTTP/1.1", json.loads(body)["error"])
        line, _, body = raw(b.port, "GET", f"/objects/{sha1(data)}", "HTTP/1.0")
        self.assertIn(" 200 ", line)
        self.assertEqual(body, data)
        line, hdrs, body = raw(b.port, "GET", "/objects", "HTTP/1.1")
        self.assertIn(" 200 ", line)
        self.assertEqual(hdrs.get("x-cas-backends-skipped"), "0")
        self.assertTrue(body.endswith(b"0\r\n\r\n"))


if __name__ == "__main__":
    unittest.main()
