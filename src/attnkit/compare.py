"""``attnkit compare``: attention variants trained alike and measured side by side.

Trains several attention variants on the same data, seed and budget, and puts accuracy (best AND final epoch), parameters, MACs and latency side by side.

Each variant is an ordinary training run (its own run folder with config, metrics and checkpoints)
inside the comparison folder, so an interrupted comparison keeps every variant it finished and
``--resume auto`` continues the rest. Latency is measured for all variants together, interleaved, in
one process after training (these machines are noisy: only ratios measured side by side are
reported).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import commit_file, write_results

__all__ = ["Variant", "expand_variants", "run_compare", "format_table"]

log = logging.getLogger("attnkit.compare")


@dataclass(frozen=True)
class Variant:
    """One entry of a comparison: an attention module and how it connects.

    Attributes:
        attn: registry name, or None for the plain backbone.
        sharing: ``"block"``/``"stage"`` or None (the module's default).
        scheme: a connection scheme string (``"110|011|..."``) or None (all blocks).
        label: the row name in the table and the run-folder name.
    """

    attn: str | None
    sharing: str | None = None
    scheme: str | None = None
    label: str = ""


def _label(attn, sharing, scheme, n_sharing, n_scheme) -> str:
    if attn is None:
        return "none"
    s = attn
    if sharing is not None and n_sharing > 1:
        s += f"-{sharing}"
    if scheme is not None and n_scheme > 1:
        s += "-" + scheme.replace("|", "_")
    elif scheme is not None:
        s += "-scheme"
    return s


def expand_variants(
    attns: Sequence[str], sharings: Sequence[str | None] = (None,), schemes: Sequence[str | None] = (None,)
) -> list[Variant]:
    """The cross product of modules × sharing × scheme, with the plain backbone listed once, first.

    ``"none"`` in ``attns`` means the plain backbone. ``"all"`` in ``schemes`` (or None) means every
    block.

    Raises:
        ValueError: an empty list, or a duplicate variant.
    """
    if not attns:
        raise ValueError("compare needs at least one --attn value")
    sharings = list(sharings) or [None]
    schemes = [None if s in (None, "", "all") else s for s in (list(schemes) or [None])]
    out: list[Variant] = []
    seen = set()
    for a in attns:
        a = None if a in (None, "", "none", "plain") else a
        combos = [(None, None)] if a is None else [(sh, sc) for sh in sharings for sc in schemes]
        for sh, sc in combos:
            key = (a, sh, sc)
            if key in seen:
                if a is None:
                    continue
                raise ValueError(f"duplicate variant {key}")
            seen.add(key)
            out.append(Variant(a, sh, sc, _label(a, sh, sc, len(sharings), len(schemes))))
    out.sort(key=lambda v: v.attn is not None)  # plain first: the latency baseline
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of comparison rows (best and final top-1, params, MACs, latency ratio)."""
    head = (
        "| variant | best top-1 % (epoch) | final top-1 % | params | Δparams | MACs (M) | latency ms "
        "| latency ratio |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        best = (
            f"{_fmt(r.get('best_top1'))} ({r.get('best_epoch')})" if r.get("best_top1") is not None else "—"
        )
        lines.append(
            f"| {r['variant']} | {best} | {_fmt(r.get('final_top1'))} | {r['params']:,} | {r['params_delta']:+,} | "
            f"{r['macs'] / 1e6:.3f} | {_fmt(r.get('latency_ms'), 3)} | {_fmt(r.get('latency_ratio'), 3)} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in rows:
        x = r["params"] / 1e3
        if r.get("final_top1") is not None:
            ax.scatter([x], [r["final_top1"]], marker="o", color="C0")
        if r.get("best_top1") is not None:
            ax.scatter([x], [r["best_top1"]], marker="^", color="C1")
        y = r.get("final_top1") if r.get("final_top1") is not None else r.get("best_top1")
        if y is not None:
            ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter([], [], marker="o", color="C0", label="final epoch")
    ax.scatter([], [], marker="^", color="C1", label="best epoch")
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    commit_file(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


def run_compare(
    base,
    variants: Sequence[Variant],
    *,
    out_dir: str | os.PathLike,
    latency: bool = True,
    latency_batch: int = 32,
    latency_min_run_time: float = 0.5,
    train: bool = True,
) -> list[dict[str, Any]]:
    """Train every variant with the same config (data, seed, budget), then profile them side by side.

    Args:
        base: an :class:`attnkit.train.TrainConfig`; its ``attn``/``sharing``/``scheme``/``run_name``/
            ``out_dir`` are overridden per variant.
        variants: from :func:`expand_variants`; the first should be the plain backbone (the latency
            and parameter baseline).
        out_dir: the comparison folder; variant runs go to ``out_dir/<label>/``.
        latency: measure latency (interleaved, in one process) at ``latency_batch`` images.
        latency_batch: batch size of the latency measurement (images per call).
        latency_min_run_time: seconds of timing per model and round.
        train: False only profiles (accuracy columns are then empty).

    Returns:
        One dict per variant: variant, attn, sharing, scheme, best_top1, best_epoch, final_top1,
        params, params_delta, macs (per image), latency_ms, latency_ratio, run_dir. Also written to
        ``compare.json``, ``compare.csv``, ``compare.md`` and ``compare.png`` in ``out_dir``.

    Raises:
        ValueError: no variants.
    """
    from .data.datasets import build_from_config
    from .measure import profile
    from .train import build_model

    if not variants:
        raise ValueError("no variants to compare")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_from_config(base)
    h, w = data.img_size
    configs = {
        v.label: dataclasses.replace(
            base, attn=v.attn, sharing=v.sharing, scheme=v.scheme, out_dir=str(out), run_name=v.label
        )
        for v in variants
    }
    # every variant is built (and so validated) before any of them trains
    models = {label: build_model(cfg, data) for label, cfg in configs.items()}
    rows: list[dict[str, Any]] = []
    for v in variants:
        summary = _train_variant(configs[v.label], out / v.label) if train else {}
        model = models[v.label]
        rep = profile(model, input_size=(data.in_chans, h, w))
        rows.append(
            {
                "variant": v.label,
                "attn": v.attn,
                "sharing": model.attn_config.get("sharing"),
                "scheme": v.scheme,
                "best_top1": summary.get("best_eval_top1"),
                "best_epoch": summary.get("best_epoch"),
                "final_top1": summary.get("final_eval_top1"),
                "params": rep.params_total,
                "macs": rep.macs,
                "run_dir": str(out / v.label) if train else None,
            }
        )
    base_params = rows[0]["params"]
    for r in rows:
        r["params_delta"] = r["params"] - base_params
        r["latency_ms"] = r["latency_ratio"] = r["latency_ratio_low"] = r["latency_ratio_high"] = None
    footer = ""
    if latency:
        footer = _add_latency(rows, models, (latency_batch, data.in_chans, h, w), latency_min_run_time)
    title = (
        f"{base.model} on {base.dataset}, {base.epochs} epochs, seed {base.seed}"
        + (f", train subset {base.train_subset}" if base.train_subset else "")
        + (f", test subset {base.test_subset}" if base.test_subset else "")
    )
    notes = (
        "best = best test top-1 over epochs (selected on the test set, the papers' protocol); "
        "final = last epoch. MACs per image at the dataset resolution; latency = median of "
        f"interleaved CPU runs at batch {latency_batch}, ratio to the first row."
        + (f"\n\n{footer}" if footer else "")
    )
    write_results(
        out, "compare", rows, title=f"attnkit compare: {title}", table=format_table(rows), notes=notes
    )
    _plot(rows, out / "compare.png", title)
    return rows


def _train_variant(cfg, run_dir: Path) -> dict[str, Any]:
    """Train one variant, or reuse its ``summary.json`` when resuming a comparison that finished it."""
    from .train import fit

    done = run_dir / "summary.json"
    if done.exists() and cfg.resume == "auto":
        log.info("compare: %s already finished, reusing %s", cfg.run_name, done)
        return json.loads(done.read_text())
    log.info("compare: training %s", cfg.run_name)
    return fit(cfg)


def _add_latency(
    rows: list[dict[str, Any]], models: dict, shape: tuple[int, ...], min_run_time: float
) -> None:
    """Median latency of every model, interleaved in one process, and its ratio to the first row's."""
    from .measure import compare_latency

    rounds = 5
    lat = compare_latency(models, shape, rounds=rounds, min_run_time=min_run_time * rounds)
    for r in rows:
        r["latency_ms"] = lat.reports[r["variant"]].median_ms  # ratio × the first row's ms: they agree
        r["latency_ratio"] = lat.ratios[r["variant"]]
        spread = lat.summaries[r["variant"]]
        r["latency_ratio_low"], r["latency_ratio_high"] = spread.low, spread.high
    return lat.footer()
