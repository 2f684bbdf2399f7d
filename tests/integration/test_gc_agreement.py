"""test_gc_agreement.py - a GC cycle removes only what every backend agrees
is garbage, and only a cycle that really began everywhere (docs/API.md,
"Garbage collection"; docs/OPERATIONS.md, "GC through balancers").

- A begin through a balancer that fails (a backend answers too late) starts
  nothing anywhere: the balancer cancels the id on every backend, the slow
  one too, and whichever of the late begin and the cancel reaches that
  backend first, no cycle is left that an end through a balancer accepts.
  The late begin is made deterministic by a small gating proxy in front of
  one storaged (no sleeps that race): it holds POST /gc/begin until the
  balancer has given up, and orders it against the cancel.
- An end through a balancer is refused (409, nothing removed) unless every
  backend is in the cycle or has ended it (a partial end is still finished
  by ending again); GET /gc through a balancer reports a cycle active only
  when every backend is in it.
- A use served by one replica while the other was down, through one
  balancer, keeps the other replica's copy when the cycle is ended through
  another balancer (the backends agree before the end, gcagree.c).
- A begin refuses an id not above the last one (a second job reusing an id
  must not let the first job's stale end remove what it kept), on a disk
  and an S3 storaged and through a balancer.
"""
import http.client
import http.server
import json
import os
import re
import sys
import threading
import time
import unittest
import urllib.parse
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TempDirTest, free_port, sha1, wait_for  # noqa: E402
from test_balancerd import Balancer  # noqa: E402

HOLD_CAP = 8.0  # longest a gated request waits for its gate (old code: never opened)
SLOW_BEGIN_S = 1.2  # several probe rounds (200 ms apart) while one backend is beginning


class GateProxy:
    """An HTTP proxy in front of one storaged that forwards everything
    unchanged except POST /gc/begin and POST /gc/cancel, which it orders:

    - "cancel_first": the begin waits until the cancel of its id has been
      answered by the storaged, then goes on (late, after the cancel);
    - "begin_first": the cancel waits until the begin has been answered;
      the begin waits until the cancel has arrived (the balancer gave up);
    - "cancel_lost": the cancel is answered 503 here and never forwarded;
      the begin waits until it arrived, then goes on;
    - "slow_begin": the begin is held SLOW_BEGIN_S, then goes on (well
      within the balancer's gc_ms: the begin succeeds, late);
    - "begin_lost": the begin and the cancel are both answered 503 here
      and never forwarded (the path lost them: the id is not burnt).

    A gate also opens after HOLD_CAP seconds (a balancer that never sends
    the cancel). late_begin holds the storaged's answer to the held begin."""

    def __init__(self, target_port, mode):
        self.target = target_port
        self.mode = mode
        self.cancel_arrived = threading.Event()
        self.cancel_done = threading.Event()
        self.begin_done = threading.Event()
        self.late_begin = None
        self.begin_id = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                path = self.path
                held_begin = self.command == "POST" and path.startswith("/gc/begin")
                if proxy.mode == "begin_lost" and self.command == "POST" and \
                        path.startswith(("/gc/begin", "/gc/cancel")):
                    return self.reply(503, {}, b'{"error":"lost on the way"}')
                if held_begin:
                    proxy.begin_id = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("id", [None])[0]
                    if proxy.mode == "slow_begin":
                        time.sleep(SLOW_BEGIN_S)
                    else:
                        gate = proxy.cancel_done if proxy.mode == "cancel_first" else proxy.cancel_arrived
                        gate.wait(HOLD_CAP)
                if self.command == "POST" and path.startswith("/gc/cancel"):
                    proxy.cancel_arrived.set()
                    if proxy.mode == "cancel_lost":
                        return self.reply(503, {}, b'{"error":"lost on the way"}')
                    if proxy.mode == "begin_first":
                        proxy.begin_done.wait(HOLD_CAP)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection", "content-length")}
                c = http.client.HTTPConnection("127.0.0.1", proxy.target, timeout=60)
                try:
                    c.request(self.command, path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                except OSError:  # the storaged stopped (end of a test)
                    c.close()
                    return self.reply(502, {}, b'{"error":"storaged gone"}')
                rh = {k: v for k, v in r.getheaders()
                      if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                if self.command == "HEAD":
                    rh["Content-Length"] = r.getheader("Content-Length") or "0"
                c.close()
                if held_begin:
                    proxy.late_begin = (r.status, data)
                    proxy.begin_done.set()
                if self.command == "POST" and path.startswith("/gc/cancel"):
                    proxy.cancel_done.set()
                self.reply(r.status, rh, data)

            def reply(self, status, hdrs, data):
                try:
                    self.send_response(status)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    if "Content-Length" not in hdrs:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the balancer gave up on this request

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = forward

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GcBase(TempDirTest):
    def setUp(self):
        super().setUp()
        warnings.simplefilter("ignore", ResourceWarning)

    def config(self, urls, name="bal.yaml", extra=""):
        path = os.path.join(self.tmp, name)
        lines = ["replicas: 2", "backends:"]
        for i, u in enumerate(urls):
            lines += [f"  - url: {u}", f"    failure_domain: d{i}"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        return path

    def balancer(self, config, extra=None, up=2):
        b = Balancer(config, self.tmp, extra=extra)
        self.daemons.append(b)
        b.start()
        b.wait_backends(up)
        return b

    def put_everywhere(self, stores, blobs):
        for s in stores:
            c = s.client()
            for d in blobs:
                self.assertIn(c.put(d).status, (200, 201))

    def holds(self, store, d):
        return store.client().request("HEAD", f"/objects/{sha1(d)}").status == 200

    def same_id_twice(self, c, keep_store, keep):
        n = int(time.time() * 1e6) + 777
        self.assertEqual(c.request("POST", f"/gc/begin?id={n}").status, 200)
        self.assertEqual(c.request("POST", "/gc/mark", body=sha1(keep) + "\n").status, 200)
        r = c.request("POST", f"/gc/begin?id={n}")  # a second job with the same id
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(c.request("POST", f"/gc/begin?id={n - 1}").status, 409)
        g = c.request("GET", "/gc").json()
        self.assertEqual((g["active"], g["id"]), (True, str(n)), "a refused begin changed the cycle")
        r = c.request("POST", f"/gc/end?id={n}")  # job 1's end: its own cycle, K kept
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(self.holds(keep_store, keep))
        return n


class StoragedIdsTest(GcBase):
    """Ids only grow, at a storaged (disk here, S3 below)."""

    def test_begin_refuses_an_id_not_above_the_last(self):
        s = self.storaged("s")
        keep = b"kept by job 1"
        self.put_everywhere([s], [keep, b"dropped"])
        c = s.client()
        n = self.same_id_twice(c, s, keep)
        self.assertFalse(self.holds(s, b"dropped"))
        # A cancel of an id not begun yet (a balancer's failed begin) burns it.
        self.assertEqual(c.request("POST", f"/gc/cancel?id={n + 10}").status, 409)
        self.assertEqual(c.request("POST", f"/gc/begin?id={n + 10}").status, 409)
        self.assertEqual(c.request("GET", "/gc").json()["last_id"], str(n + 10))
        r = c.request("POST", "/gc/begin")
        self.assertEqual(r.status, 200)
        last = int(r.json()["id"])
        self.assertGreater(last, n + 10)
        # Through a compaction (the S3 backend's always rewrites its index)
        # and a restart, with no cycle active: still refused.
        self.assertEqual(c.request("POST", f"/gc/cancel?id={last}").status, 200)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        c.close()
        s.stop()
        s.start()
        c = s.client()
        self.assertEqual(c.request("GET", "/gc").json()["last_id"], str(last))
        self.assertEqual(c.request("POST", f"/gc/begin?id={last}").status, 409)
        self.assertEqual(c.request("POST", f"/gc/begin?id={last + 1}").status, 200)

    def test_ended_id_survives_restart_and_snapshot(self):
        """GET /gc's ended_id is in the index: a restart (replay) and a
        compaction's snapshot keep it, and the snapshot's ended cycle
        removes nothing stored after it."""
        s = self.storaged("s")
        c = s.client()
        e = int(c.request("POST", "/gc/begin").json()["id"])
        self.assertEqual(c.request("POST", f"/gc/end?id={e}").status, 200)
        after = b"stored after the end"
        self.put_everywhere([s], [after])
        c.close()
        s.stop()
        s.start()
        c = s.client()
        g = c.request("GET", "/gc").json()
        self.assertEqual((g["active"], g["ended_id"], g["last_id"]), (False, str(e), str(e)))
        # A later begin cancelled, then a snapshot: both ids are kept.
        f = int(c.request("POST", "/gc/begin").json()["id"])
        self.assertEqual(c.request("POST", f"/gc/cancel?id={f}").status, 200)
        self.assertEqual(c.request("POST", "/compact?wait=1").status, 200)
        c.close()
        s.stop()
        s.start()
        c = s.client()
        g = c.request("GET", "/gc").json()
        self.assertEqual((g["active"], g["ended_id"], g["last_id"]), (False, str(e), str(f)))
        self.assertTrue(self.holds(s, after))
        self.assertEqual(c.request("POST", f"/gc/begin?id={f}").status, 409)


class StoragedIdsS3Test(StoragedIdsTest):
    """The same rule in the S3 backend's own GC code (s3_gc.c)."""

    backend = "s3"


class GcAgreementTest(GcBase):
    def test_end_finished_through_balancer_after_restart(self):
        """An end that reached one backend and not the other (here: sent to
        a directly) is finished through a balancer after a restarted."""
        a, b = self.storaged("a"), self.storaged("b")
        bal = self.balancer(self.config([a.url, b.url]))
        garbage, used = b"never used in the cycle", b"used in the cycle"
        self.put_everywhere([a, b], [garbage, used])
        gid = bal.client().request("POST", "/gc/begin").json()["id"]
        r = bal.client().request("POST", "/gc/mark", body=(sha1(used) + "\n").encode())
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(a.client().request("POST", f"/gc/end?id={gid}").status, 200)
        a.stop()
        a.start()
        bal.wait_backends(2)
        for _ in range(20):  # a probe that saw a down may still say so: 503 changes nothing
            r = bal.client().request("POST", f"/gc/end?id={gid}")
            if r.status != 503:
                break
            time.sleep(0.5)
        self.assertEqual(r.status, 200, r.body)
        for st in (a, b):
            self.assertFalse(self.holds(st, garbage))
            self.assertTrue(self.holds(st, used))
            self.assertFalse(st.client().request("GET", "/gc").json()["active"])


    def test_reads_before_a_slow_begin_do_not_survive_the_cycle(self):
        """Objects read through a balancer just before it begins a cycle
        are garbage unless marked. While one backend is slow to begin, the
        balancer's probes meet the cycle on the other; they must not take
        it for a cycle another balancer began and unmark everything this
        one served in the last two minutes (gctouch.c): then nothing read
        lately could ever be collected. Seen in CI as an object GC kept."""
        a, b = self.storaged("a"), self.storaged("b")
        proxy = GateProxy(b.port, "slow_begin")
        self.addCleanup(proxy.close)
        bal = self.balancer(self.config([a.url, proxy.url]))
        c = bal.client()
        blobs = [b"read just before the begin %d" % i for i in range(6)]
        for d in blobs:
            self.assertEqual(c.put(d).status, 201)
            self.assertEqual(c.get(sha1(d)).body, d)
        t0 = time.time()
        r = c.request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        self.assertGreater(time.time() - t0, SLOW_BEGIN_S - 0.1, "the begin was not held")
        gid = r.json()["id"]
        self.assertEqual(c.request("POST", "/gc/mark", body=sha1(blobs[0]) + "\n").status, 200)
        r = c.request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        for st in (a, b):
            self.assertTrue(self.holds(st, blobs[0]), st.url)
            kept = [d for d in blobs[1:] if self.holds(st, d)]
            self.assertEqual(kept, [], f"{st.url} kept unmarked objects read before the begin")

    def test_lost_begin_does_not_make_the_id_ours(self):
        """A begin through balancer A whose begin and cancel never reached a
        backend leaves the id unburnt; the job retries that id through
        balancer B. A must take that cycle for another balancer's: what it
        served just before (a PUT answered 201) survives it, as for any
        cycle it did not begin. (A kept the id as its own and the object
        was removed from every store.)"""
        a, b = self.storaged("a"), self.storaged("b")
        pa, pb = GateProxy(a.port, "begin_lost"), GateProxy(b.port, "begin_lost")
        self.addCleanup(pa.close)
        self.addCleanup(pb.close)
        bal_a = self.balancer(self.config([pa.url, pb.url], name="a.yaml"))
        bal_b = self.balancer(self.config([a.url, b.url], name="b.yaml"))
        n = int(time.time() * 1e6) + 5000
        r = bal_a.client().request("POST", f"/gc/begin?id={n}")
        self.assertEqual(r.status, 503, r.body)
        d = b"stored through A just before B begins the same id"
        self.assertEqual(bal_a.client().put(d).status, 201)
        r = bal_b.client().request("POST", f"/gc/begin?id={n}")
        self.assertEqual(r.status, 200, r.body)
        # A's probes (200 ms apart) meet the cycle as another balancer's
        # and unmark what A served (logged just before the unmarks go out)
        wait_for(lambda: f"GC cycle {n} is active" in bal_a.log_text(), 10,
                 "balancer A to take the cycle for another balancer's")
        time.sleep(0.5)
        r = bal_b.client().request("POST", f"/gc/end?id={n}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual([self.holds(s, d) for s in (a, b)], [True, True],
                         "an object A served just before the cycle was removed")

    # ---- a begin that failed starts nothing anywhere ----------------------

    def failed_begin(self, mode):
        a, b = self.storaged("a"), self.storaged("b")
        proxy = GateProxy(b.port, mode)
        self.addCleanup(proxy.close)
        cfg = self.config([a.url, proxy.url],
                          extra="timeouts:\n  gc_ms: 1000\n  fanout_ms: 1500\n")
        bal = self.balancer(cfg)
        blobs = [b"stored before the failed begin %d" % i for i in range(8)]
        self.put_everywhere([a, b], blobs)
        r = bal.client().request("POST", "/gc/begin")
        self.assertEqual(r.status, 503, r.body)
        self.assertTrue(proxy.begin_done.wait(HOLD_CAP + 5), "the held begin never went on")
        gid = proxy.begin_id
        self.assertTrue(gid)
        return a, b, proxy, bal, blobs, gid

    def assert_nothing_ended(self, bal, stores, blobs, gid):
        r = bal.client().request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 409, r.body)
        for s in stores:
            for d in blobs:
                self.assertTrue(self.holds(s, d), f"{s.url} lost an object to a failed begin")
        g = bal.client().request("GET", "/gc").json()
        self.assertFalse(g["active"], g)

    def test_failed_begin_cancel_before_late_begin(self):
        """The cancel reaches the slow backend first: its late begin is refused."""
        a, b, proxy, bal, blobs, gid = self.failed_begin("cancel_first")
        self.assertEqual(proxy.late_begin[0], 409, proxy.late_begin)
        self.assertFalse(b.client().request("GET", "/gc").json()["active"])
        self.assert_nothing_ended(bal, [a, b], blobs, gid)

    def test_failed_begin_late_begin_before_cancel(self):
        """The late begin runs first: the cancel that follows ends it."""
        a, b, proxy, bal, blobs, gid = self.failed_begin("begin_first")
        self.assertEqual(proxy.late_begin[0], 200, proxy.late_begin)
        self.assertTrue(proxy.cancel_done.wait(10), "the balancer never cancelled on the slow backend")
        self.assertFalse(b.client().request("GET", "/gc").json()["active"])
        self.assert_nothing_ended(bal, [a, b], blobs, gid)

    def test_failed_begin_cancel_lost_end_refused(self):
        """The cancel never arrives: the cycle left on one backend is not
        reported active, no balancer ends it, and the next begin replaces it."""
        a, b, proxy, bal, blobs, gid = self.failed_begin("cancel_lost")
        self.assertEqual(proxy.late_begin[0], 200, proxy.late_begin)
        g = b.client().request("GET", "/gc").json()
        self.assertEqual((g["active"], g["id"]), (True, gid))
        other = self.balancer(self.config([a.url, proxy.url], name="other.yaml"))
        for x in (bal, other):
            self.assert_nothing_ended(x, [a, b], blobs, gid)
        # The next begin replaces the stray cycle; what is kept survives.
        r = bal.client().request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        new = r.json()["id"]
        self.assertGreater(int(new), int(gid))
        keep = "".join(sha1(d) + "\n" for d in blobs[:4])
        self.assertEqual(bal.client().request("POST", "/gc/mark", body=keep).status, 200)
        r = other.client().request("POST", f"/gc/end?id={new}")
        self.assertEqual(r.status, 200, r.body)
        for s in (a, b):
            self.assertEqual([self.holds(s, d) for d in blobs], [True] * 4 + [False] * 4)

    def test_partial_end_is_finished_by_ending_again(self):
        """A backend that already ended the cycle (an end that failed
        elsewhere) does not block the end: ended_id tells it from a backend
        that never began it."""
        a, b = self.storaged("a"), self.storaged("b")
        bal = self.balancer(self.config([a.url, b.url]))
        blobs = [b"partial end %d" % i for i in range(4)]
        self.put_everywhere([a, b], blobs)
        gid = bal.client().request("POST", "/gc/begin").json()["id"]
        self.assertEqual(bal.client().request("POST", "/gc/mark", body=sha1(blobs[0]) + "\n").status, 200)
        self.assertEqual(a.client().request("POST", f"/gc/end?id={gid}").status, 200)
        self.assertEqual(a.client().request("GET", "/gc").json()["ended_id"], gid)
        g = bal.client().request("GET", "/gc").json()
        self.assertFalse(g["active"], g)
        r = bal.client().request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        for s in (a, b):
            self.assertEqual([self.holds(s, d) for d in blobs], [True, False, False, False])

    # ---- a use seen by one replica keeps every copy ------------------------

    def test_use_while_replica_down_kept_when_ended_elsewhere(self):
        a, b = self.storaged("a"), self.storaged("b")
        cfg = self.config([a.url, b.url], extra="timeouts:\n  fanout_ms: 1000\n")
        # bal1 probes rarely (a legal setting): its debt stays in its memory.
        bal1 = self.balancer(cfg, extra=["--probe-interval-ms", "600000"])
        bal2 = self.balancer(cfg)
        used, unused = b"read during the cycle", b"nobody uses this one"
        only_a = b"held by a only, read during the cycle"
        self.put_everywhere([a, b], [used, unused])
        self.put_everywhere([a], [only_a])
        r = bal1.client().request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        gid = r.json()["id"]
        b.kill9()
        for d in (used, only_a):
            r = bal1.client().request("GET", f"/objects/{sha1(d)}")
            self.assertEqual((r.status, r.body), (200, d))
        b.start()
        r = None
        for _ in range(100):  # bal2 must see b up again (its probes: 200 ms)
            r = bal2.client().request("POST", f"/gc/end?id={gid}")
            if r.status != 503:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(self.holds(a, used) and self.holds(b, used), "a used object lost a copy")
        self.assertTrue(self.holds(a, only_a))
        self.assertFalse(self.holds(a, unused) or self.holds(b, unused), "garbage was kept")
        self.assertFalse(self.holds(b, only_a))

    def test_agreement_in_several_passes(self):
        """More garbage than gc_agree_max_keys: the agreement splits the key
        space into passes and still keeps every copy of what one replica saw
        used, and removes the rest everywhere."""
        stores = [self.storaged(n) for n in ("a", "b", "c")]
        bal = self.balancer(self.config([s.url for s in stores], extra="gc_agree_max_keys: 4\n"),
                            up=3)
        blobs = [b"several passes, object %d" % i for i in range(40)]
        self.put_everywhere(stores, blobs)
        gid = bal.client().request("POST", "/gc/begin").json()["id"]
        # Uses each seen by one replica only (as when the others were down).
        seen = {0: blobs[:12], 1: blobs[12:17]}
        for i, used in seen.items():
            body = "".join(sha1(d) + "\n" for d in used)
            self.assertEqual(stores[i].client().request("POST", "/gc/mark", body=body).status, 200)
        r = bal.client().request("POST", f"/gc/end?id={gid}")
        self.assertEqual(r.status, 200, r.body)
        for s in stores:
            for d in blobs[:17]:
                self.assertTrue(self.holds(s, d), f"{s.url} lost a copy of a used object")
            for d in blobs[17:]:
                self.assertFalse(self.holds(s, d), f"{s.url} kept garbage")
        m = re.search(r"(\d+) garbage copies kept, .* (\d+) passes\)", bal.log_text())
        self.assertIsNotNone(m, bal.log_text()[-2000:])
        self.assertEqual(int(m.group(1)), 12 * 2 + 5 * 2)
        self.assertGreater(int(m.group(2)), 1)

    # ---- ids only grow -----------------------------------------------------

    def test_balancer_begin_refuses_an_id_not_above_the_last(self):
        a, b = self.storaged("a"), self.storaged("b")
        bal = self.balancer(self.config([a.url, b.url]))
        keep = b"kept by job 1 through a balancer"
        self.put_everywhere([a, b], [keep])
        self.same_id_twice(bal.client(), b, keep)
        self.assertTrue(self.holds(a, keep))
        # Ids a balancer picks are above every id a backend has begun.
        self.assertEqual(a.client().request("POST", "/gc/begin?id=9000000000000000").status, 200)
        r = bal.client().request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        self.assertGreater(int(r.json()["id"]), 9000000000000000)


if __name__ == "__main__":
    unittest.main()
