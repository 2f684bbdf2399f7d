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


class TestPutWithAnotherHash(CliTest):
    def test_put_hash_other_than_the_servers_says_so(self):
        """put --hash sha256 to a sha1 store, data on a pipe (stored by POST,
        the server's key): the error says the algorithms differ and under
        which key the data now is, not that the bytes hash wrong."""
        data = os.urandom(3000)
        rc, out, err = self.cas("put", "--hash", "sha256", input=data)
        self.assertEqual(rc, 1, err)
        key = hashlib.sha1(data).hexdigest()
        self.assertIn(f"the server's keys are sha1 but --hash is sha256: it stored the data as {key}",
                      err)
        self.assertNotIn("hashes to", err)


class _NotOurServer(http.server.BaseHTTPRequestHandler):
    """Answers 200 to everything with a body that is not the SPEC's: a
    Cask-style upload answer to every POST, {} to every GET."""

    def _answer(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer("{}")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        self._answer('{"key":"0123456789abcdef","success":true}\n')

    def log_message(self, *a):
        pass


class TestMalformedAnswers(CliTest):
    def test_server_url_with_query_or_fragment_is_refused(self):
        """Paths appended after a query would all go to "/"."""
        for bad in (self.server + "?x=1", self.server + "/?x=1", self.server + "#f"):
            for args in (["put", self.write("f", b"x" * 500)], ["capacity"], ["end-gc", "5"]):
                rc, out, err = self.cas(*args, server=bad)
                self.assertEqual(rc, 2, f"{bad} {args}: {err}")
                self.assertIn("query", err)
                self.assertEqual(out, b"")

    def not_our_server(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOurServer)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    def test_answers_that_are_not_the_servers_are_not_success(self):
        url = self.not_our_server()
        f = self.write("f", os.urandom(500))
        rc, out, err = self.cas("put", f, server=url)
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, b"", "put printed a key for a file it never stored")
        self.assertIn("not asked", err)
        rc, out, err = self.cas("end-gc", "5", server=url)
        self.assertEqual(rc, 1, err)
        self.assertNotIn(b"removed", out)
        self.assertIn("removed", err)
        rc, out, err = self.cas("mark-gc", "a" * 40, server=url)
        self.assertEqual(rc, 1, err)
        self.assertIn("unmarked", err)
        # The real server's answers still go through.
        self.assertEqual(self.ok("put", f).strip(), hashlib.sha1(open(f, "rb").read()).hexdigest())


if __name__ == "__main__":
    unittest.main()
