"""``attnkit profile``: params, MACs, FLOPs (and optionally latency) of a registered model.

Examples::

    attnkit profile resnet164 --num-classes 100 --attn se
    attnkit profile resnet50 --img-size 224 --attn eca --attn-kwargs kernel_size=3
    attnkit profile resnet164 --num-classes 100 --attn se --latency --batch-size 1 --out-dir benchmarks/results
    attnkit profile resnet164 --num-classes 100 --json profile.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._io import atomic_write_text

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``attnkit profile`` options to ``parser``.

    Args:
        parser: the sub-command's parser.
    """
    from attnkit.train.config import parse_kv

    parser.add_argument("model", help="a registered model name (see attnkit.list_models())")
    parser.add_argument(
        "--attn", default=None, help="attention module name (see attnkit.list_attn()); default none"
    )
    parser.add_argument(
        "--attn-kwargs",
        nargs="*",
        type=parse_kv,
        default=[],
        metavar="K=V",
        help="attention constructor options, values parsed as Python literals",
    )
    parser.add_argument(
        "--sharing",
        default=None,
        choices=["block", "stage"],
        help="one module per block or one shared per stage (default: the module's own)",
    )
    parser.add_argument(
        "--scheme",
        default=None,
        help='connection scheme: "110|0011|110010|011", the bits without bars, all/full, none/empty, or an '
        "official name (see attnkit search --list-schemes)",
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, help="classifier outputs (default: the model's)"
    )
    parser.add_argument("--in-chans", type=int, default=None, help="input channels (default 3)")
    parser.add_argument(
        "--img-size",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="input size: one value (square) or H W; default 32 for CIFAR nets, else 224",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="batch for counting and timing (default 1)")
    parser.add_argument(
        "--backward", action="store_true", help="also count one backward pass (train mode, on a copy)"
    )
    parser.add_argument(
        "--elementwise", action="store_true", help="add the opt-in element-wise FLOP estimate"
    )
    parser.add_argument(
        "--reparam",
        action="store_true",
        help="profile and time attnkit.reparameterize_model(model), the deployed (fused) form",
    )
    parser.add_argument(
        "--depth", type=int, default=2, help="module depth of the per-module table (default 2)"
    )
    parser.add_argument("--latency", action="store_true", help="also time the forward pass")
    parser.add_argument(
        "--precision", default="32-true", help="timing precision (32-true, bf16-mixed, bf16-true, ...)"
    )
    parser.add_argument("--channels-last", action="store_true", help="time in channels_last (NHWC)")
    parser.add_argument("--compile", default=None, help="time a torch.compile'd model (mode or backend name)")
    parser.add_argument("--device", default=None, help="timing device (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads for timing (default: torch's)"
    )
    parser.add_argument(
        "--min-run-time", type=float, default=1.0, help="seconds of timed calls (default 1.0)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="warm-up calls before timing (default 10)")
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write the profile (and latency) as JSON"
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="with --latency: also write the benchmark-*.csv/.json/.md result files here",
    )
    parser.add_argument("--no-modules", action="store_true", help="omit the per-module table")


def _default_img_size(model_name: str) -> int:
    from attnkit.models import get_model_fn

    mod = getattr(get_model_fn(model_name), "__module__", "")
    return 32 if mod.endswith("resnet_cifar") else 224


def _existing_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier result file with the same name (so repeated runs append), else []."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    if isinstance(rows, dict):  # attnkit._io.write_results: {"title": ..., "rows": [...]}
        rows = rows.get("rows")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _rows_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Model | Form | Batch | Input | Params (M) | MACs (M) | FLOPs (M) | Median (ms) | IQR (ms) | Samples/s "
        "| Threads | Load avg | Time (UTC) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('name')} | {r.get('form')} | {r.get('batch')} | {r.get('height')}×{r.get('width')} | "
            f"{r.get('params', 0) / 1e6:.3f} | {r.get('macs', 0) / 1e6:.2f} | {r.get('flops', 0) / 1e6:.2f} | "
            f"{r.get('median_ms', 0):.3f} | {r.get('iqr_ms', 0):.3f} | {r.get('samples_per_s', 0):.1f} | "
            f"{r.get('num_threads')} | {r.get('load_avg_1m')} | {r.get('timestamp_utc')} |"
        )
    lines += [
        "",
        "Absolute times from separate runs are not comparable on shared hardware; "
        "use `attnkit compare` / benchmarks/attention_cost.py for side-by-side ratios.",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Build the model, print its profile (and latency).

    Args:
        args: the parsed flags.

    Returns:
        The exit code: 0 on success, 2 on bad input.
    """
    import sys

    from attnkit import create_model
    from attnkit.measure import measure_latency, profile, result_filename, write_results
    from attnkit.train.config import check_attn_kwargs

    try:
        kw: dict[str, Any] = {}
        if args.attn is not None:
            kw["attn"] = args.attn
        if args.attn_kwargs:
            kw["attn_kwargs"] = dict(args.attn_kwargs)
        for name in ("sharing", "scheme", "num_classes", "in_chans"):
            if getattr(args, name) is not None:
                kw[name] = getattr(args, name)
        check_attn_kwargs(args.attn, kw.get("attn_kwargs") or {}, args.scheme, args.sharing)
        model = create_model(args.model, **kw)
        if args.reparam:
            from attnkit.reparam import reparameterize_model

            model = reparameterize_model(model)
        size = args.img_size or [_default_img_size(args.model)]
        if len(size) not in (1, 2):
            raise ValueError(f"--img-size takes one value or two (H W), got {size}")
        h, w = (size[0], size[0]) if len(size) == 1 else size
        in_chans = args.in_chans or getattr(model, "in_chans", 3)
        rep = profile(
            model,
            (in_chans, h, w),
            batch_size=args.batch_size,
            backward=args.backward,
            depth=args.depth,
            elementwise=args.elementwise,
        )
    except (ValueError, TypeError, ImportError) as e:
        print(f"attnkit profile: {e}", file=sys.stderr)
        return 2
    print(rep)
    print()
    print(rep.to_markdown(by_module=not args.no_modules))
    result: dict[str, Any] = {"profile": rep.to_dict()}
    if args.latency:
        try:
            lat = measure_latency(
                model,
                (args.batch_size, in_chans, h, w),
                device=args.device,
                precision=args.precision,
                channels_last=args.channels_last,
                compile=args.compile,
                warmup=args.warmup,
                min_run_time=args.min_run_time,
                num_threads=args.threads,
            )
        except (ValueError, ImportError) as e:
            print(f"attnkit profile: {e}", file=sys.stderr)
            return 2
        print()
        print(lat)
        result["latency"] = lat.to_dict()
        if args.out_dir:
            stem = result_filename(
                kind="infer",
                precision=lat.precision,
                channels_last=args.channels_last,
                compile=lat.compile,
                device=lat.device_type,
            )[: -len(".csv")]
            row = {"name": rep.model_name, "flops": 2 * lat.macs, **lat.to_dict()}
            rows = _existing_rows(Path(args.out_dir) / f"{stem}.json") + [row]
            paths = write_results(args.out_dir, stem, rows, table=_rows_markdown(rows))
            print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        path = atomic_write_text(args.json, json.dumps(result, indent=1, default=str) + "\n")
        print(f"wrote {path}")
    return 0
