"""test_cov_storaged_main.py - ca-cas-storaged's main(): every option error
exits 2 with a message naming the option and creates nothing; a store it
cannot make or open, or a port it cannot bind, exits 1; --help and --version
exit 0; SIGHUP without TLS is logged and changes nothing.

The daemon is run as a subprocess (main() is only reached that way); under
the sanitizer build (CAS_SANITIZED=1) LeakSanitizer turns a leak on any of
these ways out into a different exit status, so each test also checks that
every early exit frees what it took.
"""
import os
import signal
import subprocess

from harness import STORAGED, Client, TempDirTest, free_port, sha1, wait_for


def run(argv, env=None, timeout=30):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("CAS_") and k not in ("CAS_BUILD_DIR", "CAS_SANITIZED", "CAS_COVERAGE"):
            del e[k]
    e.update(env or {})
    return subprocess.run([STORAGED] + argv, capture_output=True, timeout=timeout, env=e)


class OptionErrorsTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.dir = os.path.join(self.tmp, "store")
        self.listen = ["--listen", f"127.0.0.1:{free_port()}"]

    def refused(self, argv, want, code=2, env=None):
        p = run(argv, env=env)
        what = f"{argv}: {p.stderr!r}"
        self.assertEqual(p.returncode, code, what)
        self.assertIn(want.encode(), p.stderr, what)
        self.assertTrue(p.stderr.startswith(b"ca-cas-storaged: "), what)
        return p

    def assert_nothing_made(self):
        self.assertFalse(os.path.exists(self.dir), "an option error created the store directory")

    def make_pki(self):
        """A self-signed certificate and its key (0600) in self.tmp."""
        cert, key = os.path.join(self.tmp, "c.pem"), os.path.join(self.tmp, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        os.chmod(key, 0o600)
        return cert, key

    def test_bad_values_name_the_option(self):
        d = ["--dir", self.dir] + self.listen
        self.refused(d + ["--log-level", "loud"], '--log-level "loud": want debug, info, warn or error')
        self.refused(d + ["--backend", "tape"], '--backend "tape": unknown; the backends are')
        self.refused(d + ["--hash", "md5"], '--hash "md5": want sha1 or sha256')
        self.refused(d + ["--threads", "0"], "want 1 <= --max-client-connections <= --threads")
        self.refused(d + ["--threads", "1000001"], "--threads <= 1000000")
        self.refused(d + ["--threads", "8", "--max-client-connections", "9"], "--max-client-connections <=")
        self.refused(d + ["--header-timeout", "0"], "timeouts from 1 to 86400 s")
        self.refused(d + ["--idle-timeout", "86401"], "timeouts from 1 to 86400 s")
        self.refused(d + ["--no-such-option"], "no-such-option")
        self.assert_nothing_made()

    def test_dir_is_required(self):
        p = self.refused(self.listen, "--dir (or CAS_DIR) is required")
        self.assertIn(b"usage: ca-cas-storaged --dir PATH", p.stderr)
        self.refused(["--dir", ""] + self.listen, "--dir (or CAS_DIR) is required")

    def test_environment_and_flag(self):
        # CAS_<NAME> is read; a flag wins over it.
        self.refused(self.listen, '--hash "md4"', env={"CAS_DIR": self.dir, "CAS_HASH": "md4"})
        self.refused(["--hash", "sha3"] + self.listen, '--hash "sha3"', env={"CAS_DIR": self.dir, "CAS_HASH": "md4"})
        self.assert_nothing_made()

    def test_token_file_refused(self):
        d = ["--dir", self.dir] + self.listen
        self.refused(d + ["--token-file", os.path.join(self.tmp, "absent")], "token file")
        empty = os.path.join(self.tmp, "empty")
        open(empty, "w").close()
        self.refused(d + ["--token-file", empty], "empty")
        self.refused(d + ["--auth-reads"], "--auth-reads needs --token-file")
        self.assert_nothing_made()

    def test_tls_options_go_together(self):
        cert, key = self.make_pki()
        d = ["--dir", self.dir] + self.listen
        self.refused(d + ["--tls-cert", cert], "--tls-cert and --tls-key go together")
        self.refused(d + ["--tls-key", key], "--tls-cert and --tls-key go together")
        self.refused(d + ["--tls-client-ca", cert], "--tls-client-ca needs them")
        self.refused(d + ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", os.path.join(self.tmp, "none")],
                     "--tls-client-ca")
        # The certificate given as the key: refused after the CA was read.
        self.refused(d + ["--tls-cert", cert, "--tls-key", cert, "--tls-client-ca", cert], "")
        # Errors found after the TLS files were loaded free them too (the
        # sanitizer build checks): a bad thread count, --auth-reads alone.
        self.refused(d + ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", cert, "--threads", "0"],
                     "--threads")
        self.refused(d + ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", cert, "--auth-reads"],
                     "--auth-reads needs --token-file")
        self.assert_nothing_made()

    def test_s3_needs_its_options(self):
        d = ["--dir", self.dir, "--backend", "s3"] + self.listen
        want = "--backend s3 needs --capacity BYTES, --s3-endpoint URL, --s3-bucket NAME and the keys"
        self.refused(d, want)
        self.refused(d + ["--capacity", "1G", "--s3-endpoint", "http://127.0.0.1:1", "--s3-bucket", "b"], want)
        keyf = os.path.join(self.tmp, "key")
        with open(keyf, "w") as f:
            f.write("AKIA\n")
        self.refused(d + ["--s3-access-key-file", os.path.join(self.tmp, "absent")],
                     "--s3-access-key-file: token file")
        self.refused(d + ["--s3-access-key-file", keyf, "--s3-secret-key-file", self.tmp],
                     "--s3-secret-key-file: token file")
        # Keys from the environment count; the endpoint is still missing.
        self.refused(d + ["--capacity", "1G", "--s3-bucket", "b"], want,
                     env={"CAS_S3_ACCESS_KEY": "a", "CAS_S3_SECRET_KEY": "s"})
        # Values the S3 client refuses before any request (exit 1: the
        # backend's own check); no node file is written.
        full = d + ["--capacity", "1G", "--s3-endpoint", "http://127.0.0.1:1", "--s3-bucket", "bkt"]
        keys = {"CAS_S3_ACCESS_KEY": "a", "CAS_S3_SECRET_KEY": "s"}
        self.refused(full + ["--s3-region", "us east 1"], '--s3-region "us east 1": want a region name',
                     code=1, env=keys)
        self.refused(full, "the S3 access key holds a ':'", code=1,
                     env={"CAS_S3_ACCESS_KEY": "a:b", "CAS_S3_SECRET_KEY": "s"})
        self.refused(d + ["--capacity", "1G", "--s3-endpoint", "http://127.0.0.1:1", "--s3-bucket", "B_"],
                     '--s3-bucket "B_": want 3 to 63 of a-z', code=1, env=keys)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "node")))

    def test_help_and_version(self):
        p = run(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"--dir", p.stdout + p.stderr)
        p = run(["--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"ca-cas-storaged", p.stdout + p.stderr)
        self.assert_nothing_made()


class StartFailuresTest(TempDirTest):
    def test_dir_that_cannot_be_made(self):
        blocker = os.path.join(self.tmp, "file")
        with open(blocker, "w") as f:
            f.write("x")
        p = run(["--dir", os.path.join(blocker, "sub", "store"), "--listen", f"127.0.0.1:{free_port()}"])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"cannot create directory", p.stderr)
        # A path that exists and is a file: created "already", not openable.
        p = run(["--dir", blocker, "--listen", f"127.0.0.1:{free_port()}"])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"cannot open {blocker}".encode(), p.stderr)
        with open(blocker) as f:
            self.assertEqual(f.read(), "x")

    def test_port_taken(self):
        s = self.storaged("s1")
        d = os.path.join(self.tmp, "s2")
        p = run(["--dir", d, "--listen", f"127.0.0.1:{s.port}", "--scrub-rate", "0"])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(str(s.port).encode(), p.stderr)
        # The first one still serves.
        self.assertEqual(s.client(10).request("GET", "/healthz").status, 200)

    def test_sighup_without_tls_keeps_serving(self):
        s = self.storaged("s1", extra=["--log-level", "info"])
        c = s.client(10)
        self.assertEqual(c.put(b"before hup").status, 201)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "no TLS configured, nothing to reload" in s.log_text(), 10, "the SIGHUP log line")
        self.assertTrue(s.running())
        self.assertEqual(Client("127.0.0.1", s.port, 10).get(sha1(b"before hup")).status, 200)
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(30), 0)
        self.assertIn("finishing requests in flight", s.log_text())
