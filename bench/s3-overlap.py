"""s3-overlap.py - whether an S3 storaged overlaps receiving a PUT's body
with uploading its parts: one 64 MiB PUT from a client that sends 8 MiB
every 0.2 s, to a bucket (s3rver behind tests/integration/s3proxy.py) that
takes 0.2 s more for each part. Parts uploaded inline take about 16 x 0.2 s
plus the work; overlapped, about 8 x 0.2 s + 0.2 s plus the work.

    python3 bench/s3-overlap.py BUILD/storaged/ca-cas-storaged

Prints the binary, the status and the PUT's seconds. Needs tests/s3's
s3rver (scripts/install-deps.sh). Everything it starts is killed by PID, its
temporary directory removed.
"""
import hashlib
import http.client
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import s3proxy, harness
from s3fixture import S3Server
orig = s3proxy._Conn.relay_body
def slow(self, headers, out, limit=None, no_body=False):
    if out is not None and int(headers.get("content-length", "0")) >= (8 << 20):
        time.sleep(0.2)
    return orig(self, headers, out, limit, no_body)
s3proxy._Conn.relay_body = slow
binary = sys.argv[1]
root = tempfile.mkdtemp(prefix="s3r-ov")
srv = S3Server(os.path.join(root, "s3")).start()
px = s3proxy.S3Proxy(srv)
port = harness.free_port()
d = os.path.join(root, "dir"); os.makedirs(d)
p = subprocess.Popen([binary, "--dir", d, "--listen", f"127.0.0.1:{port}", "--capacity", "10G"] + px.storaged_args(),
                     stdout=open(os.path.join(root, "log"), "w"), stderr=subprocess.STDOUT)
try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/healthz"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.1)
    data = os.urandom(64 << 20)
    k = hashlib.sha1(data).hexdigest()
    def body():
        for off in range(0, len(data), 1 << 20):
            if off and off % (8 << 20) == 0:
                time.sleep(0.2)
            yield data[off:off + (1 << 20)]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t = time.monotonic()
    c.request("PUT", f"/objects/{k}", body=body(), headers={"Content-Length": str(len(data))})
    r = c.getresponse(); r.read()
    print(binary, r.status, round(time.monotonic() - t, 2), "s")
finally:
    p.kill(); p.wait(); px.stop(); srv.stop()
    import shutil
    shutil.rmtree(root, ignore_errors=True)
