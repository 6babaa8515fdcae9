"""Is a deployed ASR(SE) ResNet-164 as fast as the plain one? A noise-floor check for asr_latency.py.

Times three models interleaved in one process (``attnkit.measure.compare_latency``): the plain ResNet-164, an
identical deep copy of it (the noise floor: its ratio should be 1.0), and ASR(SE) after
``attnkit.reparameterize_model`` loaded with the plain weights (same module types, same weights). A
deployed ratio within the copy's spread means deployment costs nothing.

Usage::

    python benchmarks/asr_identity_check.py [--batch 128] [--rounds 10] [--min-run-time 8] [--threads 1 2]

Writes ``benchmarks/results/asr_identity_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

import attnkit
from attnkit.measure import compare_latency


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--min-run-time", type=float, default=8.0, help="timed seconds per model over all rounds")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    torch.manual_seed(0)
    plain = attnkit.create_model("resnet164", num_classes=100).eval()
    dep = attnkit.reparameterize_model(attnkit.create_model("resnet164", num_classes=100, attn="asr").eval())
    same = [type(m).__name__ for m in plain.modules()] == [type(m).__name__ for m in dep.modules()]
    dep.load_state_dict(plain.state_dict())
    rows = []
    for t in a.threads:
        r = compare_latency(
            {"plain": plain, "plain_copy": copy.deepcopy(plain), "asr_deployed": dep},
            (a.batch, 3, 32, 32),
            rounds=a.rounds,
            min_run_time=a.min_run_time,
            num_threads=t,
        )
        rows.append({"threads": t, **{k: round(v, 4) for k, v in r.ratios.items()}})
        print(rows[-1])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "asr_identity_check.json").write_text(
        json.dumps({"same_module_types": same, "rows": rows, "batch": a.batch, "rounds": a.rounds}, indent=2)
    )
    md = ["| threads | plain | plain copy | ASR(SE) deployed |", "|---|---|---|---|"]
    md += [
        f"| {r['threads']} | {r['plain']:.3f} | {r['plain_copy']:.3f} | {r['asr_deployed']:.3f} |"
        for r in rows
    ]
    (a.out / "asr_identity_check.md").write_text(
        f"# Deployed ASR(SE) vs plain ResNet-164 (batch {a.batch}, 32×32, {a.rounds} interleaved rounds)\n\n"
        f"Same module types: {same}. Latency ratios to plain:\n\n" + "\n".join(md) + "\n"
    )


if __name__ == "__main__":
    main()
