#!/usr/bin/env bash
# Runs a command against the app served by one engine on a free loopback
# port, with a fresh state dir and a throwaway jwt_secret, then stops it:
#
#   tools/serve.sh runner|spin COMMAND...
#
# The command sees BASE (http://127.0.0.1:PORT) and SPIN_VARIABLE_JWT_SECRET
# (to sign tokens with tools/token.py). The app migrates its database itself.
# SERVE_LOG=FILE keeps the server's output there (default: dropped with the
# state dir, shown only when the server fails to start).
set -euo pipefail
engine=${1:?usage: tools/serve.sh runner|spin COMMAND...}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
state=$(mktemp -d /tmp/orders-api-serve.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BASE="http://127.0.0.1:$port"
export SPIN_VARIABLE_JWT_SECRET
SPIN_VARIABLE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
case "$engine" in
  runner) server=("$root/target/release/runner" up) ;;
  spin) server=(spin up) ;;
  *) echo "tools/serve.sh: engine must be runner or spin, not $engine" >&2; exit 2 ;;
esac
setsid "${server[@]}" --from "$root/spin.toml" --listen "127.0.0.1:$port" --state-dir "$state" -q \
  >"${SERVE_LOG:-$state/server.log}" 2>&1 &
pid=$!
cleanup() {
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "$BASE/.well-known/spin/health" 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "tools/serve.sh: $engine exited before serving:" >&2
    cat "${SERVE_LOG:-$state/server.log}" >&2
    exit 1
  fi
  sleep 0.2
done
echo "tools/serve.sh: $engine serving $BASE" >&2
"$@"
