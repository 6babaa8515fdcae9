"""``attnkit compare``: the main job, attention variants side by side.

Same data, seed(s) and budget for a list of attention variants; prints a markdown table (best and final
top-1 with their noise, params, MACs, latency ratio to the plain backbone with its spread) and writes
it with a two-panel plot (accuracy vs latency ratio, accuracy vs parameters) into the comparison folder.

Every variant and setting is checked before the first one trains. ``--resume auto`` continues the
latest matching comparison under ``--out-dir`` (or the one ``--name`` names); Ctrl-C stops with one
line saying what was kept and the command that resumes it.

With no arguments it runs a small, quick comparison (resnet20; none, SE, CBAM, ECA) on scikit-learn's
embedded digits data.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "main"]

log = logging.getLogger("attnkit.compare")

_DATASETS = "digits (embedded, the default), fashion-mnist, cifar10, cifar100, stl10, image-folder"


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def _seeds(s: str) -> list[int]:
    try:
        out = [int(p) for p in _csv(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``attnkit compare`` (every flag has a help text; fixed choices are listed).

    Args:
        p: the sub-command's parser.
    """
    from ..measure.precision import PRECISIONS

    d = p.add_argument_group("data and model")
    d.add_argument("--data", "--dataset", dest="dataset", default="digits", metavar="NAME", help=_DATASETS)
    d.add_argument(
        "--data-dir", default=None, help="where the dataset lives (fashion-mnist, cifar, stl10, image-folder)"
    )
    d.add_argument(
        "--download", action="store_true", help="allow torchvision to download the dataset into --data-dir"
    )
    d.add_argument("--model", default="resnet20", help="backbone (attnkit.list_models(); default resnet20)")
    d.add_argument(
        "--train-subset",
        type=int,
        default=None,
        metavar="N",
        help="use N training images (seeded, stratified)",
    )
    d.add_argument(
        "--test-subset",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on a fixed stratified subset of N test images (fashion-mnist)",
    )
    v = p.add_argument_group("variants")
    v.add_argument(
        "--attn",
        type=_csv,
        default=["none", "se", "cbam", "eca"],
        metavar="A,B,...",
        help="comma-separated attention modules (attnkit.list_attn(); a wrong name lists them); 'none' is the "
        "plain backbone, always the first row and the reference (default none,se,cbam,eca)",
    )
    v.add_argument(
        "--attn-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="keyword arguments applied to every module (values parsed as Python literals), e.g. rd_ratio=0.125",
    )
    v.add_argument(
        "--sharing",
        type=_csv,
        default=None,
        metavar="block,stage",
        help="sharing modes crossed with the modules: block (one module per block) and/or stage (one per stage); "
        "default: each module's own",
    )
    v.add_argument(
        "--scheme",
        type=_csv,
        default=None,
        metavar="S,S,...",
        help="connection schemes crossed with the modules ('all' = every block), e.g. 'all,110|011|001'",
    )
    t = p.add_argument_group("training (the same for every variant)")
    t.add_argument(
        "--recipe",
        default=None,
        help="training preset (attnkit.train.list_recipes(); default quick: short cosine schedule)",
    )
    t.add_argument(
        "--epochs", type=int, default=None, help="epochs per variant (default 5 on digits, 10 otherwise)"
    )
    t.add_argument(
        "--batch-size", type=int, default=None, help="global training batch (default: the recipe's)"
    )
    t.add_argument("--lr", type=float, default=None, help="peak SGD learning rate (default: the recipe's)")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    t.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        metavar="0,1,2",
        help="train every variant with each seed (paired) and report mean ± std and paired differences; overrides --seed",
    )
    t.add_argument(
        "--precision", default=None, choices=list(PRECISIONS), help="training precision (default 32-true)"
    )
    t.add_argument("--devices", default=None, help="devices per run (an integer; DDP when > 1)")
    t.add_argument(
        "--accelerator", default=None, choices=["cpu", "gpu", "cuda", "mps", "auto"], help="default auto"
    )
    t.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers per run (default: the recipe's)"
    )
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads per training process (default: the free cores minus --workers)",
    )
    o = p.add_argument_group("output and resuming")
    o.add_argument("--out-dir", default="runs", help="parent folder of the comparison folder (default runs)")
    o.add_argument(
        "--name", default=None, help="comparison folder name (default compare-<data>-<model>-<time>)"
    )
    o.add_argument(
        "--resume",
        default=None,
        choices=["auto"],
        help="auto: continue the comparison --name names, or without --name the latest matching one under "
        "--out-dir; finished runs with the same config are reused, interrupted ones resumed, changed ones retrained",
    )
    o.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    o.add_argument("--latency-batch", type=int, default=32, help="images per call when timing (default 32)")
    o.add_argument(
        "--latency-time", type=float, default=0.5, help="seconds of timing per model and round (default 0.5)"
    )
    o.add_argument(
        "--progress", default=None, choices=["auto", "bar", "lines", "none"], help="training progress display"
    )


def _parse_kv(items: list[str]) -> dict:
    from ..train.config import parse_kv

    try:
        return dict(parse_kv(it) for it in items)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--attn-kwargs: {e}") from None


def _base_config(args: argparse.Namespace):
    from ..train import resolve_config

    epochs = args.epochs if args.epochs is not None else (5 if args.dataset == "digits" else 10)
    overrides = {
        "dataset": args.dataset,
        "model": args.model,
        "epochs": epochs,
        "seed": args.seeds[0] if args.seeds else args.seed,
        "attn_kwargs": _parse_kv(args.attn_kwargs),
    }
    for k in (
        "data_dir", "batch_size", "lr", "train_subset", "test_subset", "precision", "accelerator", "workers",
        "threads", "progress",
    ):  # fmt: skip
        v = getattr(args, k)
        if v is not None:
            overrides[k] = v
    if args.devices is not None:
        overrides["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.resume:
        overrides["resume"] = args.resume
    if args.download:
        overrides["download"] = True
    return resolve_config({"recipe": args.recipe or "quick", **overrides})


def resume_command(args: argparse.Namespace, name: str) -> str:
    """The ``attnkit compare ...`` line that continues this comparison (the given flags, ``--name``, ``--resume auto``).

    Args:
        args: the parsed flags.
        name: the comparison folder name.

    Returns:
        A shell-quoted command line.
    """
    p = argparse.ArgumentParser()
    add_arguments(p)
    parts = ["attnkit", "compare"]
    for a in p._actions:
        if not a.option_strings or a.dest in ("help", "name", "resume"):
            continue
        val = getattr(args, a.dest, a.default)
        if val == a.default:
            continue
        flag = a.option_strings[0]
        if a.nargs == 0:
            parts.append(flag)
        elif isinstance(val, list):
            parts += [flag, *map(str, val)] if a.nargs == "*" else [flag, ",".join(map(str, val))]
        else:
            parts += [flag, str(val)]
    return shlex.join([*parts, "--name", name, "--resume", "auto"])


def _kept(folder: Path) -> str:
    """What an interrupted comparison folder holds: finished runs and the epoch of a started one."""
    done, started = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        if (d / "summary.json").exists():
            done.append(d.name)
        elif (d / "last.ckpt").exists():
            rows = (d / "metrics.csv").read_text().count("\n") - 1 if (d / "metrics.csv").exists() else 0
            started.append(f"{d.name} (after {rows} epoch{'' if rows == 1 else 's'})")
    s = f"kept {len(done)} finished run{'' if len(done) == 1 else 's'}"
    s += f" ({', '.join(done)})" if done else ""
    return s + (f" and {', '.join(started)}" if started else "")


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print its table.

    Args:
        args: the parsed flags.

    Returns:
        0 on success, 130 after Ctrl-C (one line: what was kept, how to resume).

    Raises:
        ValueError, TypeError: a bad variant or setting (before anything is written).
        FileExistsError: ``--name`` already holds a comparison and ``--resume`` is not given.
    """
    from ..compare import (
        describe_budget,
        expand_variants,
        find_resumable,
        format_table,
        request_dict,
        run_compare,
    )
    from ..train.build import setup_logging

    setup_logging()  # one handler for every attnkit logger: one line per event
    # torch.utils.benchmark imports cpp_extension, which warns "No CUDA runtime is found" on every CPU run
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    base = _base_config(args)
    variants = expand_variants(args.attn, args.sharing or [None], args.scheme or [None])
    seeds = args.seeds or [base.seed]
    name = args.name
    if name is None and args.resume:
        found = find_resumable(args.out_dir, request_dict(base, variants, seeds))
        if found is not None:
            name = found.name
            log.info("compare: --resume auto continues %s", found)
        else:
            log.info(
                "compare: --resume auto: no earlier comparison of this data and model under %s, starting one",
                args.out_dir,
            )
    name = name or f"compare-{args.dataset}-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(args.out_dir) / name
    base = dataclasses.replace(base, out_dir=str(out_dir))

    def started(folder: Path) -> None:
        if args.name is None:
            log.info(
                "compare: writing %s; if interrupted, resume with: %s", folder, resume_command(args, name)
            )

    try:
        rows = run_compare(
            base,
            variants,
            out_dir=out_dir,
            seeds=seeds,
            latency=not args.no_latency,
            latency_batch=args.latency_batch,
            latency_min_run_time=args.latency_time,
            resume=bool(args.resume),
            on_start=started,
        )
    except KeyboardInterrupt:
        if not out_dir.is_dir():
            print("attnkit compare: interrupted before anything was written", file=sys.stderr)
        else:
            print(
                f"attnkit compare: interrupted; {_kept(out_dir)} in {out_dir}; resume with: "
                f"{resume_command(args, name)}",
                file=sys.stderr,
            )
        return 130
    print()
    print(describe_budget(base, seeds))
    print(format_table(rows))
    print(f"\nwritten to {out_dir}/compare.md, compare.csv, compare.json, compare.png")
    return 0
