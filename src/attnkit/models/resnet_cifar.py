"""CIFAR ResNets: ResNet-20/32/44/56/110 (basic), ResNet-164 (post-activation bottleneck), PreResNet-164.

Reference:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition". arXiv:1512.03385.
    He et al. "Identity Mappings in Deep Residual Networks". arXiv:1603.05027.
    Code these papers' groups build on: https://github.com/bearpaw/pytorch-classification
    (``models/cifar/resnet.py``, ``preresnet.py``).

Deviations (all backbones here):
    - Global mean pooling instead of ``AvgPool2d(8)``: identical at 32×32, and 96×96 inputs work.
    - Depth always means the true layer count: ``resnet110`` is basic, ``resnet164`` is bottleneck
      (old bearpaw revisions chose bottlenecks for depth >= 44).
    - Attention is supported in basic blocks (after ``bn2``); the group's CIFAR code cannot build that
      path, so the papers never trained this configuration.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ._build import build_resnet
from ._registry import register_model
from ._resnet import BasicBlock, Bottleneck, PreActBottleneck, ResNet, _conv
from .resnet import _check_options

__all__ = [
    "cifar_resnet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet164",
    "preresnet164",
]


def _cifar_stem(with_bn: bool):
    def stem(in_chans: int, norm_layer):
        conv = _conv(in_chans, 16, 3)
        if not with_bn:
            return nn.Sequential(conv), 16
        return nn.Sequential(conv, norm_layer(16), nn.ReLU(inplace=True)), 16

    return stem


def cifar_resnet(
    depth: int,
    *,
    block: str = "basic",
    num_classes: int = 10,
    in_chans: int = 3,
    shortcut: str | None = None,
    extra_bn: bool | None = None,
    model_name: str = "",
    **options: Any,
) -> ResNet:
    """Build a CIFAR ResNet of the given depth.

    Args:
        depth: ``6n + 2`` for ``block="basic"``, ``9n + 2`` for ``"bottleneck"``/``"preact"``.
        block: ``"basic"``, ``"bottleneck"`` (post-activation, the "ResNet-164" of the group's papers) or
            ``"preact"`` (He et al.'s pre-activation bottleneck).
        num_classes: classifier outputs (default 10).
        in_chans: input channels (3; 1 for Fashion-MNIST/digits).
        shortcut: basic nets only: ``"B"`` (1×1 conv + BN projection, default) or ``"A"`` (pad).
        extra_bn: pre-activation nets only: an extra BN after ``conv3`` (DIANet's variant).
        model_name: the registry name recorded in the model's config.
        **options: the attention and norm keywords (``attn``, ``attn_kwargs``, ``sharing``, ``scheme``,
            ``norm_layer``, ``last_norm_layer``, ``zero_init_residual``, ``share_norm``), as
            :func:`attnkit.models.imagenet_resnet`.

    Returns:
        :class:`ResNet` with 3 stages of widths 16/32/64 (×4 for bottlenecks) at 32²/16²/8².

    Raises:
        ValueError: a depth that does not fit the block type, or a bad shortcut.
        TypeError: an option that this block type does not have, or an unknown keyword.
    """
    _check_options("cifar_resnet", options)
    div, fixed = (6, 2) if block == "basic" else (9, 2)
    if block not in ("basic", "bottleneck", "preact"):
        raise ValueError(f"block must be 'basic', 'bottleneck' or 'preact', got {block!r}")
    if (depth - fixed) % div or depth <= fixed:
        raise ValueError(f"depth for {block} CIFAR ResNets must be {div}n+{fixed}, got {depth}")
    n = (depth - fixed) // div
    block_kwargs = {}
    if block == "basic":
        if extra_bn is not None:
            raise TypeError("extra_bn is an option of preresnet164 only")
        shortcut = "B" if shortcut is None else shortcut
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        block_kwargs["shortcut"] = shortcut
        cls = BasicBlock
    else:
        if shortcut is not None:
            raise TypeError("shortcut is an option of the basic CIFAR ResNets (resnet20..resnet110) only")
        if block == "preact":
            block_kwargs["extra_bn"] = bool(extra_bn)
            cls = PreActBottleneck
        else:
            if extra_bn is not None:
                raise TypeError("extra_bn is an option of preresnet164 only")
            cls = Bottleneck
    return build_resnet(
        block=cls,
        layers=(n, n, n),
        planes=(16, 32, 64),
        strides=(1, 2, 2),
        stem=_cifar_stem(block != "preact"),
        num_classes=num_classes,
        in_chans=in_chans,
        final_norm=block == "preact",
        block_kwargs=block_kwargs,
        model_name=model_name,
        **options,
    )


def _make(name: str, depth: int, block: str):
    def fn(**kwargs) -> ResNet:
        return cifar_resnet(depth, block=block, model_name=name, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"CIFAR {name} ({block} blocks, depth {depth}); keyword arguments as :func:`cifar_resnet`."
    return register_model(fn, name=name)


resnet20 = _make("resnet20", 20, "basic")
resnet32 = _make("resnet32", 32, "basic")
resnet44 = _make("resnet44", 44, "basic")
resnet56 = _make("resnet56", 56, "basic")
resnet110 = _make("resnet110", 110, "basic")
resnet164 = _make("resnet164", 164, "bottleneck")
preresnet164 = _make("preresnet164", 164, "preact")
