#!/usr/bin/env bash
# Runs the studio under Xvfb, clicks through it and saves screenshots into screenshots/.
# Needs: xvfb, xdotool, imagemagick (apt). Usage: scripts/screenshots.sh [RUN_DIR_TO_RESUME]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin mlfs-studio
export DISPLAY=:77
Xvfb :77 -screen 0 1500x950x24 >/dev/null 2>&1 &
XVFB=$!
trap 'kill $APP $XVFB 2>/dev/null || true' EXIT
sleep 1
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
./target/debug/mlfs-studio &
APP=$!
sleep "${SHOT_WAIT:-6}"
WIN=$(xdotool search --name "MLFS Studio" | head -1)
xdotool windowsize "$WIN" 1480 920 windowmove "$WIN" 0 0
sleep 1
mkdir -p screenshots
import -window root screenshots/studio-start.png
# Click Start (top-left of the run bar) and capture the live curves.
xdotool mousemove 30 36 click 1
sleep "${SHOT_TRAIN:-90}"
import -window root screenshots/studio-training.png
# Wait for the end of the run and its palette, then open the Pareto tab and pick a point.
sleep "${SHOT_PALETTE:-240}"
xdotool mousemove 436 67 click 1
sleep 2
import -window root screenshots/studio-pareto.png
