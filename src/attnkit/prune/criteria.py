"""Filter-importance criteria: the pool that "Blending Pruning Criteria" blends.

Every criterion maps a conv's F filters to F scores, higher = more important. Weight criteria read the
conv (and its BatchNorm); data criteria read the layer's output after BN and before ReLU,
``a ∈ ℝ^{N×F×H×W}``, on calibration images (and its gradient for ``taylor``).

Where torch-pruning computes the same quantity, its importance class is used on the conv's
dependency group: ``l1`` = ``MagnitudeImportance(p=1)``, ``l2`` = √``MagnitudeImportance(p=2)``,
``bn_gamma`` = ``BNScaleImportance`` (each with ``group_reduction="first", normalizer=None``).

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The paper's criteria pool is not retrievable; this pool is attnkit's reconstruction [inferred]
    (ℓ1, ℓ2 and FPGM come from the same group's "Rethinking the Pruning Criteria" study).
    ``fpgm`` is He et al.'s Σ_g ‖W_f − W_g‖₂ on the signed weights; torch-pruning's
    ``FPGMImportance`` takes ``|W|^p`` before the distances, which is the same only for non-negative
    weights and ``p=1``. ``taylor`` is Molchanov et al.'s (2017) activation-based first-order term,
    not torch-pruning's weight-based ``TaylorImportance`` (Molchanov et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ._graph import PrunableLayer, plan_layers, torch_pruning

__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERIA",
    "Criterion",
    "LayerContext",
    "register_criterion",
    "list_criteria",
    "compute_criteria",
]

DEFAULT_CRITERIA = ("l1", "l2", "fpgm", "bn_gamma", "taylor", "hrank")


@dataclass(frozen=True)
class Criterion:
    """A registered criterion.

    Attributes:
        fn: ``needs="weights"``: ``fn(ctx: LayerContext) -> Tensor(F) | None`` (None skips the layer);
            ``"activations"``/``"gradients"``: ``fn(a, g) -> Tensor(F)``, the **sum over the batch** of
            a per-image statistic (``a``, ``g``: ``(N, F, H, W)``; ``g`` is None for ``"activations"``),
            averaged over the calibration images by :func:`compute_criteria`.
        needs: ``"weights"``, ``"activations"`` or ``"gradients"``.
    """

    fn: Callable[..., torch.Tensor | None]
    needs: str = "weights"


@dataclass
class LayerContext:
    """What a weight criterion sees for one layer.

    Attributes:
        name: the conv's module name.
        layer: the :class:`PrunableLayer` (conv, norm name, torch-pruning group).
        norm: the BatchNorm after the conv, or None.
        seed: a per-layer seed (for ``random``).
    """

    name: str
    layer: PrunableLayer
    norm: nn.Module | None
    seed: int


CRITERIA: Registry[Criterion] = Registry("pruning criterion")


def register_criterion(
    name: str,
    fn: Callable[..., torch.Tensor | None],
    *,
    needs: str = "weights",
    overwrite: bool = False,
    **meta: Any,
) -> Callable[..., torch.Tensor | None]:
    """Add a criterion to the pool (see :class:`Criterion` for ``fn``'s contract).

    Args:
        name: registry name.
        fn: the score function; higher = more important.
        needs: ``"weights"``, ``"activations"`` or ``"gradients"``.
        overwrite: replace an existing criterion of that name.
        **meta: metadata (``title``, ``arxiv``).

    Returns:
        ``fn`` unchanged.

    Raises:
        ValueError: a taken name (without ``overwrite``) or an unknown ``needs``.
    """
    if needs not in ("weights", "activations", "gradients"):
        raise ValueError(f"needs must be 'weights', 'activations' or 'gradients', got {needs!r}")
    CRITERIA.add(name, Criterion(fn, needs), overwrite=overwrite, **meta)
    return fn


def list_criteria() -> list[str]:
    """Names of the registered criteria."""
    return CRITERIA.names()


def _tp_importance(ctx: LayerContext, cls: str, **kw: Any) -> torch.Tensor | None:
    tp = torch_pruning()
    imp = getattr(tp.importance, cls)(group_reduction="first", normalizer=None, **kw)(ctx.layer.group)
    return None if imp is None else imp.detach().float().cpu()


def _l1(ctx: LayerContext) -> torch.Tensor | None:
    return _tp_importance(ctx, "MagnitudeImportance", p=1)  # Σ|W_f|


def _l2(ctx: LayerContext) -> torch.Tensor | None:
    imp = _tp_importance(ctx, "MagnitudeImportance", p=2)  # Σ W_f² (torch-pruning omits the root)
    return None if imp is None else imp.sqrt()


def _bn_gamma(ctx: LayerContext) -> torch.Tensor | None:
    return _tp_importance(ctx, "BNScaleImportance") if ctx.norm is not None else None  # |γ_f|


def _fpgm(ctx: LayerContext) -> torch.Tensor:
    w = ctx.layer.conv.weight.detach().flatten(1).double()  # (F, C·k·k)
    return torch.cdist(w, w).sum(1).float().cpu()  # Σ_g ‖W_f − W_g‖₂


def _random(ctx: LayerContext) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(ctx.seed))
    return torch.rand(ctx.layer.channels, generator=g)


def _taylor(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (a * g).mean((2, 3)).abs().sum(0)  # Σ_n |mean_hw(a·∂L/∂a)|


def _hrank(a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
    return torch.linalg.matrix_rank(F.relu(a).double()).sum(0).float()  # Σ_n rank(relu(a_nf))


def _act_mean(a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
    return F.relu(a).mean((2, 3)).sum(0)  # Σ_n mean_hw relu(a)


register_criterion("l1", _l1, title="Pruning Filters for Efficient ConvNets", arxiv="1608.08710")
register_criterion("l2", _l2, title="Soft Filter Pruning for Accelerating Deep CNNs", arxiv="1808.06866")
register_criterion("fpgm", _fpgm, title="Filter Pruning via Geometric Median", arxiv="1811.00250")
register_criterion("bn_gamma", _bn_gamma, title="Network Slimming", arxiv="1708.06519")
register_criterion(
    "taylor",
    _taylor,
    needs="gradients",
    title="Pruning CNNs for Resource Efficient Inference",
    arxiv="1611.06440",
)
register_criterion("hrank", _hrank, needs="activations", title="HRank", arxiv="2002.10179")
register_criterion("act_mean", _act_mean, needs="activations", title="mean activation (APoZ-like)", arxiv="")
register_criterion("random", _random, title="random control (seeded U(0, 1))", arxiv="")


def _calibration_batches(loader: Iterable, num_samples: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    seen = 0
    for batch in loader:
        x, y = batch[0], batch[1]
        take = min(len(x), num_samples - seen)
        if take <= 0:
            break
        yield x[:take], y[:take]
        seen += take


def _data_criteria(
    model: nn.Module,
    plan: dict[str, PrunableLayer],
    data: dict[str, Criterion],
    loader: Iterable,
    num_samples: int,
) -> dict[str, dict[str, torch.Tensor]]:
    """Σ over calibration images of each data criterion, divided by the image count."""
    mods = dict(model.named_modules())
    need_grad = any(c.needs == "gradients" for c in data.values())
    acts: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_m, _inp, out):
            acts[name] = out.detach()
            if need_grad and out.requires_grad:
                out.register_hook(lambda g: grads.__setitem__(name, g.detach()))
            return out.clone()  # later in-place ReLUs (torchvision) must not overwrite a

        return fn

    handles = [
        mods[layer.norm_name or name].register_forward_hook(hook(name)) for name, layer in plan.items()
    ]
    sums = {n: {c: torch.zeros(layer.channels) for c in data} for n, layer in plan.items()}
    count = 0
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        for x, y in _calibration_batches(loader, num_samples):
            x, y = x.to(dev), y.to(dev)
            with torch.set_grad_enabled(need_grad):
                out = model(x)
                if need_grad:
                    model.zero_grad(set_to_none=True)
                    F.cross_entropy(out, y, reduction="sum").backward()  # per-image gradients
            for n in plan:
                for c, crit in data.items():
                    g = grads.get(n) if crit.needs == "gradients" else None
                    sums[n][c] += crit.fn(acts[n], g).detach().float().cpu()
            count += len(x)
            acts.clear()
            grads.clear()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if count == 0:
        raise ValueError("loader: yielded no images for the data-driven criteria")
    return {n: {c: s / count for c, s in d.items()} for n, d in sums.items()}


def compute_criteria(
    model: nn.Module,
    loader: Iterable | None = None,
    criteria: Sequence[str] = DEFAULT_CRITERIA,
    layers: Sequence[str] | None = None,
    num_samples: int = 512,
    *,
    example_inputs: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, dict[str, torch.Tensor]]:
    """Score every filter of every prunable conv under each criterion.

    Args:
        model: the trained network (left unchanged; evaluated in eval mode).
        loader: calibration batches ``(x, y)`` for the data criteria (``taylor``, ``hrank``, ``act_mean``);
            may be None when only weight criteria are asked for.
        criteria: criterion names (see :func:`list_criteria`).
        layers: conv names (default: ``model.prunable_layers()`` or the inner block convs).
        num_samples: calibration images used (default 512).
        example_inputs: an input batch for tracing the dependency graph (default 1×C×32×32 zeros).
        seed: seed of the ``random`` criterion (layer i uses ``seed + i``).

    Shape:
        ``loader`` batches: ``x (N, C, H, W)``, ``y (N,)`` class indices.

    Returns:
        ``{layer: {criterion: Tensor(F)}}`` (float32, CPU). ``bn_gamma`` is absent for a layer with no
        BatchNorm after its conv.

    Raises:
        ValueError: an unknown criterion (the message lists the known ones), an unknown layer, or a
            data criterion without a loader.
        ImportError: torch-pruning missing (``pip install 'attnkit[prune]'``).

    Reference:
        "Blending Pruning Criteria for Convolutional Neural Networks", arXiv:2107.05033 (no official code).

    Deviations:
        The pool is a reconstruction [inferred]; see the module docstring.
    """
    crits = {c: CRITERIA.get(c) for c in criteria}
    plan = plan_layers(model, None if layers is None else list(layers), example_inputs)
    mods = dict(model.named_modules())
    out: dict[str, dict[str, torch.Tensor]] = {n: {} for n in plan}
    for i, (n, layer) in enumerate(plan.items()):
        ctx = LayerContext(n, layer, mods[layer.norm_name] if layer.norm_name else None, seed + i)
        for c, crit in crits.items():
            if crit.needs == "weights":
                s = crit.fn(ctx)
                if s is not None:
                    out[n][c] = s
    data = {c: crit for c, crit in crits.items() if crit.needs != "weights"}
    if data:
        if loader is None:
            raise ValueError(f"loader: criteria {sorted(data)} need calibration images; pass a loader")
        for n, d in _data_criteria(model, plan, data, loader, num_samples).items():
            out[n].update(d)
    return {n: {c: d[c] for c in criteria if c in d} for n, d in out.items()}
