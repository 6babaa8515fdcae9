r"""``attnkit diffusion train|sample``: DDPM training with ScaleLong and EMA sample grids.

Examples::

    attnkit diffusion train --data fashion-mnist --backbone uvit-tiny --lsc cs --kappa 0.5 --steps 2000
    attnkit diffusion sample --checkpoint runs/fashion-mnist-uvit-tiny-cs-k0.5-s0/checkpoints/last.pt \\
        --out samples.png
"""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` and ``sample`` sub-commands."""
    sub = parser.add_subparsers(dest="diffusion_command", required=True)
    t = sub.add_parser(
        "train", help="train a DDPM (run folder: config, metrics.csv, checkpoints, samples.png)"
    )
    t.add_argument("--data", default="digits", help="digits | fashion-mnist")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--train-subset", type=int, default=None)
    t.add_argument("--backbone", default="uvit-tiny", help="uvit-tiny | uvit-tiny16 | unet-tiny | unet-small")
    t.add_argument("--patch-size", type=int, default=None)
    t.add_argument("--lsc", default="none", help="none | sqrt2 | cs | ls | ls_nonshared (ScaleLong)")
    t.add_argument("--kappa", type=float, default=0.5)
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--weight-decay", type=float, default=0.03)
    t.add_argument("--warmup-steps", type=int, default=100)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--ckpt-every", type=int, default=500)
    t.add_argument("--num-samples", type=int, default=64)
    t.add_argument("--sample-steps", type=int, default=50)
    t.add_argument("--out-dir", default="runs")
    t.add_argument("--run-name", default=None)
    t.add_argument("--resume", default=None, help="a checkpoint path or 'auto'")
    t.add_argument("--progress", default="auto", choices=["auto", "bar", "log"])
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=None)
    s = sub.add_parser("sample", help="draw EMA samples from a checkpoint into a PNG grid")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--num-samples", type=int, default=64)
    s.add_argument("--sample-steps", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit diffusion train`` or ``attnkit diffusion sample``; returns the exit code."""
    import torch

    from ..diffusion.train import DiffusionConfig, sample_checkpoint, train_diffusion

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.diffusion_command == "sample":
        path = sample_checkpoint(
            args.checkpoint,
            args.out,
            args.num_samples,
            args.sample_steps,
            seed=args.seed,
            use_ema=not args.raw,
            device=args.device,
        )
        print(f"wrote {path}")
        return 0
    fields = {k: v for k, v in vars(args).items() if k in DiffusionConfig.__dataclass_fields__}
    summary = train_diffusion(DiffusionConfig(**fields))
    print(json.dumps(summary, indent=2, default=str))
    return 0
