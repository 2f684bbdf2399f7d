"""test_deletion.py - a DELETE answered 204 is never undone.

A balancer deletes only when it can reach every backend (503 and nothing
deleted otherwise, also for `ca-cas rm`); every storaged keeps a tombstone
that refuses copies from other replicas (read repair, anti-entropy,
rebalance: PUT ?replica=1 -> 410) through restarts, compaction and GC; a
copy in flight when the DELETE lands is refused at its commit; only a
client PUT brings the object back.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_balancerd as tb  # noqa: E402
from harness import CLI, sha1, wait_for  # noqa: E402


def wait_stopped(pid):
    """SIGSTOP stops a multi-threaded process only once one of its threads
    has run the group stop: wait until every thread is stopped."""
    def stopped():
        tasks = os.listdir(f"/proc/{pid}/task")
        for t in tasks:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
        return True
    wait_for(stopped, 10, f"process {pid} to stop")


def data_bytes(store_dir):
    return sum(os.path.getsize(os.path.join(store_dir, n)) for n in os.listdir(store_dir)
               if n.startswith("data-"))


class DeletionTest(tb.ClusterTest):
    def put(self, c, data):
        r = c.put(data)
        self.assertIn(r.status, (200, 201), r.body)
        return sha1(data)

    def replica_put(self, i, data):
        """A copy as read repair, anti-entropy and rebalance send it."""
        return self.stores[i].client().request("PUT", f"/objects/{sha1(data)}?replica=1", body=data).status

    def test_delete_with_a_holder_down_is_refused_and_deletes_nothing(self):
        self.cluster(n=3, replicas=2, min_replicas=1)
        bal = self.balancer()
        c = bal.client()
        data = tb.blob("down", 30000)
        k = self.put(c, data)
        home = self.home(k)
        self.assertEqual(sorted(self.holders(k)), sorted(home))
        down = self.stores[home[0]]
        down.kill9()
        bal.wait_backends(2)
        r = c.request("DELETE", f"/objects/{k}")
        self.assertEqual(r.status, 503, r.body)
        self.assertIn(down.url, r.json()["error"])
        self.assertIn("nothing deleted", r.json()["error"])
        self.assertEqual(self.holders(k), [home[1]])
        # ca-cas rm through the balancer: fails, says why, deletes nothing.
        rm = subprocess.run([CLI, "--server", f"http://127.0.0.1:{bal.port}", "rm", k],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(rm.returncode, 1, rm.stdout + rm.stderr)
        self.assertIn("nothing deleted", rm.stderr)
        self.assertEqual(self.holders(k), [home[1]])
        # Even a backend that holds no copy must be reachable: any backend
        # may hold one (failover writes, rebalance).
        down.start()
        bal.wait_backends(3)
        other = next(i for i in range(3) if i not in home)
        self.stores[other].kill9()
        bal.wait_backends(2)
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 503)
        self.assertEqual(sorted(self.holders(k)), sorted(home))
        self.stores[other].start()
        bal.wait_backends(3)
        # The holder is back: the object was never deleted and is whole.
        self.assertEqual(c.get(k).body, data)
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        self.assertEqual(self.holders(k), [])
        self.assertEqual(c.get(k).status, 404)

    def test_delete_with_a_hung_holder_answers_503_quickly(self):
        self.cluster(n=3, replicas=2, min_replicas=1)
        bal = self.balancer()
        c = bal.client()
        data = tb.blob("hung", 20000)
        k = self.put(c, data)
        home = self.home(k)
        hung = self.stores[home[1]]
        os.kill(hung.pid, signal.SIGSTOP)
        try:
            wait_stopped(hung.pid)
            t0 = time.time()
            r = c.request("DELETE", f"/objects/{k}")
            took = time.time() - t0
        finally:
            os.kill(hung.pid, signal.SIGCONT)
        self.assertEqual(r.status, 503, r.body)
        self.assertLess(took, 10, r.body + bal.log_text().encode())
        self.assertEqual(sorted(self.holders(k)), sorted(home))

    def test_returning_holder_read_repair_anti_entropy_rebalance_never_bring_it_back(self):
        self.cluster(n=3, replicas=2, min_replicas=1,
                     extra_yaml="anti_entropy:\n  interval: 1s\n  max_mbps: 50\n")
        bal = self.balancer()
        c = bal.client()
        datas = [tb.blob(f"gone-{i}", 5000 + i) for i in range(6)]
        keys = [self.put(c, d) for d in datas]
        gone, kept = keys[:3], keys[3:]
        for k in gone:
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        # A holder returning from an outage has nothing to give back.
        h = self.home(gone[0])[0]
        self.stores[h].kill9()
        bal.wait_backends(2)
        self.stores[h].start()
        bal.wait_backends(3)
        for k in gone:
            self.assertEqual(c.get(k).status, 404)
        # Every copy that read repair, anti-entropy or rebalance would send
        # is refused where the object was deleted.
        for i, k in enumerate(gone):
            for s in range(3):
                self.assertEqual(self.replica_put(s, datas[i]), 410)
        passes = bal.status()["anti_entropy"]["passes"]
        wait_for(lambda: bal.status()["anti_entropy"]["passes"] >= passes + 2, 30, "two anti-entropy passes")
        r = subprocess.run([CLI, "--json", "rebalance", "--config", self.config],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for k in gone:
            self.assertEqual(self.holders(k), [], k)
            self.assertEqual(c.get(k).status, 404)
        for k in kept:
            self.assertEqual(sorted(self.holders(k)), sorted(self.home(k)))

    def test_delete_racing_an_in_flight_copy(self):
        """A rebalance copy is streaming to a home backend when the DELETE
        lands there: the copy is refused at its commit, never stored."""
        self.cluster(n=3, replicas=2, min_replicas=1)
        bal = self.balancer()
        c = bal.client()
        size = 6 << 20
        data = tb.blob("race", size)
        k = self.put(c, data)
        home = self.home(k)
        dest = self.stores[home[0]]
        # The copy on home[0] is lost (dropped without a tombstone): the
        # rebalance will copy it back, slowly.
        self.assertEqual(dest.client().request("DELETE", f"/objects/{k}?replica=1").status, 204)
        before = data_bytes(dest.dir)
        p = subprocess.Popen([CLI, "--json", "rebalance", "--config", self.config, "--max-mbps", "1",
                              "--concurrency", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The PUT streams into a data file of home[0]: the copy is in flight.
            wait_for(lambda: data_bytes(dest.dir) > before, 30, "the copy to start")
            self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        st = json.loads(out)
        self.assertEqual(st["copies_made"], 0, st)
        self.assertEqual(st["objects_vanished"], 1, st)
        self.assertEqual(st["copies_failed"], 0, st)
        self.assertEqual(self.holders(k), [])
        self.assertEqual(c.get(k).status, 404)

    def test_delete_lands_while_a_repair_copy_streams(self):
        """A repair copy (PUT ?replica=1, as read repair and quarantine repair
        send it) has sent half its body when a DELETE through the balancer
        answers 204: the rest arrives, and the copy is refused, not stored."""
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        c = bal.client()
        data = tb.blob("stream", 3 << 20)
        k = self.put(c, data)
        target_i = self.home(k)[0]
        target = self.stores[target_i]
        self.assertEqual(target.client().request("DELETE", f"/objects/{k}?replica=1").status, 204)
        before = data_bytes(target.dir)
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
        conn.putrequest("PUT", f"/objects/{k}?replica=1")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        half = len(data) // 2
        conn.send(data[:half])
        # Bytes reach the data file: the copy was accepted at its start.
        wait_for(lambda: data_bytes(target.dir) > before, 30, "the copy to be under way")
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        conn.send(data[half:])
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 410, body)
        self.assertIn(b"deleted", body)
        self.assertEqual(self.holders(k), [])
        self.assertEqual(c.get(k).status, 404)

    def test_tombstones_survive_restart_compaction_and_gc_until_a_client_put(self):
        self.cluster(n=3, replicas=2)
        bal = self.balancer()
        c = bal.client()
        data, other = tb.blob("tomb", 40000), tb.blob("tomb-other", 40000)
        k = self.put(c, data)
        self.put(c, other)
        self.assertEqual(c.request("DELETE", f"/objects/{k}").status, 204)
        # A DELETE of an absent key: 404, and tombstones all the same.
        never = tb.blob("never-stored", 3000)
        self.assertEqual(c.request("DELETE", f"/objects/{sha1(never)}").status, 404)
        for s in self.stores:
            s.stop()
            s.start()
        bal.wait_backends(3)
        r = c.request("POST", "/compact?wait=1")
        self.assertEqual(r.status, 200, r.body)
        gc = c.request("POST", "/gc/begin").json()
        c.request("POST", "/gc/mark", body=sha1(other) + "\n")
        r = c.request("POST", f"/gc/end?id={gc['id']}")
        self.assertEqual(r.status, 200, r.body)
        for i in range(3):
            self.assertEqual(self.replica_put(i, data), 410)
            self.assertEqual(self.replica_put(i, never), 410)
        # Only a client PUT brings it back, on its home; copies are welcome again.
        self.assertEqual(c.put(data).status, 201)
        self.assertEqual(c.get(k).body, data)
        home = self.home(k)
        self.assertEqual(sorted(self.holders(k)), sorted(home))
        lost = self.stores[home[0]]
        self.assertEqual(lost.client().request("DELETE", f"/objects/{k}?replica=1").status, 204)
        self.assertEqual(self.replica_put(home[0], data), 201)
        self.assertEqual(sorted(self.holders(k)), sorted(home))


if __name__ == "__main__":
    unittest.main()
