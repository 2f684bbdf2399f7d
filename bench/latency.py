"""latency.py - open-loop GET latency at a fixed request rate.

Usage: latency.py URL RATE SECONDS [WORKERS]

Requests are scheduled every 1/RATE seconds whatever the server does, and
each one's latency is measured from its scheduled time (so a stall delays
every request behind it and shows in the percentiles, instead of quietly
lowering the rate). Prints one line: achieved rate, p50, p90, p99 in ms,
errors, and the slowest request (max) in ms.
"""
import http.client
import queue
import sys
import threading
import time
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    rate = float(sys.argv[2])
    seconds = float(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    jobs = queue.Queue()
    lat = []
    errors = [0]
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        while True:
            t = jobs.get()
            if t is None:
                return
            delay = t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("GET", url.path)
                r = conn.getresponse()
                while r.read(1 << 20):
                    pass
                ok = r.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                ok = False
            done = time.perf_counter()
            with lock:
                if ok:
                    lat.append(done - t)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for th in threads:
        th.start()
    start = time.perf_counter() + 0.2
    n = int(rate * seconds)
    for i in range(n):
        jobs.put(start + i / rate)
    for _ in threads:
        jobs.put(None)
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p):
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    print(f"rate {len(lat) / elapsed:.1f}/s  p50 {pct(0.50):.2f} ms  p90 {pct(0.90):.2f} ms  "
          f"p99 {pct(0.99):.2f} ms  errors {errors[0]}  max {pct(1.0):.2f} ms")


if __name__ == "__main__":
    main()
