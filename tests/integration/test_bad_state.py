"""test_bad_state.py - a storaged directory in a state that does not add up
is refused, never "repaired" by losing data.

Each variant damages a stopped store the way a bad restore, a file system
repair or an operator would: a lost node file, a node file of the other
hash, a damaged byte in the index header, the index naming a data file
generation that is not there (or older than the one that is), a garbled
record in the middle of the index, a data file shorter than the index says,
and special files (FIFO, symlink) where the store's files belong. For each:
the storaged exits 1 with a message naming the problem and what to run,
every file in the directory is byte for byte as before (a hash of each),
and then `ca-cas fsck DIR --repair` (with --new-identity where the identity
is what was lost) fixes it and every object reads back. A torn tail of the
index (a crash in the middle of an append) is the one damage start-up
repairs by itself: it is cut, and nothing acknowledged is lost.
"""
import hashlib
import os
import re
import stat
import struct
import subprocess
import time
import unittest
import zlib

from harness import CLI, TempDirTest, sha1


def snapshot(store_dir):
    """name -> (kind, sha256 of the bytes) for every entry but LOCK (the
    flock file, whose existence says nothing about the data)."""
    out = {}
    for name in sorted(os.listdir(store_dir)):
        if name == "LOCK":
            continue
        path = os.path.join(store_dir, name)
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                out[name] = ("file", hashlib.sha256(f.read()).hexdigest())
        elif stat.S_ISLNK(st.st_mode):
            out[name] = ("symlink", os.readlink(path))
        else:
            out[name] = ("other", stat.S_IFMT(st.st_mode))
    return out


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def data_files(store_dir):
    return sorted(n for n in os.listdir(store_dir) if re.fullmatch(r"data-\d\d\.g\d+", n))


def biggest_data_file(store_dir):
    return max(data_files(store_dir), key=lambda n: os.path.getsize(os.path.join(store_dir, n)))


def index_record(rtype, file=0, algo=1, offset=0, size=0, aux=0, digest=b""):
    """One 64-byte index record (docs/FORMAT.md)."""
    body = struct.pack("<BBBBQQQ", rtype, 0, file, algo, offset, size, aux) + digest.ljust(32, b"\0")
    return struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF) + body


class BadState(TempDirTest):
    def populated(self, n=6, hash_name="sha1", name="s1"):
        extra = ["--hash", hash_name] if hash_name != "sha1" else None
        s = self.storaged(name, extra=extra)
        self.hash_name = hash_name
        c = s.client()
        objs = [os.urandom(3000 + 777 * i) for i in range(n)]
        for d in objs:
            self.assertEqual(c.put(d, key=self.key(d)).status, 201)
        c.close()
        self.assertEqual(s.stop(), 0)
        return s, objs

    def key(self, data):
        return hashlib.new(self.hash_name, data).hexdigest()

    def assert_refused(self, s, *want):
        """Runs the storaged on its directory: exit 1 (LeakSanitizer clean
        in the ASan build), a message holding each of want, nothing changed."""
        before = snapshot(s.dir)
        p = subprocess.run(s.argv, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertNotIn("LeakSanitizer", p.stderr)
        for w in want:
            self.assertIn(w, p.stderr)
        self.assertEqual(snapshot(s.dir), before, "a refused start changed the directory")
        return p.stderr

    def assert_all_read_back(self, s, objs):
        s.start()
        c = s.client()
        for d in objs:
            r = c.get(self.key(d))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, d)
        c.close()
        s.stop()

    def repair(self, s, *extra):
        rc, out = fsck(s.dir, "--repair", *extra)
        self.assertEqual(rc, 0, out)
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 0, out)
        return out

    # ---- the node file -------------------------------------------------

    def lost_node(self, hash_name):
        s, objs = self.populated(hash_name=hash_name)
        with open(os.path.join(s.dir, "node")) as f:
            old_id = re.search(r"^id (\w+)$", f.read(), re.M).group(1)
        os.unlink(os.path.join(s.dir, "node"))
        self.assert_refused(s, "node is missing", "restore it from a backup", "--new-identity")
        # Without --hash, with the other --hash: same refusal, nothing written.
        s2 = self.storaged("s1", extra=["--hash", "sha1" if hash_name == "sha256" else "sha256"],
                           start=False)
        self.assert_refused(s2, "node is missing")
        # fsck does not invent an identity unless asked.
        before = snapshot(s.dir)
        for args in ((), ("--repair",)):
            rc, out = fsck(s.dir, *args)
            self.assertEqual(rc, 1, out)
            self.assertIn("--new-identity", out)
        self.assertEqual(snapshot(s.dir), before)
        rc, out = fsck(s.dir, "--new-identity")
        self.assertEqual(rc, 2, out)  # only with --repair
        out = self.repair(s, "--new-identity")
        with open(os.path.join(s.dir, "node")) as f:
            node = f.read()
        self.assertIn(f"hash {hash_name}\n", node)
        self.assertNotIn(f"id {old_id}\n", node)
        self.assert_all_read_back(s, objs)

    def test_lost_node_file_sha1(self):
        self.lost_node("sha1")

    def test_lost_node_file_sha256(self):
        self.lost_node("sha256")

    def test_node_and_index_both_lost(self):
        """Only the data files are left: the hash comes from their frames."""
        s, objs = self.populated(hash_name="sha256")
        os.unlink(os.path.join(s.dir, "node"))
        os.unlink(os.path.join(s.dir, "index"))
        self.assert_refused(s, "node is missing")
        self.repair(s, "--new-identity")
        with open(os.path.join(s.dir, "node")) as f:
            self.assertIn("hash sha256\n", f.read())
        self.assert_all_read_back(s, objs)

    def test_node_file_of_the_other_hash(self):
        s, objs = self.populated(hash_name="sha256")
        path = os.path.join(s.dir, "node")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("hash sha256\n", "hash sha1\n"))
        self.assert_refused(s, "sha1", "sha256", "node file belongs to another store")
        rc, out = fsck(s.dir, "--repair")  # fsck alone does not replace an identity
        self.assertEqual(rc, 1, out)
        self.repair(s, "--new-identity")
        self.assertTrue(any(n.startswith("node.replaced.") for n in os.listdir(s.dir)))
        self.assert_all_read_back(s, objs)

    # ---- the index -----------------------------------------------------

    def test_damaged_index_header(self):
        for pos in (0, 5, 7, 10, 24, 40):
            with self.subTest(byte=pos):
                s, objs = self.populated(n=3, name=f"h{pos}")
                index = os.path.join(s.dir, "index")
                with open(index, "r+b") as f:
                    f.seek(pos)
                    b = f.read(1)
                    f.seek(pos)
                    f.write(bytes([b[0] ^ 0x5A]))
                self.assert_refused(s, "damaged HEADER", "fsck", "--repair")
                self.repair(s)
                self.assertTrue(any(n.startswith("index.before-repair.") for n in os.listdir(s.dir)))
                self.assert_all_read_back(s, objs)

    def test_garbled_record_in_the_middle(self):
        s, objs = self.populated()
        index = os.path.join(s.dir, "index")
        with open(index, "r+b") as f:
            f.seek(2 * 64 + 33)  # inside the second object's PUT record; more follow
            f.write(b"\xff\xfe")
        self.assert_refused(s, "offset 128 is damaged", "fsck")
        self.repair(s)
        self.assert_all_read_back(s, objs)

    def test_record_that_makes_no_sense(self):
        """A CRC-valid record of an unknown type or for data file 77 (another
        version's, or damage the CRC missed) is refused, not skipped."""
        for rec in (index_record(2, file=77, size=5, digest=b"\x01" * 20), index_record(42)):
            with self.subTest(record=rec[4:8].hex()):
                s, objs = self.populated(n=2, name=f"r{rec[4]}")
                with open(os.path.join(s.dir, "index"), "ab") as f:
                    f.write(rec)
                self.assert_refused(s, "makes no sense", "fsck")
                self.repair(s)
                self.assert_all_read_back(s, objs)

    def test_torn_tail_is_cut(self):
        """A crash in the middle of an append: the partial record is cut at
        start (it was never acknowledged: the reply waits for the index
        sync), the frame it described stays in its data file."""
        s, objs = self.populated()
        index = os.path.join(s.dir, "index")
        data_before = {n: os.path.getsize(os.path.join(s.dir, n)) for n in data_files(s.dir)}
        os.truncate(index, os.path.getsize(index) - 20)
        s.start()
        c = s.client()
        for d in objs[:-1]:
            self.assertEqual(c.get(self.key(d)).body, d)
        c.close()
        s.stop()
        self.assertEqual(os.path.getsize(index) % 64, 0)
        self.assertEqual({n: os.path.getsize(os.path.join(s.dir, n)) for n in data_files(s.dir)},
                         data_before)

    # ---- data files ----------------------------------------------------

    def test_index_names_missing_generation(self):
        s, objs = self.populated()
        name = biggest_data_file(s.dir)
        n = int(name[5:7])
        with open(os.path.join(s.dir, "index"), "ab") as f:
            f.write(index_record(9, file=n, aux=1))  # GENERATION: file n is at generation 1
        err = self.assert_refused(s, f"data-{n:02d}.g1 is missing", name, "fsck")
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 1, out)
        self.repair(s)
        self.assertIn(name, os.listdir(s.dir))
        self.assert_all_read_back(s, objs)

    def test_data_file_newer_than_the_index(self):
        """data-N.g0 renamed to data-N.g3: the index is older than the data."""
        s, objs = self.populated()
        name = biggest_data_file(s.dir)
        newer = name[:-1] + "3"
        os.rename(os.path.join(s.dir, name), os.path.join(s.dir, newer))
        self.assert_refused(s, f"{name} is missing", newer)
        self.repair(s)
        self.assertIn(newer, os.listdir(s.dir))
        self.assert_all_read_back(s, objs)

    def test_next_generation_with_objects_the_index_never_saw(self):
        """An index and data-N.g0 restored from a backup taken before a
        compaction, data-N.g1 (the compaction's output, plus an object
        written after it) left in place. The g1 used to be removed as "a
        compaction that never committed", losing that object (found by an
        attacking session). Now: refused, nothing changed; fsck --repair
        takes g1 as current, every object reads back, the one deleted
        before the compaction stays deleted."""
        s, objs = self.populated(n=8)
        # Back up the stopped store, then: delete one object of the
        # biggest file, compact it, write one more (it lands there).
        backup = os.path.join(self.tmp, "backup")
        os.makedirs(backup)
        for name in os.listdir(s.dir):
            if name != "LOCK":
                with open(os.path.join(s.dir, name), "rb") as f, open(os.path.join(backup, name), "wb") as g:
                    g.write(f.read())
        s.start()
        c = s.client()
        name = biggest_data_file(s.dir)
        n = int(name[5:7])
        victim = next(d for d in objs if name in self.files_holding(s.dir, self.key(d)))
        self.assertEqual(c.request("DELETE", f"/objects/{self.key(victim)}").status, 204)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        self.assertIn(f"data-{n:02d}.g1", os.listdir(s.dir))
        late = None
        for i in range(200):  # a new write goes to the shortest file
            d = os.urandom(100 + i)
            self.assertEqual(c.put(d, key=self.key(d)).status, 201)
            if f"data-{n:02d}.g1" in self.files_holding(s.dir, self.key(d)):
                late = d
                break
            self.assertEqual(c.request("DELETE", f"/objects/{self.key(d)}").status, 204)
        self.assertIsNotNone(late, "no write landed in the compacted file")
        c.close()
        s.stop()
        for f in ("index", name):
            with open(os.path.join(backup, f), "rb") as src, open(os.path.join(s.dir, f), "wb") as dst:
                dst.write(src.read())
        self.assert_refused(s, f"data-{n:02d}.g1 holds object {self.key(late)}",
                            "index is older than the data files", "fsck")
        self.repair(s)
        self.assert_all_read_back(s, [d for d in objs if d is not victim] + [late])
        s.start()
        self.assertEqual(s.client().get(self.key(victim)).status, 404)
        s.stop()

    def test_unfinished_compaction_output_removed(self):
        """A data-N.g1 holding only copies of data-N.g0's frames (what a
        compaction killed before its commit leaves) is removed at start."""
        s, objs = self.populated()
        name = biggest_data_file(s.dir)
        nxt = name[:-1] + "1"
        with open(os.path.join(s.dir, name), "rb") as f:
            data = f.read()
        with open(os.path.join(s.dir, nxt), "wb") as f:
            f.write(data[:len(data) * 2 // 3])  # cut in the middle of a copy
        self.assert_all_read_back(s, objs)
        self.assertNotIn(nxt, os.listdir(s.dir))
        self.assertIn(name, os.listdir(s.dir))

    def test_scrub_tmp_symlink_or_fifo(self):
        """The scrubber's temporary position file replaced by a symlink to a
        file outside the store, or by a FIFO: the outside file is never
        written, the scrubber never blocks, SIGTERM stops the daemon at
        once. Found by an attacking session (the symlink was followed, the
        FIFO blocked the scrubber and SIGTERM forever)."""
        for kind in ("symlink", "fifo"):
            with self.subTest(kind=kind):
                s, objs = self.populated(name=f"scrub-{kind}")
                outside = os.path.join(self.tmp, f"outside-{kind}")
                with open(outside, "w") as f:
                    f.write("precious\n")
                tmp = os.path.join(s.dir, "scrub.tmp")
                if kind == "symlink":
                    os.symlink(outside, tmp)
                else:
                    os.mkfifo(tmp)
                s.argv = s.argv + ["--scrub-rate", "100"]
                s.start()
                status = s.client().request("GET", "/status").json()["scrub"]
                deadline = time.time() + 20
                while status.get("passes", 0) < 1 and time.time() < deadline:
                    time.sleep(0.2)
                    status = s.client().request("GET", "/status").json()["scrub"]
                self.assertGreaterEqual(status.get("passes", 0), 1, status)
                t0 = time.time()
                self.assertEqual(s.stop(), 0)
                self.assertLess(time.time() - t0, 10)
                with open(outside) as f:
                    self.assertEqual(f.read(), "precious\n")
                self.assertTrue(os.path.isfile(os.path.join(s.dir, "scrub")))
                self.assertFalse(os.path.islink(os.path.join(s.dir, "scrub")))

    def files_holding(self, store_dir, key):
        digest = bytes.fromhex(key)
        out = []
        for name in data_files(store_dir):
            with open(os.path.join(store_dir, name), "rb") as f:
                buf = f.read()
            at = buf.find(digest)
            if at >= 32 and buf[at - 32:at - 28] == b"CASO":
                out.append(name)
        return out

    def test_short_data_file(self):
        s, objs = self.populated()
        name = biggest_data_file(s.dir)
        path = os.path.join(s.dir, name)
        os.truncate(path, os.path.getsize(path) - 100)
        self.assert_refused(s, "shorter than the index says", "fsck")
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 0, out)
        s.start()
        c = s.client()
        lost = [d for d in objs if c.get(self.key(d)).status == 404]
        self.assertEqual(len(lost), 1)  # the last frame of that file, and only it
        for d in objs:
            if d not in lost:
                self.assertEqual(c.get(self.key(d)).body, d)
        c.close()

    # ---- special files -------------------------------------------------

    def test_special_files_refused_without_blocking(self):
        s, objs = self.populated()
        index = os.path.join(s.dir, "index")
        os.rename(index, os.path.join(self.tmp, "index.saved"))
        os.mkfifo(index)
        self.assert_refused(s, "index is a FIFO")
        before = snapshot(s.dir)
        rc, out = fsck(s.dir)  # returns (timeout=120 would fail the test otherwise)
        self.assertEqual(rc, 1, out)
        self.assertIn("FIFO", out)
        rc, out = fsck(s.dir, "--repair")
        self.assertEqual(rc, 1, out)
        self.assertEqual(snapshot(s.dir), before)
        os.unlink(index)
        os.rename(os.path.join(self.tmp, "index.saved"), index)

        name = biggest_data_file(s.dir)
        path = os.path.join(s.dir, name)
        os.rename(path, os.path.join(self.tmp, name))
        os.symlink(os.path.join(self.tmp, name), path)
        self.assert_refused(s, f"{name} is a symbolic link")
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 1, out)
        self.assertIn("symbolic link", out)
        os.unlink(path)
        os.rename(os.path.join(self.tmp, name), path)

        node = os.path.join(s.dir, "node")
        os.rename(node, os.path.join(self.tmp, "node"))
        os.symlink(os.path.join(self.tmp, "node"), node)
        self.assert_refused(s, "node is a symbolic link")
        os.unlink(node)
        os.rename(os.path.join(self.tmp, "node"), node)

        lock = os.path.join(s.dir, "LOCK")
        os.unlink(lock)
        os.mkfifo(lock)
        p = subprocess.run(s.argv, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("LOCK is a FIFO", p.stderr)
        os.unlink(lock)
        # Put back by hand, the store is whole.
        self.assertEqual(fsck(s.dir)[0], 0)
        self.assert_all_read_back(s, objs)

    def test_repair_skipping_a_damaged_del_keeps_the_object_deleted(self):
        """A damaged DEL record is skipped by fsck --repair; the tombstone
        written with the delete still says 'not stored', so the deleted
        object does not come back (SPEC: a 204 is never undone)."""
        s, objs = self.populated(3)
        s.start()
        gone = objs[1]
        self.assertEqual(s.client().request("DELETE", f"/objects/{self.key(gone)}").status, 204)
        self.assertEqual(s.stop(), 0)
        path = os.path.join(s.dir, "index")
        with open(path, "r+b") as f:
            data = f.read()
            for at in range(0, len(data) - 63, 64):
                if data[at + 4] == 3:  # DEL
                    f.seek(at + 40)     # a byte of the digest: the CRC no longer matches
                    f.write(bytes([data[at + 40] ^ 0xFF]))
                    break
            else:
                self.fail("no DEL record in the index")
        self.assert_refused(s, "fsck")
        self.repair(s)
        self.assert_all_read_back(s, [objs[0], objs[2]])
        s.start()
        self.assertEqual(s.client().get(self.key(gone)).status, 404)
        s.stop()


if __name__ == "__main__":
    unittest.main()


class ParentOfStores(TempDirTest):
    def test_the_parent_of_stores_is_not_made_a_store(self):
        """--dir /srv/ca-cas instead of /srv/ca-cas/disk1: refused, naming a
        store below, and nothing written there."""
        from harness import STORAGED
        s = self.storaged("disk1")
        s.stop()
        p = subprocess.run([STORAGED, "--dir", self.tmp, "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"{self.tmp} is not a store but holds one ({self.tmp}/disk1/node)", p.stderr)
        for name in ("node", "index", "LOCK", "data-00"):
            self.assertFalse(any(n.startswith(name) for n in os.listdir(self.tmp)), name)
