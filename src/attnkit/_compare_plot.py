"""The figure of ``attnkit compare``: accuracy against latency ratio and against parameters.

Two panels share the accuracy axis. Each variant has one colour: a filled circle at its final-epoch
top-1 and a hollow triangle at its best-epoch top-1. The thin black error bar is the test set's
binomial standard error (:func:`attnkit.compare.binomial_se`); with several seeds a thick bar of the
variant's colour shows ± one standard deviation over seeds and the points are the seed means. On the
latency panel the horizontal bar is the ratio's spread over interleaved rounds.

Honest axes: the accuracy axis spans at least ten binomial standard errors (so a one-image difference
does not fill the figure) and never leaves 0–100 %; the latency axis always shows the reference's 1.0. Variant names are placed so that they do not overlap
(:func:`place_labels`), even when variants share a parameter count and an accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._io import save_figure

__all__ = ["plot_compare", "accuracy_limits", "place_labels"]


def accuracy_limits(values: list[float], se: float | None, min_se_span: float = 10.0) -> tuple[float, float]:
    """The accuracy axis: every value with a margin, at least ``min_se_span`` standard errors wide, in 0–100.

    Args:
        values: every plotted accuracy, including the ends of error bars (percent).
        se: the largest binomial standard error (points), or None.
        min_se_span: the smallest axis span, in standard errors.

    Returns:
        ``(low, high)`` in percent.
    """
    lo, hi = min(values), max(values)
    pad = max(0.5, 0.15 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    need = max(min_se_span * (se or 0.0), 2.0)
    if hi - lo < need:
        mid = (hi + lo) / 2
        lo, hi = mid - need / 2, mid + need / 2
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    if hi > 100:
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    return lo, hi


def _x_limits(xs: list[float], include: float | None = None, min_span: float = 0.0) -> tuple[float, float]:
    vals = list(xs) + ([include] if include is not None else [])
    lo, hi = min(vals), max(vals)
    span = max(hi - lo, min_span, 1e-9)
    pad = 0.12 * span
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return lo - pad, hi + pad


def place_labels(ax, items: list[tuple[float, float, str, str]], fontsize: float = 8) -> list:
    """Annotate ``(x, y, text, colour)`` points of ``ax`` so that no two labels overlap.

    Each label starts 5 pt right of and 4 pt above its point; a label whose box would overlap one already
    placed moves down in steps of one line until it is free (at most ``len(items)`` lines). Call it after
    the axis limits and the layout are final: the boxes are measured in display coordinates.

    Args:
        ax: the matplotlib axes.
        items: the points and their labels (data coordinates).
        fontsize: the label size in points.

    Returns:
        The ``Annotation`` artists, in the order of ``items``.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    line = 1.25 * fontsize  # points
    placed = []  # display-coordinate boxes of the labels placed so far
    out = []
    for x, y, text, color in items:
        dy = 4.0
        for _ in range(len(items) + 1):
            a = ax.annotate(
                text, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=fontsize, color=color
            )
            box = a.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            a.remove()
            dy -= line
        placed.append(box)
        out.append(a)
    return out


def _points(ax, r: dict[str, Any], x: float, color: str, n_seeds: int, xerr=None) -> list[float]:
    """Final (circle, error bars) and best (hollow triangle) of one variant; returns the y extents drawn."""
    ys: list[float] = []
    final, best = r.get("final_top1"), r.get("best_top1")
    if final is not None:
        se = r.get("final_top1_se")
        ax.errorbar(
            [x],
            [final],
            yerr=None if se is None else [[se], [se]],
            xerr=xerr,
            fmt="o",
            color=color,
            ecolor="black",
            elinewidth=0.8,
            capsize=3,
            markersize=6,
            zorder=3,
        )
        ys += [final - (se or 0), final + (se or 0)]
        std = r.get("final_top1_std")
        if n_seeds > 1 and std is not None:
            ax.errorbar(
                [x],
                [final],
                yerr=[[std], [std]],
                fmt="none",
                ecolor=color,
                elinewidth=5,
                alpha=0.35,
                zorder=2,
            )
            ys += [final - std, final + std]
    if best is not None:
        ax.scatter([x], [best], marker="^", facecolors="none", edgecolors=color, s=45, zorder=4)
        ys.append(best)
    return ys


def plot_compare(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Write the two-panel figure (accuracy vs latency ratio, accuracy vs parameters) as a PNG.

    Args:
        rows: :func:`attnkit.compare.run_compare` rows (``final_top1``, ``best_top1``, ``final_top1_se``,
            ``final_top1_std``, ``params``, ``latency_ratio`` and its ``_low``/``_high`` spread).
        path: the PNG to write (atomically).
        title: the budget line (model, data, epochs, seeds).

    Returns:
        ``path``.
    """
    import matplotlib.pyplot as plt

    n_seeds = len(rows[0].get("seeds") or [0]) if rows else 1
    colors = [f"C{i % 10}" for i in range(len(rows))]
    fig, (ax_l, ax_p) = plt.subplots(1, 2, figsize=(10.5, 4.4), sharey=True)
    ys: list[float] = []
    has_latency = any(r.get("latency_ratio") is not None for r in rows)
    labels_p: list[tuple[float, float, str, str]] = []
    labels_l: list[tuple[float, float, str, str]] = []
    for r, c in zip(rows, colors):
        p = r["params"] / 1e3
        ys += _points(ax_p, r, p, c, n_seeds)
        y = r.get("final_top1") if r.get("final_top1") is not None else r.get("best_top1")
        if y is not None:
            labels_p.append((p, y, r["variant"], c))
        if r.get("latency_ratio") is not None:
            q = r["latency_ratio"]
            lo, hi = r.get("latency_ratio_low"), r.get("latency_ratio_high")
            xerr = None if lo is None else [[max(0.0, q - lo)], [max(0.0, hi - q)]]
            _points(ax_l, r, q, c, n_seeds, xerr=xerr)
            if y is not None:
                labels_l.append((q, y, r["variant"], c))
    if ys:
        se = max((r.get("final_top1_se") or 0.0) for r in rows)
        ax_p.set_ylim(*accuracy_limits(ys, se))
    params = [r["params"] / 1e3 for r in rows]
    ax_p.set_xlim(*_x_limits(params, min_span=0.02 * max(params)))
    if len(set(r["params"] for r in rows)) == 1:
        ax_p.text(
            0.02,
            0.02,
            f"all variants: {rows[0]['params']:,} parameters",
            transform=ax_p.transAxes,
            fontsize=8,
        )
    ax_p.set_xlabel("parameters (thousands)")
    if has_latency:
        xs = [
            r["latency_ratio_high"] or r["latency_ratio"] for r in rows if r.get("latency_ratio") is not None
        ]
        xs += [
            r["latency_ratio_low"] or r["latency_ratio"] for r in rows if r.get("latency_ratio") is not None
        ]
        ax_l.set_xlim(*_x_limits(xs, include=1.0, min_span=0.2))
        ax_l.axvline(1.0, color="0.6", lw=0.8, ls=":")
    else:
        ax_l.text(0.5, 0.5, "latency not measured", ha="center", va="center", transform=ax_l.transAxes)
    ref = rows[0]["variant"] if rows else "the first row"
    ax_l.set_xlabel(f"CPU latency ratio to {ref} (median of interleaved rounds; bar: spread)")
    ax_l.set_ylabel("test top-1 (%)")
    for ax in (ax_l, ax_p):
        ax.grid(alpha=0.3)
    ax_l.scatter([], [], marker="o", color="0.3", label="final epoch")
    ax_l.scatter([], [], marker="^", facecolors="none", edgecolors="0.3", label="best epoch")
    ax_l.errorbar(
        [], [], yerr=[], fmt="none", ecolor="black", elinewidth=0.8, capsize=3, label="± test-set binomial SE"
    )
    if n_seeds > 1:
        ax_l.errorbar(
            [],
            [],
            yerr=[],
            fmt="none",
            ecolor="0.3",
            elinewidth=5,
            alpha=0.35,
            label=f"± std over {n_seeds} seeds",
        )
    ax_l.legend(fontsize=7, loc="lower right")
    n = rows[0].get("test_images") if rows else None
    fig.suptitle(title + (f"; {n:,} test images" if n else ""), fontsize=9)
    fig.tight_layout()
    place_labels(ax_p, labels_p)
    place_labels(ax_l, labels_l)
    save_figure(fig, path)
    plt.close(fig)
    return path
