#!/usr/bin/env python3
"""Independent numpy reference for hipserve's Llama forward pass (the models issue, item 5).

Reads the default model (SmolLM2-135M-Instruct, GGUF Q4_1 with a Q8_0 token embedding) with
the `gguf` package, dequantises every tensor with its own code (not gguf.quants, not hipserve's
loader), and runs the Llama forward pass in float64 on the *raw* GGUF weights. llama.cpp's
converter permutes the Q/K rows of each head from Hugging Face's "rotate halves" order into the
interleaved order that GGML's NORM RoPE expects, so this script applies interleaved RoPE (pairs
(2i, 2i+1)) to the unpermuted GGUF rows, while hipserve un-permutes the rows at load time and
applies HF's half-split RoPE. The two paths agree only if the permutation is handled correctly.

Writes tests/data/reference/smollm2_logits.json: for each fixed prompt (token ids committed
below, with the text they encode), the top-20 ids and logits of the last position, the full
argmax, and for prompt GREEDY_PROMPT a greedy continuation of --greedy-steps tokens with the
top-1/top-2 logit margin of each step.

Usage:
  scripts/reference/logits_reference.py [--model PATH] [--out PATH] [--dtype float64|float32]
                                        [--greedy-steps 16] [--compare PATH]
  --dtype float32 runs the same maths in fp32; with --compare it reports how far an fp32
  implementation lands from the committed fp64 numbers (this sets the C++ test's tolerance).
Requires: numpy, gguf (pip install numpy gguf).
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from gguf import GGUFReader

# Fixed prompts. The ids were produced by a byte-level BPE built from the GGUF's own vocab and
# merges (HF `tokenizers`); the C++ test also checks that hipserve's tokenizer encodes each
# text to exactly these ids. Prompt 0 is the model's ChatML chat format.
PROMPTS = [
    {
        "name": "chat_capital",
        "text": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                "<|im_start|>assistant\n",
        "ids": [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198],
    },
    {
        "name": "quick_brown_fox",
        "text": "The quick brown fox jumps over the lazy dog. The quick brown fox",
        "ids": [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 378, 2365, 6354,
                16438],
    },
    {
        "name": "python_fibonacci",
        "text": "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
        "ids": [1604, 3987, 46477, 24, 94, 727, 472, 585, 304, 2067, 216, 34, 42, 448, 1003,
                304, 472, 1003],
    },
]
TOP_K = 20
GREEDY_PROMPT = 2  # python_fibonacci: 16 tokens of code, no EOS on the way

# GGML type ids (ggml.h): F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8.
QK = 32


def dequant(tensor):
    """Returns the tensor as float64 [rows, cols] (cols = ne0, the contiguous dimension)."""
    t = int(tensor.tensor_type)
    ne = [int(x) for x in tensor.shape]  # ne0 first
    cols = ne[0]
    rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
    raw = np.asarray(tensor.data)
    if t == 0:
        return raw.astype(np.float64).reshape(rows, cols)
    if t == 1:
        return raw.view(np.float16).astype(np.float64).reshape(rows, cols)
    blocks = raw.reshape(-1).view(np.uint8)
    if t == 3:  # Q4_1: f16 d, f16 m, 16 bytes of nibbles; low nibbles = 0..15, high = 16..31
        b = blocks.reshape(-1, 20)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float64)
        m = b[:, 2:4].copy().view(np.float16).astype(np.float64)
        qs = b[:, 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)
        return (q * d + m).reshape(rows, cols)
    if t == 8:  # Q8_0: f16 d, 32 int8
        b = blocks.reshape(-1, 34)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float64)
        q = b[:, 2:34].copy().view(np.int8).astype(np.float64)
        return (q * d).reshape(rows, cols)
    if t == 2:  # Q4_0: f16 d, 16 bytes; value = d * (nibble - 8)
        b = blocks.reshape(-1, 18)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float64)
        qs = b[:, 2:18]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64) - 8.0
        return (q * d).reshape(rows, cols)
    raise ValueError(f"{tensor.name}: unsupported GGML type {t}")


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(v).decode()
    return v.tolist()[0]


class Llama:
    def __init__(self, path, dtype):
        r = GGUFReader(path)
        self.dtype = dtype
        arch = field(r, "general.architecture")
        assert arch == "llama", arch
        self.n_layers = int(field(r, "llama.block_count"))
        self.n_heads = int(field(r, "llama.attention.head_count"))
        self.n_kv = int(field(r, "llama.attention.head_count_kv"))
        self.hidden = int(field(r, "llama.embedding_length"))
        self.head_dim = self.hidden // self.n_heads
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(field(r, "llama.rope.freq_base"))
        t = {x.name: x for x in r.tensors}
        w = lambda name: dequant(t[name]).astype(dtype)
        self.embd = w("token_embd.weight")  # [vocab, hidden]
        self.lm_head = w("output.weight") if "output.weight" in t else self.embd  # tied
        self.out_norm = w("output_norm.weight").reshape(-1)
        self.layers = []
        for i in range(self.n_layers):
            p = f"blk.{i}."
            self.layers.append({
                "attn_norm": w(p + "attn_norm.weight").reshape(-1),
                "wq": w(p + "attn_q.weight"), "wk": w(p + "attn_k.weight"),
                "wv": w(p + "attn_v.weight"), "wo": w(p + "attn_output.weight"),
                "ffn_norm": w(p + "ffn_norm.weight").reshape(-1),
                "gate": w(p + "ffn_gate.weight"), "up": w(p + "ffn_up.weight"),
                "down": w(p + "ffn_down.weight"),
            })
        self.vocab = self.embd.shape[0]

    def rmsnorm(self, x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * g

    def rope_interleaved(self, x, pos):
        # x: [T, heads, head_dim]; GGML NORM mode: rotate pairs (2i, 2i+1) by pos * theta^(-2i/d).
        d = self.head_dim
        inv = self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        c = np.cos(ang).astype(self.dtype)[:, None, :]
        s = np.sin(ang).astype(self.dtype)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def forward(self, ids):
        """Logits [T, vocab] for every position (no KV cache: a full causal pass)."""
        T = len(ids)
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv
        x = self.embd[np.asarray(ids)]
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf, dtype=self.dtype), k=1)
        scale = self.dtype(1.0 / np.sqrt(hd)) if self.dtype is np.float32 else 1.0 / np.sqrt(hd)
        for L in self.layers:
            h = self.rmsnorm(x, L["attn_norm"])
            q = (h @ L["wq"].T).reshape(T, nh, hd)
            k = (h @ L["wk"].T).reshape(T, nkv, hd)
            v = (h @ L["wv"].T).reshape(T, nkv, hd)
            q = self.rope_interleaved(q, pos)
            k = self.rope_interleaved(k, pos)
            out = np.empty((T, nh, hd), dtype=self.dtype)
            g = nh // nkv
            for head in range(nh):
                kh, vh = k[:, head // g], v[:, head // g]
                s = (q[:, head] @ kh.T) * scale + mask
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=1, keepdims=True)
                out[:, head] = p @ vh
            x = x + out.reshape(T, nh * hd) @ L["wo"].T
            h = self.rmsnorm(x, L["ffn_norm"])
            gate = h @ L["gate"].T
            up = h @ L["up"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ L["down"].T
        x = self.rmsnorm(x, self.out_norm)
        return x @ self.lm_head.T


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(
        os.environ.get("HIPSERVE_MODEL_CACHE", os.path.expanduser("~/.cache/hipserve/models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(repo, "tests/data/reference/smollm2_logits.json"))
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--greedy-steps", type=int, default=16)
    ap.add_argument("--compare", help="instead of writing, compare against this JSON and report")
    args = ap.parse_args()
    dtype = np.float64 if args.dtype == "float64" else np.float32

    t0 = time.time()
    model = Llama(args.model, dtype)
    print(f"loaded {args.model} in {time.time() - t0:.1f}s ({model.n_layers} layers, "
          f"vocab {model.vocab})", file=sys.stderr)
    results = []
    for i, p in enumerate(PROMPTS):
        logits = model.forward(p["ids"])[-1]
        order = np.argsort(-logits, kind="stable")
        entry = {
            "name": p["name"], "text": p["text"], "ids": p["ids"],
            "argmax": int(order[0]),
            "top_ids": [int(j) for j in order[:TOP_K]],
            "top_logits": [float(logits[j]) for j in order[:TOP_K]],
            "logit_max_abs": float(np.max(np.abs(logits))),
        }
        if i == GREEDY_PROMPT and args.greedy_steps > 0:
            ids = list(p["ids"])
            greedy = [int(order[0])]
            margins = [float(logits[order[0]] - logits[order[1]])]
            while len(greedy) < args.greedy_steps:
                ids.append(greedy[-1])
                nxt = model.forward(ids)[-1]
                top2 = np.argsort(-nxt, kind="stable")[:2]
                greedy.append(int(top2[0]))
                margins.append(float(nxt[top2[0]] - nxt[top2[1]]))
                print(f"  greedy step {len(greedy)}/{args.greedy_steps}", file=sys.stderr)
            entry["greedy"] = greedy
            # top-1 minus top-2 logit at each step: how far from a tie the greedy choice was
            entry["greedy_margins"] = margins
        results.append(entry)
        print(f"prompt {i} ({p['name']}): argmax {entry['argmax']} logit "
              f"{entry['top_logits'][0]:.4f}", file=sys.stderr)

    if args.compare:
        with open(args.compare) as f:
            ref = json.load(f)
        worst_abs = worst_rel = 0.0
        for got, want in zip(results, ref["prompts"]):
            m = max(1.0, want["logit_max_abs"])
            gl = dict(zip(got["top_ids"], got["top_logits"]))
            for j, wl in zip(want["top_ids"], want["top_logits"]):
                if j in gl:
                    worst_abs = max(worst_abs, abs(gl[j] - wl))
                    worst_rel = max(worst_rel, abs(gl[j] - wl) / m)
            print(f"{got['name']}: argmax {got['argmax']} vs {want['argmax']}, greedy equal: "
                  f"{got.get('greedy') == want.get('greedy')}")
        print(f"{args.dtype} vs reference: max |dlogit| {worst_abs:.3e}, "
              f"relative to max|logit| {worst_rel:.3e}")
        return

    doc = {
        "model": os.path.basename(args.model),
        "model_sha256": sha256(args.model),
        "generator": "scripts/reference/logits_reference.py (numpy "
                     f"{np.__version__}, {args.dtype})",
        "rope": "interleaved pairs on raw GGUF Q/K rows (GGML NORM mode)",
        "top_k": TOP_K,
        "prompts": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out} in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
