"""test_full_disk_removals.py - a storaged filled to 507 by its own writes on
a small tmpfs can remove every object it holds, whatever their sizes: every
DELETE answers 204 and a GC cycle removes everything, after a restart too;
then compaction gives the space back and new writes are stored. A write is
admitted only if the room for removing every stored object is still there
after it (docs/OPERATIONS.md, "A full file system"), and GET /capacity's
`available` is what a write may take.

Found by an attacking session (a5 r5): the room the index kept for removals
was capped at 1/16 of the file system, so a store of objects under about
3 KiB, filled to 507, wedged after a share of its DELETEs: every further
DELETE, gc/begin and gc/end answered 507, also after a restart.
"""
import http.client
import os
import subprocess

from harness import CLI, TempDirTest, sha1

FS_SIZE = "2m"  # small: a fill takes a few thousand writes

# Bytes a new object takes beyond its frame (storaged/disk_room.c:
# disk_room_per_object): four index records and a removal frame kept for
# removing it, and its own PUT record.
PER_OBJECT = 4 * 64 + (64 + 40) + 64


def frame_len(size):
    return 64 + size + 4 * ((size + (1 << 20) - 1) >> 20)


def tiny(i):
    """The smallest objects there are: every 1-byte one, then 2-byte ones."""
    return i.to_bytes(max(1, (i.bit_length() + 7) // 8), "big")


def sixty(i):
    return (b"%08d" % i + os.urandom(52))


MIXED = (1, 60, 700, 3000, 20000, 150000)


def mixed(i):
    return (b"%08d" % i + os.urandom(MIXED[i % len(MIXED)]))[:max(1, MIXED[i % len(MIXED)])]


KINDS = (("1 to 2 bytes", tiny), ("60 bytes", sixty), ("mixed 1 B to 150 KB", mixed))


class FullDiskRemovals(TempDirTest):
    def mount(self, name):
        """A FS_SIZE tmpfs at self.tmp/name (as test_recovery.FullDisk
        mounts its small file system); the test is skipped where none can
        be mounted."""
        mnt = os.path.join(self.tmp, name)
        os.mkdir(mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", mnt]))
        return mnt

    def fill(self, c, make):
        """Writes objects made by make(i) until 20 objects of at most 100
        bytes were refused with 507 (larger ones are refused first); returns
        the keys stored. The log of the storaged is outside the tmpfs."""
        keys, refused, i = [], 0, 0
        while refused < 20:
            d = make(i)
            i += 1
            r = c.put(d)
            if r.status == 201:
                keys.append(sha1(d))
            elif r.status == 507:
                refused += len(d) <= 100
                self.assertIn("disk full", r.json()["error"])
            else:
                self.assertEqual(r.status, 200, r.body)  # a tiny object written twice
        self.assertGreater(len(keys), 50)
        cap = c.request("GET", "/capacity").json()
        self.assertEqual(cap["objects"], len(keys))
        # Full: what is left is less than the smallest object takes.
        self.assertLess(cap["available"], frame_len(1) + PER_OBJECT)
        return keys

    def restart(self, s, c):
        c.close()
        s.stop()
        s.start()
        return s.client()

    def assert_space_back(self, s, c, stored):
        """Compaction gives the space back: nothing unreclaimed, most of the
        file system available again, and as many 60-byte objects as the
        first fill stored fit again but for the tombstones (64 bytes each)."""
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        cap = c.request("GET", "/capacity").json()
        self.assertEqual((cap["objects"], cap["unreclaimed"]), (0, 0), cap)
        self.assertGreater(cap["available"], cap["total"] // 2, cap)
        new = []
        for i in range(stored // 2):
            d = b"again %d " % i + os.urandom(50)
            self.assertEqual(c.put(d).status, 201)
            new.append(d)
        big = os.urandom(200_000)
        self.assertEqual(c.put(big).status, 201)
        for d in new[::50] + [big]:
            self.assertEqual(c.get(sha1(d)).body, d)
        self.assertFalse(c.request("GET", "/status").json()["read_only"])

    def assert_removal_frames(self, s):
        """Every removal went into the data files as a removal frame: their
        room was kept too (no frame had to be marked removed in place)."""
        self.assertEqual(s.log_text().count("marked removed in place"), 0)

    def test_delete_every_object(self):
        """Filled to 507 with objects of 1 to 2 bytes, of 60 bytes, or of
        mixed sizes: after a restart every object is DELETEd (204 each),
        a chunked upload on the full disk takes none of the room for that;
        after another restart compaction gives the space back."""
        for kind, make in KINDS:
            with self.subTest(objects=kind):
                mnt = self.mount("fs-delete-" + kind.split()[0])
                s = self.storaged(name=os.path.relpath(os.path.join(mnt, "store"), self.tmp))
                c = s.client()
                keys = self.fill(c, make)
                c = self.restart(s, c)  # full, before any removal
                # A write of unknown size (chunked: spooled) is refused
                # too; its spool never ate the room kept for removals.
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
                conn.request("POST", "/objects", body=iter([os.urandom(65536)] * 16),
                             encode_chunked=True)
                r = conn.getresponse()
                self.assertEqual(r.status, 507, r.read())
                conn.close()
                for k in keys:
                    r = c.request("DELETE", f"/objects/{k}")
                    self.assertEqual(r.status, 204, (k, r.body))
                for k in keys[::97]:
                    self.assertEqual(c.get(k).status, 404)
                self.assert_removal_frames(s)
                c = self.restart(s, c)
                self.assertEqual(c.request("GET", "/capacity").json()["objects"], 0)
                self.assertEqual(c.get(keys[0]).status, 404)
                self.assert_space_back(s, c, len(keys))
                c.close()
                s.stop()

    def test_gc_cycle_removes_everything(self):
        """Filled to 507 the same ways: a GC cycle begins; a share of the
        objects is read (a use each: UNMARK) and then DELETEd (the most a
        removal writes: UNMARK, DEL, TOMB); a restart keeps the cycle; its
        end removes every object left; after a restart compaction gives
        the space back."""
        for kind, make in KINDS:
            with self.subTest(objects=kind):
                mnt = self.mount("fs-gc-" + kind.split()[0])
                s = self.storaged(name=os.path.relpath(os.path.join(mnt, "store"), self.tmp))
                c = s.client()
                keys = self.fill(c, make)
                r = c.request("POST", "/gc/begin")
                self.assertEqual(r.status, 200, r.body)
                gid = r.json()["id"]
                used = keys[::3]
                for k in used:
                    self.assertEqual(c.get(k).status, 200)
                for k in used:
                    r = c.request("DELETE", f"/objects/{k}")
                    self.assertEqual(r.status, 204, (k, r.body))
                c = self.restart(s, c)
                r = c.request("POST", f"/gc/end?id={gid}")
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json()["removed"], len(keys) - len(used))
                for k in keys[1::97]:
                    self.assertEqual(c.get(k).status, 404)
                self.assert_removal_frames(s)
                c = self.restart(s, c)
                self.assertEqual(c.request("GET", "/capacity").json()["objects"], 0)
                self.assert_space_back(s, c, len(keys))
                c.close()
                s.stop()

    def test_repeated_gc_cycles_leave_room_to_delete_everything(self):
        """GC cycles on a full disk, each marking every object (a use each)
        and cancelled, until gc/begin is refused with 507; then every
        object is still DELETEd (204 each). Found by an attacking session
        (a6 d11): each cycle ate a record per object of the room kept for
        DELETEs, and after a dozen cycles most DELETEs answered 507."""
        mnt = self.mount("fs-cycles")
        s = self.storaged(name=os.path.relpath(os.path.join(mnt, "store"), self.tmp))
        c = s.client()
        keys = self.fill(c, sixty)
        body = "".join(k + "\n" for k in keys)
        for cycle in range(60):
            r = c.request("POST", "/gc/begin")
            if r.status == 507:
                self.assertIn("DELETE objects", r.json()["error"])
                break
            self.assertEqual(r.status, 200, r.body)
            gc_id = r.json()["id"]
            self.assertEqual(c.request("POST", "/gc/mark", body=body).status, 200)
            self.assertEqual(c.request("POST", f"/gc/cancel?id={gc_id}").status, 200)
        else:
            self.fail("60 GC cycles on a full disk, none refused")
        self.assertGreater(cycle, 0)
        for k in keys:
            r = c.request("DELETE", f"/objects/{k}")
            self.assertEqual(r.status, 204, r.body)
        self.assertEqual(c.request("GET", "/capacity").json()["objects"], 0)

    def test_available_is_what_a_write_may_take(self):
        """GET /capacity's available is the free space less the room kept
        for removing the stored objects: an object whose frame and share
        of that room fit in it is stored, one byte more is refused; the
        figure is well below what the file system itself has free."""
        mnt = self.mount("fs-available")
        s = self.storaged(name=os.path.relpath(os.path.join(mnt, "store"), self.tmp))
        c = s.client()
        for i in range(200):
            self.assertEqual(c.put(sixty(i)).status, 201)
        cap = c.request("GET", "/capacity").json()
        vfs = os.statvfs(mnt)
        self.assertLess(cap["available"], vfs.f_bavail * vfs.f_frsize - 200 * (64 + 104))
        size = cap["available"] - PER_OBJECT - frame_len(0)
        while frame_len(size) + PER_OBJECT > cap["available"]:  # its block checksums
            size -= 1
        self.assertGreater(size, 100_000)
        r = c.put(os.urandom(size + 1))
        self.assertEqual(r.status, 507, r.body)
        d = os.urandom(size)
        r = c.put(d)
        self.assertEqual(r.status, 201, r.body)
        # Full again, but for the rest of the block its data file ended in.
        after = c.request("GET", "/capacity").json()["available"]
        self.assertLess(after, vfs.f_frsize)
        self.assertEqual(c.put(os.urandom(vfs.f_frsize)).status, 507)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(d)}").status, 204)
        c.close()
        s.stop()

    def test_compaction_on_a_full_disk_says_what_it_needs(self):
        """Filled to 507 with 60-byte objects, one DELETEd: compacting the
        data file that held it would need room for its live objects that
        the disk does not have beside the room kept for removals. The file
        is left as it was, and GET /compact (left_out), the CLI and the log
        say how many bytes it needs; nothing is lost. Once every object is DELETEd, compaction gives it all back."""
        mnt = self.mount("fs-compact")
        s = self.storaged(name=os.path.relpath(os.path.join(mnt, "store"), self.tmp))
        c = s.client()
        keys = self.fill(c, sixty)
        self.assertEqual(c.request("DELETE", f"/objects/{keys[0]}").status, 204)
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        left_out = r.json()["left_out"]
        self.assertIn("left as it was: no room: copying its", left_out)
        self.assertIn("beside the room kept for removing the stored objects", left_out)
        self.assertIn(left_out, s.log_text())
        self.assertEqual(c.request("GET", "/compact").json()["left_out"], left_out)
        # The CLI says it too (and the compaction itself did not fail).
        p = subprocess.run([CLI, "--server", s.url, "compact"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("no room: copying its", p.stderr)
        cap = c.request("GET", "/capacity").json()
        self.assertEqual(cap["objects"], len(keys) - 1)
        self.assertGreater(cap["unreclaimed"], 0)
        for k in keys[1::50]:
            self.assertEqual(c.get(k).status, 200)
        for k in keys[1:]:
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        self.assert_space_back(s, c, len(keys))
        self.assertNotIn("left_out", c.request("GET", "/compact").json())
        c.close()
        s.stop()
