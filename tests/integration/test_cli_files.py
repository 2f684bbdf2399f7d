"""test_cli_files.py - what the CLI and the offline tools do to files the user
named, and whether their reports can be believed:

- `get -o FILE` / `export -o FILE` that fail (object absent, server down)
  leave an existing FILE exactly as it was; on success a regular FILE is
  replaced whole (its mode kept), a symlink keeps pointing where it did, and a
  FIFO or device is written into, never unlinked or replaced; `-o -` and
  `-o /dev/stdout` are standard output as the shell opened it.
- `get --continue` over bytes that are not the object's cuts FILE back to
  what it was (it used to delete it).
- `ca-cas fsck` on an S3 node's --dir says it cannot check the bucket and
  exits 1, with and without --repair, and changes nothing there.
- GET /compact's done_bytes never passes total_bytes while objects are
  written and removed during the compaction (the compaction is stepped file
  by file through libcasfault's sync gate, so no timing luck is involved).
"""
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import tarfile
import threading
import time
import unittest

from harness import BUILD, CLI, TempDirTest, free_port, sha1

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


def cas(server, *args, stdout=None, timeout=60, cwd=None):
    """Runs the CLI; returns (exit status, stdout bytes or None, stderr text)."""
    kw = {"stdout": stdout} if stdout is not None else {"stdout": subprocess.PIPE}
    p = subprocess.run([CLI, "--server", server] + [str(a) for a in args], stderr=subprocess.PIPE,
                       timeout=timeout, cwd=cwd, **kw)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def snapshot(path):
    """What a test compares before and after: type, inode, mode, bytes."""
    st = os.lstat(path)
    data = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            data = f.read()
    return (stat.S_IFMT(st.st_mode), st.st_ino, stat.S_IMODE(st.st_mode), data)


class FifoReader:
    """Reads a FIFO in a thread until the writer closes it (bounded wait)."""

    def __init__(self, path):
        self.path, self.data = path, None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        with open(self.path, "rb") as f:
            self.data = f.read()

    def join(self):
        self.t.join(30)
        return self.data


class OutputFileTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.s = self.storaged()
        self.url = self.s.url
        self.out = os.path.join(self.tmp, "out")
        os.mkdir(self.out)
        self.data = os.urandom(70_000)
        self.key = sha1(self.data)
        self.assertEqual(self.s.client().put(self.data, self.key).status, 201)
        self.absent = sha1(b"never stored")
        self.down = f"http://127.0.0.1:{free_port()}"

    def leftovers(self):
        return sorted(n for n in os.listdir(self.out) if ".partial-" in n)

    # ---- get -o ----

    def test_get_o_failure_keeps_existing_file(self):
        f = os.path.join(self.out, "important.txt")
        with open(f, "wb") as h:
            h.write(b"my tax records\n")
        os.chmod(f, 0o640)
        before = snapshot(f)
        for server, key, why in ((self.url, self.absent, "not found"),
                                 (self.down, self.key, "cannot reach")):
            code, _, err = cas(server, "get", key, "-o", f)
            self.assertEqual(code, 1, err)
            self.assertIn(why, err)
            self.assertEqual(snapshot(f), before, f"{why}: the existing file was changed")
        self.assertEqual(self.leftovers(), [])

    def test_get_o_long_name(self):
        """A valid 250-byte file name: the temporary name beside it would
        be over NAME_MAX (255), so a shorter one is used."""
        f = os.path.join(self.out, "n" * 250)
        code, _, err = cas(self.url, "get", self.key, "-o", f)
        self.assertEqual(code, 0, err)
        with open(f, "rb") as h:
            self.assertEqual(h.read(), self.data)
        self.assertEqual(sorted(os.listdir(self.out)), ["n" * 250])

    def test_get_o_interrupted_leaves_no_temporary_file(self):
        """SIGINT or SIGTERM while get -o waits on a server that never
        answers: the temporary file is removed, FILE left as it was."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        self.addCleanup(lsock.close)
        silent = f"http://127.0.0.1:{lsock.getsockname()[1]}"
        f = os.path.join(self.out, "keep.txt")
        with open(f, "wb") as h:
            h.write(b"as it was\n")
        before = snapshot(f)
        for sig in (signal.SIGINT, signal.SIGTERM):
            p = subprocess.Popen([CLI, "--server", silent, "get", self.key, "-o", f],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                deadline = time.time() + 20
                while not self.leftovers() and time.time() < deadline:
                    time.sleep(0.02)
                self.assertTrue(self.leftovers(), "get -o never created its temporary file")
                p.send_signal(sig)
                p.wait(20)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            self.assertEqual(p.returncode, -sig)
            self.assertEqual(self.leftovers(), [], f"{sig!r} left the temporary file")
            self.assertEqual(snapshot(f), before)

    def test_get_o_success_replaces_whole_file_keeping_mode(self):
        f = os.path.join(self.out, "obj")
        with open(f, "wb") as h:
            h.write(b"x" * 200_000)  # longer than the object: no old tail may stay
        os.chmod(f, 0o640)
        code, _, err = cas(self.url, "get", self.key, "-o", f)
        self.assertEqual(code, 0, err)
        self.assertEqual(snapshot(f)[2:], (0o640, self.data))
        new = os.path.join(self.out, "new")
        code, _, err = cas(self.url, "get", self.key, "-o", new)
        self.assertEqual(code, 0, err)
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(snapshot(new)[2:], (0o666 & ~umask, self.data))
        self.assertEqual(self.leftovers(), [])

    def test_get_o_symlink_keeps_link_and_writes_target(self):
        target = os.path.join(self.out, "target")
        with open(target, "wb") as h:
            h.write(b"old")
        link = os.path.join(self.out, "link")
        os.symlink(target, link)
        code, _, err = cas(self.url, "get", self.absent, "-o", link)
        self.assertEqual(code, 1, err)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(open(target, "rb").read(), b"old")
        code, _, err = cas(self.url, "get", self.key, "-o", link)
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.islink(link), "the symlink was replaced")
        self.assertEqual(open(target, "rb").read(), self.data)
        dangling = os.path.join(self.out, "dangling")
        os.symlink(os.path.join(self.out, "nowhere"), dangling)
        code, _, err = cas(self.url, "get", self.key, "-o", dangling)
        self.assertEqual(code, 1, err)
        self.assertIn("does not exist", err)
        self.assertTrue(os.path.islink(dangling))
        self.assertFalse(os.path.exists(os.path.join(self.out, "nowhere")))
        self.assertEqual(self.leftovers(), [])

    def test_get_o_fifo_is_written_into_never_unlinked(self):
        fifo = os.path.join(self.out, "fifo")
        os.mkfifo(fifo)
        r = FifoReader(fifo)
        code, _, err = cas(self.url, "get", self.key, "-o", fifo)
        self.assertEqual(code, 0, err)
        self.assertEqual(r.join(), self.data)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        r = FifoReader(fifo)
        code, _, err = cas(self.url, "get", self.absent, "-o", fifo)
        self.assertEqual(code, 1, err)
        self.assertEqual(r.join(), b"")
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was unlinked")
        self.assertEqual(self.leftovers(), [])

    @unittest.skipUnless(os.geteuid() == 0, "mknod needs root (the FIFO test covers the rule)")
    def test_get_o_device_node_is_never_unlinked(self):
        null = os.path.join(self.out, "null")
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        for key, want in ((self.absent, 1), (self.key, 0)):
            code, _, err = cas(self.url, "get", key, "-o", null)
            self.assertEqual(code, want, err)
            self.assertTrue(stat.S_ISCHR(os.lstat(null).st_mode), "the device node was removed")
        self.assertEqual(self.leftovers(), [])

    def test_get_o_dash_and_dev_stdout_are_stdout(self):
        code, out, err = cas(self.url, "get", self.key, "-o", "-", cwd=self.out)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, self.data)
        self.assertFalse(os.path.exists(os.path.join(self.out, "-")))
        # /dev/stdout on a file the shell opened for appending: appended,
        # the file neither truncated nor replaced
        log = os.path.join(self.out, "log")
        with open(log, "wb") as h:
            h.write(b"head\n")
        ino = os.stat(log).st_ino
        with open(log, "ab") as h:
            code, _, err = cas(self.url, "get", self.key, "-o", "/dev/stdout", stdout=h)
        self.assertEqual(code, 0, err)
        self.assertEqual(os.stat(log).st_ino, ino)
        self.assertEqual(open(log, "rb").read(), b"head\n" + self.data)

    def test_get_o_directory_refused(self):
        code, _, err = cas(self.url, "get", self.key, "-o", self.out)
        self.assertEqual(code, 1, err)
        self.assertIn("is a directory", err)
        self.assertEqual(os.listdir(self.out), [])

    def test_get_continue_over_foreign_bytes_keeps_file(self):
        f = os.path.join(self.out, "notes")
        with open(f, "wb") as h:
            h.write(b"my tax records\n")
        before = snapshot(f)
        code, _, err = cas(self.url, "get", self.key, "-o", f, "--continue")
        self.assertEqual(code, 1, err)
        self.assertIn("left as it was", err)
        self.assertEqual(snapshot(f)[:3], before[:3])
        self.assertEqual(snapshot(f)[3], before[3], "the appended bytes were not taken back")
        longer = os.path.join(self.out, "longer")
        with open(longer, "wb") as h:
            h.write(b"y" * 100_000)
        code, _, err = cas(self.url, "get", self.key, "-o", longer, "--continue")
        self.assertEqual(code, 1, err)
        self.assertEqual(open(longer, "rb").read(), b"y" * 100_000)
        # a real partial download is still completed
        part = os.path.join(self.out, "part")
        with open(part, "wb") as h:
            h.write(self.data[:1000])
        code, _, err = cas(self.url, "get", self.key, "-o", part, "--continue")
        self.assertEqual(code, 0, err)
        self.assertEqual(open(part, "rb").read(), self.data)

    # ---- export -o ----

    def members(self, path):
        with tarfile.open(path) as t:
            return t.getnames()

    def test_export_o_symlink_writes_target_keeps_link(self):
        target = os.path.join(self.out, "target.tar")
        open(target, "wb").close()
        link = os.path.join(self.out, "link.tar")
        os.symlink(target, link)
        code, _, err = cas(self.url, "export", "-o", link)
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.islink(link), "the symlink was replaced by a regular file")
        self.assertEqual(self.members(target), [self.key])
        self.assertEqual(self.leftovers(), [])

    def test_export_o_fifo_reaches_reader(self):
        fifo = os.path.join(self.out, "fifo")
        os.mkfifo(fifo)
        r = FifoReader(fifo)
        code, _, err = cas(self.url, "export", "-o", fifo)
        self.assertEqual(code, 0, err)
        got = r.join()
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced")
        tarpath = os.path.join(self.tmp, "got.tar")
        with open(tarpath, "wb") as h:
            h.write(got)
        self.assertEqual(self.members(tarpath), [self.key])
        self.assertEqual(self.leftovers(), [])

    def test_export_o_failure_keeps_existing_archive(self):
        f = os.path.join(self.out, "old.tar")
        code, _, err = cas(self.url, "export", "-o", f)
        self.assertEqual(code, 0, err)
        before = snapshot(f)
        code, _, err = cas(self.down, "export", "-o", f)
        self.assertEqual(code, 1, err)
        self.assertIn("left as it was", err)
        self.assertEqual(snapshot(f), before)
        self.assertEqual(self.leftovers(), [])


class FsckS3Dir(TempDirTest):
    backend = "s3"

    def tree(self, d):
        out = {}
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                data = hashlib.sha256(open(p, "rb").read()).hexdigest()
            out[name] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, data)
        return out

    def test_fsck_says_it_cannot_check_an_s3_node_and_changes_nothing(self):
        s = self.storaged()
        c = s.client()
        for i in range(5):
            self.assertEqual(c.put(os.urandom(3000)).status, 201)
        s.stop()
        d = s.dir
        before = self.tree(d)
        self.assertIn("s3-index", before)
        for extra in ([], ["--repair"], ["--repair", "--new-identity"]):
            p = subprocess.run([CLI, "fsck", d] + extra, capture_output=True, timeout=60)
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 1, (extra, p.stdout, err))
            self.assertIn("S3 backend", err)
            self.assertIn("Nothing was checked or changed", err)
            self.assertNotIn(b"0 problems", p.stdout)
            self.assertEqual(self.tree(d), before, f"fsck {extra} changed the directory")
        p = subprocess.run([CLI, "--json", "fsck", d], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertNotIn(b'"healthy":true', p.stdout)


class CompactProgress(TempDirTest):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")

    def test_done_never_above_total_under_writes_and_deletes(self):
        gate = os.path.join(self.tmp, "gate")

        def allow(n):
            tmp = gate + ".new"
            with open(tmp, "w") as f:
                f.write(str(n))
            os.rename(tmp, gate)

        allow(0)
        # syncs of a compaction's new data files (data-NN.g1) wait at the gate
        env = {"LD_PRELOAD": FAULTLIB, "CAS_PAUSE_FILE": gate, "CAS_PAUSE_ONLY": ".g1",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        s = self.storaged(env=env)
        c = s.client()
        keys = []
        for i in range(100):  # two objects in each of the 50 data files
            b = os.urandom(4000) + bytes([i])
            keys.append(sha1(b))
            self.assertEqual(c.put(b, keys[-1]).status, 201)
        # one file with dead bytes when the compaction starts: total = its live bytes
        self.assertEqual(c.request("DELETE", f"/objects/{keys[0]}").status, 204)
        self.assertEqual(c.request("POST", "/compact").status, 202)
        samples = []

        def poll():
            p = c.request("GET", "/compact").json()
            samples.append(p)
            self.assertLessEqual(p["done_bytes"], p["total_bytes"], samples[-3:])
            m = c.request("GET", "/metrics").body.decode()
            vals = {}
            for line in m.splitlines():
                for name in ("cas_compaction_done_bytes", "cas_compaction_total_bytes"):
                    if line.startswith(name + " "):
                        vals[name] = float(line.split()[-1])
            self.assertLessEqual(vals["cas_compaction_done_bytes"], vals["cas_compaction_total_bytes"])
            return p

        def wait_held(step):
            """Polls until sync number `step` waits at the gate or the
            compaction is over; returns the last /compact answer."""
            for _ in range(400):  # bounded: 20 s
                p = poll()
                try:
                    at = int(open(gate + ".at").read())
                except (OSError, ValueError):
                    at = -1
                if not p["running"] or at == step:
                    return p
                time.sleep(0.05)
            self.fail(f"compaction did not reach sync {step}: {samples[-3:]}")

        p = wait_held(0)  # held at the first file's sync
        self.assertTrue(p["running"])
        self.assertGreater(p["total_bytes"], 0)
        first_total = p["total_bytes"]
        # meanwhile: dead bytes in the other files, and new objects
        for k in keys[1:50]:
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        for i in range(30):
            b = os.urandom(5000) + bytes([i])
            self.assertEqual(c.put(b, sha1(b)).status, 201)
        poll()
        for step in range(1, 60):  # one data file per step; 50 files at most
            allow(step)
            p = wait_held(step)
            if not p["running"]:
                break
        else:
            self.fail(f"compaction did not end: {samples[-3:]}")
        allow(1 << 30)
        self.assertGreaterEqual(len(samples), 4)
        # it did more than the plan it started from, and says so truthfully
        self.assertGreater(p["total_bytes"], first_total)
        self.assertEqual(p["done_bytes"], p["total_bytes"])


if __name__ == "__main__":
    unittest.main()
