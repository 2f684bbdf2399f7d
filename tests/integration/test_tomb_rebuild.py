"""test_tomb_rebuild.py - an index that lost records, and tombstones rebuilt
from the data files or the bucket, never undo a DELETE answered 204.

Found by an attacking session (a6 d1, d2, d3):
- d1: the index cut back at a record boundary, its last records (a
  DELETE's DEL and TOMB) lost, while the delete's removal frame is intact in
  the data file: start-up served the object again and `ca-cas fsck
  --repair` only printed a note. A removal frame is written only after the
  removal's record is durable in the index (docs/FORMAT.md, rule D8), so a
  removal frame naming the very frame the index holds live means the index
  lost records: start-up and fsck --repair now apply it (the object removed,
  a client delete's tombstone back; none after gc/end or a drop), and fsck
  reports it as a problem. A re-PUT after the delete is another frame and
  stays.
- d2: a tombstone rebuilt by fsck --repair from a removal frame took the
  frame's written_at (the storaged's clock, whole seconds), not the delete's
  X-CAS-Timestamp: a write stamped before the delete, refused 409 before
  the repair, was stored after it. The removal frame now keeps the stamp.
- d3: the same on the S3 backend after a lost --dir: tombs/<hex>.deleted
  was empty and the rebuild used its own time. Its body now keeps the stamp.

Stamps are taken 30 minutes ahead of and behind the storaged's clock (a
balancer's clock may be off by up to an hour): ahead, a tombstone stamped
with the storaged's time lets earlier-stamped writes through; behind, it
refuses writes the delete did not. No sleeps: each step waits for answers.
"""
import itertools
import os
import shutil
import subprocess
import time
import unittest

from harness import CLI, TempDirTest, sha1

STAMP = "X-CAS-Timestamp"
SKEWS = (1800, -1800)  # seconds between the balancer's clock and the storaged's
REC_PUT, REC_DEL, REC_GC_END, REC_TOMB = 2, 3, 7, 11


def now_us():
    return time.time_ns() // 1000


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def records(dir):
    """(type, digest hex of a SHA-1 key) of every index record after the HEADER."""
    with open(os.path.join(dir, "index"), "rb") as f:
        b = f.read()
    return [(b[i + 4], b[i + 32:i + 52].hex()) for i in range(64, len(b) - len(b) % 64, 64)]


def cut_index(dir, pred):
    """Cuts the index back at a record boundary, at the first record (after
    the HEADER) for which pred(type, hex) holds: it and every later record
    are lost, as an index cut back by damage or a restore leaves it."""
    recs = records(dir)
    first = next(i for i, (t, k) in enumerate(recs) if pred(t, k))
    os.truncate(os.path.join(dir, "index"), 64 * (1 + first))
    return len(recs) - first


def delete_stamped(test, c, k, skew):
    """DELETE of sha1(k) stamped skew seconds off this clock (204), then a
    write stamped 1 ms before that delete, refused (409). The delete's
    stamp (unix us)."""
    ds = now_us() + skew * 1_000_000
    r = c.request("DELETE", f"/objects/{sha1(k)}", headers={STAMP: str(ds)})
    test.assertEqual(r.status, 204, r.body)
    r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds - 1000)})
    test.assertEqual(r.status, 409, r.body)
    return ds


class LostRemovalRecords(TempDirTest):
    """d1: removal records lost from the end of the index, removal frames
    intact. Each case runs twice: a plain restart, and fsck --repair first."""

    MODES = ("restart", "repair")

    def reopen(self, s, mode, lost, tomb_only=False):
        """fsck reports the lost removals (exit 1); then --repair (mode
        repair) or a plain start applies them. tomb_only: only a client
        delete's TOMB was lost (its DEL is there)."""
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 1, out)
        self.assertIn("the index lost the tombstone" if tomb_only
                      else "the index lost the removal's records", out)
        self.assertIn(f"{lost} removed but still indexed", out)
        if mode == "repair":
            rc, out = fsck(s.dir, "--repair")
            self.assertEqual(rc, 0, out)
            self.assertIn("(rebuilt with the delete's stamp)" if tomb_only else "(taken out)", out)
            rc, out = fsck(s.dir)
            self.assertEqual(rc, 0, out)
            self.assertIn(" 0 problems", out)
        s.start()
        if mode == "restart":
            self.assertIn("rebuilt with the delete's stamp" if tomb_only else "removed again",
                          s.log_text())
        return s.client()

    def closed_clean(self, s):
        """Stopped, the store is consistent: fsck finds nothing."""
        s.stop()
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        self.assertIn(" 0 problems", out)

    def test_client_delete(self):
        """PUT K, O; DELETE K stamped by a balancer 30 min ahead of or
        behind the storaged; the index loses the DEL and TOMB (or only the
        TOMB, the last record of the same batch). K stays deleted, its
        tombstone is back with the delete's own stamp: a copy from another
        replica is refused (410), a write stamped 1 ms before the delete
        too (409), one stamped 1 ms after it is stored (201). O is kept.
        Fails on the old code: K was served again (or, TOMB lost, copies
        and earlier-stamped writes were taken)."""
        for mode, skew, tomb_only in itertools.product(self.MODES, SKEWS, (False, True)):
            with self.subTest(mode=mode, skew=skew, lost="TOMB" if tomb_only else "DEL and TOMB"):
                s = self.storaged(name=f"d-{mode}-{skew}-{tomb_only}")
                c = s.client()
                k, o = os.urandom(20000), os.urandom(30000)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.put(o).status, 201)
                ds = delete_stamped(self, c, k, skew)
                c.close()
                s.stop()
                lost = cut_index(s.dir, lambda t, h: h == sha1(k) and
                                 t == (REC_TOMB if tomb_only else REC_DEL))
                self.assertEqual(lost, 1 if tomb_only else 2)
                c = self.reopen(s, mode, 1, tomb_only)
                self.assertEqual(c.get(sha1(k)).status, 404)
                self.assertEqual(c.get(sha1(o)).body, o)
                r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
                self.assertEqual(r.status, 410, r.body)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds - 1000)})
                self.assertEqual(r.status, 409, r.body)
                self.assertEqual(c.get(sha1(k)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds + 1000)})
                self.assertEqual(r.status, 201, r.body)
                self.assertEqual(c.get(sha1(k)).body, k)
                c.close()
                self.closed_clean(s)

    def test_gc_end(self):
        """gc/end removes K1, K2 (O marked used); the index loses GC_END.
        They stay removed, with no tombstone (a copy is taken: 201); the
        cycle, still open, removes nothing more when it is ended."""
        for mode in self.MODES:
            with self.subTest(mode=mode):
                s = self.storaged(name=f"gc-{mode}")
                c = s.client()
                ks = [os.urandom(10000 + i) for i in range(2)]
                o = os.urandom(12000)
                for d in ks + [o]:
                    self.assertEqual(c.put(d).status, 201)
                r = c.request("POST", "/gc/begin")
                self.assertEqual(r.status, 200, r.body)
                gid = r.json()["id"]
                self.assertEqual(c.request("POST", "/gc/mark", body=sha1(o) + "\n").status, 200)
                r = c.request("POST", f"/gc/end?id={gid}")
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json()["removed"], 2)
                c.close()
                s.stop()
                self.assertEqual(cut_index(s.dir, lambda t, h: t == REC_GC_END), 1)
                c = self.reopen(s, mode, 2)
                for d in ks:
                    self.assertEqual(c.get(sha1(d)).status, 404)
                self.assertEqual(c.get(sha1(o)).body, o)
                r = c.request("PUT", f"/objects/{sha1(ks[0])}?replica=1", body=ks[0])
                self.assertEqual(r.status, 201, r.body)
                g = c.request("GET", "/gc").json()
                if g["active"]:
                    r = c.request("POST", f"/gc/end?id={g['id']}")
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.json()["removed"], 0)
                self.assertEqual(c.get(sha1(ks[0])).body, ks[0])
                self.assertEqual(c.get(sha1(ks[1])).status, 404)
                self.assertEqual(c.get(sha1(o)).body, o)
                c.close()
                self.closed_clean(s)

    def test_drop(self):
        """A balancer's drop (DELETE ?replica=1) whose DEL the index lost:
        the copy stays removed, and leaves no tombstone."""
        for mode in self.MODES:
            with self.subTest(mode=mode):
                s = self.storaged(name=f"drop-{mode}")
                c = s.client()
                k, o = os.urandom(9000), os.urandom(9100)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.put(o).status, 201)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}?replica=1").status, 204)
                c.close()
                s.stop()
                self.assertEqual(cut_index(s.dir, lambda t, h: h == sha1(k) and t == REC_DEL), 1)
                c = self.reopen(s, mode, 1)
                self.assertEqual(c.get(sha1(k)).status, 404)
                self.assertEqual(c.get(sha1(o)).body, o)
                r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
                self.assertEqual(r.status, 201, r.body)
                c.close()
                self.closed_clean(s)

    def test_reput_after_delete_survives(self):
        """PUT K, L; DELETE K; PUT K again (a new frame); DELETE L; the index
        loses L's removal records. L stays deleted; K, stored again after
        its delete, is served (the removal frame of K's first frame does not
        touch the new one)."""
        for mode in self.MODES:
            with self.subTest(mode=mode):
                s = self.storaged(name=f"reput-{mode}")
                c = s.client()
                k, l = os.urandom(15000), os.urandom(16000)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.put(l).status, 201)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}").status, 204)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(l)}").status, 204)
                c.close()
                s.stop()
                self.assertEqual(cut_index(s.dir, lambda t, h: h == sha1(l) and t != REC_PUT), 2)
                c = self.reopen(s, mode, 1)
                self.assertEqual(c.get(sha1(k)).body, k)
                self.assertEqual(c.get(sha1(l)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(l)}?replica=1", body=l)
                self.assertEqual(r.status, 410, r.body)
                c.close()
                self.closed_clean(s)

    def test_reput_then_drop_gets_no_tombstone(self):
        """PUT K, DELETE K, PUT K again, then a balancer drops that copy (a
        DEL with no TOMB, its own removal frame): the index is whole, and
        the first delete's removal frame names the first frame, not the one
        the drop removed, so no tombstone comes back at a restart or from
        fsck (a copy is taken again: 201)."""
        s = self.storaged(name="reput-drop")
        c = s.client()
        k = os.urandom(8000)
        self.assertEqual(c.put(k).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}").status, 204)
        self.assertEqual(c.put(k).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}?replica=1").status, 204)
        c.close()
        self.closed_clean(s)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(k)).status, 404)
        r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
        self.assertEqual(r.status, 201, r.body)
        c.close()
        self.assertNotIn("rebuilt with the delete's stamp", s.log_text())
        self.closed_clean(s)

    def test_reput_after_compaction_same_place(self):
        """A removal frame counts only in its own data file and generation:
        PUT K, DELETE K, compaction (the frame and its removal frame go), PUT
        K again; a restart and fsck keep K (its new frame may sit where the
        old one was, in the new generation)."""
        s = self.storaged(name="gen")
        c = s.client()
        k = os.urandom(7000)
        self.assertEqual(c.put(k).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}").status, 204)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        self.assertEqual(c.put(k).status, 201)
        c.close()
        self.closed_clean(s)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(k)).body, k)
        c.close()
        self.assertNotIn("removed again", s.log_text())
        self.closed_clean(s)


class RepairedTombstoneStamp(TempDirTest):
    """d2: the index lost whole; fsck --repair rebuilds the tombstone from
    the removal frame with the delete's X-CAS-Timestamp."""

    def test_stamp_survives_repair(self):
        """DELETE stamped 30 min ahead of / behind the storaged's clock; a
        write stamped 1 ms before it is refused before and after the
        repair (fails on the old code with the clock ahead: 201), one
        stamped 1 ms after it is stored after the repair (fails on the old
        code with the clock behind: 409, the tombstone took the storaged's
        later time)."""
        for skew in SKEWS:
            with self.subTest(skew=skew):
                s = self.storaged(name=f"r{skew}")
                c = s.client()
                k, o = os.urandom(20000), os.urandom(21000)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.put(o).status, 201)
                ds = delete_stamped(self, c, k, skew)
                c.close()
                s.stop()
                os.unlink(os.path.join(s.dir, "index"))
                rc, out = fsck(s.dir, "--repair")
                self.assertEqual(rc, 0, out)
                self.assertIn("1 tombstones of client deletes rebuilt", out)
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(o)).body, o)
                self.assertEqual(c.get(sha1(k)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds - 1000)})
                self.assertEqual(r.status, 409, r.body)
                self.assertEqual(c.get(sha1(k)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
                self.assertEqual(r.status, 410, r.body)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds + 1000)})
                self.assertEqual(r.status, 201, r.body)
                c.close()
                s.stop()


class S3RebuiltTombstoneStamp(TempDirTest):
    """d3: the S3 backend's --dir lost; the tombstone rebuilt from
    tombs/<hex>.deleted keeps the delete's stamp, which its body holds."""

    backend = "s3"

    def test_stamp_survives_rebuild(self):
        """As RepairedTombstoneStamp, through a rebuild from the bucket
        (fails on the old code: the rebuild's time was the stamp)."""
        for skew in SKEWS:
            with self.subTest(skew=skew):
                srv = self.s3server(name=f"s3{skew}", bucket=f"b{abs(skew)}{'a' if skew > 0 else 'b'}")
                s = self.storaged(name=f"s{skew}", s3=srv)
                c = s.client()
                k = os.urandom(5000)
                self.assertEqual(c.put(k).status, 201)
                ds = delete_stamped(self, c, k, skew)
                kept = srv.get_object(f"tombs/{sha1(k)}.deleted")
                c.close()
                s.stop()
                shutil.rmtree(s.dir)
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(k)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds - 1000)})
                self.assertEqual(r.status, 409, r.body)
                r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
                self.assertEqual(r.status, 410, r.body)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k, headers={STAMP: str(ds + 1000)})
                self.assertEqual(r.status, 201, r.body)
                self.assertEqual(c.get(sha1(k)).body, k)
                c.close()
                s.stop()
                # The bucket kept the stamp (the body), and the client's PUT
                # after the delete lifted the tombstone there too.
                self.assertEqual(kept, f"{ds}\n".encode())
                self.assertNotIn(f"tombs/{sha1(k)}.deleted", srv.list_objects())

    def test_empty_body_from_before_counts_from_the_rebuild(self):
        """A tombs/<hex>.deleted written before the stamp was kept (empty)
        keeps today's meaning: in force from the rebuild; a body that holds
        no stamp this version wrote is taken the same way, logged."""
        for body in (b"", b"not a stamp\n"):
            with self.subTest(body=body):
                srv = self.s3server(name=f"s3-{len(body)}", bucket=f"old{len(body)}")
                s = self.storaged(name=f"old{len(body)}", s3=srv)
                c = s.client()
                k = os.urandom(4000)
                self.assertEqual(c.put(k).status, 201)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(k)}").status, 204)
                c.close()
                s.stop()
                st, _ = srv.request("PUT", f"/{srv.bucket}/tombs/{sha1(k)}.deleted", body=body)
                self.assertEqual(st, 200)
                shutil.rmtree(s.dir)
                before = now_us()
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(k)).status, 404)
                r = c.request("PUT", f"/objects/{sha1(k)}?replica=1", body=k)
                self.assertEqual(r.status, 410, r.body)
                # (in whole seconds, as before: a write 1 s before the rebuild)
                r = c.request("PUT", f"/objects/{sha1(k)}", body=k,
                              headers={STAMP: str(before - 1_001_000)})
                self.assertEqual(r.status, 409, r.body)
                c.close()
                s.stop()
                if body:
                    self.assertIn("holds no stamp this version wrote", s.log_text())


if __name__ == "__main__":
    unittest.main()
