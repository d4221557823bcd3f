#!/usr/bin/env python3
"""Checks an ONNX export of mlfs-studio in ONNX Runtime, beside mlfs-studio's own engine.

    scripts/check-onnx.py MODEL_DIR TEXTS [--bin PATH] [--seq-len 32] [--runs 50] [--write-manifest]

MODEL_DIR comes from `mlfs-studio export --format onnx`; TEXTS is one text per line or a JSONL
file of {"text": ...} objects (as `mlfs-studio predict` reads). The script
  1. validates the graph with onnx.checker (full check, shape inference),
  2. loads it in ONNX Runtime (CPU) and lists the fused kernels ORT's optimiser made,
  3. runs every text at batch 1 in ORT and compares logits and labels with
     `mlfs-studio predict` on the same folder (our engine reads the same file's weights),
  4. times batch-1 inference on the palette's probe input (SEQ_LEN tokens): ORT's median and
     p90 of RUNS after warm-up, beside `mlfs-studio latency` on the same folder.
With --write-manifest, ORT's figures go into the folder's manifest.json under "onnxruntime".
Exits 1 when logits differ by more than 1e-4 or any label differs.

Needs Python packages: onnx, onnxruntime, tokenizers, numpy.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import tokenizers

TOLERANCE = 1e-4


def processor():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_texts(path):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            texts.append(json.loads(line)["text"] if path.endswith(".jsonl") else line.rstrip("\n"))
    if not texts:
        sys.exit(f"{path}: no texts in file")
    return texts


def probe_ids(seq_len):
    """The palette's latency probe (src/eval/latency.rs): [CLS], fixed ids, [SEP]."""
    ids = [2000 + (i * 37) % 5000 for i in range(seq_len)]
    ids[0], ids[-1] = 101, 102
    return np.array([ids], dtype=np.int64), np.ones((1, seq_len), dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("texts")
    ap.add_argument("--bin", default=os.environ.get("MLFS_BIN", "target/release/mlfs-studio"))
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--write-manifest", action="store_true")
    a = ap.parse_args()

    path = os.path.join(a.model_dir, "model.onnx")
    if not os.path.isfile(path):
        sys.exit(f"{path}: file is missing (export with --format onnx)")
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    print(f"onnx.checker: valid (opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
          f"ops: {', '.join(sorted({n.op_type for n in model.graph.node}))})")

    ort.set_default_logger_severity(2)  # warnings and errors reach stderr
    # What ORT's portable (extended) optimisations make of the graph, saved to look at;
    # the session that runs uses every optimisation (ORT's default).
    inspect = ort.SessionOptions()
    inspect.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    inspect.optimized_model_filepath = os.path.join(tempfile.mkdtemp(), "optimized.onnx")
    ort.InferenceSession(path, inspect, providers=["CPUExecutionProvider"])
    fused = Counter(n.op_type for n in onnx.load(inspect.optimized_model_filepath).graph.node)
    print("ONNX Runtime", ort.__version__, "optimised graph:",
          ", ".join(f"{k} {v}" for k, v in sorted(fused.items())))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    config = json.load(open(os.path.join(a.model_dir, "config.json")))
    tok = tokenizers.Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(config.get("max_position_embeddings", 512))
    texts = read_texts(a.texts)

    ours = subprocess.run([a.bin, "predict", "--model", a.model_dir, "--texts-file", a.texts],
                          check=True, capture_output=True, text=True).stdout
    # Split on newlines only: texts may hold other line separators (U+2028), which JSON keeps.
    ours = [json.loads(line) for line in ours.split("\n") if line]
    if len(ours) != len(texts):
        sys.exit(f"predict gave {len(ours)} lines for {len(texts)} texts")
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    worst, disagree = 0.0, 0
    for text, mine in zip(texts, ours):
        e = tok.encode(text)
        feed = {"input_ids": np.array([e.ids], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask], dtype=np.int64)}
        logits = session.run(["logits"], feed)[0][0]
        worst = max(worst, float(np.max(np.abs(logits - np.array(mine["logits"])))))
        disagree += labels[int(np.argmax(logits))] != mine["label"]
    print(f"{len(texts)} texts: max |logit difference| ORT vs predict {worst:.2e} "
          f"(tolerance {TOLERANCE:g}), labels differ on {disagree}")

    ids, mask = probe_ids(a.seq_len)
    feed = {"input_ids": ids, "attention_mask": mask}
    for _ in range(a.warmup):
        session.run(["logits"], feed)
    samples = []
    for _ in range(a.runs):
        started = time.perf_counter()
        session.run(["logits"], feed)
        samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    # Nearest rank, as src/eval/latency.rs.
    pct = lambda q: samples[min(len(samples) - 1, max(0, int(np.ceil(q * len(samples))) - 1))]
    ort_median, ort_p90 = pct(0.5), pct(0.9)
    mine = json.loads(subprocess.run([a.bin, "latency", "--model", a.model_dir, "--seq-len", str(a.seq_len),
                                      "--runs", str(a.runs)], check=True, capture_output=True, text=True).stdout)
    cpu = processor()
    print(f"batch 1 x {a.seq_len} tokens on {cpu} ({os.cpu_count()} logical CPUs), median / p90 of {a.runs}:")
    print(f"  ONNX Runtime {ort.__version__}: {ort_median:.3f} / {ort_p90:.3f} ms")
    print(f"  mlfs-studio:        {mine['median_ms']:.3f} / {mine['p90_ms']:.3f} ms "
          f"({mine['median_ms'] / ort_median:.2f}x ORT's median)")

    if a.write_manifest:
        manifest_path = os.path.join(a.model_dir, "manifest.json")
        manifest = json.load(open(manifest_path))
        manifest["onnxruntime"] = {
            "version": ort.__version__, "provider": "CPUExecutionProvider", "processor": cpu,
            "logical_cpus": os.cpu_count(), "batch": 1, "seq_len": a.seq_len, "runs": a.runs,
            "latency_ms_median": round(ort_median, 4), "latency_ms_p90": round(ort_p90, 4),
            "mlfs_studio_latency_ms_median": round(mine["median_ms"], 4),
            "max_abs_logit_difference_vs_predict": worst, "texts_compared": len(texts),
            "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        tmp = manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
        os.replace(tmp, manifest_path)
        print(f"wrote ORT's figures into {manifest_path}")
    if worst > TOLERANCE or disagree:
        sys.exit(1)


if __name__ == "__main__":
    main()
