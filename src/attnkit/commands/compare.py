"""``attnkit compare``: the main job, attention variants side by side.

Same data, seed and budget for a list of attention variants; prints a markdown table (best and final top-1, params, MACs, latency ratio to the plain backbone) and writes it
with a plot (accuracy vs params) into the comparison folder.

With no arguments it runs a small, quick comparison (resnet20; none, SE, CBAM, ECA) on scikit-learn's
embedded digits data.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

__all__ = ["add_arguments", "main"]


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``attnkit compare``."""
    p.add_argument(
        "--data",
        "--dataset",
        dest="dataset",
        default="digits",
        help="digits (embedded, default), fashion-mnist, cifar10, cifar100, image-folder",
    )
    p.add_argument(
        "--data-dir", default=None, help="where the dataset lives (fashion-mnist, cifar, image-folder)"
    )
    p.add_argument(
        "--download", action="store_true", help="allow torchvision to download the dataset into --data-dir"
    )
    p.add_argument("--model", default="resnet20", help="backbone name (attnkit.list_models())")
    p.add_argument(
        "--attn",
        type=_csv,
        default=["none", "se", "cbam", "eca"],
        help="comma-separated attention modules; 'none' is the plain backbone",
    )
    p.add_argument(
        "--attn-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="keyword arguments applied to every module (values parsed as Python literals)",
    )
    p.add_argument(
        "--sharing",
        type=_csv,
        default=None,
        help="comma-separated sharing modes to cross with the modules: block,stage",
    )
    p.add_argument(
        "--scheme",
        type=_csv,
        default=None,
        help="comma-separated connection schemes ('all' = every block), e.g. all,110|011|001",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per variant (default: 5 on digits, 10 otherwise)"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--recipe", default=None, help="training preset (default 'quick': short cosine schedule)")
    p.add_argument("--train-subset", type=int, default=None, help="use N training images (seeded)")
    p.add_argument(
        "--test-subset",
        type=int,
        default=None,
        help="evaluate on a fixed stratified subset of N test images (fashion-mnist)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default=None, help="32-true | bf16-mixed | 16-mixed")
    p.add_argument("--devices", default=None, help="devices per variant run (DDP when > 1)")
    p.add_argument("--accelerator", default=None, help="cpu | gpu | auto")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads per training process (default: the free cores minus --workers)",
    )
    p.add_argument("--out-dir", default="runs", help="parent folder of the comparison folder")
    p.add_argument(
        "--name", default=None, help="comparison folder name (default: compare-<data>-<model>-<time>)"
    )
    p.add_argument(
        "--resume",
        default=None,
        choices=[None, "auto"],
        help="'auto': reuse finished variants in --name's folder and resume interrupted ones",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--latency-batch", type=int, default=32, help="images per call when timing")
    p.add_argument("--latency-time", type=float, default=0.5, help="seconds of timing per model and round")
    p.add_argument("--progress", default=None, help="auto | bar | lines | none")


def _parse_kv(items: list[str]) -> dict:
    from ..train.config import parse_kv

    try:
        return dict(parse_kv(it) for it in items)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--attn-kwargs: {e}") from None


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print its table. Returns 0 on success."""
    from ..compare import expand_variants, format_table, run_compare
    from ..train import TrainConfig, resolve_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    epochs = args.epochs if args.epochs is not None else (5 if args.dataset == "digits" else 10)
    overrides = {
        "dataset": args.dataset,
        "model": args.model,
        "epochs": epochs,
        "seed": args.seed,
        "attn_kwargs": _parse_kv(args.attn_kwargs),
    }
    for k in (
        "data_dir",
        "batch_size",
        "lr",
        "train_subset",
        "test_subset",
        "precision",
        "accelerator",
        "workers",
        "threads",
        "progress",
    ):
        v = getattr(args, k)
        if v is not None:
            overrides[k] = v
    if args.devices is not None:
        overrides["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.resume:
        overrides["resume"] = args.resume
    if args.download:
        overrides["download"] = True
    base: TrainConfig = resolve_config({"recipe": args.recipe or "quick", **overrides})
    variants = expand_variants(args.attn, args.sharing or [None], args.scheme or [None])
    name = args.name or f"compare-{args.dataset}-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = f"{args.out_dir}/{name}"
    base = dataclasses.replace(base, out_dir=out_dir)
    rows = run_compare(
        base,
        variants,
        out_dir=out_dir,
        latency=not args.no_latency,
        latency_batch=args.latency_batch,
        latency_min_run_time=args.latency_time,
    )
    print()
    print(
        f"{args.model} on {args.dataset}, {epochs} epochs, seed {args.seed}"
        + (f", train subset {args.train_subset}" if args.train_subset else "")
        + (f", test subset {args.test_subset}" if args.test_subset else "")
    )
    print(format_table(rows))
    print(f"\nwritten to {out_dir}/compare.md, compare.csv, compare.json, compare.png")
    return 0
