"""Scoring connection schemes on the frozen supernet.

The held-out split, the scheme context manager, the top-1 evaluation and the search's accuracy
oracle (with optional per-scheme BN recalibration).

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network
    (held-out split = the first 100 images per class of the ImageNet training set).

Deviations:
    - The scheme is applied through ``ResNet.set_scheme`` inside a context manager that restores the
      previous scheme, so nothing is left changed on the model after a call.
    - Optional BN recalibration per scheme (``bn_calibration``) is not in EAN; off by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ConnectionScheme

__all__ = ["holdout_split", "scheme_override", "evaluate_top1", "HoldoutEvaluator"]


def holdout_split(targets: Sequence[int], per_class: int) -> tuple[list[int], list[int]]:
    """Split indices: the first ``per_class`` indices of each class (dataset order) are held out.

    Args:
        targets: the class label of every sample, in dataset order.
        per_class: held-out samples per class (official ImageNet: 100).

    Returns:
        ``(train_idx, holdout_idx)``, both sorted; together they partition ``range(len(targets))``.

    Raises:
        ValueError: ``per_class < 1``, or a class with ``<= per_class`` samples (nothing would be
            left to train on).
    """
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    tg = [int(t) for t in (targets.tolist() if isinstance(targets, torch.Tensor) else targets)]
    counts: dict[int, int] = {}
    for t in tg:
        counts[t] = counts.get(t, 0) + 1
    small = sorted(c for c, n in counts.items() if n <= per_class)
    if small:
        raise ValueError(
            f"class(es) {small} have <= {per_class} samples; lower per_class "
            f"(counts: {dict(sorted((c, counts[c]) for c in small))})"
        )
    seen: dict[int, int] = {}
    train_idx, hold_idx = [], []
    for i, t in enumerate(tg):
        if seen.get(t, 0) < per_class:
            hold_idx.append(i)
            seen[t] = seen.get(t, 0) + 1
        else:
            train_idx.append(i)
    return train_idx, hold_idx


@contextlib.contextmanager
def scheme_override(model: nn.Module, scheme) -> Iterator[ConnectionScheme]:
    """Temporarily set ``model``'s connection scheme (restored on exit, also on error).

    Args:
        model: an attnkit ``ResNet`` (has ``blocks_per_stage``, ``scheme`` and ``set_scheme``).
        scheme: anything :meth:`ConnectionScheme.coerce` accepts.

    Raises:
        ValueError: a malformed scheme, or a model without ``set_scheme``.
    """
    if not hasattr(model, "set_scheme"):
        raise ValueError(f"{type(model).__name__} has no set_scheme(); build it with attnkit.create_model")
    s = ConnectionScheme.coerce(scheme, model.blocks_per_stage)
    old = str(model.scheme)
    model.set_scheme(str(s))
    try:
        yield s
    finally:
        model.set_scheme(old)


def _top1_loss(model: nn.Module, batches: Iterable, device: torch.device | str) -> tuple[float, float]:
    correct = n = 0
    loss = 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += y.numel()
    if n == 0:
        raise ValueError("the evaluation loader is empty")
    return 100.0 * correct / n, loss / n


def evaluate_top1(
    model: nn.Module, loader: Iterable, scheme=None, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` under ``scheme``, in eval mode without gradients.

    Args:
        model: an attnkit ResNet.
        loader: yields ``(x (N, C, H, W), y (N,))``.
        scheme: any scheme value (None = the model's current scheme).
        device: where to evaluate.

    Returns:
        ``(top1 in percent, mean cross-entropy)``.
    """
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if scheme is None:
                return _top1_loss(model, loader, device)
            with scheme_override(model, scheme):
                return _top1_loss(model, loader, device)
    finally:
        model.train(was)


@contextlib.contextmanager
def _recalibrated_bn(
    model: nn.Module, scheme: ConnectionScheme, batches: Sequence[torch.Tensor]
) -> Iterator[None]:
    """Re-estimate BN running statistics under ``scheme`` (cumulative average), restore them on exit."""
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
        for m in bns
    ]
    was = model.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the calibration batches
        model.train()
        with torch.no_grad(), scheme_override(model, scheme):
            for x in batches:
                model(x)
        model.eval()
        yield
    finally:
        for m, (rm, rv, nb, mom) in zip(bns, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.num_batches_tracked.copy_(nb)
            m.momentum = mom
        model.train(was)


class HoldoutEvaluator:
    """Accuracy oracle for the search: top-1 (%) of the frozen supernet under a scheme.

    ``model.eval()`` (BN running statistics), ``torch.inference_mode()``, the whole loader.

    Args:
        model: the trained supernet (an attnkit ResNet).
        loader: the held-out split (test-time transform), yields ``(x, y)``.
        device: where to evaluate.
        cache: remember the accuracy of each distinct scheme (exact: evaluation is deterministic).
        preload: materialise the loader's batches in memory once (fast repeated passes on CPU).
        bn_calibration: optional loader of training batches. When given, before scoring a scheme the
            BatchNorm running statistics are re-estimated under that scheme (cumulative average over
            ``bn_calibration_batches`` batches, train-mode forward without gradients) and restored
            afterwards. Off by default (the official search scores with the supernet's running
            statistics, accumulated over random schemes). Not in EAN; the usual fix for weight-sharing
            supernets whose BN statistics do not match extreme sub-networks (e.g. SPOS, arXiv:1904.00420).
        bn_calibration_batches: number of calibration batches (materialised once).

    Attributes:
        num_evaluations: forward passes over the split actually run; cache_hits: calls served from cache.

    Raises:
        ValueError: (call) a malformed scheme or an empty loader.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable,
        *,
        device: str | torch.device = "cpu",
        cache: bool = True,
        preload: bool = True,
        bn_calibration: Iterable | None = None,
        bn_calibration_batches: int = 10,
    ):
        self.model = model.to(device)
        self.device = device
        self.cache_enabled = cache
        self.loader = [(x.to(device), y.to(device)) for x, y in loader] if preload else loader
        self.calib: list[torch.Tensor] | None = None
        if bn_calibration is not None:
            self.calib = []
            for i, batch in enumerate(bn_calibration):
                if i >= bn_calibration_batches:
                    break
                self.calib.append(batch[0].to(device))
            if not self.calib:
                raise ValueError("bn_calibration loader yielded no batch")
        self.cache: dict[str, float] = {}
        self.num_evaluations = 0
        self.cache_hits = 0

    def __call__(self, scheme: Any) -> float:
        """Held-out top-1 (%) of the frozen supernet under ``scheme`` (cached per scheme).

        Args:
            scheme: any value :meth:`attnkit.models.ConnectionScheme.coerce` accepts.

        Returns:
            Top-1 accuracy in percent.

        Raises:
            ValueError: a scheme that does not fit the model.
        """
        s = ConnectionScheme.coerce(scheme, self.model.blocks_per_stage)
        if self.cache_enabled and s.bits in self.cache:
            self.cache_hits += 1
            return self.cache[s.bits]
        if self.calib is None:
            acc, _ = evaluate_top1(self.model, self.loader, s, self.device)
        else:
            with _recalibrated_bn(self.model, s, self.calib):
                acc, _ = evaluate_top1(self.model, self.loader, s, self.device)
        self.num_evaluations += 1
        if self.cache_enabled:
            self.cache[s.bits] = acc
        return acc

    def state_dict(self) -> dict[str, Any]:
        """The cache and the counters (plain containers; loads with ``torch.load(..., weights_only=True)``).

        A resumed search restores them, so its summary counts the evaluations of the whole run, not of the
        last process, and no scheme already scored is evaluated again.
        """
        return {
            "cache": dict(self.cache),
            "num_evaluations": self.num_evaluations,
            "cache_hits": self.cache_hits,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the cache only when this evaluator caches).

        Raises:
            KeyError: ``state`` lacks one of the keys of :meth:`state_dict`.
        """
        if self.cache_enabled:
            self.cache = {str(k): float(v) for k, v in state["cache"].items()}
        self.num_evaluations = int(state["num_evaluations"])
        self.cache_hits = int(state["cache_hits"])
