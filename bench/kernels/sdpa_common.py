"""Shared pieces of the PyTorch SDPA baselines (sdpa_baseline.py, prefill_sdpa.py)."""
import argparse
import json

import torch


def parse_args(lens, reps, rotations=None):
    """--lens, --reps (defaults given), --rotations (if a default is given), --ours, --out."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--lens", default=lens)
    ap.add_argument("--reps", type=int, default=reps)
    if rotations is not None:
        ap.add_argument("--rotations", type=int, default=rotations)
    ap.add_argument("--ours", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    a.lens = [int(x) for x in a.lens.split(",")]
    torch.manual_seed(0)
    return a


def events():
    """A pair of timing CUDA events."""
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def sdpa_out(results, **extra):
    """The SDPA part of the JSON ({torch, device, **extra, sdpa}); prints the torch line."""
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), **extra,
           "sdpa": results}
    print(f"torch {torch.__version__} on {out['device']}")
    return out


def read_ours(path):
    """The bench's own JSON (--ours), or None when not given."""
    if not path:
        return None
    with open(path) as f:
        return json.load(f)


def write_out(out, ours, path):
    """Nests the SDPA part into the bench's JSON (if any) and writes it to path (if set)."""
    if ours is not None:
        ours["sdpa"] = out
        out = ours
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {path}")
