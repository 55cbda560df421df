#!/usr/bin/env python3
"""`CLUSTER_BENCH=1 make cluster`: order throughput through HAProxy with 1, 2,
... REPLICAS replicas in rotation, and straight to one `spin up` (no
HAProxy) for comparison; PostgreSQL with fsync on. Runs inside
cluster/run.sh, after cluster/tests.py, on the cluster it started.

Drives the load with wrk and the project bench's Lua script, through
bench/bench.py's own helpers (Bench.wrk / collect, the /proc CPU readers),
imported rather than copied. Before each measurement it waits until no
compile (rustc, cargo) is running: on 2 cores a build halves the numbers.

Environment: CLUSTER_BENCH_SECONDS (10), CLUSTER_BENCH_CONNECTIONS (32).
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import hactl  # noqa: E402

# bench/bench.py by path: this file is bench.py too, so `import bench` from
# here would import itself.
_spec = importlib.util.spec_from_file_location("project_bench", os.path.join(ROOT, "bench", "bench.py"))
project = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(project)

from clusterenv import CLUSTER_DIR, ENV, PORT, REPLICAS, SOCK  # noqa: E402
SECONDS = int(os.environ.get("CLUSTER_BENCH_SECONDS", "10"))
WARMUP = 2
CONNECTIONS = int(os.environ.get("CLUSTER_BENCH_CONNECTIONS", "32"))
USER = project.USER
# Bench.wrk writes its request files and wrk's JSON summary under RUN: ours,
# not bench/results/run.
project.RUN = os.path.join(CLUSTER_DIR, "bench")
os.makedirs(project.RUN, exist_ok=True)


def say(msg=""):
    print(msg, flush=True)


def pid_of(path):
    with open(path) as f:
        return int(f.read().split()[0])


def postgres_pid():
    """The postmaster, from the data dir tests/postgres.sh names in TEST_PG_CTL."""
    words = os.environ["TEST_PG_CTL"].split()
    return pid_of(os.path.join(words[words.index("-D") + 1], "postmaster.pid"))


def wait_until_quiet():
    """Waits while a compile runs (another engineer's cargo build shares these
    2 cores); gives up after 30 minutes and says the row is skewed."""
    t0 = time.monotonic()
    said = False
    while True:
        busy = [name for name in ("rustc", "cargo")
                if subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0]
        if not busy:
            time.sleep(1 if said else 0)  # let the last compile's linker finish
            return True
        if time.monotonic() - t0 > 1800:
            say(f"     !!! still compiling ({', '.join(busy)}) after 30 min: measuring anyway, numbers skewed")
            return False
        if not said:
            say(f"     waiting: a compile is running ({', '.join(busy)}) ...")
            said = True
        time.sleep(2)


def rotation(n):
    """r1..rn in HAProxy's rotation, the others in MAINT (left running, idle:
    no request, no health check)."""
    for i in range(1, REPLICAS + 1):
        if i <= n:
            hactl.ready(SOCK, f"app/r{i}", 15)
        else:
            hactl.set_state(SOCK, f"app/r{i}", "maint")


def measure(title, port, method, path, headers, body=None, paths=None, expect=(200,), replicas=()):
    bench = project.Bench()
    quiet = wait_until_quiet()
    tag = title.split()[0].lower()
    bench.collect(*bench.wrk(port, path, CONNECTIONS, WARMUP, method, body, headers, paths, tag))
    pids = {"spin": [pid_of(os.path.join(CLUSTER_DIR, f"r{i}", "pid")) for i in replicas],
            "postgres": [postgres_pid()], "haproxy": [pid_of(os.path.join(CLUSTER_DIR, "haproxy.pid"))]}

    def cpu():
        return {k: sum(project.cpu_seconds(p) for p in v) for k, v in pids.items()}

    cpu0, kids0, busy0 = cpu(), project.children_cpu(), project.machine_cpu()[0]
    t0 = time.monotonic()
    r = bench.collect(*bench.wrk(port, path, CONNECTIONS, SECONDS, method, body, headers, paths, tag))
    wall = time.monotonic() - t0
    cpu1 = cpu()
    use = {k: 100 * (cpu1[k] - cpu0[k]) / wall for k in pids}
    use["wrk"] = 100 * (project.children_cpu() - kids0) / wall
    busy = 100 * (project.machine_cpu()[0] - busy0) / wall
    use["other"] = max(0.0, busy - sum(use.values()))
    errors = sum(r["errors"].values()) + sum(k for s, k in r["statuses"].items() if int(s) not in expect)
    row = {"title": title, "rps": r["requests"] / (r["duration_us"] / 1e6),
           "p50_ms": r["latency_us"]["p50"] / 1000, "p99_ms": r["latency_us"]["p99"] / 1000,
           "errors": errors, "cpu": use, "busy": busy, "quiet": quiet}
    say(f"     {title}: {row['rps']:,.0f} req/s, p99 {row['p99_ms']:.1f} ms, {errors} errors; CPU % of a core: "
        + ", ".join(f"{k} {v:.0f}" for k, v in use.items()))
    return row


def main():
    project.ensure_wrk()
    token = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "token.py"), "--user", USER],
                           env=dict(os.environ, SPIN_VARIABLE_JWT_SECRET=ENV["JWT_SECRET"]),
                           check=True, capture_output=True, text=True).stdout.strip()
    auth = f"Authorization: Bearer {token}"
    valid = json.dumps({"userId": USER, "items": [{"productId": "sku-42", "quantity": 2}]}).encode()
    post = dict(method="POST", path="/orders", body=valid, expect=(201,),
                headers=("Content-Type: application/json", auth))
    ids = []
    for _ in range(100):
        status, _, body = project.request(PORT, "POST", "/orders", valid,
                                          {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        if status != 201:
            raise SystemExit(f"cluster bench: seeding POST /orders answered {status}: {body[:200]!r}")
        ids.append(json.loads(body)["orderId"])
    paths = [f"/orders/{i}" for i in ids]
    get = dict(method="GET", path=paths[0], paths=paths, expect=(200,), headers=(auth,))
    say(f"cluster bench: c={CONNECTIONS}, {SECONDS} s per row after {WARMUP} s of warm-up, wrk, "
        f"PostgreSQL fsync on, {os.cpu_count()} CPUs")
    rows = []
    for n in range(1, REPLICAS + 1):
        rotation(n)
        active = range(1, n + 1)
        rows.append(measure(f"POST /orders, {n} replica(s) behind HAProxy", PORT, replicas=active, **post))
        rows.append(measure(f"GET /orders/:id, {n} replica(s) behind HAProxy", PORT, replicas=active, **get))
    rotation(REPLICAS)
    r1 = int(open(os.path.join(CLUSTER_DIR, "r1", "port")).read())
    rows.append(measure("POST /orders, straight to one spin (no HAProxy)", r1, replicas=[1], **post))
    rows.append(measure("GET /orders/:id, straight to one spin (no HAProxy)", r1, replicas=[1], **get))

    head = ["scenario", "req/s", "p50 ms", "p99 ms", "errors", "spin CPU", "postgres", "haproxy", "wrk", "machine"]
    lines = [[r["title"] + ("" if r["quiet"] else " (compile running)"), f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}",
              f"{r['p99_ms']:.2f}", str(r["errors"])] + [f"{r['cpu'][k]:.0f}%" for k in ("spin", "postgres", "haproxy", "wrk")]
             + [f"{r['busy']:.0f}%"] for r in rows]
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    say(f"\n{subprocess.run(['spin', '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"HAProxy round robin, PostgreSQL (fsync on), wrk c={CONNECTIONS}, {SECONDS} s; CPU in % of one core "
        f"(machine: {os.cpu_count()} cores = {100 * os.cpu_count()}%)")
    for cells in [head, ["-" * w for w in widths]] + lines:
        say("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    bad = [r["title"] for r in rows if r["errors"]]
    if bad:
        raise SystemExit(f"cluster bench: errors in {bad}: their numbers are not meaningful")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
