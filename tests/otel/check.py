"""One trace per request, checked at a real OTLP receiver: `make test-otel`.

Starts an OTLP/HTTP receiver on loopback (decoding with the official
protobuf definitions, PyPI's opentelemetry-proto) and serves the app with
real `spin up` exporting to it (`OTEL_EXPORTER_OTLP_ENDPOINT`) twice: the
default build (`spin.toml`), then the build with the components' own spans
(`make components-otel`: `target/otel/spin.toml` under `spin up
--experimental-wasi-otel`). Each time it sends requests with and without a
W3C `traceparent`, and asserts:

- Spin's request span of each traced request carries the sent trace id and
  has the sent span as its parent;
- every log line of that request (the component's stdout) carries the same
  `traceId`, and its own `spanId`; a request without `traceparent` still
  gets a trace id of its own, on all its lines;
- the default build sends no span of its own; the otel build sends, per
  route, the component's span as a child of Spin's span (or, as Spin 4.1
  gives a WASI 0.3 component none, of the caller's span), with the route's
  steps (authentication, validation, each database statement, the image
  stages) as its children, failures as error status, OpenTelemetry's
  attribute names, and the component span's id on the request's log lines;
- no attribute of any exported span holds the token, the secret or a body
  value.

Usage: python3 tests/otel/check.py; needs `spin` on PATH and both builds.
Exits non-zero on the first failed assertion.
"""

import gzip
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPANS = []  # (resource attributes, scope name, span) of every export received
SCOPE = "orders-api"  # the instrumentation scope of the components' own spans
STATUS_ERROR = 2  # OTLP Status.STATUS_CODE_ERROR
KIND_CLIENT = 3  # OTLP Span.SPAN_KIND_CLIENT
LOCK = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    """OTLP/HTTP, protobuf: traces are kept; metrics and logs are accepted."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            with LOCK:
                for resource_spans in request.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        scope = scope_spans.scope.name
                        SPANS.extend((resource, scope, span) for span in scope_spans.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def attributes(key_values):
    """OTLP attributes as a dict of plain values (strings for anything else)."""
    out = {}
    for kv in key_values:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which in ("string_value", "int_value", "bool_value",
                                                            "double_value") else str(kv.value)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(message):
    print(f"test-otel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def request(base, method, path, headers=None, body=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read()


def token(secret, user):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "token.py"), "--user", user], check=True,
                         capture_output=True, text=True, env=dict(os.environ, SPIN_VARIABLE_JWT_SECRET=secret))
    return out.stdout.strip()


def png(width, height):
    """A small RGB PNG, made here so the test needs no image file."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 37 % 256, y * 53 % 256, 128)) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def serve(manifest, flags, env, state):
    """`spin up` of `manifest` on a free port, once it answers; (process, base URL, log dir)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = os.path.join(state, "logs")
    spin = subprocess.Popen(["spin", "up", "--from", manifest, "--listen", f"127.0.0.1:{port}", "--state-dir", state,
                             "--log-dir", logs, "-q", *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(state, "spin.err"), "w"),
                            start_new_session=True)
    for _ in range(600):
        try:
            if request(base, "GET", "/.well-known/spin/health")[0] == 200:
                return spin, base, logs
        except OSError:
            pass
        if spin.poll() is not None:
            fail("spin up exited before serving: " + open(os.path.join(state, "spin.err")).read()[-2000:])
        time.sleep(0.2)
    fail("spin up did not answer in 120 s")


def exercise(base, secret, marker, images):
    """Requests to every kind of route, each with a traceparent of its own;
    then one without. The sent requests, and the bearer token."""
    user = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e"
    bearer = token(secret, user)
    body = json.dumps({"userId": user, "items": [{"productId": marker, "quantity": 2}]}).encode()
    auth = {"authorization": f"Bearer {bearer}", "content-type": "application/json"}

    def traced(component, method, path, headers=None, data=None):
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        h = dict(headers or {}, traceparent=f"00-{trace_id}-{parent}-01")
        status, answer = request(base, method, path, h, data)
        return {"component": component, "method": method, "path": path, "status": status, "answer": answer,
                "trace_id": trace_id, "parent": parent}

    sent = [traced("healthz", "GET", "/healthz"), traced("orders-create", "POST", "/orders", auth, body)]
    if sent[1]["status"] != 201:
        fail(f"POST /orders answered {sent[1]['status']}: {sent[1]['answer'][:300]!r}")
    order = json.loads(sent[1]["answer"])["orderId"]
    sent += [traced("orders-get", "GET", f"/orders/{order}", auth),
             traced("orders-create", "POST", "/orders", auth, b'{"items": []}'),
             traced("openapi", "GET", "/openapi.json")]
    if images:
        sent.append(traced("images-resize", "POST", "/images/resize/raw?width=4&height=4&format=png",
                           {"content-type": "image/png"}, png(16, 12)))
        if sent[-1]["status"] != 200:
            fail(f"POST /images/resize/raw answered {sent[-1]['status']}: {sent[-1]['answer'][:300]!r}")
    untraced = request(base, "GET", "/healthz", {"x-request-id": "otel-untraced"})
    if untraced[0] != 200:
        fail(f"GET /healthz without traceparent answered {untraced[0]}")
    return sent, bearer


def wait_for(trace_ids, seconds=20):
    """Spin's batch exporter sends every 100 ms here; wait for each trace."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        with LOCK:
            seen = {s.trace_id.hex() for _, _, s in SPANS}
        if all(t in seen for t in trace_ids):
            return
        time.sleep(0.2)


def log_lines(logs):
    lines = []
    for name in os.listdir(logs):
        if name.endswith("_stdout.txt"):
            for line in open(os.path.join(logs, name)):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
    return lines


def check_spin_spans(r, mine, logged):
    """Spin's spans of request `r` carry its trace and hang under the sent span."""
    if not mine:
        fail(f"{r['method']} {r['path']}: no span with trace id {r['trace_id']}")
    children = [s for _, s in mine if s.parent_span_id.hex() == r["parent"]]
    if not children:
        fail(f"{r['method']} {r['path']}: no span of trace {r['trace_id']} has the sent span {r['parent']} "
             f"as parent (spans: {[(s.name, s.parent_span_id.hex()) for _, s in mine]})")
    by_id = {s.span_id.hex(): s for _, s in mine}
    for _, s in mine:
        if s.parent_span_id.hex() != r["parent"] and s.parent_span_id.hex() not in by_id:
            fail(f"{r['method']} {r['path']}: span {s.name!r} has a parent outside the request's trace")
    if not any(line.get("msg") == "request completed" for line in logged):
        fail(f"{r['method']} {r['path']}: no 'request completed' line with traceId {r['trace_id']}")
    if any(len(line.get("spanId", "")) != 16 or line["spanId"] == r["parent"] for line in logged):
        fail(f"{r['method']} {r['path']}: a line without a span id of its own: {logged}")


# The components' own spans each request must send, besides the component's.
EXPECTED = {
    ("GET", "/healthz"): {"SELECT orders"},
    ("POST", "/orders", 201): {"authenticate", "validate request body", "INSERT orders"},
    ("POST", "/orders", 400): {"authenticate", "validate request body"},
    ("GET", "/orders"): {"authenticate", "SELECT orders"},
    ("GET", "/openapi.json"): set(),
    ("POST", "/images/resize/raw"): {"validate query parameters", "image prepare", "image decode",
                                     "image resize", "image encode"},
}


def expected(r):
    path = r["path"].split("?")[0]
    if path.startswith("/orders/"):
        path = "/orders"
    return EXPECTED.get((r["method"], path, r["status"])) or EXPECTED[(r["method"], path)]


def check_guest_spans(r, mine, logged):
    """The component's span under Spin's, the route's steps under it, the
    component span's id on the request's lines."""
    label = f"{r['method']} {r['path']}"
    guest = [s for scope, s in mine if scope == SCOPE]
    host = {s.span_id.hex(): s for scope, s in mine if scope != SCOPE}
    roots = [s for s in guest if s.name == r["component"]]
    if len(roots) != 1:
        fail(f"{label}: {len(roots)} component span(s) named {r['component']!r} "
             f"(own spans: {sorted(s.name for s in guest)})")
    root = roots[0]
    # Under Spin's execute_wasm_component span when Spin names it to the guest
    # (`outer-span-context`); Spin 4.1 does not for a WASI 0.3 component, and
    # the component's span is then a child of the caller's, beside Spin's.
    parent = host.get(root.parent_span_id.hex())
    under_spin = parent is not None and parent.name.startswith("execute_wasm_component")
    if not under_spin and root.parent_span_id.hex() != r["parent"]:
        fail(f"{label}: the component span's parent {root.parent_span_id.hex()} is neither Spin's "
             f"execute_wasm_component span nor the caller's span {r['parent']}")
    root_attrs = attributes(root.attributes)
    if root_attrs.get("http.response.status_code") != r["status"] or "http.route" not in root_attrs:
        fail(f"{label}: the component span's attributes: {root_attrs}")
    steps = [s for s in guest if s is not root]
    for s in steps:
        if s.parent_span_id != root.span_id:
            fail(f"{label}: span {s.name!r} is not a child of the component span")
    names = {s.name for s in steps}
    if names != expected(r):
        fail(f"{label}: own spans {sorted(names)}, expected {sorted(expected(r))}")
    for s in steps:
        a = attributes(s.attributes)
        if s.name.split(" ")[0] in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            if s.kind != KIND_CLIENT or a.get("db.system.name") != "sqlite" or a.get("db.system") != "sqlite" \
                    or a.get("db.operation.name") != s.name.split(" ")[0] or a.get("db.collection.name") != "orders":
                fail(f"{label}: database span {s.name!r}: kind {s.kind}, attributes {a}")
        if s.name == "validate request body" and r["status"] == 400:
            if s.status.code != STATUS_ERROR or a.get("error.type") != "validation-failed":
                fail(f"{label}: the failed validation's span has status {s.status} and attributes {a}")
        elif s.status.code == STATUS_ERROR:
            fail(f"{label}: span {s.name!r} failed: {s.status.message}")
        if s.end_time_unix_nano < s.start_time_unix_nano or s.start_time_unix_nano < root.start_time_unix_nano:
            fail(f"{label}: span {s.name!r} has times outside its parent's")
    root_id = root.span_id.hex()
    if not logged or any(line.get("spanId") != root_id for line in logged):
        fail(f"{label}: log lines must carry the component span's id {root_id}: {logged}")
    return ("Spin's span" if under_spin else "the caller's span"), sorted(names)


def run(build, manifest, flags, endpoint, own_spans):
    """One `spin up` of `manifest`: requests, then every assertion."""
    secret = secrets.token_urlsafe(48)
    marker = "sku-" + secrets.token_hex(6)
    state = tempfile.mkdtemp(prefix="orders-api-otel.")
    env = dict(os.environ, SPIN_VARIABLE_JWT_SECRET=secret, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_BSP_SCHEDULE_DELAY="100",
               OTEL_SERVICE_NAME="orders-api")
    spin, base, logs = serve(manifest, flags, env, state)
    try:
        sent, bearer = exercise(base, secret, marker, images=own_spans)
        wait_for([r["trace_id"] for r in sent])
        if own_spans:
            # The untraced request's trace (its log lines name it): wait for it too.
            wait_for([line["traceId"] for line in log_lines(logs) if line.get("requestId") == "otel-untraced"])
    finally:
        os.killpg(spin.pid, 15)
        spin.wait(timeout=30)

    with LOCK:
        spans = list(SPANS)
    lines = log_lines(logs)
    by_trace = {}
    for _, scope, s in spans:
        by_trace.setdefault(s.trace_id.hex(), []).append((scope, s))
    for r in sent:
        mine = by_trace.get(r["trace_id"], [])
        logged = [line for line in lines if line.get("traceId") == r["trace_id"]]
        check_spin_spans(r, [m for m in mine if m[0] != SCOPE], logged)
        if own_spans:
            under, steps = check_guest_spans(r, mine, logged)
        elif any(scope == SCOPE for scope, _ in mine):
            fail(f"{r['method']} {r['path']}: the default build sent spans of its own")
        print(f"test-otel [{build}]: {r['method']} {r['path']} -> {r['status']}: trace {r['trace_id']}, "
              f"Spin's spans ({', '.join(sorted({s.name for sc, s in mine if sc != SCOPE}))}) under the sent span"
              + (f"; own spans {r['component']} (under {under}) > {', '.join(steps) or '(none)'}"
                 if own_spans else "")
              + f"; {len(logged)} log line(s) with its traceId")
    own = [line for line in lines if line.get("requestId") == "otel-untraced"]
    if not own or len({line.get("traceId") for line in own}) != 1 or len(own[0].get("traceId", "")) != 32:
        fail(f"a request without traceparent: its lines must share one new trace id: {own}")
    if own[0]["traceId"] in {r["trace_id"] for r in sent}:
        fail("a request without traceparent reused another request's trace id")
    if own_spans:
        # Its lines name the trace Spin started for it, and the component's span.
        started = by_trace.get(own[0]["traceId"], [])
        roots = [s for scope, s in started if scope == SCOPE and s.name == "healthz"]
        if not roots or any(line.get("spanId") != roots[0].span_id.hex() for line in own):
            fail(f"a request without traceparent: its lines do not name its exported trace: {own}")
        kids = [s for scope, s in started if scope == SCOPE and s is not roots[0]]
        if {s.name for s in kids} != {"SELECT orders"} or any(s.parent_span_id != roots[0].span_id for s in kids):
            fail(f"a request without traceparent: its steps: {[(s.name, s.parent_span_id.hex()) for s in kids]}")
    for resource, _, span in spans:
        values = json.dumps([resource, attributes(span.attributes), span.name, span.status.message], default=str)
        for secret_value in (secret, bearer, marker):
            if secret_value in values:
                fail(f"span {span.name!r} carries a secret or body value in its attributes")
    return len([s for t in by_trace.values() for s in t])


def main():
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    up_flags = os.environ.get("UP_FLAGS", "").split()
    otel_manifest = os.path.join(ROOT, "target", "otel", "spin.toml")
    if not os.path.exists(otel_manifest):
        fail(f"{otel_manifest} is missing: run `make components-otel`")
    run("default build", os.path.join(ROOT, "spin.toml"), up_flags, endpoint, own_spans=False)
    with LOCK:
        SPANS.clear()
    total = run("otel build", otel_manifest, [*up_flags, "--experimental-wasi-otel"], endpoint, own_spans=True)
    print(f"test-otel: passed: real spin up, both builds: every sent traceparent honoured, the otel build's "
          f"own spans in each request's trace ({total} spans in its run), log lines joined by traceId and spanId, no "
          f"secret or body value in any attribute")


if __name__ == "__main__":
    main()
