"""run.py - runs every integration test module (test_*.py) in this folder
against the daemons in $CAS_BUILD_DIR, and prints one closing line
"N passed, N failed, N skipped". Exit status 0 only if nothing failed.
Run one module with: python3 tests/integration/run.py test_storaged
"""
import os
import sys
import time
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


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


def main():
    names = sys.argv[1:]
    loader = unittest.TestLoader()
    if names:
        suite = unittest.TestSuite(loader.loadTestsFromName(n) for n in names)
    else:
        suite = loader.discover(here, pattern="test_*.py", top_level_dir=here)
    t0 = time.time()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=TimedResult).run(suite)
    # The slowest tests, to keep the suite within its time budget (25 min
    # for everything on 2 cores: docs/TESTING.md).
    slow = sorted(result.times, key=lambda t: -t[1])[:10]
    print("slowest: " + ", ".join(f"{name.split('.', 1)[-1]} {secs:.0f} s" for name, secs in slow))
    modules = {}
    for name, secs in result.times:
        modules[name.split(".", 1)[0]] = modules.get(name.split(".", 1)[0], 0) + secs
    top = sorted(modules.items(), key=lambda m: -m[1])[:12]
    print("slowest modules: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in top))
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"integration ({time.time() - t0:.0f} s): {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
