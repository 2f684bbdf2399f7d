"""test_recovery.py - damage on disk and full disks: a torn index tail, a
flipped byte in an object (never served intact), a GC cycle across a
restart, and a full file system (507, reads go on, writes come back)."""
import http.client
import os
import shutil
import subprocess
import time
import unittest

from harness import CLI, TempDirTest, sha1

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))


def frames(store_dir):
    """(data file, offset of payload, size, key) for every frame, from the
    data files alone (layout in docs/FORMAT.md)."""
    out = []
    for name in sorted(os.listdir(store_dir)):
        if not name.startswith("data-"):
            continue
        with open(os.path.join(store_dir, name), "rb") as f:
            buf = f.read()
        off = 0
        while off + 64 <= len(buf):
            size = int.from_bytes(buf[off + 16:off + 24], "little")
            key = buf[off + 32:off + 52].hex()
            out.append((name, off + 64, size, key))
            off += 64 + size + 4 * ((size + (1 << 20) - 1) >> 20)  # header, bytes, block CRCs
    return out


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


class TornIndex(TempDirTest):
    def test_truncated_index_tail(self):
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(1000 + i) for i in range(20)]
        for d in objs:
            self.assertEqual(c.put(d).status, 201)
        c.close()
        s.stop()
        index = os.path.join(s.dir, "index")
        size = os.path.getsize(index)
        os.truncate(index, size - 30)  # the last record torn in half
        s.start()
        c = s.client()
        for d in objs[:-1]:
            self.assertEqual(c.get(sha1(d)).body, d)
        # Its record is gone, but its frame is whole and intact and no
        # removal frame names it (index format 2, docs/FORMAT.md "Removal
        # frames"): indexed again at start-up.
        self.assertEqual(c.get(sha1(objs[-1])).body, objs[-1])
        self.assertIn("indexed again", s.log_text())
        self.assertEqual(os.path.getsize(index) % 64, 0)
        self.assertEqual(c.put(objs[-1]).status, 200)
        c.close()
        # Garbage appended at the tail is cut as well.
        s.stop()
        with open(index, "ab") as f:
            f.write(os.urandom(200))
        s.start()
        c = s.client()
        for d in objs:
            self.assertEqual(c.get(sha1(d)).body, d)
        self.assertIn("torn tail", s.log_text())
        c.close()

    def test_index_record_pointing_past_data_is_refused(self):
        """A data file shorter than the index says is refused (nothing
        changed); ca-cas fsck --repair takes the lost object out, and then
        the store serves and takes writes."""
        s = self.storaged()
        c = s.client()
        d1, d2 = os.urandom(5000), os.urandom(7000)
        c.put(d1)
        c.close()
        s.stop()
        name, payload, size, key = frames(s.dir)[0]
        os.truncate(os.path.join(s.dir, name), payload + size - 10)  # data lost, record kept
        with self.assertRaises(RuntimeError) as cm:
            s.start()
        self.assertIn("shorter than the index says", str(cm.exception))
        self.assertEqual(os.path.getsize(os.path.join(s.dir, name)), payload + size - 10)
        p = subprocess.run([CLI, "fsck", s.dir, "--repair"], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(d1)).status, 404)
        self.assertEqual(c.put(d2).status, 201)
        self.assertEqual(c.get(sha1(d2)).body, d2)
        c.close()


class FlippedByte(TempDirTest):
    def test_small_object_never_served_corrupt(self):
        s = self.storaged()
        c = s.client()
        good, bad = os.urandom(100_000), os.urandom(100_000)
        c.put(good)
        c.put(bad)
        c.close()
        s.stop()
        for name, payload, size, key in frames(s.dir):
            if key == sha1(bad):
                flip(os.path.join(s.dir, name), payload + size // 2)
        s.start()
        c = s.client()
        r = c.get(sha1(bad))
        self.assertEqual(r.status, 404)
        self.assertIn("corrupt", r.json()["error"])
        self.assertEqual(c.get(sha1(bad)).status, 404)  # out of service
        self.assertEqual(c.request("HEAD", f"/objects/{sha1(bad)}").status, 404)
        self.assertEqual(c.get(sha1(good)).body, good)
        m = c.request("GET", "/metrics").body.decode()
        self.assertIn("cas_corrupt_objects_total 1", m)
        self.assertIn(sha1(bad), s.log_text())
        # A fresh copy can be written again (what a balancer's repair does).
        self.assertEqual(c.put(bad).status, 201)
        self.assertEqual(c.get(sha1(bad)).body, bad)
        c.close()
        s.stop()
        s.start()
        self.assertEqual(s.client().get(sha1(bad)).body, bad)

    def test_large_object_cut_off_not_completed(self):
        s = self.storaged()
        c = s.client()
        size = 8 * 1024 * 1024 + 3
        bad = os.urandom(size)
        c.put(bad)
        c.close()
        s.stop()
        name, payload, _, _ = frames(s.dir)[0]
        flip(os.path.join(s.dir, name), payload + size - 100)  # in the last chunk
        s.start()
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.request("GET", f"/objects/{sha1(bad)}")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        got = b""
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            while True:
                chunk = r.read(65536)
                if not chunk:
                    raise ConnectionError(f"short body: {len(got)} of {size}")
                got += chunk
                if len(got) == size:
                    break
        self.assertLess(len(got), size)
        conn.close()
        c = s.client()
        self.assertEqual(c.get(sha1(bad)).status, 404)
        # A range of a corrupt object is refused too, even far from the flip.
        c.close()

    def test_range_of_corrupt_object_refused(self):
        s = self.storaged()
        c = s.client()
        bad = os.urandom(200_000)
        c.put(bad)
        c.close()
        s.stop()
        name, payload, size, _ = frames(s.dir)[0]
        flip(os.path.join(s.dir, name), payload + size - 1)
        s.start()
        c = s.client()
        r = c.get(sha1(bad), {"Range": "bytes=0-99"})
        self.assertEqual(r.status, 404)
        c.close()

    def test_corrupt_frame_header(self):
        s = self.storaged()
        c = s.client()
        d = os.urandom(3000)
        c.put(d)
        c.close()
        s.stop()
        name, payload, _, _ = frames(s.dir)[0]
        flip(os.path.join(s.dir, name), payload - 64 + 20)  # the size field
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(d)).status, 404)
        self.assertIn("cas_corrupt_objects_total 1", c.request("GET", "/metrics").body.decode())
        c.close()


class GcAcrossRestart(TempDirTest):
    def test_cycle_and_marks_survive_kill9(self):
        s = self.storaged()
        c = s.client()
        objs = {n: os.urandom(500 + n) for n in range(6)}
        for d in objs.values():
            c.put(d)
        gid = c.request("POST", "/gc/begin").json()["id"]
        c.request("POST", "/gc/mark", body=sha1(objs[0]) + "\n" + sha1(objs[1]))
        c.get(sha1(objs[2]))
        c.put(objs[3])
        c.close()
        s.kill9()
        s.start()
        c = s.client()
        st = c.request("GET", "/gc").json()
        self.assertEqual((st["active"], st["id"], st["objects"]), (True, gid, 2))
        self.assertEqual(c.request("GET", "/capacity").json()["garbage"], len(objs[4]) + len(objs[5]))
        r = c.request("POST", f"/gc/end?id={gid}").json()
        self.assertEqual(r, {"removed": 2, "bytes": len(objs[4]) + len(objs[5])})
        c.close()
        s.kill9()
        s.start()
        c = s.client()
        for n, d in objs.items():
            self.assertEqual(c.get(sha1(d)).status, 200 if n < 4 else 404, n)
        self.assertFalse(c.request("GET", "/gc").json()["active"])
        c.close()


class FullDisk(TempDirTest):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.tmp, "small")
        os.mkdir(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.mnt], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.mnt]))

    def test_507_then_recovers(self):
        s = self.storaged(name="small/store")
        c = s.client()
        filler = os.path.join(self.mnt, "filler")
        kept = []
        for i in range(10):
            d = os.urandom(500_000)
            self.assertEqual(c.put(d).status, 201)
            kept.append(d)
        # Fill the rest of the file system.
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 1024 * 1024)
                    f.flush()
            except OSError:
                pass
        before = sorted(os.listdir(s.dir))
        big = os.urandom(3 * 1024 * 1024)
        r = c.put(big)
        self.assertEqual(r.status, 507, r.body)
        self.assertIn("disk full", r.json()["error"])
        c.close()
        c = s.client()
        self.assertEqual(c.request("POST", "/objects", body=os.urandom(2_000_000)).status, 507)
        c.close()
        c = s.client()
        for d in kept:  # reads go on
            self.assertEqual(c.get(sha1(d)).body, d)
        self.assertEqual(c.get(sha1(big)).status, 404)
        self.assertEqual(sorted(os.listdir(s.dir)), before)
        self.assertFalse(c.request("GET", "/status").json()["read_only"])
        os.unlink(filler)  # space comes back
        self.assertEqual(c.put(big).status, 201)
        self.assertEqual(c.get(sha1(big)).body, big)
        c.close()
        s.stop()
        s.start()
        c = s.client()
        for d in kept + [big]:
            self.assertEqual(c.get(sha1(d)).body, d)
        c.close()

    def test_every_object_can_be_deleted_on_a_full_disk(self):
        """A store filled by its own small objects (a 4 MiB file system):
        DELETEs of keys it does not hold (each would append a tombstone)
        cannot eat the index's reserve, and every stored object can then be
        deleted. Found by an attacking session (a5 r4, r5): the reserve
        held one record per object while a DELETE appends two, and
        tombstones for absent keys had no bound, so after some deletes
        every DELETE and GC request answered 507, also after a restart."""
        mnt = os.path.join(self.tmp, "tiny")
        os.mkdir(mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.addCleanup(lambda: subprocess.run(["umount", "-l", mnt]))
        s = self.storaged(name="tiny/store")
        c = s.client()
        keys = []
        for i in range(5000):
            d = b"%06d" % i + os.urandom(3994)
            st = c.put(d).status
            if st == 507:
                break
            self.assertEqual(st, 201)
            keys.append(sha1(d))
        self.assertGreater(len(keys), 100)
        self.assertLess(len(keys), 5000, "the file system never filled")
        absent = [sha1(b"never stored %d" % i) for i in range(4000)]
        answers = {}
        for k in absent:
            st = c.request("DELETE", f"/objects/{k}").status
            answers[st] = answers.get(st, 0) + 1
        self.assertEqual(set(answers) - {404, 507}, set(), answers)
        for k in keys:
            r = c.request("DELETE", f"/objects/{k}")
            self.assertEqual(r.status, 204, r.body)
        for k in keys[:50]:
            self.assertEqual(c.request("GET", f"/objects/{k}").status, 404)
        c.close()
        s.stop()
        s.start()
        c = s.client()
        self.assertEqual(c.request("GET", "/capacity").json()["objects"], 0)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        self.assertEqual(c.put(b"space is back").status, 201)

    def test_gc_and_delete_on_a_full_disk(self):
        """A GC cycle and DELETE go on when the file system is full, filled
        by the store's own writes or by another file: reads of marked
        objects (each records a use), mark, end, cancel and DELETE all work,
        and the space comes back. The index keeps a preallocated reserve
        that data writes leave alone. Found by an attacking session: on a
        full tmpfs every read during a cycle answered 507 and nothing could
        end the cycle or delete anything."""
        for filler in ("own writes", "another file"):
            with self.subTest(filler=filler):
                s = self.storaged(name=f"small/store-{filler[0]}")
                c = s.client()
                # Many small objects: a use of each during the cycle is a
                # record, more than the index's last page holds.
                kept = []
                for i in range(400):
                    d = os.urandom(1000 + i)
                    self.assertEqual(c.put(d).status, 201)
                    kept.append(d)
                if filler == "own writes":
                    refused = 0
                    while refused < 3:
                        if c.put(os.urandom(300_000)).status == 507:
                            refused += 1
                    small = 0
                    while c.put(os.urandom(2000)).status == 201:
                        small += 1
                else:
                    with open(os.path.join(self.mnt, "filler"), "wb") as f:
                        try:
                            while True:
                                f.write(b"\0" * 65536)
                                f.flush()
                        except OSError:
                            pass
                self.assertEqual(c.put(os.urandom(100_000)).status, 507)
                r = c.request("POST", "/gc/begin")
                self.assertEqual(r.status, 200, r.body)
                gid = r.json()["id"]
                for d in kept[:300]:  # uses: recorded in the reserve
                    self.assertEqual(c.get(sha1(d)).body, d)
                r = c.request("POST", "/gc/mark", body="".join(sha1(d) + "\n" for d in kept[300:350]))
                self.assertEqual(r.status, 200, r.body)
                r = c.request("POST", f"/gc/end?id={gid}")
                self.assertEqual(r.status, 200, r.body)
                for d in kept[:350]:
                    self.assertEqual(c.get(sha1(d)).body, d)
                for d in kept[350:]:
                    self.assertEqual(c.get(sha1(d)).status, 404)
                self.assertEqual(c.request("DELETE", f"/objects/{sha1(kept[0])}").status, 204)
                r = c.request("POST", "/gc/begin")
                self.assertEqual(r.status, 200, r.body)
                r = c.request("POST", f"/gc/cancel?id={r.json()['id']}")
                self.assertEqual(r.status, 200, r.body)
                self.assertFalse(c.request("GET", "/status").json()["read_only"])
                c.close()
                s.stop()
                s.start()
                c = s.client()
                self.assertEqual(c.get(sha1(kept[1])).body, kept[1])
                self.assertEqual(c.get(sha1(kept[0])).status, 404)
                c.close()
                s.stop()
                if filler != "own writes":
                    os.unlink(os.path.join(self.mnt, "filler"))
                shutil.rmtree(s.dir)


if __name__ == "__main__":
    unittest.main()
