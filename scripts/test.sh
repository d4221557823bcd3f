#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with a Rust toolchain; installs protoc
# (protobuf-compiler, which candle-onnx's build needs for the ONNX export) first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update && $SUDO apt-get install -y protobuf-compiler
fi
cargo test --all-targets
