"""test_cov_cli_main.py - the ca-cas tool's main() (ca-cas/main.c) and its
global set-up: --version, "help" and "help COMMAND", unknown commands, a
server, token or CA given through the environment that is unusable (exit 2,
the variable named), and an output that cannot be written (a full device:
exit 1, never a silent 0). No daemon is needed: every case stops before a
request, or is a command's --help.
"""
import json
import os
import subprocess
import tempfile
import unittest

from harness import CLI


def cas(*args, env=None, stdout=subprocess.PIPE):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CA_CAS_", "CAS_TOKEN"))}
    e.update(env or {})
    p = subprocess.run([CLI] + list(args), stdout=stdout, stderr=subprocess.PIPE, env=e, timeout=30)
    return p.returncode, p.stdout or b"", p.stderr.decode(errors="replace")


class CliMainTest(unittest.TestCase):
    def test_version(self):
        code, out, err = cas("--version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out.decode(), r"^ca-cas \S+\n$")

    def test_help_and_help_command(self):
        code, out, _ = cas("help")
        self.assertEqual(code, 0)
        self.assertIn(b"rebalance", out)
        # "ca-cas help put" is "ca-cas put --help"
        code, out, _ = cas("help", "put")
        code2, out2, _ = cas("put", "--help")
        self.assertEqual((code, out), (code2, out2))
        self.assertEqual(code, 0)
        self.assertIn(b"usage:", out)
        # no command: usage on stderr, exit 2
        code, out, err = cas()
        self.assertEqual(code, 2)
        self.assertEqual(out, b"")
        self.assertIn("rebalance", err)

    def test_unknown_command(self):
        code, out, err = cas("frobnicate")
        self.assertEqual(code, 2)
        self.assertIn('unknown command "frobnicate"', err)
        code, out, err = cas("help", "frobnicate")
        self.assertEqual(code, 2)
        self.assertIn('unknown command "frobnicate"', err)

    def test_environment_errors_name_the_variable(self):
        code, _, err = cas("status", env={"CA_CAS_SERVER": "ftp://x"})
        self.assertEqual(code, 2)
        self.assertIn("$CA_CAS_SERVER: ", err)
        code, _, err = cas("--server", "ftp://x", "status")
        self.assertEqual(code, 2)
        self.assertIn("--server: ", err)
        with tempfile.TemporaryDirectory(prefix="cas-test-") as tmp:
            bad = os.path.join(tmp, "absent.pem")
            code, _, err = cas("status", env={"CA_CAS_CACERT": bad})
            self.assertEqual(code, 2)
            self.assertIn("$CA_CAS_CACERT", err)
            code, _, err = cas("--cacert", bad, "status")
            self.assertEqual(code, 2)
            self.assertIn("--cacert", err)
            # a token that is good and a CA that is not: still refused (and
            # the token freed: the sanitizer build checks)
            tok = os.path.join(tmp, "tok")
            with open(tok, "w") as f:
                f.write("s3cret\n")
            code, _, err = cas("--token-file", tok, "--cacert", bad, "status")
            self.assertEqual(code, 2)
            self.assertIn("--cacert", err)
            code, _, err = cas("status", env={"CA_CAS_TOKEN_FILE": os.path.join(tmp, "none")})
            self.assertEqual(code, 2)
            self.assertIn("none", err)
        # --json makes the error JSON
        code, _, err = cas("--json", "status", env={"CA_CAS_SERVER": "ftp://x"})
        self.assertEqual(code, 2)
        self.assertIn("$CA_CAS_SERVER", json.loads(err)["error"])

    def test_output_that_cannot_be_written(self):
        if not os.path.exists("/dev/full"):
            self.fail("no /dev/full on this machine")
        with open("/dev/full", "wb") as full:
            code, _, err = cas("put", "--help", stdout=full)
        self.assertEqual(code, 1, err)
        self.assertIn("put: writing the output failed", err)
