"""test_storaged_api.py - every storaged route and status code, against a
real ca-cas-storaged on a loopback port.

Each class runs twice: as written, against the disk backend, and as its
*S3 subclass at the end of the file (backend = "s3"), against the S3 backend
with its objects in an s3rver bucket that the harness starts. A test that
looks at where the bytes are kept asks self.backend; nothing else differs."""
import hashlib
import json
import os
import socket
import unittest

from harness import Client, TempDirTest, sha1

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))


class StoragedApi(TempDirTest):
    def setUp(self):
        super().setUp()
        self.s = self.storaged()
        self.c = self.s.client()
        self.addCleanup(self.c.close)

    def test_put_get_head_delete(self):
        data = b"hello, world\n"
        k = sha1(data)
        r = self.c.put(data)
        self.assertEqual(r.status, 201)
        self.assertEqual(r.body.decode().strip(), k)
        self.assertEqual(r.header("X-CAS-Copies"), "1")
        again = self.c.put(data)
        self.assertEqual(again.status, 200)
        self.assertEqual(again.header("X-CAS-Copies"), "1")
        r = self.c.get(k)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, data)
        self.assertEqual(r.header("ETag"), f'"{k}"')
        self.assertEqual(r.header("Accept-Ranges"), "bytes")
        self.assertEqual(r.header("Cache-Control"), "public, max-age=31536000, immutable")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        r = self.c.request("HEAD", f"/objects/{k}")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), str(len(data)))
        self.assertEqual(r.body, b"")
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 204)
        self.assertEqual(self.c.get(k).status, 404)
        self.assertEqual(self.c.request("HEAD", f"/objects/{k}").status, 404)
        self.assertEqual(self.c.request("DELETE", f"/objects/{k}").status, 404)

    def test_key_forms(self):
        data = b"key forms"
        k = sha1(data)
        self.assertEqual(self.c.put(data, key=k.upper()).status, 201)
        self.assertEqual(self.c.get("sha1:" + k).body, data)
        self.assertEqual(self.c.get(k.upper()).body, data)
        r = self.c.get("sha256:" + hashlib.sha256(data).hexdigest())
        self.assertEqual(r.status, 400)
        self.assertIn("sha256", r.json()["error"])

    def test_malformed_keys(self):
        bad = ["abc", "g" * 40, "0" * 39, "0" * 41, "0" * 64, "sha1:", "sha1:" + "z" * 40,
               "md5:" + "0" * 32, "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "0" * 38 + "%00" + "0"]
        for key in bad:
            r = self.c.get(key)
            self.assertEqual(r.status, 400, key)
            self.assertIn("error", r.json())
            r = self.c.put(b"x", key=key)
            self.assertEqual(r.status, 400, key)
        # Path traversal sent raw, not normalised by a client library.
        for path in ["/objects/../../etc/passwd", "/objects/..", "/file/../index/"]:
            s = socket.create_connection(("127.0.0.1", self.s.port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            resp = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
            s.close()
            status = int(resp.split()[1])
            self.assertIn(status, (400, 404), path)
        # Nothing outside the store was created or served.
        self.assertFalse(any(n.startswith("..") for n in os.listdir(self.s.dir)))

    def test_digest_mismatch_stores_nothing(self):
        before = self._stored_bytes()
        r = self.c.put(b"some bytes", key="0" * 40)
        self.assertEqual(r.status, 422)
        self.assertIn("digest mismatch", r.json()["error"])
        self.assertEqual(self.c.get("0" * 40).status, 404)
        self.assertEqual(self._stored_bytes(), before)
        self.assertEqual(self.c.request("GET", "/capacity").json()["objects"], 0)
        if self.backend == "s3":
            self.assertEqual(self.s3.content_objects(), {})

    def _stored_bytes(self):
        """Bytes where the backend keeps objects: the data files, or the
        content objects of the bucket."""
        if self.backend == "s3":
            return self.s3.stored_bytes()
        return sum(os.path.getsize(os.path.join(self.s.dir, n)) for n in os.listdir(self.s.dir)
                   if n.startswith("data-"))

    def test_empty_object(self):
        k = sha1(b"")
        self.assertEqual(self.c.put(b"").status, 201)
        r = self.c.get(k)
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(self.c.request("HEAD", f"/objects/{k}").header("Content-Length"), "0")
        self.assertEqual(self.c.get(k, {"Range": "bytes=0-"}).status, 416)

    def test_ranges(self):
        for size in (1000, 3 * 1024 * 1024 + 7):  # served from memory, and streamed
            data = os.urandom(size)
            k = sha1(data)
            self.assertEqual(self.c.put(data).status, 201)
            cases = {
                "bytes=0-0": data[0:1],
                f"bytes={size - 1}-{size - 1}": data[-1:],
                f"bytes={size - 1}-": data[-1:],
                "bytes=-1": data[-1:],
                "bytes=-10": data[-10:],
                f"bytes=-{size + 10}": data,
                "bytes=10-19": data[10:20],
                "bytes=100-": data[100:],
                f"bytes=5-{size + 100}": data[5:],
            }
            for rng, want in cases.items():
                r = self.c.get(k, {"Range": rng})
                self.assertEqual(r.status, 206, rng)
                self.assertEqual(r.body, want, rng)
                first = size - len(want) if rng.startswith("bytes=-") else int(rng[6:].split("-")[0])
                self.assertEqual(r.header("Content-Range"), f"bytes {first}-{first + len(want) - 1}/{size}", rng)
            for rng in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
                r = self.c.get(k, {"Range": rng})
                self.assertEqual(r.status, 416, rng)
                self.assertEqual(r.header("Content-Range"), f"bytes */{size}")
            # Not a byte range we serve: the whole object.
            self.assertEqual(self.c.get(k, {"Range": "items=1-2"}).body, data)
            self.assertEqual(self.c.get(k, {"If-None-Match": f'"{k}"'}).status, 304)

    def test_post_and_cask_routes(self):
        data = b"posted bytes"
        k = sha1(data)
        r = self.c.request("POST", "/objects", body=data)
        self.assertEqual(r.status, 201)
        self.assertEqual(r.body, (k + "\n").encode())
        self.assertEqual(r.header("Location"), f"/objects/{k}")
        r = self.c.request("POST", "/", body=b"raw cask")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json(), {"key": "sha1:" + sha1(b"raw cask"), "success": True})
        boundary = "XyZ123"
        payload = b"multipart file bytes\r\nwith a CRLF"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nignored\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        r = self.c.request("POST", "/", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["key"], "sha1:" + sha1(payload))
        self.assertEqual(self.c.request("GET", f"/file/{sha1(payload)}/").body, payload)
        self.assertEqual(self.c.request("GET", f"/file/{k}").body, data)
        r = self.c.request("POST", "/local/", body=b"local post")
        self.assertEqual(r.status, 201)
        self.assertEqual(self.c.request("GET", f"/local/{sha1(b'local post')}/").body, b"local post")
        self.assertEqual(self.c.request("HEAD", f"/local/{sha1(b'local post')}/").status, 200)
        r = self.c.request("GET", "/")
        self.assertEqual(r.status, 200)
        self.assertIn(b"<html", r.body)
        self.assertEqual(self.c.request("GET", "/status/").json()["role"], "storaged")

    def test_missing(self):
        present = [b"a", b"b"]
        for d in present:
            self.c.put(d)
        absent = [sha1(b"c"), sha1(b"d")]
        body = "\n".join([sha1(b"a"), absent[0], "sha1:" + sha1(b"b").upper(), absent[1]]) + "\n"
        r = self.c.request("POST", "/objects/missing", body=body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode().split(), absent)
        r = self.c.request("POST", "/objects/missing", body=sha1(b"a") + "\nnot-a-key\n")
        self.assertEqual(r.status, 400)
        self.assertIn("line 2", r.json()["error"])
        self.assertIn("not-a-key", r.json()["error"])

    def test_missing_many_keys_bounded(self):
        keys = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(60000)]
        r = self.c.request("POST", "/objects/missing", body="\n".join(keys))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode().split(), keys)  # spilled past 1 MiB to a temp file

    def test_list(self):
        objs = [os.urandom(n) for n in (1, 10, 100, 1000)]
        for d in objs:
            self.c.put(d)
        r = self.c.request("GET", "/objects")
        self.assertEqual(r.status, 200)
        got = dict(line.split() for line in r.body.decode().splitlines())
        self.assertEqual(got, {sha1(d): str(len(d)) for d in objs})
        r = self.c.request("GET", "/objects?min_size=10&max_size=1000")
        self.assertEqual(sorted(l.split()[0] for l in r.body.decode().splitlines()),
                         sorted(sha1(d) for d in objs[1:3]))
        self.assertEqual(self.c.request("GET", "/objects?state=garbage").body, b"")
        self.assertEqual(self.c.request("GET", "/objects?state=bogus").status, 400)
        self.assertEqual(self.c.request("GET", "/objects?min_size=x").status, 400)

    def test_gc_cycle(self):
        keep, drop = b"keep me", b"drop me"
        read, written = b"read during the cycle", b"written again during the cycle"
        for d in (keep, drop, read, written):
            self.c.put(d)
        r = self.c.request("POST", "/gc/begin")
        self.assertEqual(r.status, 200)
        g = r.json()
        self.assertEqual((g["objects"], g["bytes"]), (4, len(keep + drop + read + written)))
        gid = g["id"]
        self.assertIsInstance(gid, str)
        st = self.c.request("GET", "/gc").json()
        self.assertEqual((st["active"], st["id"]), (True, gid))
        self.assertEqual(self.c.request("GET", "/capacity").json()["garbage"], g["bytes"])
        garbage = self.c.request("GET", "/objects?state=garbage").body.decode()
        self.assertEqual(len(garbage.splitlines()), 4)
        self.assertEqual(self.c.request("POST", "/gc/mark", body=sha1(keep) + "\n" + sha1(b"never stored") + "\n").json(), {"unmarked": 1})
        self.assertEqual(self.c.request("POST", "/gc/mark", body=sha1(keep)).json(), {"unmarked": 0})
        r = self.c.get(sha1(read))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-CAS-GC"), gid)  # balancers learn of the cycle here
        r = self.c.put(written)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-CAS-GC"), gid)
        fresh = b"new during the cycle"
        self.assertEqual(self.c.put(fresh).status, 201)
        self.assertEqual(self.c.request("POST", "/gc/mark", body="nonsense\n").status, 400)
        self.assertEqual(self.c.request("POST", f"/gc/end?id={int(gid) + 1}").status, 409)
        self.assertEqual(self.c.request("POST", "/gc/end").status, 400)
        r = self.c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"removed": 1, "bytes": len(drop)})
        self.assertEqual(self.c.get(sha1(drop)).status, 404)
        for d in (keep, read, written, fresh):
            self.assertEqual(self.c.get(sha1(d)).status, 200)
        self.assertFalse(self.c.request("GET", "/gc").json()["active"])
        self.assertIsNone(self.c.get(sha1(keep)).header("X-CAS-GC"))
        self.assertEqual(self.c.request("POST", f"/gc/end?id={gid}").status, 409)
        # A new begin cancels any other cycle (ids only grow: above gid).
        a, b = int(gid) + 100, int(gid) + 200
        self.assertEqual(self.c.request("POST", f"/gc/begin?id={a}").json()["id"], str(a))
        self.assertEqual(self.c.request("POST", f"/gc/begin?id={b}").json()["id"], str(b))
        self.assertEqual(self.c.request("POST", f"/gc/end?id={a}").status, 409)
        self.assertEqual(self.c.request("POST", "/gc/begin?id=abc").status, 400)
        # Cancel: the cycle ends and nothing is removed.
        self.assertEqual(self.c.request("POST", f"/gc/cancel?id={a}").status, 409)
        r = self.c.request("POST", f"/gc/cancel?id={b}")
        self.assertEqual(r.status, 200)
        self.assertFalse(self.c.request("GET", "/gc").json()["active"])
        self.assertEqual(self.c.request("GET", "/capacity").json()["garbage"], 0)
        for d in (keep, read, written, fresh):
            self.assertEqual(self.c.get(sha1(d)).status, 200)

    def test_compact_reclaims(self):
        blobs = [os.urandom(200_000) for _ in range(20)]
        for b in blobs:
            self.c.put(b)
        for b in blobs[::2]:
            self.assertEqual(self.c.request("DELETE", f"/objects/{sha1(b)}").status, 204)
        cap = self.c.request("GET", "/capacity").json()
        self.assertGreaterEqual(cap["unreclaimed"], 10 * 200_000)
        r = self.c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200)
        self.assertFalse(r.json()["running"])
        cap = self.c.request("GET", "/capacity").json()
        self.assertEqual(cap["unreclaimed"], 0)
        self.assertEqual(cap["objects"], 10)
        for b in blobs[1::2]:
            self.assertEqual(self.c.get(sha1(b)).body, b)
        st = self.c.request("GET", "/compact").json()
        self.assertEqual(set(st), {"running", "done_bytes", "total_bytes", "runs"})
        self.assertEqual(self.c.request("POST", "/compact").status, 202)

    def test_capacity_ring_status_metrics_healthz(self):
        cap = self.c.request("GET", "/capacity").json()
        for f in ("total", "available", "unreclaimed", "garbage", "objects", "bytes"):
            self.assertIsInstance(cap[f], int, f)
        ring = self.c.request("GET", "/ring").json()
        self.assertEqual(ring["hash"], "sha1")
        self.assertEqual(len(ring["node"]), 16)
        self.assertGreaterEqual(len(ring["tokens"]), 64)
        self.assertTrue(all(len(t) == 16 and int(t, 16) >= 0 for t in ring["tokens"]))
        st = self.c.request("GET", "/status").json()
        self.assertEqual(st["node"], ring["node"])
        for f in ("version", "uptime_seconds", "objects", "bytes", "capacity", "gc", "compaction"):
            self.assertIn(f, st)
        self.c.put(b"metrics")
        m = self.c.request("GET", "/metrics")
        self.assertEqual(m.status, 200)
        text = m.body.decode()
        self.assertIn('cas_http_requests_total{route="put",status="201"} 1', text)
        self.assertIn("cas_http_request_duration_seconds_bucket", text)
        self.assertIn("cas_objects 1", text)
        self.assertIn("cas_corrupt_objects_total 0", text)
        r = self.c.request("GET", "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        self.assertEqual(self.c.request("GET", "/nope").status, 404)
        self.assertEqual(self.c.request("PATCH", "/objects/" + "0" * 40).status, 405)

    def test_ring_persists_across_restart(self):
        ring = self.c.request("GET", "/ring").json()
        self.c.close()
        self.assertEqual(self.s.stop(), 0)
        self.s.start()
        self.assertEqual(self.s.client().request("GET", "/ring").json(), ring)


class StoragedOptions(TempDirTest):
    def test_token_auth(self):
        tf = os.path.join(self.tmp, "token")
        with open(tf, "w") as f:
            f.write("s3cret\n")
        s = self.storaged(extra=["--token-file", tf])
        c = s.client()
        data = b"auth"
        self.assertEqual(c.put(data).status, 401)
        self.assertEqual(c.request("PUT", f"/objects/{sha1(data)}", body=data, headers={"Authorization": "Bearer wrong"}).status, 401)
        self.assertEqual(c.request("PUT", f"/objects/{sha1(data)}", body=data, headers={"Authorization": "Bearer s3cret"}).status, 201)
        self.assertEqual(c.get(sha1(data)).status, 200)  # reads are open
        self.assertEqual(c.request("HEAD", f"/objects/{sha1(data)}").status, 200)
        for path in ("/", "/healthz", "/metrics"):
            self.assertEqual(c.request("GET", path).status, 200, path)
        for path in ("/status", "/capacity", "/gc", "/objects"):
            self.assertEqual(c.request("GET", path).status, 401, path)
        self.assertEqual(c.request("POST", "/gc/begin").status, 401)
        c.close()
        # One storaged at a time: on the S3 backend both would use one bucket,
        # and s2's empty --dir is refused while s runs (one bucket per storaged).
        self.assertEqual(s.stop(), 0)
        s2 = self.storaged(name="s2", extra=["--token-file", tf, "--auth-reads"])
        c2 = s2.client()
        c2.request("PUT", f"/objects/{sha1(data)}", body=data, headers={"Authorization": "Bearer s3cret"})
        self.assertEqual(c2.get(sha1(data)).status, 401)
        self.assertEqual(c2.get(sha1(data), {"Authorization": "Bearer s3cret"}).status, 200)
        c2.close()

    def test_read_only(self):
        s = self.storaged()
        c = s.client()
        c.put(b"before")
        c.close()
        s.stop()
        s.extra.append("--read-only")
        s.argv.append("--read-only")
        s.start()
        c = s.client()
        r = c.put(b"after")
        self.assertEqual(r.status, 503)
        self.assertIn("read-only", r.json()["error"])
        self.assertEqual(c.get(sha1(b"before")).status, 200)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(b'before')}").status, 503)
        self.assertEqual(c.request("POST", "/objects", body=b"x").status, 503)
        self.assertTrue(c.request("GET", "/status").json()["read_only"])
        c.close()

    def test_max_object_size(self):
        s = self.storaged(extra=["--max-object-size", "1K"])
        c = s.client()
        self.assertEqual(c.put(b"x" * 1024).status, 201)
        r = c.put(b"y" * 1025)
        self.assertEqual(r.status, 413)
        self.assertEqual(c.get(sha1(b"y" * 1025)).status, 404)
        c.close()
        # A chunked body (no Content-Length) is cut off at the limit too.
        c = s.client()
        def gen():
            for _ in range(3):
                yield b"z" * 1000
        r = c.request("PUT", f"/objects/{sha1(b'z' * 3000)}", body=gen())
        self.assertEqual(r.status, 413)
        c.close()

    def test_environment_and_bad_options(self):
        import subprocess
        from harness import STORAGED, free_port
        port = free_port()
        env = dict(os.environ, CAS_DIR=os.path.join(self.tmp, "envdir"), CAS_LISTEN=f"127.0.0.1:{port}")
        if self.backend == "s3":  # every S3 option from the environment, keys included
            from s3fixture import ACCESS_KEY, SECRET_KEY
            env.update(CAS_BACKEND="s3", CAS_S3_ENDPOINT=self.s3.endpoint, CAS_S3_BUCKET=self.s3.bucket,
                       CAS_S3_ACCESS_KEY=ACCESS_KEY, CAS_S3_SECRET_KEY=SECRET_KEY, CAS_CAPACITY="10G")
        from harness import Daemon
        d = Daemon([STORAGED, "--log-level", "warn"], os.path.join(self.tmp, "env.log"), env)
        self.daemons.append(d)
        d.start(("127.0.0.1", port))
        if self.backend == "s3":  # the node's state stays in --dir; the object goes to the bucket
            self.assertTrue(os.listdir(os.path.join(self.tmp, "envdir")))
            c = Client("127.0.0.1", port)
            self.assertEqual(c.put(b"from the environment").status, 201)
            c.close()
            self.assertIn(sha1(b"from the environment"), self.s3.content_objects())
        else:
            self.assertTrue(os.path.exists(os.path.join(self.tmp, "envdir", "node")))
        d.stop()
        for argv, msg in (([], "--dir"), (["--dir", self.tmp + "/x", "--hash", "md5"], "md5"),
                          (["--dir", self.tmp + "/x", "--bogus"], "--bogus"),
                          (["--dir", self.tmp + "/x", "--capacity", "12Q"], "12Q")):
            p = subprocess.run([STORAGED] + self.backend_args(argv) + argv, capture_output=True, text=True, timeout=10,
                               env={k: v for k, v in os.environ.items() if not k.startswith("CAS_")})
            self.assertEqual(p.returncode, 2, argv)
            self.assertIn(msg, p.stderr)

    def test_second_daemon_refused(self):
        import subprocess
        from harness import STORAGED, free_port
        s = self.storaged()
        p = subprocess.run([STORAGED, "--dir", s.dir, "--listen", f"127.0.0.1:{free_port()}"] + self.backend_args(),
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("in use by another storaged", p.stderr)
        self.assertIn(str(s.pid), p.stderr)
        self.assertEqual(s.client().request("GET", "/healthz").status, 200)

    def test_unreadable_dir_refused(self):
        import subprocess
        from harness import STORAGED
        path = os.path.join(self.tmp, "file")
        open(path, "w").close()
        p = subprocess.run([STORAGED, "--dir", path] + self.backend_args(), capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(path, p.stderr)

    def test_sha256_store(self):
        s = self.storaged(extra=["--hash", "sha256"])
        c = s.client()
        data = b"two fifty six"
        k = hashlib.sha256(data).hexdigest()
        self.assertEqual(c.request("PUT", f"/objects/{k}", body=data).status, 201)
        self.assertEqual(c.get("sha256:" + k).body, data)
        self.assertEqual(c.get(sha1(data)).status, 400)
        self.assertEqual(c.request("GET", "/ring").json()["hash"], "sha256")
        r = c.request("POST", "/", body=data)
        self.assertEqual(r.json()["key"], "sha256:" + k)
        c.close()
        s.stop()
        import subprocess
        from harness import STORAGED
        p = subprocess.run([STORAGED, "--dir", s.dir, "--hash", "sha1", "--listen", "127.0.0.1:0"] + self.backend_args(),
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("sha256", p.stderr)

    def test_sigterm_finishes_in_flight(self):
        import threading
        s = self.storaged()
        c = s.client()
        size = 64 * 1024 * 1024
        data = os.urandom(1024 * 1024) * 64
        k = sha1(data)
        result = {}

        def slow_upload():
            conn = __import__("http.client").client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            conn.putrequest("PUT", f"/objects/{k}")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            import time
            for i in range(64):
                conn.send(data[i * 1024 * 1024:(i + 1) * 1024 * 1024])
                if i == 8:
                    result["started"] = True
                    time.sleep(0.5)
            result["status"] = conn.getresponse().status

        t = threading.Thread(target=slow_upload)
        t.start()
        import time
        while "started" not in result:
            time.sleep(0.01)
        time.sleep(0.1)
        rc_holder = {}
        stopper = threading.Thread(target=lambda: rc_holder.setdefault("rc", s.stop()))
        stopper.start()
        t.join(60)
        stopper.join(60)
        self.assertEqual(result.get("status"), 201)
        self.assertEqual(rc_holder.get("rc"), 0)
        s.start()
        self.assertEqual(sha1(s.client().get(k).body), k)


class StoragedApiS3(StoragedApi):
    """StoragedApi against the S3 backend."""

    backend = "s3"

    def test_compact_reclaims(self):
        """Replaces the disk test (which counts data-file bytes that an S3
        node does not have): after deletes and a compaction the bucket holds
        exactly the survivors, nothing is left unreclaimed, and they read back."""
        blobs = [os.urandom(200_000) for _ in range(20)]
        for b in blobs:
            self.assertEqual(self.c.put(b).status, 201)
        for b in blobs[::2]:
            self.assertEqual(self.c.request("DELETE", f"/objects/{sha1(b)}").status, 204)
        r = self.c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200)
        self.assertFalse(r.json()["running"])
        cap = self.c.request("GET", "/capacity").json()
        self.assertEqual((cap["unreclaimed"], cap["objects"], cap["bytes"]), (0, 10, 10 * 200_000))
        self.assertEqual(cap["available"], cap["total"] - cap["bytes"])
        self.assertEqual(set(self.s3.content_objects()), {sha1(b) for b in blobs[1::2]})
        for b in blobs[1::2]:
            self.assertEqual(self.c.get(sha1(b)).body, b)
        for b in blobs[::2]:
            self.assertEqual(self.c.get(sha1(b)).status, 404)


class StoragedOptionsS3(StoragedOptions):
    """StoragedOptions against the S3 backend."""

    backend = "s3"


if __name__ == "__main__":
    unittest.main()
