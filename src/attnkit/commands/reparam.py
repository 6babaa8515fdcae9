"""``attnkit reparam``: fuse a trained checkpoint for deployment (ASR → BN, optionally BN → conv).

Reads an engine checkpoint (``last.ckpt``/``best.ckpt``: a dict with ``"model"`` state and ``"config"``)
or a plain ``state_dict`` (then ``--model``/``--attn`` say what it is), fuses it with
:func:`attnkit.reparameterize_model`, writes the deployed ``state_dict`` atomically and prints params,
MACs and latency before and after. Without ``--fold-bn`` the output is a plain-backbone checkpoint:
it loads into ``create_model(<model>)`` (or ``attn=<gate>`` for the use-both variant) with
``strict=True``.

Example::

    attnkit reparam runs/asr/last.ckpt --out runs/asr/deploy.pt
    attnkit reparam weights.pt --model resnet164 --attn asr --num-classes 100
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_torch_save
from ..train.config import parse_kv

__all__ = ["add_arguments", "main", "load_checkpoint_model", "deployed_config"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``attnkit reparam`` flags."""
    from ..cli import positive_int

    parser.add_argument(
        "checkpoint", type=Path, help="engine checkpoint (last.ckpt/best.ckpt) or a state_dict file"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output file (default: <checkpoint>.deploy.pt)"
    )
    parser.add_argument("--model", default=None, help="model name (required for a plain state_dict)")
    parser.add_argument(
        "--attn", default=None, help="attention name, e.g. asr, asr_se (overrides the checkpoint config)"
    )
    parser.add_argument("--attn-kwargs", nargs="*", type=parse_kv, default=None, metavar="KEY=VALUE")
    parser.add_argument("--num-classes", type=int, default=None, help="default: from the head's weight")
    parser.add_argument("--in-chans", type=int, default=None, help="default: from the stem's weight")
    parser.add_argument(
        "--fold-bn", action="store_true", help="also fold BN into the convs (not a plain-backbone layout)"
    )
    parser.add_argument(
        "--img-size",
        type=positive_int,
        default=None,
        help="input size for MACs/latency (32 for CIFAR nets, else 224)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=1, help="batch for the latency measurement"
    )
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per model")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")


def load_checkpoint_model(
    path: Path,
    *,
    model: str | None = None,
    attn: str | None = None,
    attn_kwargs: dict | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the training-form model of a checkpoint and load its weights (``strict=True``).

    A thin wrapper of :func:`attnkit.train.checkpoint.load_model` (the one checkpoint loader).

    Args:
        path: an engine checkpoint or a plain ``state_dict`` file.
        model: the model name (required for a plain state_dict).
        attn: overrides the checkpoint's attention module.
        attn_kwargs: overrides the checkpoint's ``attn_kwargs``.
        num_classes: default: the config, else the head's weight.
        in_chans: default: the stem's weight.

    Returns:
        ``(model, build_kwargs)`` with ``build_kwargs`` the ``create_model`` arguments used.

    Raises:
        FileNotFoundError: missing file.
        attnkit.train.CheckpointError: a file that cannot be loaded safely, an unknown layout, a missing
            ``--model``, or weights that do not fit the model (the message names the keys).
    """
    from ..train.checkpoint import load_model

    net, info = load_model(
        path, model=model, attn=attn, attn_kwargs=attn_kwargs, num_classes=num_classes, in_chans=in_chans
    )
    return net, info["build"]


def deployed_config(build: dict[str, Any]) -> dict[str, Any]:
    """The ``create_model`` arguments of the deployed network (ASR removed; use-both keeps its gate)."""
    from attnkit.attention import get_attn

    out = dict(build)
    a = out.get("attn")
    if a and get_attn(a).kind == "bn_wrapper":
        ak = out.get("attn_kwargs") or {}
        both = ak.get("use_both", get_attn(a).paper_kwargs.get("use_both")) if isinstance(ak, dict) else None
        out.pop("attn_kwargs", None)
        out.pop("sharing", None)
        out.pop("scheme", None)
        if both:
            out["attn"] = both
        else:
            out.pop("attn")
    return out


def _measure(
    net: nn.Module, size: tuple[int, ...], batch: int, min_run_time: float, latency: bool
) -> dict[str, Any]:
    from ..measure import measure_latency, profile

    row: dict[str, Any] = {
        "params": sum(p.numel() for p in net.parameters()),
        "macs": profile(net, size).macs,
    }
    if latency:
        row["latency_ms"] = measure_latency(
            net, (batch, *size), min_run_time=min_run_time, warmup=3
        ).median_ms
    return row


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit reparam``; returns the exit code."""
    from attnkit.reparam import reparameterize_model

    ak = dict(args.attn_kwargs) if args.attn_kwargs else None
    net, build = load_checkpoint_model(
        args.checkpoint,
        model=args.model,
        attn=args.attn,
        attn_kwargs=ak,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
    )
    net.eval()
    deployed = reparameterize_model(net, fold_bn=args.fold_bn)
    hw = args.img_size or (
        224
        if build["model"].startswith("resnet")
        and build["model"][6:].isdigit()
        and int(build["model"][6:]) in (18, 34, 50, 101)
        else 32
    )
    size = (build.get("in_chans", 3), hw, hw)
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, yd = net(x), deployed(x)
    err = (y - yd).abs().max().item()
    out = args.out or args.checkpoint.with_suffix(".deploy.pt")
    atomic_torch_save(deployed.state_dict(), out)
    before = _measure(net, size, args.batch_size, args.min_run_time, not args.no_latency)
    after = _measure(deployed, size, args.batch_size, args.min_run_time, not args.no_latency)
    print(f"{'':12}{'params':>12}{'MACs':>16}{'latency (ms)':>15}")
    for label, r in (("train form", before), ("deployed", after)):
        lat = f"{r['latency_ms']:.3f}" if "latency_ms" in r else "-"
        macs = f"{r['macs']:,}"
        print(f"{label:12}{r['params']:>12,}{macs:>16}{lat:>15}")
    print(
        f"max |output difference| on random input: {err:.3g}; latency: batch {args.batch_size} at {hw}x{hw} "
        f"(single measurements are noisy; benchmarks/asr_latency.py gives side-by-side ratios)"
    )
    cfg = deployed_config(build)
    call = ", ".join([repr(cfg["model"])] + [f"{k}={v!r}" for k, v in cfg.items() if k != "model"])
    if args.fold_bn:
        print(
            f"wrote {out} (BN folded into convs: load into the module tree of reparameterize_model(..., fold_bn=True))"
        )
    else:
        print(f"wrote {out}; load with create_model({call}).load_state_dict(torch.load(path), strict=True)")
    return 0
