"""Backbones and where attention plugs into them."""

from ._registry import create_model, get_model_fn, list_models, register_model
from ._resnet import BasicBlock, Bottleneck, ClassifierHead, PreActBottleneck, ResNet, ResStage, ShortcutA
from ._scheme import format_scheme, parse_scheme
from .aux import collect_aux_losses, total_aux_loss
from .resnet import imagenet_resnet
from .resnet_cifar import cifar_resnet

__all__ = [
    "create_model",
    "get_model_fn",
    "list_models",
    "register_model",
    "BasicBlock",
    "Bottleneck",
    "PreActBottleneck",
    "ClassifierHead",
    "ResNet",
    "ResStage",
    "ShortcutA",
    "parse_scheme",
    "format_scheme",
    "collect_aux_losses",
    "total_aux_loss",
    "cifar_resnet",
    "imagenet_resnet",
]
