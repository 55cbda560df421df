#!/usr/bin/env bash
# The schemathesis run itself, inside tools/serve.sh (which serves the app
# and exports BASE and SPIN_VARIABLE_JWT_SECRET); run.sh calls it:
#
#   against.sh ENGINE OUT [schemathesis run options]
#
# Signs tokens for two users, writes their auth file, runs schemathesis
# against $BASE/openapi.json and summarises the report (summary.py).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
engine=$1
out=$2
shift 2
alice=0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e
bob=5d3c8a21-9e47-4b0f-8c1a-7f2e6d4b3a90
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
version=$([ "$engine" = spin ] && spin --version | head -n 1 || echo "runner of this tree")
started=$(date +%s.%N)
st_pid=
stop() {
  if [ -n "$st_pid" ]; then kill -INT "$st_pid" 2> /dev/null || true; wait "$st_pid" 2> /dev/null || true; fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# The tokens, in a Web Fuzzing Commons auth file (see schemathesis.toml).
ST_TOKEN=$(python3 "$root/tools/token.py" --user "$alice" --ttl 7200)
bob_token=$(python3 "$root/tools/token.py" --user "$bob" --ttl 7200)
ST_AUTH_FILE=$out/auth.json
(umask 077 && echo "$ST_TOKEN" > "$out/token")
(umask 077 && python3 -c '
import json, sys
users = {"alice": sys.argv[1], "bob": sys.argv[2]}
auth = [{"name": name, "fixedHeaders": [{"name": "Authorization", "value": "Bearer " + token}]}
        for name, token in users.items()]
print(json.dumps({"schemaVersion": "1.0", "auth": auth}))
' "$ST_TOKEN" "$bob_token" > "$ST_AUTH_FILE")
export ST_TOKEN ST_AUTH_FILE ST_USER_ID=$alice ST_BASE_URL=$BASE

location="$BASE/openapi.json"

args=(--config-file "$here/schemathesis.toml" run "$location"
  --include-path-regex '^/' --max-examples "$ST_MAX_EXAMPLES"
  --report junit,ndjson --report-dir "$out/report")
[ "$ST_SEED" = random ] || args+=(--seed "$ST_SEED")

status=0
# In the background, so that INT/TERM reach the trap at once (bash runs
# traps only between foreground commands).
(cd "$out" && exec timeout --signal=INT --kill-after=30 "${ST_TIMEOUT:-900}" \
  "$ST_VENV/bin/schemathesis" "${args[@]}" "$@") &
st_pid=$!
wait "$st_pid" || status=$?
st_pid=
[ "$status" -ne 124 ] || echo "schemathesis: STOPPED after ST_TIMEOUT=${ST_TIMEOUT:-900} s; the run is incomplete" >&2
finished=$(date +%s.%N)

echo "schemathesis on $engine ($version): $(seconds "$started" "$finished") s of testing;" \
  "reports in $out/report," \
  "server log $out/server.log; the curl commands below need ST_TOKEN=\$(cat $out/token)"
report=$(ls "$out"/report/ndjson-*.ndjson 2> /dev/null | head -n 1 || true)
if [ -n "$report" ]; then
  # Its last line is `schemathesis: N passed, M failed`.
  python3 "$here/summary.py" "$report" "$engine" || status=$((status == 0 ? 1 : status))
else
  echo "schemathesis: no report was written" >&2
  status=$((status == 0 ? 1 : status))
fi
exit "$status"
