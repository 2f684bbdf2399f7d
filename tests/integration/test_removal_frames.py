"""test_removal_frames.py - removals recorded in the data files (removal
frames, docs/FORMAT.md "Removal frames"): an index rebuilt from the data
files (`ca-cas fsck --repair` after the index was removed, emptied, cut to
its header or had its header torn) never brings back an object a client
DELETE (204) or a gc/end (200) removed, and keeps every other object byte
for byte; an index cut back to its header loses nothing at start-up or at
the next compaction; the crash states between a removal frame and its index
record; and a full file system, where removals are marked in place.

Found by an attacking session (x06, x08): the repair put deleted objects
back, and compaction dropped every frame behind a header-only index.
"""
import json
import os
import subprocess
import unittest

from harness import BUILD, CLI, TempDirTest, sha1

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def removal_marks(dir):
    """(removal frames, frames marked removed in place) in dir's data files
    (their magics; random object bytes hold one by chance once in 2**32)."""
    r = m = 0
    for f in os.listdir(dir):
        if f.startswith("data-"):
            with open(os.path.join(dir, f), "rb") as fh:
                b = fh.read()
            r += b.count(b"CASR")
            m += b.count(b"CASD")
    return r, m


def damage_index(path, how):
    if how == "removed":
        os.unlink(path)
    elif how == "emptied":
        os.truncate(path, 0)
    elif how == "cut to its header":
        os.truncate(path, 64)
    elif how == "header torn":
        os.truncate(path, 32)
    else:
        raise ValueError(how)


class Store:
    """A populated store: kept objects (one over 1 MiB), one deleted by a
    client, one dropped by a balancer, some removed by a gc/end."""

    def __init__(self, test, name):
        self.s = test.storaged(name=name)
        c = self.s.client()
        t = test
        self.kept = [os.urandom(1000 + 37 * i) for i in range(12)] + [os.urandom(1_500_000)]
        self.deleted = [os.urandom(2000 + i) for i in range(3)]
        self.dropped = os.urandom(2500)
        self.collected = [os.urandom(3000 + i) for i in range(8)]
        for d in self.kept + self.deleted + [self.dropped] + self.collected:
            t.assertEqual(c.put(d).status, 201)
        for d in self.deleted:
            t.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        t.assertEqual(c.request("DELETE", f"/objects/{sha1(self.dropped)}?replica=1").status, 204)
        r = c.request("POST", "/gc/begin")
        t.assertEqual(r.status, 200, r.body)
        gid = r.json()["id"]
        r = c.request("POST", "/gc/mark", body="".join(sha1(d) + "\n" for d in self.kept))
        t.assertEqual(r.status, 200, r.body)
        r = c.request("POST", f"/gc/end?id={gid}")
        t.assertEqual(r.status, 200, r.body)
        t.assertEqual(r.json()["removed"], len(self.collected))
        c.close()

    def check(self, t, tombstones=True, tombstoned=None):
        c = self.s.client()
        for d in self.kept:
            t.assertEqual(c.get(sha1(d)).body, d)
        for d in self.deleted + [self.dropped] + self.collected:
            t.assertEqual(c.get(sha1(d)).status, 404)
        listed = c.request("GET", "/objects?state=live").body.decode().split("\n")
        t.assertEqual(sorted(l.split()[0] for l in listed if l), sorted(sha1(d) for d in self.kept))
        if tombstones:
            # The client deletes' tombstones: a copy from another replica is
            # still refused (rebuilt from the removal frames).
            for d in self.deleted if tombstoned is None else tombstoned:
                r = c.request("PUT", f"/objects/{sha1(d)}?replica=1", body=d)
                t.assertEqual(r.status, 410, r.body)
        c.close()


class LostIndex(TempDirTest):
    def test_repair_keeps_removals(self):
        """Delete, drop and gc/end, then lose the index four ways; fsck
        --repair rebuilds it from the data files: removed objects stay
        removed (fails on the old code: every one came back), kept ones
        read back byte for byte, the tombstones are back."""
        for how in ("removed", "emptied", "cut to its header", "header torn"):
            with self.subTest(index=how):
                st = Store(self, how.replace(" ", "-"))
                st.s.stop()
                damage_index(os.path.join(st.s.dir, "index"), how)
                rc, out = fsck(st.s.dir, "--repair")
                self.assertEqual(rc, 0, out)
                self.assertIn("index rebuilt: 13 objects", out)
                st.s.start()
                st.check(self)
                # A second check finds nothing to repair, and the store goes
                # on: compaction drops the removed frames, a restart keeps all.
                c = st.s.client()
                self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
                c.close()
                st.s.stop()
                rc, out = fsck(st.s.dir)
                self.assertEqual(rc, 0, out)
                self.assertIn("0 problems", out)
                st.s.start()
                st.check(self)
                st.s.stop()

    def test_repair_after_compaction_keeps_removals(self):
        """Removals made after a compaction (in the new generation of a data
        file) are honoured too; the tombstone of a delete made before the
        compaction is not rebuilt (its removal frame went with the removed
        frame), that of one made after it is."""
        st = Store(self, "s")
        c = st.s.client()
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        late = st.kept.pop(0)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(late)}").status, 204)
        st.deleted.append(late)
        c.close()
        st.s.stop()
        damage_index(os.path.join(st.s.dir, "index"), "removed")
        rc, out = fsck(st.s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        st.s.start()
        st.check(self, tombstoned=[late])


class HeaderOnlyIndex(TempDirTest):
    def test_cut_to_header_then_compaction_loses_nothing(self):
        """An index cut back to its header: start-up indexes again every
        whole intact frame that no removal names (fails on the old code:
        every object 404, and the next compaction dropped them all); removed
        objects stay removed; compaction and a restart keep everything."""
        st = Store(self, "s")
        st.s.stop()
        damage_index(os.path.join(st.s.dir, "index"), "cut to its header")
        st.s.start()
        self.assertIn("indexed again", st.s.log_text())
        st.check(self, tombstones=False)  # the index kept no tombstone
        c = st.s.client()
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        c.close()
        st.check(self, tombstones=False)
        st.s.stop()
        rc, out = fsck(st.s.dir)
        self.assertEqual(rc, 0, out)
        self.assertIn("0 problems", out)
        st.s.start()
        st.check(self, tombstones=False)

    def test_old_format_store_keeps_old_behaviour(self):
        """A store whose index is of format 1 (written before removal
        frames) does not index unnamed frames at start-up (its removed
        objects have none), and becomes format 2 at its first compaction."""
        s = self.storaged()
        c = s.client()
        a, b = os.urandom(3000), os.urandom(3001)
        self.assertEqual(c.put(a).status, 201)
        self.assertEqual(c.put(b).status, 201)
        c.close()
        s.stop()
        index = os.path.join(s.dir, "index")
        with open(index, "rb") as f:
            recs = f.read()
        # Rewrite the header as format 1 and drop b's PUT record: b's frame
        # is then what a format-1 store leaves of a removed object.
        import zlib
        hdr = bytearray(recs[:64])
        hdr[24:32] = (1).to_bytes(8, "little")
        hdr[0:4] = zlib.crc32(bytes(hdr[4:])).to_bytes(4, "little")
        with open(index, "wb") as f:
            f.write(bytes(hdr) + recs[64:128])
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(a)).body, a)
        self.assertEqual(c.get(sha1(b)).status, 404)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        c.close()
        s.stop()
        with open(index, "rb") as f:
            self.assertEqual(int.from_bytes(f.read(64)[24:32], "little"), 2)
        s.start()
        self.assertEqual(s.client().get(sha1(a)).body, a)


class CrashStates(TempDirTest):
    def failed_removal(self, what, only):
        """In a storaged of its own: two objects stored (d, other), then a
        removal of d, what: "delete" (DELETE) or "gc/end" (a cycle that
        keeps other), with every fdatasync of files whose path holds `only`
        failing (tests/integration/faultinject.c). (s, c, d, other, r,
        trigger): r the removal's answer; the fault stays armed until the
        caller removes trigger."""
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        trigger = os.path.join(self.tmp, "fail-now")
        env = {"LD_PRELOAD": FAULTLIB, "CAS_FAULT_FILE": trigger, "CAS_FAULT_ONLY": only,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        s = self.storaged(name=what.replace("/", "-"), env=env)
        c = s.client()
        d, other = os.urandom(4000), os.urandom(4001)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.put(other).status, 201)
        if what == "gc/end":
            gid = c.request("POST", "/gc/begin").json()["id"]
            c.request("POST", "/gc/mark", body=sha1(other) + "\n")
        open(trigger, "w").close()
        if what == "delete":
            r = c.request("DELETE", f"/objects/{sha1(d)}")
        else:
            r = c.request("POST", f"/gc/end?id={gid}")
        return s, c, d, other, r, trigger

    def test_index_record_not_durable_writes_no_removal(self):
        """Rule D8: the index record of a removal is made durable before
        the data files say anything: when the index's fdatasync fails, the
        DELETE / gc/end is not answered with success and no data file holds
        a removal frame or an in-place mark."""
        for what in ("delete", "gc/end"):
            with self.subTest(what=what):
                s, c, d, other, r, trigger = self.failed_removal(what, "/index")
                self.assertNotIn(r.status, (200, 204), r.body)
                os.unlink(trigger)
                c.close()
                s.kill9()
                self.assertEqual(removal_marks(s.dir), (0, 0))
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(other)).body, other)
                c.close()
                s.stop()

    def test_removal_frame_not_durable_is_not_answered(self):
        """The index record is durable, the removal frame's fdatasync fails:
        the removal happened (the object reads 404) but is not answered as
        a success, since an index rebuilt from the data files could bring
        it back; the log says so."""
        for what in ("delete", "gc/end"):
            with self.subTest(what=what):
                s, c, d, other, r, trigger = self.failed_removal(what, "/data-")
                self.assertEqual(r.status, 500, r.body)
                self.assertIn("removed from the index", r.body.decode())
                self.assertIn("may bring", s.log_text())
                os.unlink(trigger)
                self.assertEqual(c.get(sha1(d)).status, 404)
                self.assertEqual(c.get(sha1(other)).body, other)
                c.close()
                s.stop()

    def test_removal_frame_without_its_index_record(self):
        """The index lost the DEL and TOMB records of an answered delete
        whose removal frame is there (damage or a restored backup: rule D8
        makes the records durable before the frame, so no crash leaves
        this): the removal frame is proof that the index lost records, so
        start-up applies it again (the object stays deleted, its tombstone
        is back; before tombfix the index kept the object: attack a6 d1,
        test_tomb_rebuild.py); other objects are untouched; a repair from
        the data files drops it again too and keeps the rest."""
        s = self.storaged()
        c = s.client()
        d, other = os.urandom(5000), os.urandom(5001)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.put(other).status, 201)
        c.close()
        index = os.path.join(s.dir, "index")
        before = os.path.getsize(index)
        self.assertEqual(s.client().request("DELETE", f"/objects/{sha1(d)}").status, 204)
        s.kill9()
        os.truncate(index, before)  # the DEL and TOMB records never reached the disk
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(d)).status, 404)
        self.assertEqual(c.request("PUT", f"/objects/{sha1(d)}?replica=1", body=d).status, 410)
        self.assertEqual(c.get(sha1(other)).body, other)
        c.close()
        s.stop()
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        self.assertIn("0 problems", out)
        damage_index(index, "removed")
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(d)).status, 404)
        self.assertEqual(c.get(sha1(other)).body, other)


class TornRangeBeforeRemoval(TempDirTest):
    def test_removal_frame_after_a_torn_range_is_kept(self):
        """Writers and removals share the end of a data file: a crash can
        leave a torn range (no frame) with a synced removal frame after it.
        Start-up cuts only bytes that hold no whole frame anywhere, so the
        removal frame stays and a repair keeps the object removed (the old
        rule cut everything from the first byte that was no frame)."""
        s = self.storaged()
        c = s.client()
        d = os.urandom(6000)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        c.close()
        s.stop()
        files = [f for f in os.listdir(s.dir) if f.startswith("data-") and os.path.getsize(os.path.join(s.dir, f))]
        self.assertEqual(len(files), 1)
        path = os.path.join(s.dir, files[0])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:  # the deleted frame's header: now a torn range
            hdr = f.read(64)
            f.seek(0)
            f.write(os.urandom(64))
        s.start()
        s.stop()
        self.assertEqual(os.path.getsize(path), size)
        # The header back (the frame whole again): only the removal frame,
        # still there, keeps the object removed when the index is lost.
        with open(path, "r+b") as f:
            f.write(hdr)
        damage_index(os.path.join(s.dir, "index"), "removed")
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        self.assertEqual(s.client().get(sha1(d)).status, 404)


def fault_env(**kw):
    env = {"LD_PRELOAD": FAULTLIB,
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    env.update(kw)
    return env


def damage_record_of(index, key_hex):
    """Flips a byte of the PUT record of key_hex (damage in the middle)."""
    with open(index, "r+b") as f:
        b = bytearray(f.read())
        key = bytes.fromhex(key_hex)
        for i in range(64, len(b) - 63, 64):
            if b[i + 4] == 2 and b[i + 32:i + 52] == key:
                b[i + 20] ^= 0xFF
                f.seek(0)
                f.write(b)
                return
    raise AssertionError(f"no PUT record of {key_hex}")


class RecordBeforeFrame(TempDirTest):
    """Rule D8 in the order that keeps live objects (attack a5 r1, r2, r6,
    r15): the index record of a removal is durable before the data files
    name it removed. A crash in between leaves a removal the index holds and
    the data files do not (never answered), never a removal frame naming an
    object the store still serves; a removal the index refused (507) has
    changed nothing, in place or appended."""

    def test_crash_before_the_removal_frame_is_durable_loses_no_live_object(self):
        """kill -9 while the DELETE / gc/end waits for its removal frame's
        fdatasync (a sync gate of the fault library): after the restart the
        removal is in force (its record was durable); the object, stored
        again, is live and acknowledged, and stays so when the index is then
        cut to its header or repaired after damage (the old order left a
        removal frame naming the live copy: lost)."""
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        import threading
        for what in ("delete", "gc/end"):
            for damage in ("cut to its header", "repair"):
                with self.subTest(what=what, damage=damage):
                    gate = os.path.join(self.tmp, "gate")
                    env = fault_env(CAS_PAUSE_FILE=gate, CAS_PAUSE_ONLY="/data-")
                    s = self.storaged(name=f"{what.replace('/', '-')}-{damage[:3]}", env=env)
                    c = s.client()
                    d, other = os.urandom(5000), os.urandom(7000)
                    self.assertEqual(c.put(d).status, 201)
                    self.assertEqual(c.put(other).status, 201)
                    if what == "gc/end":
                        gid = c.request("POST", "/gc/begin").json()["id"]
                        c.request("POST", "/gc/mark", body=sha1(other) + "\n")
                        path = f"/gc/end?id={gid}"
                    else:
                        path = f"/objects/{sha1(d)}"
                    method = "POST" if what == "gc/end" else "DELETE"
                    with open(gate, "w") as f:
                        f.write("0")  # hold the next data-file sync: the removal frame's
                    c2 = s.client(timeout=30)

                    def send():
                        try:
                            c2.request(method, path)
                        except Exception:
                            pass  # killed under it
                    t = threading.Thread(target=send)
                    t.start()
                    from harness import wait_for
                    wait_for(lambda: os.path.exists(gate + ".at"), 20, "the removal at its data sync")
                    s.kill9()
                    t.join(30)
                    os.unlink(gate)
                    os.unlink(gate + ".at")
                    s.start()
                    c = s.client()
                    # Acknowledged live either way: still served (the old
                    # order, GET 200) or stored again after the removal
                    # whose record was durable (201).
                    if c.get(sha1(d)).status != 200:
                        self.assertEqual(c.put(d).status, 201)
                    self.assertEqual(c.get(sha1(other)).body, other)
                    c.close()
                    s.stop()
                    index = os.path.join(s.dir, "index")
                    if damage == "repair":
                        damage_record_of(index, sha1(other))
                        rc, out = fsck(s.dir, "--repair")
                        self.assertEqual(rc, 0, out)
                    else:
                        damage_index(index, damage)
                    s.start()
                    c = s.client()
                    self.assertEqual(c.get(sha1(d)).body, d)
                    self.assertEqual(c.get(sha1(other)).body, other)
                    c.close()
                    s.stop()

    def test_removal_refused_by_a_full_index_changes_nothing(self):
        """A full file system (the fault library's: writes past a file's
        end fail with ENOSPC, in-place rewrites go through): a DELETE and a
        gc/end whose index append fails answer 507, and no data file names
        their objects removed (the old order marked them "CASD" first: read
        404 as corrupt, and a cycle left stuck); once there is room, a
        cancel keeps every object, also through an index cut to its
        header."""
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        full = os.path.join(self.tmp, "full")
        s = self.storaged(env=fault_env(CAS_FULL_FILE=full, CAS_FULL_ONLY=""))
        c = s.client()
        objs = [os.urandom(3000 + i) for i in range(10)]
        for o in objs:
            self.assertEqual(c.put(o).status, 201)
        open(full, "w").close()
        r = c.request("DELETE", f"/objects/{sha1(objs[0])}")
        self.assertEqual(r.status, 507, r.body)
        self.assertEqual(removal_marks(s.dir), (0, 0))
        os.unlink(full)
        self.assertEqual(c.get(sha1(objs[0])).body, objs[0])
        gid = c.request("POST", "/gc/begin").json()["id"]
        r = c.request("POST", "/gc/mark", body="".join(sha1(o) + "\n" for o in objs[:5]))
        self.assertEqual(r.status, 200, r.body)
        open(full, "w").close()
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 507, r.body)
        self.assertEqual(removal_marks(s.dir), (0, 0))
        os.unlink(full)
        r = c.request("POST", f"/gc/cancel?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        for o in objs:
            self.assertEqual(c.get(sha1(o)).body, o)
        c.close()
        s.stop()
        damage_index(os.path.join(s.dir, "index"), "cut to its header")
        s.start()
        c = s.client()
        for o in objs:
            self.assertEqual(c.get(sha1(o)).body, o)


def index_records(path):
    with open(path, "rb") as f:
        b = f.read()
    return [b[i:i + 64] for i in range(0, len(b) - len(b) % 64, 64)]


def put_record(recs, key_hex):
    key = bytes.fromhex(key_hex)
    for i, r in enumerate(recs):
        if r[4] == 2 and r[32:52] == key:
            return i, r[6], int.from_bytes(r[8:16], "little")
    raise AssertionError(f"no PUT record of {key_hex}")


class LostRecordBeforeIndexedFrames(TempDirTest):
    def test_lost_record_of_a_frame_before_indexed_ones_is_found_again(self):
        """Writers commit out of file order, so the index can lose the
        record of a frame that lies before indexed frames of its file
        (attack a5 r13: an index cut back by one record). Start-up indexes
        it again (it looked only past the last indexed frame: the object
        read 404, and the next compaction dropped it for good); a deleted
        and a collected object in the same gaps stay removed; compaction
        then keeps everything."""
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(2000 + i) for i in range(200)]
        for o in objs:
            self.assertEqual(c.put(o).status, 201)
        index = os.path.join(s.dir, "index")
        recs = index_records(index)
        # An object with indexed frames after it in its file.
        lost = None
        for o in objs[:50]:
            i, f, off = put_record(recs, sha1(o))
            if any(r[4] == 2 and r[6] == f and int.from_bytes(r[8:16], "little") > off for r in recs):
                lost = o
                break
        self.assertIsNotNone(lost)
        _, lf, _ = put_record(recs, sha1(lost))
        # A deleted and a collected object of the same file: gaps too.
        same = sorted((o for o in objs if o is not lost and put_record(recs, sha1(o))[1] == lf),
                      key=lambda o: put_record(recs, sha1(o))[2])
        self.assertGreaterEqual(len(same), 3)
        deleted, collected = same[0], same[1]  # the last one stays, after the lost frame
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(deleted)}").status, 204)
        gid = c.request("POST", "/gc/begin").json()["id"]
        c.request("POST", "/gc/mark",
                  body="".join(sha1(o) + "\n" for o in objs if o is not collected))
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.json()["removed"], 1, r.body)
        c.close()
        s.stop()
        recs = index_records(index)
        i, _, _ = put_record(recs, sha1(lost))
        with open(index, "wb") as f:  # the index without that one record
            f.write(b"".join(recs[:i] + recs[i + 1:]))
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(lost)).body, lost)
        self.assertIn("indexed again", s.log_text())
        self.assertEqual(c.get(sha1(deleted)).status, 404)
        self.assertEqual(c.get(sha1(collected)).status, 404)
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        c.close()
        s.stop()
        s.start()
        c = s.client()
        for o in objs:
            if o is deleted or o is collected:
                self.assertEqual(c.get(sha1(o)).status, 404)
            else:
                self.assertEqual(c.get(sha1(o)).body, o)


class DamagedRemovalFrame(TempDirTest):
    def test_damaged_removal_frame_then_cut_index_adopts_nothing_there(self):
        """A removal frame whose entries fail their CRC, then the index cut
        to its header (attack a5 r3): start-up indexes nothing of that data
        file (the deleted object came back), says to run fsck --repair, and
        compaction leaves the file as it is; the other files' objects are
        indexed again; fsck --repair then finds the live objects of that
        file."""
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(2000 + i) for i in range(60)]
        for o in objs:
            self.assertEqual(c.put(o).status, 201)
        index = os.path.join(s.dir, "index")
        recs = index_records(index)
        gone = objs[0]
        _, gf, _ = put_record(recs, sha1(gone))
        neighbours = [o for o in objs[1:] if put_record(recs, sha1(o))[1] == gf]
        others = [o for o in objs[1:] if put_record(recs, sha1(o))[1] != gf]
        self.assertTrue(neighbours)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(gone)}").status, 204)
        c.close()
        s.stop()
        path = os.path.join(s.dir, f"data-{gf:02d}.g0")
        with open(path, "r+b") as f:
            b = bytearray(f.read())
            at = b.find(b"CASR")
            self.assertGreaterEqual(at, 0)
            f.seek(at + 64 + 25)  # inside the entry: its CRC fails
            f.write(bytes([b[at + 64 + 25] ^ 1]))
        damage_index(index, "cut to its header")
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(gone)).status, 404)
        self.assertIn("--repair", s.log_text())
        for o in others:
            self.assertEqual(c.get(sha1(o)).body, o)
        size = os.path.getsize(path)
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(os.path.exists(path))
        self.assertEqual(os.path.getsize(path), size)
        c.close()
        s.stop()
        rc, out = fsck(s.dir, "--repair")
        self.assertIn("damaged", out)
        s.start()
        c = s.client()
        for o in neighbours + others:
            self.assertEqual(c.get(sha1(o)).body, o)


class RuleD8(unittest.TestCase):
    """tests/crash/explore.py checks rule D8 on recorded system calls: a
    data file names a removal (a removal frame entry, or a "CASD" mark)
    only after the DEL / GC_END record of that removal was fdatasynced, and
    a DELETE is answered only after that removal frame was fdatasynced.
    Checked on hand-made logs so that the check itself is known to bite."""

    KEY = bytes(range(20))

    def log(self, index_synced, mark=b"CASR", data_synced=True, ack=False):
        import struct
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crash"))
        import explore
        key = self.KEY.hex()
        ops = [{"kind": "create", "off": 0, "name": "index", "m": 1},
               {"kind": "create", "off": 1, "name": "data-00.g0", "m": 2},
               {"kind": "mark", "off": 2, "text": f"send 7 DELETE {key}"}]
        # The object's PUT record (its frame at offset 0 of data file 0), then its DEL.
        put = struct.pack("<IBBBBQQQ32s", 0, 2, 0, 0, 1, 0, 100, 0, self.KEY + bytes(12))
        rec = struct.pack("<IBBBBQQQ32s", 0, 3, 0, 0, 1, 0, 0, 0, self.KEY + bytes(12))
        ops.append({"kind": "write", "off": 3, "m": 1, "at": 64, "data": put + rec})
        if index_synced:
            ops.append({"kind": "sync", "off": 4, "m": 1, "covers": 4})
        if mark == b"CASR":
            hdr = b"CASR" + bytes(60)
            ops.append({"kind": "write", "off": 5, "m": 2, "at": 4096, "data": hdr})
            ops.append({"kind": "write", "off": 6, "m": 2, "at": 4160,
                        "data": self.KEY + bytes(12) + (0).to_bytes(8, "little")})
        else:
            ops.append({"kind": "write", "off": 6, "m": 2, "at": 0,
                        "data": b"CASD" + bytes(28) + self.KEY + bytes(12)})
        if data_synced:
            ops.append({"kind": "sync", "off": 7, "m": 2, "covers": 7})
        if ack:
            ops.append({"kind": "mark", "off": 8, "text": "ack 7 204"})
        return [m for _, m in explore.check_rules(ops)]

    def test_removal_before_synced_record_is_flagged(self):
        for mark in (b"CASR", b"CASD"):
            self.assertTrue(any(m.startswith("D8") for m in self.log(False, mark)), mark)
            self.assertFalse(any(m.startswith("D8") for m in self.log(True, mark)), mark)

    def test_marks_that_are_no_removal_are_not_flagged(self):
        """A write giving up its own frame (no record ever named it) and a
        corrupt copy taken out (DEL with aux 1) mark a frame "CASD" with no
        synced DEL before it: not removals of rule D8."""
        import struct
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crash"))
        import explore
        mark = {"kind": "write", "off": 4, "m": 2, "at": 0,
                "data": b"CASD" + bytes(28) + self.KEY + bytes(12)}
        base = [{"kind": "create", "off": 0, "name": "index", "m": 1},
                {"kind": "create", "off": 1, "name": "data-00.g0", "m": 2}]
        put = struct.pack("<IBBBBQQQ32s", 0, 2, 0, 0, 1, 0, 100, 0, self.KEY + bytes(12))
        corrupt = struct.pack("<IBBBBQQQ32s", 0, 3, 0, 0, 1, 0, 0, 1, self.KEY + bytes(12))
        undo = base + [mark]
        takeout = base + [{"kind": "write", "off": 3, "m": 1, "at": 64, "data": put}, mark,
                          {"kind": "write", "off": 5, "m": 1, "at": 128, "data": corrupt}]
        for ops in (undo, takeout):
            self.assertFalse(any(m.startswith("D8") for _, m in explore.check_rules(ops)))

    def test_delete_answered_before_synced_removal_is_flagged(self):
        for mark in (b"CASR", b"CASD"):
            self.assertTrue(any(m.startswith("D8") for m in self.log(True, mark, False, True)), mark)
            self.assertFalse(any(m.startswith("D8") for m in self.log(True, mark, True, True)), mark)


class FullDisk(TempDirTest):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.tmp, "small")
        os.mkdir(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.mnt]))

    def test_removals_on_a_full_disk_survive_a_lost_index(self):
        """With no room for a removal frame, DELETE and gc/end mark the
        removed frames in place and still answer; a repair from the data
        files keeps them removed."""
        s = self.storaged(name="small/store")
        c = s.client()
        # Frames of exactly one page (64 + 4028 + 4): every data file ends
        # on a page boundary, so a removal frame would need a new page.
        kept = [os.urandom(4028) for i in range(60)]
        gone = [os.urandom(4028) for i in range(40)]
        for d in kept + gone:
            self.assertEqual(c.put(d).status, 201)
        try:
            with open(os.path.join(self.mnt, "filler"), "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
        self.assertEqual(c.put(os.urandom(100_000)).status, 507)
        for d in gone[:5]:  # one of them may land in a file with room left by another
            self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        gid = c.request("POST", "/gc/begin").json()["id"]
        c.request("POST", "/gc/mark", body="".join(sha1(d) + "\n" for d in kept))
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["removed"], 35)
        self.assertIn("marked removed in place", s.log_text())
        c.close()
        s.stop()
        os.unlink(os.path.join(self.mnt, "filler"))
        damage_index(os.path.join(s.dir, "index"), "removed")
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        c = s.client()
        for d in kept:
            self.assertEqual(c.get(sha1(d)).body, d)
        for d in gone:
            self.assertEqual(c.get(sha1(d)).status, 404)


if __name__ == "__main__":
    unittest.main()
