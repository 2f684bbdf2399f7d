"""run.py - runs every integration test module (test_*.py) in this folder
against the daemons in $CAS_BUILD_DIR, and prints one closing line
"integration (T s): N passed, N failed, N skipped". Exit status 0 only if
nothing failed.

    python3 tests/integration/run.py                  # every module, one at a time
    python3 tests/integration/run.py --jobs 2         # two modules at a time (CI)
    python3 tests/integration/run.py test_storaged    # named modules or tests only

With --jobs N, each module runs in a process of its own, N at a time, the
biggest first; each of the N slots draws its loopback ports from its own
residue class (harness.free_port, $CAS_PORT_SLOT), so two modules never race
for one port. The modules in SERIAL assert wall-clock bounds or count
failures under steady traffic: they run afterwards, one at a time, on an
otherwise idle machine, as they were written to.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

# Modules whose assertions hold only on a machine they do not share:
# latency and fan-out bounds, stall deadlines, failure windows under
# traffic, races that need the traffic to be fast.
SERIAL = {
    "test_balancer_integrity",  # a dripping backend must not hold a GET 10 s
    "test_balancer_stalls",     # reads within 2 s of a frozen backend
    "test_declared_size",       # refused within 3 s
    "test_first_block",         # first byte within 5 s
    "test_frontends",           # no failed request through restarts
    "test_graceful_stop",       # the stop race needs fast traffic
    "test_hostile",             # a second client's latency under a storm
    "test_partial_failure",     # fan-outs within their bounds
    "test_prometheus",          # scrapes within deadlines
    "test_s3_backend",          # S3 stalls bounded
}


# A module that runs longer than this is hung: it is killed and fails (the
# longest takes about 90 s).
MODULE_TIMEOUT_S = 600


class TimedResult(unittest.TextTestResult):
    """Notes how long each test took (set-up and clean-up included)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.times = []

    def startTest(self, test):
        self._t = time.time()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times.append((test.id(), time.time() - self._t))


def run_here(names):
    """Runs the named modules or tests (all when none) in this process;
    returns (counts, times)."""
    loader = unittest.TestLoader()
    if names:
        suite = unittest.TestSuite(loader.loadTestsFromName(n) for n in names)
    else:
        suite = loader.discover(here, pattern="test_*.py", top_level_dir=here)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=TimedResult).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    counts = {"passed": result.testsRun - failed - skipped, "failed": failed, "skipped": skipped}
    return counts, result.times


def run_module_processes(modules, jobs):
    """Runs each module in a child process ("run.py --child MODULE"), `jobs`
    at a time; prints each one's output whole as it finishes. Returns the
    summed counts and every test's time."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    times = []
    pending = list(modules)
    running = {}  # slot -> (module, process, output file, start time)
    try:
        schedule(pending, running, jobs, counts, times)
    finally:
        # Interrupted (Ctrl-C, a CI cancel): the modules run in sessions of
        # their own, so end each, with the daemons it started.
        for module, p, out, started in running.values():
            end_module(p)
    return counts, times


def end_module(p):
    """Interrupts a module's process (its clean-ups stop its daemons), then
    kills its whole process group if it is still there after 20 s."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # what it left behind
    except ProcessLookupError:
        pass
    p.wait()


def schedule(pending, running, jobs, counts, times):
    """run_module_processes' loop: fills free slots, reaps finished or hung
    modules, adds their counts and times."""
    while pending or running:
        for slot in range(jobs):
            if slot not in running and pending:
                module = pending.pop(0)
                out = tempfile.TemporaryFile()
                env = dict(os.environ, CAS_PORT_SLOT=f"{slot}/{jobs}")
                # its own process group: a module past MODULE_TIMEOUT_S is
                # ended with every daemon it started
                p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", module],
                                     stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
                running[slot] = (module, p, out, time.time())
        time.sleep(0.05)
        for slot, (module, p, out, started) in list(running.items()):
            if p.poll() is None:
                if time.time() - started < MODULE_TIMEOUT_S:
                    continue
                end_module(p)
                print(f"FAIL: {module}: still running after {MODULE_TIMEOUT_S} s, killed")
            del running[slot]
            out.seek(0)
            text = out.read().decode(errors="replace")
            out.close()
            report = None
            for line in text.splitlines():
                if line.startswith("RESULT "):
                    report = json.loads(line[7:])
            sys.stdout.write("".join(l + "\n" for l in text.splitlines() if not l.startswith("RESULT ")))
            sys.stdout.flush()
            if report is None:  # the child died before it could report
                print(f"FAIL: {module}: its process ended with status {p.returncode} before reporting")
                counts["failed"] += 1
                continue
            for k in counts:
                counts[k] += report["counts"][k]
            times += [tuple(t) for t in report["times"]]


def main():
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        counts, times = run_here(args[1:])
        sys.stdout.flush()
        print("RESULT " + json.dumps({"counts": counts, "times": times}))
        return 0
    jobs = 1
    if args[:1] == ["--jobs"]:
        if len(args) < 2 or not args[1].isdigit() or int(args[1]) < 1:
            print("run.py: --jobs takes a whole number of at least 1", file=sys.stderr)
            return 2
        jobs, args = int(args[1]), args[2:]

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # so that the modules running are ended too
    signal.signal(signal.SIGTERM, interrupted)
    t0 = time.time()
    if args or jobs == 1:
        counts, times = run_here(args)
    else:
        modules = sorted((f[:-3] for f in os.listdir(here) if f.startswith("test_") and f.endswith(".py")),
                         key=lambda m: -os.path.getsize(os.path.join(here, m + ".py")))
        counts, times = run_module_processes([m for m in modules if m not in SERIAL], jobs)
        more, more_times = run_module_processes([m for m in modules if m in SERIAL], 1)
        counts = {k: counts[k] + more[k] for k in counts}
        times += more_times
    # The slowest tests, to keep the suite within its time budget (25 min
    # for everything on 2 cores: docs/TESTING.md).
    slow = sorted(times, key=lambda t: -t[1])[:10]
    print("slowest: " + ", ".join(f"{name.split('.', 1)[-1]} {secs:.0f} s" for name, secs in slow))
    modules = {}
    for name, secs in times:
        modules[name.split(".", 1)[0]] = modules.get(name.split(".", 1)[0], 0) + secs
    top = sorted(modules.items(), key=lambda m: -m[1])[:12]
    print("slowest modules: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in top))
    print(f"integration ({time.time() - t0:.0f} s): {counts['passed']} passed, "
          f"{counts['failed']} failed, {counts['skipped']} skipped")
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
