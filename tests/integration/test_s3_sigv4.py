"""test_s3_sigv4.py - the S3 backend's requests carry correct AWS Signature
V4 signatures, as AWS, MinIO, Ceph RGW and Garage require. s3rver (the
test bucket) does not check V4 signatures at all, so every storaged here
talks to it through s3proxy.S3Proxy in its verifying mode, which recomputes
each request's signature and answers 403 SignatureDoesNotMatch when it
does not match.

- VerifierKnownAnswers: the verifier itself, without a network: the worked
  examples of AWS's "Signature Version 4 for S3" documentation (GET with
  Range, ListObjects with a query, a sub-resource without a value, PUT with
  a body and a '$' in the key) verify; each of them changed in one place
  after signing (secret, query, path, body, a signed header, region,
  service, clock, Authorization missing or malformed, an x-amz- header not
  signed) is refused.
- VerifierAgainstCurl: curl's own --aws-sigv4 (another signer than the
  storaged's use of libcurl's options) through the verifying proxy to
  s3rver: PUT with '/' in the key, GET with Range, HEAD, ListObjectsV2
  with prefix and continuation token, multipart ?uploads / ?partNumber&
  uploadId, DELETE all verified; curl's signed bytes replayed with the
  secret, a query parameter or the body changed are refused.
- StoragedApiSigV4 / StoragedOptionsSigV4: every storaged API test of
  test_storaged_api.py (parametrised, not copied) with the storaged behind
  the verifying proxy; each asserts that the proxy refused nothing and
  verified more than zero requests.
- BackendSigV4: what those tests do not reach: list of more than 1000
  objects in the bucket (continuation tokens, on the rebuild after --dir
  is lost), multipart uploads (bodies over 8 MiB), range reads, deletes,
  GC, scrub; and a storaged with a wrong secret refuses to start with a
  clear message and acknowledges nothing.
"""
import calendar
import hashlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_storaged_api as api  # noqa: E402  (module import: its classes are not re-run here)
from harness import STORAGED, TempDirTest, s3_backend_args, sha1, wait_for  # noqa: E402
from s3fixture import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402
from s3proxy import EMPTY_SHA256, S3Proxy, sigv4_refusal  # noqa: E402

# The example credentials and request of AWS's SigV4-for-S3 documentation
# ("Signature Calculations for the Authorization Header: Transferring
# Payload in a Single Chunk", examples for GET Object, PUT Object,
# GET Bucket Lifecycle and Get Bucket (List Objects)).
AWS_AK = "AKIAIOSFODNN7EXAMPLE"
AWS_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_NOW = calendar.timegm((2013, 5, 24, 0, 0, 0))
AWS_HOST = ("Host", "examplebucket.s3.amazonaws.com")
AWS_DATE = ("x-amz-date", "20130524T000000Z")
PUT_BODY = b"Welcome to Amazon S3."


def _aws_auth(signed, sig, scope="20130524/us-east-1/s3/aws4_request"):
    return ("Authorization", f"AWS4-HMAC-SHA256 Credential={AWS_AK}/{scope},SignedHeaders={signed},Signature={sig}")


def aws_examples():
    """(name, method, target, headers, body) of the documented examples."""
    empty = ("x-amz-content-sha256", EMPTY_SHA256)
    return [
        ("get-object-range", "GET", "/test.txt",
         [AWS_HOST, ("Range", "bytes=0-9"), empty, AWS_DATE,
          _aws_auth("host;range;x-amz-content-sha256;x-amz-date",
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")], b""),
        ("put-object", "PUT", "/test$file.text",
         [AWS_HOST, ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
          ("x-amz-content-sha256", hashlib.sha256(PUT_BODY).hexdigest()), AWS_DATE,
          _aws_auth("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")], PUT_BODY),
        ("get-lifecycle", "GET", "/?lifecycle",
         [AWS_HOST, empty, AWS_DATE,
          _aws_auth("host;x-amz-content-sha256;x-amz-date",
                    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")], b""),
        ("list-objects", "GET", "/?max-keys=2&prefix=J",
         [AWS_HOST, empty, AWS_DATE,
          _aws_auth("host;x-amz-content-sha256;x-amz-date",
                    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")], b""),
    ]


def _replace(headers, name, value):
    return [(n, value if n.lower() == name.lower() else v) for n, v in headers]


class VerifierKnownAnswers(unittest.TestCase):
    def check(self, method, target, headers, body, now=AWS_NOW, secret=AWS_SK):
        return sigv4_refusal(method, target, headers, body, AWS_AK, secret, "us-east-1", now=now)

    def test_documented_examples_verify(self):
        for name, method, target, headers, body in aws_examples():
            self.assertIsNone(self.check(method, target, headers, body), name)
        # The same with the list query in another order: canonical sorting.
        _, m, _, h, b = aws_examples()[3]
        self.assertIsNone(self.check(m, "/?prefix=J&max-keys=2", h, b))

    def test_changed_after_signing_refused(self):
        get, put, life, lst = aws_examples()
        auth = get[3][-1][1]
        cases = {
            "secret, one byte": (*get[1:], AWS_NOW, AWS_SK[:-1] + "X"),
            "path": ("GET", "/test.txu", get[3], b""),
            "path, '$' not encoded alike": ("PUT", "/test%2524file.text", put[3], PUT_BODY),
            "query value": ("GET", "/?max-keys=3&prefix=J", lst[3], b""),
            "query parameter added": ("GET", "/?max-keys=2&prefix=J&marker=x", lst[3], b""),
            "query parameter dropped": ("GET", "/?max-keys=2", lst[3], b""),
            "sub-resource": ("GET", "/?acl", life[3], b""),
            "method": ("HEAD", "/test.txt", get[3], b""),
            "body": ("PUT", put[2], put[3], PUT_BODY[:-1] + b"!"),
            "signed header value": ("GET", "/test.txt", _replace(get[3], "Range", "bytes=0-10"), b""),
            "host": ("GET", "/test.txt", _replace(get[3], "Host", "otherbucket.s3.amazonaws.com"), b""),
            "payload hash header": ("GET", "/test.txt", _replace(get[3], "x-amz-content-sha256", "UNSIGNED-PAYLOAD"), b""),
            "clock 16 minutes later": (*get[1:], AWS_NOW + 16 * 60),
            "clock 16 minutes earlier": (*get[1:], AWS_NOW - 16 * 60),
            "region": ("GET", "/test.txt", _replace(get[3], "Authorization", auth.replace("us-east-1", "eu-west-1")), b""),
            "service": ("GET", "/test.txt", _replace(get[3], "Authorization", auth.replace("/s3/", "/ec2/")), b""),
            "no Authorization": ("GET", "/test.txt", get[3][:-1], b""),
            "malformed Authorization": ("GET", "/test.txt", _replace(get[3], "Authorization", auth.replace("Signature=", "Sig=")), b""),
            "signature V2": ("GET", "/test.txt", _replace(get[3], "Authorization", f"AWS {AWS_AK}:frJIUN8DYpKDtOLCwo//yllqDzg="), b""),
            "x-amz- header not signed": ("GET", "/test.txt", get[3] + [("x-amz-acl", "public-read")], b""),
            "streaming payload": ("PUT", put[2], _replace(put[3], "x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), PUT_BODY),
        }
        for what, args in cases.items():
            refusal = self.check(*args)
            self.assertIsNotNone(refusal, what)
            self.assertEqual(refusal[0], "SignatureDoesNotMatch", what)
        # Within 15 minutes is fine.
        self.assertIsNone(self.check(*get[1:], AWS_NOW + 14 * 60))
        # Another access key is named as such.
        other = _replace(get[3], "Authorization", auth.replace(AWS_AK, "AKIAOTHERKEY"))
        self.assertEqual(self.check("GET", "/test.txt", other, b"")[0], "InvalidAccessKeyId")

    def test_payload_hash_must_match_body(self):
        _, m, t, h, b = aws_examples()[1]
        refusal = self.check(m, t, h, b + b"x")
        self.assertIn("body received hashes to", refusal[1])


class _Capture:
    """A one-shot loopback listener that records the raw bytes of one HTTP
    request (head and Content-Length body) and answers 200 empty."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.raw = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            rest += conn.recv(65536)
        self.raw = head + b"\r\n\r\n" + rest
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        self.sock.close()


def raw_request(port, raw, timeout=10):
    """Sends `raw` bytes to 127.0.0.1:port; (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        f = s.makefile("rb")
        status = int(f.readline().split()[1])
        n = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        return status, f.read(n)


class VerifyingTest(TempDirTest):
    """A test whose self.s3 is a verifying proxy in front of its s3rver;
    it fails unless the proxy verified something and refused nothing."""

    backend = "s3"
    expect_refusals = False
    # Tests of the storaged API that refuse before any request to the bucket.
    NO_S3_REQUESTS = {"test_unreadable_dir_refused"}

    def setUp(self):
        self._proxy = None  # before the setUp of a storaged API class, which starts a storaged
        super().setUp()
        self.addCleanup(self._check_signatures)

    @property
    def s3(self):
        if self._proxy is None:
            self._proxy = VerifyingProxy(self.s3server())
            self.daemons.append(self._proxy)
        return self._proxy

    def _check_signatures(self):
        p = self._proxy
        if p is None or self.expect_refusals:
            return
        self.assertEqual(p.refusals, [], "the verifying proxy refused requests")
        if self._testMethodName not in self.NO_S3_REQUESTS:
            self.assertGreater(p.verified, 0, "the verifying proxy verified nothing")


class VerifyingProxy(S3Proxy):
    """S3Proxy in verifying mode with the fixture's credentials; what it does
    not have (list_objects, content_objects, request, ...) comes from the
    s3rver behind it (those go straight to s3rver, unsigned)."""

    def __init__(self, server, secret=SECRET_KEY):
        super().__init__(server, verify=(ACCESS_KEY, secret, REGION))

    def __getattr__(self, name):
        return getattr(self.server, name)


class VerifierAgainstCurl(VerifyingTest):
    """curl --aws-sigv4 (signing on its own, from its command line) through
    the verifying proxy to s3rver."""

    def curl(self, method, path, body=None, headers=(), secret=SECRET_KEY, url=None):
        """(status, body) of one curl request; x-amz-content-sha256 is set
        as libcurl 7.88 needs for S3."""
        payload = hashlib.sha256(body or b"").hexdigest()
        argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method,
                "--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{ACCESS_KEY}:{secret}",
                "-H", f"x-amz-content-sha256: {payload}"]
        for h in headers:
            argv += ["-H", h]
        if body is not None:
            argv += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
        if method == "HEAD":
            argv += ["-I"]
        argv.append(url or self.s3.endpoint + path)
        p = subprocess.run(argv, input=body, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        out, _, code = p.stdout.rpartition(b"\n")
        return int(code), out

    def test_curl_requests_verify(self):
        b = "/" + self.s3.bucket
        data = os.urandom(3000)
        self.assertEqual(self.curl("PUT", f"{b}/objects/ab/c%20d~e", body=data)[0], 200)
        self.assertEqual(self.curl("PUT", f"{b}/objects/empty", body=b"")[0], 200)
        status, got = self.curl("GET", f"{b}/objects/ab/c%20d~e", headers=["Range: bytes=10-19"])
        self.assertEqual((status, got), (206, data[10:20]))
        self.assertEqual(self.curl("HEAD", f"{b}/objects/empty")[0], 200)
        # libcurl 7.88 signs the query as it is given: the caller sorts and
        # encodes it (as the storaged does), '/' as %2F.
        status, listing = self.curl("GET", f"{b}?list-type=2&max-keys=1&prefix=objects%2F")
        self.assertEqual(status, 200, listing)
        token = ET.fromstring(listing).findtext("{*}NextContinuationToken")
        self.assertTrue(token)
        q = urllib.parse.urlencode({"continuation-token": token, "list-type": "2", "prefix": "objects/"},
                                   quote_via=urllib.parse.quote, safe="")
        self.assertEqual(self.curl("GET", f"{b}?{q}")[0], 200)
        status, init = self.curl("POST", f"{b}/objects/multi?uploads=", body=b"")
        self.assertEqual(status, 200, init)
        upload = ET.fromstring(init).findtext("{*}UploadId")
        uq = urllib.parse.quote(upload, safe="")
        status, _ = self.curl("PUT", f"{b}/objects/multi?partNumber=1&uploadId={uq}", body=data)
        self.assertEqual(status, 200)
        # s3rver 3.7.1 has no AbortMultipartUpload (405); the signature passed.
        self.assertIn(self.curl("DELETE", f"{b}/objects/multi?uploadId={uq}")[0], (204, 405))
        self.assertEqual(self.curl("DELETE", f"{b}/objects/empty")[0], 204)
        self.assertEqual(self.s3.refusals, [])
        self.assertEqual(self.s3.verified, 10)
        self.assertTrue(any("continuation-token=" in e[1] and e[2] == "200" for e in self.s3.log))

    def test_wrong_secret_and_tampered_requests_refused(self):
        self.expect_refusals = True
        b = "/" + self.s3.bucket
        status, body = self.curl("PUT", f"{b}/objects/x", body=b"abc", secret=SECRET_KEY[:-1] + "X")
        self.assertEqual(status, 403)
        self.assertEqual(ET.fromstring(body).findtext("Code"), "SignatureDoesNotMatch")
        # curl's signed bytes, captured, then replayed changed and as they are.
        raw = self._signed_for(f"127.0.0.1:{self.s3.port}", f"{b}/objects/y?partNumber=1&x-id=PutObject",
                               b"the body")
        before = self.s3.refused
        tampered = {
            "query parameter changed": raw.replace(b"partNumber=1", b"partNumber=2", 1),
            "body changed": raw[:-1] + b"Y",
            "path changed": raw.replace(b"/objects/y?", b"/objects/z?", 1),
        }
        for what, bytes_ in tampered.items():
            status, body = raw_request(self.s3.port, bytes_)
            self.assertEqual(status, 403, what)
            self.assertEqual(ET.fromstring(body).findtext("Code"), "SignatureDoesNotMatch", what)
        self.assertEqual(self.s3.refused - before, len(tampered))
        self.assertEqual(raw_request(self.s3.port, raw)[0], 200, self.s3.refusals[-1:])  # untouched, it passes
        self.assertNotIn("objects/z", self.s3.list_objects())

    def test_header_signed_but_not_sent_refused(self):
        """libcurl 7.88 signs a header-removal entry ("Expect:") as an empty
        header that it does not send: the fault the storaged had (it asked
        for no 100-continue that way). A checking server refuses it."""
        self.expect_refusals = True
        b = "/" + self.s3.bucket
        status, body = self.curl("PUT", f"{b}/objects/e", body=b"abc", headers=["Expect:"])
        self.assertEqual(status, 403, body)
        self.assertEqual(ET.fromstring(body).findtext("Code"), "SignatureDoesNotMatch")
        self.assertIn("expect", self.s3.refusals[-1][2])

    def test_query_not_canonical_refused(self):
        """libcurl 7.88 signs the query string as given, unsorted and with
        '/' unencoded, where AWS's canonical query is sorted and encoded: a
        caller that gives it otherwise is refused, and so is a parameter
        without '=' (canonical: "uploads="). The storaged's own queries are
        sorted and encoded, with "uploads=" (see s3_client.h)."""
        self.expect_refusals = True
        b = "/" + self.s3.bucket
        for method, q in (("GET", "prefix=objects%2F&list-type=2"), ("GET", "list-type=2&prefix=objects/"),
                          ("POST", "uploads")):
            status, body = self.curl(method, f"{b}/o?{q}" if method == "POST" else f"{b}?{q}",
                                     body=b"" if method == "POST" else None)
            self.assertEqual(status, 403, q)
            self.assertEqual(ET.fromstring(body).findtext("Code"), "SignatureDoesNotMatch", q)
        self.assertEqual(self.s3.refused, 3)

    def _signed_for(self, host, target, body):
        """The raw bytes curl sends for PUT http://host+target with `body`:
        signed for `host` (its Host header) but sent to a capturing
        listener instead (--connect-to)."""
        cap = _Capture()
        payload = hashlib.sha256(body).hexdigest()
        h, port = host.split(":")
        argv = ["curl", "-sS", "-o", "/dev/null", "-X", "PUT", "--aws-sigv4", f"aws:amz:{REGION}:s3",
                "--user", f"{ACCESS_KEY}:{SECRET_KEY}", "-H", f"x-amz-content-sha256: {payload}",
                "--connect-to", f"{h}:{port}:127.0.0.1:{cap.port}", "--data-binary", "@-",
                f"http://{host}{target}"]
        p = subprocess.run(argv, input=body, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        cap.thread.join(10)
        self.assertIsNotNone(cap.raw)
        return cap.raw


# The signatures are libcurl's (CURLOPT_AWS_SIGV4), the same in both builds;
# the sanitizer build runs these API tests on the S3 backend without the
# verifying proxy already (test_storaged_api's StoragedApiS3), so this second
# pass runs on the plain build only, to keep the suite's time.
SIGNED_API_ONLY_PLAIN = unittest.skipIf(bool(os.environ.get("CAS_SANITIZED")),
                                        "signatures are verified on the plain build")


@SIGNED_API_ONLY_PLAIN
class StoragedApiSigV4(VerifyingTest, api.StoragedApiS3):
    """test_storaged_api's StoragedApi on the S3 backend, signatures verified."""


@SIGNED_API_ONLY_PLAIN
class StoragedOptionsSigV4(VerifyingTest, api.StoragedOptionsS3):
    """test_storaged_api's StoragedOptions on the S3 backend, signatures verified."""


class BackendSigV4(VerifyingTest):
    def test_big_list_multipart_ranges_gc_scrub_rebuild(self):
        s = self.storaged()
        c = s.client()
        big = os.urandom(17 * 1024 * 1024 + 3)  # multipart: three parts of at most 8 MiB
        self.assertEqual(c.put(big).status, 201)
        posted = os.urandom(9 * 1024 * 1024)  # a POST: key known only at the end
        r = c.request("POST", "/objects", body=posted)
        self.assertEqual(r.status, 201, r.body)
        for rng, want in (("bytes=0-0", big[:1]), ("bytes=8388607-8388610", big[8388607:8388611]),
                          ("bytes=-5", big[-5:]), ("bytes=100-", big[100:])):
            r = c.get(sha1(big), {"Range": rng})
            self.assertEqual((r.status, r.body), (206, want), rng)
        self.assertEqual(c.get(sha1(posted)).body, posted)
        parts = [path for m, path, what in self.s3.log if m == "PUT" and "partNumber=" in path and what == "200"]
        self.assertGreaterEqual(len(parts), 5, "no multipart upload went through the verifier")
        self.assertTrue(any(m == "POST" and "uploads=" in path for m, path, _ in self.s3.log))
        self.assertTrue(any(m == "POST" and "uploadId=" in path for m, path, _ in self.s3.log))
        small = [b"small %d" % i for i in range(3)]
        for b in small:
            self.assertEqual(c.put(b).status, 201)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(small[0])}").status, 204)
        gid = c.request("POST", "/gc/begin").json()["id"]
        keep = [big, posted, small[2]]
        self.assertEqual(c.request("POST", "/gc/mark", body="".join(sha1(b) + "\n" for b in keep)).status, 200)
        self.assertEqual(c.request("POST", f"/gc/end?id={gid}").json()["removed"], 1)  # small[1]
        c.close()
        self.assertEqual(s.stop(), 0)
        plain = list(s.argv)
        s.argv = plain + ["--scrub-rate", "2000"]  # one scrub pass reads every object back
        s.start()
        c = s.client()
        st = wait_for(lambda: (lambda j: j["scrub"] if j["scrub"]["passes"] >= 1 else None)(
            c.request("GET", "/status").json()), 60, "one scrub pass")
        self.assertEqual(st["corrupt"], 0, st)
        c.close()
        self.assertEqual(s.stop(), 0)
        s.argv = plain
        # More than one ListObjectsV2 page (1000 names) for the rebuild: the
        # same bytes a storaged would write, put straight into the bucket
        # (its own PUTs are checked above; this keeps the test short).
        many = [b"listed %d" % i for i in range(1000)]
        conn = http.client.HTTPConnection("127.0.0.1", self.s3.server.port, timeout=30)
        for b in many:
            conn.request("PUT", f"/{self.s3.bucket}/objects/{sha1(b)}", body=b)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        conn.close()
        keep += many
        shutil.rmtree(s.dir)  # local state lost: rebuilt from the bucket
        s.start(timeout=60)
        c = s.client()
        listed = dict(line.split() for line in c.request("GET", "/objects").body.decode().splitlines())
        self.assertEqual(listed, {sha1(b): str(len(b)) for b in keep})
        self.assertTrue(any("continuation-token=" in path and what == "200" for _, path, what in self.s3.log),
                        "the rebuild never asked for a second page")
        for b in (small[0], small[1]):
            self.assertEqual(c.get(sha1(b)).status, 404)
        self.assertEqual(c.get(sha1(big)).body, big)
        self.assertEqual(c.get(sha1(many[5])).body, many[5])

    def test_wrong_secret_refuses_to_start(self):
        self.expect_refusals = True
        bad = os.path.join(self.tmp, "bad-secret")
        with open(bad, "w") as f:
            f.write(SECRET_KEY[:-1] + "X\n")
        args = s3_backend_args(self.s3)
        args[args.index("--s3-secret-key-file") + 1] = bad
        p = subprocess.run([STORAGED, "--dir", os.path.join(self.tmp, "bad"), "--listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if not k.startswith("CAS_")})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("Sanitizer", p.stderr)
        self.assertRegex(p.stderr, r"refused our credentials \(403\).*secret")
        self.assertGreater(self.s3.refused, 0)
        self.assertEqual(self.s3.verified, 0)
        self.assertEqual(self.s3.server.list_objects(), {})


if __name__ == "__main__":
    unittest.main()
