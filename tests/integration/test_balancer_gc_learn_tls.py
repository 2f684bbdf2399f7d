"""test_balancer_gc_learn_tls.py - a balancer in front of https:// backends
learns a GC cycle from a backend's X-CAS-GC header (SPEC "GC": any request
that answers success for an object during a cycle leaves that object alive
after `end`, on every node that holds it).

Reads from https:// backends go through libcurl (balancerd/bstream.c), not
the pooled plain-HTTP reader; bstream used to drop X-CAS-GC, so a balancer
that had not probed since another balancer began a cycle served the read,
unmarked the object only on the backend that served it, and an `end` right
after removed the other copy. Here the cycle is begun on the storageds
directly (as another balancer would), the balancer's probes are 10 minutes
apart, and one read through it must keep both copies.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tls  # noqa: E402
from harness import BALANCERD, free_port, sha1  # noqa: E402
from test_tls import TlsDaemon, TlsTest, context, https, pki  # noqa: E402


def setUpModule():
    test_tls.setUpModule()


def tearDownModule():
    test_tls.tearDownModule()


class TestGcLearnedOverTls(TlsTest):
    def slow_probe_balancer(self, stores):
        """A TLS balancer that probes once at start, then not for 10 minutes."""
        config = self.write_config(stores)
        port = free_port()
        argv = [BALANCERD, "--config", config, "--listen", f"127.0.0.1:{port}", "--log-level", "info",
                "--probe-interval-ms", "600000", "--connect-timeout-ms", "2000", "--spool-dir",
                self.tmp, "--drain-ms", "0", "--tls-cert", pki("srv.pem"), "--tls-key", pki("srv.key")]
        b = TlsDaemon(argv, os.path.join(self.tmp, f"balancerd-{port}.log"), port, context())
        self.daemons.append(b)
        b.start()
        self.wait_backends(b, len(stores))
        return b

    def read_during_foreign_cycle(self, size):
        s1, s2 = self.storaged("s1"), self.storaged("s2")
        b = self.slow_probe_balancer([s1, s2])
        keep, drop = os.urandom(size), os.urandom(size)
        # Stored behind the balancer's back, so that its log of recently
        # used keys (flushed when it learns a cycle) does not hold them.
        for s in (s1, s2):
            for d in (keep, drop):
                st, body = https(s.port, "PUT", f"/objects/{sha1(d)}", body=d, ctx=s.ctx)
                self.assertIn(st, (200, 201), body)
        # Another balancer begins a cycle: on every storaged, one id.
        st, body = https(s1.port, "POST", "/gc/begin", ctx=s1.ctx)
        self.assertEqual(st, 200, body)
        import json
        gid = json.loads(body)["id"]
        st, body = https(s2.port, "POST", f"/gc/begin?id={gid}", ctx=s2.ctx)
        self.assertEqual(st, 200, body)
        # One read through the balancer, which has not probed since.
        st, body = https(b.port, "GET", f"/objects/{sha1(keep)}", ctx=b.ctx)
        self.assertEqual(st, 200)
        self.assertEqual(body, keep)
        # The other balancer ends the cycle at once.
        for s in (s1, s2):
            st, body = https(s.port, "POST", f"/gc/end?id={gid}", ctx=s.ctx)
            self.assertEqual(st, 200, body)
        for s in (s1, s2):
            self.assertEqual(https(s.port, "HEAD", f"/objects/{sha1(keep)}", ctx=s.ctx)[0], 200,
                             f"the copy on {s.port} was removed: the balancer did not learn the cycle\n"
                             + b.log_text()[-3000:])
            self.assertEqual(https(s.port, "HEAD", f"/objects/{sha1(drop)}", ctx=s.ctx)[0], 404)
        self.assertIn("a backend says so", b.log_text())

    def test_small_read_learns_cycle(self):
        self.read_during_foreign_cycle(900)

    def test_large_read_learns_cycle(self):
        self.read_during_foreign_cycle(1 << 20)  # past the small-object limit: streamed


if __name__ == "__main__":
    unittest.main()
