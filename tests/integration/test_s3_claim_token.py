"""test_s3_claim_token.py - one bucket per storaged, even when two start at
the same moment, and one token per balancer across a SIGHUP.

S3ClaimTest: storageds with --backend s3 on a fresh bucket take it through
claims (storaged/s3_claim.c), held while they run: two started together
never both run (rounds of fresh buckets), a claim left by a crashed start
of another node refuses the start and is named with how to remove it
(nothing changed), one left by this node's own crash is taken over, an
empty --dir never becomes a second process of a node that runs (or whose
crash left its claim), and a server
that honours conditional writes (If-None-Match: *, answered through a
proxy: 412 when cas-node exists, 501 when not supported) is followed.
Against the suite's s3rver (s3fixture.py), which itself ignores
If-None-Match on PUT, so the claims alone must hold there.

BalancerTokenReloadTest: after the token file's contents change and the
balancer gets SIGHUP, it keeps the token it started with for its clients
and its backends alike (a half change had backends answer 401 and be
marked down while clients still needed the old token).
"""
import http.client
import os
import re
import signal
import subprocess
import time

from harness import (STORAGED, Client, TempDirTest, free_port, s3_backend_args, sha1,
                     wait_for)
from s3proxy import S3Proxy
from test_balancerd import Balancer

S3_NODE_KEY = "cas-node"
CLAIMS = "cas-claims/"


def node_text(node_id, tokens=64):
    lines = ["ca-cas node 1", f"id {node_id}", "hash sha1", f"tokens {tokens}"]
    lines += [f"{(i + 1) * 0x0101010101010101:016x}" for i in range(tokens)]
    return "\n".join(lines) + "\n"


def node_id(d):
    with open(os.path.join(d, "node")) as f:
        return re.search(r"^id ([0-9a-f]{16})$", f.read(), re.M).group(1)


def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


class S3ClaimTest(TempDirTest):
    def args(self, bucket=None, endpoint=None):
        a = s3_backend_args(self.s3)
        if endpoint:
            a[a.index("--s3-endpoint") + 1] = endpoint
        if bucket:
            a[a.index("--s3-bucket") + 1] = bucket
        return a

    def spawn(self, name, args):
        """A storaged in self.tmp/name (not waited for): (proc, port, dir)."""
        d = os.path.join(self.tmp, name)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        p = subprocess.Popen([STORAGED, "--dir", d, "--listen", f"127.0.0.1:{port}", "--scrub-rate", "0"]
                             + args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

        class Proc:  # reaped by TempDirTest like its daemons
            proc = p

            def running(self):
                return p.poll() is None

            def kill9(self):
                if p.poll() is None:
                    p.kill()
                p.wait(10)

        self.daemons.append(Proc())
        return p, port, d

    def settle(self, p, port, timeout=30):
        """True once the storaged answers, False once it has exited."""
        return wait_for(lambda: "up" if healthy(port) else ("exited" if p.poll() is not None else None),
                        timeout, "the storaged to start or exit") == "up"

    def log(self, name):
        with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
            return f.read()

    def bucket_names(self, bucket):
        saved = self.s3.bucket
        self.s3.bucket = bucket
        try:
            return self.s3.list_objects()
        finally:
            self.s3.bucket = saved

    def get(self, bucket, name):
        return self.s3.request("GET", f"/{bucket}/{name}")

    def read(self, d, name="node"):
        with open(os.path.join(d, name)) as f:
            return f.read()

    def test_two_started_together_never_both_run(self):
        rounds, won = 10, 0
        for r in range(rounds):
            bucket = f"claim{r}"
            self.assertEqual(self.s3.request("PUT", f"/{bucket}")[0], 200)
            pa, porta, da = self.spawn(f"a{r}", self.args(bucket))
            pb, portb, db = self.spawn(f"b{r}", self.args(bucket))
            up = [self.settle(pa, porta), self.settle(pb, portb)]
            self.assertNotEqual(up, [True, True], f"round {r}: both storageds run on bucket {bucket}")
            status, copy = self.get(bucket, S3_NODE_KEY)
            for ok, p, d, name in ((up[0], pa, da, f"a{r}"), (up[1], pb, db, f"b{r}")):
                if ok:
                    won += 1
                    self.assertEqual((status, copy.decode()), (200, self.read(d)))
                else:
                    self.assertEqual(p.returncode, 1, self.log(name))
                    self.assertIn("one bucket per storaged", self.log(name))
                    self.assertNotIn("Sanitizer", self.log(name))
            # The winner's claim alone, held while it runs; the loser's withdrawn.
            claims = [n for n in self.bucket_names(bucket) if n.startswith(CLAIMS)]
            self.assertEqual(claims, [CLAIMS + node_id(d) for ok, d in ((up[0], da), (up[1], db)) if ok])
            if up == [False, False]:
                # Both stood back: the operator starts one again, and it runs.
                self.assertEqual(status, 404)
                p, port, _ = self.spawn(f"a{r}", self.args(bucket))
                self.assertTrue(self.settle(p, port), self.log(f"a{r}"))
            for p in (pa, pb):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    self.assertEqual(p.wait(30), 0)
            self.assertEqual([n for n in self.bucket_names(bucket) if n.startswith(CLAIMS)], [])
        print(f"\n  {won} of {rounds} rounds had a winner, the others both refused")

    def test_stale_claim_of_another_node_refuses_and_names_it(self):
        bucket = self.s3.bucket
        stale = CLAIMS + "00112233445566ff"
        body = b"ca-cas bucket claim\nnode 00112233445566ff\nhost deadhost\npid 4242\ntime 2026-01-02T03:04:05Z\n"
        self.assertEqual(self.s3.request("PUT", f"/{bucket}/{stale}", body)[0], 200)
        p, port, d = self.spawn("b", self.args())
        self.assertFalse(self.settle(p, port))
        self.assertEqual(p.returncode, 1)
        text = self.log("b")
        self.assertNotIn("Sanitizer", text)
        for want in ("is being claimed by another storaged", stale, "host deadhost", "pid 4242",
                     "2026-01-02T03:04:05Z", "one bucket per storaged", "changed nothing",
                     f"aws s3 rm s3://{bucket}/{stale}"):
            self.assertIn(want, text)
        # Nothing changed in the bucket: the stale claim alone, no node copy.
        self.assertEqual(list(self.s3.list_objects()), [stale])
        # Once the claim is removed, the node starts and the bucket is its own.
        self.assertIn(self.s3.request("DELETE", f"/{bucket}/{stale}")[0], (200, 204))
        p, port, _ = self.spawn("b", self.args())
        self.assertTrue(self.settle(p, port), self.log("b"))
        self.assertEqual(self.get(bucket, S3_NODE_KEY), (200, self.read(d).encode()))
        self.assertEqual([n for n in self.s3.list_objects() if n.startswith(CLAIMS)], [CLAIMS + node_id(d)])

    def test_own_leftover_claim_taken_over(self):
        bucket = self.s3.bucket
        # A start of this node crashed after its claim, before cas-node.
        d = self.node_dir("a", "0a0b0c0d0e0f1011")
        own = CLAIMS + "0a0b0c0d0e0f1011"
        self.assertEqual(self.s3.request("PUT", f"/{bucket}/{own}", b"ca-cas bucket claim\n")[0], 200)
        p, port, _ = self.spawn("a", self.args())
        self.assertTrue(self.settle(p, port), self.log("a"))
        self.assertEqual(self.get(bucket, S3_NODE_KEY), (200, node_text("0a0b0c0d0e0f1011").encode()))
        self.assertEqual(self.get(bucket, own)[0], 200)  # held while it runs
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(30), 0)
        self.assertNotIn(own, self.s3.list_objects())  # released at the stop
        # A crash leaves the claim; the node's restart takes it again.
        p, port, _ = self.spawn("a", self.args())
        self.assertTrue(self.settle(p, port), self.log("a"))
        p.kill()
        p.wait(10)
        self.assertIn(own, self.s3.list_objects())
        p, port, _ = self.spawn("a", self.args())
        self.assertTrue(self.settle(p, port), self.log("a"))
        self.assertEqual(self.read(d), node_text("0a0b0c0d0e0f1011"))
        # Another node is still refused: the bucket is a's.
        self.node_dir("b", "2222333344445555")
        p2, port2, _ = self.spawn("b", self.args())
        self.assertFalse(self.settle(p2, port2))
        self.assertIn("holds another node's state", self.log("b"))
        self.assertNotIn("Sanitizer", self.log("b"))

    def test_empty_dir_never_a_second_process_of_a_running_node(self):
        bucket = self.s3.bucket
        pa, porta, da = self.spawn("a", self.args())
        self.assertTrue(self.settle(pa, porta), self.log("a"))
        ida = node_id(da)
        before = self.s3.list_objects()
        # An empty --dir on a's bucket while a runs: refused, nothing changed.
        pb, portb, db = self.spawn("b", self.args())
        self.assertFalse(self.settle(pb, portb))
        self.assertEqual(pb.returncode, 1)
        text = self.log("b")
        self.assertNotIn("Sanitizer", text)
        for want in (f"belongs to node {ida}", "running or did not stop cleanly", "nothing was changed",
                     f"aws s3 rm s3://{bucket}/{CLAIMS}{ida}"):
            self.assertIn(want, text)
        self.assertFalse(os.path.exists(os.path.join(db, "node")))
        self.assertEqual(self.s3.list_objects(), before)
        # a crashes: still refused (the claim says a may run), until the
        # operator removes the claim of the node whose --dir was lost.
        pa.kill()
        pa.wait(10)
        pb, portb, db = self.spawn("b", self.args())
        self.assertFalse(self.settle(pb, portb))
        self.assertIn("running or did not stop cleanly", self.log("b"))
        self.assertIn(self.s3.request("DELETE", f"/{bucket}/{CLAIMS}{ida}")[0], (200, 204))
        pb, portb, db = self.spawn("b", self.args())
        self.assertTrue(self.settle(pb, portb), self.log("b"))
        self.assertEqual(self.read(db), self.read(da))  # a's identity, restored
        self.assertEqual(self.get(bucket, CLAIMS + ida)[0], 200)
        # After a clean stop, a lost --dir is restored with no hand work.
        pb.send_signal(signal.SIGTERM)
        self.assertEqual(pb.wait(30), 0)
        pc, portc, dc = self.spawn("c", self.args())
        self.assertTrue(self.settle(pc, portc), self.log("c"))
        self.assertEqual(self.read(dc), self.read(da))

    def node_dir(self, name, node_id):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        with open(os.path.join(d, "node"), "w") as f:
            f.write(node_text(node_id))
        return d

    def conditional_proxy(self, status, writes, node_id=None):
        """A proxy that answers `status` to the conditional PUT of cas-node
        of a fresh start (found by a first start through it: the request
        sequence of a start is fixed), after putting `writes` (bytes, or
        None) into cas-node itself: a server that honours If-None-Match: *
        and a concurrent writer that won."""
        s3 = self.s3

        class Proxy(S3Proxy):
            def _answer_error(self, sock, st, code=None, message=None, head_only=False):
                if st == 412 and writes is not None:
                    s3.request("PUT", f"/{s3.bucket}/{S3_NODE_KEY}", writes)
                code = {412: "PreconditionFailed", 501: "NotImplemented"}.get(st, code)
                super()._answer_error(sock, st, code, message, head_only)

        proxy = Proxy(s3)
        self.daemons.append(proxy)
        # The first start's requests, to find the conditional PUT's place
        # (a --dir with a node file or without, as the test's own).
        if node_id:
            self.node_dir("probe", "9999888877776666")
        p, port, d = self.spawn("probe", self.args(endpoint=proxy.endpoint))
        self.assertTrue(self.settle(p, port), self.log("probe"))
        p.kill()
        p.wait(10)
        puts = [i for i, (m, path, _) in enumerate(proxy.log) if m == "PUT" and path.endswith("/" + S3_NODE_KEY)]
        self.assertEqual(len(puts), 1, proxy.log)
        for name in s3.list_objects():
            s3.request("DELETE", f"/{s3.bucket}/{name}")
        proxy.log.clear()
        proxy.fail(1, status, after=puts[0])
        return proxy

    def test_conditional_write_not_supported_501(self):
        proxy = self.conditional_proxy(501, None)
        p, port, d = self.spawn("a", self.args(endpoint=proxy.endpoint))
        self.assertTrue(self.settle(p, port), self.log("a"))
        node_puts = [x[2] for x in proxy.log if x[0] == "PUT" and x[1].endswith("/" + S3_NODE_KEY)]
        self.assertEqual(node_puts, ["failed 501", "200"])
        self.assertEqual(self.get(self.s3.bucket, S3_NODE_KEY), (200, self.read(d).encode()))

    def test_conditional_write_refused_412_another_node(self):
        other = node_text("ffeeddccbbaa9988").encode()
        proxy = self.conditional_proxy(412, other)
        p, port, d = self.spawn("a", self.args(endpoint=proxy.endpoint))
        self.assertFalse(self.settle(p, port))
        self.assertEqual(p.returncode, 1)
        self.assertIn("holds another node's state", self.log("a"))
        self.assertNotIn("Sanitizer", self.log("a"))
        # The winner's copy stays, our claim is withdrawn.
        self.assertEqual(self.get(self.s3.bucket, S3_NODE_KEY), (200, other))
        self.assertEqual([n for n in self.s3.list_objects() if n.startswith(CLAIMS)], [])

    def test_conditional_write_412_of_our_own_copy(self):
        # A PUT that landed but whose answer was lost, retried: 412, and
        # cas-node is ours: the start goes on.
        self.node_dir("a", "1111222233334444")
        proxy = self.conditional_proxy(412, node_text("1111222233334444").encode(), "1111222233334444")
        p, port, _ = self.spawn("a", self.args(endpoint=proxy.endpoint))
        self.assertTrue(self.settle(p, port), self.log("a"))


class BalancerTokenReloadTest(TempDirTest):
    def test_sighup_keeps_the_token_for_clients_and_backends(self):
        tf = os.path.join(self.tmp, "token")
        with open(tf, "w") as f:
            f.write("secret-one\n")
        stores = [self.storaged(f"s{i}", extra=["--token-file", tf]) for i in range(2)]
        config = os.path.join(self.tmp, "balancerd.yaml")
        with open(config, "w") as f:
            f.write(f"replicas: 2\ntoken_file: {tf}\nbackends:\n" + "".join(
                f"  - url: {s.url}\n    failure_domain: d{i}\n" for i, s in enumerate(stores)))
        bal = Balancer(config, self.tmp)
        bal.token = "secret-one"
        self.daemons.append(bal)
        bal.start()
        bal.wait_backends(2)
        old = Client("127.0.0.1", bal.port, 20, "secret-one")
        new = Client("127.0.0.1", bal.port, 20, "secret-two")
        first = b"written before the token file changed"
        self.assertEqual(old.put(first).status, 201)
        # A rotation being prepared: the file holds the new token, the
        # storageds still run with the old one; the balancer gets SIGHUP.
        with open(tf, "w") as f:
            f.write("secret-two\n")
        bal.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in bal.log_text(), 10, "the reload")
        second = b"written after the SIGHUP"
        r = old.put(second)
        self.assertEqual((r.status, r.header("X-CAS-Copies")), (201, "2"), r.body)
        self.assertEqual(new.put(b"never stored").status, 401)
        self.assertEqual(old.request("DELETE", "/objects/" + sha1(first)).status, 204)
        self.assertRegex(bal.log_text(), r"token_file \S+ holds another token: the balancer keeps the token")
        # No backend was marked down meanwhile (probes every 200 ms).
        for _ in range(10):
            st = bal.status()
            self.assertEqual([b["up"] for b in st["backends"]], [True, True], st)
            time.sleep(0.1)
        for s in stores:
            self.assertEqual(s.client(10).get(sha1(second)).status, 200)
        # The same after a reload whose config text changed too.
        with open(config, "a") as f:
            f.write("# edited\n")
        n = bal.log_text().count("config reloaded")
        bal.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: bal.log_text().count("config reloaded") > n, 10, "the second reload")
        self.assertEqual(old.request("DELETE", "/objects/" + sha1(second)).status, 204)
        self.assertEqual(new.request("GET", "/status").status, 401)
