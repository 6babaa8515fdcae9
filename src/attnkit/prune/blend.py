"""Stage 2 of "Blending Pruning Criteria": normalise, calibrate with λ, blend, keep the top filters.

``Ŝ_ℓ(f) = Σ_{k ∈ K_ℓ} λ_{ℓ,k} · n_k(f)`` with ``n_k`` the rank-normalised (or min-max) score of
candidate ``k``; keep the ``F − ⌊r·F⌋`` filters with the highest Ŝ (ties to the lower filter index).
:class:`BlendedImportance` returns Ŝ as a torch-pruning importance, so a torch-pruning pruner can use it.

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The calibration formula (a λ-weighted sum of normalised scores, λ ∈ [0, 1]) and the normalisations
    are attnkit's reconstruction [inferred]. Tied scores get their average rank (``scipy.stats.rankdata``)
    before blending. A layer whose λ are all 0 is blended with equal weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from scipy.stats import rankdata

__all__ = ["normalize_scores", "blended_scores", "keep_indices"]

Scores = Mapping[str, Mapping[str, torch.Tensor]]
Weights = Mapping[str, Mapping[str, float]] | Mapping[str, float] | None


def normalize_scores(s: torch.Tensor, norm: str = "rank") -> torch.Tensor:
    """Map one criterion's scores to a common scale.

    Args:
        s: scores, shape ``(F,)``.
        norm: ``"rank"``: rank/F (least important 1/F, most important 1; average ranks for ties);
            ``"minmax"``: (s − min)/(max − min) (all 0 for constant scores).

    Returns:
        float64 tensor ``(F,)``.

    Raises:
        ValueError: an unknown ``norm``.
    """
    x = s.detach().double().cpu().ravel()
    if norm == "rank":
        return torch.from_numpy(rankdata(x.numpy(), method="average")) / len(x)
    if norm == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    raise ValueError(f"norm must be 'rank' or 'minmax', got {norm!r}")


def _layer_weights(weights: Weights, layer: str, cands: Sequence[str]) -> list[float]:
    if weights is None:
        return [1.0] * len(cands)
    w = weights.get(layer) if isinstance(weights.get(layer, None), Mapping) else weights
    lam = [float(w.get(c, 1.0)) for c in cands]  # type: ignore[union-attr]
    if any(v < 0 or not math.isfinite(v) for v in lam):
        raise ValueError(f"weights: layer {layer!r} has negative or non-finite λ {lam}")
    return lam if sum(lam) > 0 else [1.0] * len(cands)


def blended_scores(
    scores: Scores, candidates: Mapping[str, Sequence[str]], weights: Weights = None, norm: str = "rank"
) -> dict[str, torch.Tensor]:
    """The blended criterion Ŝ of every layer.

    Args:
        scores: ``{layer: {criterion: Tensor(F)}}``.
        candidates: ``{layer: [criterion, ...]}`` (from :func:`blending_candidates`; a single name per
            layer reproduces that criterion's ranking).
        weights: λ per layer ``{layer: {criterion: λ}}``, or one λ per criterion ``{criterion: λ}``
            shared by all layers, or None (all 1: the naive average). A missing λ is 1.
        norm: ``"rank"`` (default) or ``"minmax"``, see :func:`normalize_scores`.

    Returns:
        ``{layer: Tensor(F)}`` (float64).

    Raises:
        ValueError: a candidate without scores in its layer, a layer without candidates, or a
            negative λ.
    """
    out = {}
    for layer, cands in candidates.items():
        if not cands:
            raise ValueError(f"candidates: layer {layer!r} has no candidate criterion")
        missing = [c for c in cands if c not in scores.get(layer, {})]
        if missing:
            raise ValueError(f"candidates: layer {layer!r} has no scores for {missing}")
        lam = _layer_weights(weights, layer, cands)
        out[layer] = sum(w * normalize_scores(scores[layer][c], norm) for w, c in zip(lam, cands))
    return out


def _n_keep(f: int, r: float, layer: str) -> int:
    if not 0 <= r < 1:
        raise ValueError(f"ratio for layer {layer!r} must be in [0, 1), got {r}")
    return f - math.floor(r * f)


def keep_indices(
    blended: Mapping[str, torch.Tensor], ratio: float | Mapping[str, float] = 0.5
) -> dict[str, torch.Tensor]:
    """The filters kept per layer: the ``F − ⌊r·F⌋`` highest scores, ties to the lower index.

    Args:
        blended: ``{layer: Tensor(F)}`` (any score; higher = keep).
        ratio: pruning ratio r in [0, 1), one for all layers or ``{layer: r}`` (missing layers: 0.5).

    Returns:
        ``{layer: LongTensor(n_keep)}``, sorted ascending.

    Raises:
        ValueError: a ratio outside [0, 1).
    """
    out = {}
    for layer, s in blended.items():
        r = ratio.get(layer, 0.5) if isinstance(ratio, Mapping) else ratio
        k = _n_keep(int(s.numel()), float(r), layer)
        order = torch.sort(-s.detach().double().cpu().ravel(), stable=True).indices  # ties: low index
        out[layer] = order[:k].sort().values
    return out


class _BlendedImportanceMixin:
    """Implementation of :class:`BlendedImportance` (kept free of torch-pruning for import)."""

    def __init__(
        self,
        model: torch.nn.Module,
        scores: Scores,
        candidates: Mapping[str, Sequence[str]],
        weights: Weights = None,
        norm: str = "rank",
    ) -> None:
        blended = blended_scores(scores, candidates, weights, norm)
        self.blended = {n: _tie_broken(b) for n, b in blended.items()}
        self._names = {id(m): n for n, m in model.named_modules()}

    def __call__(self, group: Any) -> torch.Tensor | None:
        dep, idxs = group[0]
        name = self._names.get(id(dep.target.module))
        if name not in self.blended:
            return None  # not a blended layer: torch-pruning skips the group
        return self.blended[name][list(idxs)]


def _tie_broken(s: torch.Tensor) -> torch.Tensor:
    """Distinct scores ``(F − position)/F`` in :func:`keep_indices`' order (ties to the lower index)."""
    order = torch.sort(-s.detach().double().cpu().ravel(), stable=True).indices
    out = torch.empty(len(order))
    out[order] = (len(order) - torch.arange(len(order), dtype=torch.float32)) / len(order)
    return out
