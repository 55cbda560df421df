#!/usr/bin/env python3
"""`make bench`: every route of the app under load, on loopback, with wrk.

Starts the app (the project's runner, or `spin up` with BENCH_ENGINE=spin),
seeds orders, drives each scenario for a bounded time and prints a table
(requests/s, p50, p99, errors, CPU of the runtime and of wrk) beside the
Node.js service's figures, then writes bench/results/latest.json
(latest-postgres.json with BENCH_DATABASE_URL). A scenario that sees a
status code it does not expect (or socket errors) makes the run fail
loudly: its numbers would be nonsense. main() lists the steps in order;
each step's docstring says what it measures and why.

Environment (all optional):
  SMOKE=1              about a second per scenario (CI), no warm-up
  BENCH_ENGINE=spin    serve with `spin up` instead of target/release/runner
  BENCH_SECONDS=10     seconds per scenario
  BENCH_CONNECTIONS=32 connections of the load scenarios
  BENCH_RESIZE_CONNECTIONS=8  connections of the background resize load
                       in the isolation scenario
  BENCH_DATABASE_URL   serve the orders from this PostgreSQL database (emptied
                       first; the app migrates it) instead of SQLite;
                       `make bench-postgres` starts a throwaway server for it
  BENCH_NODE_DATABASE_URL  a PostgreSQL server for the Node.js service (it gets
                       a database of its own there, `node_baseline`); default:
                       BENCH_DATABASE_URL's server. `make bench` and
                       `make bench-postgres` start one when the service is there
  UP_FLAGS             `spin up` instance settings, as `make up` passes them
                       (the Makefile sets it)
  BENCH_NODE_DIR       the Node.js service (default ../shared/node-baseline);
                       when it and `node` are present it runs the same
                       scenarios, with the same wrk, right after the app, and
                       the table compares the two from this run

Standard library only; `make bench` builds what it needs first.
"""
import atexit
import base64
import http.client
import http.server
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
import uuid
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
RESULTS = os.path.join(BENCH, "results")
RUN = os.path.join(RESULTS, "run")
LUA = os.path.join(BENCH, "wrk.lua")
RUNNER = os.path.join(ROOT, "target", "release", "runner")
PHOTO_TOOL = os.path.join(ROOT, "target", "release", "imaging-bench")

SMOKE = os.environ.get("SMOKE", "") not in ("", "0")
ENGINE = os.environ.get("BENCH_ENGINE", "runner")
SECONDS = 1 if SMOKE else int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = 0 if SMOKE else 2
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
RESIZE_CONNECTIONS = int(os.environ.get("BENCH_RESIZE_CONNECTIONS", "8"))
INSTANTIATE_N = 100 if SMOKE else 2000
SEED_ORDERS = 10 if SMOKE else 100
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "")
BACKEND = "postgres" if DATABASE_URL else "sqlite"
USER = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e"
TICK = os.sysconf("SC_CLK_TCK")
# The instance settings `make up` serves with (the Makefile's UP_FLAGS), so
# that the bench measures what users run; both engines take them.
UP_FLAGS = os.environ.get("UP_FLAGS", "").split()

# The Node.js service this app replaces (../shared/node-baseline: Fastify,
# pg, sharp; always on PostgreSQL). When it is present the bench runs it in
# the same run; otherwise these figures stand in, dated: the developers'
# guide, 2026-12-04, wrk c=32 (resizes c=4), 2-core machine of this kind.
NODE_DIR = os.environ.get("BENCH_NODE_DIR", os.path.join(os.path.dirname(ROOT), "shared", "node-baseline"))
NODE_DATABASE_URL = os.environ.get("BENCH_NODE_DATABASE_URL", "") or DATABASE_URL
NODE_FIGURES_DATE = "2026-12-04"
NODE = {
    "post-orders-valid": "4.5-5.4k req/s, p99 18-25 ms",
    "post-orders-invalid": "6.7-7.9k req/s",
    "get-order": "6.3-7.2k req/s",
    "resize-json": "76-81 img/s at c=4",
    "resize-binary": "76-81 img/s at c=4",
    "resize-binary-c4": "76-81 img/s",
    "isolation": "GET p99 x4.3-5.2 while resizing",
}
# The app's scenario each Node.js scenario is compared with: the service has
# only the JSON resize route, so its c=4 JSON resize stands beside the app's
# c=4 binary one.
NODE_PEER = {"resize-binary-c4": "resize-json-c4"}


def say(msg):
    print(msg, flush=True)


def die(msg, code=2):
    say(f"\n!!! bench: {msg}")
    sys.exit(code)


# --- tools ---------------------------------------------------------------


def ensure_wrk():
    """wrk from Debian, installed once (the bench must work on a fresh machine)."""
    if shutil.which("wrk"):
        return
    say("bench: installing wrk (Debian package) ...")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(sudo + cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        die("wrk is not on PATH after apt-get install wrk")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes: CPU and memory from /proc ---------------------------------


def proc_tree(pid):
    """pid and all its descendants (spin up runs its trigger as a child)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def status_mib(pid, field):
    """A kB field of /proc/PID/status summed over the process tree, in MiB."""
    kib = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
            kib += int(m.group(1)) if m else 0
        except OSError:
            pass
    return kib / 1024


def peak_rss_mib(pid):
    """VmHWM summed over the process tree, in MiB."""
    return status_mib(pid, "VmHWM")


def rss_mib(pid):
    """VmRSS summed over the process tree, in MiB (now, not the peak)."""
    return status_mib(pid, "VmRSS")


def uploads(port, pid, headers, clients=32, size=60 << 20):
    """`clients` connections each start a `size`-byte POST /orders at once,
    streaming it and reading the answer as it comes (a route refuses past
    64 KiB). Returns the statuses, the bytes sent in all, and how much the
    server's RSS grew above where it started, sampled every 10 ms."""
    import threading
    base = rss_mib(pid)
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.01)

    statuses, sent = [], [0]
    lock = threading.Lock()

    def client():
        chunk = bytes(64 << 10)
        total = 0
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            head = (f"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
                    + "".join(f"{h}\r\n" for h in headers) + "\r\n")
            s.sendall(head.encode())
            s.setblocking(False)
            answer = b""
            while total < size and b"\r\n" not in answer:
                try:
                    answer += s.recv(4096)
                    if not answer:
                        break
                    continue
                except BlockingIOError:
                    pass
                try:
                    total += s.send(chunk)
                except (BlockingIOError, InterruptedError):
                    time.sleep(0.001)
                except OSError:
                    break
            s.setblocking(True)
            try:
                answer += s.recv(4096)
            except OSError:
                pass
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
        with lock:
            statuses.append(status)
            sent[0] += total

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.2)
    done.set()
    sampler.join()
    counts = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    return {"clients": clients, "declared_mib_each": size >> 20, "statuses": counts,
            "sent_mib": sent[0] / (1 << 20), "rss_before_mib": base, "rss_growth_mib": peak[0] - base}


def machine_cpu():
    """(busy, total) seconds of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user .. steal (guest is inside user)
    idle = v[3] + v[4]
    return (sum(v) - idle) / TICK, sum(v) / TICK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- the app under test ------------------------------------------------------


SERVERS = []  # stopped at exit, whatever happens


class Server:
    """One runtime process serving a manifest on a loopback port."""

    def __init__(self, name, manifest, state_dir, env, flags=()):
        self.name, self.manifest, self.state_dir, self.env = name, manifest, state_dir, env
        self.flags = list(flags)
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = None
        SERVERS.append(self)

    def command(self):
        # No migration flags: the app migrates its database on first use.
        engine = ["spin"] if ENGINE == "spin" else [RUNNER]
        return engine + ["up", "--from", self.manifest, "--listen", self.base,
                         "--state-dir", self.state_dir, "--quiet"] + UP_FLAGS + self.flags

    def start(self, ready_path, label):
        """Starts the process; returns seconds from spawn to the first 200."""
        self.log_path = os.path.join(RUN, f"{self.name}-{label}.log")
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = t0 + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"{self.name} exited with {self.proc.returncode} before serving; "
                    f"see {os.path.relpath(self.log_path, ROOT)}:\n{tail(self.log_path)}")
            try:
                status, _, _ = request(self.port, "GET", ready_path, timeout=30)
                if status == 200:
                    return time.monotonic() - t0
            except (OSError, http.client.HTTPException):
                time.sleep(0.005)
        die(f"{self.name} did not answer 200 on {ready_path} within 600 s")

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def peak_rss_mib(self):
        return peak_rss_mib(self.proc.pid)

    def settle(self, limit=60.0):
        """Waits until the server is idle: under 5% of a core over 200 ms.
        When a wrk run ends, the server still finishes the requests in flight
        (32 resizes take seconds); the next scenario must not start behind
        them. Returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            before = self.cpu()
            time.sleep(0.2)
            if self.cpu() - before <= 1.5 / TICK:  # at most one clock tick
                return time.monotonic() - t0
        say(f"     note: {ENGINE} was still busy {limit:.0f} s after the previous scenario")
        return time.monotonic() - t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class NodeServer(Server):
    """The Node.js service, from a writable copy of NODE_DIR (npm ci there)."""

    def __init__(self, directory, env):
        super().__init__("node", None, None, env)
        self.directory = directory

    def command(self):
        return ["node", os.path.join(self.directory, "server.js")]


def tail(path, n=20):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def request(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# --- scenarios -------------------------------------------------------------


class Bench:
    def __init__(self, label=None):
        self.rows = []  # scenario results, in order
        self.failures = []
        self.label = label  # the server's name in logs and files (default: ENGINE)

    def wrk(self, port, path, connections, seconds, method="GET", body=None, headers=(),
            paths=None, tag="x"):
        """Starts wrk; returns (process, output file)."""
        files = {}
        env = dict(os.environ, BENCH_METHOD=method)
        if body is not None:
            files["BENCH_BODY"] = (f"{tag}.body", body)
        if headers:
            files["BENCH_HEADERS"] = (f"{tag}.headers", "\n".join(headers).encode())
        if paths:
            files["BENCH_PATHS"] = (f"{tag}.paths", "\n".join(paths).encode())
        for var, (name, data) in files.items():
            p = os.path.join(RUN, name)
            with open(p, "wb") as f:
                f.write(data)
            env[var] = p
        out = os.path.join(RUN, f"{tag}.wrk.json")
        if os.path.exists(out):
            os.remove(out)
        env["BENCH_OUT"] = out
        cmd = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
               "--timeout", "10s", "-s", LUA, f"http://127.0.0.1:{port}{path}"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return proc, out

    @staticmethod
    def collect(proc, out):
        text = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0 or not os.path.exists(out):
            die(f"wrk failed ({proc.returncode}):\n{text}")
        with open(out) as f:
            return json.load(f)

    def scenario(self, key, title, server, path, expect, connections=None, method="GET",
                 body=None, headers=(), paths=None, node=None, during=None):
        """Runs one bounded scenario and records it. `during`: a callable that
        starts background load and returns a function that stops it."""
        c = connections or CONNECTIONS
        n = len(self.rows) + 1
        say(f"[{n:2}] {title}: c={c}, {SECONDS} s{' (+ warm-up)' if WARMUP else ''} ...")
        server.settle()
        if WARMUP:
            self.collect(*self.wrk(server.port, path, c, WARMUP, method, body, headers, paths,
                                   f"{self.label or ''}-{key}-warmup"))
            server.settle()
        background = during() if during else None
        cpu0, kids0, (busy0, _) = server.cpu(), children_cpu(), machine_cpu()
        t0 = time.monotonic()
        tag = f"{self.label}-{key}" if self.label else key
        r = self.collect(*self.wrk(server.port, path, c, SECONDS, method, body, headers, paths, tag))
        wall = time.monotonic() - t0
        runner_cpu, wrk_cpu = server.cpu() - cpu0, children_cpu() - kids0
        busy = machine_cpu()[0] - busy0
        extra = background() if background else None
        if extra:
            wrk_cpu = children_cpu() - kids0  # both wrk processes
        seconds = r["duration_us"] / 1e6
        unexpected = {s: k for s, k in r["statuses"].items() if int(s) not in expect}
        socket_errors = sum(r["errors"].values())
        row = {
            "key": key, "title": title, "connections": c, "method": method, "path": path,
            "seconds": round(seconds, 2), "requests": r["requests"],
            "rps": r["requests"] / seconds if seconds else 0.0,
            "p50_ms": r["latency_us"]["p50"] / 1000, "p90_ms": r["latency_us"]["p90"] / 1000,
            "p99_ms": r["latency_us"]["p99"] / 1000, "max_ms": r["latency_us"]["max"] / 1000,
            "statuses": r["statuses"], "expected": sorted(expect),
            "unexpected_statuses": unexpected, "socket_errors": r["errors"],
            "errors": sum(unexpected.values()) + socket_errors,
            "cpu_runtime_pct": 100 * runner_cpu / wall, "cpu_wrk_pct": 100 * wrk_cpu / wall,
            "cpu_other_pct": max(0.0, 100 * (busy - runner_cpu - wrk_cpu) / wall),
            "node": node if node is not None else NODE.get(key, ""),
        }
        if extra:
            row["background"] = extra
        # Memory: what the server holds right after the scenario, and its
        # peak so far; the scenario where the peak jumps is what holds it.
        row["server_rss_mib"], row["server_peak_rss_mib"] = rss_mib(server.proc.pid), server.peak_rss_mib()
        self.rows.append(row)
        problems = []
        if unexpected:
            problems.append(f"unexpected statuses {unexpected} (expected only {sorted(expect)})")
        if socket_errors:
            problems.append(f"socket errors {r['errors']}")
        if r["requests"] == 0:
            problems.append("no request completed")
        if extra and extra.get("problems"):
            problems += extra["problems"]
        line = (f"     {row['rps']:,.0f} req/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                f"{row['errors']} errors; CPU: {self.label or ENGINE} {row['cpu_runtime_pct']:.0f}%, "
                f"wrk {row['cpu_wrk_pct']:.0f}%, other {row['cpu_other_pct']:.0f}%; RSS "
                f"{row['server_rss_mib']:.0f} MiB (peak {row['server_peak_rss_mib']:.0f})")
        say(line)
        if row["cpu_other_pct"] > 25:
            say(f"     note: other processes used {row['cpu_other_pct']:.0f}% of a core meanwhile; "
                "this scenario's numbers are skewed")
        if problems:
            row["problems"] = problems
            self.failures.append(f"{title}: " + "; ".join(problems))
            say("     !!! FAILED: " + "; ".join(problems))
        return row

    def skip(self, key, title, why):
        n = len(self.rows) + 1
        say(f"[{n:2}] {title}: SKIPPED, {why}")
        self.rows.append({"key": key, "title": title, "skipped": why, "node": NODE.get(key, "")})


def background_resizes(bench, server, path, body, content_type):
    """For a scenario's `during`: RESIZE_CONNECTIONS clients resizing for the
    whole scenario (started a second early); its stop function returns their
    figures."""
    return background_posts(bench, server, path, body, content_type, RESIZE_CONNECTIONS, "200", "resize")


def background_posts(bench, server, path, body, content_type, connections, expect, tag):
    """For a scenario's `during`: `connections` clients POSTing `body` for
    the whole scenario (started a second early), each answer's status in
    `expect` (one status, or a set); its stop function returns their figures
    and the server's RSS then."""
    allowed = {expect} if isinstance(expect, str) else set(expect)
    def start():
        proc, out = bench.wrk(server.port, path, connections, SECONDS + 2, method="POST", body=body,
                              headers=(f"Content-Type: {content_type}",), tag=f"{bench.label or ''}-{tag}")
        time.sleep(1)  # let the background load ramp up first

        def stop():
            rss = rss_mib(server.proc.pid)
            r = bench.collect(proc, out)
            bad = {s: k for s, k in r["statuses"].items() if s not in allowed}
            return {"title": f"POST {path}, c={connections}",
                    "rps": r["requests"] / (r["duration_us"] / 1e6), "statuses": r["statuses"],
                    "p99_ms": r["latency_us"]["p99"] / 1000, "server_rss_mib": rss,
                    "problems": ([f"background {tag}: unexpected statuses {bad}"] if bad else [])
                    + ([f"background {tag}: socket errors {r['errors']}"] if sum(r["errors"].values()) else [])}
        return stop
    return start


def get_beside(bench, server, key, title, get, get_paths, auth, during):
    """The scenario `key`: GET /orders/:id while `during`'s clients run; its
    p99 beside the unloaded one (`get`), the background's rate and statuses,
    and the server's RSS then."""
    loaded = bench.scenario(key, title, server, get_paths[0], {200}, headers=(auth,), paths=get_paths,
                            during=during)
    background = loaded["background"]
    return {"get_loaded_p99_ms": loaded["p99_ms"], "get_unloaded_p99_ms": get["p99_ms"],
            "background_rps": background["rps"], "statuses": background["statuses"],
            "server_rss_mib": background["server_rss_mib"]}


def bilevel_png(width, height):
    """A black bilevel PNG: a couple of KB that decode to width x height
    8-bit pixels (the hostile image of issue 23)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + (width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height, 9))
            + chunk(b"IEND", b""))


def webp_size(data):
    """(width, height) of a WebP file, or None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


def instantiation(manifest, state_dir, env, components):
    """Per component: `runner bench-instantiate` on its cheapest route, with a
    fresh instance per request and with one reused instance; the difference is
    what instantiating costs each request."""
    out = {}
    for component, path in components:
        res = {"path": path}
        for mode, flags in (("fresh", ["--max-instance-reuse-count", "1"]), ("reused", ["--max-instance-reuse-count", "128"])):
            cmd = [RUNNER, "bench-instantiate", "--from", manifest, "--state-dir", state_dir,
                   "--component", component, "--path", path, "-n", str(INSTANTIATE_N)] + flags
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            m = re.search(r"mean=(\S+) p50=(\S+) p90=\S+ p99=(\S+)", p.stdout)
            status = re.search(r"status of \S+: (\d+)", p.stdout)
            if p.returncode != 0 or not m:
                lines = (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()
                res[mode] = {"error": lines[0][:300]}
                continue
            res[mode] = {"mean_us": duration_us(m.group(1)), "p50_us": duration_us(m.group(2)),
                         "p99_us": duration_us(m.group(3)), "status": int(status.group(1)) if status else None}
        if "p50_us" in res.get("fresh", {}) and "p50_us" in res.get("reused", {}):
            res["instantiate_us"] = res["fresh"]["p50_us"] - res["reused"]["p50_us"]
        out[component] = res
        say(f"     {component:14} {path:24} " + (
            f"fresh p50 {res['fresh']['p50_us']:7.1f} us, reused p50 {res['reused']['p50_us']:7.1f} us"
            if "instantiate_us" in res else "not measured: " + "; ".join(
                f"{m}: {res[m]['error']}" for m in ("fresh", "reused") if "error" in res.get(m, {}))))
    return out


def duration_us(text):
    """Rust's Debug of a Duration (`812.3µs`, `1.2ms`, `3s`, `40ns`) in µs."""
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", text)
    scale = {"ns": 1e-3, "µs": 1, "us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


def cheapest_path(route):
    """A concrete path for a route template: ids as a UUID, no wildcard."""
    route = route.removesuffix("/...")
    return re.sub(r":[A-Za-z_][A-Za-z0-9_]*", "00000000-0000-4000-8000-000000000000", route) or "/"


# --- the run -------------------------------------------------------------------


# Where the binary resize scenarios send the photo: a 256x256 WebP back.
RESIZE_RAW_PATH = "/images/resize/raw?width=256&height=256"


class Traffic:
    """What the app's scenarios send, made while seeding: the bearer header,
    the valid and invalid order bodies, the seeded orders' paths and, when
    the app has the resize component, the test photo raw and as JSON."""

    def __init__(self, auth, valid, invalid, get_paths, has_resize, resize_bin=None, resize_json=None):
        self.auth, self.valid, self.invalid, self.get_paths = auth, valid, invalid, get_paths
        self.has_resize, self.resize_bin, self.resize_json = has_resize, resize_bin, resize_json


def prepare_run():
    """Checks BENCH_ENGINE, installs wrk, empties results/run/: fail before any work, keep only this run's logs."""
    if ENGINE not in ("runner", "spin"):
        die(f"BENCH_ENGINE must be runner or spin, not {ENGINE!r}")
    if ENGINE == "spin" and not shutil.which("spin"):
        die("BENCH_ENGINE=spin but `spin` is not on PATH (install Spin, or leave BENCH_ENGINE unset "
            "to use the project's runner)")
    ensure_wrk()
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)


def locate_components():
    """(app manifest, component sizes); dies naming the build step when one is missing: measure what is built."""
    with open(os.path.join(ROOT, "spin.toml"), "rb") as f:
        app = tomllib.load(f)
    with open(os.path.join(BENCH, "spin.toml"), "rb") as f:
        noop_app = tomllib.load(f)
    wasm = {}
    for base, manifest in ((ROOT, app), (BENCH, noop_app)):
        for cid, comp in manifest["component"].items():
            path = os.path.normpath(os.path.join(base, comp["source"]))
            if not os.path.exists(path):
                die(f"{os.path.relpath(path, ROOT)} is missing: run `make components` "
                    "(and the bench's no-op component) first, or use `make bench`")
            wasm[cid] = {"path": os.path.relpath(path, ROOT), "bytes": os.path.getsize(path)}
    if ENGINE == "runner" and not os.path.exists(RUNNER):
        die("target/release/runner is missing: `make runner` (or use `make bench`)")
    return app, wasm


def app_env():
    """The servers' environment: a fresh JWT secret, and BENCH_DATABASE_URL's database emptied of earlier runs.
    No OTEL_* variable: tracing is off but in step 6b, whatever the caller's shell exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["SPIN_VARIABLE_JWT_SECRET"] = secrets.token_urlsafe(48)
    if DATABASE_URL:
        env.update(SPIN_VARIABLE_DATABASE_URL=DATABASE_URL, SPIN_VARIABLE_DB_HOST=db_host(DATABASE_URL))
        reset_postgres(DATABASE_URL)
    return env


def announce():
    """Prints the run's settings before any measurement, so the log says what its numbers are of."""
    say(f"bench: engine={ENGINE}, orders in {BACKEND}, {SECONDS} s per scenario, c={CONNECTIONS}, "
        f"{os.cpu_count()} CPUs{', SMOKE' if SMOKE else ''}, up flags: {' '.join(UP_FLAGS) or 'none'}; "
        "logs in bench/results/run/")


def runtime_ceiling(bench, env):
    """Step 1: the runtime's own ceiling (health route, no-op component), the yardstick of the app's rows."""
    noop = Server("noop", os.path.join(BENCH, "spin.toml"), os.path.join(RUN, "state-noop"), env)
    noop.start("/noop", "start")
    bench.scenario("runtime", "GET /.well-known/spin/health (runtime, no component)", noop,
                   "/.well-known/spin/health", {200})
    base = bench.scenario("noop", "GET /noop (no-op component)", noop, "/noop", {200})
    noop_c1 = bench.scenario("noop-c1", "GET /noop, one connection", noop, "/noop", {200}, connections=1)
    noop_rss = noop.peak_rss_mib()
    noop.stop()
    return base, noop_c1, noop_rss


def start_app(env):
    """Step 2: the app's first start on an empty compiled-component cache, then a restart: both cold starts."""
    state = os.path.join(RUN, "state-app")
    # Both engines keep compiled components in wasmtime's cache, under
    # $XDG_CACHE_HOME/wasmtime: an empty one makes the first start a cold one.
    env = dict(env, XDG_CACHE_HOME=os.path.join(RUN, "xdg-cache"))
    server = Server("app", os.path.join(ROOT, "spin.toml"), state, env)
    say("bench: starting the app (first start compiles every component) ...")
    cold_compile = server.start("/healthz", "first-start")
    compile_rss = server.peak_rss_mib()
    server.stop()
    cold = server.start("/healthz", "start")
    say(f"     first 200 after {cold_compile:.2f} s (empty cache), {cold:.3f} s (restart)")
    return server, cold_compile, cold, compile_rss


def seed(server, has_resize):
    """Step 3: a token, SEED_ORDERS orders and each route checked to answer as the scenarios expect."""
    # The token is signed with the app's secret, from the server's environment.
    token = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "token.py"), "--user", USER,
                            "--ttl", "7200"], env=server.env, check=True, capture_output=True,
                           text=True).stdout.strip()
    auth = f"Authorization: Bearer {token}"
    valid = json.dumps({"userId": USER, "items": [{"productId": "sku-42", "quantity": 2}]}).encode()
    invalid = json.dumps({"userId": "not-a-uuid", "items": [{"productId": "", "quantity": 0}],
                          "coupon": "x"}).encode()
    json_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    ids = []
    for _ in range(SEED_ORDERS):
        status, _, body = request(server.port, "POST", "/orders", valid, json_headers)
        if status != 201:
            die(f"seeding: POST /orders answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["orderId"])
    status, _, body = request(server.port, "GET", f"/orders/{ids[0]}", headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        die(f"seeding: GET /orders/{ids[0]} answered {status}: {body[:300]!r}")
    status, _, body = request(server.port, "POST", "/orders", invalid, json_headers)
    if status != 400:
        die(f"the invalid order answered {status}, not 400: {body[:300]!r}")
    say(f"     seeded {len(ids)} orders")
    resize_bin, resize_json = check_resize(server) if has_resize else (None, None)
    return Traffic(auth, valid, invalid, [f"/orders/{i}" for i in ids], has_resize, resize_bin, resize_json)


def check_resize(server):
    """Writes the 1 MP test photo and checks both resize routes make it the 256x256 WebP the scenarios expect."""
    if not os.path.exists(PHOTO_TOOL):
        die("target/release/imaging-bench is missing (it writes the 1-megapixel test photo): "
            "cargo build --release -p imaging-bench, or use `make bench`")
    photo = os.path.join(RUN, "photo.jpg")
    subprocess.run([PHOTO_TOOL, "input", photo], check=True)
    with open(photo, "rb") as f:
        resize_bin = f.read()
    resize_json = json.dumps({"imageData": base64.b64encode(resize_bin).decode(),
                              "width": 256, "height": 256}).encode()
    status, headers, body = request(server.port, "POST", "/images/resize", resize_json,
                                    {"Content-Type": "application/json"}, timeout=60)
    size = webp_size(base64.b64decode(json.loads(body)["image"])) if status == 200 else None
    if size != (256, 256):
        die(f"POST /images/resize (JSON) answered {status}, image {size}: {body[:300]!r}")
    status, headers, body = request(server.port, "POST", RESIZE_RAW_PATH,
                                    resize_bin, {"Content-Type": "image/jpeg"}, timeout=60)
    if status != 200 or webp_size(body) != (256, 256):
        die(f"POST /images/resize (binary) answered {status}, image {webp_size(body)}: {body[:300]!r}")
    say(f"     resize checked: {len(resize_bin):,} byte JPEG -> 256x256 WebP of {len(body):,} bytes")
    return resize_bin, resize_json


def route_scenarios(bench, server, traffic):
    """Step 4: each route under load (resizes skipped without their component): the table's main rows."""
    auth = traffic.auth
    bench.scenario("healthz", "GET /healthz", server, "/healthz", {200})
    healthz_c1 = bench.scenario("healthz-c1", "GET /healthz, one connection", server, "/healthz", {200},
                                connections=1)
    bench.scenario("post-orders-valid", "POST /orders (valid)", server, "/orders", {201}, method="POST",
                   body=traffic.valid, headers=("Content-Type: application/json", auth))
    bench.scenario("post-orders-invalid", "POST /orders (invalid, all 400)", server, "/orders", {400},
                   method="POST", body=traffic.invalid, headers=("Content-Type: application/json", auth))
    get = bench.scenario("get-order", "GET /orders/:id", server, traffic.get_paths[0], {200}, headers=(auth,),
                         paths=traffic.get_paths)
    if traffic.has_resize:
        resize_args = dict(method="POST", body=traffic.resize_bin, headers=("Content-Type: image/jpeg",))
        bench.scenario("resize-json", "POST /images/resize (JSON, 1 MP -> 256x256 WebP)", server,
                       "/images/resize", {200}, method="POST", body=traffic.resize_json,
                       headers=("Content-Type: application/json",))
        bench.scenario("resize-binary", "POST /images/resize (binary, 1 MP -> 256x256 WebP)", server,
                       RESIZE_RAW_PATH, {200}, **resize_args)
        bench.scenario("resize-binary-c4", "POST /images/resize (binary), 4 clients", server,
                       RESIZE_RAW_PATH, {200}, connections=4, **resize_args)
    else:
        for key, form in (("resize-json", "JSON"), ("resize-binary", "binary"),
                          ("resize-binary-c4", "binary, 4 clients")):
            bench.skip(key, f"POST /images/resize ({form})", "not built: no images-resize component in spin.toml")
    return healthz_c1, get


def isolation_scenario(bench, server, traffic, get):
    """Step 5: the same GET while resizes saturate the CPU: does one route's load slow another?"""
    if not traffic.has_resize:
        bench.skip("isolation", "GET /orders/:id while resizing", "not built: no images-resize component")
        return None
    get_paths = traffic.get_paths
    loaded = bench.scenario("isolation", f"GET /orders/:id while resizing (c={RESIZE_CONNECTIONS} resizes)",
                            server, get_paths[0], {200}, headers=(traffic.auth,), paths=get_paths,
                            during=background_resizes(bench, server, RESIZE_RAW_PATH, traffic.resize_bin,
                                                      "image/jpeg"))
    isolation = {
        "get_unloaded_p99_ms": get["p99_ms"], "get_loaded_p99_ms": loaded["p99_ms"],
        "p99_ratio": loaded["p99_ms"] / get["p99_ms"] if get["p99_ms"] else None,
        "p50_ratio": loaded["p50_ms"] / get["p50_ms"] if get["p50_ms"] else None,
        "get_rps_unloaded": get["rps"], "get_rps_loaded": loaded["rps"],
        "resize_rps_meanwhile": loaded["background"]["rps"],
    }
    say(f"     GET p99 x{isolation['p99_ratio']:.1f} while resizing "
        f"({loaded['background']['rps']:.0f} img/s meanwhile)")
    return isolation


def hostile_bodies_scenario(bench, server, traffic, get):
    """Step 5b: the same GET while bodies of 5,000 unknown properties arrive: refusing must stay cheap."""
    # The 14 MiB JSON route (no authentication): every answer is a short
    # 400 (the error list is capped); the same GET must stay cheap.
    if not traffic.has_resize:
        bench.skip("hostile", "GET /orders/:id while hostile bodies arrive", "not built: no images-resize component")
        return None
    members = ",".join(f'"p{i}":0' for i in range(5000))
    hostile = get_beside(bench, server, "hostile",
                         "GET /orders/:id while hostile bodies arrive (c=4, 5,000 errors each)",
                         get, traffic.get_paths, traffic.auth,
                         background_posts(bench, server, "/images/resize", f"{{{members}}}".encode(),
                                          "application/json", 4, "400", "hostile"))
    say(f"     GET p99 {get['p99_ms']:.1f} -> {hostile['get_loaded_p99_ms']:.1f} ms while "
        f"{hostile['background_rps']:.0f} hostile bodies/s were refused; server RSS "
        f"{hostile['server_rss_mib']:.0f} MiB")
    return hostile


def hostile_images_scenario(bench, server, traffic, get):
    """Step 5c: the same GET while 2 KB PNGs of 16 MP are resized: the memory budget must bound them."""
    # RESIZE_CONNECTIONS clients each send a 2 KB bilevel 4000x4000 PNG to be
    # resized to 4096x4096, about 150 MiB of pixels each: the shared budget
    # (256 MiB of grown instances) admits one at a time and answers the rest
    # 503 with Retry-After; decode and resize give way, so the same GET
    # stays cheap.
    if not traffic.has_resize:
        bench.skip("hostile-images", "GET /orders/:id while hostile images are resized",
                   "not built: no images-resize component")
        return None
    bomb = bilevel_png(4000, 4000)
    hostile_images = get_beside(bench, server, "hostile-images",
                                f"GET /orders/:id while {len(bomb):,} B 16 MP PNGs are resized "
                                f"to 4096x4096 (c={RESIZE_CONNECTIONS})", get, traffic.get_paths, traffic.auth,
                                background_posts(bench, server, "/images/resize/raw?width=4096&height=4096",
                                                 bomb, "image/png", RESIZE_CONNECTIONS, {"200", "503"},
                                                 "hostile-images"))
    say(f"     GET p99 {get['p99_ms']:.1f} -> {hostile_images['get_loaded_p99_ms']:.1f} ms while hostile PNGs "
        f"were resized ({hostile_images['statuses']}); server RSS {hostile_images['server_rss_mib']:.0f} MiB")
    return hostile_images


def upload_scenario(bench, server, auth):
    """Step 6: 60 MiB bodies to a route that takes 64 KiB: the host must not hold what it refuses (413)."""
    say("bench: 32 clients each starting a 60 MiB POST /orders ...")
    upload = uploads(server.port, server.proc.pid, ["Content-Type: application/json", auth])
    say(f"     statuses {upload['statuses']}, {upload['sent_mib']:.0f} MiB sent in all, "
        f"RSS +{upload['rss_growth_mib']:.0f} MiB")
    if set(upload["statuses"]) != {"413"}:
        bench.failures.append(f"uploads: expected 413 for every client, got {upload['statuses']}")
    return upload


OTEL_MANIFEST = os.path.join(ROOT, "target", "otel", "spin.toml")
TRACED = (("healthz", "GET /healthz"), ("post-orders-valid", "POST /orders (valid)"),
          ("post-orders-invalid", "POST /orders (invalid, all 400)"), ("get-order", "GET /orders/:id"))


class SpanSink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads each export and answers 200, as a
    collector on the same host would; it counts and discards them."""
    exports = 0
    bytes = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        SpanSink.exports += 1
        SpanSink.bytes += n
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def tracing_scenarios(bench, app, traffic):
    """Step 6b (real Spin): the order routes again with tracing on, twice: the default build with Spin's own
    spans exported (OTEL_EXPORTER_OTLP_ENDPOINT), then the otel build (make components-otel) under
    --experimental-wasi-otel, exporting Spin's spans and the components' own. Both export over OTLP/HTTP to
    a receiver in this process. Step 4's rows are the same routes with tracing off, in the same run; all
    serve the same SQLite file (the app's state directory)."""
    why = ("tracing is measured on real Spin only (BENCH_ENGINE=spin)" if ENGINE != "spin"
           else None if os.path.exists(OTEL_MANIFEST) else "no target/otel/spin.toml (make components-otel)")
    configs = (("spin", "Spin's spans", os.path.join(ROOT, "spin.toml"), []),
               ("otel", "Spin's and the components' spans", OTEL_MANIFEST, ["--experimental-wasi-otel"]))
    if why:
        for name, label, _, _ in configs:
            for key, title in TRACED:
                bench.skip(f"traced-{name}-{key}", f"{title}, {label}", why)
        return {"skipped": why}
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SpanSink)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = dict(app.env, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_SERVICE_NAME="orders-api")
    off = {r["key"]: r for r in bench.rows if "rps" in r}
    out = {}
    for name, label, manifest, flags in configs:
        server = Server(f"app-traced-{name}", manifest, app.state_dir, env, flags=flags)
        say(f"bench: tracing on, {label} exported to a receiver on loopback ...")
        server.start("/healthz", "start")
        SpanSink.exports = SpanSink.bytes = 0
        on = {}
        for key, title in TRACED:
            args = {}
            path, expect = "/healthz", {200}
            if key.startswith("post-orders"):
                args = dict(method="POST", headers=("Content-Type: application/json", traffic.auth),
                            body=traffic.valid if key == "post-orders-valid" else traffic.invalid)
                path, expect = "/orders", {201} if key == "post-orders-valid" else {400}
            elif key == "get-order":
                args = dict(headers=(traffic.auth,), paths=traffic.get_paths)
                path = traffic.get_paths[0]
            on[key] = bench.scenario(f"traced-{name}-{key}", f"{title}, {label}", server, path, expect, **args)
        rss = server.peak_rss_mib()
        server.stop()
        time.sleep(1)  # Spin flushes its batch on exit
        out[name] = {"label": label, "exports": SpanSink.exports, "export_mib": SpanSink.bytes / 2 ** 20,
                     "peak_rss_mib": rss,
                     "routes": {k: {"off_rps": off[k]["rps"], "on_rps": r["rps"], "on_vs_off": r["rps"] / off[k]["rps"],
                                    "off_p99_ms": off[k]["p99_ms"], "on_p99_ms": r["p99_ms"]}
                                for k, r in on.items() if k in off and off[k]["rps"]}}
    receiver.shutdown()
    return out


def instantiation_costs(app, server):
    """Step 8: what a fresh instance adds to a request, per component (only the runner can time it)."""
    if ENGINE != "runner":
        return None
    say(f"bench: per-request instantiation (runner bench-instantiate, n={INSTANTIATE_N}) ...")
    routes = [(t["component"], cheapest_path(t["route"])) for t in app["trigger"]["http"]]
    inst = instantiation(server.manifest, server.state_dir, server.env, routes)
    inst.update(instantiation(os.path.join(BENCH, "spin.toml"), os.path.join(RUN, "state-noop"), server.env,
                              [("noop", "/noop")]))
    return inst


def results_of(started, bench, *, isolation, hostile, hostile_images, cold_compile, cold, inst, wasm,
               app_rss, compile_rss, noop_rss, upload, healthz_c1, noop_c1, node_rows, node_facts, tracing):
    """Step 9: the run's report (settings, commit, rows, figures); its keys and their order are the file's."""
    return {
        "engine": ENGINE, "up_flags": UP_FLAGS, "orders_backend": BACKEND, "smoke": SMOKE, "seconds_per_scenario": SECONDS, "connections": CONNECTIONS,
        "resize_connections_in_isolation": RESIZE_CONNECTIONS, "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
        "load_generator": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
        "scenarios": bench.rows, "isolation": isolation, "hostile_bodies": hostile,
        "hostile_images": hostile_images,
        "cold_start_s": {"first_start_empty_cache": cold_compile, "restart": cold},
        "instantiation": inst, "wasm_bytes": wasm,
        "peak_rss_mib": {"app": app_rss, "app_first_start_compiling": compile_rss, "noop": noop_rss},
        "uploads": upload, "tracing": tracing,
        "c1_vs_noop_us": {"healthz_p50_minus_noop_p50": 1000 * (healthz_c1["p50_ms"] - noop_c1["p50_ms"])},
        "node_js": node_results(node_rows, node_facts),
        "failures": bench.failures, "wall_s": time.time() - started,
    }


def write_results(results):
    """Writes results/latest.json (latest-postgres.json on PostgreSQL), the run's record; returns its path."""
    path = os.path.join(RESULTS, "latest.json" if BACKEND == "sqlite" else f"latest-{BACKEND}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    return path


def finish(started, path, failures):
    """Prints the run's time, then exits 1 if a scenario failed: `make bench` must fail on meaningless numbers."""
    say(f"\nbench: {time.time() - started:.0f} s; results in {os.path.relpath(path, ROOT)}")
    if failures:
        say("\n" + "!" * 78)
        say(f"!!! bench FAILED: {len(failures)} scenario(s) saw unexpected responses; "
            "their numbers are not meaningful:")
        for f in failures:
            say(f"!!!   {f}")
        say("!" * 78)
        sys.exit(1)


def main():
    """`make bench`: the steps in order; each one's docstring says what it does and why."""
    started = time.time()
    prepare_run()
    app, wasm = locate_components()
    env = app_env()
    bench = Bench()
    announce()
    base, noop_c1, noop_rss = runtime_ceiling(bench, env)                     # 1. the runtime's ceiling
    server, cold_compile, cold, compile_rss = start_app(env)                  # 2. cold starts
    traffic = seed(server, "images-resize" in app["component"])               # 3. seed and check
    healthz_c1, get = route_scenarios(bench, server, traffic)                 # 4. the routes
    isolation = isolation_scenario(bench, server, traffic, get)               # 5. isolation
    hostile = hostile_bodies_scenario(bench, server, traffic, get)            # 5b. hostile bodies
    hostile_images = hostile_images_scenario(bench, server, traffic, get)     # 5c. hostile images
    upload = upload_scenario(bench, server, traffic.auth)                     # 6. uploads
    app_rss = server.peak_rss_mib()
    server.stop()
    tracing = tracing_scenarios(bench, server, traffic)                       # 6b. tracing on
    # 7. The Node.js service, same scenarios, same wrk, right after the app.
    node_rows, node_facts = node_phase({"valid": traffic.valid, "invalid": traffic.invalid}, traffic.resize_bin)
    inst = instantiation_costs(app, server)                                   # 8. per-request instantiation
    results = results_of(started, bench, isolation=isolation, hostile=hostile, hostile_images=hostile_images,
                         cold_compile=cold_compile, cold=cold, inst=inst, wasm=wasm, app_rss=app_rss,
                         compile_rss=compile_rss, noop_rss=noop_rss, upload=upload, healthz_c1=healthz_c1,
                         noop_c1=noop_c1, node_rows=node_rows, node_facts=node_facts, tracing=tracing)
    path = write_results(results)
    print_table(results, base, node_rows)
    finish(started, path, bench.failures)


# --- the Node.js service, same run ------------------------------------------


def node_available():
    """Why the Node.js service cannot run here, or None when it can."""
    if not os.path.exists(os.path.join(NODE_DIR, "server.js")):
        return f"{os.path.relpath(NODE_DIR, ROOT)} is absent"
    if not shutil.which("node") or not shutil.which("npm"):
        return "node or npm is not on PATH"
    if not NODE_DATABASE_URL:
        return "no PostgreSQL server for it (use make bench / make bench-postgres, or BENCH_NODE_DATABASE_URL)"
    return None


def node_install():
    """A writable copy of the service with its pinned dependencies
    (`npm ci`, from its package-lock.json), kept under target/ between runs."""
    dest = os.path.join(ROOT, "target", "node-baseline")
    lock = os.path.join(NODE_DIR, "package-lock.json")
    stamp = os.path.join(dest, "node_modules", ".package-lock.json")
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(NODE_DIR):
        src = os.path.join(NODE_DIR, name)
        if name == "node_modules":
            continue
        target = os.path.join(dest, name)
        if os.path.isdir(src):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(src, target)
        else:
            shutil.copyfile(src, target)
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(lock):
        say("bench: npm ci for the Node.js service (its pinned dependencies) ...")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=dest, check=True,
                       stdout=subprocess.DEVNULL)
    return dest


def node_database(url):
    """A database of the service's own on the app's server (its `orders`
    table differs from the app's), created when missing, emptied."""
    from urllib.parse import urlsplit, urlunsplit
    u = urlsplit(url)
    exists = subprocess.run(["psql", url, "-qAtX", "-c",
                             "SELECT 1 FROM pg_database WHERE datname = 'node_baseline'"],
                            check=True, capture_output=True, text=True).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", url, "-qX", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE node_baseline"],
                       check=True, stdout=subprocess.DEVNULL)
    node_url = urlunsplit((u.scheme, u.netloc, "/node_baseline", u.query, u.fragment))
    subprocess.run(["psql", node_url, "-qX", "-v", "ON_ERROR_STOP=1", "-c", "DROP TABLE IF EXISTS orders"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return node_url


def node_phase(bodies, photo):
    """The Node.js service through the same scenarios, same wrk; returns
    ({key: row}, facts) or ({}, {"skipped": why})."""
    why = node_available()
    if why:
        say(f"bench: the Node.js service: SKIPPED, {why}; its column shows the guide's figures of {NODE_FIGURES_DATE}")
        return {}, {"skipped": why}
    directory = node_install()
    env = dict(os.environ, NODE_ENV="production", HOST="127.0.0.1",
               DATABASE_URL=node_database(NODE_DATABASE_URL), JWT_SECRET=secrets.token_urlsafe(48))
    server = NodeServer(directory, env)
    env["PORT"] = str(server.port)
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    say(f"bench: the Node.js service ({os.path.relpath(NODE_DIR, ROOT)}, node {version}) ...")
    started = server.start("/healthz", "start")
    bench = Bench(label="node")
    valid, invalid = bodies["valid"], bodies["invalid"]
    ids = []
    for _ in range(SEED_ORDERS):
        status, _, body = request(server.port, "POST", "/orders", valid, {"Content-Type": "application/json"})
        if status != 201:
            die(f"node seeding: POST /orders answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["orderId"])
    json_post = dict(method="POST", headers=("Content-Type: application/json",))
    rows = {}
    rows["healthz"] = bench.scenario("healthz", "Node.js GET /healthz (no database check)", server, "/healthz", {200})
    rows["post-orders-valid"] = bench.scenario("post-orders-valid", "Node.js POST /orders (valid)", server,
                                               "/orders", {201}, body=valid, **json_post)
    rows["post-orders-invalid"] = bench.scenario("post-orders-invalid", "Node.js POST /orders (invalid)", server,
                                                 "/orders", {400}, body=invalid, **json_post)
    paths = [f"/orders/{i}" for i in ids]
    rows["get-order"] = bench.scenario("get-order", "Node.js GET /orders/:id", server, paths[0], {200}, paths=paths)
    resize = None
    if photo is not None:
        resize = json.dumps({"imageData": base64.b64encode(photo).decode(), "width": 256, "height": 256}).encode()
        rows["resize-json"] = bench.scenario("resize-json", "Node.js POST /images/resize (JSON)", server,
                                             "/images/resize", {200}, body=resize, **json_post)
        rows["resize-json-c4"] = bench.scenario("resize-json-c4", "Node.js POST /images/resize (JSON), 4 clients",
                                                server, "/images/resize", {200}, connections=4, body=resize,
                                                **json_post)
        loaded = bench.scenario("isolation", f"Node.js GET /orders/:id while resizing (c={RESIZE_CONNECTIONS})",
                                server, paths[0], {200}, paths=paths,
                                during=background_resizes(bench, server, "/images/resize", resize, "application/json"))
        rows["isolation"] = loaded
    facts = {"first_response_s": started, "peak_rss_mib": server.peak_rss_mib(),
             "node": version,
             "failures": bench.failures}
    server.stop()
    if bench.failures:
        die("the Node.js service answered unexpectedly: " + "; ".join(bench.failures))
    return rows, facts


def db_host(url):
    """`host:port` of a postgres:// URL, for the app's `db_host` (its outbound allow-list)."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    return f"{u.hostname}:{u.port or 5432}"


def reset_postgres(url):
    """An empty database: the numbers must not depend on earlier runs' rows,
    and the app migrates it on first use, as deployed."""
    say("bench: emptying the PostgreSQL database ...")
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c",
                    "DROP TABLE IF EXISTS orders, schema_migrations"], check=True)


def git(*args):
    p = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return p.stdout.strip()


def node_results(rows, facts):
    """What the report keeps of the Node.js service: this run's figures, or
    the dated ones it stood in for."""
    if not rows:
        return {"measured": False, "why": facts.get("skipped"), "figures_of": NODE_FIGURES_DATE,
                "database": "postgres", "figures": NODE}
    return {"measured": True, "database": "postgres", **facts,
            "scenarios": {k: {"title": r["title"], "connections": r["connections"], "rps": r["rps"],
                              "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors": r["errors"],
                              "cpu_pct": r["cpu_runtime_pct"]}
                          for k, r in rows.items()}}


def node_cells(row, node_rows):
    """(Node.js figure, the app's ratio to it) for one of the app's rows."""
    peer = node_rows.get(NODE_PEER.get(row["key"], row["key"]))
    if peer is None:
        return ("" if node_rows else NODE.get(row["key"], "")), ""
    cell = f"{peer['rps']:,.0f} req/s, p99 {peer['p99_ms']:.1f} ms (c={peer['connections']})"
    ratio = f"{row['rps'] / peer['rps']:.2f}x" if peer["rps"] else ""
    return cell, ratio


def node_isolation(results, node_rows):
    """The Node.js service's GET p99 ratio while resizing, this run's when measured."""
    loaded, unloaded = node_rows.get("isolation"), node_rows.get("get-order")
    if loaded and unloaded and unloaded["p99_ms"]:
        return (f"x{loaded['p99_ms'] / unloaded['p99_ms']:.1f} ({unloaded['p99_ms']:.1f} -> "
                f"{loaded['p99_ms']:.1f} ms, {loaded['background']['rps']:.0f} img/s meanwhile)")
    return NODE["isolation"].replace("GET p99 ", "").replace(" while resizing", "")


def print_table(results, base, node_rows):
    rows = results["scenarios"]
    measured = bool(node_rows)
    node_head = ("Node.js, this run (PostgreSQL)" if measured
                 else f"Node.js on PostgreSQL (guide, {NODE_FIGURES_DATE})")
    head = ["scenario", "c", "req/s", "p50 ms", "p99 ms", "errors", "% of no-op", f"{ENGINE} CPU",
            "wrk CPU", "vs Node.js", node_head]
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append([r["title"], "", "", "", "", "", "", "", "", "", "skipped: " + r["skipped"]])
            continue
        frac = f"{100 * r['rps'] / base['rps']:.0f}%" if base["rps"] and r["connections"] == base["connections"] \
            and r["key"] not in ("runtime", "noop") else ""
        skewed = " *" if r["cpu_other_pct"] > 25 else ""
        node, ratio = node_cells(r, node_rows)
        lines.append([r["title"] + skewed, str(r["connections"]), f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", str(r["errors"]), frac, f"{r['cpu_runtime_pct']:.0f}%",
                      f"{r['cpu_wrk_pct']:.0f}%", ratio, node])
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    right = {1, 2, 3, 4, 5, 6, 7, 8, 9}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    say(f"\nengine: {ENGINE} ({' '.join(UP_FLAGS) or 'default instance settings'}); orders in {BACKEND}")
    say(fmt(head))
    say(fmt(["-" * w for w in widths]))
    for line in lines:
        say(fmt(line))
    if any(r.get("cpu_other_pct", 0) > 25 for r in rows):
        say("* other processes used more than a quarter of a core during this scenario (with make bench-postgres, "
            "mostly the PostgreSQL server the route uses; otherwise its numbers are low)")
    say("")
    iso = results["isolation"]
    if iso:
        say(f"isolation: GET /orders/:id p99 {iso['get_unloaded_p99_ms']:.2f} ms unloaded, "
            f"{iso['get_loaded_p99_ms']:.2f} ms while resizing: x{iso['p99_ratio']:.1f} "
            f"(p50 x{iso['p50_ratio']:.1f}; {iso['resize_rps_meanwhile']:.0f} img/s meanwhile)   "
            f"Node.js: {node_isolation(results, node_rows)}")
    hb = results["hostile_bodies"]
    if hb:
        say(f"hostile bodies: GET /orders/:id p99 {hb['get_unloaded_p99_ms']:.2f} ms unloaded, "
            f"{hb['get_loaded_p99_ms']:.2f} ms while {hb['background_rps']:.0f}/s bodies of 5,000 unknown properties "
            f"were answered 400; server RSS then {hb['server_rss_mib']:.0f} MiB")
    hi = results.get("hostile_images")
    if hi:
        say(f"hostile images: GET /orders/:id p99 {hi['get_unloaded_p99_ms']:.2f} ms unloaded, "
            f"{hi['get_loaded_p99_ms']:.2f} ms while 2 KB 16 MP PNGs were resized to 4096x4096 "
            f"(answers {hi['statuses']}); server RSS then {hi['server_rss_mib']:.0f} MiB")
    cs = results["cold_start_s"]
    first = "the first start (empty wasmtime cache: compiles every component)"
    say(f"cold start (process start to first 200 on /healthz): {cs['restart']:.3f} s with compiled "
        f"components cached, {cs['first_start_empty_cache']:.2f} s on {first}   Node.js: "
        + (f"{results['node_js']['first_response_s']:.3f} s" if node_rows else "0.5 s"))
    rss = results["peak_rss_mib"]
    say(f"peak RSS (VmHWM) of the {ENGINE}: {rss['app']:.0f} MiB serving the app "
        f"({rss['app_first_start_compiling']:.0f} MiB on the compiling first start), "
        f"{rss['noop']:.0f} MiB serving the no-op   Node.js: "
        + (f"{results['node_js']['peak_rss_mib']:.0f} MiB over its run" if node_rows else "220-370 MB"))
    up = results["uploads"]
    say(f"uploads: {up['clients']} clients x {up['declared_mib_each']} MiB to POST /orders: {up['statuses']}, "
        f"{up['sent_mib']:.0f} MiB sent before the answers (socket buffers included), server RSS +{up['rss_growth_mib']:.0f} MiB")
    tr = results["tracing"]
    if tr and "skipped" in tr:
        say(f"tracing on: skipped ({tr['skipped']})")
    elif tr:
        for t in tr.values():
            say(f"tracing on ({t['label']} exported) vs off (step 4), this run: "
                + ", ".join(f"{k} {r['on_vs_off']:.2f}x (p99 {r['off_p99_ms']:.1f} -> {r['on_p99_ms']:.1f} ms)"
                            for k, r in t["routes"].items())
                + f"; {t['exports']} exports, {t['export_mib']:.1f} MiB received")
    say(f"GET /healthz at c=1: p50 {results['c1_vs_noop_us']['healthz_p50_minus_noop_p50']:+.0f} us over the no-op's")
    if results["instantiation"]:
        say("per-request instance cost, in-process p50: a request that starts a fresh instance minus one on a reused "
            "one = instantiation plus the guest's per-instance initialisation:")
        for cid, r in results["instantiation"].items():
            if "instantiate_us" in r:
                say(f"  {cid:14} {r['instantiate_us']:7.0f} us   (fresh {r['fresh']['p50_us']:.0f} us, "
                    f"reused {r['reused']['p50_us']:.0f} us, GET {r['path']} -> {r['fresh']['status']})")
            else:
                say(f"  {cid:14} not measured")
    say("component sizes: " + ", ".join(f"{cid} {w['bytes'] / 1e6:.2f} MB" for cid, w in results["wasm_bytes"].items()))


@atexit.register
def _stop_servers():
    for s in SERVERS:
        s.stop()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        die("interrupted", 130)
