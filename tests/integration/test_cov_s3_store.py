"""test_cov_s3_store.py - SPEC rules on the S3 backend (storaged/s3_store.c)
that the shared API tests reach only on disk: a client's DELETE is never
undone by a copy from another replica (PUT ?replica=1 answers 410 and
stores nothing; only a client's PUT of the same bytes brings the object
back), a replica's DELETE ?replica=1 leaves no tombstone; a PUT of a stored
object during a GC cycle keeps it alive through `end`; and --capacity is a
hard limit (507, nothing left in the bucket). Against the real s3rver.
"""

from harness import TempDirTest, sha1


class S3StoreRules(TempDirTest):
    backend = "s3"

    def test_client_delete_not_undone_by_a_replica_copy(self):
        s = self.storaged("s1")
        c = s.client(20)
        data = b"deleted by a client"
        key = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{key}").status, 204)
        self.assertNotIn(key, self.s3.content_objects())
        # A balancer's repair or a rebalance copying it back: refused.
        r = c.put(data, query="?replica=1")
        self.assertEqual(r.status, 410, r.body)
        self.assertIn("deleted here by a client", r.json()["error"])
        self.assertEqual(c.get(key).status, 404)
        self.assertNotIn(key, self.s3.content_objects())
        # A client's PUT of the same bytes brings it back, and after that a
        # replica copy is accepted as already stored.
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.get(key).body, data)
        self.assertEqual(c.put(data, query="?replica=1").status, 200)

    def test_replica_drop_leaves_no_tombstone(self):
        s = self.storaged("s1")
        c = s.client(20)
        data = b"moved away by a rebalance"
        key = sha1(data)
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{key}?replica=1").status, 204)
        self.assertEqual(c.get(key).status, 404)
        self.assertEqual(c.request("DELETE", f"/objects/{key}?replica=1").status, 404)
        # Moved back later: a replica copy is taken.
        self.assertEqual(c.put(data, query="?replica=1").status, 201)
        self.assertEqual(c.get(key).body, data)
        self.assertEqual(c.request("DELETE", f"/objects/{key}?replica=2").status, 400)

    def test_put_during_gc_keeps_the_object(self):
        s = self.storaged("s1")
        c = s.client(20)
        kept, dropped = b"put again during the cycle", b"not touched during the cycle"
        for d in (kept, dropped):
            self.assertEqual(c.put(d).status, 201)
        r = c.request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        gc_id = r.json()["id"]
        self.assertEqual(c.put(kept).status, 200)  # already stored: unmarked
        r = c.request("POST", f"/gc/end?id={gc_id}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["removed"], 1)
        self.assertEqual(c.get(sha1(kept)).body, kept)
        self.assertEqual(c.get(sha1(dropped)).status, 404)
        self.assertEqual(set(self.s3.content_objects()), {sha1(kept)})
        # The same after a restart (the unmark was journalled).
        s.kill9()
        s.start()
        self.assertEqual(s.client(20).get(sha1(kept)).body, kept)

    def test_capacity_is_a_hard_limit(self):
        s = self.storaged("s1", extra=["--capacity", "1000"])
        c = s.client(20)
        # Larger than the whole capacity: refused from its Content-Length.
        r = c.put(b"x" * 1001)
        self.assertEqual(r.status, 507, r.body)
        self.assertIn("--capacity", r.json()["error"])
        # Fits alone, not beside what is stored: refused once read.
        self.assertEqual(c.put(b"a" * 600).status, 201)
        r = c.put(b"b" * 600)
        self.assertEqual(r.status, 507, r.body)
        self.assertIn("store full", r.json()["error"])
        self.assertEqual(c.get(sha1(b"b" * 600)).status, 404)
        self.assertEqual(set(self.s3.content_objects()), {sha1(b"a" * 600)})
        # Nothing of the refused uploads is left in the bucket.
        names = [n for n in self.s3.list_objects() if sha1(b"b" * 600) in n]
        self.assertEqual(names, [])
        cap = c.request("GET", "/capacity").json()
        self.assertEqual((cap["total"], cap["bytes"]), (1000, 600))

    def test_compaction_keeps_cycle_marks_and_tombstones(self):
        """s3-index rewritten (POST /compact) in the middle of a GC cycle:
        the cycle, its unmarks and the tombstones in force survive it and a
        crash after it."""
        s = self.storaged("s1")
        c = s.client(20)
        kept, dropped, deleted = b"unmarked in the cycle", b"still marked", b"deleted by a client"
        for d in (kept, dropped, deleted):
            self.assertEqual(c.put(d).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(deleted)}").status, 204)
        gc_id = c.request("POST", "/gc/begin").json()["id"]
        r = c.request("POST", "/gc/mark", body=(sha1(kept) + "\n").encode())
        self.assertEqual(r.json()["unmarked"], 1)
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        c.close()
        s.kill9()
        s.start()
        c = s.client(20)
        st = c.request("GET", "/gc").json()
        self.assertTrue(st["active"])
        self.assertEqual(st["id"], gc_id)
        self.assertEqual(c.put(deleted, query="?replica=1").status, 410)
        r = c.request("POST", f"/gc/end?id={gc_id}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["removed"], 1)
        self.assertEqual(c.get(sha1(kept)).body, kept)
        self.assertEqual(c.get(sha1(dropped)).status, 404)
        self.assertEqual(set(self.s3.content_objects()), {sha1(kept)})

    def test_post_paths_gc_and_capacity(self):
        """POST /objects (the key known only at the end of the body): a POST
        of stored bytes during a GC cycle keeps them alive through end; a
        chunked body over --capacity, and one that fits alone but not
        beside what is stored, are refused with 507 and leave nothing in
        the bucket (no tmp/ upload either)."""
        s = self.storaged("s1", extra=["--capacity", "1000"])
        c = s.client(20)
        kept, dropped = b"k" * 300, b"d" * 300
        for d in (kept, dropped):
            self.assertEqual(c.put(d).status, 201)
        gc_id = c.request("POST", "/gc/begin").json()["id"]
        r = c.request("POST", "/objects", body=kept)
        self.assertIn(r.status, (200, 201), r.body)
        self.assertEqual(r.body.decode().strip(), sha1(kept))
        r = c.request("POST", f"/gc/end?id={gc_id}")
        self.assertEqual(r.json()["removed"], 1)
        self.assertEqual(c.get(sha1(kept)).body, kept)
        self.assertEqual(c.get(sha1(dropped)).status, 404)

        def chunks(n, byte):
            for _ in range(n):
                yield byte * 100

        c.close()
        r = c.request("POST", "/objects", body=chunks(11, b"c"))  # 1100 bytes > 1000, no length
        self.assertEqual(r.status, 507, r.body)
        self.assertIn("--capacity", r.json()["error"])
        c.close()
        r = c.request("POST", "/objects", body=chunks(8, b"e"))  # 800: fits alone, not beside 300
        self.assertEqual(r.status, 507, r.body)
        self.assertIn("store full", r.json()["error"])
        c.close()
        names = set(self.s3.list_objects())
        self.assertFalse([n for n in names if n.startswith("tmp/")], names)
        self.assertEqual(set(self.s3.content_objects()), {sha1(kept)})
        self.assertEqual(c.request("GET", "/capacity").json()["bytes"], 300)
