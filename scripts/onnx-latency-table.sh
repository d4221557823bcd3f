#!/usr/bin/env bash
# Exports the palette's four reference subnets of a trained classifier run as ONNX, checks each
# with scripts/check-onnx.py (ONNX Runtime vs `mlfs-studio predict` on the sentiment test split)
# and prints a Markdown table of batch-1 latencies, ORT beside ours, measured in one go.
#
#   scripts/onnx-latency-table.sh [RUN_DIR]   (default runs/screenshots, trained with
#                                              sentiment-quick first if missing)
# MLFS_BIN picks the binary (default target/release/mlfs-studio, built if missing); PYTHON the
# interpreter with onnx, onnxruntime, tokenizers and numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MLFS_BIN:-target/release/mlfs-studio}
[ -x "$BIN" ] || cargo build --release --bin mlfs-studio
PY=${PYTHON:-python3}
RUN=${1:-runs/screenshots}
if [ ! -f "$RUN/supernet.safetensors" ]; then
  "$BIN" train --preset presets/sentiment-quick.ron --out "$RUN"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rows=()
for spec in "layers=0,1,2;heads=12;ffn=1536" "layers=0,1,2;heads=6;ffn=768" \
            "layers=1,2;heads=9;ffn=1152" "layers=2;heads=3;ffn=384"; do
  out="$WORK/$(echo "$spec" | tr ';=,' '_.-')"
  "$BIN" export --run "$RUN" --subnet "$spec" --format onnx --out "$out" >/dev/null
  echo "## $spec" >&2
  MLFS_BIN=$BIN "$PY" scripts/check-onnx.py "$out" assets/sentiment/test.jsonl --write-manifest >&2
  rows+=("$("$PY" - "$out/manifest.json" "$spec" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["onnxruntime"]
print(f"| `{sys.argv[2]}` | {m['latency_ms_median']:.3f} | {m['mlfs_studio_latency_ms_median']:.3f} "
      f"| {m['mlfs_studio_latency_ms_median'] / m['latency_ms_median']:.1f}x | {m['max_abs_logit_difference_vs_predict']:.1e} |")
PY
)")
done
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
ortv=$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')
echo "Batch 1 x 32 tokens, median of 50 after warm-up, $cpu ($(nproc) logical CPUs), ONNX Runtime $ortv (CPU):"
echo
echo "| subnet | ONNX Runtime (ms) | mlfs-studio (ms) | ours / ORT | max logit difference (596 test texts) |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
