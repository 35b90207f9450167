#!/usr/bin/env python3
"""Plot `hipserve bench --json_out` files as one PNG.

usage: scripts/plot_bench.py RUN.json [RUN.json ...] [-o bench.png] [--title TEXT]

Three panels, one group of bars per run: TTFT p50/p90/p99 (ms), inter-token latency
p50/p90/p99 (ms), and throughput (aggregate output tok/s, and per-stream decode tok/s p50).
Runs are labelled with their file name and concurrency, in the order given (e.g. one file per
--concurrency value for a sweep). Needs matplotlib (`python3 -m pip install matplotlib`).
"""

import argparse
import json
import os
import sys


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if "summary" not in doc or "config" not in doc:
        raise ValueError(f"{path}: not a hipserve bench JSON file (no 'summary'/'config')")
    return doc


def ms(dist, key):
    v = (dist or {}).get(key)
    return float("nan") if v is None else v * 1e3


def label(path, doc):
    cfg = doc["config"]
    name = os.path.splitext(os.path.basename(path))[0]
    return f"{name}\nc={cfg.get('concurrency')} in={cfg.get('prompt_tokens')} out={cfg.get('max_tokens')}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="bench JSON files (hipserve bench --json_out)")
    ap.add_argument("-o", "--output", default="bench.png", help="PNG to write (default bench.png)")
    ap.add_argument("--title", default=None, help="figure title (default: the model name)")
    args = ap.parse_args(argv)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "plot_bench.py needs matplotlib, which is not installed. Install it with:\n"
            "  python3 -m pip install matplotlib\n"
            "(or on Debian/Ubuntu: sudo apt-get install python3-matplotlib)",
            file=sys.stderr,
        )
        return 2

    try:
        runs = [(p, load(p)) for p in args.inputs]
    except (OSError, ValueError) as e:
        print(f"plot_bench.py: {e}", file=sys.stderr)
        return 1

    labels = [label(p, d) for p, d in runs]
    n = len(runs)
    x = list(range(n))
    width = 0.27
    pcts = ["p50", "p90", "p99"]

    fig, axes = plt.subplots(1, 3, figsize=(max(12, 3.2 * n + 6), 4.8))
    for ax, key, title in (
        (axes[0], "ttft_s", "Time to first token (ms)"),
        (axes[1], "itl_s", "Inter-token latency (ms)"),
    ):
        for i, p in enumerate(pcts):
            vals = [ms(d["summary"].get(key), p) for _, d in runs]
            bars = ax.bar([xi + (i - 1) * width for xi in x], vals, width, label=p)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_title(title)
        ax.set_xticks(x, labels, fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    ax = axes[2]
    agg = [d["summary"].get("output_tok_s") or 0 for _, d in runs]
    stream = [((d["summary"].get("stream_tok_s") or {}).get("p50") or 0) for _, d in runs]
    b1 = ax.bar([xi - width / 2 for xi in x], agg, width, label="aggregate output tok/s")
    b2 = ax.bar([xi + width / 2 for xi in x], stream, width, label="per-stream tok/s (p50)")
    ax.bar_label(b1, fmt="%.0f", fontsize=7)
    ax.bar_label(b2, fmt="%.0f", fontsize=7)
    ax.set_title("Throughput (tokens/s)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    model = runs[0][1].get("model", {})
    title = args.title or (
        f"hipserve bench: {model.get('name', '?')} "
        f"({model.get('backend', '?')}, {model.get('attention', '?')} attention)"
    )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
