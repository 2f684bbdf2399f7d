"""s3proxy.py - a fault-injecting HTTP proxy between a storaged and s3rver.

S3Proxy listens on a free loopback port (in a thread of the test process)
and relays each request, byte for byte, to the s3rver behind it: the Host
header is kept, so the storaged's AWS Signature V4 still matches. A test
arms faults for what comes next:

  fail(n, status, after=0)
                      the next n requests (after letting `after` through)
                      get `status` with S3's XML error (503 SlowDown, 500
                      InternalError, 403 AccessDenied) instead of reaching
                      s3rver
  truncate(n)         the next n GETs answered 200 or 206 with a body get their
                      headers and only half the body, then the connection
                      closes (a body cut short in transit)
  stall()             every request from now on is read and never answered
                      until release() (a bucket that accepts and hangs)
  clear()             no more faults; release() stalled requests

`log` records (method, path, what happened) for every request, so a test
can see the retries. One upstream connection per client connection; bodies
stream through in 64 KiB pieces (Content-Length or chunked), whatever their
size. An "Expect: 100-continue" is answered by the proxy itself.
"""
import socket
import socketserver
import threading

_REASONS = {403: ("Forbidden", "AccessDenied", "Access Denied"),
            500: ("Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
            503: ("Slow Down", "SlowDown", "Please reduce your request rate.")}
_PIECE = 65536


class _Conn:
    """A socket with a read buffer: lines for heads, exact counts for bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def head(self):
        """The start line and header lines (raw bytes), or None at EOF."""
        lines = []
        while True:
            line = self.f.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if lines:
                    return lines
                continue
            lines.append(line)

    def relay_body(self, headers, out, limit=None, no_body=False):
        """Copies a message body to `out` (a socket, or None to discard).
        With `limit`, stops after that many bytes and returns False."""
        if no_body:
            return True
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self.f.readline(1024)
                if not size_line:
                    raise ConnectionError("EOF in a chunked body")
                _send(out, size_line)
                n = int(size_line.split(b";")[0], 16)
                if n == 0:
                    while True:  # trailers, then the empty line
                        t = self.f.readline(65537)
                        _send(out, t)
                        if t in (b"\r\n", b"\n", b""):
                            return True
                self._copy(n + 2, out)
        n = int(headers.get("content-length", "0"))
        if limit is not None and limit < n:
            self._copy(limit, out)
            return False
        self._copy(n, out)
        return True

    def _copy(self, n, out):
        while n > 0:
            piece = self.f.read(min(n, _PIECE))
            if not piece:
                raise ConnectionError("EOF in a body")
            _send(out, piece)
            n -= len(piece)

    def close(self):
        for x in (self.f, self.sock):
            try:
                x.close()
            except OSError:
                pass


def _send(sock, data):
    if sock is not None and data:
        sock.sendall(data)


def _parse(lines):
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].decode("latin-1").split(" ", 2), headers


class S3Proxy:
    """A fault-injecting proxy on 127.0.0.1:<free port> in front of `server`
    (an s3fixture.S3Server)."""

    def __init__(self, server):
        self.server = server
        self.lock = threading.Lock()
        self.log = []
        self.sent = []  # (method, path, bytes of the answer's body) relayed from the server
        self._fail = (0, 0)
        self._fail_after = 0
        self._truncate = 0
        self._stalled = threading.Event()
        self._released = threading.Event()
        self._released.set()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.tcp = Server(("127.0.0.1", 0), Handler)
        self.port = self.tcp.server_address[1]
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def bucket(self):
        return self.server.bucket

    def storaged_args(self):
        return self.server.storaged_args(endpoint=self.endpoint)

    # -- arming faults ------------------------------------------------------

    def fail(self, n, status, after=0):
        with self.lock:
            self._fail = (n, status)
            self._fail_after = after

    def truncate(self, n):
        with self.lock:
            self._truncate = n

    def stall(self):
        self._released.clear()

    def release(self):
        self._released.set()

    def clear(self):
        with self.lock:
            self._fail = (0, 0)
            self._truncate = 0
        self.release()

    def stop(self):
        self.clear()
        self.tcp.shutdown()
        self.tcp.server_close()

    kill9 = stop  # harness.TempDirTest reaps it with its daemons

    def body_bytes(self, method="GET", prefix=""):
        """Bytes of the bodies relayed from the server for `method` requests
        whose path (without the bucket) starts with `prefix`."""
        start = f"/{self.bucket}/{prefix}"
        with self.lock:
            return sum(n for m, p, n in self.sent if m == method and p.startswith(start))

    def count(self, what):
        with self.lock:
            return sum(1 for e in self.log if e[2] == what)

    # -- serving ------------------------------------------------------------

    def _note(self, method, path, what):
        with self.lock:
            self.log.append((method, path, what))

    def _serve(self, sock):
        client, upstream = _Conn(sock), None
        try:
            while True:
                lines = client.head()
                if lines is None:
                    return
                (method, path, _), headers = _parse(lines)
                if not self._released.is_set():
                    self._note(method, path, "stalled")
                    self._released.wait()
                    return  # closes without an answer
                with self.lock:
                    fail_n, fail_status = self._fail
                    if fail_n > 0 and self._fail_after > 0:
                        self._fail_after -= 1
                        fail_n = 0
                    elif fail_n > 0:
                        self._fail = (fail_n - 1, fail_status)
                    truncate = method == "GET" and self._truncate > 0
                expect = headers.get("expect", "").lower() == "100-continue"
                if fail_n > 0:
                    self._note(method, path, f"failed {fail_status}")
                    if not expect:
                        client.relay_body(headers, None)
                    self._answer_error(sock, fail_status)
                    if expect:
                        return  # the body was never asked for
                    continue
                if upstream is None:
                    upstream = _Conn(socket.create_connection(("127.0.0.1", self.server.port), timeout=120))
                if expect:
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    lines = [l for l in lines if not l.lower().startswith(b"expect:")]
                upstream.sock.sendall(b"".join(lines) + b"\r\n")
                client.relay_body(headers, upstream.sock)
                rlines = upstream.head()
                if rlines is None:
                    raise ConnectionError("s3rver closed the connection")
                (_, status, _), rheaders = _parse(rlines)
                no_body = method == "HEAD" or status in ("204", "304")
                if truncate and status in ("200", "206") and int(rheaders.get("content-length", "0")) > 1:
                    with self.lock:
                        self._truncate = max(0, self._truncate - 1)
                    self._note(method, path, "truncated")
                    sock.sendall(b"".join(rlines) + b"\r\n")
                    upstream.relay_body(rheaders, sock, limit=int(rheaders["content-length"]) // 2)
                    return
                self._note(method, path, status)
                if not no_body:
                    with self.lock:
                        self.sent.append((method, path, int(rheaders.get("content-length", "0"))))
                sock.sendall(b"".join(rlines) + b"\r\n")
                upstream.relay_body(rheaders, sock, no_body=no_body)
                if rheaders.get("connection", "").lower() == "close":
                    upstream.close()
                    upstream = None
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _answer_error(self, sock, status):
        reason, code, message = _REASONS.get(status, ("Error", "InternalError", "injected"))
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>cas-s3proxy</RequestId></Error>").encode()
        extra = "Retry-After: 0\r\n" if status == 503 else ""
        sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
