"""Blending pruning criteria on Fashion-MNIST (ResNet-20): every single criterion vs the EA blend.

Phase ``base`` trains the base models with ``attnkit.train.fit`` (run folders under ``runs/prune_blend``);
phase ``prune`` prunes each base model's inner block convs at r = 0.5 with every arm, at equal FLOPs,
and writes ``benchmarks/results/prune_blend.{json,md}`` and the Spearman heat-map PNG.

Run (both phases, one thread)::

    OMP_NUM_THREADS=1 python benchmarks/prune_blend.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUNS = Path(__file__).resolve().parents[1] / "runs" / "prune_blend"


def base_config(seed: int, epochs: int, train_subset: int):
    """The ``TrainConfig`` of one base model (ResNet-20 on a Fashion-MNIST subset, SGD 0.1, cosine)."""
    from attnkit.train import config_from_dict

    return config_from_dict(
        {
            "model": "resnet20",
            "dataset": "fashion-mnist",
            "data_dir": "/usr/share/datasets/fashion-mnist",
            "train_subset": train_subset,
            "val_split": 2000,
            "epochs": epochs,
            "lr": 0.1,
            "scheduler": "cosine",
            "milestones": [],
            "weight_decay": 5e-4,
            "batch_size": 128,
            "eval_batch_size": 500,
            "workers": 0,
            "progress": "lines",
            "accelerator": "cpu",
            "seed": seed,
            "out_dir": str(RUNS),
            "run_name": f"base-s{seed}",
        }
    )


def train_bases(seeds: list[int], epochs: int, train_subset: int) -> None:
    """Train (or reuse) one base model per seed."""
    from attnkit.train import fit

    for s in seeds:
        cfg = base_config(s, epochs, train_subset)
        if (cfg.run_dir / "summary.json").is_file():
            print(f"base model {cfg.run_dir} exists; reused", flush=True)
            continue
        out = fit(cfg)
        print(
            f"base seed {s}: test top1 {out.get('final_eval_top1')} in {out.get('wall_time_s')} s", flush=True
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=["base", "prune", "all"], default="all")
    p.add_argument("--seeds", default="0,1,2", help="base-model seeds")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-subset", type=int, default=20000)
    a, rest = p.parse_known_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.phase in ("base", "all"):
        train_bases(seeds, a.epochs, a.train_subset)
    if a.phase in ("prune", "all"):
        from prune_blend_arms import run_prune_phase

        run_prune_phase(seeds, [base_config(s, a.epochs, a.train_subset) for s in seeds], rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
