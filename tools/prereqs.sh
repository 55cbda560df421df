#!/usr/bin/env bash
# What the build needs beyond cargo, installed when missing (Debian/Ubuntu
# package names): the wasm32-wasip2 Rust target, and clang, llvm-ar and
# wasi-libc for the C code in images-resize (libwebp; see .cargo/config.toml).
# With `postgres`, also the PostgreSQL server binaries that the PostgreSQL
# half of `make test` starts (tests/postgres.sh); with `browser`, Debian's
# Chromium for the API reference page's test (tests/browser); with
# `haproxy`, the load balancer of `make cluster`.
#   tools/prereqs.sh [postgres] [browser] [haproxy]
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

packages=()
command -v clang >/dev/null || packages+=(clang)
command -v llvm-ar-14 >/dev/null || packages+=(llvm-14)
[ -e /usr/include/wasm32-wasi/stdlib.h ] || packages+=(wasi-libc)
for wanted in "$@"; do
  case "$wanted" in
    postgres) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql) ;;
    browser) [ -x /usr/bin/chromium ] || packages+=(chromium) ;;
    haproxy) command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || packages+=(haproxy) ;;
    *) echo "prereqs: unknown extra $wanted (postgres, browser, haproxy)" >&2; exit 2 ;;
  esac
done
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "prereqs: missing ${packages[*]} (Debian package names); install them and run again" >&2
  exit 1
fi
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo)
echo "prereqs: installing ${packages[*]} with apt-get"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
