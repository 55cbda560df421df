#!/usr/bin/env bash
# Serves the app with ENGINE (the project's runner, or real `spin up`) on a
# free loopback port with a fresh state dir (tools/serve.sh), then runs
# against.sh there: schemathesis (pinned in
# requirements.txt, configured by schemathesis.toml) against the app's own
# /openapi.json with every check and every phase (examples, coverage,
# fuzzing, stateful), with bearer tokens for two users (requests go as alice;
# bob must not read her orders). Prints a summary naming each failure with a
# curl command, and exits non-zero on any failure or error. Builds nothing:
# the runner and the components must be built (`make components runner`).
#
#   tools/schemathesis/run.sh runner|spin [extra schemathesis run options]
#
# Environment (all optional):
#   ST_MAX_EXAMPLES   test cases per operation and phase      (200)
#   ST_SEED           hypothesis seed; `random` for a new one (14)
#   ST_TIMEOUT        seconds before schemathesis is stopped  (900)
#   ST_VENV           the virtualenv                 (target/schemathesis/venv)
#   ST_OUT            reports and logs       (target/schemathesis/ENGINE)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
engine=${1:-}
case "$engine" in
  runner | spin) shift ;;
  *) echo "usage: $0 runner|spin [schemathesis run options]" >&2; exit 2 ;;
esac

max_examples=${ST_MAX_EXAMPLES:-200}
seed=${ST_SEED:-14}
venv=${ST_VENV:-$root/target/schemathesis/venv}
out=${ST_OUT:-$root/target/schemathesis/$engine}

# ---- the virtualenv, made or refreshed when requirements.txt changes ----
stamp="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
mkdir -p "$(dirname "$venv")"
(
  # Two runs at once (runner and spin) share the venv: one builds it.
  command -v flock > /dev/null && flock 9
  if [ "$(cat "$venv/.requirements" 2> /dev/null)" != "$stamp" ]; then
    echo "schemathesis: installing requirements.txt into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
    echo "$stamp" > "$venv/.requirements"
  fi
) 9> "$(dirname "$venv")/.venv.lock"

# ---- the engine and the builds it serves ----
case "$engine" in
  runner)
    [ -x "$root/target/release/runner" ] || { echo "schemathesis: no target/release/runner; build it first (make runner)" >&2; exit 2; }
    ;;
  spin)
    if ! command -v spin > /dev/null && [ -x "$root/../shared/spin/install.sh" ]; then
      PATH="$("$root/../shared/spin/install.sh"):$PATH"
    fi
    command -v spin > /dev/null || { echo "schemathesis: no spin on PATH (nor ../shared/spin)" >&2; exit 3; }
    ;;
esac
for wasm in $(sed -n 's/^source = "\(.*\.wasm\)"$/\1/p' "$root/spin.toml"); do
  [ -f "$root/$wasm" ] || { echo "schemathesis: no $wasm; build the components first (make components)" >&2; exit 2; }
done

rm -rf "$out"
mkdir -p "$out"
export ST_MAX_EXAMPLES=$max_examples ST_SEED=$seed ST_VENV=$venv
SERVE_LOG=$out/server.log exec "$root/tools/serve.sh" "$engine" \
  "$here/against.sh" "$engine" "$out" "$@"
