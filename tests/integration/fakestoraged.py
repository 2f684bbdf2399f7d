"""fakestoraged.py - a storaged look-alike for tests of what a balancer
does with a backend that misbehaves (test_balancer_integrity,
test_balancer_stalls): a loopback HTTP/1.1 server run by threads of the
test's process (HTTPS with tls=) that answers the balancer's probes (/ring, /status, /gc,
/capacity, /compact) like a healthy storaged and leaves object routes to
the subclass.
"""
import json
import os
import random
import socket
import ssl
import subprocess
import threading

PROBES = ("/status", "/gc", "/capacity", "/compact", "/ring")


def make_pki(directory):
    """A CA and a server certificate for 127.0.0.1 (an IP subjectAltName),
    valid 30 days, made with openssl in directory: (CA PEM path, (cert
    path, key path))."""
    os.makedirs(directory, exist_ok=True)

    def run(*a):
        subprocess.run(a, cwd=directory, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=fake-ca")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "ext"), "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "30", "-extfile", "ext")
    return (os.path.join(directory, "ca.pem"),
            (os.path.join(directory, "srv.pem"), os.path.join(directory, "srv.key")))


class FakeStoraged:
    """Serves on self.url (127.0.0.1, a free port) until close(). A
    subclass answers object routes in route() and may change the /ring
    body in ring_body(); objects (key -> bytes) is its to use; lock guards
    its counters."""

    def __init__(self, seed, tls=None):
        """tls: a (certificate, key) pair of PEM files to serve HTTPS with."""
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
        self.objects = {}
        self.lock = threading.Lock()
        rnd = random.Random(seed)
        self.node = "%016x" % rnd.getrandbits(64)
        self.tokens = sorted("%016x" % rnd.getrandbits(64) for _ in range(64))
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.stopping = False
        self.socks = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopping = True
        try:
            self.srv.close()
        except OSError:
            pass
        for s in list(self.socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def ring(self):
        return {"node": self.node, "hash": "sha1", "tokens": self.tokens}

    def ring_body(self):
        return json.dumps(self.ring()).encode()

    @staticmethod
    def resp(status, body, extra=""):
        return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body

    def probe(self, sock, path):
        """Answers a probe route as a healthy, empty storaged; 404 for any other path."""
        if path == "/ring":
            sock.sendall(self.resp("200 OK", self.ring_body()))
        elif path == "/status":
            sock.sendall(self.resp("200 OK", ('{"role":"storaged","node":"%s","read_only":false}'
                                              % self.node).encode()))
        elif path == "/gc":
            sock.sendall(self.resp("200 OK", b'{"active":false,"id":"0","objects":0,"bytes":0}'))
        elif path == "/capacity":
            sock.sendall(self.resp("200 OK", b'{"total":1000000000,"available":900000000,'
                                             b'"unreclaimed":0,"garbage":0,"objects":0,"bytes":0}'))
        elif path == "/compact":
            sock.sendall(self.resp("200 OK", b'{"running":false,"done_bytes":0,"total_bytes":0}'))
        else:
            sock.sendall(self.resp("404 Not Found", b'{"error":"no"}'))

    def route(self, sock, method, path, hdrs):
        """Answers one request (its body already read); False closes the
        connection. The default: probes only."""
        self.probe(sock, path)
        return True

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, sock):
        if self.tls:
            try:
                sock.settimeout(10)
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                return
        self.socks.add(sock)
        self._handle(sock)

    def _handle(self, sock):
        buf = b""
        sock.settimeout(60)
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in buf:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                hdrs = {l.partition(":")[0].strip().lower(): l.partition(":")[2].strip() for l in lines[1:]}
                need = int(hdrs.get("content-length", "0") or 0)
                while len(buf) < need:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[need:]
                if not self.route(sock, method, target.split("?")[0], hdrs):
                    return
        except (OSError, ValueError):
            pass
        finally:
            self.socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass
