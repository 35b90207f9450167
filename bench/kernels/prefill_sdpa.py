#!/usr/bin/env python3
"""K6 prefill baseline: PyTorch scaled_dot_product_attention causal prefill, "8B layer".

Same shapes and memory layout as bench_prefill (batch 1, 32 query heads, 8 KV heads, head dim
128, bf16, q [T, 32, 128] and k/v [T, 8, 128] row-major, passed to SDPA as [1, H, T, D]
transposed views, no copies), is_causal=True, flash backend forced, timed on the same card in
the same call. Variants: enable_gqa=True on the 8 KV heads, and (if that is refused by the flash
backend) K/V expanded to 32 heads beforehand (expansion not timed). The baseline is the fastest
flash variant. Median of --reps single calls after 2 warm-ups. With --ours, reads
bench_prefill's JSON, adds the SDPA figures and ratios, and writes --out.
"""
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sdpa_common import events, parse_args, read_ours, sdpa_out, write_out


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    e0, e1 = events()
    ts = []
    for _ in range(reps):
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    return statistics.median(ts)


def main():
    a = parse_args(lens="8192,32768,131072", reps=10)
    dev = torch.device("cuda")
    heads, kv_heads, d = 32, 8, 128
    results = []
    for T in a.lens:
        q = torch.empty(T, heads, d, device=dev, dtype=torch.bfloat16).uniform_(-2, 2)
        k = torch.empty(T, kv_heads, d, device=dev, dtype=torch.bfloat16).uniform_(-2, 2)
        v = torch.empty(T, kv_heads, d, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
        qv, kv, vv = (x.unsqueeze(0).transpose(1, 2) for x in (q, k, v))  # [1, H, T, D] views
        flops = 2 * 2 * T * T / 2 * d * heads
        row = {"T": T, "flops": flops}
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            try:
                row["flash_gqa_ms"] = time_ms(
                    lambda: F.scaled_dot_product_attention(qv, kv, vv, is_causal=True,
                                                           enable_gqa=True), a.reps)
            except Exception as exc:
                print(f"T={T} flash gqa: {exc}", file=sys.stderr)
            if "flash_gqa_ms" not in row:
                ke = kv.repeat_interleave(heads // kv_heads, dim=1)
                ve = vv.repeat_interleave(heads // kv_heads, dim=1)
                try:
                    row["flash_expanded_ms"] = time_ms(
                        lambda: F.scaled_dot_product_attention(qv, ke, ve, is_causal=True),
                        a.reps)
                except Exception as exc:
                    print(f"T={T} flash expanded: {exc}", file=sys.stderr)
                del ke, ve
        flash = [x for key, x in row.items() if key.startswith("flash_")]
        row["baseline_ms"] = min(flash) if flash else None
        row["baseline_tflops"] = flops / (row["baseline_ms"] * 1e-3) / 1e12 if flash else None
        results.append(row)
        del q, k, v, qv, kv, vv
        torch.cuda.empty_cache()

    out = sdpa_out(results)
    print(f"{'T':>8} {'sdpa_ms':>10} {'TFLOP/s':>8}  variants (ms)")
    for r in results:
        b = r["baseline_ms"]
        det = ", ".join(f"{k}={v:.3f}" for k, v in r.items() if k.startswith("flash_"))
        print(f"{r['T']:>8} {b or float('nan'):>10.3f} {r['baseline_tflops'] or 0:>8.1f}  {det}")
    ours = read_ours(a.ours)
    if ours is not None:
        base = {r["T"]: r for r in results}
        print(f"\n{'T':>8} {'ours_ms':>10} {'ours_TF':>8} {'sdpa_ms':>10} {'sdpa_TF':>8} "
              f"{'ours/sdpa time':>15}")
        for r in ours["rows"]:
            sd = base.get(r["T"])
            if sd and sd["baseline_ms"]:
                r["sdpa_ms"] = sd["baseline_ms"]
                r["sdpa_tflops"] = sd["baseline_tflops"]
                r["ours_over_sdpa_time"] = r["ms"] / sd["baseline_ms"]
                print(f"{r['T']:>8} {r['ms']:>10.3f} {r['tflops']:>8.1f} {sd['baseline_ms']:>10.3f}"
                      f" {sd['baseline_tflops']:>8.1f} {r['ours_over_sdpa_time']:>15.2f}")
    write_out(out, ours, a.out)


if __name__ == "__main__":
    main()
