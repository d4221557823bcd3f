#!/usr/bin/env bash
# Searches a trained run at three latency budgets (fractions of its maxnet's latency as timed
# now by `bench --run`) and keeps each budget's search.json and search.csv under docs/search/.
# The run's latency table is timed once first, on this machine; each search then scales it to
# the machine's speed as it starts (a shared VM's speed drifts by a fifth within minutes) and
# reports the factor (table_calibration) and what drift remained at verification
# (table_drift_pct) in its search.json.
# Usage: scripts/search-budgets.sh RUN [FRACTIONS...]   (default 0.4 0.6 0.8); more `search`
# options in SEARCH_ARGS (e.g. SEARCH_ARGS="--top-k 4").
set -euo pipefail
run="$1"; shift
fractions=("$@")
[ $# -eq 0 ] && fractions=(0.4 0.6 0.8)
bin="${MLFS_BIN:-target/release/mlfs-studio}"
name="$(basename "$run")"
"$bin" latency-table --run "$run" >&2
maxnet_ms="$("$bin" bench --run "$run" | awk 'NR>3 && /ms/ {print $3; exit}')"
echo "maxnet measured at ${maxnet_ms} ms" >&2
for f in "${fractions[@]}"; do
  budget="$(python3 -c "print(round($f * $maxnet_ms, 3))")"
  out="docs/search/$name-latency-$budget"
  mkdir -p "$out"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$bin" search --run "$run" --budget "latency_ms=$budget" ${SEARCH_ARGS:-} | tee "$out/summary.txt"
  echo "wall seconds: $(( $(date +%s) - start ))" >> "$out/summary.txt"
  cp "$run/search.json" "$run/search.csv" "$run/latency-table.csv" "$out/"
done
