"""The rows and table of a comparison: per-seed results aggregated per variant, rounded for reading.

:func:`aggregate_rows` turns fit summaries into one row per variant (mean ± std over seeds, the test
set's binomial standard error, the paired difference to the reference); :func:`latency_columns` adds
the interleaved latency measurement; :func:`format_table` prints the rows as markdown. Files keep full
precision.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from .compare_plan import Variant

__all__ = [
    "binomial_se",
    "aggregate_rows",
    "latency_columns",
    "format_table",
    "describe_budget",
    "results_notes",
    "results_meta",
]


# ---------------------------------------------------------------------------------------------------
# rows: per-seed results aggregated per variant


def binomial_se(top1_percent: float | None, n: int | None) -> float | None:
    """Standard error of a top-1 accuracy from ``n`` test images, in percentage points.

    ``100 · sqrt(p (1 - p) / n)`` with ``p = top1 / 100``: the spread of the accuracy over test sets of
    this size drawn from the same distribution (a normal approximation to the binomial).

    Args:
        top1_percent: the accuracy, percent.
        n: test images.

    Returns:
        The standard error in points, or None when either is unknown.
    """
    if top1_percent is None or not n:
        return None
    p = min(max(top1_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def _mean_std(xs: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [float(x) for x in xs if x is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def aggregate_rows(
    variants: Sequence[Variant],
    seeds: Sequence[int],
    summaries: dict[tuple[str, int], dict[str, Any]],
    test_images: int | None,
) -> list[dict[str, Any]]:
    """One row per variant: accuracy mean ± std over seeds, the test set's binomial SE, paired Δ to the first.

    Args:
        variants: the variants; the first is the reference of the paired differences.
        seeds: the seeds every variant was trained with.
        summaries: ``{(label, seed): fit summary}`` (missing entries: not trained).
        test_images: the test-set size (for :func:`binomial_se`).

    Returns:
        Rows with ``variant``, ``attn``, ``sharing``, ``scheme``, ``seeds``, ``best_top1`` (mean),
        ``best_top1_std``, ``best_epoch`` (one seed) , ``final_top1`` (mean), ``final_top1_std``
        (None for one seed), ``final_top1_se`` (binomial SE at the mean), ``delta_final`` and
        ``delta_final_std`` (mean and std over seeds of the paired difference to the reference, points),
        ``test_images`` and ``per_seed`` (``{seed: {best_top1, best_epoch, final_top1, run_dir}}``).
        Full precision; round only when printing.
    """
    ref = variants[0].label
    rows = []
    for v in variants:
        per = {s: summaries.get((v.label, s), {}) for s in seeds}
        best, best_std = _mean_std([p.get("best_eval_top1") for p in per.values()])
        final, final_std = _mean_std([p.get("final_eval_top1") for p in per.values()])
        deltas = []
        for s, p in per.items():
            r = summaries.get((ref, s), {}).get("final_eval_top1")
            if p.get("final_eval_top1") is not None and r is not None:
                deltas.append(p["final_eval_top1"] - r)
        d, d_std = _mean_std(deltas)
        rows.append(
            {
                "variant": v.label,
                "attn": v.attn,
                "sharing": v.sharing,
                "scheme": v.scheme,
                "seeds": list(seeds),
                "best_top1": best,
                "best_top1_std": best_std,
                "best_epoch": per[seeds[0]].get("best_epoch") if len(seeds) == 1 else None,
                "final_top1": final,
                "final_top1_std": final_std,
                "final_top1_se": binomial_se(final, test_images),
                "delta_final": d,
                "delta_final_std": d_std,
                "test_images": test_images,
                "per_seed": {
                    str(s): {
                        "best_top1": p.get("best_eval_top1"),
                        "best_epoch": p.get("best_epoch"),
                        "final_top1": p.get("final_eval_top1"),
                        "run_dir": p.get("run_dir"),
                    }
                    for s, p in per.items()
                },
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------
# the table


def _f(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _pm(v: float | None, e: float | None, digits: int = 2, sign: bool = False) -> str:
    s = _f(v, digits, sign)
    return s if v is None or e is None else f"{s} ± {e:.{digits}f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of comparison rows, numbers rounded for reading (files keep full precision).

    One seed: best top-1 (its epoch), final top-1 ± the test set's binomial SE, the difference to the
    first row. Several seeds: mean ± std over seeds, and the paired difference mean ± std.

    Args:
        rows: from :func:`run_compare` (or :func:`aggregate_rows` plus params/MACs/latency fields).

    Returns:
        The markdown table.
    """
    if not rows:
        return ""
    n_seeds = len(rows[0].get("seeds") or [0])
    ref = rows[0]["variant"]
    if n_seeds > 1:
        acc = f"best top-1 % (mean ± std, {n_seeds} seeds) | final top-1 % (mean ± std) | Δfinal vs {ref} (paired)"
    else:
        acc = f"best top-1 % (epoch) | final top-1 % ± SE | Δfinal vs {ref}"
    head = f"| variant | {acc} | params | Δparams | MACs (M) | latency ms | latency ratio (spread) |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if n_seeds > 1:
            best = _pm(r.get("best_top1"), r.get("best_top1_std"))
            final = _pm(r.get("final_top1"), r.get("final_top1_std"))
        else:
            best = _f(r.get("best_top1"))
            if r.get("best_epoch") is not None and r.get("best_top1") is not None:
                best += f" ({r['best_epoch']})"
            final = _pm(r.get("final_top1"), r.get("final_top1_se"))
        delta = (
            "—"
            if r["variant"] == ref
            else _pm(r.get("delta_final"), r.get("delta_final_std") if n_seeds > 1 else None, sign=True)
        )
        ratio = _f(r.get("latency_ratio"))
        if r.get("latency_ratio_low") is not None and r["variant"] != ref:
            ratio += f" ({r['latency_ratio_low']:.2f}–{r['latency_ratio_high']:.2f})"
        lines.append(
            f"| {r['variant']} | {best} | {final} | {delta} | {r['params']:,} | {r['params_delta']:+,} | "
            f"{r['macs'] / 1e6:.2f} | {_f(r.get('latency_ms'))} | {ratio} |"
        )
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe_budget(base, seeds: Sequence[int]) -> str:
    """``"resnet20 on digits, 5 epochs, seed 0"`` with correct plurals and the subsets."""
    s = f"{base.model} on {base.dataset}, {_plural(base.epochs, 'epoch')}, "
    s += f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    if base.train_subset:
        s += f", {_plural(base.train_subset, 'training image')}"
    if base.test_subset:
        s += f", {_plural(base.test_subset, 'test image')}"
    return s


def latency_columns(rows: list[dict[str, Any]], lat) -> None:
    """Fill ``latency_ms``, ``latency_ratio`` and its spread from a :class:`~attnkit.measure.CompareReport`.

    The ms of a row is its ratio × the reference's median round time (the comparison's own definition),
    so a row with a ratio above 1 always has more ms than the reference, and below 1 fewer.

    Args:
        rows: the comparison rows (``variant`` keys name the report's models); updated in place.
        lat: the report.
    """
    for r in rows:
        s = lat.summaries[r["variant"]]
        r["latency_ms"] = lat.reports[r["variant"]].median_ms
        r["latency_ratio"] = s.ratio
        r["latency_ratio_low"], r["latency_ratio_high"] = s.low, s.high


def results_notes(
    variants: Sequence[Variant], seeds: Sequence[int], test_images: int, latency_batch: int, footer: str = ""
) -> str:
    """The notes under the comparison table: how best/final and ± are defined, what latency measured.

    Args:
        variants: the variants; the first is the reference of the paired differences.
        seeds: the seeds every variant was trained with (one seed: ± is the binomial SE; several: the std).
        test_images: the test-set size.
        latency_batch: images per call when timing.
        footer: the latency report's footer (:meth:`attnkit.measure.CompareReport.footer`), or ``""``.

    Returns:
        The notes, markdown.
    """
    sel = "best = best test top-1 over epochs (selected on the test set, the papers' protocol, optimistic); "
    acc = (
        f"± = the test set's binomial standard error ({_plural(test_images, 'test image')})"
        if len(seeds) == 1
        else f"± = std over {len(seeds)} seeds; Δ = paired difference to {variants[0].label}, same seed"
    )
    return (
        f"{sel}final = last epoch; {acc}. MACs per image at the dataset resolution; latency at batch "
        f"{latency_batch}, CPU, interleaved (see below)." + (f"\n\n{footer}" if footer else "")
    )


def results_meta(
    title: str, seeds: Sequence[int], test_images: int, latency_batch: int, lat
) -> dict[str, Any]:
    """The ``meta`` block of ``compare.json``: the budget, seeds, test-set size and the latency settings.

    Args:
        title: from :func:`describe_budget`.
        seeds: the seeds.
        test_images: the test-set size.
        latency_batch: images per call when timing.
        lat: the :class:`~attnkit.measure.CompareReport`, or None when latency was not measured.

    Returns:
        The dict (``latency`` None without a measurement).
    """
    return {
        "budget": title,
        "seeds": list(seeds),
        "test_images": test_images,
        "latency": None
        if lat is None
        else {
            "batch": latency_batch,
            "rounds": lat.rounds,
            "spread": lat.spread_kind,
            "load_avg_start": lat.load_avg_start,
            "load_avg_end": lat.load_avg_end,
            "num_threads": lat.num_threads,
            "cpu_count": lat.cpu_count,
            "warnings": lat.warnings,
        },
    }
