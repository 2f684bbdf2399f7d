"""test_rebalance.py - `ca-cas rebalance` and the balancer's anti-entropy
against real storageds and balancers on loopback.

Placement is checked with test_balancerd's independent Python rendering of
the placement rule of docs/API.md, fed with each storaged's GET /ring. Under the sanitizers
(CAS_SANITIZED=1) the data sets are smaller.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import CLI, sha1  # noqa: E402

SANITIZED = bool(os.environ.get("CAS_SANITIZED"))
NOBJ = 120 if SANITIZED else 400
BIG = 3 if SANITIZED else 8  # objects of 1-2 MiB among them


def dataset(tag, n=NOBJ, big=BIG):
    """n objects: mostly 1-64 KiB, `big` of 1-2 MiB (streamed copies)."""
    out = []
    for i in range(n):
        h = int(hashlib.sha256(f"{tag}{i}".encode()).hexdigest()[:8], 16)
        size = (1 << 20) + h % (1 << 20) if i < big else 1024 + h % (64 << 10)
        out.append(tb.blob(f"{tag}-{i}", size))
    return out


class RebalanceTest(tb.ClusterTest):
    def add_store(self, name, domain):
        s = self.storaged(name, extra=["--capacity", "64G"])
        self.stores.append(s)
        self.domains.append(domain)
        self.rings.append(s.client().request("GET", "/ring").json())
        return s

    def drop_store(self, i):
        del self.stores[i], self.domains[i], self.rings[i]

    def rebalance(self, *args, check=True, config=None):
        r = subprocess.run([CLI, "--json", "rebalance", "--config", config or self.config] + list(args),
                           capture_output=True, text=True, timeout=180)
        if check:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r, (json.loads(r.stdout) if r.stdout.strip() else None)

    def put_all(self, client, datas):
        for d in datas:
            r = client.put(d)
            self.assertIn(r.status, (200, 201), r.body)
        return [sha1(d) for d in datas]

    def assert_at_home(self, keys):
        for k in keys:
            self.assertEqual(sorted(self.holders(k)), sorted(self.home(k)), k)

    def assert_all_readable(self, client, datas):
        for d in datas:
            r = client.get(sha1(d))
            self.assertEqual(r.status, 200, sha1(d))
            self.assertEqual(r.body, d)


class TestRebalance(RebalanceTest):
    def test_add_a_fourth_backend_moves_a_quarter_and_reads_never_fail(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        datas = dataset("add")
        keys = self.put_all(bal.client(), datas)
        self.assert_at_home(keys)
        sizes = {sha1(d): len(d) for d in datas}

        new = self.add_store("s3", "d3")
        self.write_config(2)
        os.kill(bal.pid, signal.SIGHUP)
        bal.wait_backends(4)

        # The plan: exactly the copies whose new home includes the new backend.
        _, plan = self.rebalance("--dry-run")
        expect = [k for k in keys if 3 in self.home(k)]
        self.assertEqual(plan["objects"], len(keys))
        self.assertEqual(plan["copies_planned"], len(expect))
        self.assertEqual(plan["removals_planned"], len(expect))
        self.assertEqual(plan["copy_bytes_planned"], sum(sizes[k] for k in expect))
        # About a quarter of the copies move: as many as the new backend's
        # share of the ring (sampled) predicts, and near 1/4 with equal tokens.
        samples = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(3000)]
        expected = sum(1 for k in samples if 3 in self.home(k)) / (2 * len(samples))
        self.assertGreater(expected, 0.15)
        self.assertLess(expected, 0.35)
        share = plan["copies_planned"] / (2 * len(keys))
        self.assertLess(abs(share - expected), 0.08, (share, expected))

        # Reads through the balancer while it runs: none may fail.
        stop = threading.Event()
        failures, reads = [], [0]

        def reader():
            c = bal.client()
            while not stop.is_set():
                for d in datas[::7]:
                    r = c.get(sha1(d))
                    reads[0] += 1
                    if r.status != 200 or r.body != d:
                        failures.append((sha1(d), r.status))
        t = threading.Thread(target=reader)
        t.start()
        try:
            r, st = self.rebalance("--max-mbps", "20")
        finally:
            stop.set()
            t.join()
        self.assertEqual(failures, [])
        self.assertGreater(reads[0], 0)
        # Read repair may have moved some copies first; together they are the plan.
        self.assertLessEqual(st["copies_made"], len(expect))
        self.assertEqual(st["copies_failed"], 0, r.stderr)
        self.assertEqual(st["removals_made"], len(expect), r.stderr)
        self.assert_at_home(keys)
        self.assert_all_readable(bal.client(), datas)
        moved = new.client().request("GET", "/capacity").json()["bytes"]
        self.assertEqual(moved, plan["copy_bytes_planned"])
        # Run again: nothing left to do.
        _, again = self.rebalance("--dry-run")
        self.assertEqual((again["copies_planned"], again["removals_planned"]), (0, 0), again)
        self.assertEqual(again["objects_ok"], len(keys))

    def test_a_dead_disk_removed_from_the_config(self):
        self.cluster(n=4, replicas=3, domains=["a", "b", "c", "c"])
        bal = self.balancer()
        datas = dataset("dead", n=NOBJ // 2)
        keys = self.put_all(bal.client(), datas)
        self.assert_at_home(keys)
        # The disk of backend 3 dies: its process and its data are gone.
        self.stores[3].kill9()
        self.drop_store(3)
        self.write_config(3)
        r, st = self.rebalance()
        self.assertGreater(st["copies_made"], 0)
        self.assertEqual(st["copies_failed"], 0, r.stderr)
        for k in keys:
            h = self.holders(k)
            self.assertEqual(len(h), 3, k)
            self.assertEqual(sorted(self.domains[i] for i in h), ["a", "b", "c"], k)
        self.assert_at_home(keys)

    def test_interrupted_then_run_again_converges(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        datas = dataset("intr")
        keys = self.put_all(bal.client(), datas)
        new = self.add_store("s3", "d3")
        self.write_config(2)
        _, plan = self.rebalance("--dry-run")
        # Slow enough to stop half-way.
        mbps = max(0.5, plan["copy_bytes_planned"] / 1e6 / 4)
        p = subprocess.Popen([CLI, "--json", "rebalance", "--config", self.config, "--max-mbps", str(mbps)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Stop it once some copies have landed on the new backend.
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None:
            if new.client().request("GET", "/capacity").json()["objects"] >= 5:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, out + err)
        st = json.loads(out)
        self.assertTrue(st["interrupted"], st)
        self.assertGreater(st["copies_made"], 0, st)
        self.assertLess(st["copies_made"], plan["copies_planned"], st)
        self.assertIn("interrupted", err)
        # Nothing lost meanwhile, and a second run finishes the job.
        self.assert_all_readable(bal.client(), datas)
        r, st2 = self.rebalance()
        self.assertEqual(st2["copies_failed"], 0, r.stderr)
        self.assert_at_home(keys)
        self.assert_all_readable(bal.client(), datas)

    def test_two_at_once_converge_and_lose_nothing(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        datas = dataset("two")
        keys = self.put_all(bal.client(), datas)
        self.add_store("s3", "d3")
        self.write_config(2)
        procs = [subprocess.Popen([CLI, "--json", "rebalance", "--config", self.config],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [p.communicate(timeout=180) for p in procs]
        for p, (out, err) in zip(procs, results):
            self.assertIn(p.returncode, (0, 1), err)
            self.assertEqual(json.loads(out)["copies_failed"], 0, err)
        self.assert_all_readable(bal.client(), datas)
        for k in keys:  # never below replicas, whatever the interleaving
            self.assertGreaterEqual(len(self.holders(k)), 2, k)
        # Converged, or one more run converges (a removal held back because
        # the other run was still copying).
        _, plan = self.rebalance("--dry-run")
        if plan["copies_planned"] or plan["removals_planned"]:
            self.rebalance()
        self.assert_at_home(keys)

    def test_objects_deleted_by_clients_meanwhile_are_not_failures(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        datas = dataset("gone", n=80, big=0)
        keys = self.put_all(bal.client(), datas)
        self.add_store("s3", "d3")
        self.write_config(2)
        os.kill(bal.pid, signal.SIGHUP)
        bal.wait_backends(4)
        _, plan = self.rebalance("--dry-run")
        moving = [k for k in keys if 3 in self.home(k)]
        mbps = max(0.2, plan["copy_bytes_planned"] / 1e6 / 3)
        p = subprocess.Popen([CLI, "--json", "rebalance", "--config", self.config, "--max-mbps", str(mbps),
                              "--concurrency", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        c = bal.client()
        for k in moving[len(moving) // 2:]:
            self.assertIn(c.request("DELETE", f"/objects/{k}").status, (204, 404))
        out, err = p.communicate(timeout=60)
        st = json.loads(out)
        # The object whose copy was in flight when it was deleted may find
        # its home unconfirmed (HEAD 404): its removals are kept, exit 1.
        self.assertLessEqual(st["removals_skipped"], 1, st)
        self.assertEqual(p.returncode, 1 if st["removals_skipped"] else 0, out + err)
        self.assertGreater(st["objects_vanished"], 0, st)
        self.assertEqual(st["copies_failed"], 0, st)
        gone = set(moving[len(moving) // 2:])
        # Not brought back, not even the one whose copy was in flight when it
        # was deleted: the target's tombstone refuses the copy at its commit.
        back = [k for k in gone if self.holders(k)]
        self.assertEqual(back, [])
        self.assert_at_home([k for k in keys if k not in gone])

    def test_down_backend_is_reported_and_nothing_removed(self):
        self.cluster(n=4, replicas=2)
        bal = self.balancer()
        datas = dataset("down", n=60, big=0)
        keys = self.put_all(bal.client(), datas)
        # Make work: a copy outside its home, and a missing home copy.
        k0 = keys[0]
        outside = next(i for i in range(4) if i not in self.home(k0))
        self.assertEqual(self.stores[outside].client().put(datas[0]).status, 201)
        k1 = keys[1]
        h1 = self.home(k1)
        # (?replica=1: a lost copy, without the tombstone a client's DELETE leaves)
        self.assertEqual(self.stores[h1[0]].client().request("DELETE", f"/objects/{k1}?replica=1").status, 204)
        # A backend other than these is down.
        down = next(i for i in range(4) if i != outside and i not in h1)
        self.stores[down].kill9()
        r, st = self.rebalance(check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(st["backends_down"], 1)
        self.assertEqual(st["down"][0]["url"], self.stores[down].url)
        self.assertIn(self.stores[down].url, r.stderr)
        self.assertEqual(st["removals_made"], 0)  # its ring is unknown: no removals at all
        self.assertIn(h1[0], self.holders(k1))  # the missing home copy came back
        self.assertIn(outside, self.holders(k0))

    def test_usage_errors(self):
        r = subprocess.run([CLI, "rebalance"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--config", r.stderr)
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("replicas: 2\nbackends: 3\n")
        r = subprocess.run([CLI, "rebalance", "--config", bad], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.yaml:2:", r.stderr)
        r = subprocess.run([CLI, "rebalance", "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--dry-run", r.stdout)


class TestRottenHome(RebalanceTest):
    """A home copy that rotted unnoticed (HEAD still answers 200) must not
    let rebalance remove the good copy outside the home: the home copy is
    read back and hashed before any removal."""

    def test_rebalance_keeps_the_good_copy_when_the_home_copy_rotted(self):
        self.cluster(n=2, replicas=1)
        data = b"UNIQUEMARKER-" * 4000
        k = sha1(data)
        home = self.home(k)[0]
        other = 1 - home
        for s in self.stores:
            self.assertEqual(s.client().put(data).status, 201)
        # flip one byte of the home copy on disk, behind the store's back
        d = self.stores[home].dir
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if not n.startswith("data") or not os.path.isfile(p):
                continue
            with open(p, "r+b") as f:
                b = f.read()
                i = b.find(b"UNIQUEMARKER-UNIQUEMARKER")
                if i >= 0:
                    f.seek(i + 5000)
                    f.write(bytes([b[i + 5000] ^ 1]))
                    break
        else:
            self.fail("the object's bytes were not found in the home's data files")
        self.assertEqual(self.stores[home].client().request("HEAD", f"/objects/{k}").status, 200)
        r, st = self.rebalance(check=False)
        # the good copy outside the home is kept
        self.assertEqual(self.stores[other].client().get(k).body, data, r.stdout + r.stderr)
        self.assertGreaterEqual(st["removals_skipped"], 1, st)


class TestAntiEntropy(RebalanceTest):
    def test_a_copy_deleted_behind_the_back_comes_back_within_an_interval(self):
        interval = 3
        self.cluster(n=3, replicas=2,
                     extra_yaml=f"anti_entropy:\n  interval: {interval}s\n  max_mbps: 50\n")
        bal = self.balancer()
        datas = dataset("ae", n=50, big=1)
        keys = self.put_all(bal.client(), datas)
        st = bal.status()["anti_entropy"]
        self.assertTrue(st["enabled"], st)
        self.assertEqual(st["interval"], interval)
        victims = [keys[0], keys[5]]
        for k in victims:
            h = self.home(k)[1]
            # ?replica=1: lost, not deleted by a client (no tombstone)
            self.assertEqual(self.stores[h].client().request("DELETE", f"/objects/{k}?replica=1").status, 204)
            self.assertNotIn(h, self.holders(k))
        t0 = time.time()
        while time.time() - t0 < interval + 5:
            if all(sorted(self.holders(k)) == sorted(self.home(k)) for k in victims):
                break
            time.sleep(0.2)
        took = time.time() - t0
        self.assert_at_home(victims)
        self.assertLess(took, interval + 2, "restored, but later than one interval")
        deadline = time.time() + 10
        while time.time() < deadline:
            st = bal.status()["anti_entropy"]
            if st["last_pass"] and st["passes"] >= 1 and not st["running"]:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(st["last_pass"]["objects_checked"], len(keys) - 2, st)
        metrics = bal.client().request("GET", "/metrics").body.decode()
        for name in ("cas_balancer_antientropy_passes_total", "cas_balancer_antientropy_copies_made_total",
                     "cas_balancer_antientropy_copies_removed_total",
                     "cas_balancer_antientropy_last_pass_objects",
                     "cas_balancer_antientropy_last_pass_timestamp_seconds"):
            self.assertIn(name, metrics)
        made = [l for l in metrics.splitlines() if l.startswith("cas_balancer_antientropy_copies_made_total ")]
        self.assertGreaterEqual(int(made[0].split()[1]), 2)

    def test_off_by_default(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        st = bal.status()["anti_entropy"]
        self.assertFalse(st["enabled"])
        self.assertIsNone(st["last_pass"])


if __name__ == "__main__":
    unittest.main()
