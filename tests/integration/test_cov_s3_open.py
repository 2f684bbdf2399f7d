"""test_cov_s3_open.py - a storaged with --backend s3 that cannot start
safely refuses to (exit 1, a message naming the bucket or the directory) and
changes nothing: a bucket it cannot reach or that answers errors, a bucket
holding another node's state (two nodes on one bucket would delete each
other's objects), and a lost --dir whose node file cannot be restored from
the bucket's copy. Against the real s3rver of the suite (s3fixture.py),
faults from the proxy in s3proxy.py.
"""
import os
import signal
import subprocess

from harness import STORAGED, Client, TempDirTest, free_port, sha1
from s3proxy import S3Proxy

S3_NODE_KEY = "cas-node"  # the node file's copy in the bucket (storaged/s3_internal.h)


def run(argv, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    return subprocess.run([STORAGED, "--listen", f"127.0.0.1:{free_port()}", "--capacity", "10G",
                           "--scrub-rate", "0"] + argv, capture_output=True, text=True, timeout=timeout,
                          env=env)


def node_text(tokens=64, node_id="00112233445566ff"):
    lines = ["ca-cas node 1", f"id {node_id}", "hash sha1", f"tokens {tokens}"]
    lines += [f"{(i + 1) * 0x0101010101010101:016x}" for i in range(tokens)]
    return "\n".join(lines) + "\n"


class S3OpenRefusals(TempDirTest):
    def assert_refused(self, p, *wants):
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("Sanitizer", p.stderr)
        for w in wants:
            self.assertIn(w, p.stderr)

    def node_copies(self):
        return [k for k in self.s3.list_objects() if k == S3_NODE_KEY]

    def test_unreachable_endpoint(self):
        d = os.path.join(self.tmp, "d")
        port = free_port()  # nobody listens there
        args = self.s3.storaged_args(endpoint=f"http://127.0.0.1:{port}")
        p = run(["--dir", d] + args)
        self.assert_refused(p, "cannot reach the bucket cas-test at http://127.0.0.1:%d" % port)
        self.assertFalse(os.path.exists(os.path.join(d, "node")))

    def test_bucket_answering_errors(self):
        proxy = S3Proxy(self.s3)
        self.daemons.append(proxy)
        d = os.path.join(self.tmp, "d")
        proxy.fail(100, 500)  # more than the client's retries
        p = run(["--dir", d] + proxy.storaged_args())
        self.assert_refused(p, "the bucket cas-test", "500")
        self.assertFalse(os.path.exists(os.path.join(d, "node")))
        self.assertEqual(self.node_copies(), [])
        # The HEAD goes through, the GET of the node's copy (a lost --dir
        # looks for one) is refused: not taken for "no copy".
        proxy.clear()
        proxy.fail(1, 403, after=1)
        p = run(["--dir", d] + proxy.storaged_args())
        self.assert_refused(p, "403")
        self.assertFalse(os.path.exists(os.path.join(d, "node")))
        self.assertEqual(self.node_copies(), [])

    def test_bucket_of_another_node_refused(self):
        # Node A owns the bucket and stores an object.
        a = self.storaged("a", s3=self.s3)
        data = b"an object of node A"
        self.assertEqual(a.client(20).put(data).status, 201)
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(30), 0)
        copies = self.node_copies()
        self.assertEqual(len(copies), 1)
        status, a_copy = self.s3.request("GET", f"/{self.s3.bucket}/{copies[0]}")
        self.assertEqual(status, 200)
        # Node B, with its own identity, is pointed at the same bucket.
        b = os.path.join(self.tmp, "b")
        os.makedirs(b)
        with open(os.path.join(b, "node"), "w") as f:
            f.write(node_text())
        p = run(["--dir", b] + self.s3.storaged_args())
        self.assert_refused(p, "holds another node's state", "one bucket per storaged",
                            "nothing was changed")
        # Nothing changed: A's copy, A's object, B's node file.
        self.assertEqual(self.s3.request("GET", f"/{self.s3.bucket}/{copies[0]}"), (200, a_copy))
        with open(os.path.join(b, "node")) as f:
            self.assertEqual(f.read(), node_text())
        self.assertIn(sha1(data), self.s3.content_objects())
        a.start()
        self.assertEqual(Client("127.0.0.1", a.port, 20).get(sha1(data)).body, data)

    def test_lost_dir_restore_that_cannot_be_written(self):
        a = self.storaged("a", s3=self.s3)
        node_a = a.client(20).request("GET", "/ring").json()["node"]
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(30), 0)
        # A new --dir for the same bucket (the old one lost): restored...
        # unless the restore's temporary name cannot be written.
        c = os.path.join(self.tmp, "c")
        os.makedirs(os.path.join(c, "node.s3tmp"))
        p = run(["--dir", c] + self.s3.storaged_args())
        self.assert_refused(p, f"cannot restore {c}/node from the bucket")
        self.assertFalse(os.path.exists(os.path.join(c, "node")))
        # With the obstacle gone, the restore gives back A's identity.
        os.rmdir(os.path.join(c, "node.s3tmp"))
        s = self.storaged("c", s3=self.s3)
        self.assertEqual(s.client(20).request("GET", "/ring").json()["node"], node_a)

    def test_dir_of_a_disk_store_refused(self):
        # A disk store's directory given to --backend s3 by mistake.
        d = self.storaged("d")  # this class's backend is disk
        data = b"on the disk store"
        self.assertEqual(d.client(20).put(data).status, 201)
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(30), 0)
        before = sorted(os.listdir(d.dir))
        p = run(["--dir", d.dir] + self.s3.storaged_args())
        self.assert_refused(p, f"{d.dir} holds a disk store (an index file)",
                            "needs a directory of its own")
        self.assertEqual(sorted(os.listdir(d.dir)), before)
        self.assertEqual(self.s3.list_objects(), {})  # not even the node's copy
        d.start()
        self.assertEqual(d.client(20).get(sha1(data)).body, data)

    def test_state_files_of_the_wrong_kind_refused(self):
        for name in ("LOCK", "s3-index"):
            with self.subTest(name=name):
                d = os.path.join(self.tmp, "k-" + name)
                os.makedirs(os.path.join(d, name))
                p = run(["--dir", d] + self.s3.storaged_args())
                self.assert_refused(p, name, "not a regular file")
                self.assertTrue(os.path.isdir(os.path.join(d, name)))

    def test_index_shorter_than_its_header_refused(self):
        """An s3-index of 0 or 32 bytes (damaged: the index is only ever
        written whole) is refused, unchanged; moved away, it is rebuilt
        from the bucket and every object is served. Found by an attacking
        session: such a file was cut to 0 as a torn tail and the node
        started empty over a full bucket (every object 404), then wrote an
        index without a header that the next start refused."""
        a = self.storaged("a", s3=self.s3)
        datas = [os.urandom(100 + i) for i in range(5)]
        for d in datas:
            self.assertEqual(a.client(20).put(d).status, 201)
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(30), 0)
        index = os.path.join(a.dir, "s3-index")
        for size in (0, 32):
            with self.subTest(size=size):
                with open(index, "r+b") as f:
                    f.truncate(size)
                p = run(["--dir", a.dir] + self.s3.storaged_args())
                self.assert_refused(p, "s3-index", "shorter than its header",
                                    "move it away to rebuild it from the bucket")
                self.assertEqual(os.path.getsize(index), size)
        os.rename(index, index + ".damaged")
        a.start()
        c = a.client(20)
        for d in datas:
            self.assertEqual(c.get(sha1(d)).body, d)

    def test_rebuild_skips_what_is_not_ours(self):
        """A lost index is rebuilt by listing the bucket: names under
        objects/ that are no key of this store's algorithm, and tombs/
        names of another form, are skipped, not taken for objects."""
        a = self.storaged("a", s3=self.s3)
        data = b"a real object"
        self.assertEqual(a.client(20).put(data).status, 201)
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(30), 0)
        b = self.s3.bucket
        sha256_name = "objects/" + "ab" * 32
        for name in ("objects/notakey", sha256_name, "tombs/junk", "tombs/" + "cd" * 20 + ".other"):
            self.assertEqual(self.s3.request("PUT", f"/{b}/{name}", body=b"stray")[0], 200)
        os.unlink(os.path.join(a.dir, "s3-index"))
        a.argv = a.argv + ["--log-level", "info"]
        a.start()
        c = a.client(20)
        listed = c.request("GET", "/objects").body.decode().split()
        self.assertEqual(listed[0::2], [sha1(data)])
        self.assertEqual(c.get(sha1(data)).body, data)
        self.assertIn("keys not of this store skipped", a.log_text())
        # The stray names are left alone in the bucket.
        names = self.s3.list_objects()
        self.assertIn("objects/notakey", names)
        self.assertIn(sha256_name, names)

    def test_crash_debris_swept(self):
        """After a crash (no clean-stop marker) the bucket is read back
        before serving: an unlisted object that hashes to its key is kept,
        one that does not, a tombstoned one and everything under tmp/ are
        deleted; nothing unverified is ever served."""
        s = self.storaged("s", s3=self.s3, extra=["--log-level", "info"])
        c = s.client(20)
        listed, deleted = b"acknowledged before the crash", b"deleted by a client"
        for d in (listed, deleted):
            self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(deleted)}").status, 204)
        c.close()
        s.kill9()
        b = self.s3.bucket
        good, bad = b"finished upload never acknowledged", b"the bytes of another object"
        debris = {f"objects/{sha1(good)}": good, f"objects/{sha1(b'what the name says')}": bad,
                  f"objects/{sha1(deleted)}": deleted, "tmp/0123456789abcdef": b"half an upload"}
        for name, body in debris.items():
            self.assertEqual(self.s3.request("PUT", f"/{b}/{name}", body=body)[0], 200)
        s.start()
        c = s.client(20)
        self.assertEqual(c.get(sha1(listed)).body, listed)
        self.assertEqual(c.get(sha1(good)).body, good)
        self.assertEqual(c.get(sha1(b"what the name says")).status, 404)
        self.assertEqual(c.get(sha1(deleted)).status, 404)
        names = set(self.s3.list_objects())
        self.assertIn(f"objects/{sha1(good)}", names)
        for gone in (f"objects/{sha1(b'what the name says')}", f"objects/{sha1(deleted)}",
                     "tmp/0123456789abcdef"):
            self.assertNotIn(gone, names)
        self.assertIn("1 unlisted objects that verified kept, 3 bad or unacknowledged ones removed",
                      s.log_text())
