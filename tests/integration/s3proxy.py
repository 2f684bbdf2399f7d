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
  only = f            fail and truncate count and hit only the requests for
                      which f(method, path) is true (None: all)

`log` records (method, path, what happened) for every request, so a test
can see the retries.

Verifying mode: S3Proxy(server, verify=(access_key, secret_key, region))
checks every request's AWS Signature V4 before anything else, recomputed
with hmac/hashlib from the request exactly as received (see
sigv4_refusal()), as AWS, MinIO, Ceph RGW and Garage do and s3rver does
not. A request that fails is answered 403 with S3's XML error
(SignatureDoesNotMatch; InvalidAccessKeyId for another access key) and
never reaches s3rver. `verified` and `refused` count them; `refusals` lists
(method, target, reason) of the refused ones. In this mode a request body
is read whole before it is checked (the payload hash covers it), so it
is held in memory: fine for tests, whose parts are at most 8 MiB. One upstream connection per client connection; bodies
stream through in 64 KiB pieces (Content-Length or chunked), whatever their
size. An "Expect: 100-continue" is answered by the proxy itself.
"""
import calendar
import hashlib
import hmac
import re
import socket
import socketserver
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape as xml_escape

_REASONS = {403: ("Forbidden", "AccessDenied", "Access Denied"),
            500: ("Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
            503: ("Slow Down", "SlowDown", "Please reduce your request rate.")}
_PIECE = 65536
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_S = 15 * 60  # how far x-amz-date may be from the verifier's clock (AWS: 15 minutes)
_AUTH = re.compile(r"AWS4-HMAC-SHA256 +Credential=([^,\s]+) *, *SignedHeaders=([^,\s]+) *, *"
                   r"Signature=([0-9a-f]{64})$")
_HEX64 = re.compile(r"[0-9a-f]{64}$")


# -- AWS Signature V4 (the rules of AWS's "Signature Version 4 for S3":
# canonical request, string to sign, signing key), Python's hmac/hashlib only.

def _uri_encode(s, safe=""):
    """AWS's UriEncode: every byte but A-Z a-z 0-9 - . _ ~ (and `safe`) as
    %XX with upper-case hex digits, UTF-8 first."""
    return urllib.parse.quote(s, safe=safe, encoding="utf-8", errors="strict")


def canonical_uri(path):
    """The path as S3 sees it (decoded once), URI-encoded again with '/' kept:
    S3 does not normalise paths (no '.' or '//' folding)."""
    return _uri_encode(urllib.parse.unquote(path or "/"), safe="/")


def canonical_query(query):
    """name=value pairs, each side decoded then URI-encoded ('/' and '='
    too), sorted by name then value; a name without '=' gets an empty value."""
    pairs = []
    for piece in query.split("&") if query else []:
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_uri_encode(urllib.parse.unquote(name)), _uri_encode(urllib.parse.unquote(value))))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_request(method, target, headers, signed, payload_hash):
    """The canonical request of `method` `target` (the request-target as
    received, path and query) with `headers` ([(name, value)] as received)
    and `signed` (lower-case names, the order of SignedHeaders)."""
    path, _, query = target.partition("?")
    values = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    lines = "".join(f"{n}:{','.join(values.get(n, []))}\n" for n in signed)
    return "\n".join([method, canonical_uri(path), canonical_query(query), lines, ";".join(signed),
                      payload_hash])


def signing_key(secret_key, date, region, service="s3"):
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    k = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def signature(secret_key, amz_date, scope, creq):
    """Hex HMAC-SHA256 of the string to sign of canonical request `creq`;
    scope is date/region/service/aws4_request."""
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    return hmac.new(signing_key(secret_key, date, region, service), sts.encode(), hashlib.sha256).hexdigest()


def sigv4_refusal(method, target, headers, payload, access_key, secret_key, region, now=None,
                  service="s3"):
    """None when the request carries a valid AWS Signature V4 for these
    credentials, else (S3 error code, reason). `headers` is [(name, value)]
    as received, `payload` the body bytes as received (decoded if it came
    chunked), `now` seconds since the epoch (default: the clock)."""
    refuse = lambda why: ("SignatureDoesNotMatch", why)  # noqa: E731
    auth = [v for n, v in headers if n.lower() == "authorization"]
    if len(auth) != 1:
        return refuse("no Authorization header" if not auth else "more than one Authorization header")
    m = _AUTH.match(auth[0].strip())
    if not m:
        return refuse(f"malformed Authorization header: {auth[0][:120]!r}")
    credential, signed_names, sig = m.groups()
    parts = credential.split("/")
    if len(parts) != 5:
        return refuse(f"malformed credential {credential!r}")
    key_id, date, cred_region, cred_service, terminator = parts
    if key_id != access_key:
        return ("InvalidAccessKeyId", f"unknown access key {key_id!r}")
    if (cred_region, cred_service, terminator) != (region, service, "aws4_request"):
        return refuse(f"credential scope {'/'.join(parts[1:])!r} is not {date}/{region}/{service}/aws4_request")
    signed = signed_names.split(";")
    if signed != sorted(signed) or len(set(signed)) != len(signed) or any(n != n.lower() for n in signed):
        return refuse(f"SignedHeaders {signed_names!r} not sorted, unique, lower-case")
    present = {n.lower() for n, _ in headers}
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in signed:
            return refuse(f"{need} is not signed")
    missing = [n for n in signed if n not in present]
    if missing:
        return refuse(f"signed headers missing from the request: {missing}")
    unsigned = sorted(n for n in present if (n.startswith("x-amz-") or n == "content-md5") and n not in signed)
    if unsigned:
        return refuse(f"headers that must be signed are not: {unsigned}")
    hv = {n.lower(): v.strip() for n, v in headers}
    amz_date = hv["x-amz-date"]
    try:
        t = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return refuse(f"x-amz-date {amz_date!r} is not YYYYMMDDTHHMMSSZ")
    if amz_date[:8] != date:
        return refuse(f"credential date {date} is not the day of x-amz-date {amz_date}")
    if abs((time.time() if now is None else now) - t) > MAX_SKEW_S:
        return refuse(f"x-amz-date {amz_date} is more than {MAX_SKEW_S // 60} minutes off")
    payload_hash = hv["x-amz-content-sha256"]
    if _HEX64.match(payload_hash):
        actual = hashlib.sha256(payload).hexdigest()
        if actual != payload_hash:
            return refuse(f"x-amz-content-sha256 {payload_hash} but the body received hashes to {actual}")
    elif payload_hash != "UNSIGNED-PAYLOAD":
        return refuse(f"x-amz-content-sha256 {payload_hash!r}: neither a hex SHA-256 nor UNSIGNED-PAYLOAD")
    creq = canonical_request(method, target, headers, signed, payload_hash)
    want = signature(secret_key, amz_date, f"{date}/{region}/{service}/aws4_request", creq)
    if not hmac.compare_digest(want, sig):
        return refuse(f"signature {sig} is not {want}; canonical request:\n{creq}")
    return None


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

    def read_body(self, headers):
        """(the body's bytes as sent, its payload): the same unless chunked."""
        if headers.get("transfer-encoding", "").lower() != "chunked":
            data = self._read(int(headers.get("content-length", "0")))
            return data, data
        raw, payload = [], []
        while True:
            size_line = self.f.readline(1024)
            if not size_line:
                raise ConnectionError("EOF in a chunked body")
            raw.append(size_line)
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                while True:
                    t = self.f.readline(65537)
                    raw.append(t)
                    if t in (b"\r\n", b"\n", b""):
                        return b"".join(raw), b"".join(payload)
            data = self._read(n + 2)
            raw.append(data)
            payload.append(data[:n])

    def _read(self, n):
        data = self.f.read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("EOF in a body")
        return data

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


def _header_list(lines):
    """[(name, value)] of a head's header lines, in order, duplicates kept."""
    out = []
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        out.append((name.strip(), value.strip()))
    return out


def _parse(lines):
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].decode("latin-1").split(" ", 2), headers


class S3Proxy:
    """A fault-injecting proxy on 127.0.0.1:<free port> in front of `server`
    (an s3fixture.S3Server)."""

    def __init__(self, server, verify=None):
        """verify: (access_key, secret_key, region) to check every request's
        AWS Signature V4 against (see the module comment), or None."""
        self.server = server
        self.verify = verify
        self.verified = 0
        self.refused = 0
        self.refusals = []
        self.lock = threading.Lock()
        self.log = []
        self.sent = []  # (method, path, bytes of the answer's body) relayed from the server
        self._fail = (0, 0)
        self._fail_after = 0
        self._truncate = 0
        self.only = None  # (method, path) -> bool: the requests fail/truncate aim at; None all
        self.delay = None  # (method, path) -> seconds a request is held before it is relayed
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
                body = None  # the request body's raw bytes once read here
                if self.verify is not None:
                    if headers.get("expect", "").lower() == "100-continue":
                        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                        lines = [l for l in lines if not l.lower().startswith(b"expect:")]
                        headers.pop("expect")
                    body, payload = client.read_body(headers)
                    refusal = sigv4_refusal(method, path, _header_list(lines), payload, *self.verify)
                    with self.lock:
                        if refusal is None:
                            self.verified += 1
                        else:
                            self.refused += 1
                            self.refusals.append((method, path, refusal[1]))
                    if refusal is not None:
                        self._note(method, path, "refused")
                        self._answer_error(sock, 403, code=refusal[0], message=refusal[1],
                                           head_only=method == "HEAD")
                        continue
                if not self._released.is_set():
                    self._note(method, path, "stalled")
                    self._released.wait()
                    return  # closes without an answer
                with self.lock:
                    fail_n, fail_status = self._fail
                    if self.only is not None and not self.only(method, path):
                        fail_n = 0  # not a request the faults are aimed at
                    elif fail_n > 0 and self._fail_after > 0:
                        self._fail_after -= 1
                        fail_n = 0
                    elif fail_n > 0:
                        self._fail = (fail_n - 1, fail_status)
                    truncate = method == "GET" and self._truncate > 0 and (
                        self.only is None or self.only(method, path))
                expect = headers.get("expect", "").lower() == "100-continue"
                if fail_n > 0:
                    self._note(method, path, f"failed {fail_status}")
                    if not expect and body is None:
                        client.relay_body(headers, None)
                    self._answer_error(sock, fail_status)
                    if expect:
                        return  # the body was never asked for
                    continue
                hold = self.delay(method, path) if self.delay else 0
                if hold:
                    self._note(method, path, "held")
                    time.sleep(hold)
                if upstream is None:
                    upstream = _Conn(socket.create_connection(("127.0.0.1", self.server.port), timeout=120))
                if expect:
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    lines = [l for l in lines if not l.lower().startswith(b"expect:")]
                upstream.sock.sendall(b"".join(lines) + b"\r\n")
                if body is None:
                    client.relay_body(headers, upstream.sock)
                else:
                    upstream.sock.sendall(body)
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

    def _answer_error(self, sock, status, code=None, message=None, head_only=False):
        reason, dcode, dmessage = _REASONS.get(status, ("Error", "InternalError", "injected"))
        code, message = code or dcode, message or dmessage
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{xml_escape(message)}</Message><RequestId>cas-s3proxy</RequestId></Error>").encode()
        if head_only:
            sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode())
            return
        extra = "Retry-After: 0\r\n" if status == 503 else ""
        sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
