"""test_gc_races.py - what survives a GC cycle, and writes acknowledged only
when safe (docs/OPERATIONS.md, "What survives a GC cycle"):

- every use of an object that answers success during a cycle (GET, PUT,
  POST, POST /objects/missing, POST /gc/mark), racing with gc/end, leaves
  the object alive after end; HEAD is not a use;
- a restart mid-cycle keeps the cycle and its unmarks;
- "already stored" (200) only for a durable copy: proven with the fault
  library (tests/integration/faultinject.c), which makes the data file's or
  the index's fdatasync fail, so an answer given without that sync shows;
- a PUT of the right bytes over a rotten copy replaces it;
- stalled uploads (slow clients, no SIGSTOP) do not hold up other writes,
  and an upload cut off by a crash never becomes an object.

The races run bounded rounds; each round checks the invariant whatever the
interleaving, so a pass never depends on timing luck (a fault may go
unseen in a round, never a false failure).
"""
import hashlib
import http.client
import json
import os
import random
import socket
import subprocess
import threading
import time
import unittest

from harness import BUILD, CLI, TempDirTest, sha1

FAULTLIB = os.path.join(BUILD, "tests", "integration", "libcasfault.so")


def listed(c, state="live"):
    r = c.request("GET", f"/objects?state={state}")
    assert r.status == 200, r.status
    return set(l.split()[0] for l in r.body.decode().splitlines())


class RacesWithEnd(TempDirTest):
    NOBJ = 200
    THREADS = 8

    def _race(self, mode, rounds, env=None, end_after=0):
        """end_after: end only once that many requests have been taken (so,
        on a slow disk, while the others are in flight)."""
        s = self.storaged(env=env)
        c = s.client()
        pad = os.urandom(20000)
        bodies = [pad + b"race %s %d %d" % (mode.encode(), i, time.time_ns()) for i in range(self.NOBJ)]
        keys = [sha1(b) for b in bodies]
        for rnd in range(rounds):
            live = listed(c)
            for k, b in zip(keys, bodies):
                if k not in live:
                    self.assertIn(c.put(b, query="?sync=0").status, (200, 201))
            gid = c.request("POST", "/gc/begin").json()["id"]
            order = list(range(self.NOBJ))
            random.shuffle(order)
            ok, lock, nxt = set(), threading.Lock(), [0]

            def worker():
                wc = s.client()
                while True:
                    with lock:
                        if nxt[0] >= self.NOBJ:
                            break
                        i = order[nxt[0]]
                        nxt[0] += 1
                    try:
                        if mode == "GET":
                            good = wc.get(keys[i]).status == 200
                        elif mode == "PUT":
                            good = wc.put(bodies[i]).status in (200, 201)
                        elif mode == "POST":
                            r = wc.request("POST", "/objects", body=bodies[i])
                            good = r.status == 201 and r.body.decode().strip() == keys[i]
                        elif mode == "missing":
                            r = wc.request("POST", "/objects/missing", body=keys[i] + "\n")
                            good = r.status == 200 and r.body == b""
                        else:  # mark
                            r = wc.request("POST", "/gc/mark", body=keys[i] + "\n")
                            good = r.status == 200 and r.json()["unmarked"] == 1
                    except (OSError, http.client.HTTPException):
                        wc.close()
                        continue
                    if good:
                        with lock:
                            ok.add(i)
                wc.close()

            ts = [threading.Thread(target=worker) for _ in range(self.THREADS)]
            for t in ts:
                t.start()
            time.sleep(random.uniform(0.0, 0.05))
            deadline = time.time() + 10
            while nxt[0] < end_after and time.time() < deadline:
                time.sleep(0.001)
            r = c.request("POST", f"/gc/end?id={gid}")
            self.assertEqual(r.status, 200, r.body)
            for t in ts:
                t.join()
            live = listed(c)
            lost = [keys[i] for i in ok if keys[i] not in live]
            self.assertEqual(lost, [], f"{mode} round {rnd}: answered success during cycle {gid}, "
                                       f"yet removed by end: {lost[:3]}")
        c.close()

    def test_get_racing_with_end(self):
        self._race("GET", 3)

    def test_put_racing_with_end(self):
        self._race("PUT", 2)

    def test_post_racing_with_end(self):
        self._race("POST", 2)

    def test_missing_racing_with_end(self):
        self._race("missing", 2)

    def test_mark_racing_with_end(self):
        self._race("mark", 2)


@unittest.skipUnless(os.path.exists(FAULTLIB), "fault library not built")
class RacesWithEndOnASlowDisk(RacesWithEnd):
    """The same races with every data file read slowed by 20 ms (the fault
    library's CAS_SLOW_PREAD_US): a GET or PUT is then inside the window
    between finding an object and using it whenever end arrives, so a use
    that answers success for an object end removed is caught in the first
    round, not by luck."""

    def _race(self, mode, rounds, env=None):
        env = {"LD_PRELOAD": FAULTLIB, "CAS_SLOW_PREAD_US": "20000",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        super()._race(mode, 1, env, end_after=2 * self.THREADS)

    # missing, mark and POST read no data file before they use an object.
    test_missing_racing_with_end = None
    test_mark_racing_with_end = None
    test_post_racing_with_end = None


class UsesInACycle(TempDirTest):
    def test_which_requests_count_as_use(self):
        s = self.storaged()
        c = s.client()
        objs = {n: os.urandom(3000) for n in ("get", "put", "post", "missing", "mark", "head", "none")}
        for b in objs.values():
            self.assertEqual(c.put(b).status, 201)
        key = {n: sha1(b) for n, b in objs.items()}
        gid = c.request("POST", "/gc/begin").json()["id"]
        self.assertEqual(c.get(key["get"]).status, 200)
        self.assertEqual(c.put(objs["put"]).status, 200)
        self.assertEqual(c.request("POST", "/objects", body=objs["post"]).status, 201)
        absent = sha1(b"never stored")
        r = c.request("POST", "/objects/missing", body=f"{key['missing']}\n{absent}\n")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode(), absent + "\n")
        self.assertEqual(c.request("POST", "/gc/mark", body=key["mark"] + "\n").json()["unmarked"], 1)
        self.assertEqual(c.request("HEAD", f"/objects/{key['head']}").status, 200)
        garbage = listed(c, "garbage")
        self.assertEqual(garbage, {key["head"], key["none"]})
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.json()["removed"], 2)
        live = listed(c)
        for n in ("get", "put", "post", "missing", "mark"):
            self.assertIn(key[n], live, n)
        self.assertNotIn(key["head"], live)  # HEAD is not a use
        self.assertNotIn(key["none"], live)
        c.close()

    def test_cli_put_during_cycle_keeps_object(self):
        s = self.storaged()
        path = os.path.join(self.tmp, "file")
        with open(path, "wb") as f:
            f.write(b"put with the CLI during a GC cycle\n")
        cli = [CLI, "--server", s.url]
        subprocess.run(cli + ["put", path], check=True, capture_output=True)
        gid = subprocess.run(cli + ["begin-gc"], check=True, capture_output=True).stdout.decode().strip()
        key = subprocess.run(cli + ["put", path], check=True, capture_output=True).stdout.decode().strip()
        subprocess.run(cli + ["end-gc", gid], check=True, capture_output=True)
        self.assertEqual(subprocess.run(cli + ["stat", key], capture_output=True).returncode, 0)

    def test_restart_mid_cycle_keeps_cycle_and_unmarks(self):
        s = self.storaged()
        c = s.client()
        objs = [os.urandom(2000) for _ in range(4)]
        for b in objs:
            self.assertEqual(c.put(b).status, 201)
        keys = [sha1(b) for b in objs]
        gid = c.request("POST", "/gc/begin").json()["id"]
        self.assertEqual(c.get(keys[0]).status, 200)
        self.assertEqual(c.request("POST", "/objects/missing", body=keys[1] + "\n").body, b"")
        self.assertEqual(c.request("POST", "/gc/mark", body=keys[2] + "\n").json()["unmarked"], 1)
        c.close()
        s.kill9()  # no clean shutdown: only what was durable counts
        s.start()
        c = s.client()
        g = c.request("GET", "/gc").json()
        self.assertTrue(g["active"])
        self.assertEqual(g["id"], gid)
        self.assertEqual(listed(c, "garbage"), {keys[3]})
        self.assertEqual(c.request("POST", f"/gc/end?id={gid}").json()["removed"], 1)
        self.assertEqual(listed(c), set(keys[:3]))
        c.close()


@unittest.skipUnless(os.path.exists(FAULTLIB), "fault library not built")
class RepeatedWriteDurability(TempDirTest):
    """A repeated write of an object first stored with ?sync=0 must make
    that copy durable before it answers: with the fdatasync of the data files
    (or of the index) failing, it cannot answer success."""

    def _store(self, only):
        trigger = os.path.join(self.tmp, f"fail-{len(self.daemons)}")
        env = {"LD_PRELOAD": FAULTLIB, "CAS_FAULT_FILE": trigger, "CAS_FAULT_ONLY": only,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        return self.storaged(name=f"s{len(self.daemons)}", env=env), trigger

    def _repeat(self, c, how, body):
        if how == "PUT":
            return c.put(body)
        if how == "PUT-expect":
            return c.request("PUT", f"/objects/{sha1(body)}", body=body,
                             headers={"Expect": "100-continue"})
        return c.request("POST", "/objects", body=body)

    def test_repeated_write_syncs_the_first_copy(self):
        for only in ("/data-", "/index"):
            for how in ("PUT", "PUT-expect", "POST"):
                with self.subTest(only=only, how=how):
                    s, trigger = self._store(only)
                    c = s.client()
                    body = os.urandom(5000)
                    self.assertEqual(c.put(body, query="?sync=0").status, 201)
                    open(trigger, "w").close()
                    r = self._repeat(c, how, body)
                    self.assertNotIn(r.status, (200, 201),
                                     f"{how} answered {r.status} without syncing {only}")
                    self.assertEqual(r.status, 500, r.body)
                    c.close()
                    s.kill9()

    def test_durable_copy_needs_no_data_sync(self):
        """The other side: a copy stored durably is answered without a data
        file sync (so the test above tells the two apart)."""
        s, trigger = self._store("/data-")
        c = s.client()
        body = os.urandom(5000)
        self.assertEqual(c.put(body).status, 201)
        open(trigger, "w").close()
        self.assertEqual(c.put(body).status, 200)
        self.assertEqual(c.request("POST", "/objects", body=body).status, 201)
        c.close()


class RepeatedWriteOverRottenCopy(TempDirTest):
    def _rot(self, s, at):
        files = [f for f in os.listdir(s.dir) if f.startswith("data-")
                 and os.path.getsize(os.path.join(s.dir, f)) > 0]
        self.assertEqual(len(files), 1)
        with open(os.path.join(s.dir, files[0]), "r+b") as f:
            f.seek(64 + at)
            b = f.read(1)
            f.seek(64 + at)
            f.write(bytes([b[0] ^ 0x20]))

    def test_put_replaces_rotten_copy(self):
        cases = [("PUT", 3000, 3), ("PUT-expect", 3000, 7), ("POST", 3000, 11),
                 ("PUT", (5 << 20) // 2, (3 << 20) // 2)]
        for how, size, at in cases:
            with self.subTest(how=how, size=size):
                s = self.storaged(name=f"s{len(self.daemons)}")
                c = s.client()
                body = os.urandom(size)
                key = sha1(body)
                self.assertEqual(c.put(body).status, 201)
                self._rot(s, at)
                if how == "POST":
                    r = c.request("POST", "/objects", body=body)
                else:
                    hdr = {"Expect": "100-continue"} if how == "PUT-expect" else {}
                    r = c.request("PUT", f"/objects/{key}", body=body, headers=hdr)
                self.assertEqual(r.status, 201, r.body)
                g = c.get(key)
                self.assertEqual(g.status, 200)
                self.assertEqual(g.body, body)
                m = c.request("GET", "/metrics").body.decode()
                self.assertIn("CORRUPT object " + key, s.log_text())
                self.assertIn("cas_corrupt_objects_total 1", m.splitlines())
                c.close()
                s.kill9()


class StalledUploads(TempDirTest):
    def _stall(self, port, n, chunked=False):
        socks = []
        for i in range(n):
            so = socket.create_connection(("127.0.0.1", port))
            if chunked:
                so.sendall(b"POST /objects HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"a\r\n0123456789\r\n")
            else:
                so.sendall(b"POST /objects HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                           + b"x" * 10)
            socks.append(so)
        return socks

    def test_stalled_uploads_do_not_block_writes(self):
        s = self.storaged()
        socks = self._stall(s.port, 55) + self._stall(s.port, 5, chunked=True)
        c = s.client(timeout=15)
        c.request("GET", "/healthz")
        objs = [os.urandom(1000 + i) for i in range(10)]
        for b in objs:
            self.assertEqual(c.put(b).status, 201)
        big = os.urandom(3 << 20)  # unknown size: spooled, reserved at commit
        # An iterable body without a length: http.client sends it chunked.
        r = c.request("POST", "/objects", body=iter([big[:1 << 20], big[1 << 20:]]))
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(c.get(sha1(big)).body, big)
        for so in socks:
            so.close()
        self.assertEqual(listed(c), set(sha1(b) for b in objs + [big]))
        # The stalled uploads' ranges are dead space; compaction gives it back
        # once the server has dropped them (bounded polling, not a race).
        for _ in range(50):
            c.request("POST", "/compact?wait=1")
            if c.request("GET", "/capacity").json()["unreclaimed"] == 0:
                break
            time.sleep(0.2)
        self.assertEqual(c.request("GET", "/capacity").json()["unreclaimed"], 0)
        for b in objs:
            self.assertEqual(c.get(sha1(b)).body, b)
        c.close()

    def test_upload_cut_by_crash_never_becomes_an_object(self):
        s = self.storaged()
        body = os.urandom(1 << 20)
        so = socket.create_connection(("127.0.0.1", s.port))
        so.sendall(b"PUT /objects/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (sha1(body).encode(), len(body)) + body[:600000])
        c = s.client()
        after = [os.urandom(5000) for _ in range(60)]  # some share the cut upload's file
        for b in after:
            self.assertEqual(c.put(b).status, 201)
        c.close()
        s.kill9()
        so.close()
        s.start()
        c = s.client()
        self.assertEqual(c.get(sha1(body)).status, 404)
        self.assertEqual(listed(c), set(sha1(b) for b in after))
        c.request("POST", "/compact?wait=1")
        self.assertEqual(c.request("GET", "/capacity").json()["unreclaimed"], 0)
        for b in after:
            self.assertEqual(c.get(sha1(b)).body, b)
        c.close()


if __name__ == "__main__":
    unittest.main()
