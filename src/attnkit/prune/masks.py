"""Mask-based pruning (fast, reversible), BN recalibration, and materialising through torch-pruning.

Masking filter f of conv ℓ zeroes ``W_f``, the conv bias and ``γ_f, β_f`` of the following BN: that
channel's BN output is then exactly 0, so is ReLU(0), and the next layer sees what it would see if the
channel were removed. :func:`materialize` removes the channels for real with torch-pruning's dependency
graph (the group also shrinks the BN and the next conv's input channels).

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.
    Fang et al. "DepGraph: Towards Any Structural Pruning". arXiv:2301.12900.
    https://github.com/VainF/Torch-Pruning

Deviations:
    Masking with γ = β = 0 and BN re-estimation (``momentum=None``, 5 batches) are attnkit's
    reconstruction of the paper's fitness evaluation [inferred].
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from ._graph import PrunableLayer, forget_plan, plan_layers, torch_pruning

__all__ = ["MaskHandle", "apply_filter_masks", "recalibrate_bn", "materialize", "pruned_indices"]

_BN = nn.modules.batchnorm._BatchNorm


def pruned_indices(keep: torch.Tensor, channels: int, layer: str = "") -> list[int]:
    """The complement of ``keep`` in ``range(channels)``.

    Raises:
        ValueError: indices out of range, duplicates, or nothing kept.
    """
    k = torch.as_tensor(keep).long().ravel()
    if k.numel() == 0 or k.min() < 0 or k.max() >= channels or k.unique().numel() != k.numel():
        raise ValueError(
            f"keep[{layer!r}]: need 1..{channels} distinct indices in [0, {channels}), got {k.tolist()}"
        )
    mask = torch.ones(channels, dtype=torch.bool)
    mask[k] = False
    return mask.nonzero().ravel().tolist()


class MaskHandle:
    """Undo information of :func:`apply_filter_masks`; :meth:`remove` restores the model bit for bit.

    It saves every conv/BN parameter it zeroes and the running statistics of every BatchNorm of the
    model, so a :func:`recalibrate_bn` done while masked is undone too.
    """

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._bn = {
            n: ({k: v.clone() for k, v in m.named_buffers(recurse=False)}, m.momentum)
            for n, m in model.named_modules()
            if isinstance(m, _BN)
        }
        self.removed = False

    def _zero(self, t: torch.Tensor | None, idx: list[int]) -> None:
        if t is None or not idx:
            return
        self._saved.append((t, t.data.clone()))
        t.data[idx] = 0

    @torch.no_grad()
    def remove(self) -> None:
        """Restore the masked weights and every BN's running statistics and momentum (idempotent)."""
        if self.removed:
            return
        for t, orig in reversed(self._saved):
            t.data.copy_(orig)
        mods = dict(self._model.named_modules())
        for n, (bufs, mom) in self._bn.items():
            for k, v in bufs.items():
                getattr(mods[n], k).copy_(v)
            mods[n].momentum = mom
        self.removed = True

    def __enter__(self) -> MaskHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def apply_filter_masks(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    *,
    plan: Mapping[str, PrunableLayer] | None = None,
    example_inputs: torch.Tensor | None = None,
) -> MaskHandle:
    """Zero the pruned filters in place (conv weight and bias, γ and β of the following BN).

    Args:
        model: the network (modified in place).
        keep: ``{layer: kept filter indices}`` from :func:`keep_indices`.
        plan: the layers' :func:`plan_layers` (default: built for ``keep``'s layers, cached per model).
        example_inputs: input for tracing when ``plan`` is None.

    Returns:
        A :class:`MaskHandle`; ``handle.remove()`` (or ``with``) restores the model bit for bit.

    Raises:
        ValueError: unknown layers or bad indices.
        ImportError: torch-pruning missing.
    """
    plan = plan_layers(model, list(keep), example_inputs) if plan is None else plan
    mods = dict(model.named_modules())
    handle = MaskHandle(model)
    for name, k in keep.items():  # (_zero writes .data: no autograd history)
        if name not in plan:
            raise ValueError(f"keep: layer {name!r} is not in the plan ({list(plan)})")
        layer = plan[name]
        idx = pruned_indices(k, layer.channels, name)
        handle._zero(layer.conv.weight, idx)
        handle._zero(layer.conv.bias, idx)
        if layer.norm_name is not None:
            bn = mods[layer.norm_name]
            handle._zero(bn.weight, idx)
            handle._zero(bn.bias, idx)
    return handle


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, batches: int = 5) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics: reset, then cumulative averages over batches.

    Args:
        model: the network (modified in place; its train/eval mode is restored).
        loader: batches ``(x, ...)`` or tensors ``x``.
        batches: how many batches (default 5; the spec's 5 × 100 images).

    Shape:
        ``x``: ``(N, C, H, W)``.

    Returns:
        ``model``.

    Raises:
        ValueError: ``batches < 1`` or an empty loader.
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    was_training = model.training
    model.train()
    dev = next(model.parameters()).device
    n = 0
    try:
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(x.to(dev))
            n += 1
            if n >= batches:
                break
    finally:
        for m, mom in zip(bns, moms):
            m.momentum = mom
        model.train(was_training)
    if n == 0:
        raise ValueError("loader: yielded no batch for BN recalibration")
    return model


def materialize(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    example_inputs: torch.Tensor | None = None,
    *,
    inplace: bool = False,
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """Remove the pruned filters for real through torch-pruning's dependency graph.

    For each layer, ``DG.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=pruned).prune()``
    also removes the following BN's channels and the next conv's input channels.

    Args:
        model: the network (copied unless ``inplace``).
        keep: ``{layer: kept filter indices}``.
        example_inputs: an input batch for tracing (default 1×C×32×32 zeros).
        inplace: prune ``model`` itself.
        layers: unused names are an error; default ``list(keep)``.

    Shape:
        ``example_inputs``: ``(N, C_in, H, W)``.

    Returns:
        The pruned ``nn.Module`` (same forward, fewer channels).

    Raises:
        ImportError: torch-pruning missing (``pip install 'attnkit[prune]'``).
        ValueError: unknown layers, bad indices, or coupled (residual) layers.
    """
    tp = torch_pruning()
    m = model if inplace else copy.deepcopy(model)
    names = list(keep) if layers is None else list(layers)
    plan = plan_layers(m, names, example_inputs)
    for name in names:
        layer = plan[name]
        idx = pruned_indices(keep[name], layer.channels, name)
        if idx:
            layer.graph.get_pruning_group(layer.conv, tp.prune_conv_out_channels, idxs=idx).prune()
    forget_plan(m)  # the model changed: its cached plan is stale
    return m
