"""The EA's fitness: mask, re-estimate BN, measure top-1 on a held-out split, undo.

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The paper's fitness is not retrievable; accuracy after masking and BN re-estimation is attnkit's
    reconstruction [inferred].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from .masks import apply_filter_masks, recalibrate_bn

__all__ = ["masked_accuracy", "accuracy_fitness"]


def masked_accuracy(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    eval_loader: Iterable,
    bn_loader: Iterable | None = None,
    bn_batches: int = 5,
) -> float:
    """Top-1 (percent) of ``model`` with ``keep``'s masks, BN re-estimated; the model is restored after.

    Args:
        model: the network (restored bit for bit on return).
        keep: ``{layer: kept filter indices}``.
        eval_loader: batches ``(x, y)`` to score on.
        bn_loader: batches for :func:`recalibrate_bn` (None: keep the running statistics).
        bn_batches: batches of BN re-estimation.

    Shape:
        batches: ``x (N, C, H, W)``, ``y (N,)``.

    Returns:
        Top-1 accuracy in percent.

    Raises:
        ValueError: bad ``keep`` (see :func:`apply_filter_masks`).
    """
    from ..train import evaluate

    with apply_filter_masks(model, keep):
        if bn_loader is not None:
            recalibrate_bn(model, bn_loader, bn_batches)
        return float(evaluate(model, eval_loader)["top1"])


def accuracy_fitness(
    model: nn.Module, eval_loader: Iterable, bn_loader: Iterable | None = None, bn_batches: int = 5
) -> Callable[[Mapping[str, torch.Tensor]], float]:
    """``fitness(keep)`` = :func:`masked_accuracy` on a held-out split (for :func:`evolve_blend`).

    Args:
        model: the network (restored after every call).
        eval_loader: the held-out fitness split, batches ``(x, y)``.
        bn_loader: batches for BN re-estimation (None: keep the running statistics).
        bn_batches: batches of BN re-estimation.

    Returns:
        A callable ``keep -> top-1 percent``.
    """

    def fitness(keep: Mapping[str, torch.Tensor]) -> float:
        return masked_accuracy(model, keep, eval_loader, bn_loader, bn_batches)

    return fitness
