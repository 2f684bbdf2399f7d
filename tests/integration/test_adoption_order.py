"""test_adoption_order.py - start-up and fsck --repair judge an unindexed
frame only once every data file's removals and tombstones are known, and a
frame a client delete's tombstone refuses is marked removed for good.

Found by an attacking session (a7 6, 7, 8, 9). Start-up and fsck --repair
read the data files in number order and, file by file, applied the removals
the index lost and then judged the unindexed frames of that file. So:

- lower file first (6): PUT K (frame in data file A), a copy of the index,
  DELETE K, PUT K again (frame in a data file B < A), the index restored
  from the copy or cut back to it. Start-up met K's acknowledged frame in B
  while the stale entry in A (whose lost removal it applied only later) was
  in the table: K was not served until the next restart.
- lost tombstone (7): a write W of K that a DELETE overtook (held at its
  data file's sync, then kill -9), W0 = PUT K answered, DELETE K answered,
  the index cut by the DELETE's TOMB record (its DEL kept). W's frame in a
  lower file than the removal frame that rebuilds the tombstone was adopted
  first: the DELETE was undone (start-up and fsck --repair).
- lost index (9): the same with the index removed: fsck --repair rebuilt the
  tombstones of the newest removals only after adopting W, in any order.
- tombstone expired (8): W's frame, refused at start-up while the tombstone
  was in force, was only skipped; the first start-up after the tombstone
  expired (7 days; the clock moved with libcastimeshift.so) indexed it.

Each case runs both file orders; every variant here fails on the code
before the fix except the ones named as holding before.
"""
import os
import shutil
import subprocess
import threading

from harness import BUILD, CLI, TempDirTest, sha1, wait_for

LIBDIR = os.path.join(BUILD, "tests", "integration")
FAULTLIB = os.path.join(LIBDIR, "libcasfault.so")
SHIFTLIB = os.path.join(LIBDIR, "libcastimeshift.so")
ASAN = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
REC_PUT, REC_TOMB = 2, 11
DAY = 86400


def fsck(*args):
    p = subprocess.run([CLI, "fsck", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def records(index):
    """(type, data file, digest bytes) of every 64-byte index record."""
    with open(index, "rb") as f:
        b = f.read()
    return [(b[i + 4], b[i + 6], b[i + 32:i + 52]) for i in range(0, len(b) - 63, 64)]


def last_put_file(index, key_hex):
    files = [f for t, f, dg in records(index) if t == REC_PUT and dg == bytes.fromhex(key_hex)]
    return files[-1] if files else None


def intact_frames_of(dir, key_hex, magic=b"CASO"):
    """Object frames ("CASO" headers; "CASD": marked removed in place) of
    key_hex in dir's data files."""
    n = 0
    digest = bytes.fromhex(key_hex)
    for name in os.listdir(dir):
        if name.startswith("data-"):
            with open(os.path.join(dir, name), "rb") as f:
                b = f.read()
            at = b.find(magic)
            while at >= 0:
                if b[at + 32:at + 32 + len(digest)] == digest:
                    n += 1
                at = b.find(magic, at + 1)
    return n


class AdoptionOrder(TempDirTest):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.path.exists(FAULTLIB), f"fault library not built: {FAULTLIB}")
        self.assertTrue(os.path.exists(SHIFTLIB), f"clock shifter not built: {SHIFTLIB}")

    def layout(self, c, first, second):
        """One small object in each of the 50 data files of a fresh store,
        so that the next new frame goes to data file `first` and the one
        after it to `second` (a new object goes to the shortest file, the
        lowest-numbered first). Returns the objects."""
        objs = []
        for n in range(50):
            size = 100 if n == first else 200 if n == second else 1000
            d = os.urandom(size)
            self.assertEqual(c.put(d).status, 201)
            objs.append(d)
        return objs

    # ---- 6: the acknowledged re-PUT's frame and the stale entry -------------

    def test_reput_served_whatever_the_file_order(self):
        """PUT K (frame in file A), index copied, DELETE K, PUT K (frame in
        file B); stop or kill -9; the index restored from the copy or cut
        back to it; start, or fsck --repair then start: K is served at once
        and after another restart. B < A failed on the old start-up (404
        until a second restart); B > A and fsck --repair held before."""
        for order in ("lower", "higher"):
            for how, stop in (("backup", "stop"), ("cut", "kill")):
                for judge in ("start", "repair"):
                    with self.subTest(order=order, how=how, stop=stop, judge=judge):
                        self.reput_case(order, how, stop, judge)

    def reput_case(self, order, how, stop, judge):
        a, b = (30, 3) if order == "lower" else (3, 30)
        s = self.storaged(name=f"reput-{order}-{how}-{judge}")
        c = s.client()
        index = os.path.join(s.dir, "index")
        others = self.layout(c, a, b)
        d = os.urandom(20000)
        k = sha1(d)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(last_put_file(index, k), a)
        backup = os.path.join(self.tmp, "index.copy")
        shutil.copy(index, backup)
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        self.assertEqual(c.put(d).status, 201)
        self.assertEqual(last_put_file(index, k), b)
        c.close()
        if stop == "kill":
            s.kill9()
        else:
            self.assertEqual(s.stop(), 0)
        if how == "backup":
            shutil.copy(backup, index)
        else:
            os.truncate(index, os.path.getsize(backup))
        if judge == "repair":
            rc, out = fsck(s.dir, "--repair")
            self.assertEqual(rc, 0, out)
        for _ in range(2):
            s.start()
            c = s.client()
            g = c.get(k)
            self.assertEqual(g.status, 200, s.log_text()[-3000:])
            self.assertEqual(g.body, d)
            for o in others[:3] + others[-3:]:
                self.assertEqual(c.get(sha1(o)).body, o)
            c.close()
            self.assertEqual(s.stop(), 0)
        rc, out = fsck(s.dir)
        self.assertEqual(rc, 0, out)

    # ---- 7, 9, 8: a write the DELETE overtook -------------------------------

    def overtaken(self, name, w_file, w0_file, copy=False):
        """A fresh store where a write W of K (its frame in data file w_file,
        held at that file's sync) is overtaken: W0 = PUT K answered (frame in
        w0_file), DELETE K answered 204 (for a copy W: DELETE answered 404,
        the tombstone recorded), kill -9 while W is held. Returns the
        storaged (stopped, plain environment) and K's bytes."""
        gate = os.path.join(self.tmp, f"gate-{name}")
        env = {"LD_PRELOAD": FAULTLIB, "ASAN_OPTIONS": ASAN, "CAS_PAUSE_FILE": gate,
               "CAS_PAUSE_ONLY": f"/data-{w_file:02d}."}
        s = self.storaged(name=name, env=env)
        c = s.client()
        self.layout(c, w_file, w0_file)
        d = os.urandom(20000)
        k = sha1(d)
        with open(gate, "w") as f:
            f.write("0")  # hold W's data-file sync: its frame is written, never answered
        cw = s.client(timeout=60)
        q = "?replica=1" if copy else ""

        def send():
            try:
                cw.request("PUT", f"/objects/{k}{q}", body=d)
            except Exception:
                pass  # killed under it
        t = threading.Thread(target=send)
        t.start()
        wait_for(lambda: os.path.exists(gate + ".at"), 20, "W at its data-file sync")
        index = os.path.join(s.dir, "index")
        if copy:
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 404)
        else:
            self.assertEqual(c.put(d).status, 201)
            self.assertEqual(last_put_file(index, k), w0_file)
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        self.assertEqual(c.get(k).status, 404)
        c.close()
        s.kill9()
        t.join(30)
        os.unlink(gate)
        s.env = {}
        # The state under test: W's whole frame is there, unindexed (beside
        # W0's, which the DELETE's removal frame names).
        self.assertEqual(intact_frames_of(s.dir, k), 1 if copy else 2)
        self.assertEqual(intact_frames_of(s.dir, k, b"CASD"), 0)
        return s, d

    def assert_marked(self, s, d, copy=False):
        """W's frame is marked removed in place (W0's is left to its
        removal frame)."""
        self.assertEqual(intact_frames_of(s.dir, sha1(d)), 0 if copy else 1)
        self.assertEqual(intact_frames_of(s.dir, sha1(d), b"CASD"), 1)

    def test_lost_tomb_overtaken_write_stays_out(self):
        """The index cut by the DELETE's TOMB record (its DEL kept), or
        lost whole; start, or fsck --repair then start: K stays deleted and
        W's frame is marked removed. W's frame lower than the removal
        frame failed on the old code (start and repair), and with the index
        lost, fsck --repair failed in both orders."""
        for order in ("lower", "higher"):
            for lost in ("tomb", "index"):
                for judge in ("start", "repair"):
                    if lost == "index" and judge == "start":
                        continue  # start-up refuses a lost index (fsck --repair rebuilds it)
                    with self.subTest(order=order, lost=lost, judge=judge):
                        w_file, w0_file = (2, 7) if order == "lower" else (7, 2)
                        s, d = self.overtaken(f"tomb-{order}-{lost}-{judge}", w_file, w0_file)
                        k = sha1(d)
                        index = os.path.join(s.dir, "index")
                        if lost == "tomb":
                            recs = records(index)
                            self.assertEqual(recs[-1][0], REC_TOMB)
                            self.assertEqual(recs[-1][2], bytes.fromhex(k))
                            os.truncate(index, os.path.getsize(index) - 64)
                        else:
                            os.unlink(index)
                        if judge == "repair":
                            rc, out = fsck(s.dir, "--repair")
                            self.assertEqual(rc, 0, out)
                            back = [l for l in out.splitlines() if k in l and "put back" in l]
                            self.assertEqual(back, [], out)
                        s.start()
                        c = s.client()
                        self.assertEqual(c.get(k).status, 404, s.log_text()[-3000:])
                        # the tombstone is back: a copy is refused
                        r = c.request("PUT", f"/objects/{k}?replica=1", body=d)
                        self.assertEqual(r.status, 410, r.body)
                        c.close()
                        self.assertEqual(s.stop(), 0)
                        self.assert_marked(s, d)

    def test_refused_frame_not_adopted_after_tombstone_expires(self):
        """W's frame is refused by the tombstone at the first start (or by
        fsck --repair) and marked removed; the next start with the clock 8
        days ahead (the tombstone expired) leaves it out: K stays deleted.
        The old code indexed it then (K 200). Also for a copy (?replica=1)
        whose DELETE found nothing (404, tombstone recorded)."""
        cases = [("lower", "start", False), ("higher", "start", False),
                 ("lower", "repair", False), ("higher", "start", True)]
        for order, judge, copy in cases:
            with self.subTest(order=order, judge=judge, copy=copy):
                w_file, w0_file = (2, 7) if order == "lower" else (7, 2)
                s, d = self.overtaken(f"ttl-{order}-{judge}-{copy}", w_file, w0_file, copy=copy)
                k = sha1(d)
                if judge == "repair":
                    rc, out = fsck(s.dir, "--repair")
                    self.assertEqual(rc, 0, out)
                    self.assertIn("marked removed", out)
                else:
                    s.start()
                    c = s.client()
                    self.assertEqual(c.get(k).status, 404)
                    c.close()
                    self.assertEqual(s.stop(), 0)
                s.env = {"LD_PRELOAD": SHIFTLIB, "ASAN_OPTIONS": ASAN,
                         "CAS_TIMESHIFT_S": str(8 * DAY)}
                s.start()
                c = s.client()
                self.assertEqual(c.get(k).status, 404, s.log_text()[-3000:])
                self.assert_marked(s, d, copy)
                # A copy is taken now (410 while the tombstone was in
                # force: so the clock did move), and K is whole again.
                r = c.request("PUT", f"/objects/{k}?replica=1", body=d)
                self.assertIn(r.status, (200, 201), r.body)
                self.assertEqual(c.get(k).body, d)
                c.close()
                self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    import unittest
    unittest.main()
