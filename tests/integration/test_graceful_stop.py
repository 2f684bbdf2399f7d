"""test_graceful_stop.py - a daemon stopped by SIGTERM under traffic never
drops a request whose connection it accepted (common/httpd.c, "stopping
without losing a request").

The clients open a new connection per PUT, as nginx does towards a draining
balancer (every answer then says Connection: close). A connection refused
is fine: a proxy retries it elsewhere, nothing was sent. A connection that
was accepted and then reset or closed without an answer is a lost request:
the client sent its body and cannot know whether it was stored, and nginx
answers 502 to a PUT it may not retry. Closing a listener resets the
connections in its accept queue, so without care a stop under this load
loses one now and then; each test stops its daemon three times. Clients
on kept-alive connections must be told to close before the stop closes
their connections under them.

Every PUT answered 201 must read back after the restart."""
import http.client
import os
import signal
import socket
import sys
import threading
import time
import unittest

from harness import recv_head, request_kept_alive, sha1
from test_balancerd import Balancer, ClusterTest

THREADS = 12
ROUNDS = 3


class Hammer:
    """PUTs of small distinct objects from threads: one connection each, or
    (keepalive) back to back on kept-alive connections, a new one only
    when an answer says it closes."""

    def __init__(self, port, tag, keepalive=False):
        self.port, self.tag = port, tag
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.stored = {}  # key -> body, answered 2xx
        self.refused = 0
        self.lost = []  # what an accepted connection got instead of an answer
        self.threads = [threading.Thread(target=self.run_keepalive if keepalive else self.run,
                                         args=(i,), daemon=True)
                        for i in range(THREADS)]
        for t in self.threads:
            t.start()

    def run(self, i):
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = f"{self.tag} {i} {n} {time.time()}".encode()
            key = sha1(body)
            req = (f"PUT /objects/{key} HTTP/1.1\r\nHost: t\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            s = socket.socket()
            s.settimeout(20)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                s.close()
                with self.lock:
                    self.refused += 1
                time.sleep(0.005)
                continue
            try:
                s.sendall(req)
                answer = recv_head(s)
            except OSError as e:
                answer = repr(e).encode()
            finally:
                s.close()
            with self.lock:
                if answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")):
                    self.stored[key] = body
                else:
                    self.lost.append(answer[:80])

    def run_keepalive(self, i):
        conn = None
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = f"{self.tag} {i} {n} {time.time()}".encode()
            key = sha1(body)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                try:
                    conn.connect()
                except OSError:
                    conn = None
                    with self.lock:
                        self.refused += 1
                    time.sleep(0.005)
                    continue
            conn, status, data = request_kept_alive(conn, self.port, "PUT", f"/objects/{key}", body)
            with self.lock:
                if status in (200, 201):
                    self.stored[key] = body
                else:
                    self.lost.append((str(status).encode() if status else data)[:80])

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


class GracefulStop(ClusterTest):

    def stop_under_traffic(self, daemon, tag, keepalive=False):
        """SIGTERMs `daemon` while PUTs pour in; returns the Hammer."""
        h = Hammer(daemon.port, tag, keepalive)
        time.sleep(0.7)
        done_before = len(h.stored)
        self.assertEqual(daemon.stop(timeout=30), 0)
        time.sleep(0.2)
        h.finish()
        sys.stderr.write(f" {tag}: {len(h.stored)} stored ({done_before} before the SIGTERM), "
                         f"{h.refused} refused, {len(h.lost)} lost ")
        self.assertGreater(done_before, 50, "too little traffic to mean anything")
        self.assertEqual(h.lost, [], "accepted connections dropped without an answer")
        return h

    def test_draining_balancer_drops_no_accepted_request(self):
        self.cluster(n=3, replicas=2)
        port = None
        stored = {}
        for r in range(ROUNDS):
            b = Balancer(self.config, self.tmp, port=port, extra=["--drain-ms", "300"])
            self.daemons.append(b)
            b.start()
            b.wait_backends(3)
            port = b.port
            stored.update(self.stop_under_traffic(b, f"balancer round {r}").stored)
        for key, body in stored.items():
            bodies = {s.client().request("GET", f"/objects/{key}").body for s in self.stores}
            self.assertIn(body, bodies, key)

    def test_storaged_sigterm_drops_no_accepted_request(self):
        s = self.storaged("s1")
        stored = {}
        for r in range(ROUNDS):
            stored.update(self.stop_under_traffic(s, f"storaged round {r}").stored)
            s.start()
        c = s.client()
        for key, body in stored.items():
            self.assertEqual(c.request("GET", f"/objects/{key}").body, body, key)

    def test_storaged_sigterm_tells_keepalive_clients_to_close(self):
        """Clients on kept-alive connections: every answer once the stop
        has begun closes its connection, so the next request goes on a new
        one (refused) instead of one the stop is about to close (without
        that, each of 12 such clients lost a request at every stop)."""
        s = self.storaged("s1")
        stored = {}
        for r in range(2):
            stored.update(self.stop_under_traffic(s, f"keep-alive round {r}", keepalive=True).stored)
            s.start()
        c = s.client()
        for key, body in stored.items():
            self.assertEqual(c.request("GET", f"/objects/{key}").body, body, key)

    def test_head_under_way_at_the_stop_is_answered(self):
        """A kept-alive connection whose next request head has only partly
        arrived when SIGTERM comes (libmicrohttpd already holds those bytes:
        the socket shows none unread) gets its answer once the head is
        complete, instead of being closed under it."""
        s = self.storaged("s1")
        c = socket.create_connection(("127.0.0.1", s.port))
        self.addCleanup(c.close)
        c.settimeout(10)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertTrue(recv_head(c).startswith(b"HTTP/1.1 200"))
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # the head, less its end
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        c.sendall(b"\r\n")
        answer = recv_head(c)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertIn(b"connection: close", answer.lower())
        self.assertEqual(s.proc.wait(30), 0)

    def test_idle_connection_holds_a_stop_one_second_at_most(self):
        """A connection that never sends a request is waited for only
        briefly (1 s), not for its whole head deadline (60 s here)."""
        s = self.storaged("s1", extra=["--header-timeout", "60"])
        idle = socket.create_connection(("127.0.0.1", s.port))
        self.addCleanup(idle.close)
        time.sleep(0.2)
        t0 = time.time()
        self.assertEqual(s.stop(timeout=60), 0)
        took = time.time() - t0
        sys.stderr.write(f" stop took {took:.2f} s ")
        self.assertLess(took, 5)


if __name__ == "__main__":
    unittest.main()
