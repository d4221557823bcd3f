#!/usr/bin/env bash
# Kernel-time profile of decoder training steps on the GPU machine (NVIDIA Nsight Compute's
# `ncu`, which ships with the CUDA toolkit there): every kernel of a warm-up and one timed step
# of the `code-slice20-*` preset on a random teacher of the given shape, summed by kernel name.
#
#   scripts/profile-gpu.sh BIN SMOLLM2_TOKENIZER_JSON [smollm2-135m|smollm2-1.7b] [full|mlfs] [f32|bf16]
#
# Clocks and caches are left as they run (ncu would lock base clocks and flush caches between
# kernels, inflating memory-bound kernels). Prints the kernel count, the summed kernel time and
# the 25 costliest kernel names; a wall time far above the summed kernel time means the step is
# bound by the host issuing work.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?mlfs-studio binary built with scripts/build-cuda.sh}
tokenizer=${2:?tokenizer.json of SmolLM2}
shape=${3:-smollm2-135m}
mode=${4:-full}
prec=${5:-bf16}
work=$(mktemp -d)
"$bin" random-llama --shape "$shape" --tokenizer "$tokenizer" --out "$work/teacher" >/dev/null
layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$work/teacher/config.json")
keep=$(python3 -c "import sys; n=int(sys.argv[1]); print(','.join(str(i) for i in range(n) if i % 3 != 1))" "$layers")
heads=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_attention_heads'])" "$work/teacher/config.json")
ffn=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['intermediate_size'])" "$work/teacher/config.json")
sed -e "s#teacher: \"[^\"]*\"#teacher: \"$work/teacher\"#" \
    -e "s#students: \[\"[^\"]*\"\]#students: [\"layers=$keep;heads=$heads;ffn=$ffn\"]#" \
    -e "s#recompute_activations: true#recompute_activations: false#" \
    "presets/code-slice20-$mode.ron" >"$work/preset.ron"
grep -q recompute_activations "$work/preset.ron" ||
  sed -i 's#latency_new_tokens: \([0-9]*\),#latency_new_tokens: \1, recompute_activations: false,#' "$work/preset.ron"
echo "## wall time without the profiler (MLFS_PROFILE=1 adds synchronised laps on stderr)"
"$bin" bench --preset "$work/preset.ron" --steps 5 --device cuda --precision "$prec"
echo "## kernels of the load, a warm-up step and one timed step"
# NCU_ARGS adds options, e.g. "--launch-count 11000" to stop after the warm-up step.
# shellcheck disable=SC2086
ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base ${NCU_ARGS:-} \
  "$bin" bench --preset "$work/preset.ron" --steps 1 --device cuda --precision "$prec" >"$work/ncu.csv" 2>"$work/ncu.err" || tail -5 "$work/ncu.err"
python3 - "$work/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
name_at, value_at = head.index("Kernel Name"), head.index("Metric Value")
total = collections.Counter(); count = collections.Counter()
for r in rows:
    ns = float(r[value_at].replace(",", ""))
    name = r[name_at][:90]
    total[name] += ns; count[name] += 1
print(f"{sum(count.values())} kernels, {sum(total.values()) / 1e6:.1f} ms of kernel time")
for name, ns in total.most_common(25):
    print(f"{ns / 1e6:9.2f} ms {count[name]:6d}x  {name}")
# Where the costliest kernels spend it, by launch grid (for element-wise kernels the grid
# follows the tensor's size): which tensors the time goes to.
grid_at = head.index("Grid Size") if "Grid Size" in head else None
if grid_at is not None:
    by_grid = collections.defaultdict(collections.Counter); n_grid = collections.defaultdict(collections.Counter)
    for r in rows:
        name = r[name_at][:90]
        by_grid[name][r[grid_at]] += float(r[value_at].replace(",", "")); n_grid[name][r[grid_at]] += 1
    for name, _ in total.most_common(8):
        print(f"## {name}: time by grid size")
        for grid, ns in by_grid[name].most_common(6):
            print(f"  {ns / 1e6:8.2f} ms {n_grid[name][grid]:5d}x  grid {grid}  ({ns / n_grid[name][grid] / 1e3:.1f} us each)")
PY
