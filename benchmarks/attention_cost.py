"""Cost of every registered attention module: params, MACs and latency, as ratios to the plain backbone.

For each backbone (ResNet-164 at 32×32 with a CIFAR-100 head, ResNet-50 at 224×224 with 1000 classes)
this script builds the plain net and one net per module in ``attnkit.list_attn()`` (so modules added
later are included automatically; a module that cannot build on a backbone is skipped with the reason
printed), counts params and MACs with :func:`attnkit.measure.profile`, and times them against the plain net
**side by side, interleaved, in one process** with :func:`attnkit.measure.compare_latency`: by default each
module (with its deployed form) against its own interleaved plain baseline (``--grouping pair``, short
rounds, so load drift on a shared machine cancels better), or all models at once (``--grouping all``). Modules that
re-parameterise (ASR) get a second row with the deployed (fused) form. Results go to
``benchmarks/results/attention_cost-benchmark-infer-...{csv,json,md}`` (the name carries precision,
memory format, torch version and device).

Usage::

    python benchmarks/attention_cost.py --quick              # a few minutes on 2 CPU cores
    python benchmarks/attention_cost.py --threads 2 --min-run-time 3
    python benchmarks/attention_cost.py --backbones resnet164 --attn se eca cbam

Only the ratios measured in one run are meaningful; absolute times on shared CPUs are not comparable
across runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from _common import env_metadata, fmt_m, fmt_ratio, markdown_table, write_outputs
from torch import nn

from attnkit import create_model, get_attn, list_attn
from attnkit.measure import compare_latency, profile, result_filename


@dataclass(frozen=True)
class Backbone:
    name: str
    num_classes: int
    img: int
    batch: int
    quick_batch: int


BACKBONES = {
    "resnet164": Backbone("resnet164", 100, 32, 32, 4),
    "resnet50": Backbone("resnet50", 1000, 224, 4, 1),
}


def _build(bb: Backbone, attn: str | None) -> nn.Module:
    return create_model(bb.name, num_classes=bb.num_classes, attn=attn)


def _deployed(model: nn.Module) -> nn.Module | None:
    """The re-parameterised form if fusion changes the model (e.g. ASR), else None."""
    try:
        from attnkit.reparam import is_reparameterizable, reparameterize_model
    except ImportError:
        return None
    return reparameterize_model(model) if is_reparameterizable(model) else None


def run_backbone(bb: Backbone, attns: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    size = (3, bb.img, bb.img)
    batch = args.batch or (bb.quick_batch if args.quick else bb.batch)
    models: dict[str, nn.Module] = {}
    info: dict[str, dict[str, Any]] = {}
    for attn in [None, *attns]:
        label = attn or "plain"
        try:
            model = _build(bb, attn).eval()
            rep = profile(model, size)
        except Exception as e:  # a module that cannot build or run on this backbone is skipped, loudly
            print(f"[skip] {bb.name} + {label}: {type(e).__name__}: {e}", file=sys.stderr)
            if attn is None:
                raise
            continue
        kind = get_attn(attn).kind if attn else "—"
        models[label] = model
        info[label] = {
            "attn": attn,
            "kind": kind,
            "form": "train-time",
            "params": rep.params_total,
            "macs": rep.macs,
        }
        dep = _deployed(model) if attn else None
        if dep is not None:
            drep = profile(dep, size)
            models[f"{label} (deployed)"] = dep
            info[f"{label} (deployed)"] = {
                "attn": attn,
                "kind": kind,
                "form": "deployed",
                "params": drep.params_total,
                "macs": drep.macs,
            }
        print(
            f"  {bb.name:9s} {label:18s} params {rep.params_total:>11,d}  MACs {rep.macs:>14,d}", flush=True
        )
    min_run = args.min_run_time if args.min_run_time is not None else (1.2 if args.quick else 3.0)
    rounds = args.rounds or (6 if args.quick else 8)
    warmup = 2 if args.quick else 10
    t0 = time.perf_counter()
    timing = dict(
        rounds=rounds,
        min_run_time=min_run,
        warmup=warmup,
        num_threads=args.threads,
        precision=args.precision,
        channels_last=args.channels_last,
    )
    shape = (batch, *size)
    res: dict[str, dict[str, Any]] = {}
    if args.grouping == "all":
        cmp = compare_latency(models, shape, **timing)
        res = {k: cmp[k] for k in models}
    else:  # plain vs one module (and its deployed form): short rounds, so load drift cancels better
        plain_rows = []
        for attn in dict.fromkeys(m["attn"] for m in info.values() if m["attn"]):
            group = {"plain": models["plain"], **{k: models[k] for k, m in info.items() if m["attn"] == attn}}
            cmp = compare_latency(group, shape, **timing)
            plain_rows.append(cmp["plain"])
            res.update({k: cmp[k] for k in group if k != "plain"})
        if not plain_rows:
            plain_rows.append(compare_latency({"plain": models["plain"]}, shape, **timing)["plain"])
        mid = sorted(plain_rows, key=lambda r: r["median_ms"])[len(plain_rows) // 2]
        res["plain"] = mid  # the median of the baseline's timings over all groups; ratio 1.0
    print(f"  timed {len(models)} models ({args.grouping}) in {time.perf_counter() - t0:.1f} s", flush=True)
    base = info["plain"]
    ref_ms = res["plain"]["median_ms"]  # one latency definition: every row's ms = its ratio × this
    rows = []
    for label, meta in info.items():
        r = res[label]
        rows.append(
            {
                "backbone": bb.name,
                "input": f"{bb.img}x{bb.img}",
                "num_classes": bb.num_classes,
                "variant": label,
                "attn": meta["attn"],
                "kind": meta["kind"],
                "form": meta["form"],
                "params": meta["params"],
                "params_delta": meta["params"] - base["params"],
                "params_ratio": meta["params"] / base["params"],
                "macs": meta["macs"],
                "flops": 2 * meta["macs"],
                "macs_delta": meta["macs"] - base["macs"],
                "macs_ratio": meta["macs"] / base["macs"],
                "batch": batch,
                "median_ms": r["ratio"] * ref_ms,
                "iqr_ms": r["iqr_ms"],
                "n": r["n"],
                "images_per_s": batch * 1e3 / (r["ratio"] * ref_ms),
                "latency_ratio": r["ratio"],
                "latency_ratio_low": r["ratio_low"],
                "latency_ratio_high": r["ratio_high"],
                "latency_ratio_spread": f"{r['ratio_low']:.3f}–{r['ratio_high']:.3f}",
                "load_avg_start": r["load_avg_start"],
                "load_avg_end": r["load_avg_end"],
                "first_call_ms": r["first_call_ms"],
                "rounds": rounds,
                "min_run_time_s": min_run,
                **{
                    k: r[k]
                    for k in (
                        "precision",
                        "memory_format",
                        "compile",
                        "device_type",
                        "device_name",
                        "num_threads",
                        "torch_version",
                        "attnkit_version",
                        "python_version",
                        "timestamp_utc",
                    )
                },
            }
        )
    return rows


COLUMNS = [
    ("Module", "variant", None),
    ("Kind", "kind", None),
    ("Params (M)", "params", fmt_m),
    ("Δ params", "params_delta", lambda v: f"{v:+,d}"),
    ("MACs (M)", "macs", lambda v: fmt_m(v, 2)),
    ("FLOPs (M)", "flops", lambda v: fmt_m(v, 2)),
    ("MACs ratio", "macs_ratio", lambda v: fmt_ratio(v, 4)),
    ("Median (ms)", "median_ms", lambda v: f"{v:.2f}"),
    ("IQR (ms)", "iqr_ms", lambda v: f"{v:.2f}"),
    ("Images/s", "images_per_s", lambda v: f"{v:.1f}"),
    ("Latency ratio", "latency_ratio", lambda v: fmt_ratio(v, 3)),
    ("Ratio spread", "latency_ratio_spread", None),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="small batch, few short rounds (a few minutes on 2 cores)"
    )
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    p.add_argument(
        "--attn", nargs="+", default=None, help="modules to include (default: every registered one)"
    )
    p.add_argument("--batch", type=int, default=None, help="override the timing batch of every backbone")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for timing (default 1)")
    p.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        help="timed seconds per model, all rounds (default 3; quick 1.2)",
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8; quick 6)")
    p.add_argument(
        "--grouping",
        choices=["pair", "all"],
        default="pair",
        help="pair: time plain vs each module (and its deployed form) interleaved, module by module "
        "(short rounds, default); all: every model of a backbone in one interleaved comparison",
    )
    p.add_argument("--precision", default="32-true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--out-dir", default=None, help="default benchmarks/results/")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    attns = args.attn or list_attn()
    unknown = [a for a in attns if a not in list_attn()]
    if unknown:
        p.error(f"unknown attention modules {unknown}; registered: {', '.join(list_attn())}")
    env = env_metadata("cpu", args.threads)
    print(
        f"attention cost: {len(attns)} modules × {args.backbones}, {args.threads} thread(s), "
        f"{env['device_name']}, torch {env['torch_version']}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    sections = []
    for name in args.backbones:
        bb = BACKBONES[name]
        bb_rows = run_backbone(bb, attns, args)
        rows += bb_rows
        b = bb_rows[0]
        sections.append(
            f"### {bb.name}, {bb.img}×{bb.img}, {bb.num_classes} classes, batch {b['batch']}\n\n"
            + markdown_table(bb_rows, COLUMNS)
        )
    stem = (
        "attention_cost-"
        + result_filename(precision=args.precision, channels_last=args.channels_last, device="cpu")[
            : -len(".csv")
        ]
    )
    r0 = rows[0]
    md = "\n\n".join(
        [
            "## Attention module cost (params, MACs, latency) relative to the plain backbone",
            f"{r0['device_name']}, {r0['num_threads']} thread(s), torch {r0['torch_version']}, {r0['precision']}, "
            f"{r0['memory_format']}, eager; {r0['rounds']} interleaved rounds of {r0['min_run_time_s']} s per model in "
            f"total, grouping `{args.grouping}`; `{env['command']}`, {r0['timestamp_utc']}.",
            *sections,
            "MACs and FLOPs per image by torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 × MACs; BN, activations, "
            "pooling and element-wise gating are not counted, which is why a gate can be nearly free in MACs and "
            "still cost latency). Latency ratio = median over rounds of the per-round median time divided by the "
            "plain backbone's, measured interleaved in one process (grouping `pair`: each module against its own "
            "interleaved plain baseline; the plain row shows the median baseline); Median (ms) = ratio × the plain "
            "row's ms, so both columns agree; Ratio spread = IQR of the per-round ratios (min–max below 4 rounds); "
            f"load average {r0['load_avg_start']} → {r0['load_avg_end']} on {env.get('cpu_count')} CPUs. Only ratios are "
            'comparable, absolute times on a shared CPU are not. "(deployed)" rows are the re-parameterised '
            "form; a deployed form identical to the plain net shows the noise level of the run.",
        ]
    )
    paths = write_outputs(rows, stem, md, args.out_dir)
    print()
    print(md)
    print()
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
