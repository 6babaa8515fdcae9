"""Reproduce the group's ResNet-164 CIFAR-10/100 table for the research attention modules.

Two budgets:

- ``--budget paper`` (GPU): ResNet-164 on CIFAR-10 and CIFAR-100 with each method's official recipe
  (SGD 0.1, momentum 0.9, wd 1e-4 on all parameters, batch 128, crop + flip; 164 epochs with lr steps at
  81/122, DIANet: 180 epochs with steps at 60/120). LSAS uses its official placement (last stage only).
- ``--budget cpu`` (default): a reduced smoke budget that runs on 2 CPU cores: ResNet-20 on a
  Fashion-MNIST subset, a few epochs. Its numbers only show that every method trains; they are not
  comparable with the official figures.

For every (dataset, method) the script writes best-epoch **and** final-epoch test top-1 with the
official figure beside it (the official figures are best-epoch test accuracy, i.e. selected on the test
set). Runs that already have a ``summary.json`` are read back, interrupted runs resume (``resume="auto"``).

Outputs in ``--out`` (default ``runs/cifar_table``): ``cifar_table.json``, ``cifar_table.csv`` and
``cifar_table.md``.

Usage::

    python benchmarks/cifar_table.py                                   # CPU smoke budget
    python benchmarks/cifar_table.py --budget paper --data-dir data    # GPU, the full table (days)
    python benchmarks/cifar_table.py --methods plain dia ras --datasets cifar100 --budget paper
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from attnkit.attention.lsas import lsas_official_scheme
from attnkit.train import TrainConfig, fit

__all__ = ["OFFICIAL", "METHODS", "run_table", "main"]

# Official README figures, ResNet-164, best test accuracy over epochs (%); None = not published.
# (baseline row, method row); baselines differ by repository, so each method keeps its own.
OFFICIAL: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "cifar100": {
        "plain": (None, None),
        "se": (None, 75.30),  # LSAS README (SE in all blocks)
        "dia": (73.43, 76.67),  # DIANet README, mean of 5 runs, 180 epochs
        "iebn": (74.29, 77.09),  # IEBN README
        "spem": (74.30, 76.31),  # SPEM README
        "sem": (74.30, 76.76),  # SEM README
        "lsas": (75.30, 76.47),  # LSAS README: baseline = SE everywhere; LSAS in the last stage
        "ras": (74.40, 76.74),  # RAS README, mean ± 0.34 / ± 0.24
    },
    "cifar10": {
        "plain": (None, None),
        "se": (None, 94.57),
        "dia": (None, None),
        "iebn": (None, None),
        "spem": (93.39, 94.80),
        "sem": (93.39, 94.95),
        "lsas": (94.57, 95.01),
        "ras": (93.45, 94.84),
    },
}

METHODS = ("plain", "se", "dia", "iebn", "spem", "sem", "lsas", "ras")


def _config(
    method: str,
    dataset: str,
    budget: str,
    out: Path,
    data_dir: str,
    seed: int,
    epochs: int | None,
    subset: int | None,
) -> TrainConfig:
    attn = None if method == "plain" else method
    kw: dict[str, Any] = {
        "attn": attn,
        "seed": seed,
        "out_dir": str(out / budget),
        "run_name": f"{dataset}-{method}-s{seed}",
        "resume": "auto",
        "progress": "none",
        "data_dir": data_dir,
    }
    if budget == "paper":
        kw.update(
            model="resnet164",
            dataset=dataset,
            batch_size=128,
            eval_batch_size=100,
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            wd_mode="all",
            scheduler="step",
            gamma=0.1,
            epochs=180 if method == "dia" else 164,
            milestones=[60, 120] if method == "dia" else [81, 122],
        )
        if method == "lsas":
            kw["scheme"] = lsas_official_scheme((18, 18, 18))
    else:
        e = epochs or 3
        kw.update(
            model="resnet20",
            dataset="fashion-mnist",
            batch_size=64,
            eval_batch_size=256,
            lr=0.05,
            weight_decay=5e-4,
            scheduler="cosine",
            epochs=e,
            train_subset=subset or 2000,
            test_subset=1000,
            accelerator="cpu",
            workers=0,
            augment=False,
        )
        if method == "lsas":
            kw["scheme"] = lsas_official_scheme((3, 3, 3))
    if epochs is not None:
        kw["epochs"] = epochs
    return TrainConfig(**kw)


def run_table(
    methods,
    datasets,
    budget: str,
    out: Path,
    data_dir: str,
    seed: int = 0,
    epochs: int | None = None,
    subset: int | None = None,
) -> list[dict[str, Any]]:
    """Train (or read back) every (dataset, method) and return the table rows.

    Returns:
        Rows with ``dataset, method, params, best_top1, best_epoch, final_top1, official_baseline,
        official`` (percent).
    """
    rows = []
    for ds in datasets:
        for method in methods:
            cfg = _config(method, ds, budget, out, data_dir, seed, epochs, subset)
            summary_path = cfg.run_dir / "summary.json"
            if summary_path.exists():
                summary = json.loads(summary_path.read_text())
            else:
                print(f"[cifar_table] training {cfg.run_dir}", flush=True)
                summary = fit(cfg)
            base, off = OFFICIAL.get(ds, {}).get(method, (None, None)) if budget == "paper" else (None, None)
            rows.append(
                {
                    "dataset": cfg.dataset,
                    "model": cfg.model,
                    "method": method,
                    "scheme": cfg.scheme,
                    "params": summary.get("params"),
                    "best_top1": summary.get("best_eval_top1"),
                    "best_epoch": summary.get("best_epoch"),
                    "final_top1": summary.get("final_eval_top1"),
                    "epochs": cfg.epochs,
                    "official_baseline": base,
                    "official": off,
                }
            )
            _write(rows, out, budget)
    return rows


def _fmt(v) -> str:
    return "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _write(rows: list[dict[str, Any]], out: Path, budget: str) -> None:
    """Write JSON, CSV and markdown atomically (tmp file + os.replace)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"cifar_table_{budget}"

    def atomic(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    atomic(stem.with_suffix(".json"), json.dumps(rows, indent=2))
    cols = list(rows[0])
    tmp = stem.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, stem.with_suffix(".csv"))
    lines = [
        f"Budget `{budget}`. Ours: test top-1 (%) at the best epoch (test-selected, as the official READMEs) and at "
        "the final epoch. Official: README figures (best epoch); the baseline column is the method repository's "
        "own ResNet-164 baseline.",
        "",
        "| dataset | model | method | params | ours best (epoch) | ours final | official baseline | official |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['method']} | {_fmt(r['params'])} | "
            f"{_fmt(r['best_top1'])} ({_fmt(r['best_epoch'])}) | {_fmt(r['final_top1'])} | "
            f"{_fmt(r['official_baseline'])} | {_fmt(r['official'])} |"
        )
    atomic(stem.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", choices=("cpu", "paper"), default="cpu")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument(
        "--datasets", nargs="+", default=None, help="paper budget: cifar10 cifar100 (default both)"
    )
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", default="runs/cifar_table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    p.add_argument("--subset", type=int, default=None, help="cpu budget: training images (default 2000)")
    a = p.parse_args(argv)
    datasets = a.datasets or (["cifar10", "cifar100"] if a.budget == "paper" else ["fashion-mnist"])
    if a.budget == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = run_table(a.methods, datasets, a.budget, Path(a.out), a.data_dir, a.seed, a.epochs, a.subset)
    print((Path(a.out) / f"cifar_table_{a.budget}.md").read_text())
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
