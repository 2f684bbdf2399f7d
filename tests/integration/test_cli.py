"""test_cli.py - the ca-cas command-line tool against real daemons on loopback.

Every command is driven through the real binary: round trips of empty, small
and multi-GiB objects (compared with sha1sum), stdin and files, a full GC
cycle done only with the CLI, exit codes and messages for the usual
failures, fsck on healthy and damaged stores, bench, and the same against a
balancer when ca-cas-balancerd is built. Daemons are started by harness.py,
tracked by PID and killed at the end of each test; temp dirs are removed.

CAS_CLI_BIG_GIB sets the size of the big round trip (default 2, 0.25 under the
sanitizers; 0 skips it).
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest

from harness import BALANCERD, CLI, Daemon, TempDirTest, free_port, recv_head

# Past 2^31 (2 GiB and a tail) on the plain build; a quarter GiB under the
# sanitizers, as in test_export_import and test_frontends, to keep the
# suite's time (CAS_CLI_BIG_GIB overrides).
BIG_GIB = float(os.environ.get("CAS_CLI_BIG_GIB", "0.25" if os.environ.get("CAS_SANITIZED") else "2"))
ZERO_KEY = "0" * 40


def sha1_file(path):
    out = subprocess.run(["sha1sum", path], capture_output=True, check=True, text=True).stdout
    return out.split()[0]


class CliTest(TempDirTest):
    """One storaged per test and a helper that runs ca-cas against it."""

    extra = []

    def setUp(self):
        super().setUp()
        self.sd = self.storaged(extra=self.extra)
        self.server = self.sd.url

    def cas(self, *args, input=None, server=None, check=None, env=None, timeout=600):
        """Runs ca-cas; returns (exit code, stdout bytes, stderr text)."""
        argv = [CLI, "--server", server or self.server] + [str(a) for a in args]
        e = dict(os.environ)
        e.pop("CA_CAS_SERVER", None)
        e.pop("CAS_TOKEN_FILE", None)
        e.update(env or {})
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=e,
                           stdin=None if input is not None else subprocess.DEVNULL)
        err = p.stderr.decode(errors="replace")
        if check is not None:
            self.assertEqual(p.returncode, check, f"ca-cas {' '.join(map(str, args))}: {err}")
        return p.returncode, p.stdout, err

    def cas_rss(self, *args):
        """Runs ca-cas; returns (exit code, stdout text, peak RSS in KiB or 0).
        GNU time measures it: a child forked from this Python process would
        count Python's own memory until its exec."""
        argv = [CLI, "--server", self.server] + [str(a) for a in args]
        rss_file = os.path.join(self.tmp, "rss")
        timed = os.path.exists("/usr/bin/time")
        if timed:
            argv = ["/usr/bin/time", "-o", rss_file, "-f", "%M"] + argv
        p = subprocess.run(argv, capture_output=True)
        rss = 0
        if timed:
            with open(rss_file) as f:
                rss = int(f.read().split()[-1])
        return p.returncode, p.stdout.decode(), rss

    def ok(self, *args, **kw):
        return self.cas(*args, check=0, **kw)[1].decode()

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def capacity(self):
        return json.loads(self.ok("--json", "capacity"))


class TestObjects(CliTest):
    def test_round_trip_files_and_stdin(self):
        blobs = {"empty": b"", "small": b"hello, world\n", "mid": os.urandom(3 * 1024 * 1024 + 17)}
        paths = [self.write(n, d) for n, d in blobs.items()]
        keys = self.ok("put", *paths).split()
        self.assertEqual(keys, [hashlib.sha1(d).hexdigest() for d in blobs.values()])
        for path, key in zip(paths, keys):
            out = os.path.join(self.tmp, "out-" + key)
            self.ok("get", key, "-o", out)
            self.assertEqual(sha1_file(out), sha1_file(path))
            _, data, _ = self.cas("get", key, check=0)
            self.assertEqual(hashlib.sha1(data).hexdigest(), key)
        # several keys concatenate, in order
        _, data, _ = self.cas("get", keys[2], keys[1], check=0)
        self.assertEqual(data, blobs["mid"] + blobs["small"])
        # a pipe on stdin (POST, hashed on the way) and a file on stdin (PUT)
        piped = os.urandom(200000)
        self.assertEqual(self.ok("put", input=piped).strip(), hashlib.sha1(piped).hexdigest())
        with open(paths[1], "rb") as f:
            p = subprocess.run([CLI, "--server", self.server, "put", "-"], stdin=f,
                               capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode().strip(), keys[1])
        # ranges
        _, part, _ = self.cas("get", keys[2], "--offset", 1000, "--size", 5000, check=0)
        self.assertEqual(part, blobs["mid"][1000:6000])
        _, tail, _ = self.cas("get", keys[2], "--offset", len(blobs["mid"]) - 10, check=0)
        self.assertEqual(tail, blobs["mid"][-10:])
        # offset + size past 2^64 means "to the end", never a wrapped range
        # (found by an attacking session: exit 0 with nothing written)
        _, part, _ = self.cas("get", keys[2], "--offset", 10, "--size", 2**64 - 2, check=0)
        self.assertEqual(part, blobs["mid"][10:])
        rc, part, _ = self.cas("get", keys[2], "--offset", 2**64 - 1, "--size", 2, check=None)
        self.assertEqual((rc, part), (1, b""))
        # prefixed and upper-case keys are accepted
        _, data, _ = self.cas("get", "sha1:" + keys[1].upper(), check=0)
        self.assertEqual(data, blobs["small"])

    def test_put_skips_stored_objects(self):
        a = self.write("a", b"a" * 1000)
        b = self.write("b", b"b" * 1000)
        first = json.loads(self.ok("--json", "put", a))
        self.assertTrue(first[0]["uploaded"])
        again = json.loads(self.ok("--json", "put", a, b, a))
        self.assertEqual([x["uploaded"] for x in again], [False, True, False])
        self.assertEqual(again[1]["key"], hashlib.sha1(b"b" * 1000).hexdigest())
        self.assertEqual(again[1]["size"], 1000)

    def test_stat_missing_rm_list(self):
        data = {n: os.urandom(n) for n in (10, 1000, 100000)}
        keys = {n: self.ok("put", self.write(f"f{n}", d)).strip() for n, d in data.items()}
        out = self.ok("stat", keys[1000])
        self.assertEqual(out.split(), [keys[1000], "1000"])
        code, out, err = self.cas("stat", keys[10], ZERO_KEY)
        self.assertEqual(code, 1)
        self.assertIn(f"{ZERO_KEY} missing", out.decode())
        st = json.loads(self.ok("--json", "stat", keys[100000]))
        self.assertEqual(st, [{"key": keys[100000], "present": True, "size": 100000}])

        listed = self.ok("list", "--long").split("\n")
        self.assertEqual(sorted(x for x in listed if x),
                         sorted(f"{keys[n]} {n}" for n in data))
        self.assertEqual(sorted(self.ok("list").split()), sorted(keys.values()))
        mid = self.ok("list", "--min-size", 11, "--max-size", 100000).split()
        self.assertEqual(mid, [keys[1000]])
        js = json.loads(self.ok("--json", "list", "--min-size", "50K"))
        self.assertEqual(js, [{"key": keys[100000], "size": 100000}])

        stdin = "\n".join([keys[10], ZERO_KEY, "1" * 40, ""])
        self.assertEqual(sorted(self.ok("missing", input=stdin).split()), [ZERO_KEY, "1" * 40])
        self.assertEqual(json.loads(self.ok("--json", "missing", input=keys[10] + "\n")), [])

        self.ok("rm", keys[10])
        code, _, err = self.cas("rm", keys[10])
        self.assertEqual(code, 1)
        self.assertIn("not found", err)
        self.assertNotIn(keys[10], self.ok("list"))

    def test_json_outputs(self):
        path = self.write("x", b"xyz")
        put = json.loads(self.ok("--json", "put", path))
        self.assertEqual(put[0]["key"], hashlib.sha1(b"xyz").hexdigest())
        cap = self.capacity()
        for f in ("total", "available", "unreclaimed", "garbage", "objects", "bytes"):
            self.assertIsInstance(cap[f], int, f)
        self.assertEqual(cap["objects"], 1)
        status = json.loads(self.ok("--json", "status"))
        self.assertIsInstance(status, dict)
        text = self.ok("status")
        self.assertIn("objects: 1", text)
        out = os.path.join(self.tmp, "o")
        g = json.loads(self.ok("--json", "get", put[0]["key"], "-o", out))
        self.assertEqual(g["bytes"], 3)

    def test_capacity_text(self):
        self.ok("put", self.write("x", b"0123456789"))
        text = self.ok("capacity")
        labels = [line.split()[0] for line in text.strip().split("\n")]
        self.assertEqual(labels, ["total", "available", "unreclaimed", "garbage", "objects", "bytes"])
        self.assertRegex(text, r"(?m)^objects\s+1$")
        self.assertRegex(text, r"(?m)^bytes\s+10 \(10 B\)$")


class TestGc(CliTest):
    def test_full_cycle_with_cli_only(self):
        blobs = [os.urandom(50000 + i) for i in range(10)]
        paths = [self.write(f"g{i}", d) for i, d in enumerate(blobs)]
        keys = self.ok("put", *paths).split()
        keep, drop = keys[:4], keys[4:]
        before = self.capacity()
        self.assertEqual(before["objects"], 10)

        gc_id = self.ok("begin-gc").strip()
        self.assertRegex(gc_id, r"^\d+$")
        self.assertEqual(sorted(self.ok("list", "--garbage").split()), sorted(keys))
        out = self.ok("mark-gc", input="\n".join(keep) + "\n")
        self.assertIn("4 keys sent, 4 copies unmarked", out)
        self.assertEqual(sorted(self.ok("list", "--garbage").split()), sorted(drop))
        garbage = sum(len(blobs[i]) for i in range(4, 10))
        self.assertEqual(self.capacity()["garbage"], garbage)

        code, _, err = self.cas("end-gc", int(gc_id) + 1)
        self.assertEqual(code, 1)
        self.assertIn("409", err)
        out = self.ok("end-gc", gc_id)
        self.assertIn("removed 6 objects", out)
        self.assertEqual(sorted(self.ok("list").split()), sorted(keep))

        mid = self.capacity()
        self.assertGreaterEqual(mid["unreclaimed"], garbage)
        self.assertEqual(mid["objects"], 4)
        out = self.ok("compact")
        self.assertIn("compaction finished", out)
        after = self.capacity()
        self.assertEqual(after["unreclaimed"], 0)
        self.assertEqual(after["garbage"], 0)
        self.assertEqual(after["objects"], 4)
        self.assertEqual(after["bytes"], sum(len(blobs[i]) for i in range(4)))
        # (available is not compared: the file system is shared with other work)
        for i in range(4):
            _, data, _ = self.cas("get", keys[i], check=0)
            self.assertEqual(data, blobs[i])

    def test_mark_gc_a_million_keys(self):
        kept = self.ok("put", self.write("k", b"kept")).strip()
        gc_id = self.ok("begin-gc").strip()
        # a million keys, nearly all not stored, streamed through stdin
        lines = [f"{i:040x}" for i in range(1, 1000000)] + [kept]
        t0 = time.time()
        out = json.loads(self.ok("--json", "mark-gc", input="\n".join(lines) + "\n"))
        self.assertEqual(out, {"keys": 1000000, "unmarked": 1})
        self.assertLess(time.time() - t0, 120)
        self.ok("end-gc", gc_id)
        self.assertEqual(self.ok("list").split(), [kept])

    def test_mark_gc_bad_key_names_the_line(self):
        self.ok("begin-gc")
        code, _, err = self.cas("mark-gc", input=ZERO_KEY + "\nnope\n")
        self.assertEqual(code, 2)
        self.assertIn("stdin line 2", err)
        self.assertIn("nope", err)


class TestErrors(CliTest):
    def test_missing_object(self):
        code, out, err = self.cas("get", ZERO_KEY)
        self.assertEqual(code, 1)
        self.assertEqual(out, b"")
        self.assertIn(ZERO_KEY, err)
        self.assertIn("not found", err)
        self.assertIn("404", err)
        dest = os.path.join(self.tmp, "never")
        self.assertEqual(self.cas("get", ZERO_KEY, "-o", dest)[0], 1)
        self.assertFalse(os.path.exists(dest), "no partial output file is left")

    def test_bad_key(self):
        for cmd in ("get", "stat", "rm"):
            code, _, err = self.cas(cmd, "not-a-key")
            self.assertEqual(code, 2, cmd)
            self.assertIn('bad key "not-a-key"', err)
        code, _, err = self.cas("get", "md5:" + "0" * 32)
        self.assertEqual(code, 2)
        self.assertIn("prefix", err)

    def test_dead_server(self):
        port = free_port()
        code, _, err = self.cas("capacity", server=f"127.0.0.1:{port}")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach server", err)
        self.assertIn(str(port), err)
        code, _, err = self.cas("put", self.write("d", b"d"), server=f"127.0.0.1:{port}")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach server", err)
        # With --json the error is JSON too.
        code, _, err = self.cas("--json", "capacity", server=f"127.0.0.1:{port}")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach server", json.loads(err.strip().splitlines()[-1])["error"])

    def test_wrong_token(self):
        tok = self.write("token", b"right-token\n")
        bad = self.write("bad", b"wrong-token\n")
        sd = self.storaged("auth", extra=["--token-file", tok])
        data = self.write("t", b"secret data")
        code, _, err = self.cas("put", data, server=sd.url)
        self.assertEqual(code, 1)
        self.assertIn("401", err)
        code, _, err = self.cas("--token-file", bad, "capacity", server=sd.url)
        self.assertEqual(code, 1)
        self.assertIn("401", err)
        key = self.ok("--token-file", tok, "put", data, server=sd.url).strip()
        self.assertEqual(key, hashlib.sha1(b"secret data").hexdigest())
        # the token from the environment, as the daemons read it
        out = self.ok("capacity", server=sd.url, env={"CAS_TOKEN_FILE": tok})
        self.assertIn("objects", out)
        code, _, err = self.cas("--token-file", os.path.join(self.tmp, "nope"), "status")
        self.assertEqual(code, 2)
        self.assertIn("nope", err)

    def test_usage_errors_and_help(self):
        self.assertEqual(self.cas("frobnicate")[0], 2)
        self.assertEqual(self.cas("get")[0], 2)
        self.assertEqual(self.cas("list", "--bogus")[0], 2)
        self.assertEqual(self.cas("end-gc")[0], 2)
        self.assertEqual(self.cas("end-gc", "abc")[0], 2)
        self.assertEqual(self.cas("bench", "--mix", "x")[0], 2)
        self.assertEqual(self.cas()[0], 2)
        # with --json every usage error is JSON on stderr, global ones too
        for args in (["--json", "frobnicate"], ["--json", "--bogus"], ["frobnicate", "--json"],
                     ["--json", "get"], ["--json", "export", "nothex"],
                     ["--json", "--server", "ftp://x", "status"]):
            code, _, err = self.cas(*args)
            self.assertEqual(code, 2, args)
            self.assertIn("error", json.loads(err), args)
        code, out, _ = self.cas("--help")
        self.assertEqual(code, 0)
        for cmd in ("put", "get", "stat", "missing", "rm", "list", "begin-gc", "mark-gc",
                    "end-gc", "compact", "capacity", "status", "fsck", "bench", "export",
                    "import"):
            self.assertIn(cmd.encode(), out)
            code, out2, _ = self.cas(cmd, "--help")
            self.assertEqual(code, 0, cmd)
            self.assertIn(b"usage:", out2)

    def test_server_from_environment(self):
        port = self.sd.port
        p = subprocess.run([CLI, "capacity"], capture_output=True,
                           env=dict(os.environ, CA_CAS_SERVER=f"127.0.0.1:{port}"))
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([CLI, "capacity"], capture_output=True,
                           env=dict(os.environ, CA_CAS_SERVER=f"http://127.0.0.1:{port}/"))
        self.assertEqual(p.returncode, 0, p.stderr)


class TestGetContinue(CliTest):
    """get -o FILE --continue resumes a partial download with a Range request."""

    def breaking_server(self, data, cut):
        """A one-shot HTTP server that answers HEAD, then sends `cut` bytes of
        a GET's body and closes: an interrupted download."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        self.addCleanup(srv.close)

        def serve():
            for _ in range(4):
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    req = recv_head(conn)
                    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n"
                            "Content-Type: application/octet-stream\r\n\r\n").encode()
                    if req.startswith(b"HEAD"):
                        conn.sendall(head)
                        continue
                    if req.startswith(b"GET /ring"):
                        body = b'{"hash":"sha1"}'
                        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                        continue
                    conn.sendall(head + data[:cut])
                    return
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}"

    def test_interrupted_get_keeps_the_part_and_continue_completes_it(self):
        data = os.urandom(3_000_000)
        src = os.path.join(self.tmp, "src")
        with open(src, "wb") as f:
            f.write(data)
        key = self.ok("put", src).strip()
        out = os.path.join(self.tmp, "out")
        broken = self.breaking_server(data, 1_000_000)
        # without --continue an interrupted get leaves nothing behind
        code, _, err = self.cas("get", key, "-o", out, server=broken)
        self.assertEqual(code, 1, err)
        self.assertFalse(os.path.exists(out))
        broken = self.breaking_server(data, 1_000_000)
        code, _, err = self.cas("get", key, "-o", out, "--continue", server=broken)
        self.assertEqual(code, 1, err)
        self.assertEqual(os.path.getsize(out), 1_000_000)
        # the real server completes it: only the rest travels
        self.cas("get", key, "-o", out, "--continue", check=0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        # complete already: checked, nothing fetched, kept
        self.cas("get", key, "-o", out, "--continue", check=0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)

    def test_continue_refuses_and_keeps_files_that_are_not_a_prefix(self):
        # (it used to delete them: a user's file named by mistake was lost)
        data = os.urandom(200_000)
        src = os.path.join(self.tmp, "src")
        with open(src, "wb") as f:
            f.write(data)
        key = self.ok("put", src).strip()
        out = os.path.join(self.tmp, "out")
        other = os.urandom(5000)
        with open(out, "wb") as f:  # other bytes: the whole fails its check
            f.write(other)
        code, _, err = self.cas("get", key, "-o", out, "--continue")
        self.assertEqual(code, 1)
        self.assertIn("corrupt", err)
        with open(out, "rb") as f:  # what was appended is cut off again
            self.assertEqual(f.read(), other)
        with open(out, "wb") as f:  # longer than the object
            f.write(data + b"x")
        code, _, err = self.cas("get", key, "-o", out, "--continue")
        self.assertEqual(code, 1)
        self.assertIn("not a partial download", err)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data + b"x")
        for args in (["get", key, "--continue"], ["get", key, key, "-o", out, "--continue"],
                     ["get", key, "-o", out, "--continue", "--offset", "5"]):
            self.assertEqual(self.cas(*args)[0], 2, args)

    def test_401_says_how_to_pass_a_token(self):
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("s3cret\n")
        sd = self.storaged("guarded", extra=["--token-file", tok])
        code, _, err = self.cas("capacity", server=sd.url)
        self.assertEqual(code, 1)
        self.assertIn("HTTP 401", err)
        self.assertIn("--token-file", err)
        self.assertIn("CA_CAS_TOKEN_FILE", err)


class TestBench(CliTest):
    def test_bench_figures(self):
        code, out, err = self.cas("--json", "bench", "--count", 300, "--concurrency", 4,
                                  "--size", "16K", "--mix", "1:2", "--no-cleanup")
        self.assertEqual(code, 0, err)
        r = json.loads(out)
        self.assertEqual(r["total"]["ops"], 300)
        self.assertEqual(r["total"]["errors"], 0)
        self.assertEqual(r["put"]["ops"] + r["get"]["ops"], 300)
        self.assertGreater(r["get"]["ops"], r["put"]["ops"] / 2)
        for k in ("put", "get", "total"):
            lat = r[k]["latency_ms"]
            self.assertGreater(lat["p50"], 0)
            self.assertLessEqual(lat["p50"], lat["p90"])
            self.assertLessEqual(lat["p90"], lat["p99"])
            self.assertLessEqual(lat["p99"], lat["p99.9"])
            self.assertLessEqual(lat["p99.9"], lat["max"])
            self.assertGreater(r[k]["ops_per_s"], 0)
        mb = r["total"]["mb_per_s"]
        self.assertAlmostEqual(mb, r["total"]["ops_per_s"] * 16384 / 1e6, delta=mb * 0.05)
        # the objects bench stored are real
        self.assertGreaterEqual(self.capacity()["objects"], r["put"]["ops"])

    def test_bench_cleans_up_and_does_not_time_its_own_poll(self):
        before = self.capacity()["objects"]
        code, out, err = self.cas("--json", "bench", "--count", 60, "-c", 1, "-s", "1K",
                                  "--mix", "1:1")
        self.assertEqual(code, 0, err)
        r = json.loads(out)
        self.assertEqual(r["total"]["errors"], 0)
        # every object the run stored (its pool too) is deleted at the end
        self.assertEqual(self.capacity()["objects"], before)
        # one transfer at a time: an operation's latency was the 100 ms poll
        # timeout of the load loop (each op waited it out); a loopback GET
        # of 1 KiB takes a few ms even on a loaded machine
        self.assertLess(r["get"]["latency_ms"]["p50"], 100, r)

    def test_bench_text_and_duration(self):
        t0 = time.time()
        out = self.ok("bench", "--duration", "1.5s", "-c", 2, "-s", 1000, "--mix", "put")
        self.assertLess(time.time() - t0, 20)
        self.assertRegex(out, r"(?m)^put\s+\d+")
        self.assertRegex(out, r"(?m)^errors 0$")
        self.assertIn("p99.9", out)


@unittest.skipIf(BIG_GIB <= 0, "CAS_CLI_BIG_GIB=0")
class TestBig(CliTest):
    def test_multi_gib_round_trip(self):
        src = os.path.join(self.tmp, "big")
        block = os.urandom(16 << 20)
        nblocks = int(BIG_GIB * 64)
        with open(src, "wb") as f:  # distinct blocks: a counter in front of each
            for i in range(nblocks):
                f.write(i.to_bytes(8, "big"))
                f.write(block[8:])
            f.write(b"tail")
        want = sha1_file(src)
        t0 = time.time()
        code, out, rss_put = self.cas_rss("put", src)
        t_put = time.time() - t0
        self.assertEqual(code, 0)
        key = out.strip()
        self.assertEqual(key, want)
        self.assertEqual(self.ok("stat", key).split()[1], str(os.path.getsize(src)))
        dst = os.path.join(self.tmp, "big.out")
        t0 = time.time()
        code, _, rss_get = self.cas_rss("get", key, "-o", dst)
        t_get = time.time() - t0
        self.assertEqual(code, 0)
        self.assertEqual(sha1_file(dst), want)
        # streamed both ways: the client's memory does not grow with the object
        self.assertLess(rss_put, 64 << 10, "put peak RSS in KiB")
        self.assertLess(rss_get, 64 << 10, "get peak RSS in KiB")
        os.unlink(dst)
        # a part far past 2^31
        off = os.path.getsize(src) - (1 << 20) - 3
        _, part, _ = self.cas("get", key, "--offset", off, "--size", 1 << 20, check=0)
        with open(src, "rb") as f:
            f.seek(off)
            self.assertEqual(part, f.read(1 << 20))
        print(f"\n  {BIG_GIB:g} GiB: put {t_put:.1f} s ({rss_put // 1024} MiB RSS), "
              f"get {t_get:.1f} s ({rss_get // 1024} MiB RSS)", end=" ")


class TestFsck(CliTest):
    def fill_and_stop(self):
        blobs = [os.urandom(100000 + i) for i in range(6)]
        self.ok("put", *[self.write(f"f{i}", d) for i, d in enumerate(blobs)])
        self.assertEqual(self.sd.stop(), 0)
        return blobs

    def test_refuses_a_running_store(self):
        code, _, err = self.cas("fsck", self.sd.dir)
        self.assertNotEqual(code, 0)
        self.assertTrue(err.strip())

    def test_healthy(self):
        self.fill_and_stop()
        code, out, err = self.cas("fsck", self.sd.dir)
        self.assertEqual(code, 0, err)

    def test_flipped_byte(self):
        blobs = self.fill_and_stop()
        data_files = sorted((os.path.getsize(p), p) for p in
                            (os.path.join(self.sd.dir, n) for n in os.listdir(self.sd.dir))
                            if os.path.basename(p).startswith("data"))
        size, path = data_files[-1]
        self.assertGreater(size, 100000)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x55]))
        code, out, err = self.cas("fsck", self.sd.dir)
        self.assertEqual(code, 1, out + err.encode())
        self.assertTrue(err.strip() or out.strip())

    def test_truncated_index_and_repair(self):
        self.fill_and_stop()
        index = os.path.join(self.sd.dir, "index")
        size = os.path.getsize(index)
        os.truncate(index, size - 7)
        code, out, err = self.cas("fsck", self.sd.dir)
        self.assertEqual(code, 1, out + err.encode())
        code, out, err = self.cas("fsck", self.sd.dir, "--repair")
        self.assertEqual(code, 0, out + err.encode())
        code, out, err = self.cas("fsck", self.sd.dir)
        self.assertEqual(code, 0, out + err.encode())


class TestBalancer(CliTest):
    """The same commands through a balancer over three storageds."""

    def setUp(self):
        super().setUp()
        backends = [self.sd] + [self.storaged(f"s{i}") for i in (2, 3)]
        port = free_port()
        conf = os.path.join(self.tmp, "balancer.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{port}\nreplicas: 2\nbackends:\n")
            for i, b in enumerate(backends):
                f.write(f"  - url: {b.url}\n    failure_domain: rack-{i}\n")
        bal = Daemon([BALANCERD, "--config", conf, "--listen", f"127.0.0.1:{port}"],
                     os.path.join(self.tmp, "balancer.log"))
        self.daemons.append(bal)
        try:
            bal.start(("127.0.0.1", port))
        except RuntimeError as e:
            self.fail(f"balancerd does not start: {e}")
        self.backends = backends
        self.server = f"http://127.0.0.1:{port}"
        # the balancer probes its backends in the background: wait until it
        # takes a write (the empty object, which the test stores anyway)
        empty = self.write("empty", b"")
        deadline = time.time() + 15
        while self.cas("put", empty)[0] != 0:
            self.assertLess(time.time(), deadline, "the balancer never took a write")
            time.sleep(0.1)

    def test_round_trip_and_gc_through_balancer(self):
        blobs = [b"", b"small", os.urandom(2 << 20)]
        keys = self.ok("put", *[self.write(f"b{i}", d) for i, d in enumerate(blobs)]).split()
        self.assertEqual(keys, [hashlib.sha1(d).hexdigest() for d in blobs])
        for k, d in zip(keys, blobs):
            _, data, _ = self.cas("get", k, check=0)
            self.assertEqual(data, d)
        self.assertEqual(self.ok("stat", keys[2]).split(), [keys[2], str(len(blobs[2]))])
        self.assertEqual(self.cas("get", ZERO_KEY)[0], 1)
        # two copies each, on two backends
        copies = sum(len(self.ok("list", server=b.url).split()) for b in self.backends)
        self.assertEqual(copies, 2 * len(keys))

        gc_id = self.ok("begin-gc").strip()
        self.ok("mark-gc", keys[1])
        self.ok("end-gc", gc_id)
        self.assertEqual(self.ok("list").split(), [keys[1]])
        self.ok("compact")
        self.assertEqual(self.capacity()["unreclaimed"], 0)
        self.assertTrue(self.ok("status").strip())
        r = json.loads(self.ok("--json", "bench", "--count", 100, "-c", 4, "-s", "4K"))
        self.assertEqual(r["total"]["errors"], 0)

    def test_warnings_when_a_backend_is_down(self):
        _, _, err = self.cas("status", check=0)
        self.assertNotIn("warning", err)
        self.backends[2].kill9()
        deadline = time.time() + 15
        while json.loads(self.ok("--json", "status")).get("backends_down", 0) == 0:
            self.assertLess(time.time(), deadline, "the balancer never saw the backend down")
            time.sleep(0.2)
        _, out, err = self.cas("status", check=0)
        self.assertIn("warning: status: 1 backend is down", err)
        _, out, err = self.cas("capacity", check=0)
        self.assertIn("warning: capacity: partial", err)


if __name__ == "__main__":
    unittest.main()
