"""test_declared_size.py - a declared upload size the disk cannot hold is
refused at the head, and stalled uploads that declare huge sizes never
fault a store.

A storaged reserves a write's frame in a data file as soon as the
Content-Length is known. Found by an attacking session: 50 uploads that
each declared 17 TiB and stalled pushed every data file past the file
system's largest file, and the next client's write failed with EFBIG and
turned the store read-only until a restart, directly and through a
balancer. Now a reservation must fit in the free space less what writes in
flight have reserved: a size that does not is a 507 before a byte is read,
and the others' writes go on.
"""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import sha1  # noqa: E402


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def start_upload(port, path, length, send=b"0123456789"):
    """Sends a PUT head declaring length bytes and the first bytes of the
    body; returns the socket (the upload stalls there)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + send)
    return s


def answer_of(s, timeout=5):
    """The status line of an answer already sent, or None."""
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except (socket.timeout, ConnectionError):
        return None
    return data.split(b"\r\n", 1)[0].decode(errors="replace") if data else None


class DeclaredSize(tb.ClusterTest):
    def test_storaged_refuses_what_does_not_fit_and_stays_writable(self):
        s = self.storaged("s", extra=["--capacity", "64G"])
        key = "0123456789abcdef0123456789abcdef01234567"
        # More than the disk: 507 at once, no body read.
        t0 = time.monotonic()
        up = start_upload(s.port, f"/objects/{key}", 1 << 50, b"")
        line = answer_of(up)
        up.close()
        self.assertIsNotNone(line)
        self.assertIn(" 507 ", line)
        self.assertLess(time.monotonic() - t0, 3)
        # Stalled uploads that declare 30% of the free space each: the
        # first ones hold their reservations, the rest are refused, and a
        # small write still goes through.
        part = free_bytes(s.dir) * 3 // 10
        held, refused = [], 0
        for i in range(8):
            up = start_upload(s.port, "/objects/" + sha1(str(i).encode()), part)
            line = answer_of(up, timeout=0.5)
            if line is None:
                held.append(up)
            else:
                self.assertIn(" 507 ", line)
                refused += 1
                up.close()
        self.assertGreaterEqual(len(held), 1)
        self.assertGreaterEqual(refused, 4)
        c = s.client()
        data = os.urandom(4096)
        r = c.put(data)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(c.get(sha1(data)).body, data)
        self.assertEqual(c.request("GET", "/healthz").status, 200)
        for up in held:
            up.close()
        # Reservations given back: a large declared write fits again.
        time.sleep(0.5)
        up = start_upload(s.port, "/objects/" + sha1(b"again"), part)
        self.assertIsNone(answer_of(up, timeout=0.5))
        up.close()
        self.assertEqual(c.request("GET", "/healthz").status, 200)
        self.assertFalse(c.request("GET", "/status").json().get("read_only"))

    def test_through_a_balancer(self):
        self.cluster(n=2, replicas=2)
        bal = self.balancer()
        # 50 uploads declaring 17 TiB (past ext4's largest file), stalled:
        # each storaged refuses them; none reserves, none faults a store.
        ups = [start_upload(bal.port, "/objects/" + sha1(f"big {i}".encode()), 17 << 40)
               for i in range(50)]
        time.sleep(1)
        c = bal.client()
        data = os.urandom(10000)
        r = c.put(data)
        self.assertEqual(r.status, 201, r.body)
        for up in ups:
            up.close()
        for s in self.stores:
            sc = s.client()
            self.assertEqual(sc.request("GET", "/healthz").status, 200)
            self.assertEqual(sc.get(sha1(data)).body, data)
        self.assertEqual(c.get(sha1(data)).body, data)


if __name__ == "__main__":
    unittest.main()
