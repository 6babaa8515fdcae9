"""Figures of an EAN search run: the reward over the search steps, and accuracy vs connected blocks.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._io import save_figure
from .records import SearchResult

__all__ = ["plot_search"]


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Label the axes, title and legend the figure, lay it out and write it as a PNG (120 dpi), atomically."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def plot_search(
    result: SearchResult,
    run_dir: str | os.PathLike,
    *,
    title: str = "",
    extra: dict[str, tuple[int, float]] | None = None,
) -> list[Path]:
    """Plot the search: reward over steps, and accuracy against the number of connected blocks.

    ``search_reward.png`` shows the raw reward of every sample, the step mean and the baseline;
    ``accuracy_vs_connected.png`` the held-out accuracy of every evaluated scheme against its number
    of connected blocks, with the selected scheme marked.

    Args:
        result: the search result.
        run_dir: the folder to write into.
        title: the plot title (default: a generic one).
        extra: ``{label: (connected blocks, accuracy)}`` drawn as squares (e.g. the full scheme).

    Returns:
        The paths written (none when the search has no history).
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    d = Path(run_dir)
    paths = []
    if not result.history:
        return paths
    steps = [r.step for r in result.history]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter(
        [s.step for s in result.samples],
        [s.reward for s in result.samples],
        s=6,
        alpha=0.35,
        label="sampled schemes (raw reward)",
    )
    ax.plot(steps, [sum(r.rewards) / len(r.rewards) for r in result.history], lw=1.2, label="step mean")
    ax.plot(steps, [r.baseline for r in result.history], lw=1.2, ls="--", label="baseline (incl. RND bonus)")
    reward_label = "reward = acc + λ·sparsity − c"
    title1 = title or "EAN search: reward over steps"
    paths.append(_finish(fig, ax, "search step", reward_label, title1, d / "search_reward.png"))

    uniq: dict[str, tuple[int, float]] = {}
    for s in result.samples:
        uniq[s.scheme] = (s.num_connected, s.accuracy)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    xs, ys = zip(*uniq.values())
    ax.scatter(xs, ys, s=10, alpha=0.5, label=f"evaluated schemes ({len(uniq)} distinct)")
    sel = str(result.scheme)
    if sel in uniq:
        ax.scatter([uniq[sel][0]], [uniq[sel][1]], marker="*", s=160, c="red", label=f"selected {sel}")
    for label, (n, a) in (extra or {}).items():
        ax.scatter([n], [a], marker="s", s=50, label=f"{label}: {a:.1f}%")
    acc_label = "held-out top-1 of the frozen supernet (%)"
    title2 = title or "accuracy vs number of connected blocks"
    paths.append(_finish(fig, ax, "connected blocks", acc_label, title2, d / "accuracy_vs_connected.png"))
    return paths
