"""The Stripe Observation as a diagnostic: per-channel spread of attention gates across images.

For an attention layer ℓ and N images, ``A[n, c] = g_ℓ(x_n)[c]`` (the gate) and
``D[n, c] = mean_hw x_ℓ,n[c]`` (the module's squeezed input). The per-channel population std
(ddof = 0) ``s_c`` of ``A`` over images and its mean over channels, the stripe score ``S_ℓ``, measure how
input-independent the gate is (ASR layers give exactly 0); the same for ``D`` gives ``S_ℓ^in``.
Gates and inputs are on different scales (the gate is in (0, 1)), so both are reported, never compared.

Reference:
    Stripe Observation Guided Inference Cost-free Attention Mechanism, Fig. 1, arXiv:2304.06345,
    https://github.com/zhongshsh/ASR
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import save_figure
from ..attention.asr import has_gate, module_gate

__all__ = ["StripeStats", "stripe_statistics", "stripe_matrix", "plot_stripes", "attention_layers"]


@dataclass
class StripeStats:
    """Stripe statistics of one attention layer (or ``"__all__"``: every layer's channels pooled).

    Attributes:
        layer: qualified module name.
        channels: ``C``.
        std: ``(C,)`` population std of the gate per channel over images.
        std_in: ``(C,)`` the same for the module input's GAP.
        score, score_in: ``std.mean()``, ``std_in.mean()``.
        hist, hist_in: ``(bins,)`` histograms of ``std`` / ``std_in`` over channels on ``bin_edges``.
        bin_edges: ``(bins + 1,)``.
        num_images: images seen.
        mean: ``(C,)`` mean gate per channel.
        note: e.g. ``"gate averaged over HxW"`` for modules with a spatial gate.
    """

    layer: str
    channels: int
    std: torch.Tensor
    std_in: torch.Tensor
    score: float
    score_in: float
    hist: torch.Tensor
    hist_in: torch.Tensor
    bin_edges: torch.Tensor
    num_images: int
    mean: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-type record (lists and floats) for JSON."""
        return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}


class _Welford:
    """Per-channel (count, mean, M2) in float64, batches merged with Chan's parallel update."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, a: torch.Tensor) -> None:  # a: (B, C)
        a = a.detach().to(torch.float64).cpu()
        nb = a.shape[0]
        if nb == 0:
            return
        mb = a.mean(0)
        m2b = ((a - mb) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n

    def std(self) -> torch.Tensor:
        return (self.m2 / max(self.n, 1)).sqrt()


def attention_layers(model: nn.Module) -> list[str]:
    """Qualified names of the modules whose gate can be read, outermost first.

    A gate nested inside another gate's module is skipped (:func:`attnkit.attention.asr.has_gate`).
    """
    names: list[str] = []
    for name, m in model.named_modules():
        if name and has_gate(m) and not any(name.startswith(p + ".") for p in names):
            names.append(name)
    return names


def _batches(data: Any, device: torch.device, limit: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        data = [data[i : i + 64] for i in range(0, min(len(data), limit), 64)]
    seen = 0
    for b in data:
        x = b[0] if isinstance(b, (list, tuple)) else b
        x = x[: limit - seen].to(device)
        seen += x.shape[0]
        yield x
        if seen >= limit:
            return


def _collect(model: nn.Module, data: Any, layers: list[str], num_images: int, device, on_batch) -> None:
    mods = dict(model.named_modules())
    for n in layers:
        if n not in mods:
            raise ValueError(f"no module named {n!r} in the model")
        if not has_gate(mods[n]):
            raise TypeError(f"module {n!r} ({type(mods[n]).__name__}) exposes no gate()")
    was = model.training
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    handles = []

    def hook(name):
        def fn(mod, args, out):
            x = args[0]
            g = module_gate(mod, x)  # (N, C, 1, 1) or (N, C, H, W)
            spatial = g.shape[-2:] != (1, 1)
            g = g.mean((2, 3)).expand(x.shape[0], x.shape[1])  # (N, C)
            on_batch(name, g, x.mean((2, 3)), spatial)

        return fn

    try:
        for n in layers:
            handles.append(mods[n].register_forward_hook(hook(n)))
        with torch.no_grad():
            for x in _batches(data, dev, num_images):
                model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)


def _hist(v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    return torch.histogram(v.clamp(max=float(edges[-1])), bins=edges).hist


def stripe_statistics(
    model: nn.Module,
    data: Any,
    *,
    layers: list[str] | None = None,
    num_images: int = 1000,
    bins: int = 50,
    hist_max: float | None = None,
    device=None,
) -> dict[str, StripeStats]:
    """Per-channel std of attention gates (and of their inputs' GAP) across images, per layer.

    Args:
        model: any model; put in eval mode for the pass and restored afterwards.
        data: a DataLoader (batches ``x`` or ``(x, y)``) or a tensor ``(N, C, H, W)``.
        layers: qualified module names; default :func:`attention_layers` (every module with a gate, ASR
            modules included).
        num_images: at most this many images are used.
        bins: histogram bins.
        hist_max: upper edge of the histograms (default ``max(0.1, largest std)``; values above it are
            counted in the last bin). The lower edge is 0.
        device: where to run (default: the model's device).

    Returns:
        ``{layer: StripeStats}`` plus ``"__all__"`` (all channels pooled, as the paper's Fig. 1(b)).

    Raises:
        ValueError: no attention layer found or an unknown layer name.
        TypeError: a named layer exposes no gate.
    """
    layers = list(layers) if layers is not None else attention_layers(model)
    if not layers:
        raise ValueError(
            "stripe_statistics: the model has no module with a readable gate (see attention_layers)"
        )
    acc = {n: (_Welford(), _Welford()) for n in layers}
    spatial: dict[str, bool] = {}

    def on_batch(name, g, d, sp):
        acc[name][0].update(g)
        acc[name][1].update(d)
        spatial[name] = spatial.get(name, False) or sp

    _collect(model, data, layers, num_images, device, on_batch)
    if any(a.n == 0 for a, _ in acc.values()):
        raise ValueError(
            f"stripe_statistics: layers {[n for n, (a, _) in acc.items() if a.n == 0]} were never called"
        )
    stds = {n: (a.std(), b.std()) for n, (a, b) in acc.items()}
    top = max(float(torch.cat([s for pair in stds.values() for s in pair]).max()), 0.1)
    edges = torch.linspace(0.0, hist_max or top, bins + 1, dtype=torch.float64)
    out: dict[str, StripeStats] = {}
    for n, (s, s_in) in stds.items():
        out[n] = StripeStats(
            n,
            s.numel(),
            s,
            s_in,
            float(s.mean()),
            float(s_in.mean()),
            _hist(s, edges),
            _hist(s_in, edges),
            edges,
            acc[n][0].n,
            acc[n][0].mean,
            "gate averaged over HxW" if spatial.get(n) else "",
        )
    s_all = torch.cat([st.std for st in out.values()])
    s_in_all = torch.cat([st.std_in for st in out.values()])
    out["__all__"] = StripeStats(
        "__all__",
        s_all.numel(),
        s_all,
        s_in_all,
        float(s_all.mean()),
        float(s_in_all.mean()),
        _hist(s_all, edges),
        _hist(s_in_all, edges),
        edges,
        acc[layers[0]][0].n,
    )
    return out


def stripe_matrix(
    model: nn.Module, images: torch.Tensor, layer: str, *, num_images: int = 20
) -> torch.Tensor:
    """The Fig. 1(a) matrix: gate values of one layer, one row per image.

    Args:
        model: the model (eval mode during the call, restored afterwards).
        images: ``(N, C, H, W)``; the first ``num_images`` are used.
        layer: qualified name of a module with a gate.
        num_images: rows (default 20).

    Returns:
        ``(min(N, num_images), C)`` float tensor.
    """
    rows: list[torch.Tensor] = []
    _collect(
        model, images, [layer], num_images, None, lambda n, g, d, sp: rows.append(g.detach().float().cpu())
    )
    return torch.cat(rows)


def plot_stripes(stats: dict[str, StripeStats] | StripeStats | torch.Tensor, path: str | os.PathLike) -> Path:
    """Save a figure: a stripe matrix (image) or the std histograms after/before attention.

    Args:
        stats: a ``(N, C)`` matrix from :func:`stripe_matrix`, a :class:`StripeStats`, or the dict from
            :func:`stripe_statistics` (its ``"__all__"`` entry is plotted).
        path: output image path (``.png``/``.pdf``); parent folders are created.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry touched

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if isinstance(stats, torch.Tensor):
        im = ax.imshow(stats.numpy(), aspect="auto", cmap="viridis")
        ax.set_xlabel("channel")
        ax.set_ylabel("image")
        fig.colorbar(im, ax=ax, label="gate value")
    else:
        st = stats["__all__"] if isinstance(stats, dict) else stats
        e = st.bin_edges.numpy()
        bars = (
            (st.hist, 0.7, f"after attention (mean std {st.score:.4f})"),
            (st.hist_in, 0.5, f"before (input GAP; mean std {st.score_in:.4f})"),
        )
        for hist, alpha, label in bars:
            ax.bar(e[:-1], hist.numpy(), width=e[1] - e[0], align="edge", alpha=alpha, label=label)
        ax.set_xlabel("per-channel std across images")
        ax.set_ylabel("channels")
        ax.legend(fontsize=8)
        ax.set_title(f"{st.layer}: {st.channels} channels, {st.num_images} images", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path
