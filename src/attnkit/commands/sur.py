"""``attnkit sur train``: train a SUR-adapter on the SURD-mini CPU demo.

Examples::

    attnkit sur train --out runs/sur --pretrain-steps 2000 --steps 300      # attnkit's fixes
    attnkit sur train --out runs/sur --official                             # the official code's flags

The first run in a folder trains the toy UNet on the complex prompts (stage A) and caches the MiniLM
states and the SmolLM2 teacher vectors there; later runs reuse them and only train the adapter.

Reference:
    SUR-adapter, arXiv 2305.05189, https://github.com/Qrange-group/SUR-adapter.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` sub-command."""
    sub = parser.add_subparsers(dest="sur_command", required=True)
    t = sub.add_parser("train", help="train the adapter (frozen MiniLM, SmolLM2 teacher, toy UNet)")
    t.add_argument("--out", default="runs/sur", help="run folder")
    t.add_argument("--steps", type=int, default=300, help="adapter optimiser steps")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--pretrain-steps", type=int, default=2000, help="toy-UNet steps (once per folder)")
    t.add_argument("--n-train", type=int, default=2000)
    t.add_argument("--bf16", action="store_true")
    t.add_argument("--snr-gamma", type=float, default=None, help="Min-SNR gamma (off by default)")
    t.add_argument("--teacher", default="smollm2", choices=["smollm2", "none"])
    t.add_argument("--kd-direction", default="official", choices=["official", "forward"])
    t.add_argument("--official", action="store_true", help="batch_first=False and a detached diffusion loss")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    """Run ``sur train``; prints the first and last losses and the adapter file."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from attnkit.generative.sur_train import SURTrainConfig, train_sur_adapter

    kw = dict(
        out_dir=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        pretrain_steps=args.pretrain_steps,
        n_train=args.n_train,
        bf16=args.bf16,
        snr_gamma=args.snr_gamma,
        teacher=args.teacher,
        kd_direction=args.kd_direction,
        seed=args.seed,
        threads=args.threads,
    )
    cfg = SURTrainConfig.official(**kw) if args.official else SURTrainConfig(**kw)
    res = train_sur_adapter(cfg)
    losses = res["losses"]
    if losses:
        print(f"loss {losses[0]['total']:.4f} -> {losses[-1]['total']:.4f} over {len(losses)} steps")
    print(f"adapter: {res['out_dir']}/adapter_seed{cfg.seed}.pt")
    return 0
