"""test_balancer_relay_blocks.py - the balancer's relay of large GET bodies
at the edges of its blocks.

The balancer relays a body over 256 KiB to the client in blocks of up to
1 MiB, each filled with at least 512 KiB from the backend, hashing every
byte and sending the block holding the last byte only once the digest
matches the key (SPEC, Integrity; balancerd/proxy.c, GET_BLOCK and
GET_FILL). These tests put sizes on and around those boundaries through a
balancer with one fake backend (test_balancer_integrity.FakeBackend):
- an honest backend: every size arrives complete and byte for byte;
- a backend whose copy differs in its last byte only (the one corruption
  that can only be seen once everything else has been relayed): the client
  never gets a complete 200, and never the block holding the last byte;
- a backend that closes the connection on a block boundary: never a
  complete 200.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import sha1  # noqa: E402
import test_balancer_integrity as integrity  # noqa: E402
from test_balancer_integrity import FakeBackend, fetch  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
# Just over the small-object limit (read whole, then relayed as one block),
# around the fill and block sizes, and a few blocks with a short last one.
SIZES = (256 * KiB + 1, 512 * KiB - 1, 512 * KiB + 1, MiB - 1, MiB, MiB + 1, 2 * MiB + 1,
         3 * MiB - 7)


class BlockBackend(FakeBackend):
    """FakeBackend with two more modes: "last-byte" (the right head, the
    right bytes but the last one), "cut-at-block" (the right head, then the
    first whole MiB of the body, or all but one byte when smaller, then
    close)."""

    def obj(self, sock, key, method, hdrs):
        data = self.objects.get(key)
        if data is None or method != "GET" or self.mode not in ("last-byte", "cut-at-block"):
            return super().obj(sock, key, method, hdrs)
        n = len(data)
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {n}\r\n\r\n").encode()
        if self.mode == "last-byte":
            sock.sendall(head + data[:-1] + bytes([data[-1] ^ 1]))
            return True
        cut = MiB if n > MiB else n - 1
        sock.sendall(head + data[:cut])
        return False


class RelayBlocksTest(integrity.FakeBackendTest):
    def relay(self, mode):
        """Each size through a balancer with one BlockBackend in mode:
        [(size, status, body, complete, data)]."""
        f = BlockBackend(mode)
        self.fakes.append(f)
        b = self.balancer([f.url])
        out = []
        for size in SIZES:
            data = os.urandom(size)
            key = sha1(data)
            f.objects[key] = data
            st, body, complete = fetch(b.port, key)
            self.assertNeverCompleteWrong(st, body, complete, data)
            out.append((size, st, body, complete, data))
        return out

    def test_honest_backend_every_size_complete(self):
        for size, st, body, complete, data in self.relay("ok"):
            self.assertEqual(st, 200, f"size {size}")
            self.assertTrue(complete, f"size {size}: cut short")
            self.assertEqual(sha1(body), sha1(data), f"size {size}: other bytes")

    def test_last_byte_wrong_never_complete(self):
        for size, st, body, complete, data in self.relay("last-byte"):
            self.assertFalse(st == 200 and complete, f"size {size}: a complete 200 of a corrupt copy")
            if st == 200:
                # The block holding the last byte is never sent: the client
                # has only bytes before it, all of them right.
                self.assertLess(len(body), size, f"size {size}")
                self.assertEqual(body, data[:len(body)], f"size {size}: wrong bytes before the cut")
            else:
                self.assertEqual(st, 503, f"size {size}")

    def test_close_on_block_boundary_never_complete(self):
        for size, st, body, complete, data in self.relay("cut-at-block"):
            self.assertFalse(st == 200 and complete, f"size {size}: a complete 200 of a cut copy")
            if st == 200:
                self.assertLess(len(body), size, f"size {size}")
                self.assertEqual(body, data[:len(body)], f"size {size}: wrong bytes before the cut")


if __name__ == "__main__":
    unittest.main()
