"""test_put_stored_key.py - a PUT of a key the storaged already holds.

Such a write stores nothing (the bytes are there): the storaged hashes the
body as it streams in and answers at its end. Found by an attacking
session (a6 d6, d7): it answered "200 already stored" without hashing the
body (a body of other bytes got 200, SPEC says 422), and without looking
again at the end (a DELETE answered 204 while the body arrived still left
the PUT a 200; a gc/begin while the body arrived made the 200 count for
nothing, and gc/end removed the object the 200 had promised to keep).
Each test runs against the disk and the S3 backend.
"""
import http.client
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TempDirTest, sha1  # noqa: E402


class PutStoredKey(TempDirTest):
    def setUp(self):
        super().setUp()
        self.s = self.storaged()
        self.c = self.s.client()
        self.addCleanup(self.c.close)
        self.data = os.urandom(200_000)
        self.key = sha1(self.data)
        self.assertEqual(self.c.put(self.data).status, 201)

    def begin_put(self, first, length=None):
        """A PUT of self.key whose head and first bytes are sent; the rest
        is the caller's to send on the returned connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
        conn.putrequest("PUT", f"/objects/{self.key}")
        conn.putheader("Content-Length", str(len(self.data) if length is None else length))
        conn.endheaders()
        conn.send(first)
        time.sleep(0.3)  # the head is in and the storaged reads the body
        return conn

    def put_chunked(self, parts):
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
        try:
            conn.request("PUT", f"/objects/{self.key}", body=iter(parts), encode_chunked=True)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def assert_intact(self):
        r = self.c.get(self.key)
        self.assertEqual((r.status, r.body == self.data), (200, True))

    def test_other_bytes_are_refused_422(self):
        other = bytes(b ^ 1 for b in self.data)  # same length, other bytes
        r = self.c.request("PUT", f"/objects/{self.key}", body=other)
        self.assertEqual(r.status, 422, r.body)
        self.assertIn("digest mismatch", json.loads(r.body)["error"])
        self.assert_intact()
        # a declared length other than the object's: refused at the head
        r = self.c.request("PUT", f"/objects/{self.key}", body=self.data[:-1])
        self.assertEqual(r.status, 422, r.body)
        r = self.c.request("PUT", f"/objects/{self.key}", body=b"")
        self.assertEqual(r.status, 422, r.body)
        # chunked: no length declared, the body runs past the object's size
        status, body = self.put_chunked([self.data, b"x"])
        self.assertEqual(status, 422, body)
        self.assert_intact()
        # a malformed X-CAS-Timestamp is a 400 here too
        r = self.c.request("PUT", f"/objects/{self.key}", body=self.data,
                           headers={"X-CAS-Timestamp": "garbage"})
        self.assertEqual(r.status, 400, r.body)
        # the right bytes: 200, chunked or not
        self.assertEqual(self.c.request("PUT", f"/objects/{self.key}", body=self.data).status, 200)
        status, body = self.put_chunked([self.data[:1000], self.data[1000:]])
        self.assertEqual(status, 200, body)
        status, body = self.put_chunked([self.data[:1000]])  # short
        self.assertEqual(status, 422, body)
        # "Expect: 100-continue": a disk store answers before the body (an
        # S3 store takes the bytes again: its copy cannot be checked cheaply)
        if self.backend == "s3":
            return
        r = self.c.request("PUT", f"/objects/{self.key}", body=b"",
                           headers={"Expect": "100-continue", "Content-Length": str(len(self.data))})
        self.assertEqual(r.status, 200, r.body)

    def test_delete_while_the_body_arrives_is_409(self):
        conn = self.begin_put(self.data[:150_000])
        self.assertEqual(self.c.request("DELETE", f"/objects/{self.key}").status, 204)
        conn.send(self.data[150_000:])
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 409, body)
        self.assertIn("nothing stored", json.loads(body)["error"])
        self.assertEqual(self.c.get(self.key).status, 404)
        # sent again, it is stored again
        self.assertEqual(self.c.put(self.data).status, 201)
        self.assert_intact()

    def test_gc_begin_while_the_body_arrives_keeps_the_object(self):
        conn = self.begin_put(self.data[:150_000])
        r = self.c.request("POST", "/gc/begin")
        self.assertEqual(r.status, 200, r.body)
        gc_id = json.loads(r.body)["id"]
        conn.send(self.data[150_000:])
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 200, body)
        r = self.c.request("POST", f"/gc/end?id={gc_id}")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(json.loads(r.body)["removed"], 0)
        self.assert_intact()


class PutStoredKeyS3(PutStoredKey):
    backend = "s3"


if __name__ == "__main__":
    unittest.main()
