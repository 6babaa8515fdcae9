"""Mixup and CutMix (``--mixup``/``--cutmix``): timm's ``Mixup`` with its ``SoftTargetCrossEntropy``.

Each training batch ``(x, y)`` becomes ``(x_mixed, y_soft)``; the loss is the soft-target cross entropy
``-sum(y_soft * log_softmax(logits))`` averaged over the batch, with ``--label-smoothing`` folded into
the soft targets by ``Mixup``. ``train_loss`` is then that loss (not comparable to ``eval_loss``), and
``train_top1`` is the agreement of the prediction with the **dominant** class of the mixed target
(``argmax`` of ``y_soft``: the image that covers the larger share, weight ``max(lam, 1 - lam)``).

Reference:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", arXiv:1710.09412; Yun et al., "CutMix:
    Regularization Strategy to Train Strong Classifiers with Localizable Features", arXiv:1905.04899;
    timm ``timm/data/mixup.py``, ``timm/loss/cross_entropy.py``.

Deviations:
    ``Mixup`` needs an even batch: the last, shorter batch of an epoch loses its last image when its
    size is odd (``--batch-size`` itself must be even per process, checked by the config). ``Mixup``
    draws from NumPy's global RNG; the trainer reseeds it from (seed, rank, epoch) each epoch, so a
    resumed run mixes exactly like an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from .._optional import require
from .features import mixup_enabled

__all__ = ["build_mixup"]


def build_mixup(config: Any, num_classes: int):
    """``(mixup_fn, criterion)`` for the config, or ``(None, None)`` without mixup/cutmix.

    Args:
        config: a :class:`~attnkit.train.TrainConfig` (``mixup``, ``cutmix`` alphas, ``mixup_prob``,
            ``mixup_switch_prob``, ``mixup_mode``, ``label_smoothing``).
        num_classes: classifier outputs (width of the soft targets).

    Returns:
        ``mixup_fn(x, y) -> (x, y_soft)`` with ``y_soft`` of shape ``(N, num_classes)``, and
        ``criterion(logits, y_soft) -> loss`` (0-dim).

    Raises:
        ImportError: timm is missing (``pip install 'attnkit[timm]'``).
    """
    if not mixup_enabled(config):
        return None, None
    data = require("timm.data", extra="timm", feature="--mixup/--cutmix (timm's Mixup)")
    loss = require("timm.loss", extra="timm", feature="--mixup/--cutmix (timm's SoftTargetCrossEntropy)")
    fn = data.Mixup(
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        prob=config.mixup_prob,
        switch_prob=config.mixup_switch_prob,
        mode=config.mixup_mode,
        label_smoothing=config.label_smoothing,
        num_classes=int(num_classes),
    )
    return fn, loss.SoftTargetCrossEntropy()
