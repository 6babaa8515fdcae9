"""Backbones and where attention plugs into them."""

from . import _resnet, _scheme
from ._registry import create_model, get_model_fn, list_models, register_model
from ._resnet import *  # noqa: F403  (the names of ``_resnet.__all__``)
from ._scheme import *  # noqa: F403  (the names of ``_scheme.__all__``)
from .aux import collect_aux_losses, total_aux_loss
from .pretrained import (
    WeightsReport,
    from_pretrained,
    load_pretrained,
    load_timm_weights,
    load_torchvision_weights,
    save_pretrained,
)
from .resnet import imagenet_resnet
from .resnet_cifar import cifar_resnet
from .surgery import AttachedStage, BlockAdapter, attach, detach, find_stages, register_block_adapter

__all__ = [
    "attach",
    "detach",
    "find_stages",
    "register_block_adapter",
    "AttachedStage",
    "BlockAdapter",
    "WeightsReport",
    "load_pretrained",
    "load_torchvision_weights",
    "load_timm_weights",
    "save_pretrained",
    "from_pretrained",
    "create_model",
    "get_model_fn",
    "list_models",
    "register_model",
    *_resnet.__all__,
    *_scheme.__all__,
    "collect_aux_losses",
    "total_aux_loss",
    "cifar_resnet",
    "imagenet_resnet",
]
