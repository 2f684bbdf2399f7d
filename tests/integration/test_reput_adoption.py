"""test_reput_adoption.py - an acknowledged re-PUT after a DELETE survives an
index that lost its last records, on both backends, and a write the DELETE
overtook still stays out.

PUT K (201), DELETE K (204), PUT K again (201): the index then loses its
last record (the re-PUT's PUT; the DELETE's DEL and TOMB stay), by a cut or,
on S3, by restoring a backup of s3-index taken after the DELETE. Found by an
attacking session (a6 d4, d8): the disk backend's start-up, fsck --repair
and compaction refused the re-PUT's intact unindexed frame because the
older tombstone was in force; the S3 backend's after-crash sweep deleted
the re-PUT's object from the bucket for the same reason. Now a frame
records its write's stamp (docs/FORMAT.md "Data files: frames") and is
refused only when the commit would have refused the write; the sweep asks
the bucket whether the delete's tombstone (tombs/<hex>.deleted) still
stands.

The other side: a write a DELETE overtook (in flight when the DELETE
landed, stamped before it), crashed after its frame was written and before
it was answered or marked removed (held at its data-file sync by the fault
library's gate, then kill -9), stays out at start-up, in fsck --repair and
in compaction; so does a copy from another replica in the same state even
when the DELETE carries a stamp behind the storaged's clock. On S3, an
unlisted object whose key the bucket still tombstones is deleted by the
sweep as before, and one the sweep cannot read (503 from a proxy, a6 d9)
is left in the bucket for the next start instead of being deleted.
"""
import os
import shutil
import subprocess
import threading
import time

from harness import BUILD, CLI, TempDirTest, sha1, wait_for
from test_s3_backend import ProxiedS3Test

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


def fault_env(**kw):
    env = {"LD_PRELOAD": FAULTLIB,
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    env.update(kw)
    return env


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def cut_last_record(index, key_hex):
    """Cuts index back by its last 64-byte record, which must be a PUT of key_hex."""
    with open(index, "rb") as f:
        b = f.read()
    last = b[-64:]
    assert len(b) % 64 == 0 and last[4] == 2 and last[32:52] == bytes.fromhex(key_hex), \
        "the last record is not the re-PUT's PUT"
    os.truncate(index, len(b) - 64)


def intact_frames_of(dir, key_hex):
    """Object frames ("CASO" headers) of key_hex in dir's data files."""
    n = 0
    digest = bytes.fromhex(key_hex)
    for name in os.listdir(dir):
        if name.startswith("data-"):
            with open(os.path.join(dir, name), "rb") as f:
                b = f.read()
            at = b.find(b"CASO")
            while at >= 0:
                if b[at + 32:at + 32 + len(digest)] == digest:
                    n += 1
                at = b.find(b"CASO", at + 1)
    return n


class DiskReput(TempDirTest):
    def reput(self, name):
        """A store where K was PUT, DELETEd, PUT again (all answered), then
        stopped and its index cut back by the re-PUT's record."""
        s = self.storaged(name=name)
        c = s.client()
        d, other = os.urandom(20000), os.urandom(3000)
        self.assertEqual(c.put(other).status, 201)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.get(sha1(d)).body, d)
        c.close()
        s.stop()
        cut_last_record(os.path.join(s.dir, "index"), sha1(d))
        return s, d, other

    def check_served(self, s, d, other):
        c = s.client()
        self.assertEqual(c.get(sha1(d)).body, d)
        self.assertEqual(c.get(sha1(other)).body, other)
        # The re-PUT lifted the tombstone again: a copy is no longer refused.
        self.assertEqual(c.request("PUT", f"/objects/{sha1(d)}?replica=1", body=d).status, 200)
        c.close()

    def test_reput_survives_restart(self):
        """Start-up indexes the re-PUT's frame again (fails on the old code:
        GET 404, the tombstone refused it)."""
        s, d, other = self.reput("restart")
        s.start()
        self.assertIn("indexed again", s.log_text())
        self.check_served(s, d, other)

    def test_reput_survives_repair(self):
        """fsck --repair puts the re-PUT back (fails on the old code: "0
        problems", the frame left out)."""
        s, d, other = self.reput("repair")
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        self.assertIn("missing from the index (put back)", out)
        s.start()
        self.check_served(s, d, other)

    def test_reput_survives_compaction(self):
        """After the restart, a compaction and another restart keep it, and
        fsck finds nothing to repair."""
        s, d, other = self.reput("compact")
        s.start()
        c = s.client()
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        self.assertEqual(c.get(sha1(d)).body, d)
        c.close()
        s.stop()
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        self.assertIn("0 problems", out)
        s.start()
        self.check_served(s, d, other)

    def test_good_put_after_quarantine_survives_restart_and_repair(self):
        """The same with a quarantine instead of a DELETE: K's copy found
        corrupt (taken out of service), a good PUT of K (201), the index cut
        by that PUT's record: start-up and fsck --repair index the good frame
        again (fails on the old code: 404, the quarantine entry refused it),
        and the corrupt frame stays out."""
        for how in ("restart", "repair"):
            with self.subTest(how=how):
                s = self.storaged(name=f"q-{how}")
                c = s.client()
                d = os.urandom(20000)
                self.assertEqual(c.put(d).status, 201)
                digest = bytes.fromhex(sha1(d))
                for name in os.listdir(s.dir):
                    if name.startswith("data-"):
                        path = os.path.join(s.dir, name)
                        with open(path, "rb") as f:
                            b = f.read()
                        at = b.find(b"CASO")
                        if at >= 0 and b[at + 32:at + 52] == digest:
                            with open(path, "r+b") as f:
                                f.seek(at + 64 + 10000)
                                f.write(bytes([b[at + 64 + 10000] ^ 0xff]))
                self.assertNotEqual(c.get(sha1(d)).status, 200)  # found corrupt
                self.assertEqual(c.get(sha1(d)).status, 404)
                self.assertIn(sha1(d), c.request("GET", "/quarantine").body.decode())
                self.assertEqual(c.put(d).status, 201)
                c.close()
                s.stop()
                cut_last_record(os.path.join(s.dir, "index"), sha1(d))
                if how == "repair":
                    rc, out = fsck(s.dir, "--repair")
                    self.assertEqual(rc, 0, out)
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(d)).body, d)
                self.assertNotIn(sha1(d), c.request("GET", "/quarantine").body.decode())
                c.close()
                s.stop()

    def test_overtaken_write_stays_out(self):
        """A write in flight when the DELETE lands (stamped before it: the
        storaged's clock at its head), killed at its data-file sync so that
        its whole frame is in the file, unindexed and never marked removed:
        start-up, fsck --repair and compaction all leave it out (K 404, the
        tombstone still refuses copies). A copy (?replica=1) in the same
        state stays out too, even when the DELETE is stamped 30 minutes
        behind the storaged's clock (so behind the copy's own stamp)."""
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        for kind in ("client", "copy"):
            for how in ("restart", "repair", "compact"):
                with self.subTest(kind=kind, how=how):
                    gate = os.path.join(self.tmp, f"gate-{kind}-{how}")
                    env = fault_env(CAS_PAUSE_FILE=gate, CAS_PAUSE_ONLY="/data-")
                    s = self.storaged(name=f"{kind}-{how}", env=env)
                    c = s.client()
                    d, other = os.urandom(20000), os.urandom(3000)
                    self.assertEqual(c.put(other).status, 201)
                    with open(gate, "w") as f:
                        f.write("0")  # hold the next data-file sync: the write's frame
                    q = "?replica=1" if kind == "copy" else ""
                    c2 = s.client(timeout=30)

                    def send():
                        try:
                            c2.request("PUT", f"/objects/{sha1(d)}{q}", body=d)
                        except Exception:
                            pass  # killed under it
                    t = threading.Thread(target=send)
                    t.start()
                    wait_for(lambda: os.path.exists(gate + ".at"), 20, "the write at its data sync")
                    headers = {}
                    if kind == "copy":
                        headers["X-CAS-Timestamp"] = str(int((time.time() - 1800) * 1e6))
                    r = c.request("DELETE", f"/objects/{sha1(d)}", headers=headers)
                    self.assertEqual(r.status, 404, r.body)  # not stored yet; tombstone recorded
                    s.kill9()
                    t.join(30)
                    c.close()
                    os.unlink(gate)
                    os.unlink(gate + ".at")
                    # The state under test: the write's whole frame is there.
                    self.assertEqual(intact_frames_of(s.dir, sha1(d)), 1)
                    if how == "repair":
                        rc, out = fsck(s.dir, "--repair")
                        self.assertEqual(rc, 0, out)
                        self.assertIn("refuses it", out)
                    s.start()
                    c = s.client()
                    if how == "compact":
                        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
                    self.assertEqual(c.get(sha1(d)).status, 404)
                    self.assertEqual(c.get(sha1(other)).body, other)
                    r = c.request("PUT", f"/objects/{sha1(d)}?replica=1", body=d)
                    self.assertEqual(r.status, 410, r.body)
                    c.close()
                    s.stop()
                    s.start()  # and it stays out
                    c = s.client()
                    self.assertEqual(c.get(sha1(d)).status, 404)
                    c.close()
                    s.stop()


class S3Reput(TempDirTest):
    backend = "s3"

    def test_reput_survives_index_restore_and_cut(self):
        """s3-index restored from a backup taken after the DELETE, or cut
        back by the re-PUT's record, then a start after a crash: the sweep
        adopts the re-PUT's object (fails on the old code: deleted from the
        bucket, GET 404)."""
        for how in ("backup", "cut"):
            with self.subTest(how=how):
                s = self.storaged(name=how)
                c = s.client()
                d = os.urandom(20000)
                self.assertEqual(c.put(d).status, 201)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
                index = os.path.join(s.dir, "s3-index")
                shutil.copy(index, index + ".backup")
                self.assertEqual(c.put(d).status, 201)
                c.close()
                s.kill9()
                if how == "backup":
                    shutil.copy(index + ".backup", index)
                else:
                    cut_last_record(index, sha1(d))
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(d)).body, d)
                self.assertIn(f"objects/{sha1(d)}", self.s3.list_objects())
                # The tombstone is lifted: a copy is no longer refused.
                self.assertEqual(c.request("PUT", f"/objects/{sha1(d)}?replica=1", body=d).status, 200)
                c.close()
                s.stop()
                s.start()  # listed now: a clean restart keeps it
                c = s.client()
                self.assertEqual(c.get(sha1(d)).body, d)
                c.close()
                s.stop()

    def test_tombstoned_leftover_still_removed(self):
        """An unlisted object whose key the bucket still tombstones (a write
        the DELETE refused, whose upload a crash kept from being removed) is
        deleted by the sweep: the object stays deleted, also after a
        rebuild of the index from the bucket."""
        s = self.storaged(name="left")
        c = s.client()
        d = os.urandom(20000)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        c.close()
        s.kill9()
        names = self.s3.list_objects()
        self.assertIn(f"tombs/{sha1(d)}.deleted", names)
        self.assertNotIn(f"objects/{sha1(d)}", names)
        status, _ = self.s3.request("PUT", f"/{self.s3.bucket}/objects/{sha1(d)}", body=d)
        self.assertEqual(status, 200)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(d)).status, 404)
        c.close()
        self.assertNotIn(f"objects/{sha1(d)}", self.s3.list_objects())
        s.stop()



def overtaken_reput(test, d, during=None):
    """On an S3 ProxiedS3Test: d stored and deleted (204), then a re-PUT of
    d whose upload the proxy holds 0.8 s, and a DELETE of its key while it
    is held (answered 204 or 404), then during() if given. The re-PUT's
    answer."""
    k = sha1(d)
    test.assertEqual(test.c.put(d).status, 201)
    test.assertEqual(test.c.request("DELETE", f"/objects/{k}").status, 204)
    test.proxy.delay = lambda method, path: 0.8 if method == "PUT" and f"/objects/{k}" in path else 0
    got = {}

    def reput():
        c = test.s.client(timeout=60)
        try:
            got["r"] = c.put(d)
        finally:
            c.close()
    t = threading.Thread(target=reput)
    t.start()
    wait_for(lambda: test.proxy.count("held") > 0, 20, "the re-PUT's upload held")
    r = test.c.request("DELETE", f"/objects/{k}")
    test.assertIn(r.status, (204, 404), r.body)
    if during:
        during()
    t.join(60)
    test.proxy.delay = None
    return got["r"]


class S3ReputTombstoneLift(ProxiedS3Test):
    """A re-PUT after a DELETE removes the bucket's tombstone
    (tombs/<hex>.deleted) before its PUT record, and fails when it cannot:
    the sweep after a crash and a rebuild from the bucket take the bucket's
    word, so a stale tombstone deleted the acknowledged re-PUT once the
    index lost its record (fails on the old code: the re-PUT answered 201
    with the tombstone left in the bucket, and after an index restore the
    object was deleted from the bucket)."""

    s3_timeout_ms = 2000  # the refused tombstone DELETEs are given up on quickly

    def test_reput_fails_until_the_tombstone_is_lifted(self):
        d = os.urandom(30_000)
        k = sha1(d)
        self.assertEqual(self.c.put(d).status, 201)
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        index = os.path.join(self.s.dir, "s3-index")
        shutil.copy(index, index + ".backup")  # taken after the DELETE
        self.proxy.only = lambda method, path: method == "DELETE" and "/tombs/" in path
        self.proxy.fail(10_000, 503)
        r = self.c.put(d)
        self.assertGreaterEqual(r.status, 500, r.body)
        self.assertIn(b"tombstone", r.body)
        self.assertEqual(self.c.get(k).status, 404)
        names = self.s3.list_objects()
        self.assertIn(f"tombs/{k}.deleted", names)
        self.assertNotIn(f"objects/{k}", names)  # the upload was taken back
        self.proxy.clear()
        self.proxy.only = None
        self.assertEqual(self.c.put(d).status, 201)
        names = self.s3.list_objects()
        self.assertNotIn(f"tombs/{k}.deleted", names)
        self.assertIn(f"objects/{k}", names)
        # The index loses the re-PUT's record (restored from the backup),
        # after a crash: the sweep keeps the object.
        self.s.kill9()
        shutil.copy(index + ".backup", index)
        self.s.start()
        self.assertEqual(self.c.get(k).body, d)
        self.assertIn(f"objects/{k}", self.s3.list_objects())

    def test_overtaken_reput_leaves_the_tombstone(self):
        """A re-PUT that a DELETE overtakes during its upload is refused 409
        before it touches the bucket's tombstone (it removes it only after
        its upload, holding the key against DELETEs until its record is in):
        the bucket keeps saying the key is deleted, and the upload is gone."""
        d = os.urandom(30_000)
        k = sha1(d)
        r = overtaken_reput(self, d)
        self.assertEqual(r.status, 409, r.body)
        names = self.s3.list_objects()
        self.assertIn(f"tombs/{k}.deleted", names)
        self.assertNotIn(f"objects/{k}", names)
        self.assertEqual(self.c.get(k).status, 404)
