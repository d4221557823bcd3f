#!/usr/bin/env bash
# CPU speed side by side with the PyTorch reference (../shared/reference), on this machine, in
# one go: our `bench` and the reference run alternately, twice each, and the ratios are printed
# (ours / PyTorch's, below 1 is faster). Only ratios measured here mean anything: machines differ
# from session to session.
#
#   scripts/bench-vs-pytorch.sh [encoder|decoder|all]
#
# encoder: training steps of stage 0 and stages 1-2 (batch 32, length <= 64) and batch-1 latency
#   of the four merged subnets the reference measures (also against ONNX Runtime);
# decoder: a step of code-slice20-full and code-slice20-mlfs (SmolLM2-135M shape, 20-layer
#   student, batch 8 x 128; the reference times the same shape with random weights).
# Needs the reference's Python (REF_PYTHON, default ~/.cache/mlfs-ref-venv/bin/python, set up as
# the reference's README says: torch numpy safetensors tokenizers onnx onnxruntime onnxscript)
# and, for the decoder, the SmolLM2 teacher (scripts/fetch-smollm2.sh). MLFS_BIN picks our
# binary (default: `cargo build`'s, which this crate optimises fully).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
PY=${REF_PYTHON:-$HOME/.cache/mlfs-ref-venv/bin/python}
REF=${REF_DIR:-../shared/reference}
BIN=${MLFS_BIN:-target/debug/mlfs-studio}
[ -x "$BIN" ] || cargo build --bin mlfs-studio
[ -x "$PY" ] || { echo "no PyTorch reference Python at $PY (see $REF/README.md)" >&2; exit 1; }
threads=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "processor: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads;" \
  "PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"

if [ "$what" = encoder ] || [ "$what" = all ]; then
  # --bench-only re-measures a trained checkpoint; its timing does not depend on the weights, so
  # the reference's two-steps-a-stage smoke run makes one.
  "$PY" "$REF/mlfs_ref.py" --model assets/minilm-l3 --data assets/sentiment --max-steps 2 --timing-skip 0 \
    --no-latency --no-verify --no-palette --threads "$threads" --out "$work/ref-train" \
    >"$work/ref-train.log" 2>&1 || { tail -20 "$work/ref-train.log"; exit 1; }
  for round in 1 2; do
    echo "encoder round $round: ours, then PyTorch" >&2
    "$BIN" bench --steps 12 >"$work/ours-enc-$round.txt"
    "$PY" "$REF/mlfs_ref.py" --model assets/minilm-l3 --data assets/sentiment --no-verify \
      --bench-only "$work/ref-train/final.pt" --bench-steps 12 --threads "$threads" \
      --out "$work/ref-enc-$round" >"$work/ref-enc-$round.log" 2>&1 ||
      { tail -20 "$work/ref-enc-$round.log"; exit 1; }
  done
  python3 - "$work" <<'PY'
import json, re, statistics, sys
work = sys.argv[1]
subnets = {"layers=0,1,2;heads=12;ffn=1536": "(3,12,1536)", "layers=0,1,2;heads=6;ffn=768": "(3,6,768)",
           "layers=1,2;heads=9;ffn=1152": "(2,9,1152)", "layers=2;heads=3;ffn=384": "(1,3,384)"}
def ours(r):
    text = open(f"{work}/ours-enc-{r}.txt").read()
    out = {"stage0": float(re.search(r"stage 0 \(maxnet only\): +([\d.]+)", text).group(1)),
           "stage12": float(re.search(r"stages 1-2 mean: +([\d.]+)", text).group(1))}
    for spec in subnets:
        m = re.search(re.escape(spec) + r" +([\d.]+)", text)
        out[spec] = float(m.group(1))
    return out
def ref(r):
    log = json.load(open(f"{work}/ref-enc-{r}/bench.json"))
    t = log["throughput_bench"]
    out = {"stage0": t["stage0"]["sec_per_step"],
           "stage12": (t["stage1"]["sec_per_step"] + t["stage2"]["sec_per_step"]) / 2}
    for spec, name in subnets.items():
        lat = log["latency"][name]
        out[spec] = lat["eager_b1_s32_ms"]; out["ort " + spec] = lat["ort_b1_s32_ms"]
    return out
o = [ours(1), ours(2)]; p = [ref(1), ref(2)]
med = lambda rows, k: statistics.median(r[k] for r in rows)
print("\nencoder (median of the two rounds; each round itself a median of 12 steps / 50 runs)")
print(f"  {'figure':<44} {'ours':>9} {'PyTorch':>9} {'ratio':>6} {'ORT':>9} {'vs ORT':>7}")
for k, label in [("stage0", "stage-0 step (maxnet), s"), ("stage12", "stage-1/2 step (4 subnets), mean, s")]:
    a, b = med(o, k), med(p, k)
    print(f"  {label:<44} {a:9.3f} {b:9.3f} {a / b:6.2f}")
for spec in subnets:
    a, b, c = med(o, spec), med(p, spec), med(p, "ort " + spec)
    print(f"  {'batch 1 x 32, ms, ' + subnets[spec]:<44} {a:9.3f} {b:9.3f} {a / b:6.2f} {c:9.3f} {a / c:7.2f}")
PY
fi

if [ "$what" = decoder ] || [ "$what" = all ]; then
  for round in 1 2; do
    for mode in full mlfs; do
      echo "decoder $mode round $round: ours, then PyTorch" >&2
      "$BIN" bench --preset "presets/code-slice20-$mode.ron" --steps 3 >"$work/ours-dec-$mode-$round.txt"
      refmode=$([ "$mode" = full ] && echo full || echo lora)
      "$PY" "$REF/decoder_step_time.py" smollm2-135m --device cpu --threads "$threads" \
        --modes "$refmode" --precs fp32 --steps 3 --warmup 1 >"$work/ref-dec-$mode-$round.txt"
    done
  done
  python3 - "$work" <<'PY'
import json, re, statistics, sys
work = sys.argv[1]
print("\ndecoder step, SmolLM2-135M shape, 20-layer student, batch 8 x 128, fp32 (median of rounds)")
print(f"  {'preset':<20} {'ours s':>8} {'PyTorch s':>10} {'ratio':>6}  peak memory (ours)")
for mode in ("full", "mlfs"):
    ours, ref, peak = [], [], ""
    for r in (1, 2):
        text = open(f"{work}/ours-dec-{mode}-{r}.txt").read()
        ours.append(float(re.search(r"([\d.]+) s/step", text).group(1)))
        m = re.search(r"peak[^\n]*", text)
        peak = m.group(0) if m else peak
        rows = [json.loads(l) for l in open(f"{work}/ref-dec-{mode}-{r}.txt") if l.startswith("{")]
        ref.append(rows[-1]["median_step_s"])
    a, b = statistics.median(ours), statistics.median(ref)
    print(f"  code-slice20-{mode:<7} {a:8.2f} {b:10.2f} {a / b:6.2f}  {peak}")
PY
fi
