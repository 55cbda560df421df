#!/usr/bin/env bash
# The 1-megapixel JPEG -> 256x256 WebP q85 comparison of issue 4: the kit's
# native pipeline, the images-resize component (through the project's runner)
# and sharp (npm), in one run: images/s, output bytes, SSIM against a lossless
# reference resize. Prints a table; nothing is asserted.
#   bash bench/imaging/run.sh [seconds per side, default 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_SIDE=${1:-5}
OUT=bench/results/imaging
mkdir -p "$OUT"
SHARP_DIR=target/sharp-bench
if ! [ -d "$SHARP_DIR/node_modules/sharp" ]; then
  npm install --silent --no-save --prefix "$SHARP_DIR" sharp@0.34.5 >/dev/null
fi
cargo build --profile component --target wasm32-wasip2 -q -p images-resize
cargo build --release -q -p imaging-bench
BIN=target/release/imaging-bench
"$BIN" input "$OUT/input.jpg"
SHARP=$(SHARP_MODULE="$PWD/$SHARP_DIR/node_modules/sharp" node bench/imaging/sharp.cjs "$OUT/input.jpg" "$OUT/sharp.webp" "$SECONDS_PER_SIDE")
"$BIN" compare "$OUT/input.jpg" "$OUT/sharp.webp" "$SHARP" "$SECONDS_PER_SIDE"
