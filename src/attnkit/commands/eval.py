"""``attnkit eval --checkpoint PATH``: evaluate a training checkpoint on its dataset's test (or val) split.

The model and data settings come from the config stored in the checkpoint; ``--data-dir``,
``--eval-batch-size``, ``--split`` and ``--reparam`` override them. Prints a JSON line with top1, top5
(percent), loss and count.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "main", "evaluate_checkpoint"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``attnkit eval`` (``--checkpoint`` is required)."""
    from ..cli import positive_int

    parser.add_argument("--checkpoint", required=True, help="a last.ckpt/best.ckpt written by attnkit train")
    parser.add_argument(
        "--data-dir", default=None, help="override the dataset folder stored in the checkpoint"
    )
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--eval-batch-size", type=positive_int, default=None)
    parser.add_argument(
        "--reparam",
        action="store_true",
        help="evaluate attnkit.reparam.reparameterize_model(model) (deploy-time fusion)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--workers", type=int, default=0)


def evaluate_checkpoint(
    path: str,
    *,
    data_dir: str | None = None,
    split: str = "test",
    eval_batch_size: int | None = None,
    reparam: bool = False,
    device: str = "cpu",
    workers: int = 0,
) -> dict:
    """Rebuild the checkpoint's model and data, load the weights and evaluate.

    Args:
        path: a ``last.ckpt``/``best.ckpt`` written by ``attnkit train``.
        data_dir: overrides the dataset folder stored in the checkpoint.
        split: ``"test"`` or ``"val"``.
        eval_batch_size: overrides the stored evaluation batch size.
        reparam: evaluate :func:`attnkit.reparam.reparameterize_model` of the model.
        device: a torch device string.
        workers: DataLoader workers.

    Returns:
        ``{"checkpoint", "epoch", "split", "top1", "top5", "loss", "count"}`` (top-k in percent).

    Raises:
        FileNotFoundError: missing checkpoint or dataset.
        attnkit.train.CheckpointError: a file that cannot be loaded safely, or weights that do not fit.
        ValueError: ``split="val"`` for a run trained without ``val_split``.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..data.datasets import build_from_config
    from ..train import config_from_dict, evaluate, load_model

    model, info = load_model(path)
    ckpt = info["checkpoint"]
    if ckpt is None or "config" not in ckpt:
        raise ValueError(
            f"{path} is a plain state_dict; attnkit eval needs a last.ckpt/best.ckpt of attnkit train"
        )
    cfg = config_from_dict(ckpt["config"])
    if data_dir:
        cfg.data_dir = data_dir
    data = build_from_config(cfg, augment=False, download=False)
    ds = data.test if split == "test" else data.val
    if ds is None:
        raise ValueError("this run has no validation split (val_split=0); use --split test")
    if reparam:
        from ..reparam import reparameterize_model

        model = reparameterize_model(model)
    model = model.to(torch.device(device))
    loader = DataLoader(ds, batch_size=eval_batch_size or cfg.eval_batch_size, num_workers=workers)
    res = evaluate(model, loader)
    return {"checkpoint": str(path), "epoch": int(ckpt["epoch"]), "split": split, **res}


def main(args: argparse.Namespace) -> int:
    """Print :func:`evaluate_checkpoint`'s result as JSON. Returns 0."""
    res = evaluate_checkpoint(
        args.checkpoint,
        data_dir=args.data_dir,
        split=args.split,
        eval_batch_size=args.eval_batch_size,
        reparam=args.reparam,
        device=args.device,
        workers=args.workers,
    )
    print(json.dumps(res))
    return 0
