"""test_prometheus.py - monitoring that Prometheus accepts as it is: a real
Prometheus (Debian's package) scrapes two storageds and a balancer every
second while traffic touches every route; then, through its HTTP API: every
target up with no scrape error, no duplicate or out-of-order samples, the
shipped alert rules (configs/prometheus/rules.yml) loaded and healthy, every
query of the shipped Grafana dashboard valid. `promtool check metrics`
passes on each daemon's output, and every series appears once. One
vocabulary: no name means different things on the two daemons (the
balancer's cluster sums are cas_cluster_*), every name is in the Metrics
tables of docs/OPERATIONS.md, label values are escaped."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from harness import Daemon, free_port, sha1
from test_balancerd import ClusterTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM = os.path.join(ROOT, "configs", "prometheus")


def series_of(text):
    """The series of a metrics text: (name, sorted labels) per sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        out.append((m.group(1), labels))
    return out


class Prometheus(ClusterTest):
    def setUp(self):
        super().setUp()
        for tool in ("prometheus", "promtool"):
            self.assertTrue(shutil.which(tool), f"{tool} missing (scripts/install-deps.sh installs prometheus)")

    def traffic(self, c):
        objs = [os.urandom(n) for n in (0, 10, 5000, 300_000)]
        for d in objs:
            c.put(d)
        c.request("POST", "/objects", body=b"posted")
        k = sha1(objs[2])
        for path in (f"/objects/{k}", f"/file/{k}/", f"/file/{k}", "/objects/" + "0" * 40, "/objects/zz",
                     "/", "/status", "/status/", "/ring", "/capacity", "/gc", "/compact", "/healthz",
                     "/objects?state=live", "/objects?state=garbage", "/nosuch%FF"):
            c.request("GET", path)
        c.request("GET", f"/objects/{k}", headers={"Range": "bytes=0-99"})
        c.request("HEAD", f"/objects/{k}")
        c.request("PATCH", f"/objects/{k}")
        c.request("POST", "/objects/missing", body=f"{k}\n{'1' * 40}\n")
        r = c.request("POST", "/gc/begin")
        gid = r.json()["id"] if r.status == 200 else "0"
        c.request("POST", "/gc/mark", body=f"{k}\n")
        c.request("POST", f"/gc/end?id={gid}")
        c.request("POST", "/compact?wait=1")
        c.request("DELETE", f"/objects/{sha1(objs[1])}")
        boundary = "bnd"
        c.request("POST", "/", body=(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                                     f"filename=\"x\"\r\n\r\ncask\r\n--{boundary}--\r\n").encode(),
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def api(self, port, path, **params):
        url = f"http://127.0.0.1:{port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        self.assertEqual(body["status"], "success", body)
        return body["data"]

    def check_vocabulary(self, storaged_text, balancer_text):
        """One vocabulary (docs/OPERATIONS.md, "Metrics"): a name exported by
        both daemons means the same on both, so only the shared HTTP, process
        and build metrics may appear on both; the balancer's view of the
        cluster is cas_cluster_*, its own figures cas_balancer_*; every name
        is documented in the Metrics table with its type."""
        def helps(text):
            out = {}
            for m in re.finditer(r'(?m)^# HELP (\S+) (.*)$', text):
                out[m.group(1)] = m.group(2)
            return out

        def types(text):
            return dict(re.findall(r'(?m)^# TYPE (\S+) (\S+)$', text))

        sd, bd = helps(storaged_text), helps(balancer_text)
        shared = re.compile(r'cas_http_|process_|cas_build_info$')
        both = set(sd) & set(bd)
        self.assertEqual({n for n in both if not shared.match(n)}, set(),
                         "storaged names exported by the balancer")
        for n in both:
            self.assertEqual(sd[n], bd[n], n)
        for n in ("cas_objects", "cas_object_bytes", "cas_capacity_total_bytes",
                  "cas_capacity_available_bytes", "cas_unreclaimed_bytes", "cas_gc_active",
                  "cas_compaction_running"):
            self.assertIn(n, sd)
            self.assertNotIn(n, bd)
            self.assertIn(n.replace("cas_", "cas_cluster_", 1), bd)
        for n in bd:
            if not shared.match(n):
                self.assertRegex(n, r'^cas_(balancer|cluster)_', n)
        self.assertNotIn("cas_bytes", bd)
        self.assertNotIn("cas_capacity_bytes", bd)
        # per-backend series carry the same labels
        for m in re.finditer(r'(?m)^(cas_balancer_backend_\w+)\{([^}]*)\}', balancer_text):
            self.assertEqual(re.findall(r'(\w+)=', m.group(2)), ["backend", "failure_domain"], m.group(0))
        # the documentation's table
        with open(os.path.join(ROOT, "docs", "OPERATIONS.md")) as f:
            doc = f.read()
        rows = dict(re.findall(r'(?m)^\| `([a-z_]+)` \| (counter|gauge|histogram) \|', doc))
        for text in (storaged_text, balancer_text):
            for n, ty in types(text).items():
                self.assertEqual(rows.get(n), ty, f"{n} ({ty}) not in the Metrics table of docs/OPERATIONS.md")

    def test_real_prometheus_scrapes_every_daemon_cleanly(self):
        # a failure domain that needs escaping in a label value
        self.cluster(n=2, replicas=2, domains=['rack "a" \\ 1', "rack-b"])
        bal = self.balancer()
        for s in self.stores:
            self.traffic(s.client())
            s.client().request("GET", f"/local/{sha1(b'posted')}/")
        self.traffic(bal.client())
        targets = [f"127.0.0.1:{s.port}" for s in self.stores] + [f"127.0.0.1:{bal.port}"]
        texts = {}
        for t in targets:
            text = urllib.request.urlopen(f"http://{t}/metrics", timeout=10).read().decode()
            texts[t] = text
            p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 0, f"{t}: {p.stdout}{p.stderr}")
            series = series_of(text)
            dups = {s for s in series if series.count(s) > 1}
            self.assertEqual(dups, set(), t)
            for name in ("process_resident_memory_bytes", "process_open_fds",
                         "process_start_time_seconds", "process_cpu_seconds_total", "cas_build_info"):
                self.assertIn(name, {n for n, _ in series}, t)
        self.check_vocabulary(texts[targets[0]], texts[targets[-1]])
        for name in ("cas_balancer_backend_up", "cas_balancer_backend_latency_seconds"):
            self.assertIn(f'{name}{{backend="{self.stores[0].url}",failure_domain="rack \\"a\\" \\\\ 1"}} ',
                          texts[targets[-1]])
        p = subprocess.run(["promtool", "check", "rules", os.path.join(PROM, "rules.yml")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        port = free_port()
        cfg = os.path.join(self.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.join(PROM, "rules.yml")}
scrape_configs:
  - job_name: ca-cas-storaged
    static_configs:
      - targets: {json.dumps(targets[:-1])}
  - job_name: ca-cas-balancerd
    static_configs:
      - targets: {json.dumps(targets[-1:])}
  - job_name: prometheus  # its own counters of duplicate and out-of-order samples
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
        prom = Daemon(["prometheus", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                       f"--storage.tsdb.path={os.path.join(self.tmp, 'tsdb')}", "--log.level=warn"],
                      os.path.join(self.tmp, "prometheus.log"))
        self.daemons.append(prom)
        self.addCleanup(prom.stop)
        prom.start(("127.0.0.1", port), timeout=60)
        deadline = time.time() + 60
        while True:  # the API answers 503 until the TSDB is open
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5).status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.time(), deadline, prom.log_text()[-2000:])
            time.sleep(0.3)
        # several scrapes, with traffic in between
        deadline = time.time() + 60
        while True:
            active = self.api(port, "targets")["activeTargets"]
            scraped = [t for t in active if t["lastScrape"] and not t["lastScrape"].startswith("0001")]
            if len(scraped) == 4 and all(t["health"] == "up" for t in active):
                break
            self.assertLess(time.time(), deadline, active)
            time.sleep(0.5)
        for s in self.stores:
            self.traffic(s.client())
        time.sleep(4)
        for t in self.api(port, "targets")["activeTargets"]:
            self.assertEqual((t["health"], t["lastError"]), ("up", ""), t)
        up = self.api(port, "query", query='up{job=~"ca-cas-.*"}')["result"]
        self.assertEqual(sorted(r["metric"]["instance"] for r in up), sorted(targets))
        self.assertTrue(all(r["value"][1] == "1" for r in up), up)
        for bad in ("prometheus_target_scrapes_sample_duplicate_timestamp_total",
                    "prometheus_target_scrapes_sample_out_of_order_total",
                    "prometheus_target_scrapes_sample_out_of_bounds_total",
                    "prometheus_target_scrapes_exceeded_sample_limit_total"):
            res = self.api(port, "query", query=f"sum({bad})")["result"]
            self.assertTrue(res and float(res[0]["value"][1]) == 0, f"{bad}: {res}")
        samples = self.api(port, "query", query="scrape_samples_scraped")["result"]
        self.assertTrue(all(float(r["value"][1]) > 20 for r in samples), samples)
        # the shipped rules are loaded and evaluate without error
        groups = self.api(port, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        self.assertEqual(len(rules), 7)
        for r in rules:
            self.assertEqual(r["health"], "ok", r)
        # every query of the shipped dashboard is valid and finds data
        with open(os.path.join(PROM, "grafana-dashboard.json")) as f:
            dash = json.load(f)
        for panel in dash["panels"]:
            for t in panel["targets"]:
                res = self.api(port, "query", query=t["expr"])
                self.assertIsInstance(res["result"], list, panel["title"])
                if "cas_cluster_" in t["expr"]:  # scraped from the balancer by now
                    self.assertTrue(res["result"], panel["title"])
        # one vocabulary: a sum over every job of a storaged name counts only
        # the storageds (the balancer's copies are cas_cluster_*)
        res = self.api(port, "query", query='count by (job) (cas_objects)')["result"]
        self.assertEqual([r["metric"]["job"] for r in res], ["ca-cas-storaged"], res)
        res = self.api(port, "query", query='count by (job) ({__name__=~"cas_cluster_.*"})')["result"]
        self.assertEqual([r["metric"]["job"] for r in res], ["ca-cas-balancerd"], res)

    def test_probes_and_scrapes_are_logged_at_debug(self):
        s = self.storaged("quiet", extra=["--log-level", "info"])
        c = s.client()
        for _ in range(5):
            for path in ("/status", "/gc", "/capacity", "/compact", "/ring", "/metrics", "/healthz"):
                self.assertEqual(c.request("GET", path).status, 200)
        c.put(b"logged")
        c.get(sha1(b"logged"))
        time.sleep(0.3)
        log = s.log_text()
        self.assertIn(f"GET /objects/{sha1(b'logged')} 200", log)
        for path in ("/status", "/gc", "/capacity", "/compact", "/ring", "/metrics", "/healthz"):
            self.assertNotIn(f"GET {path} 200", log)
        # at debug they are there
        d = self.storaged("loud", extra=["--log-level", "debug"])
        d.client().request("GET", "/status")
        time.sleep(0.3)
        self.assertIn("GET /status 200", d.log_text())
