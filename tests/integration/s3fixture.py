"""s3fixture.py - a real S3-compatible server (s3rver, from tests/s3) for the
S3 backend's integration tests.

S3Server starts s3rver on a free loopback port with its own temporary data
directory and one configured bucket, waits until it answers HTTP, and is
stopped by PID (SIGKILL) when the test ends, pass or fail: it registers with
harness's reaper like every daemon. It also writes the credentials s3rver
accepts (S3RVER / S3RVER) to two files for --s3-access-key-file and
--s3-secret-key-file, and reads the bucket back (ListObjectsV2, parsed with
xml.etree) so that tests can check what the bucket holds independently of
the storaged.

s3rver is installed by scripts/install-deps.sh (npm ci --prefix tests/s3);
when it is absent the fixture raises, so the S3 tests fail with that
instruction instead of being skipped.
"""
import http.client
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
S3RVER = os.path.abspath(os.path.join(HERE, "..", "s3", "node_modules", ".bin", "s3rver"))
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
REGION = "us-east-1"
_NS = "{*}"  # any namespace: AWS and s3rver spell it differently
# A content object's name in the bucket ends with its key (40 or 64 hex
# digits) as the whole last path segment; other names are the node's state.
_KEY_IN_NAME = re.compile(r"(?:^|/)([0-9a-f]{64}|[0-9a-f]{40})$")


class S3Server:
    """s3rver on 127.0.0.1:<free port> serving bucket `bucket` from `root`."""

    def __init__(self, root, bucket="cas-test", port=None):
        self.root = root
        self.bucket = bucket
        self.port = port or harness.free_port()
        self.proc = None
        self.env = {}  # more environment for the next start (a test's clock shifter)
        os.makedirs(root, exist_ok=True)
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, f"s3rver-{self.port}.log")
        self.access_key_file = os.path.join(root, "access-key")
        self.secret_key_file = os.path.join(root, "secret-key")
        for path, value in ((self.access_key_file, ACCESS_KEY), (self.secret_key_file, SECRET_KEY)):
            with open(path, "w") as f:
                f.write(value + "\n")
            os.chmod(path, 0o600)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=20):
        """Starts s3rver (keeping its data directory) and waits until it answers."""
        if not os.access(S3RVER, os.X_OK):
            raise RuntimeError(f"s3rver is not installed at {S3RVER}: run scripts/install-deps.sh "
                               "(npm ci --prefix tests/s3)")
        os.makedirs(self.data_dir, exist_ok=True)
        argv = [S3RVER, "-d", self.data_dir, "-a", "127.0.0.1", "-p", str(self.port), "--silent",
                "--no-vhost-buckets", "--configure-bucket", self.bucket]
        self.log = open(self.log_path, "ab")
        # s3rver's ListObjectsV2 continuation tokens are DES-encrypted, a
        # cipher that Node 18+ on OpenSSL 3 has only in the legacy provider:
        # without it every listing of more than one page answers 500.
        env = dict(os.environ, NODE_OPTIONS=(os.environ.get("NODE_OPTIONS", "") +
                                             " --openssl-legacy-provider").strip())
        env.update(self.env)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        harness._live.add(self.proc)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3rver exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if self.request("HEAD", f"/{self.bucket}")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"s3rver did not come up on port {self.port}: {self.log_text()[-2000:]}")

    def stop(self):
        """SIGKILL by PID (s3rver keeps nothing in memory that matters)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            harness._live.discard(self.proc)

    kill9 = stop  # harness.TempDirTest reaps it with its daemons

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def storaged_args(self, endpoint=None):
        """The storaged options that put its objects in this bucket.
        `endpoint` replaces the server's own URL (a proxy in front of it)."""
        return ["--backend", "s3", "--s3-endpoint", endpoint or self.endpoint, "--s3-bucket", self.bucket,
                "--s3-region", REGION, "--s3-access-key-file", self.access_key_file,
                "--s3-secret-key-file", self.secret_key_file]

    def request(self, method, path, body=None, timeout=10):
        """One unsigned request straight to s3rver (it does not require
        signatures); returns (status, body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def list_objects(self):
        """{name: size} of every object in the bucket (ListObjectsV2, all pages)."""
        out, token = {}, None
        while True:
            q = {"list-type": "2", "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            status, body = self.request("GET", f"/{self.bucket}?" + urllib.parse.urlencode(q))
            if status != 200:
                raise RuntimeError(f"ListObjectsV2 on {self.bucket}: {status} {body[:300]!r}")
            root = ET.fromstring(body)
            for c in root.findall(_NS + "Contents"):
                out[c.find(_NS + "Key").text] = int(c.find(_NS + "Size").text)
            if root.findtext(_NS + "IsTruncated") != "true":
                return out
            token = root.findtext(_NS + "NextContinuationToken")

    def get_object(self, name):
        status, body = self.request("GET", f"/{self.bucket}/" + urllib.parse.quote(name), timeout=60)
        if status != 200:
            raise RuntimeError(f"GET {name} from the bucket: {status}")
        return body

    def content_objects(self):
        """{content key: [bucket names]} for every bucket object whose name
        carries a content key (the node's own state objects are left out)."""
        out = {}
        for name in self.list_objects():
            m = _KEY_IN_NAME.search(name)
            if m:
                out.setdefault(m.group(1), []).append(name)
        return out

    def unverified_objects(self, digest=harness.sha1):
        """Names of content objects whose bytes do not hash to the key in
        their name: what must never be visible in the bucket."""
        bad = []
        for key, names in self.content_objects().items():
            for name in names:
                if digest(self.get_object(name)) != key:
                    bad.append(name)
        return bad

    def stored_bytes(self):
        """Bytes of every content object in the bucket."""
        sizes = self.list_objects()
        return sum(sizes[n] for names in self.content_objects().values() for n in names)

    def wipe(self):
        """Removes the data directory (the server must be stopped)."""
        assert not self.running()
        shutil.rmtree(self.data_dir, ignore_errors=True)
