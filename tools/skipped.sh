#!/usr/bin/env bash
# Says, loudly, that a test suite did not run, and counts it in
# target/skipped-suites.txt (the end of `make test` prints the count).
set -euo pipefail
msg="SKIPPED: $*"
bar=$(printf '!%.0s' $(seq 1 ${#msg}))
printf '\n%s\n%s\n%s\n\n' "$bar" "$msg" "$bar" >&2
mkdir -p target
echo "$msg" >> target/skipped-suites.txt
