#!/usr/bin/env bash
# Decoder screenshots: the code-slice20-*/code-random20 comparison runs overlaid in the Training
# tab, the measured-subnet table and "Try it" completing a prompt (needs runs/code-slice20-mlfs
# and at least one other of them finished: `mlfs-studio train --preset presets/NAME.ron --out
# runs/NAME`), and the decoder palette's Pareto tab (runs/code-supernet-quick). Needs xvfb,
# xdotool, imagemagick.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# MLFS_BIN=target/debug/mlfs-studio uses an existing build (opt-level 3 too) instead of --release.
BIN=$(realpath "${MLFS_BIN:-$ROOT/target/release/mlfs-studio}")
[ -x "$BIN" ] || cargo build --release --bin mlfs-studio
# The comparison shots open code-slice20-mlfs and overlay the other finished ones (their
# checkboxes' x positions in OVERLAY_X, in name order).
COMPARE=0
WORK=$(mktemp -d)
mkdir -p "$WORK/runs"
if [ -f runs/code-slice20-mlfs/supernet.safetensors ]; then
  for r in code-random20 code-slice20-alpha0 code-slice20-full code-slice20-mlfs; do
    if [ -f "runs/$r/supernet.safetensors" ]; then
      ln -s "$ROOT/runs/$r" "$WORK/runs/"
      COMPARE=$((COMPARE + 1))
    else
      echo "runs/$r is not finished: left out of the comparison" >&2
    fi
  done
fi
[ "$COMPARE" -ge 2 ] || COMPARE=0
export DISPLAY=:78
Xvfb :78 -screen 0 1500x950x24 >/dev/null 2>&1 &
XVFB=$!
APP=""
trap 'kill $APP $XVFB 2>/dev/null || true' EXIT
sleep 1
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
mkdir -p screenshots
shot() { import -window root "$ROOT/screenshots/$1.png"; }
if [ "$COMPARE" != 0 ]; then
(cd "$WORK" && exec "$BIN" --run runs/code-slice20-mlfs) & APP=$!
sleep "${SHOT_WAIT:-8}"
WIN=$(xdotool search --name "MLFS Studio" | head -1)
xdotool windowsize "$WIN" 1480 920 windowmove "$WIN" 0 0
sleep 1
xdotool mousemove 481 67 click 1          # Training tab
sleep 1
# Overlay the other three runs (checkboxes of the "Compare runs" row).
for x in ${OVERLAY_X:-572 691 831}; do
  xdotool mousemove "$x" "${OVERLAY_Y:-144}" click 1
  sleep 0.5
done
xdotool mousemove 1000 600
sleep 2
shot studio-decoder-compare
xdotool mousemove "${PARETO_X:-549}" "${TABS_Y:-67}" click 1   # Pareto: measured subnets
sleep 2
shot studio-decoder-subnets
xdotool mousemove "${TRY_X:-606}" "${TABS_Y:-67}" click 1      # Try it
sleep 1
xdotool mousemove 800 "${PROMPT_Y:-160}" click 1
sleep 1
xdotool windowfocus --sync "$WIN" || true
xdotool type --delay 30 'def is_prime(n):'
sleep 1
xdotool mousemove "${COMPLETE_X:-636}" "${COMPLETE_Y:-232}" click 1
sleep "${SHOT_TRY:-40}"
shot studio-decoder-try
fi

# The decoder palette's Pareto tab, when a code-supernet-quick run is there.
if [ -f runs/code-supernet-quick/lm-palette.csv ]; then
  kill $APP 2>/dev/null || true; sleep 1
  export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
  (cd "$WORK" && exec "$BIN" --run "$ROOT/runs/code-supernet-quick") & APP=$!
  sleep "${SHOT_WAIT:-8}"
  WIN=$(xdotool search --name "MLFS Studio" | head -1)
  xdotool windowsize "$WIN" 1480 920 windowmove "$WIN" 0 0
  sleep 1
  xdotool mousemove "${PARETO_X:-549}" "${TABS_Y:-67}" click 1
  sleep 2
  xdotool mousemove 1000 900
  sleep 1
  shot studio-decoder-palette
fi
