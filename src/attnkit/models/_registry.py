"""Model registry: ``register_model`` / ``create_model`` / ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._registry import Registry
from .aux import watch_aux_losses

__all__ = ["MODELS", "register_model", "create_model", "list_models", "get_model_fn"]

#: The model registry (a :class:`attnkit._registry.Registry`); use the functions below.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a model builder (decorator, with or without arguments). The builder takes keyword-only arguments.

    Args:
        fn: the builder (when used as ``@register_model``).
        name: the registry name (default: the builder's ``__name__``, lower case).

    Returns:
        The builder unchanged (or a decorator when ``fn`` is None).

    Raises:
        ValueError: the name is already registered.
    """

    def _do(f):
        return MODELS.add(name or f.__name__, f)

    return _do if fn is None else _do(fn)


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    return MODELS.names()


def get_model_fn(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered models.
    """
    return MODELS.get(name)


def create_model(name: str, pretrained: Any = None, **kwargs: Any) -> nn.Module:
    """Build a registered backbone with optional channel attention.

    Args:
        name: a name from :func:`list_models` (``resnet20`` ... ``resnet164``, ``preresnet164``,
            ``resnet18`` ... ``resnet101``).
        **kwargs: keyword-only builder arguments: ``num_classes``, ``in_chans``, ``attn``,
            ``attn_kwargs``, ``sharing``, ``scheme``, ``norm_layer``, ``last_norm_layer``,
            ``zero_init_residual`` and the family options (``shortcut``, ``extra_bn``, ``conv_bias``,
            ``stride_in_1x1``). See :class:`attnkit.models.ResNet`.
        pretrained: weights to load: a folder written by :func:`attnkit.models.save_pretrained`, a
            torchvision/timm ResNet state dict, or a path to one (see
            :func:`attnkit.models.load_pretrained`); attention parameters keep their initialisation.

    Returns:
        The model, an ``nn.Module`` mapping ``(N, in_chans, H, W) -> (N, num_classes)``. Its name and
        arguments are recorded in ``model.attnkit_cfg`` (used by ``save_pretrained``).

    Raises:
        ValueError: unknown model or attention name, bad ``sharing``/``scheme``/``attn_kwargs``.
        TypeError: an option the model family does not have.
    """
    model = get_model_fn(name)(**kwargs)
    model.attnkit_cfg = {"model": str(name).lower(), **kwargs}
    watch_aux_losses(model)  # SPEM-style auxiliary losses warn when trained outside attnkit's trainer
    if pretrained is not None:
        from .pretrained import load_pretrained

        model.pretrained_report = load_pretrained(model, pretrained)
    return model
