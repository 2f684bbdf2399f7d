"""test_write_delete_race.py - a write in flight when a DELETE lands never
undoes that DELETE.

SPEC (Deletion): a DELETE answered 204 is never undone; only a new PUT of
the same bytes brings the object back. A balancer answers a PUT once
min_replicas copies are durable and lets the other copies finish on their
own (stragglers); a DELETE through it right after is answered 204 when
every backend answered, the straggler with 404 (not stored yet) and a
tombstone. Before, the straggler's write then committed as a client PUT,
lifted the tombstone and the deleted object was served again (found by an
attacking session, g6). A storaged now notes, when a write begins, how many
client deletes it has seen; a write that a delete of its key overtook is
refused at its commit (409, nothing stored, the tombstone kept), on the
disk and the S3 backend alike.
"""
import http.client
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import TempDirTest, free_port, sha1, wait_for  # noqa: E402


def data_bytes(store_dir):
    return sum(os.path.getsize(os.path.join(store_dir, n)) for n in os.listdir(store_dir)
               if n.startswith("data-"))


class StoragedWriteDeleteRace(TempDirTest):
    """At one storaged: a client PUT whose body is still arriving when a
    DELETE of its key is answered."""

    def test_put_overtaken_by_delete_is_refused(self):
        s = self.storaged("s")
        c = s.client()
        data = os.urandom(3 << 20)
        key = sha1(data)
        before = data_bytes(s.dir)
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.putrequest("PUT", f"/objects/{key}")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        half = len(data) // 2
        conn.send(data[:half])
        # Bytes reach a data file: the write has begun.
        wait_for(lambda: data_bytes(s.dir) > before, 30, "the write to be under way")
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 404)
        conn.send(data[half:])
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 409, body)
        self.assertIn(b"deleted here while this write was in progress", body)
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        self.assertNotIn(key.encode(), c.request("GET", "/objects").body)
        # The tombstone stands: a copy from another replica is refused.
        self.assertEqual(c.put(data, query="?replica=1").status, 410)
        # Across a restart too (it is in the index).
        c.close()
        s.stop()
        s.start()
        c = s.client()
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        # A PUT sent after the DELETE stores it again (SPEC).
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.get(key).body, data)
        self.assertEqual(c.put(data, query="?replica=1").status, 200)

    def test_put_begun_after_delete_lifts_the_tombstone(self):
        s = self.storaged("s")
        c = s.client()
        data = b"deleted first, stored again by a later PUT"
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(data)}").status, 204)
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.get(sha1(data)).body, data)


class HoldProxy:
    """A TCP proxy in front of one storaged that forwards every request
    whole, except the first client PUT of an object (not ?replica=1), which
    it holds until release(): by its last byte (where="tail": the storaged
    has begun the write, the balancer's straggler) or whole, head included
    (where="head": a request delayed in the network before the storaged
    sees it; test_write_stamps). The storaged's answer to the held request
    is recorded (held_answer)."""

    def __init__(self, target_port, where="tail"):
        self.target_port = target_port
        self.where = where
        self.port = free_port()
        self.held = threading.Event()
        self.go = threading.Event()
        self.done = False
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(64)
        self.socks = []
        self.answers = {}      # upstream socket -> status lines it sent
        self.held_from = None  # the upstream socket of the held PUT
        self.held_index = 0
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def accept(self):
        while True:
            try:
                cs, _ = self.lsock.accept()
            except OSError:
                return
            us = socket.create_connection(("127.0.0.1", self.target_port))
            self.socks += [cs, us]
            threading.Thread(target=self.pipe, args=(us, cs), daemon=True).start()
            threading.Thread(target=self.requests, args=(cs, us), daemon=True).start()

    def pipe(self, src, dst):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if b.startswith(b"HTTP/1."):
                    self.answers.setdefault(src, []).append(b.split(b"\r\n", 1)[0])
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def requests(self, cs, us):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    b = cs.recv(65536)
                    if not b:
                        raise OSError("closed")
                    buf += b
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                length = 0
                for h in lines[1:]:
                    name, _, value = h.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    b = cs.recv(65536)
                    if not b:
                        raise OSError("closed")
                    buf += b
                body, buf = buf[:length], buf[length:]
                whole = head + b"\r\n\r\n" + body
                hold = (lines[0].startswith(b"PUT /objects/") and b"replica=1" not in lines[0]
                        and length > 0 and not self.done)
                if not hold:
                    us.sendall(whole)
                    continue
                self.done = True
                self.held_from = us
                # Earlier answers on this (kept-alive) connection are not its.
                self.held_index = len(self.answers.get(us, []))
                if self.where == "tail":
                    us.sendall(whole[:-1])
                self.held.set()
                self.go.wait(60)
                # Sent even if the balancer gave up on it.
                us.sendall(whole[-1:] if self.where == "tail" else whole)
        except OSError:
            # The balancer gave up on this connection: the storaged's side
            # stays open, so its answer to a held request is still seen.
            try:
                cs.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release(self):
        self.go.set()

    def held_answer(self):
        """The status line the storaged answered the held PUT with, or None."""
        a = self.answers.get(self.held_from, [])
        return a[self.held_index].decode() if len(a) > self.held_index else None

    def close(self):
        self.go.set()
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


class BalancerStragglerTest(tb.ClusterTest):
    """Through a balancer: the PUT is answered by two copies while the third
    is still arriving; the DELETE that follows is answered 204; the third
    copy's commit then comes and is refused, and the object stays deleted."""

    def test_straggling_copy_after_delete_is_refused(self):
        self.cluster(n=3, replicas=3, min_replicas=2)
        data = tb.blob("straggler", 200000)
        key = sha1(data)
        # The straggler: the home backend that the proxy stands in front of.
        slow = self.stores[2]
        proxy = HoldProxy(slow.port)
        self.addCleanup(proxy.close)
        urls = [s.url for s in self.stores[:2]] + [proxy.url]
        self.config = os.path.join(self.tmp, "straggler.yaml")
        with open(self.config, "w") as f:
            f.write("replicas: 3\nmin_replicas: 2\ntimeouts:\n  write_straggler_ms: 200\nbackends:\n")
            for i, u in enumerate(urls):
                f.write(f"  - url: {u}\n    failure_domain: d{i}\n")
        bal = tb.Balancer(self.config, self.tmp)
        self.daemons.append(bal)
        bal.start()
        bal.wait_backends(3)
        c = bal.client()
        r = c.put(data)
        self.assertEqual(r.status, 201, r.body)
        self.assertTrue(proxy.held.wait(10), "the third copy never arrived")
        self.assertEqual(r.header("X-CAS-Copies"), "2")
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 204)
        proxy.release()

        # The straggler's write is done when the storaged answers it.
        wait_for(proxy.held_answer, 30, "the straggling copy to finish")
        self.assertTrue(proxy.held_answer().startswith("HTTP/1.1 409"), proxy.held_answer())
        self.assertEqual(c.request("GET", f"/objects/{key}").status, 404)
        for s in self.stores:
            self.assertEqual(s.client().request("HEAD", f"/objects/{key}").status, 404, s.url)


if __name__ == "__main__":
    unittest.main()
