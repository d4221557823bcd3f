#!/usr/bin/env bash
# Opens MLFS Studio on the shipped default teacher; installs the window system's runtime
# libraries, OpenBLAS (batch-1 inference products; optional, opened at run time) and protoc (for
# candle-onnx's build) first when they are missing (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in libgl1 libegl1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libopenblas0-pthread; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update && $SUDO apt-get install -y "${need[@]}"
fi
exec cargo run --release --bin mlfs-studio -- "$@"
