"""``BlendedImportance``: the blended criterion as a torch-pruning ``Importance`` (needs attnkit[prune])."""

from __future__ import annotations

from ._graph import torch_pruning
from .blend import _BlendedImportanceMixin

__all__ = ["BlendedImportance"]

_tp = torch_pruning()


class BlendedImportance(_BlendedImportanceMixin, _tp.importance.Importance):
    """The blended criterion Ŝ as a torch-pruning importance, for ``tp.pruner.MetaPruner`` and friends.

    ``__call__(group)`` returns the blended criterion Ŝ of the group's root conv at the group's channel
    indices as distinct scores in :func:`keep_indices`' order (ties to the lower filter index), so a
    torch-pruning pruner keeps exactly the filters :func:`keep_indices` keeps; None for a conv that
    is not blended, which torch-pruning skips.

    Args:
        model: the model the pruner works on (the one whose module names ``scores`` uses).
        scores: ``{layer: {criterion: Tensor(F)}}`` from :func:`compute_criteria`.
        candidates: ``{layer: [criterion, ...]}``.
        weights: λ, as :func:`blended_scores` (e.g. ``BlendResult.weights``).
        norm: ``"rank"`` or ``"minmax"``.

    Shape:
        returns ``(len(idxs),)``.

    Raises:
        ImportError: torch-pruning missing (``pip install 'attnkit[prune]'``).
        ValueError: as :func:`blended_scores`.

    Reference:
        "Blending Pruning Criteria for Convolutional Neural Networks", arXiv:2107.05033 (no official code).

    Deviations:
        The scores are computed once, before pruning (``iterative_steps=1``); the blend is a
        reconstruction [inferred].
    """
