#!/usr/bin/env bash
# Data parallel on several GPUs against one, same global batch, on the machine with the GPUs:
# the runs issue 28 asks for. Built with `scripts/build-cuda.sh --nccl`.
#
#   scripts/bench-multi-gpu.sh BIN SMOLLM2_TOKENIZER_JSON [GPUS]      # GPUS: 2 (default) or 4
#
# 1. Equality: 20 steps of code-slice20-mlfs on a random SmolLM2-135M-shape teacher, f32 and
#    bf16, on 1 GPU and on GPUS GPUs: each step's losses side by side, the largest relative
#    difference (f32 should stay within 1e-4).
# 2. Resume across GPU counts: the GPUS-GPU f32 run stopped by SIGINT part-way, resumed on 1 GPU;
#    its losses after the resume against the uninterrupted GPUS-GPU run.
# 3. Throughput: the SmolLM2-1.7B shape, 16-layer student, all weights, bf16, 13 steps on 1 and
#    on GPUS GPUs; medians of steps 4-13 from metrics.jsonl and the speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?mlfs-studio built with scripts/build-cuda.sh --nccl}
tokenizer=${2:?tokenizer.json of SmolLM2}
n=${3:-2}
gpus=$(seq -s, 0 $((n - 1)))
work=$(mktemp -d)
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
echo "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1) x $(nvidia-smi -L | wc -l)"
preset() { # source, teacher, student, steps, out
  sed -e "s#teacher: \"[^\"]*\"#teacher: \"$2\"#" \
      -e "s#students: \[\"[^\"]*\"\]#students: [\"$3\"]#" \
      -e "s#Steps([0-9]*)#Steps($4)#" \
      -e "s#eval_every: [0-9]*#eval_every: 0#" \
      -e "s#checkpoint_every: [0-9]*#checkpoint_every: 5#" \
      -e "s#evaluate_at_end: true#evaluate_at_end: false#" "$1" >"$5"
}
keep() { python3 -c "import sys; n=int(sys.argv[1]); print(','.join(str(i) for i in range(n) if i % 3 != 1))" "$1"; }
compare() { # run A, run B, first step of B to compare
  python3 - "$1" "$2" "${3:-1}" <<'PY'
import json, sys
def steps(d):
    out = {}
    for line in open(d + "/metrics.jsonl"):
        e = json.loads(line)
        if e.get("event") == "step":
            out[e["global_step"]] = [l["loss"] for l in e["losses"]]
    return out
a, b, first = steps(sys.argv[1]), steps(sys.argv[2]), int(sys.argv[3])
worst = 0.0
for s in sorted(b):
    if s < first or s not in a: continue
    for x, y in zip(a[s], b[s]):
        worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
    print(f"step {s}: {a[s]} | {b[s]}")
print(f"largest relative loss difference: {worst:.2e}")
PY
}
median() { # run dir, from step, to step
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, statistics
d, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = [e["seconds"] for e in map(json.loads, open(d + "/metrics.jsonl"))
     if e.get("event") == "step" and lo <= e["global_step"] <= hi]
print(f"{statistics.median(t):.4f}")
PY
}
"$bin" random-llama --shape smollm2-135m --tokenizer "$tokenizer" --out "$work/t135"
preset presets/code-slice20-mlfs.ron "$work/t135" "layers=$(keep 30);heads=9;ffn=1536" 20 "$work/small.ron"
for prec in f32 bf16; do
  "$bin" train --preset "$work/small.ron" --out "$work/one-$prec" --device cuda:0 --precision "$prec" >/dev/null
  "$bin" train --preset "$work/small.ron" --out "$work/many-$prec" --gpus "$gpus" --precision "$prec" >/dev/null
  echo "## 20 steps, $prec: 1 GPU | $n GPUs"
  compare "$work/one-$prec" "$work/many-$prec"
done
echo "## stopped on $n GPUs, resumed on 1 (f32)"
"$bin" train --preset "$work/small.ron" --out "$work/moved" --gpus "$gpus" >/dev/null &
launcher=$!
until grep -q '"global_step":6,' "$work/moved/metrics.jsonl" 2>/dev/null; do sleep 0.2; done
kill -INT $launcher; wait $launcher || true
at=$(python3 -c "import json; print(max(json.loads(l)['global_step'] for l in open('$work/moved/metrics.jsonl') if 'checkpoint_saved' in l))")
echo "stopped with a checkpoint at step $at"
"$bin" train --resume "$work/moved" --device cuda:0 >/dev/null
compare "$work/many-f32" "$work/moved" $((at + 1))
"$bin" random-llama --shape smollm2-1.7b --tokenizer "$tokenizer" --out "$work/t17"
preset presets/code-slice20-full.ron "$work/t17" "layers=$(keep 24);heads=32;ffn=8192" 13 "$work/large.ron"
"$bin" train --preset "$work/large.ron" --out "$work/large-one" --device cuda:0 --precision bf16 >/dev/null
"$bin" train --preset "$work/large.ron" --out "$work/large-many" --gpus "$gpus" --precision bf16 >/dev/null
one=$(median "$work/large-one" 4 13) many=$(median "$work/large-many" 4 13)
echo "## SmolLM2-1.7B shape, 16-layer student, bf16, median step (steps 4-13)"
echo "1 GPU $one s; $n GPUs $many s; speed-up $(python3 -c "print(round($one / $many, 2))")x"
