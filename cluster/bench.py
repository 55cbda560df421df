#!/usr/bin/env python3
"""Throughput of the cluster at 1, 2, ... REPLICAS replicas (`make cluster
CLUSTER_BENCH=1`): POST /orders and GET /orders/:id through HAProxy with wrk
(c=32, CLUSTER_BENCH_SECONDS each, default 10), the replicas not in use put
in HAProxy's MAINT state; and once straight to one replica, without HAProxy.
Drives wrk with make bench's own Lua script and helpers (bench/bench.py), so
both benches count alike. Run by cluster/run.sh, on the cluster it starts.
"""
import http.client
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402  (make bench's wrk driver)
import hactl  # noqa: E402
from tests import AUTH, PORT, REPLICAS, SOCK, USER, replica_port, say  # noqa: E402

SECONDS = int(os.environ.get("CLUSTER_BENCH_SECONDS", "10"))
CONNECTIONS = 32
bench.RUN = os.path.join(os.environ["CLUSTER_DIR"], "bench")


def use_replicas(k):
    """Only r1..rk in rotation; waits until HAProxy agrees."""
    for i in range(1, REPLICAS + 1):
        hactl.command(SOCK, f"set server app/r{i} state {'ready' if i <= k else 'maint'}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {n: s["status"] for n, s in hactl.servers(SOCK).items()}
        if all(states[f"r{i}"] == ("UP" if i <= k else "MAINT") for i in range(1, REPLICAS + 1)):
            return
        time.sleep(0.05)
    raise TimeoutError(f"HAProxy did not reach {k} replica(s) UP: {states}")


def seed(n=100):
    ids = []
    body = json.dumps({"userId": USER, "items": [{"productId": "sku-42", "quantity": 2}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=15)
    for _ in range(n):
        conn.request("POST", "/orders", body, dict(AUTH, **{"Content-Type": "application/json"}))
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 201:
            raise RuntimeError(f"seeding: POST /orders answered {resp.status}: {data[:200]!r}")
        ids.append(json.loads(data)["orderId"])
    return ids


def run(port, title, ids, runner):
    body = json.dumps({"userId": USER, "items": [{"productId": "sku-42", "quantity": 2}]}).encode()
    auth = f"Authorization: {AUTH['Authorization']}"
    rows = []
    for what, args in (
            ("POST /orders", dict(path="/orders", method="POST", body=body,
                                  headers=("Content-Type: application/json", auth), expect=201)),
            ("GET /orders/:id", dict(path=f"/orders/{ids[0]}", headers=(auth,),
                                     paths=[f"/orders/{i}" for i in ids], expect=200))):
        expect = args.pop("expect")
        runner.collect(*runner.wrk(port, connections=CONNECTIONS, seconds=2, tag="warm", **args))
        r = runner.collect(*runner.wrk(port, connections=CONNECTIONS, seconds=SECONDS, tag="run", **args))
        secs = r["duration_us"] / 1e6
        bad = {s: n for s, n in r["statuses"].items() if int(s) != expect}
        errors = sum(bad.values()) + sum(r["errors"].values())
        rows.append((title, what, r["requests"] / secs, r["latency_us"]["p50"] / 1000,
                     r["latency_us"]["p99"] / 1000, errors))
        say(f"  {title:28} {what:16} {rows[-1][2]:8,.0f} req/s  p50 {rows[-1][3]:6.2f} ms  "
            f"p99 {rows[-1][4]:7.2f} ms  errors {errors}")
    return rows


def main():
    bench.ensure_wrk()
    os.makedirs(bench.RUN, exist_ok=True)
    runner = bench.Bench()
    ids = seed()
    say(f"cluster bench: c={CONNECTIONS}, {SECONDS} s per run (+2 s warm-up), orders in PostgreSQL "
        f"(fsync on), {os.cpu_count()} CPUs shared by wrk, HAProxy, PostgreSQL and every replica")
    rows = run(replica_port(1), "1 replica, no HAProxy", ids, runner)
    for k in range(1, REPLICAS + 1):
        use_replicas(k)
        rows += run(PORT, f"{k} replica(s) via HAProxy", ids, runner)
    use_replicas(REPLICAS)
    out = os.path.join(ROOT, "bench", "results", "cluster.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "engine": subprocess.run(["spin", "--version"], capture_output=True, text=True).stdout.strip(),
                   "database": "postgres, fsync on",
                   "connections": CONNECTIONS, "seconds": SECONDS,
                   "rows": [dict(zip(("setup", "route", "rps", "p50_ms", "p99_ms", "errors"), r))
                            for r in rows]}, f, indent=2)
    say(f"cluster bench: results in {os.path.relpath(out, ROOT)}")
    return 1 if any(r[5] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
