"""ASR latency: plain vs SE vs ASR(SE)-deployed vs ASR(SE)+SE-deployed, side by side (interleaved).

Uses :func:`attnkit.measure.compare_latency` (interleaved rounds, ratio = median over rounds of per-round median
ratios to the plain model). Writes ``benchmarks/results/asr_latency.{json,md}``.

    python benchmarks/asr_latency.py            # resnet164 32x32 batch 128, resnet50 224x224 batch 8
    python benchmarks/asr_latency.py --quick    # shorter timing, resnet50 at batch 1
    python benchmarks/asr_latency.py --quick --r164-batch 8 --r50-size 112   # an overloaded CPU

The deployed ASR network is the plain architecture with different numbers, so its ratio measures only
noise; the script exits with status 1 if it exceeds ``--max-ratio`` (1.02).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

import attnkit
from attnkit.attention.asr import asr_norm_layer
from attnkit.measure import compare_latency
from attnkit.reparam import reparameterize_model


def _models(name: str, num_classes: int) -> dict[str, torch.nn.Module]:
    kw = {"num_classes": num_classes}
    return {
        "plain": attnkit.create_model(name, **kw).eval(),
        "se": attnkit.create_model(name, attn="se", **kw).eval(),
        "asr(se) deployed": reparameterize_model(attnkit.create_model(name, attn="asr", **kw)),
        "asr(se)+se deployed": reparameterize_model(
            attnkit.create_model(name, attn="se", last_norm_layer=asr_norm_layer("se"), **kw)
        ),
        "asr(se) train-form": attnkit.create_model(name, attn="asr", **kw).eval(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--max-ratio", type=float, default=1.02)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--r164-batch", type=int, default=128, help="resnet164 batch at 32x32 (spec: 128)")
    p.add_argument("--r50-batch", type=int, default=None, help="resnet50 batch (default 8; 1 with --quick)")
    p.add_argument("--r50-size", type=int, default=224, help="resnet50 input size (224)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (10; 5 with --quick)")
    p.add_argument(
        "--min-run-time", type=float, default=None, help="seconds per model in total (10; 2.5 quick)"
    )
    a = p.parse_args(argv)
    torch.manual_seed(0)
    r50b = a.r50_batch or (1 if a.quick else 8)
    cases = [
        ("resnet164", 100, (a.r164_batch, 3, 32, 32)),
        ("resnet50", 1000, (r50b, 3, a.r50_size, a.r50_size)),
    ]
    rounds, mrt = (5, 2.5) if a.quick else (10, 10.0)
    rounds, mrt = a.rounds or rounds, a.min_run_time or mrt
    results, lines, ok = [], ["# ASR latency (ratios to plain, interleaved in one run)", ""], True
    for name, nc, size in cases:
        rep = compare_latency(
            _models(name, nc), size, rounds=rounds, min_run_time=mrt, warmup=3, num_threads=a.threads
        )
        lines += [f"## {name}, input {tuple(size)}", "", rep.to_markdown(), ""]
        for row in rep.rows():
            results.append(
                {
                    "model": name,
                    "input": list(size),
                    "variant": row["name"],
                    "ratio": row["ratio"],
                    "median_ms": row["median_ms"],
                    "iqr_ms": row["iqr_ms"],
                    "params": row["params"],
                    "macs": row["macs"],
                    "num_threads": row["num_threads"],
                    "device": row["device_name"],
                }
            )
        r = rep.ratios["asr(se) deployed"]
        ok &= r <= a.max_ratio
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rep.ratios.items()), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    for suffix, text in (("json", json.dumps(results, indent=1)), ("md", "\n".join(lines))):
        path = a.out / f"asr_latency{'-quick' if a.quick else ''}.{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print(f"deployed ASR(SE) / plain <= {a.max_ratio}: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
