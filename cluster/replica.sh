#!/usr/bin/env bash
# One replica of the `make cluster` cluster (cluster/run.sh sets it up):
#
#   cluster/replica.sh start|stop|term|kill I
#
#   start  `spin up` on replica I's port with its own state dir, in its own
#          session (setsid) so its process group can be signalled; waits for
#          /healthz 200 on it directly, then puts it in HAProxy's rotation and
#          waits until HAProxy's health check says UP.
#   stop   a graceful stop, the way Kubernetes does it with a preStop hook:
#          drain it in HAProxy (no new request), wait until it has no request
#          in flight (HAProxy's scur, deadline DRAIN_TIMEOUT s), then SIGTERM.
#          Needed because Spin 4.1 does not drain on SIGTERM: its signal
#          handler aborts the HTTP trigger at once and the requests in flight
#          get a reset connection (cluster/README.md has the evidence).
#   term   a raw SIGTERM, no drain (for that evidence).
#   kill   SIGKILL: a crash.
#
# Reads CLUSTER_DIR/cluster.env, written by cluster/run.sh.
set -euo pipefail
usage="usage: cluster/replica.sh start|stop|term|kill I"
action=${1:?$usage}
i=${2:?$usage}
: "${CLUSTER_DIR:?cluster/replica.sh runs under cluster/run.sh (CLUSTER_DIR is not set)}"
# shellcheck source=/dev/null
. "$CLUSTER_DIR/cluster.env"
dir=$CLUSTER_DIR/r$i
[ -s "$dir/port" ] || { echo "replica.sh: there is no replica $i" >&2; exit 2; }
port=$(cat "$dir/port")
server=app/r$i
hactl=(python3 "$ROOT/cluster/hactl.py" "$HAPROXY_SOCK")
drain_timeout=${DRAIN_TIMEOUT:-10}

# Whether any process of replica I's process group is still alive. spin up
# runs the HTTP trigger as a child process, so the leader's pid is not
# enough; a zombie (exited, not yet reaped by init) counts as gone.
alive() {
  local pgid p st
  [ -s "$dir/pid" ] || return 1
  pgid=$(cat "$dir/pid")
  for p in $(pgrep -g "$pgid" || true); do
    st=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -c1 || true)
    if [ -n "$st" ] && [ "$st" != Z ]; then return 0; fi
  done
  return 1
}

# Sends a signal to the process group and waits (up to $2 s) until it is gone.
signal_and_wait() {
  local sig=$1 timeout=$2 pgid
  alive || return 0
  pgid=$(cat "$dir/pid")
  kill "-$sig" -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 $((timeout * 20))); do
    alive || { rm -f "$dir/pid"; return 0; }
    sleep 0.05
  done
  echo "replica.sh: r$i did not exit within $timeout s of SIG$sig; SIGKILL" >&2
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "$action" in
  start)
    if alive; then echo "replica.sh: r$i is already running" >&2; exit 1; fi
    mkdir -p "$dir/state"
    echo "--- start $(date -u +%FT%T.%3NZ)" >>"$dir/spin.log"
    # SPIN_VARIABLE_DB_HOST must be the URL's host:port: it is the
    # components' allowed_outbound_hosts, and the app refuses a mismatch.
    # -q: component stdout goes to the state dir's logs only. UP_FLAGS: the
    # instance settings of `make up` (the Makefile exports them).
    # shellcheck disable=SC2086
    SPIN_VARIABLE_DATABASE_URL=$DATABASE_URL SPIN_VARIABLE_DB_HOST=$DB_HOST \
      SPIN_VARIABLE_JWT_SECRET=$JWT_SECRET \
      setsid spin up --from "$ROOT/spin.toml" --listen "127.0.0.1:$port" --state-dir "$dir/state" -q ${UP_FLAGS:-} \
      </dev/null >>"$dir/spin.log" 2>&1 &
    echo $! >"$dir/pid"
    # The first start on a machine compiles every component (minutes on 2
    # busy cores); later starts load them from wasmtime's cache.
    t0=$SECONDS
    status=
    until [ "$status" = 200 ]; do
      if ! alive; then
        echo "replica.sh: r$i exited before serving:" >&2
        tail -n 20 "$dir/spin.log" >&2
        exit 1
      fi
      if [ $((SECONDS - t0)) -gt 600 ]; then
        echo "replica.sh: r$i not healthy after 600 s; the last GET /healthz: ${status:-no answer} $(cat "$dir/healthz" 2>/dev/null)" >&2
        exit 1
      fi
      sleep 0.05
      status=$(curl -s -o "$dir/healthz" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/healthz" 2>/dev/null || true)
    done
    "${hactl[@]}" --ready "$server" --timeout 10 >/dev/null
    echo "r$i: serving on 127.0.0.1:$port, UP in HAProxy ($((SECONDS - t0)) s)"
    ;;
  stop)
    # 1. preStop: out of rotation, and wait for what it is serving to finish.
    # Past the deadline it is stopped anyway (as Kubernetes does after its
    # grace period), and the stop reports failure.
    rc=0
    "${hactl[@]}" --drain "$server" --timeout "$drain_timeout" || rc=1
    # 2. Only then the signal: nothing is in flight to drop.
    signal_and_wait TERM 30
    exit "$rc"
    ;;
  term) signal_and_wait TERM 30 ;;
  kill) signal_and_wait KILL 10 ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
