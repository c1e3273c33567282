#!/usr/bin/env python3
"""Writes a synthetic Llama-shaped checkpoint laid out as Hugging Face's save_pretrained does: fp16 shards
model-0000i-of-0000n.safetensors beside model.safetensors.index.json, for timing netquant on sharded models.

    bench/make_sharded_checkpoint.py OUT_DIR [--kind weights|importance] [--layers 8] [--dim 1024] [--mlp 2816]
                                     [--vocab 32000] [--shards 3] [--seed 5]

Weights are 0.02 * Student-t(4), importances Gamma(0.7, 1), both stored as float16. Needs only NumPy.
"""
import argparse
import json
import os

import numpy as np


def shapes(layers, d, f, vocab):
    out = {"model.embed_tokens.weight": (vocab, d)}
    for layer in range(layers):
        p = f"model.layers.{layer}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{n}.weight"] = (d, d)
        out[p + "mlp.gate_proj.weight"] = (f, d)
        out[p + "mlp.up_proj.weight"] = (f, d)
        out[p + "mlp.down_proj.weight"] = (d, f)
        out[p + "input_layernorm.weight"] = (d,)
        out[p + "post_attention_layernorm.weight"] = (d,)
    out["model.norm.weight"] = (d,)
    out["lm_head.weight"] = (vocab, d)
    return out


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype="<f2").tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--kind", choices=("weights", "importance"), default="weights")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--mlp", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed + (a.kind == "importance"))
    table = shapes(a.layers, a.dim, a.mlp, a.vocab)
    names = list(table)
    os.makedirs(a.out, exist_ok=True)
    weight_map, total = {}, 0
    for s in range(a.shards):
        file = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        part = {}
        for i, name in enumerate(names):
            if i * a.shards // len(names) != s:
                continue
            shape = table[name]
            x = 0.02 * rng.standard_t(4, shape) if a.kind == "weights" else rng.gamma(0.7, 1.0, shape)
            part[name] = x.astype(np.float16)
            weight_map[name] = file
            total += part[name].nbytes
        write_safetensors(os.path.join(a.out, file), part)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"{a.out}: {sum(int(np.prod(s)) for s in table.values())} parameters in {a.shards} shards")


if __name__ == "__main__":
    main()
