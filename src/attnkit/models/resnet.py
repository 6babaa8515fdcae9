"""ImageNet ResNet-18/34/50/101 in the torchvision layout ("V1.5": stride in the 3×3 conv).

Reference:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition". arXiv:1512.03385.
    Layout as torchvision ``resnet.py`` and the group's ImageNet code
    (https://github.com/Qrange-group/LSAS ``imagenet/senet.py``).

Deviations:
    None in the plain nets (counts equal torchvision's). ``stride_in_1x1=True`` gives the Caffe "V1"
    layout the SE/ECA papers' FLOP figures refer to; ``conv_bias=True`` the Cadene "fbresnet" style.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ._build import build_resnet
from ._registry import register_model
from ._resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["imagenet_resnet", "resnet18", "resnet34", "resnet50", "resnet101"]

_CFG = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


RESNET_OPTIONS = (
    "attn",
    "attn_kwargs",
    "sharing",
    "scheme",
    "norm_layer",
    "last_norm_layer",
    "zero_init_residual",
    "share_norm",
)
"""The attention and norm keywords every ResNet builder passes on to ``build_resnet``."""


def _check_options(fn: str, options: dict[str, Any]) -> None:
    bad = sorted(set(options) - set(RESNET_OPTIONS))
    if bad:
        raise TypeError(
            f"{fn}() got unexpected keyword arguments {bad}; options: {', '.join(RESNET_OPTIONS)}"
        )


def _stem(conv_bias: bool):
    def stem(in_chans: int, norm_layer):
        return nn.Sequential(
            _conv7(in_chans, conv_bias), norm_layer(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        ), 64

    return stem


def _conv7(in_chans: int, bias: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def imagenet_resnet(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    conv_bias: bool = False,
    stride_in_1x1: bool | None = None,
    **options: Any,
) -> ResNet:
    """Build an ImageNet ResNet.

    Args:
        name: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        num_classes: classifier outputs (1000).
        in_chans: input channels (3).
        conv_bias: every conv gets a bias.
        stride_in_1x1: bottleneck nets only: stride 2 in the first 1×1 conv (V1 layout).
        **options: where attention goes and which norms the branches use, the keywords of
            :data:`RESNET_OPTIONS`: ``attn`` (a registry name or class; None: plain, see
            :func:`attnkit.create_model`), ``attn_kwargs`` (one dict, or one per stage), ``sharing``
            (``"block"`` or ``"stage"``; None: the module kind's default), ``scheme`` (a connection mask
            over the blocks, ``"110|0011|..."`` or ``"all"``), ``norm_layer`` (default
            ``nn.BatchNorm2d``), ``last_norm_layer`` (each branch's last norm; default ``norm_layer``),
            ``zero_init_residual`` and ``share_norm`` (with ``sharing="stage"``, share the module's norm
            layers too); see ``attnkit.models._build.build_resnet``.

    Returns:
        :class:`ResNet` with four stages at 56²/28²/14²/7² for a 224² input.

    Raises:
        TypeError: ``stride_in_1x1`` on a basic-block net, or an unknown keyword.
        ValueError: bad attention options (see :func:`attnkit.create_model`).
    """
    _check_options("imagenet_resnet", options)
    kind, layers = _CFG[name]
    bkw = {"conv_bias": conv_bias}
    if kind == "basic":
        if stride_in_1x1 is not None:
            raise TypeError("stride_in_1x1 is an option of the bottleneck ResNets (resnet50, resnet101) only")
        cls, planes = BasicBlock, (64, 128, 256, 512)
    else:
        bkw["stride_in_1x1"] = bool(stride_in_1x1)
        cls, planes = Bottleneck, (64, 128, 256, 512)
    return build_resnet(
        block=cls,
        layers=layers,
        planes=planes,
        strides=(1, 2, 2, 2),
        stem=_stem(conv_bias),
        num_classes=num_classes,
        in_chans=in_chans,
        block_kwargs=bkw,
        model_name=name,
        **options,
    )


def _make(name: str):
    def fn(**kwargs) -> ResNet:
        return imagenet_resnet(name, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"ImageNet {name}; keyword arguments as :func:`imagenet_resnet`."
    return register_model(fn, name=name)


resnet18 = _make("resnet18")
resnet34 = _make("resnet34")
resnet50 = _make("resnet50")
resnet101 = _make("resnet101")
