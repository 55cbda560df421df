#!/usr/bin/env bash
# `make cluster`: the app as REPLICAS (default 3) real `spin up` processes
# behind a real HAProxy (round robin, health-checked on GET /healthz) and one
# PostgreSQL server, all on 127.0.0.1 on free ports. Runs cluster/tests.py
# (one order from concurrent retries spread over the replicas, a crashed
# replica, a graceful stop, a rolling restart, all under write load) and,
# with CLUSTER_BENCH=1, cluster/bench.py (throughput at 1..REPLICAS
# replicas). Every process it starts is stopped, and every temp dir deleted,
# on exit, whatever the outcome.
#
#   cluster/run.sh                      # or: make cluster [REPLICAS=N] [CLUSTER_BENCH=1]
#
# Needs spin (without it: a loud skip), haproxy (tools/prereqs.sh haproxy),
# curl and the PostgreSQL server binaries (without them: a loud skip, or a
# failure when CI=true).
# Uses the components already built in target/ (make components).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
replicas=${REPLICAS:-3}
# Debian puts haproxy in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin
# The scripts import each other and bench/bench.py: no __pycache__ in the tree.
export PYTHONDONTWRITEBYTECODE=1

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

if [ "${1:-}" != --with-database ]; then
  if ! [[ $replicas =~ ^[1-9][0-9]?$ ]]; then
    echo "cluster/run.sh: REPLICAS must be 1-99, not $replicas" >&2
    exit 2
  fi
  # Without spin the cluster cannot exist: a loud, counted skip, as the
  # other Spin passes of `make test` do (CI installs everything else).
  if ! command -v spin >/dev/null; then
    tools/skipped.sh "the multi-replica cluster tests (no spin on PATH: https://spinframework.dev/install)"
    exit 0
  fi
  missing=()
  command -v haproxy >/dev/null || missing+=("haproxy (tools/prereqs.sh haproxy)")
  command -v curl >/dev/null || missing+=(curl)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=("PostgreSQL server (tools/prereqs.sh postgres)")
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "${CI:-}" = true ]; then
      printf 'make cluster: missing %s\n' "${missing[@]}" >&2
      exit 1
    fi
    tools/skipped.sh "the multi-replica cluster tests (missing: $(IFS=,; echo "${missing[*]}"))"
    exit 0
  fi
  # The components come from `make components`; this target never builds.
  while read -r wasm; do
    [ -f "$wasm" ] || { echo "cluster/run.sh: $wasm is missing: run make components first" >&2; exit 1; }
  done < <(sed -n 's/^source = "\(.*\)"$/\1/p' spin.toml)
  # One PostgreSQL for every replica, with durable commits (fsync on, as in
  # production and make bench-postgres), on a free port; tests/postgres.sh
  # starts it, runs the rest of this script, then stops and deletes it.
  TEST_PG_FSYNC=on TEST_PG_PORT=$(free_port) exec tests/postgres.sh "$0" --with-database
fi

: "${TEST_DATABASE_URL:?run cluster/run.sh without arguments}"
CLUSTER_DIR=$(mktemp -d /tmp/orders-api-cluster.XXXXXX)
export CLUSTER_DIR

cleanup() {
  local rc=$? pidfile pgid
  trap - EXIT INT TERM
  if [ "$rc" != 0 ]; then
    echo "cluster/run.sh: failed ($rc); the last lines of each log:" >&2
    for log in "$CLUSTER_DIR"/haproxy.log "$CLUSTER_DIR"/r*/spin.log "$CLUSTER_DIR"/r*/state/logs/*; do
      [ -f "$log" ] && { echo "== ${log#"$CLUSTER_DIR"/}" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  # Every replica and HAProxy runs in its own session (setsid): signal each
  # process group, give them 5 s, then SIGKILL what is left.
  for pidfile in "$CLUSTER_DIR"/r*/pid "$CLUSTER_DIR"/haproxy.pid; do
    if [ -s "$pidfile" ]; then kill -TERM -- "-$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 50); do
    pgrep -g "$(cat "$CLUSTER_DIR"/r*/pid "$CLUSTER_DIR"/haproxy.pid 2>/dev/null | paste -sd, -)" \
      >/dev/null 2>&1 || break
    sleep 0.1
  done
  for pidfile in "$CLUSTER_DIR"/r*/pid "$CLUSTER_DIR"/haproxy.pid; do
    [ -s "$pidfile" ] && { pgid=$(cat "$pidfile"); kill -KILL -- "-$pgid" 2>/dev/null || true; }
  done
  rm -rf "$CLUSTER_DIR"
  exit "$rc"
}
trap cleanup EXIT
# Without these, a SIGTERM or Ctrl-C would end bash without the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# The settings every replica and the tests share. DB_HOST must be the URL's
# host:port: it is the components' allowed_outbound_hosts.
db_host=${TEST_DATABASE_URL#*@}
db_host=${db_host%%/*}
haproxy_port=$(free_port)
# HAProxy's limit on the time a client may take to send a request's head
# and (with http-buffer-request) its first buffer of body: Spin has none.
http_request_timeout=${HTTP_REQUEST_TIMEOUT:-5}
(
  umask 077
  {
    printf 'ROOT=%q\n' "$root"
    printf 'DATABASE_URL=%q\n' "$TEST_DATABASE_URL"
    printf 'DB_HOST=%q\n' "$db_host"
    printf 'JWT_SECRET=%q\n' "$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
    printf 'HAPROXY_SOCK=%q\n' "$CLUSTER_DIR/haproxy.sock"
    printf 'HAPROXY_PORT=%q\n' "$haproxy_port"
    printf 'REPLICAS=%q\n' "$replicas"
    printf 'HTTP_REQUEST_TIMEOUT=%q\n' "$http_request_timeout"
  } >"$CLUSTER_DIR/cluster.env"
)
for i in $(seq 1 "$replicas"); do
  mkdir -p "$CLUSTER_DIR/r$i"
  free_port >"$CLUSTER_DIR/r$i/port"
done

# HAProxy. Why each setting:
# - balance roundrobin, and no prefer-last-server or stickiness: every request
#   is balanced on its own, even on a client's kept-alive connection, so a
#   drained server gets no new request at all.
# - health checks GET /healthz (HTTP/1.1 with a Host header: Spin closes the
#   connection of a request without one, as HAProxy's default check is) every 500 ms, DOWN after 2 failures, UP after
#   1 success: a dead replica is out within about a second.
# - retry-on conn-failure (HAProxy's default, spelled out), retries 3, option
#   redispatch 1: when a connection to a server cannot be made (a killed
#   replica before the checks notice, a restarting one), the request was
#   never sent, so it is safe to send it to another server, even a POST.
#   NOT empty-response, junk-response, response-timeout or 5xx: those fire
#   after the request reached the app, which may have committed the order;
#   replaying a POST without an Idempotency-Key would create a second one.
#   (HAProxy 2.6 docs: "it is very dangerous to use any retry-on value
#   beside conn-failure and none" without replay protection.)
# - timeout http-request (5 s here, HTTP_REQUEST_TIMEOUT) with option
#   http-buffer-request: a client gets that long to send its request head
#   and the first buffer (16 KiB) of its body, else HAProxy answers 408 and
#   closes; a slow or stalled client never reaches a replica. Spin 4.1 has
#   no read timeout of its own (it holds a trickled head or body for 100 s,
#   and thousands of such connections grow it by hundreds of MiB). After
#   the first buffer, timeout client bounds each pause (30 s).
# - /.well-known/spin/info is Spin's, not the API's (it names the app and
#   its version): 404 at the edge.
# - X-Served-By: which replica answered, for the tests' accounting; and
#   X-Pin-Replica: rN, a test hook that sends a request to one replica (the
#   graceful-stop test puts slow requests on the replica it then drains).
# - log only notices and up (server UP/DOWN), not every request: the
#   throughput runs would pay for the request lines.
cat >"$CLUSTER_DIR/haproxy.cfg" <<CFG
global
    stats socket $CLUSTER_DIR/haproxy.sock mode 600 level admin
    log stdout format raw local0 notice
    maxconn 4096

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout http-request ${http_request_timeout}s
    option http-buffer-request
    timeout check 1s
    retries 3
    retry-on conn-failure
    option redispatch 1

frontend web
    bind 127.0.0.1:$haproxy_port
    http-request deny deny_status 404 if { path_beg /.well-known/spin/info }
    default_backend app

backend app
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 1
    use-server %[req.hdr(x-pin-replica)] if { req.hdr(x-pin-replica) -m found }
    http-response set-header X-Served-By %[srv_name]
$(for i in $(seq 1 "$replicas"); do echo "    server r$i 127.0.0.1:$(cat "$CLUSTER_DIR/r$i/port")"; done)
CFG
haproxy -c -q -f "$CLUSTER_DIR/haproxy.cfg"
setsid haproxy -db -f "$CLUSTER_DIR/haproxy.cfg" </dev/null >"$CLUSTER_DIR/haproxy.log" 2>&1 &
echo $! >"$CLUSTER_DIR/haproxy.pid"
for _ in $(seq 1 100); do [ -S "$CLUSTER_DIR/haproxy.sock" ] && break; sleep 0.05; done
[ -S "$CLUSTER_DIR/haproxy.sock" ] || { echo "cluster/run.sh: HAProxy did not start" >&2; exit 1; }

echo "cluster: $(spin --version), $(haproxy -v | head -n 1 | cut -d' ' -f1-3), $replicas replicas behind http://127.0.0.1:$haproxy_port"
# The first replica alone: on a machine whose wasmtime cache is empty it
# compiles every component and fills the cache; the others then load from it
# (in parallel), instead of all compiling the same code on 2 cores at once.
cluster/replica.sh start 1
pids=()
for i in $(seq 2 "$replicas"); do
  cluster/replica.sh start "$i" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

python3 cluster/tests.py
if [ "${CLUSTER_BENCH:-}" = 1 ]; then
  python3 cluster/bench.py
fi
