"""Load test of `mm serve` /search (a script, not a test): N concurrent clients (persistent HTTP/1.1
connections) send text queries for D seconds; prints requests/s, p50/p90/p99 latency, errors, and
the server's RSS sampled through the run (flat = no leak).

    python3 tools/serve/load.py --port 1234 --pid $(pgrep -n mm) --clients 50 --seconds 60

Loopback only (127.0.0.1); the request loop is bounded by --seconds.
"""
import argparse
import http.client
import json
import random
import threading
import time

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart", "diamond", "hexagon"]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, help="the server's process id, for its RSS")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--path", default="/search")
    parser.add_argument("--index", help="the index to search (default: the server's first)")
    parser.add_argument("--embedding", type=int, metavar="DIM",
                        help="send random unit vectors of DIM instead of texts (search alone, no model call)")
    args = parser.parse_args()

    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.time() + args.seconds

    def client(seed):
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        while time.time() < deadline:
            query = {"k": args.k, **({"index": args.index} if args.index else {})}
            if args.embedding:
                query["embedding"] = [rng.gauss(0, 1) for _ in range(args.embedding)]  # the server normalises it
            else:
                query["text"] = f"a {rng.choice(COLOURS)} {rng.choice(SHAPES)}"
            body = json.dumps(query)
            started = time.perf_counter()
            try:
                connection.request("POST", args.path, body=body)
                response = connection.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status == 200 and json.loads(payload)["results"]:
                        latencies.append(elapsed)
                    else:
                        errors.append(response.status)
            except Exception as e:  # noqa: BLE001 — every failure is counted
                with lock:
                    errors.append(repr(e))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        connection.close()

    rss = []
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if args.pid:
            rss.append(rss_mb(args.pid))
        time.sleep(1)
    for t in threads:
        t.join()
    wall = time.time() - started
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else float("nan")

    report = {
        "clients": args.clients, "seconds": round(wall, 1), "requests": len(latencies), "errors": len(errors),
        "error_kinds": sorted(set(map(str, errors)))[:5], "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(50), 1), "p90_ms": round(pct(90), 1), "p99_ms": round(pct(99), 1),
    }
    if rss:
        third = max(1, len(rss) // 3)
        report.update({"rss_mb_first_third": round(sum(rss[:third]) / third), "rss_mb_last_third": round(sum(rss[-third:]) / third),
                       "rss_mb_max": round(max(rss)), "rss_mb_every_10s": [round(r) for r in rss[::10]]})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
