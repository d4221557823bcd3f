#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
