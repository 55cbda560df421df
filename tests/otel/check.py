"""One trace per request, checked at a real OTLP receiver: `make test-otel`.

Starts an OTLP/HTTP receiver on loopback (decoding with the official
protobuf definitions, PyPI's opentelemetry-proto), serves the app with real
`spin up` exporting to it (`OTEL_EXPORTER_OTLP_ENDPOINT`), sends requests
with and without a W3C `traceparent`, and asserts:

- Spin's request span of each traced request carries the sent trace id and
  has the sent span as its parent;
- every log line of that request (the component's stdout) carries the same
  `traceId`, and its own `spanId`; a request without `traceparent` still
  gets a trace id of its own, on all its lines;
- no attribute of any exported span holds the token, the secret or a body
  value.

The guest's own child spans (`wasi:otel`) are not exported yet: Spin 4.1
links that interface only under `--experimental-wasi-otel`, and a component
importing it fails to start without the flag (see README, Observability).

Usage: python3 tests/otel/check.py [BASE_DIR]; needs `spin` on PATH and the
built components. Exits non-zero on the first failed assertion.
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

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPANS = []  # (resource attributes, span) of every export received
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
                        SPANS.extend((resource, span) for span in scope_spans.spans)
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


def main():
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    secret = secrets.token_urlsafe(48)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    state = tempfile.mkdtemp(prefix="orders-api-otel.")
    logs = os.path.join(state, "logs")
    env = dict(os.environ, SPIN_VARIABLE_JWT_SECRET=secret, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_BSP_SCHEDULE_DELAY="100",
               OTEL_SERVICE_NAME="orders-api")
    up_flags = os.environ.get("UP_FLAGS", "").split()
    spin = subprocess.Popen(["spin", "up", "--from", os.path.join(ROOT, "spin.toml"), "--listen", f"127.0.0.1:{port}",
                             "--state-dir", state, "--log-dir", logs, "-q", *up_flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(state, "spin.err"), "w"),
                            start_new_session=True)
    try:
        for _ in range(600):
            try:
                if request(base, "GET", "/.well-known/spin/health")[0] == 200:
                    break
            except OSError:
                pass
            if spin.poll() is not None:
                fail("spin up exited before serving: " + open(os.path.join(state, "spin.err")).read()[-2000:])
            time.sleep(0.2)
        user = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e"
        bearer = token(secret, user)
        marker = "sku-" + secrets.token_hex(6)
        body = json.dumps({"userId": user, "items": [{"productId": marker, "quantity": 2}]}).encode()
        auth = {"authorization": f"Bearer {bearer}", "content-type": "application/json"}

        def traced(method, path, headers=None, data=None):
            trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
            h = dict(headers or {}, traceparent=f"00-{trace_id}-{parent}-01")
            status, answer = request(base, method, path, h, data)
            return {"method": method, "path": path, "status": status, "answer": answer,
                    "trace_id": trace_id, "parent": parent}

        sent = [traced("GET", "/healthz"), traced("POST", "/orders", auth, body)]
        if sent[1]["status"] != 201:
            fail(f"POST /orders answered {sent[1]['status']}: {sent[1]['answer'][:300]!r}")
        order = json.loads(sent[1]["answer"])["orderId"]
        sent += [traced("GET", f"/orders/{order}", auth), traced("POST", "/orders", auth, b'{"items": []}'),
                 traced("GET", "/openapi.json")]
        untraced = request(base, "GET", "/healthz", {"x-request-id": "otel-untraced"})
        if untraced[0] != 200:
            fail(f"GET /healthz without traceparent answered {untraced[0]}")

        # Spin's batch exporter sends every 100 ms here; wait for each trace.
        deadline = time.time() + 20
        while time.time() < deadline:
            with LOCK:
                seen = {s.trace_id.hex() for _, s in SPANS}
            if all(r["trace_id"] in seen for r in sent):
                break
            time.sleep(0.2)
    finally:
        os.killpg(spin.pid, 15)
        spin.wait(timeout=30)

    with LOCK:
        spans = list(SPANS)
    if not spans:
        fail("no span arrived at the receiver")
    lines = []
    for name in os.listdir(logs):
        if name.endswith("_stdout.txt"):
            for line in open(os.path.join(logs, name)):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
    for r in sent:
        mine = [s for _, s in spans if s.trace_id.hex() == r["trace_id"]]
        if not mine:
            fail(f"{r['method']} {r['path']}: no span with trace id {r['trace_id']}")
        children = [s for s in mine if s.parent_span_id.hex() == r["parent"]]
        if not children:
            fail(f"{r['method']} {r['path']}: no span of trace {r['trace_id']} has the sent span {r['parent']} "
                 f"as parent (spans: {[(s.name, s.parent_span_id.hex()) for s in mine]})")
        by_id = {s.span_id.hex(): s for s in mine}
        for s in mine:
            if s.parent_span_id.hex() != r["parent"] and s.parent_span_id.hex() not in by_id:
                fail(f"{r['method']} {r['path']}: span {s.name!r} has a parent outside the request's trace")
        logged = [line for line in lines if line.get("traceId") == r["trace_id"]]
        if not any(line.get("msg") == "request completed" for line in logged):
            fail(f"{r['method']} {r['path']}: no 'request completed' line with traceId {r['trace_id']}")
        if any(len(line.get("spanId", "")) != 16 or line["spanId"] == r["parent"] for line in logged):
            fail(f"{r['method']} {r['path']}: a line without a span id of its own: {logged}")
        print(f"test-otel: {r['method']} {r['path']} -> {r['status']}: trace {r['trace_id']}, "
              f"{len(mine)} span(s) from Spin ({', '.join(sorted({s.name for s in mine}))}), "
              f"parent {r['parent']}; {len(logged)} log line(s) with its traceId")
    own = [line for line in lines if line.get("requestId") == "otel-untraced"]
    if not own or len({line.get("traceId") for line in own}) != 1 or len(own[0].get("traceId", "")) != 32:
        fail(f"a request without traceparent: its lines must share one new trace id: {own}")
    if own[0]["traceId"] in {r["trace_id"] for r in sent}:
        fail("a request without traceparent reused another request's trace id")
    for resource, span in spans:
        values = json.dumps([resource, attributes(span.attributes), span.name], default=str)
        for secret_value in (secret, bearer, marker):
            if secret_value in values:
                fail(f"span {span.name!r} carries a secret or body value in its attributes")
    print(f"test-otel: passed: {len(spans)} spans received from real spin up, every sent traceparent honoured, "
          f"log lines joined by traceId, no secret or body value in any attribute")


if __name__ == "__main__":
    main()
