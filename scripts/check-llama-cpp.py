#!/usr/bin/env python3
"""Loads a GGUF export in llama.cpp itself (through llama-cpp-python, which builds llama.cpp from
source: `pip install llama-cpp-python`) and checks that its next-token choice agrees with our own
`mlfs-studio forward` on the same token ids: the top-1 token at every position of every text must
be the same on at least 95 % of positions (f16 exports round differently, so a few near-ties may
flip). Works for `llama` (uniform) and `deci` (per-layer) exports alike; prints the architecture
llama.cpp read, the agreement and the largest logit difference on the positions compared.

Usage: check-llama-cpp.py FILE.gguf TEXTS_FILE [MLFS_BIN]
  TEXTS_FILE: one text per line; MLFS_BIN defaults to target/release/mlfs-studio, then
  target/debug/mlfs-studio."""
import json
import os
import subprocess
import sys

import numpy as np
from llama_cpp import Llama

if len(sys.argv) < 3:
    sys.exit(__doc__)
gguf_path, texts_path = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
candidates = [sys.argv[3]] if len(sys.argv) > 3 else [
    os.path.join(root, "target/release/mlfs-studio"),
    os.path.join(root, "target/debug/mlfs-studio"),
]
binary = next((b for b in candidates if os.path.isfile(b)), None)
if binary is None:
    sys.exit(f"no mlfs-studio binary among {candidates}: build it first (cargo build)")

ours = json.loads(subprocess.run(
    [binary, "forward", "--model", gguf_path, "--texts-file", texts_path],
    check=True, capture_output=True, text=True).stdout)

longest = max(len(ids) for ids in ours["input_ids"])
llm = Llama(model_path=gguf_path, n_ctx=max(longest, 32), n_batch=max(longest, 32),
            logits_all=True, verbose=False, n_threads=os.cpu_count() or 1)
arch = llm.metadata.get("general.architecture", "?")

agree = total = 0
worst = 0.0
for ids, top10 in zip(ours["input_ids"], ours["logits_top10"]):
    llm.reset()
    llm.eval(ids)
    scores = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    for pos, row in enumerate(top10):
        best_ours = row[0][0]
        best_theirs = int(np.argmax(scores[pos]))
        agree += best_ours == best_theirs
        total += 1
        for token, logit in row:
            worst = max(worst, abs(scores[pos][token] - logit))

share = agree / max(total, 1)
print(f"{gguf_path}: llama.cpp read architecture '{arch}'; next-token top-1 equal to "
      f"`forward` on {agree} of {total} positions ({share:.1%}); largest difference among our "
      f"top-10 logits {worst:.4f}")
if share < 0.95:
    sys.exit("FAIL: fewer than 95 % of positions agree")
print("OK")
