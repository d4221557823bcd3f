#!/usr/bin/env bash
# Runs the studio under Xvfb, clicks through it with xdotool and saves PNGs into screenshots/.
# Needs xvfb, xdotool, imagemagick and zenity (apt; zenity answers rfd's folder dialog).
# Usage: scripts/screenshots.sh [FINISHED_RUN_DIR]  (default: a sentiment-quick run, trained first if needed)
# MLFS_BIN=target/debug/mlfs-studio uses an existing build (opt-level 3 too) instead of --release.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MLFS_BIN:-}" ]; then
  cargo build --release --bin mlfs-studio
fi
BIN=${MLFS_BIN:-./target/release/mlfs-studio}
RUN=${1:-runs/screenshots}
if [ ! -f "$RUN/palette.csv" ]; then
  rm -rf "$RUN"
  $BIN train --preset presets/sentiment-quick.ron --out "$RUN"
fi
export DISPLAY=:77
Xvfb :77 -screen 0 1500x950x24 >/dev/null 2>&1 &
XVFB=$!
APP=""
trap 'kill $APP $XVFB ${HEADLESS:-} 2>/dev/null || true' EXIT
sleep 1
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
mkdir -p screenshots
shot() { import -window root "screenshots/$1.png"; }
wait_window() { sleep "${SHOT_WAIT:-6}"; WIN=$(xdotool search --name "MLFS Studio" | head -1); xdotool windowsize "$WIN" 1480 920 windowmove "$WIN" 0 0; sleep 1; }

# 1. Fresh start: configuration panel; Start; training in progress. The run it starts is
#    stopped part-way, so it is removed afterwards (it would show in later screenshots).
mkdir -p runs
BEFORE=$(ls runs)
$BIN & APP=$!
wait_window
shot studio-start
xdotool mousemove 30 36 click 1          # Start
sleep "${SHOT_TRAIN:-60}"
shot studio-training
kill $APP; sleep 1
# Only the run Start made (sentiment-quick, named by date and time): other programs may be
# writing new runs into runs/ meanwhile.
for dir in runs/sentiment-quick-*; do
  [ -e "$dir" ] || continue
  grep -qxF "$(basename "$dir")" <<<"$BEFORE" || rm -rf "$dir"
done

# 2. A finished run: Pareto tab, a subnet selected with its tooltip, then exported.
# (A fresh settings folder: no "resume the unfinished run" banner shifting the layout.)
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
# The export dialog opens in the working folder with a new folder's name filled in.
EXPORT=/tmp/mlfs-screenshot-export
rm -rf "$EXPORT"; mkdir -p "$EXPORT"
ROOT=$(pwd)
(cd "$EXPORT" && exec "$ROOT/$BIN" --run "$ROOT/$RUN") & APP=$!
wait_window
xdotool mousemove 448 579 click 1        # first table row
sleep 1
xdotool mousemove 480 579                # hover: the row's metrics tooltip
sleep 2
shot studio-pareto
xdotool mousemove 695 502 click 1        # Export selected… (after the Export as choice)
sleep 4
xdotool key Return                       # the save dialog's suggested new folder, exported-subnet
xdotool mousemove 1000 300               # move off the button so its tooltip closes
sleep 8
shot studio-export
ls "$EXPORT"
# The search under a latency budget (the budget control's median), live, then measured.
xdotool mousemove 421 98 click 1         # Search under a budget (opens the section)
sleep 1
xdotool mousemove 431 167 click 1        # Latency budget (ms)
sleep 1
xdotool mousemove 648 121 click 1        # Start search
sleep "${SHOT_SEARCH:-8}"
xdotool mousemove 1000 300
shot studio-search-live
sleep "${SHOT_SEARCH_END:-90}"
shot studio-search

# 3. A run the watchdog stopped: sentiment-quick with stage 1 at lr 0.99, no warm-up or clipping.
DIVERGED=runs/screenshots-diverged
if [ ! -f "$DIVERGED/config.ron" ]; then
  awk '/Steps\(40\)/ && !done { sub(/learning_rate: 0.002, warmup_ratio: 0.1/, "learning_rate: 0.99, warmup_ratio: 0.0"); done = 1 }
       { sub(/checkpoint_every: 50,/, "checkpoint_every: 20, grad_clip: 0.0,"); print }' \
      presets/sentiment-quick.ron > /tmp/mlfs-diverging.ron
  $BIN train --preset /tmp/mlfs-diverging.ron --out "$DIVERGED" || true
fi
kill $APP 2>/dev/null || true; sleep 1
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
$BIN --run "$DIVERGED" & APP=$!
wait_window
shot studio-diverged

# 4. The Runs tab and two runs' Pareto fronts compared: the gamma ablation from docs/ablations
#    (trained on an H200), copied into the runs folder and touched so they sort first, by name.
for pair in "sentiment-full compare-gamma-0.5" "ablation-no-gradient-scaling compare-gamma-0"; do
  set -- $pair
  rm -rf "runs/$2"; cp -r "docs/ablations/$1" "runs/$2"; touch "runs/$2/config.ron"
done
kill $APP 2>/dev/null || true; sleep 1
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
$BIN --run runs/compare-gamma-0.5 & APP=$!
wait_window
xdotool mousemove 547 67 click 1         # Runs tab
sleep 2
shot studio-runs
xdotool mousemove 763 144 click 1        # Overlay: compare-gamma-0 (first row)
sleep 1
xdotool mousemove 436 67 click 1         # Pareto tab
sleep 2
xdotool mousemove 700 900                # off the charts: no hover label
sleep 1
shot studio-compare
xdotool mousemove 368 67 click 1         # Training tab: both runs' curves, the legends above
sleep 2
xdotool mousemove 700 900
sleep 1
shot studio-training-compare
# The same window at 1000×700: the settings panel gives way, the Runs table's essential
# columns stay in view.
WIN=$(xdotool search --name "MLFS Studio" | head -1)
xdotool windowsize "$WIN" 1000 700
sleep 2
xdotool mousemove 217 67 click 1         # Runs tab (the tabs start at the left edge now)
sleep 2
import -window root -crop 1000x700+0+0 screenshots/studio-small-window.png
xdotool mousemove 40 67 click 1          # Training tab: the legends wrap, nothing is cut
sleep 2
xdotool mousemove 990 690
sleep 1
import -window root -crop 1000x700+0+0 screenshots/studio-small-training.png

# 5. A headless run beside the studio: the Runs tab follows it live, and so do its curves.
LIVE=runs/screenshots-live
rm -rf "$LIVE"
kill $APP 2>/dev/null || true; sleep 1
$BIN train --preset presets/sentiment-quick.ron --out "$LIVE" >/dev/null 2>&1 & HEADLESS=$!
export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d)
$BIN & APP=$!
wait_window
xdotool mousemove 547 67 click 1         # Runs tab
sleep "${SHOT_LIVE:-20}"
xdotool mousemove 1000 900
shot studio-runs-live
xdotool mousemove 400 144 click 1        # the live run (newest, first row): opens its curves
sleep "${SHOT_LIVE:-20}"
xdotool mousemove 1000 900
shot studio-follow-live
kill $HEADLESS 2>/dev/null || true; sleep 1
rm -rf "$LIVE"

# 6. Decoder views, when the four code-* runs are there.
if ls runs/code-random20/supernet.safetensors >/dev/null 2>&1; then
  kill $APP $XVFB 2>/dev/null || true
  MLFS_BIN=$BIN scripts/screenshots-decoder.sh
fi
