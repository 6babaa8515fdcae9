"""attnkit's backbones as timm models: ``timm.create_model("attnkit_resnet164", attn="se")``.

Importing this module (or calling :func:`register_timm_models`) registers every attnkit model with
timm under ``attnkit_<name>``. timm is imported here only, never by ``import attnkit`` (importing timm
costs seconds).

The builders accept the keywords ``timm.create_model`` and timm's ``train.py`` pass:
``pretrained`` (no hosted weights: ``True`` raises), ``pretrained_cfg``, ``features_only``,
``out_indices``, ``num_classes``, ``in_chans``, ``drop_rate`` (dropout before the classifier),
``global_pool`` (``"avg"`` only), ``bn_momentum``, ``bn_eps``, ``scriptable``/``exportable``/``no_jit``
(no effect), and attnkit's own ``attn``, ``attn_kwargs``, ``sharing``, ``scheme``.

Reference:
    timm's model registry (``timm.models.register_model``, ``build_model_with_cfg``),
    https://github.com/huggingface/pytorch-image-models

Deviations:
    ``drop_path_rate`` and ``drop_block_rate`` other than 0 raise ``ValueError``: attnkit's blocks have no
    stochastic depth or DropBlock.
"""

from __future__ import annotations

import functools
from typing import Any

import torch.nn.functional as F
from torch import nn

from .._optional import require
from ._registry import create_model, list_models

__all__ = ["register_timm_models", "TIMM_PREFIX"]

TIMM_PREFIX = "attnkit_"
default_cfgs: dict[str, dict[str, Any]] = {}
"""timm reads the pretrained configs of a module's entrypoints from its ``default_cfgs``."""
_IGNORED = ("scriptable", "exportable", "no_jit")
_IMAGENET = ("resnet18", "resnet34", "resnet50", "resnet101")


def _dropout_hook(p: float):
    def hook(module: nn.Module, args):
        return (F.dropout(args[0], p, module.training),)

    return hook


def _build(name: str, **kwargs: Any) -> nn.Module:
    """``create_model(name, ...)`` after translating timm's keywords (see the module docstring)."""
    for k in _IGNORED:
        kwargs.pop(k, None)
    for k in ("drop_path_rate", "drop_block_rate"):
        if kwargs.pop(k, 0.0):
            raise ValueError(f"{k} is not supported by attnkit models (no stochastic depth/DropBlock)")
    pool = kwargs.pop("global_pool", "avg")
    if pool not in ("avg", None):
        raise ValueError(f"attnkit models pool by the mean only (global_pool='avg'), got {pool!r}")
    drop_rate = float(kwargs.pop("drop_rate", 0.0) or 0.0)
    bn = {k: kwargs.pop(f"bn_{k}") for k in ("momentum", "eps") if f"bn_{k}" in kwargs}
    model = create_model(name, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for k, v in bn.items():
                setattr(m, k, v)
    if drop_rate > 0:
        model.get_classifier().register_forward_pre_hook(_dropout_hook(drop_rate))
    return model


def _entrypoint(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    timm_models = require("timm.models", extra="timm")
    kwargs.pop("pretrained_cfg_overlay", None)
    if kwargs.get("features_only"):  # the stem and every stage (3 stages for the CIFAR nets)
        kwargs.setdefault("out_indices", tuple(range(5 if name in _IMAGENET else 4)))
    return timm_models.build_model_with_cfg(
        functools.partial(_build, name),
        TIMM_PREFIX + name,
        pretrained,
        feature_cfg={"feature_cls": "hook"},
        **kwargs,
    )


def register_timm_models() -> list[str]:
    """Register every attnkit model with timm as ``attnkit_<name>`` (idempotent).

    Returns:
        The timm names registered.

    Raises:
        ImportError: timm is not installed (``pip install 'attnkit[timm]'``).
    """
    timm_models = require("timm.models", extra="timm")
    names = []
    for name in list_models():
        full = TIMM_PREFIX + name
        names.append(full)
        if timm_models.is_model(full):
            continue
        input_size = (3, 224, 224) if name in _IMAGENET else (3, 32, 32)
        cfg = {
            "url": "",
            "num_classes": 1000 if input_size[1] == 224 else 10,
            "input_size": input_size,
            "pool_size": None,
            "crop_pct": 1.0 if input_size[1] == 32 else 0.875,
            "interpolation": "bilinear",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "first_conv": "stem.0",
            "classifier": "head.fc",
            "license": "apache-2.0",
        }
        default_cfgs[full] = cfg
        fn = functools.partial(_entrypoint, name)
        fn.__name__ = full
        fn.__module__ = __name__
        fn.__doc__ = f"attnkit's {name} (channel attention through attn=..., sharing=..., scheme=...)."
        timm_models.register_model(fn)
    return names


register_timm_models()
