#!/usr/bin/env python3
"""K6 baseline: PyTorch scaled_dot_product_attention decode on the "8B layer" shape.

Same shapes as bench_attention's dense rows (batch 1, 32 query heads, 8 KV heads, head dim 128,
bf16, one query token over T keys), timed on the same card in the same call. Two ways to express
GQA decode are measured, both with the flash backend forced:
  - gqa:     q [1, 32, 1, 128], k/v [1, 8, T, 128], enable_gqa=True
  - grouped: q [1, 8, 4, 128] (the group's 4 query heads as 4 query rows; the decode query is
             last, so no causal mask is needed), k/v [1, 8, T, 128]: exactly the same math.
Each is timed eagerly (back-to-back calls) and as CUDA-graph replays; the baseline is the fastest
of the flash variants. Median of --reps, each a cycle over --rotations q tensors. With --ours,
reads bench_attention's JSON, adds the SDPA figures and the ratios, and writes --out.
"""
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sdpa_common import events, parse_args, read_ours, sdpa_out, write_out


def time_cycle(fn, rotations, reps):
    """Per-call median (us) of eager back-to-back calls and of graph replays."""
    for _ in range(2):
        for r in range(rotations):
            fn(r)
    torch.cuda.synchronize()
    e0, e1 = events()
    eager = []
    for _ in range(reps):
        e0.record()
        for r in range(rotations):
            fn(r)
        e1.record()
        e1.synchronize()
        eager.append(1e3 * e0.elapsed_time(e1) / rotations)
    graph_t = None
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for r in range(rotations):
                fn(r)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for r in range(rotations):
                fn(r)
        for _ in range(2):
            g.replay()
        torch.cuda.synchronize()
        gt = []
        for _ in range(reps):
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            gt.append(1e3 * e0.elapsed_time(e1) / rotations)
        graph_t = statistics.median(gt)
    except Exception as exc:  # graph capture is best effort
        print(f"graph capture failed: {exc}", file=sys.stderr)
    return statistics.median(eager), graph_t


def main():
    a = parse_args(lens="32768,131072,1048576", reps=20, rotations=8)
    dev = torch.device("cuda")
    heads, kv_heads, d = 32, 8, 128
    group = heads // kv_heads
    # Memory ceiling on this card: a large device-to-device copy (bytes read + written).
    x = torch.empty(1 << 30, device=dev, dtype=torch.uint8).random_(0, 255)
    y = torch.empty_like(x)
    e0, e1 = events()
    ct = []
    for i in range(12):
        e0.record()
        y.copy_(x)
        e1.record()
        e1.synchronize()
        if i >= 2:
            ct.append(e0.elapsed_time(e1))
    copy_gbps = 2 * x.numel() / (statistics.median(ct) * 1e6)
    del x, y
    print(f"device-to-device copy: {copy_gbps:.0f} GB/s (read + write)")
    results = []
    for T in a.lens:
        k = torch.empty(1, kv_heads, T, d, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
        v = torch.empty_like(k).uniform_(-1, 1)
        qs = [torch.empty(1, heads, 1, d, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
              for _ in range(a.rotations)]
        qg = [q.view(1, kv_heads, group, d) for q in qs]  # same memory, grouped view
        row = {"T": T}
        variants = {
            "gqa": lambda r: F.scaled_dot_product_attention(qs[r], k, v, enable_gqa=True),
            "grouped": lambda r: F.scaled_dot_product_attention(qg[r], k, v),
        }
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            for name, fn in variants.items():
                try:
                    eager, graph = time_cycle(fn, a.rotations, a.reps)
                    row[f"flash_{name}_eager_us"] = eager
                    row[f"flash_{name}_graph_us"] = graph
                except Exception as exc:
                    print(f"T={T} flash {name}: {exc}", file=sys.stderr)
        # Informational: PyTorch's own backend choice.
        try:
            eager, graph = time_cycle(variants["grouped"], a.rotations, a.reps)
            row["auto_grouped_eager_us"] = eager
            row["auto_grouped_graph_us"] = graph
        except Exception as exc:
            print(f"T={T} auto: {exc}", file=sys.stderr)
        flash = [x for key, x in row.items() if key.startswith("flash_") and x is not None]
        row["baseline_us"] = min(flash) if flash else None
        row["bytes"] = 2 * T * kv_heads * d * 2
        results.append(row)
        del k, v
        torch.cuda.empty_cache()

    out = sdpa_out(results, d2d_copy_gbps=copy_gbps)
    print(f"{'T':>8} {'sdpa_flash_us':>14} {'GB/s':>8}  variants (us)")
    for r in results:
        b = r["baseline_us"]
        det = ", ".join(f"{k}={v:.1f}" for k, v in r.items()
                        if k.endswith("_us") and k != "baseline_us" and v is not None)
        print(f"{r['T']:>8} {b if b else float('nan'):>14.1f} "
              f"{(r['bytes'] / (b * 1e3)) if b else 0:>8.0f}  {det}")
    ours = read_ours(a.ours)
    if ours is not None:
        base = {r["T"]: r["baseline_us"] for r in results}
        print(f"\n{'T':>8} {'ours_dense_us':>14} {'sdpa_us':>10} {'sdpa/ours':>10} "
              f"{'bsa_us':>8} {'dense/bsa':>10}")
        by_t = {}
        for r in ours["rows"]:
            by_t.setdefault(r["T"], {})[r["kind"]] = r
        for T, kinds in sorted(by_t.items()):
            dn, bs, sd = kinds.get("dense"), kinds.get("bsa"), base.get(T)
            if dn and sd:
                dn["sdpa_baseline_us"] = sd
                dn["sdpa_over_ours"] = sd / dn["graph_us"]
            if dn and bs:
                bs["dense_over_bsa"] = dn["graph_us"] / bs["graph_us"]
            print(f"{T:>8} {dn['graph_us'] if dn else 0:>14.1f} {sd or 0:>10.1f} "
                  f"{(sd / dn['graph_us']) if dn and sd else 0:>10.2f} "
                  f"{bs['graph_us'] if bs else 0:>8.2f} "
                  f"{(dn['graph_us'] / bs['graph_us']) if dn and bs else 0:>10.1f}")
    write_out(out, ours, a.out)


if __name__ == "__main__":
    main()
