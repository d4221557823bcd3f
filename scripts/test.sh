#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with a Rust toolchain; installs protoc
# (protobuf-compiler, which candle-onnx's build needs for the ONNX export) and OpenBLAS (the
# inference products, opened at run time: src/model/blas.rs) first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update && $SUDO apt-get install -y "${need[@]}"
fi
# With OpenBLAS installed, its test checks that it is also the one in use.
dpkg -s libopenblas0-pthread >/dev/null 2>&1 && export MLFS_EXPECT_BLAS=1
cargo test --all-targets
