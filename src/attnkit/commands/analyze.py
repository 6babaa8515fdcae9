"""``attnkit analyze {stiffness,stripes} --checkpoint RUN/last.ckpt``: analyses of a trained network.

``stiffness`` writes ``stiffness.json``, ``stiffness.csv`` and ``stiffness.png`` (attnkit's stiffness
metrics per block and sample; ``--compare NAME=PATH`` profiles other checkpoints on the same images);
``stripes`` writes ``stripes.json`` and ``stripes.png`` (ASR's stripe statistics of the attention gates).
Files go to ``--out`` (default: the checkpoint's run folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stiffness`` and ``stripes`` sub-commands and their flags."""
    from ..analysis import METRICS

    sub = parser.add_subparsers(dest="analysis", required=True, metavar="{stiffness,stripes}")
    for name, help_text in (
        ("stiffness", "per-block, per-sample stiffness profile (attnkit's metrics)"),
        ("stripes", "stripe statistics of the attention gates (ASR's observation)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--checkpoint", required=True, help="a last.ckpt/best.ckpt written by attnkit train")
        p.add_argument("--data", default=None, help="dataset (default: the checkpoint's); e.g. fashion-mnist")
        p.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
        p.add_argument("--split", choices=("test", "train"), default="test", help="images to analyse")
        p.add_argument("--num-samples", type=int, default=256, help="images to analyse (default 256)")
        p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
        p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
        if name == "stiffness":
            p.add_argument(
                "--metric",
                action="append",
                choices=METRICS,
                help="metric (repeatable; default relative_increment)",
            )
            p.add_argument(
                "--compare",
                action="append",
                default=[],
                metavar="NAME=PATH",
                help="another checkpoint to profile on the same images (repeatable)",
            )
            p.add_argument("--seed", type=int, default=0, help="seed of the power iteration (jacobian_norm)")


def _load(path: str):
    from ..train import config_from_dict, load_model

    model, info = load_model(path)
    ckpt = info["checkpoint"]
    if ckpt is None or "config" not in ckpt:
        raise ValueError(
            f"{path} is a plain state_dict; analyze needs a last.ckpt/best.ckpt of attnkit train"
        )
    return model.eval(), config_from_dict(ckpt["config"])


def _images(cfg, args):
    import torch

    from ..data.datasets import build_from_config

    if args.data:
        cfg.dataset = args.data
    if args.data_dir:
        cfg.data_dir = args.data_dir
    if args.num_samples < 1 or args.batch_size < 1:
        raise ValueError("--num-samples and --batch-size must be positive")
    data = build_from_config(cfg, augment=False, download=False)
    ds = data.test if args.split == "test" else data.train
    n = min(args.num_samples, len(ds))
    return torch.stack([ds[i][0] for i in range(n)])


def main(args: argparse.Namespace) -> int:
    """Run the chosen analysis and write its files. Returns 0."""
    from ..analysis import compare_stiffness, plot_stiffness, plot_stripes, stripe_statistics

    model, cfg = _load(args.checkpoint)
    x = _images(cfg, args)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    if args.analysis == "stripes":
        stats = stripe_statistics(model, x, num_images=len(x))
        from .._io import atomic_write_json

        atomic_write_json(out / "stripes.json", {k: v.to_dict() for k, v in stats.items()})
        plot_stripes(stats, out / "stripes.png")
        print(f"attnkit analyze stripes: {len(stats) - 1} attention layers -> {out}/stripes.{{json,png}}")
        return 0
    models = {Path(args.checkpoint).parent.name or "model": model}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--compare expects NAME=PATH, got {item!r}")
        other, _ = _load(path)
        models[name] = other
    metrics = tuple(args.metric or ("relative_increment",))
    profiles = compare_stiffness(models, x, metrics=metrics, batch_size=args.batch_size, seed=args.seed)
    main_name = next(iter(models))
    profiles[main_name].to_json(out / "stiffness.json")
    profiles[main_name].to_csv(out / "stiffness.csv")
    for name, prof in list(profiles.items())[1:]:
        prof.to_json(out / f"stiffness-{name}.json")
    plot_stiffness(profiles, out / "stiffness.png", metric=metrics[0])
    summary = {n: p.summary()["stages"][metrics[0]] for n, p in profiles.items()}
    print(json.dumps({"metric": metrics[0], "stages": summary, "out": str(out)}))
    return 0
