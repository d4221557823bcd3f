#!/usr/bin/env python3
"""Reads a GGUF export with llama.cpp's own Python reader (gguf-py, `pip install gguf`) and
checks what llama.cpp needs: llama or deci architecture, shape metadata (per block for deci),
tokenizer, every tensor of every block with the expected shape and an f16/f32 type. With a Hugging Face export of the same subnet
(`pip install safetensors numpy`), every tensor must equal the Hugging Face one after llama.cpp's
own Q/K permutation (the formula of its convert_hf_to_gguf.py).
Usage: check-gguf.py FILE.gguf [HF_FOLDER]"""
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
# `llama` (uniform subnets, scalar keys) or `deci` (per-layer subnets: head counts and FFN width
# are arrays of one entry per block, as llama.cpp's DeciModel writes them).
assert arch in ("llama", "deci"), arch
blocks = scalar(f"{arch}.block_count")
d = scalar(f"{arch}.embedding_length")


def per_block(name):
    f = r.fields.get(name)
    if f is None:
        sys.exit(f"{path}: missing metadata {name}")
    values = [int(f.parts[i][0]) for i in f.data]
    if len(values) == 1 and arch == "llama":
        return values * blocks
    if len(values) != blocks:
        sys.exit(f"{path}: {name} has {len(values)} values for {blocks} blocks")
    return values


ffns = per_block(f"{arch}.feed_forward_length")
heads_of = per_block(f"{arch}.attention.head_count")
kvs = per_block(f"{arch}.attention.head_count_kv")
heads, kv = heads_of[0], kvs[0]
key_length = f"{arch}.attention.key_length"
head_dim = scalar(key_length) if key_length in r.fields else d // heads
tokens = r.fields["tokenizer.ggml.tokens"]
vocab = len(tokens.data)
names = {t.name: t for t in r.tensors}
want = {"token_embd.weight": [d, vocab], "output_norm.weight": [d]}
for i in range(blocks):
    ffn, heads, kv = ffns[i], heads_of[i], kvs[i]
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
shown = lambda v: str(v[0]) if len(set(v)) == 1 else "/".join(map(str, v))
print(f"{path}: {arch}, {blocks} blocks, hidden {d}, {shown(heads_of)} heads ({shown(kvs)} KV) of "
      f"{head_dim}, FFN {shown(ffns)}, vocabulary {vocab}, {len(r.tensors)} tensors: OK")

if len(sys.argv) > 2:
    import numpy as np
    from safetensors.numpy import load_file

    hf = load_file(sys.argv[2] + "/model.safetensors")

    def permute(w, n_head):
        # llama.cpp convert_hf_to_gguf.py: LlamaModel.permute
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    parts = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    worst = 0.0
    for t in r.tensors:
        if t.name == "token_embd.weight":
            ref = hf["model.embed_tokens.weight"]
        elif t.name == "output_norm.weight":
            ref = hf["model.norm.weight"]
        else:
            _, i, part, _ = t.name.split(".")
            ref = hf[f"model.layers.{i}.{parts[part]}.weight"]
            if part == "attn_q":
                ref = permute(ref, heads_of[int(i)])
            elif part == "attn_k":
                ref = permute(ref, kvs[int(i)])
        ours = np.asarray(t.data, dtype=np.float32).reshape(ref.shape)
        err = float(np.max(np.abs(ours - ref)) / max(1e-6, float(np.max(np.abs(ref)))))
        worst = max(worst, err)
        if err > 2e-3:
            sys.exit(f"{t.name}: differs from the Hugging Face tensor (relative {err:.2e})")
    print(f"every tensor equals the Hugging Face export after llama.cpp's Q/K permutation (worst relative {worst:.1e})")
