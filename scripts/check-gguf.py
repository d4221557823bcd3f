#!/usr/bin/env python3
"""Reads a GGUF export with llama.cpp's own Python reader (gguf-py, `pip install gguf`) and
checks what llama.cpp needs: llama architecture, shape metadata, tokenizer, every tensor of every
block with the expected shape and an f16/f32 type. Usage: check-gguf.py FILE.gguf"""
import sys

import gguf

path = sys.argv[1]
r = gguf.GGUFReader(path)


def field(name):
    f = r.fields.get(name)
    if f is None:
        sys.exit(f"{path}: missing metadata {name}")
    return f.parts[f.data[0]]


def scalar(name):
    return int(field(name)[0])


arch = bytes(field("general.architecture")).decode()
assert arch == "llama", arch
blocks = scalar("llama.block_count")
d = scalar("llama.embedding_length")
ffn = scalar("llama.feed_forward_length")
heads = scalar("llama.attention.head_count")
kv = scalar("llama.attention.head_count_kv")
head_dim = scalar("llama.attention.key_length") if "llama.attention.key_length" in r.fields else d // heads
tokens = r.fields["tokenizer.ggml.tokens"]
vocab = len(tokens.data)
names = {t.name: t for t in r.tensors}
want = {"token_embd.weight": [d, vocab], "output_norm.weight": [d]}
for i in range(blocks):
    want |= {
        f"blk.{i}.attn_norm.weight": [d],
        f"blk.{i}.ffn_norm.weight": [d],
        f"blk.{i}.attn_q.weight": [d, heads * head_dim],
        f"blk.{i}.attn_k.weight": [d, kv * head_dim],
        f"blk.{i}.attn_v.weight": [d, kv * head_dim],
        f"blk.{i}.attn_output.weight": [heads * head_dim, d],
        f"blk.{i}.ffn_gate.weight": [d, ffn],
        f"blk.{i}.ffn_up.weight": [d, ffn],
        f"blk.{i}.ffn_down.weight": [ffn, d],
    }
for name, shape in want.items():
    t = names.get(name)
    if t is None:
        sys.exit(f"{path}: missing tensor {name}")
    if list(map(int, t.shape)) != shape:
        sys.exit(f"{path}: {name} has shape {list(t.shape)}, expected {shape}")
    if t.tensor_type not in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32):
        sys.exit(f"{path}: {name} has type {t.tensor_type.name}")
print(f"{path}: llama, {blocks} blocks, hidden {d}, {heads} heads ({kv} KV) of {head_dim}, "
      f"FFN {ffn}, vocabulary {vocab}, {len(r.tensors)} tensors: OK")
