#!/usr/bin/env bash
# Our GPU figures beside PyTorch's, measured in one go on the machine with the GPU (PyTorch
# installed there): decoder training steps on random teachers of SmolLM2's shapes (as PyTorch's
# reference times them), and the whole `sentiment-full` recipe on the shipped encoder.
#
#   scripts/bench-gpu.sh BIN REFERENCE_DIR SMOLLM2_TOKENIZER_JSON [decoder] [encoder] [large]
#
# BIN is a build from scripts/build-cuda.sh; REFERENCE_DIR holds mlfs_ref.py and
# decoder_step_time.py (../shared/reference); the tokenizer gives the random teachers their
# 49,152-token vocabulary. Prints plain lines; figures are medians.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?mlfs-studio binary built with scripts/build-cuda.sh}
ref=${2:?folder of the PyTorch reference scripts}
tokenizer=${3:?tokenizer.json of SmolLM2}
shift 3
what=${*:-decoder encoder}
work=$(mktemp -d)
echo "# $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
echo "# $(python3 -c 'import torch; print("torch", torch.__version__)')"

# A preset whose teacher is the random one and whose student is the reference's 2-of-3 slice.
preset() { # source preset, teacher folder, student spec, out
  sed -e "s#teacher: \"[^\"]*\"#teacher: \"$2\"#" \
      -e "s#students: \[\"[^\"]*\"\]#students: [\"$3\"]#" \
      -e "s#recompute_activations: true#recompute_activations: false#" "$1" >"$4"
  grep -q recompute_activations "$4" ||
    sed -i 's#latency_new_tokens: \([0-9]*\),#latency_new_tokens: \1, recompute_activations: false,#' "$4"
}
# Runs a command while the driver's used-memory figure is polled every 20 ms (the same counter
# for our binary and for PyTorch, whose own figure is its allocator's peak): prints the peak.
driver_peak() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 20 >"$work/mem.log" &
  local poll=$!
  "$@"
  kill "$poll"; wait "$poll" 2>/dev/null || true
  echo "driver-reported peak GPU memory while it ran: $(sort -n "$work/mem.log" | tail -1) MiB (idle: $(head -1 "$work/mem.log") MiB)"
}
keep() { python3 -c "import sys; n=int(sys.argv[1]); print(','.join(str(i) for i in range(n) if i % 3 != 1))" "$1"; }

for part in $what; do
  case $part in
  decoder)
    "$bin" random-llama --shape smollm2-135m --tokenizer "$tokenizer" --out "$work/t135"
    spec="layers=$(keep 30);heads=9;ffn=1536"
    for p in code-slice20-full code-slice20-mlfs; do
      preset "presets/$p.ron" "$work/t135" "$spec" "$work/$p.ron"
      for prec in f32 bf16; do
        echo "## ours: $p $prec"
        "$bin" bench --preset "$work/$p.ron" --steps 10 --device cuda --precision "$prec"
      done
    done
    echo "## PyTorch: smollm2-135m"
    python3 "$ref/decoder_step_time.py" smollm2-135m --steps 10 --warmup 3
    ;;
  large)
    "$bin" random-llama --shape smollm2-1.7b --tokenizer "$tokenizer" --out "$work/t17"
    spec="layers=$(keep 24);heads=32;ffn=8192"
    preset presets/code-slice20-full.ron "$work/t17" "$spec" "$work/large.ron"
    echo "## ours: smollm2-1.7b shape, 16-layer student, all weights, bf16"
    driver_peak "$bin" bench --preset "$work/large.ron" --steps 10 --device cuda --precision bf16
    echo "## PyTorch: smollm2-1.7b"
    driver_peak python3 "$ref/decoder_step_time.py" smollm2-1.7b --modes full --precs bf16 --steps 10 --warmup 3
    ;;
  encoder)
    echo "## ours: sentiment-full, whole recipe (three stages, evaluations, palette)"
    start=$(date +%s.%N)
    "$bin" train --preset presets/sentiment-full.ron --out "$work/sentiment" --device cuda >/dev/null
    echo "sentiment-full total $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
    echo "## PyTorch: sentiment-full recipe"
    start=$(date +%s.%N)
    python3 "$ref/mlfs_ref.py" --device cuda --model assets/minilm-l3 --data assets/sentiment \
      --no-verify --out "$work/ref" | tail -5
    echo "PyTorch recipe total $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
    ;;
  esac
done
