"""test_s3_tombstones.py - the S3 backend's tombstones in the bucket
(tombs/<hex>.deleted) always agree with the index's last word on the key,
and a full --dir never half-does a DELETE or a re-PUT.

Found by an attacking session (attack round 8, a7 s1-s7):
- s1: a re-PUT that a DELETE overtook during its upload wrote the bucket's
  tombstone back after a later re-PUT had lifted it and was answered 201;
  once the index lost that record (restored, cut back), the after-crash
  sweep deleted the acknowledged object. A client DELETE and a re-PUT over
  a tombstone now hold the key for their tombstone request and their index
  record together, so neither lands between the other's two.
- s2: an index rebuilt from the bucket (a lost --dir) indexed an object
  whose key's tombstone still stood (an upload a delete refused): the
  deleted object was served again. It now stays out.
- s6: the after-crash sweep asked the bucket for a tombstone only while the
  index held one in force: with the index's gone (expired, or an index
  restored from before the delete), such a leftover was adopted. The
  bucket is now asked for every unlisted object.
- s3, s7: with --dir full, a re-PUT failed after it had lifted the bucket's
  tombstone and left its upload (the sweep then adopted it), and DELETEs
  answered 507 after deleting the bucket's object. s3-index now keeps room
  for removing every object allocated ahead, a new object is refused
  before anything changes when that room is short, and a write whose
  record fails takes its upload back and writes the tombstone back.
"""
import os
import shutil
import subprocess

from harness import BUILD, sha1
from test_reput_adoption import fault_env, overtaken_reput

SHIFTLIB = os.path.join(BUILD, "tests", "integration", "libcastimeshift.so")
from test_s3_backend import ProxiedS3Test


class S3Tombstones(ProxiedS3Test):
    s3_timeout_ms = 3000

    def names(self):
        return self.s3.list_objects()

    def test_reput_overtaken_by_a_delete_leaves_no_stale_tombstone(self):
        """s1: P (a re-PUT) is overtaken by D2 during its upload and refused
        409; P2, sent after D2, is stored 201. The bucket then holds the
        object and no tombstone, so an index that loses P2's record (restored
        from a copy taken after D2, or rebuilt from the bucket) keeps it."""
        for how in ("backup", "rebuild"):
            with self.subTest(how=how):
                d = os.urandom(40_000) + how.encode()
                k = sha1(d)
                index = os.path.join(self.s.dir, "s3-index")
                r = overtaken_reput(self, d, lambda: shutil.copy(index, index + ".after-d2"))
                self.assertEqual(r.status, 409, r.body)
                self.assertIn(f"tombs/{k}.deleted", self.names())
                self.assertEqual(self.c.put(d).status, 201)  # P2
                names = self.names()
                self.assertIn(f"objects/{k}", names)
                self.assertNotIn(f"tombs/{k}.deleted", names)
                if how == "backup":
                    self.s.kill9()
                    shutil.copy(index + ".after-d2", index)
                else:  # a lost --dir (a clean stop: the node's claim is released)
                    self.s.stop()
                    shutil.rmtree(self.s.dir)
                    os.makedirs(self.s.dir)
                self.s.start()
                self.assertEqual(self.c.get(k).body, d)
                self.assertIn(f"objects/{k}", self.names())

    def leftover(self):
        """K stored, deleted (204), the storaged stopped, and objects/K put
        back into the bucket by hand: what a write the DELETE refused leaves
        when its upload could not be taken back. Returns (data, key)."""
        d = os.urandom(20_000)
        k = sha1(d)
        self.assertEqual(self.c.put(d).status, 201)
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        return d, k

    def put_leftover(self, d, k):
        status, _ = self.s3.request("PUT", f"/{self.s3.bucket}/objects/{k}", body=d)
        self.assertEqual(status, 200)

    def test_rebuild_leaves_out_a_tombstoned_leftover(self):
        """s2: a lost --dir rebuilt from the bucket does not index an object
        whose key's tombstone stands; the next start's sweep deletes it."""
        d, k = self.leftover()
        self.s.stop()
        self.put_leftover(d, k)
        shutil.rmtree(self.s.dir)
        os.makedirs(self.s.dir)
        self.s.start()
        self.assertEqual(self.c.get(k).status, 404)
        self.assertIn("stays out of the rebuilt index", self.s.log_text())
        r = self.c.request("PUT", f"/objects/{k}?replica=1", body=d)
        self.assertEqual(r.status, 410, r.body)  # the tombstone is in force again
        self.s.stop()
        self.assertFalse(os.path.exists(os.path.join(self.s.dir, "s3-clean")))
        self.s.start()
        self.assertNotIn(f"objects/{k}", self.names())
        self.assertEqual(self.c.get(k).status, 404)

    def test_sweep_asks_the_bucket_whatever_the_index_holds(self):
        """s6: the index holds no tombstone for K (restored from a copy taken
        before K was stored: as after the tombstone expired), the bucket
        does: the after-crash sweep deletes the leftover, never adopts it."""
        index = os.path.join(self.s.dir, "s3-index")
        other = os.urandom(3000)
        self.assertEqual(self.c.put(other).status, 201)
        shutil.copy(index, index + ".before")
        d, k = self.leftover()
        self.s.kill9()
        self.put_leftover(d, k)
        shutil.copy(index + ".before", index)
        self.s.start()
        self.assertEqual(self.c.get(k).status, 404)
        self.assertNotIn(f"objects/{k}", self.names())
        self.assertEqual(self.c.get(sha1(other)).body, other)


class S3ExpiredTombstones(ProxiedS3Test):
    """A client delete's tombstone expires in the index after 7 days, but
    the bucket keeps tombs/<hex>.deleted until compaction clears both: a
    re-PUT of the key after the expiry still removes the bucket's first, so
    the bucket never says "deleted" beside an acknowledged object (a rebuild
    of a lost --dir would leave the object out, and the next sweep delete
    it). The storaged's clock is moved 8 days with libcastimeshift.so."""

    s3_timeout_ms = 3000

    def later(self, days=8):
        """The storaged and the bucket (SigV4 refuses a request 15 minutes
        off the server's clock) restarted `days` later."""
        self.s.stop()
        self.s3.stop()
        shift = {"LD_PRELOAD": SHIFTLIB, "CAS_TIMESHIFT_S": str(days * 86400)}
        self.s3.env = dict(shift)
        self.s3.start()
        self.s.env = dict(shift, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                          ":verify_asan_link_order=0")
        self.s.start()

    def test_reput_after_the_tombstone_expired_removes_the_bucket_one(self):
        self.assertTrue(os.path.exists(SHIFTLIB), SHIFTLIB)
        d = os.urandom(20_000)
        k = sha1(d)
        self.assertEqual(self.c.put(d).status, 201)
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        self.later()
        self.assertEqual(self.c.put(d).status, 201)
        names = self.s3.list_objects()
        self.assertIn(f"objects/{k}", names)
        self.assertNotIn(f"tombs/{k}.deleted", names)
        self.s.stop()  # a lost --dir: rebuilt from the bucket
        shutil.rmtree(self.s.dir)
        os.makedirs(self.s.dir)
        self.s.start()
        self.assertEqual(self.c.get(k).body, d)

    def test_compaction_clears_expired_tombstones_from_the_bucket(self):
        old, fresh = os.urandom(1000), os.urandom(1001)
        for d in (old, fresh):
            self.assertEqual(self.c.put(d).status, 201)
        self.assertEqual(self.c.request("DELETE", f"/objects/{sha1(old)}").status, 204)
        self.later()
        self.assertEqual(self.c.request("DELETE", f"/objects/{sha1(fresh)}").status, 204)
        self.assertEqual(self.c.request("POST", "/compact?wait=1").status, 200)
        names = self.s3.list_objects()
        self.assertNotIn(f"tombs/{sha1(old)}.deleted", names)  # expired: cleared
        self.assertIn(f"tombs/{sha1(fresh)}.deleted", names)  # in force: kept
        r = self.c.request("PUT", f"/objects/{sha1(fresh)}?replica=1", body=fresh)
        self.assertEqual(r.status, 410, r.body)
        self.s.stop()
        self.s.start()  # the compacted index agrees
        r = self.c.request("PUT", f"/objects/{sha1(fresh)}?replica=1", body=fresh)
        self.assertEqual(r.status, 410, r.body)
        self.assertEqual(self.c.put(old).status, 201)


class S3FullDir(ProxiedS3Test):
    """--dir on a small tmpfs (skipped where none can be mounted)."""

    s3_timeout_ms = 3000

    def setUp(self):
        super().setUp()
        self.s.stop()
        mnt = self.s.dir
        shutil.rmtree(mnt)
        os.makedirs(mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", mnt]))
        self.s.start()

    def fill(self):
        """Fills --dir's file system with a file of its own (what else lives
        there); returns its path."""
        path = os.path.join(self.s.dir, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        free = os.statvfs(self.s.dir)
        self.assertLess(free.f_bavail * free.f_frsize, 4096)
        return path

    def test_deletes_on_a_full_dir(self):
        """s7: every DELETE on a full --dir answers 204 (the room was
        allocated ahead), and a new object is refused 507 before its upload
        with nothing changed."""
        objs = [os.urandom(1000 + i) for i in range(40)]
        for o in objs:
            self.assertEqual(self.c.put(o).status, 201)
        filler = self.fill()
        # New objects use the margin allocated ahead, then are refused
        # before their upload (a few hundred objects of records).
        for i in range(2000):
            fresh = os.urandom(100)
            r = self.c.put(fresh)
            if r.status != 201:
                break
            objs.append(fresh)
        self.assertEqual(r.status, 507, r.body)
        self.assertIn(b"kept for removing", r.body)
        self.assertNotIn(f"objects/{sha1(fresh)}", self.names_())
        for o in objs:
            r = self.c.request("DELETE", f"/objects/{sha1(o)}")
            self.assertEqual(r.status, 204, r.body)
        self.s.kill9()
        os.unlink(filler)
        self.s.start()
        names = self.names_()
        for o in objs:
            self.assertEqual(self.c.get(sha1(o)).status, 404)
            self.assertNotIn(f"objects/{sha1(o)}", names)

    def names_(self):
        return self.s3.list_objects()


class S3ReputRecordFails(ProxiedS3Test):
    """s3: a re-PUT whose PUT record cannot be appended (the fault library
    makes every append to s3-index fail with ENOSPC while its file exists)
    after it lifted the bucket's tombstone: 507, its upload taken back, the
    tombstone written back; after a kill -9 the sweep adopts nothing."""

    s3_timeout_ms = 3000

    def test_failed_reput_changes_nothing(self):
        full = os.path.join(self.tmp, "full")
        self.s.stop()
        self.s = self.storaged(name="faulty", s3=self.proxy, extra=["--s3-timeout-ms", "3000"],
                               env=fault_env(CAS_FULL_FILE=full, CAS_FULL_ONLY="/s3-index"))
        self.c = self.s.client(timeout=60)
        self.addCleanup(self.c.close)
        d = os.urandom(30_000)
        k = sha1(d)
        self.assertEqual(self.c.put(d).status, 201)
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        open(full, "w").close()
        r = self.c.put(d)
        self.assertEqual(r.status, 507, r.body)
        self.assertEqual(self.c.get(k).status, 404)
        names = self.s3.list_objects()
        self.assertIn(f"tombs/{k}.deleted", names)
        self.assertNotIn(f"objects/{k}", names)
        os.unlink(full)
        self.s.kill9()
        self.s.start()
        self.assertEqual(self.c.get(k).status, 404)
        self.assertNotIn(f"objects/{k}", self.s3.list_objects())
