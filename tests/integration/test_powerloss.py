"""test_powerloss.py - power cuts, not just kill -9: runs the crash-state
explorer (tests/crash/explore.py) on every workload with a small budget,
and checks the explorer's crash models on hand-made logs.

The explorer records each workload against a real storaged under the
LD_PRELOAD recorder, builds the directories a power cut could leave at
crash points of the log (strict and ext4 data=ordered models, see
docs/TESTING.md) and starts storaged on each: acknowledged objects must
read back byte for byte, acknowledged DELETEs and GC ends must stay done.
The full exploration is tests/crash/explore.sh."""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH = os.path.join(HERE, "..", "crash")
sys.path.insert(0, CRASH)
import explore  # noqa: E402

from harness import BUILD  # noqa: E402

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))


class ExplorerRuns(unittest.TestCase):
    def run_explorer(self, workloads, points, per_point, states):
        argv = [sys.executable, os.path.join(CRASH, "explore.py"), "--build", BUILD,
                "--max-points", str(points), "--per-point", str(per_point),
                "--budget-states", str(states), "--seconds", "200", "--seed", "7"]
        for w in workloads:
            argv += ["--workload", w]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, "violations (or a crash of the explorer):\n" + out[-6000:])
        last = [l for l in out.splitlines() if l.startswith("states built")]
        self.assertTrue(last, out[-3000:])
        checked = int(last[-1].split("checked ")[1].split()[0])
        return out, checked

    def test_puts_gc_scrub_and_restart_survive_power_cuts(self):
        n = 40 if SANITIZED else 150
        out, checked = self.run_explorer(["puts", "gc", "scrub", "restart"], 60, 6, n)
        self.assertGreaterEqual(checked, 2 * n, out[-3000:])

    def test_frames_indexed_again_or_refused_survive_power_cuts(self):
        # adopt: start-up and fsck --repair index frames a killed writer
        # left in the page cache: each data file is synced first (rule D1).
        # refused: a write a delete in flight refused 409 stays out.
        out, checked = self.run_explorer(["adopt", "refused"], 40, 4, 40)
        self.assertGreaterEqual(checked, 80, out[-3000:])

    def test_compaction_and_index_snapshot_survive_power_cuts(self):
        n = 40 if SANITIZED else 150
        out, checked = self.run_explorer(["compact", "snapshot"], 60, 6, n)
        self.assertGreaterEqual(checked, n, out[-3000:])


def ops_of(*recs):
    """Hand-made log records -> the explorer's model operations."""
    raw = []
    for i, (op, p1, p2, ino, a, b, data) in enumerate(recs):
        raw.append(dict(off=i * 100, op=op, isdir=1 if op in (explore.OP_FSYNC,) and p1 == "" else 0,
                        ino=ino, a=a, b=b, c=0, p1=p1, p2=p2, data=data))
    return explore.resolve(raw)


class CrashModels(unittest.TestCase):
    """The two models give what docs/TESTING.md says they give."""

    def log(self):
        O = os.O_CREAT | os.O_WRONLY
        return ops_of(
            (explore.OP_OPEN, "a", "", 10, O, 0, b""),        # 0 create a
            (explore.OP_WRITE, "a", "", 10, 0, 0, b"x" * 1024),  # 1 append
            (explore.OP_FDATASYNC, "a", "", 10, 0, 250, b""),  # 2 covers 0, 1
            (explore.OP_WRITE, "a", "", 10, 0, 0, b"y" * 1024),  # 3 overwrite
            (explore.OP_OPEN, "t", "", 11, O, 0, b""),        # 4 create t
            (explore.OP_WRITE, "t", "", 11, 0, 0, b"z"),       # 5
            (explore.OP_FSYNC, "t", "", 11, 0, 550, b""),      # 6 covers 4, 5
            (explore.OP_RENAME, "t", "b", 11, 0, 0, b""),      # 7
            (explore.OP_FSYNC, "", "", 1, 0, 850, b""),        # 8 dir: covers all before
        )

    def states(self, ops, p, model):
        import random
        return {explore.state_hash(explore.build(ops, p, keep, torn)): explore.build(ops, p, keep, torn)
                for _, keep, torn in explore.variants(ops, p, model, random.Random(1), 40)}

    def test_strict_loses_unsynced_directory_entries_and_data(self):
        ops = self.log()
        p = 7 + 1  # after the rename, before the directory fsync
        sts = list(self.states(ops, p, "strict").values())
        # Without a directory fsync, a, t and b may all be missing...
        self.assertIn({}, sts)
        # ...a may be there with the fsynced bytes and not the overwrite...
        self.assertTrue(any(st.get("a") == b"x" * 1024 and "b" not in st for st in sts))
        # ...or with the overwrite torn at a 512-byte boundary.
        self.assertTrue(any(st.get("a") == b"y" * 512 + b"x" * 512 for st in sts))
        # The rename persists whole or not at all.
        for st in sts:
            self.assertFalse("b" in st and "t" in st, st)

    def test_directory_fsync_makes_entries_durable(self):
        ops = self.log()
        sts = list(self.states(ops, len(ops), "strict").values())
        for st in sts:
            self.assertEqual(st.get("b"), b"z")
            self.assertNotIn("t", st)
            self.assertIn(st.get("a"), (b"x" * 1024, b"y" * 1024, b"y" * 512 + b"x" * 512), st)

    def test_ext4_keeps_metadata_in_order(self):
        ops = self.log()
        p = 7 + 1
        sts = list(self.states(ops, p, "ext4").values())
        # Every fsync commits the metadata before it: a and t exist.
        for st in sts:
            self.assertIn("a", st)
            self.assertTrue("t" in st or "b" in st, st)
        # The rename may be lost (not committed yet) or kept.
        self.assertTrue(any("t" in st for st in sts))
        self.assertTrue(any("b" in st for st in sts))


class Reconcile(unittest.TestCase):
    """A kill -9 between a call and its log record leaves the call unlogged:
    reconcile logs what the directory holds beyond the log."""

    def test_unlogged_calls_are_logged_after_the_kill(self):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            store = os.path.join(tmp, "s")
            os.makedirs(store)
            log = explore.Log(os.path.join(tmp, "log"))
            for name, logged, real in (("a", b"x" * 100, b"x" * 100 + b"y" * 50),  # unlogged append
                                       ("b", b"p" * 64, b"p" * 10 + b"q" * 4 + b"p" * 50),  # overwrite
                                       ("c", b"k" * 30, b"k" * 20)):  # unlogged cut
                with open(os.path.join(store, name), "wb") as f:
                    f.write(real)
                ino = os.stat(os.path.join(store, name)).st_ino
                log.record(explore.OP_OPEN, name, ino=ino, a=os.O_CREAT | os.O_WRONLY, b=0)
                log.record(explore.OP_WRITE, name, ino=ino, a=0, data=logged)
            with open(os.path.join(store, "d"), "wb") as f:  # unlogged create
                f.write(b"new")
            explore.reconcile(store, log)
            log.close()
            ops = explore.resolve(explore.parse_log(log.path))
            # With every call kept, the model gives what the directory holds.
            st = explore.build(ops, len(ops), set(range(len(ops))))
            want = {n: open(os.path.join(store, n), "rb").read() for n in "abcd"}
            self.assertEqual({n: st.get(n) for n in "abcd"}, want)
            # Only the difference was logged: the overwrite is 4 bytes at 10.
            w = [r for r in ops if r["kind"] == "write" and r["at"] == 10]
            self.assertEqual([r["data"] for r in w], [b"q" * 4])


if __name__ == "__main__":
    unittest.main()
