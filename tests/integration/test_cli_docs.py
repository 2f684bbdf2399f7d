"""test_cli_docs.py - ca-cas keeps the promises docs/CLI.md makes, on the
cases a reviewer found broken: a failed export leaves -o FILE as it was, a
--server URL with a query is refused and a malformed answer is never taken
for success, and bench refuses options that would make it touch objects it
did not write or run a load nobody asked for.

One storaged per test (harness.py), killed at the end; temp dirs removed.
"""
import hashlib
import http.server
import json
import os
import subprocess
import threading
import unittest

from test_cli import CliTest, ZERO_KEY


class TestExportFileOnFailure(CliTest):
    def test_missing_named_key_leaves_file_as_it_was(self):
        """docs/CLI.md "Output files": on any failure, object not found
        included, an existing FILE is left exactly as it was."""
        key = self.ok("put", self.write("f", os.urandom(5000))).strip()
        backup = os.path.join(self.tmp, "backup.tar")
        self.ok("export", "-o", backup)
        with open(backup, "rb") as f:
            before = f.read()
        for keys in ([ZERO_KEY], [key, ZERO_KEY]):
            rc, _, err = self.cas("export", *keys, "-o", backup)
            self.assertEqual(rc, 1, err)
            self.assertIn("not found", err)
            self.assertIn("left as it was", err)
            with open(backup, "rb") as f:
                self.assertEqual(f.read(), before, f"export {keys} replaced FILE")
            left = [n for n in os.listdir(self.tmp) if n.startswith("backup.tar.partial")]
            self.assertEqual(left, [], "a temporary file was left beside FILE")
        # A new FILE is not created either.
        fresh = os.path.join(self.tmp, "fresh.tar")
        rc, _, err = self.cas("export", ZERO_KEY, "-o", fresh)
        self.assertEqual(rc, 1, err)
        self.assertFalse(os.path.exists(fresh))
        # All keys found: FILE is replaced as before.
        self.ok("export", key, "-o", backup)


if __name__ == "__main__":
    unittest.main()
