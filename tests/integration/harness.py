"""harness.py - start real ca-cas daemons on loopback ports for tests.

Every daemon a test starts is tracked by PID and killed (SIGKILL) when the
test ends, pass or fail; every temporary directory is removed. Nothing here
touches a process this module did not start.
"""
import atexit
import collections
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("CAS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BUILD = os.path.abspath(BUILD)
STORAGED = os.path.join(BUILD, "storaged", "ca-cas-storaged")
BALANCERD = os.path.join(BUILD, "balancerd", "ca-cas-balancerd")
CLI = os.path.join(BUILD, "ca-cas", "ca-cas")

_live = set()


def _reap_all():
    for p in list(_live):
        try:
            p.kill()
            p.wait(5)
        except Exception:
            pass
        _live.discard(p)


atexit.register(_reap_all)


def recv_head(sock):
    """Bytes from sock up to and including the first blank line (an HTTP
    head, and whatever came with it), or all it sent before closing."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def request_kept_alive(conn, port, method, path, body=None, timeout=20):
    """One request to 127.0.0.1:port on the kept-alive connection conn (a
    new one when conn is None). Returns (the connection to reuse, or None
    when the answer closed it or the request failed; the status, or None on
    failure; the body, or the error's repr)."""
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request(method, path, body=body)
        r = conn.getresponse()
        data = r.read()
        if r.will_close:
            conn.close()
            conn = None
        return conn, r.status, data
    except (OSError, http.client.HTTPException) as e:
        return None, None, repr(e).encode()


def wait_for(pred, timeout, what):
    """Polls pred() every 50 ms until it returns something true, which is
    returned; fails the test naming `what` after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# "K/N" when run.py runs N modules at once and this is slot K: this process
# takes only ports that are K modulo N, so two modules never pick one port.
_slot, _slots = (int(x) for x in os.environ.get("CAS_PORT_SLOT", "0/1").split("/"))
# Below Linux's ephemeral range (32768-60999 by default), so that no
# outgoing connection's source port takes a port a test handed out.
_PORTS = range(10000, 32768)
_handed = collections.deque(maxlen=2000)  # not handed out again soon
_rng = random.Random()  # a test seeding `random` does not replay our ports


def free_port():
    """A loopback port free now, in this slot's class, not handed out lately."""
    while True:
        port = _rng.randrange(_PORTS.start, _PORTS.stop)
        if port % _slots != _slot or port in _handed:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed.append(port)
        return port


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Daemon:
    """A daemon process with its log file, started and always reaped by us."""

    def __init__(self, argv, log_path, env=None):
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc = None

    def start(self, wait_url=None, timeout=10):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        _live.add(self.proc)
        if wait_url:
            host, port = wait_url
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}: " + self.log_text()[-2000:])
                try:
                    c = http.client.HTTPConnection(host, port, timeout=2)
                    c.request("GET", "/healthz")
                    c.getresponse().read()
                    c.close()
                    return self
                except OSError:
                    time.sleep(0.02)
            raise RuntimeError(f"{self.argv[0]} did not come up: " + self.log_text()[-2000:])
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        _live.discard(self.proc)

    def stop(self, timeout=30):
        """SIGTERM, then wait; returns the exit code."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        _live.discard(self.proc)
        return rc


# The capacity an S3 storaged is given when a test names none (a bucket has
# no size, so --capacity is required with --backend s3).
S3_CAPACITY = "10G"


def s3_backend_args(s3, extra=()):
    """The options that make a storaged keep its objects in `s3` (an
    s3fixture.S3Server, or an s3proxy.S3Proxy in front of one), with
    --capacity added unless `extra` has one."""
    args = s3.storaged_args()
    if "--capacity" not in extra:
        args += ["--capacity", S3_CAPACITY]
    return args


class Storaged(Daemon):
    def __init__(self, dir, port=None, extra=None, log_dir=None, env=None, s3=None):
        self.dir = dir
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.s3 = s3
        log_path = os.path.join(log_dir or os.path.dirname(dir.rstrip("/")), f"storaged-{self.port}.log")
        # No background scrub unless a test asks: tests want to meet their
        # injected corruptions themselves (a later --scrub-rate wins).
        backend = s3_backend_args(s3, self.extra) if s3 is not None else []
        argv = [STORAGED, "--dir", dir, "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn",
                "--scrub-rate", "0"] + backend + self.extra
        super().__init__(argv, log_path, env)

    def start(self, timeout=10):
        return super().start(("127.0.0.1", self.port), timeout)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout=60):
        return Client("127.0.0.1", self.port, timeout)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Client:
    """A keep-alive HTTP client for one daemon."""

    def __init__(self, host, port, timeout=60, token=None):
        self.host, self.port, self.timeout, self.token = host, port, timeout, token
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = "Bearer " + self.token
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.will_close:
                    self.conn.close()
                    self.conn = None
                return Response(r.status, r.getheaders(), data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt == 1 or body is not None and not isinstance(body, (bytes, str)):
                    raise
        raise AssertionError("unreachable")

    def put(self, data, key=None, query=""):
        key = key or sha1(data)
        return self.request("PUT", f"/objects/{key}{query}", body=data)

    def get(self, key, headers=None):
        return self.request("GET", f"/objects/{key}", headers=headers)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class TempDirTest(unittest.TestCase):
    """A test case with a temporary directory and daemons reaped at the end.

    `backend` says where storaged() keeps objects: "disk" (the default) or
    "s3", a bucket of an s3rver started for the test (self.s3, the first
    time a storaged needs it). A subclass that only sets backend = "s3" runs
    the same tests against the S3 backend."""

    backend = "disk"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cas-test-")
        self.daemons = []
        self._s3 = None
        self.addCleanup(self._cleanup)

    @property
    def s3(self):
        """The test's own s3rver (started on first use)."""
        if self._s3 is None:
            self._s3 = self.s3server()
        return self._s3

    def s3server(self, name="s3", bucket="cas-test"):
        """Starts another s3rver with its own data directory and bucket."""
        from s3fixture import S3Server
        srv = S3Server(os.path.join(self.tmp, name), bucket=bucket)
        self.daemons.append(srv)
        return srv.start()

    def backend_args(self, extra=()):
        """The storaged options of this test's backend ([] for disk), for
        tests that run the storaged binary themselves."""
        return s3_backend_args(self.s3, extra) if self.backend == "s3" else []

    def _cleanup(self):
        # Under scripts/coverage.sh (CAS_COVERAGE=1) a daemon must exit
        # through main() for gcov to write its counters: SIGCONT (a test may
        # have stopped it), SIGINT (stops at once, no drain), and SIGKILL
        # only after 10 s.
        graceful = bool(os.environ.get("CAS_COVERAGE"))
        for d in self.daemons:
            try:
                if graceful and d.running():
                    d.proc.send_signal(signal.SIGCONT)
                    d.proc.send_signal(signal.SIGINT)
                    try:
                        d.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
                d.kill9()
            except Exception:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def storaged(self, name="s1", extra=None, start=True, port=None, env=None, s3=None):
        """A storaged in self.tmp/name; its objects go to `s3` when given,
        else to this test's backend."""
        if s3 is None and self.backend == "s3":
            s3 = self.s3
        d = Storaged(os.path.join(self.tmp, name), port=port, extra=extra, log_dir=self.tmp, env=env, s3=s3)
        self.daemons.append(d)
        if start:
            d.start()
        return d
