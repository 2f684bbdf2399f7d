"""test_s3_races.py - the S3 backend (ca-cas-storaged --backend s3) where
a client DELETE races a write of the same key, and the files it creates in
--dir at start and stop; each a fault found by an attacking session:

- a copy (PUT ?replica=1: read repair, quarantine repair, anti-entropy,
  rebalance) whose upload to the bucket was in flight when a client DELETE
  of its key landed was recorded anyway (201), lifting the tombstone in the
  index and in the bucket: the deleted object was served again. Now it is
  refused with 410 and its upload removed from the bucket (single PUT and
  multipart), as the disk backend refuses it;
- a client PUT of a stored key whose multipart upload a DELETE clobbered
  failed (500) but left its bytes in the bucket, where a rebuild of the
  index from the bucket brought the deleted object back;
- node.s3tmp (the node file restored from the bucket into a lost --dir)
  was opened through a symlink (a file outside the store overwritten) and
  blocked for ever on a FIFO; s3-clean (the clean-stop marker) likewise
  at stop;
- a start refused for a damaged s3-index had already removed the s3-clean
  marker, so "nothing was changed" was false (the next start swept the
  bucket as after a crash).

The bucket's answers are held at chosen requests by a proxy (HoldProxy, on
s3proxy.S3Proxy), so each race happens in the same order every run: no
sleeps. Every daemon is reaped by PID, pass or fail.
"""
import os
import shutil
import signal
import subprocess
import threading
import unittest

from harness import STORAGED, free_port, sha1
from test_s3_attack import ForgeProxy
from test_s3_backend import S3Test

PART = 8 << 20  # the S3 backend's multipart part size (S3_PART_SIZE, storaged/s3.h)


class HoldProxy(ForgeProxy):
    """S3Proxy whose requests matching a predicate on the request line
    (method, path and query) wait, unsent to the bucket, until let_go().
    The storaged's request gives up when no byte moves for 5 s: a test
    lets go at once after the step it races."""

    def __init__(self, server):
        self._holds = {}  # name -> (pred, reached Event, go Event)
        super().__init__(server)

    def hold_when(self, pred, name="write"):
        """Requests whose line satisfies pred wait until let_go(name);
        returns the Event set when the first one arrives."""
        h = (pred, threading.Event(), threading.Event())
        self._holds[name] = h
        return h[1]

    def let_go(self, name="write"):
        h = self._holds.pop(name, None)
        if h is not None:
            h[2].set()

    def maybe_hold(self, request_line):
        for pred, reached, go in list(self._holds.values()):
            if pred(request_line):
                reached.set()
                go.wait(120)
                return

    def clear(self):
        for name in list(self._holds):
            self.let_go(name)
        super().clear()


def run(argv, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    return subprocess.run([STORAGED, "--listen", f"127.0.0.1:{free_port()}", "--capacity", "10G",
                           "--scrub-rate", "0"] + argv, capture_output=True, text=True, timeout=timeout,
                          env=env)


class DeleteRacesWrite(S3Test):
    """A client DELETE lands while a write of the same key is uploading."""

    def setUp(self):
        super().setUp()
        self.proxy = HoldProxy(self.s3)
        self.daemons.append(self.proxy)
        self.s = self.storaged(s3=self.proxy)
        self.c = self.s.client(timeout=120)
        self.addCleanup(self.c.close)

    def in_background(self, method, path, body):
        """Starts method path on its own connection; returns (thread, out)
        with out["status"], out["body"] once it ended."""
        out = {}

        def go():
            c = self.s.client(timeout=120)
            try:
                r = c.request(method, path, body=body)
                out["status"], out["body"] = r.status, r.body
            finally:
                c.close()

        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t, out

    def race(self, method, path, body, held, then):
        """Runs method path in the background until its bucket request
        matching held(line) arrives, holds it there while then() runs,
        releases it; returns the background request's out."""
        reached = self.proxy.hold_when(held)
        t, out = self.in_background(method, path, body)
        try:
            self.assertTrue(reached.wait(60), "the write's upload never reached the bucket")
            then()
        finally:
            self.proxy.let_go()
        t.join(120)
        self.assertFalse(t.is_alive(), "the write never ended")
        return out

    def bucket_names(self, key):
        return sorted(n for n in self.s3.list_objects() if key in n)

    def assert_deleted_everywhere(self, key, data):
        """GET 404, a copy refused with 410, nothing of the key in the bucket
        but its tombstone; the same after a restart and after a rebuild of
        the index from the bucket (a lost --dir)."""
        self.assertEqual(self.c.get(key).status, 404)
        self.assertEqual(self.c.put(data, query="?replica=1").status, 410)
        self.assertEqual(self.bucket_names(key), [f"tombs/{key}.deleted"])
        self.assertEqual(self.s.stop(), 0)
        self.s.start()
        c = self.s.client(20)
        self.assertEqual(c.get(key).status, 404)
        self.assertEqual(c.put(data, query="?replica=1").status, 410)
        self.assertEqual(self.s.stop(), 0)
        shutil.rmtree(self.s.dir)
        self.s.start()
        c = self.s.client(20)
        self.assertEqual(c.get(key).status, 404, "a rebuild from the bucket brought the object back")
        self.assertEqual(c.put(data, query="?replica=1").status, 410)
        self.assert_bucket_clean()

    def test_copy_uploading_when_delete_lands_is_refused(self):
        """x07: the copy's PUT to the bucket is held; the client DELETE
        (404: not stored yet) records its tombstone; the copy then lands
        and is refused with 410, its upload removed; the tombstone stays."""
        data = os.urandom(5000)
        key = sha1(data)
        deleted = {}
        out = self.race("PUT", f"/objects/{key}?replica=1", data,
                        lambda line: line.startswith(f"PUT /{self.s3.bucket}/objects/{key} "),
                        lambda: deleted.setdefault("status", self.c.request("DELETE", f"/objects/{key}").status))
        self.assertEqual(deleted["status"], 404)
        self.assertEqual(out["status"], 410, out.get("body"))
        self.assertIn(b"deleted here by a client", out["body"])
        self.assert_deleted_everywhere(key, data)

    def test_multipart_copy_completing_after_delete_is_refused(self):
        """x07, a copy over one part: its completion is held while the
        DELETE lands; the completed object is removed, 410."""
        data = os.urandom(PART + 100_000)
        key = sha1(data)
        deleted = {}
        out = self.race("PUT", f"/objects/{key}?replica=1", data,
                        lambda line: line.startswith(f"POST /{self.s3.bucket}/objects/{key}?uploadId="),
                        lambda: deleted.setdefault("status", self.c.request("DELETE", f"/objects/{key}").status))
        self.assertEqual(deleted["status"], 404)
        self.assertEqual(out["status"], 410, out.get("body"))
        self.assert_deleted_everywhere(key, data)

    def test_copy_over_stored_object_when_delete_lands_is_refused(self):
        """The key is stored; a copy of it (stored again over the bucket's
        copy) is uploading when the DELETE (204) removes it: the copy is
        refused, the DELETE stands."""
        data = os.urandom(5000)
        key = sha1(data)
        self.assertEqual(self.c.put(data).status, 201)
        deleted = {}
        out = self.race("PUT", f"/objects/{key}?replica=1", data,
                        lambda line: line.startswith(f"PUT /{self.s3.bucket}/objects/{key} "),
                        lambda: deleted.setdefault("status", self.c.request("DELETE", f"/objects/{key}").status))
        self.assertEqual(deleted["status"], 204)
        self.assertEqual(out["status"], 410, out.get("body"))
        self.assert_deleted_everywhere(key, data)

    def test_gc_and_compaction_while_refused_copy_is_removed(self):
        """While a refused copy's upload is being removed from the bucket
        (its DELETE held), gc/begin, a compaction (a snapshot of s3-index)
        and gc/end run: the key is no object meanwhile (not counted, not
        removed by gc/end), and after a restart from the snapshot it is
        neither listed nor served, its tombstone in force."""
        data = os.urandom(5000)
        key = sha1(data)
        b = self.s3.bucket
        reached = self.proxy.hold_when(lambda line: line.startswith(f"PUT /{b}/objects/{key} "))
        undo = self.proxy.hold_when(lambda line: line.startswith(f"DELETE /{b}/objects/{key} "), "undo")
        t, out = self.in_background("PUT", f"/objects/{key}?replica=1", data)
        try:
            self.assertTrue(reached.wait(60), "the copy's upload never reached the bucket")
            deleted = self.c.request("DELETE", f"/objects/{key}").status
            self.proxy.let_go()
            self.assertTrue(undo.wait(60), "the refused copy's upload was never removed")
            gid = self.c.request("POST", "/gc/begin").json()["id"]
            self.assertEqual(self.c.request("GET", "/capacity").json()["objects"], 0)
            self.assertEqual(self.c.request("POST", "/compact?wait=1").status, 200)
            r = self.c.request("POST", f"/gc/end?id={gid}")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["removed"], 0)
            self.assertEqual(self.c.request("HEAD", f"/objects/{key}").status, 404)
        finally:
            self.proxy.clear()
        t.join(120)
        self.assertFalse(t.is_alive(), "the copy never ended")
        self.assertEqual(deleted, 404)
        self.assertEqual(out["status"], 410, out.get("body"))
        self.assertEqual(self.c.request("GET", "/capacity").json()["objects"], 0)
        self.assertEqual(self.s.stop(), 0)
        self.s.start()
        c = self.s.client(20)
        self.assertEqual(c.request("HEAD", f"/objects/{key}").status, 404)
        self.assertNotIn(key.encode(), c.request("GET", "/objects").body)
        self.assertEqual(c.request("GET", "/capacity").json()["objects"], 0)
        self.assertEqual(c.put(data, query="?replica=1").status, 410)
        self.assertEqual(self.bucket_names(key), [f"tombs/{key}.deleted"])

    def test_client_multipart_put_clobbered_by_delete_leaves_nothing(self):
        """A client PUT of a stored key over one part: its completion is
        held while a DELETE (204) removes the key. The PUT began before the
        DELETE, so it must not undo it: it is refused (409), and what its
        completion put in the bucket is removed, so nothing brings the
        deleted object back."""
        data = os.urandom(PART + 100_000)
        key = sha1(data)
        self.assertEqual(self.c.put(data).status, 201)
        deleted = {}
        out = self.race("PUT", f"/objects/{key}", data,
                        lambda line: line.startswith(f"POST /{self.s3.bucket}/objects/{key}?uploadId="),
                        lambda: deleted.setdefault("status", self.c.request("DELETE", f"/objects/{key}").status))
        self.assertEqual(deleted["status"], 204)
        self.assertEqual(out["status"], 409, out.get("body"))
        self.assertIn(b"deleted here while this write was in progress", out["body"])
        self.assert_deleted_everywhere(key, data)

    def test_client_put_uploading_when_delete_lands_is_refused(self):
        """A client PUT uploading when a DELETE lands (404: not stored yet,
        tombstone recorded) must not undo it: that DELETE may be a
        balancer's, answered 204 after this PUT was answered by the other
        replicas (a straggling copy). The PUT is refused (409, what it
        uploaded removed), the tombstone stays, and a PUT sent after the
        DELETE stores the object again (SPEC: only a new PUT does)."""
        data = os.urandom(5000)
        key = sha1(data)
        deleted = {}
        out = self.race("PUT", f"/objects/{key}", data,
                        lambda line: line.startswith(f"PUT /{self.s3.bucket}/objects/{key} "),
                        lambda: deleted.setdefault("status", self.c.request("DELETE", f"/objects/{key}").status))
        self.assertEqual(deleted["status"], 404)
        self.assertEqual(out["status"], 409, out.get("body"))
        self.assertIn(b"deleted here while this write was in progress", out["body"])
        self.assertEqual(self.c.get(key).status, 404)
        self.assertEqual(self.bucket_names(key), [f"tombs/{key}.deleted"])
        self.assertEqual(self.c.put(data, query="?replica=1").status, 410)
        self.assertEqual(self.c.put(data).status, 201)
        self.assertEqual(self.c.get(key).body, data)
        self.assertEqual(self.c.put(data, query="?replica=1").status, 200)


class StateFiles(S3Test):
    """The files the S3 backend creates in --dir."""

    def stopped_node(self):
        """A storaged that stored one object, stopped cleanly."""
        a = self.storaged("a")
        data = os.urandom(1000)
        c = a.client(20)
        self.assertEqual(c.put(data).status, 201)
        node_id = c.request("GET", "/ring").json()["node"]
        c.close()
        self.assertEqual(a.stop(), 0)
        return a, data, node_id

    def test_node_s3tmp_symlink_or_fifo_is_removed_not_used(self):
        """x10: --dir lost its node file; node.s3tmp, through which it is
        restored from the bucket, is a symlink (it was followed: a file
        outside the store overwritten) or a FIFO (start-up hung for ever)."""
        a, data, node_id = self.stopped_node()
        with open(os.path.join(a.dir, "node"), "rb") as f:
            node = f.read()
        victim = os.path.join(self.tmp, "outside-the-store")
        for kind in ("symlink", "fifo"):
            with self.subTest(kind=kind):
                with open(victim, "w") as f:
                    f.write("precious\n")
                os.unlink(os.path.join(a.dir, "node"))
                tmp = os.path.join(a.dir, "node.s3tmp")
                if kind == "symlink":
                    os.symlink(victim, tmp)
                else:
                    os.mkfifo(tmp)
                a.start()  # raises when it does not come up in 10 s
                c = a.client(20)
                self.assertEqual(c.request("GET", "/ring").json()["node"], node_id)
                self.assertEqual(c.get(sha1(data)).body, data)
                c.close()
                with open(victim) as f:
                    self.assertEqual(f.read(), "precious\n")
                with open(os.path.join(a.dir, "node"), "rb") as f:
                    self.assertEqual(f.read(), node)
                self.assertFalse(os.path.lexists(tmp))
                self.assertEqual(a.stop(), 0)

    def test_s3_clean_not_a_regular_file(self):
        """The clean-stop marker: a FIFO in its place at stop (it blocked
        the stop for ever) or a symlink (followed) is not opened; the next
        start refuses it (exit 1, naming it) until it is moved away."""
        a, data, _ = self.stopped_node()
        marker = os.path.join(a.dir, "s3-clean")
        outside = os.path.join(self.tmp, "not-here")
        for kind in ("fifo", "symlink"):
            with self.subTest(kind=kind):
                a.start()
                self.assertFalse(os.path.lexists(marker))
                if kind == "fifo":
                    os.mkfifo(marker)
                else:
                    os.symlink(outside, marker)
                self.assertEqual(a.stop(timeout=15), 0, "the stop hung on s3-clean")
                self.assertFalse(os.path.lexists(outside))
                p = run(["--dir", a.dir] + self.s3.storaged_args())
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("s3-clean", p.stderr)
                self.assertIn("not a regular file", p.stderr)
                self.assertTrue(os.path.lexists(marker))
                os.unlink(marker)
        a.start()
        self.assertEqual(a.client(20).get(sha1(data)).body, data)

    def test_refused_bad_index_keeps_clean_marker(self):
        """A start refused for a damaged s3-index changes nothing: the
        s3-clean marker of the last clean stop stays, so once the index is
        put back the start is a clean one (no sweep of the bucket: an
        unlisted object there is not adopted, as it would be after a
        crash)."""
        a, data, _ = self.stopped_node()
        marker = os.path.join(a.dir, "s3-clean")
        index = os.path.join(a.dir, "s3-index")
        self.assertTrue(os.path.exists(marker))
        stray = os.urandom(700)
        self.assertEqual(self.s3.request("PUT", f"/{self.s3.bucket}/objects/{sha1(stray)}", body=stray)[0], 200)
        shutil.copy(index, index + ".good")
        with open(index, "r+b") as f:
            f.write(b"NOTANIDX")
        p = run(["--dir", a.dir] + self.s3.storaged_args())
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("nothing was changed", p.stderr)
        self.assertTrue(os.path.exists(marker), "a refused start removed the s3-clean marker")
        os.replace(index + ".good", index)
        a.start()
        self.assertFalse(os.path.exists(marker))
        c = a.client(20)
        self.assertEqual(c.get(sha1(data)).body, data)
        self.assertEqual(c.get(sha1(stray)).status, 404, "the start after the refusal swept the bucket")


if __name__ == "__main__":
    unittest.main()
