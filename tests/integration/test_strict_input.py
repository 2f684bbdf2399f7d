"""test_strict_input.py - numbers and forms from outside are parsed strictly,
the same way on the storaged and the balancer.

- GC ids: "-1", " -1", "+1", "", "0", overflowing numbers, "0x10", "1e3"
  are 400 on /gc/begin and /gc/end, and change nothing (no cycle begins, none
  ends); a malformed begin and a malformed end never name the same cycle.
- query numbers (min_size, max_size) and yes/no parameters (?wait=, ?sync=)
  take exactly digits, or exactly 0 or 1.
- options and configs: no sign, no space, no inf/nan (max_mbps: inf made
  /status invalid JSON).
- Cask's multipart POST /: a body without its
  closing delimiter, two parts named "file", or a field named "File" is 400
  with nothing stored; a whole form stores exactly the file part, with the
  same key from both daemons.
"""
import hashlib
import json
import os
import subprocess
import time
import unittest
import warnings

from harness import BALANCERD, STORAGED, Client, TempDirTest, sha1
from test_balancerd import Balancer

BAD_IDS = ["-1", "%20-1", "+1", "", "0", "18446744073709551616", "99999999999999999999999",
           "0x10", "1e3", "1%20", "%2B1", "1.0"]


class StrictInput(TempDirTest):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)
        self.s = self.storaged(extra=["--capacity", "64G"])
        cfg = os.path.join(self.tmp, "b.yaml")
        with open(cfg, "w") as f:
            f.write(f"replicas: 1\nbackends:\n  - url: {self.s.url}\n    failure_domain: a\n")
        self.b = Balancer(cfg, self.tmp)
        self.daemons.append(self.b)
        self.b.start()
        self.b.wait_backends(1)
        self.sc = self.s.client()
        self.bc = self.b.client()

    def both(self):
        return (("storaged", self.sc), ("balancer", self.bc))

    def stored_count(self):
        return self.sc.request("GET", "/capacity").json()["objects"]

    def test_gc_ids(self):
        kept = os.urandom(1000)
        self.assertEqual(self.bc.put(kept).status, 201)
        for who, c in self.both():
            for bad in BAD_IDS:
                with self.subTest(daemon=who, id=bad):
                    r = c.request("POST", f"/gc/begin?id={bad}")
                    self.assertEqual(r.status, 400, r.body)
                    self.assertIn("error", r.json())
                    self.assertFalse(self.sc.request("GET", "/gc").json()["active"])
        # A real cycle: malformed ends are 400 and do not end it.
        r = self.bc.request("POST", "/gc/begin?id=18446744073709551615")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["id"], "18446744073709551615")
        self.assertEqual(self.bc.request("POST", "/gc/mark", body=sha1(kept) + "\n").status, 200)
        for who, c in self.both():
            for bad in BAD_IDS + ["18446744073709551614"]:
                with self.subTest(daemon=who, end=bad):
                    r = c.request("POST", f"/gc/end?id={bad}")
                    self.assertIn(r.status, (400, 409), r.body)
                    if bad in BAD_IDS:
                        self.assertEqual(r.status, 400, r.body)
                    self.assertTrue(self.sc.request("GET", "/gc").json()["active"])
        r = self.bc.request("POST", "/gc/end?id=18446744073709551615")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.bc.get(sha1(kept)).body, kept)

    def test_query_numbers(self):
        self.assertEqual(self.sc.put(b"x" * 100).status, 201)
        for who, c in self.both():
            for q in ("min_size=-1", "min_size=%20-1", "min_size=+1", "min_size=", "max_size=1e3",
                      "max_size=18446744073709551616", "min_size=0x10", "state=Live",
                      "state=dead"):
                with self.subTest(daemon=who, query=q):
                    self.assertEqual(c.request("GET", f"/objects?{q}").status, 400)
            r = c.request("GET", "/objects?min_size=100&max_size=18446744073709551615")
            self.assertEqual(r.status, 200)
            self.assertIn(sha1(b"x" * 100), r.body.decode())

    def test_repeated_parameters_refused(self):
        for who, c in self.both():
            with self.subTest(daemon=who):
                r = c.request("POST", "/gc/begin?id=77&id=78")
                self.assertEqual(r.status, 400, r.body)
                self.assertIn("given more than once", r.json()["error"])
                self.assertFalse(c.request("GET", "/gc").json()["active"])
                for q in ("state=live&state=garbage", "min_size=1&min_size=2"):
                    self.assertEqual(c.request("GET", f"/objects?{q}").status, 400, q)
                self.assertEqual(c.request("GET", "/objects?state=live&min_size=1").status, 200)

    def test_yes_no_parameters(self):
        for who, c in self.both():
            for v in ("yes", "2", "", "%201", "true"):
                with self.subTest(daemon=who, wait=v):
                    self.assertEqual(c.request("POST", f"/compact?wait={v}").status, 400)
                data = os.urandom(500)
                with self.subTest(daemon=who, sync=v):
                    r = c.put(data, query=f"?sync={v}")
                    self.assertEqual(r.status, 400, r.body)
                    self.assertEqual(self.sc.get(sha1(data)).status, 404)
            data = os.urandom(600)
            self.assertEqual(c.put(data, query="?sync=0").status, 201)
            self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
            # An object already stored: the same 400, not "already stored"
            # (found by an attacking session: the storaged answered 200).
            for v in ("yes", "2", "", "01", "1%00"):
                with self.subTest(daemon=who, stored=True, sync=v):
                    r = c.put(data, query=f"?sync={v}")
                    self.assertEqual(r.status, 400, r.body)
        for v in ("x", "2", "", "01"):
            with self.subTest(stored=True, replica=v):
                r = self.sc.put(data, query=f"?replica={v}")
                self.assertEqual(r.status, 400, r.body)

    def test_head_ignores_range(self):
        """Range is for GET only (RFC 9110 14.2): HEAD answers 200 with the
        whole object's length on both daemons (the storaged answered 206)."""
        data = os.urandom(3000)
        self.assertEqual(self.sc.put(data).status, 201)
        for who, c in self.both():
            with self.subTest(daemon=who):
                r = c.request("HEAD", f"/objects/{sha1(data)}", headers={"Range": "bytes=0-9"})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Content-Length"), "3000")
                self.assertIsNone(r.header("Content-Range"))

    # ---- Cask multipart ----------------------------------------------------

    def form(self, parts, close=True, boundary="XyZ"):
        body = b""
        for name, data in parts:
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                     f"filename=\"f\"\r\n\r\n").encode() + data + b"\r\n"
        if close:
            body += f"--{boundary}--\r\n".encode()
        return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def assert_refused(self, path, body, headers, want):
        before = self.stored_count()
        for who, c in self.both():
            with self.subTest(daemon=who, path=path, want=want):
                r = c.request("POST", path, body=body, headers=headers)
                self.assertEqual(r.status, 400, r.body)
                self.assertIn(want, r.json()["error"])
        self.assertEqual(self.stored_count(), before)

    def test_multipart_refusals(self):
        a, b = os.urandom(100_000), os.urandom(5000)
        # POST /local/ takes the raw body, as POST /objects (SPEC): only
        # POST / reads forms.
        for path in ("/",):
            body, h = self.form([("file", a)], close=False)
            self.assert_refused(path, body, h, "closing boundary")
            self.assert_refused(path, body[:50_000], h, "closing boundary")
            body, h = self.form([("file", a)])
            self.assert_refused(path, body[:-4], h, "closing boundary")
            body, h = self.form([("file", a), ("file", b)])
            self.assert_refused(path, body, h, "two parts named \"file\"")
            body, h = self.form([("File", a)])
            self.assert_refused(path, body, h, "no part named \"file\"")
            body, h = self.form([("files", a)])
            self.assert_refused(path, body, h, "no part named \"file\"")
            self.assert_refused(path, b"--XyZ\r\n", {"Content-Type": "multipart/form-data"},
                                "without a boundary")
            body, h = self.form([("file", b"ab\r\n--XyZ" + b"junk")])
            self.assert_refused(path, body, h, "malformed multipart delimiter")

    def test_multipart_same_answer_on_both(self):
        # The boundary without its CRLF, a delimiter's prefix, CR/LF at the
        # edges: all payload.
        payload = (b"--XyZ\r\n\n--XyZ\r--XyZ\r\n--Xy\r" + os.urandom(70_000) + b"\r\n-")
        body, h = self.form([("note", b"skipped"), ("file", payload), ("other", b"x")])
        keys = []
        for who, c in self.both():
            r = c.request("POST", "/", body=body, headers=h)
            self.assertEqual(r.status, 201, r.body)
            keys.append(r.json()["key"])
        self.assertEqual(keys, ["sha1:" + sha1(payload)] * 2)
        self.assertEqual(self.sc.get(sha1(payload)).body, payload)

    # ---- options and configs ----------------------------------------------

    def test_options_and_config(self):
        for opt in ("--threads=+4", "--threads= 4", "--threads=-1", "--scrub-rate=1e3",
                    "--max-object-size=-1", "--threads=18446744073709551616"):
            with self.subTest(option=opt):
                p = subprocess.run([STORAGED, "--dir", os.path.join(self.tmp, "x"), opt],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, p.stderr)
        for v in ("inf", "nan", "-5", "1e400", "' 5'", "0x10"):
            with self.subTest(max_mbps=v):
                cfg = os.path.join(self.tmp, "bad.yaml")
                with open(cfg, "w") as f:
                    f.write(f"replicas: 1\nbackends:\n  - url: {self.s.url}\n"
                            f"    failure_domain: a\nanti_entropy:\n  interval: 1h\n"
                            f"  max_mbps: {v}\n")
                p = subprocess.run([BALANCERD, "--config", cfg, "--listen", "127.0.0.1:1"],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("bad.yaml:7:13:", p.stderr)
        st = self.bc.request("GET", "/status")
        json.loads(st.body)  # always valid JSON


if __name__ == "__main__":
    unittest.main()


class ListenAddresses(TempDirTest):
    """A listen address is checked before anything else: a typo is a usage
    error (exit 2) that creates no store; a port is digits up to 65535,
    never taken modulo 65536 or as a service name."""

    def test_bad_listen_is_refused_before_anything(self):
        for bad in ("127.0.0.1:70000", "127.0.0.1:http", "localhost", "127.0.0.1:", "127.0.0.1:-1"):
            d = os.path.join(self.tmp, "store")
            p = subprocess.run([STORAGED, "--dir", d, "--listen", bad], capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn("--listen: bad listen address", p.stderr)
            self.assertFalse(os.path.exists(d), f"{bad}: a store was made")
            cfg = os.path.join(self.tmp, "b.yaml")
            with open(cfg, "w") as fh:
                fh.write("replicas: 1\nbackends:\n  - url: http://127.0.0.1:1\n    failure_domain: a\n")
            p = subprocess.run([BALANCERD, "--config", cfg, "--listen", bad], capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn("--listen: bad listen address", p.stderr)
            with open(cfg, "w") as fh:
                fh.write(f"listen: '{bad}'\nreplicas: 1\nbackends:\n"
                         "  - url: http://127.0.0.1:1\n    failure_domain: a\n")
            p = subprocess.run([BALANCERD, "--config", cfg], capture_output=True, text=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn(f"{cfg}:1:9: listen: bad listen address", p.stderr)

    def test_bad_spool_dir_is_refused_at_start(self):
        # POST bodies are spooled there: a missing or non-folder spool dir
        # is a usage error at start, not a 500 on every POST.
        cfg = os.path.join(self.tmp, "b.yaml")
        with open(cfg, "w") as fh:
            fh.write("replicas: 1\nbackends:\n  - url: http://127.0.0.1:1\n    failure_domain: a\n")
        afile = os.path.join(self.tmp, "afile")
        open(afile, "w").close()
        for bad, why in ((os.path.join(self.tmp, "none"), "No such file or directory"),
                         (afile, "not a folder")):
            p = subprocess.run([BALANCERD, "--config", cfg, "--listen", "127.0.0.1:0",
                                "--spool-dir", bad], capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(f"--spool-dir {bad}: {why}", p.stderr)


class QueryParameters(TempDirTest):
    def test_unknown_listing_parameter_and_case_twins_are_refused(self):
        s = self.storaged("s1")
        cfg = os.path.join(self.tmp, "b.yaml")
        with open(cfg, "w") as fh:
            fh.write(f"replicas: 1\nbackends:\n  - url: {s.url}\n    failure_domain: a\n")
        b = Balancer(cfg, self.tmp)
        self.daemons.append(b)
        b.start()
        b.wait_backends(1)
        data = os.urandom(1000)
        self.assertEqual(s.client().put(data, sha1(data)).status, 201)
        for port in (s.port, b.port):
            c = Client("127.0.0.1", port, 10)
            self.assertEqual(c.request("GET", "/objects?state=live&min_size=1").status, 200)
            r = c.request("GET", "/objects?stat=garbage")
            self.assertEqual(r.status, 400, port)
            self.assertIn('unknown query parameter \\"stat\\"', r.body.decode())
            self.assertNotIn(sha1(data), r.body.decode())
            r = c.request("POST", "/gc/end?id=1&ID=2")
            self.assertEqual(r.status, 400, port)
            self.assertIn("given more than once", r.body.decode())
