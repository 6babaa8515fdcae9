"""Model registry: ``register_model`` / ``create_model`` / ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "get_model_fn"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a model builder (decorator). The builder takes keyword-only arguments.

    Raises:
        ValueError: the name is already registered.
    """

    def _do(f):
        key = (name or f.__name__).lower()
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        return f

    return _do if fn is None else _do(fn)


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(_MODELS)


def get_model_fn(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered models.
    """
    key = str(name).lower()
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _MODELS[key]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone with optional channel attention.

    Args:
        name: a name from :func:`list_models` (``resnet20`` ... ``resnet164``, ``preresnet164``,
            ``resnet18`` ... ``resnet101``).
        **kwargs: keyword-only builder arguments: ``num_classes``, ``in_chans``, ``attn``,
            ``attn_kwargs``, ``sharing``, ``scheme``, ``norm_layer``, ``last_norm_layer``,
            ``zero_init_residual`` and the family options (``shortcut``, ``extra_bn``, ``conv_bias``,
            ``stride_in_1x1``). See :class:`attnkit.models.ResNet`.

    Returns:
        The model, an ``nn.Module`` mapping ``(N, in_chans, H, W) -> (N, num_classes)``.

    Raises:
        ValueError: unknown model or attention name, bad ``sharing``/``scheme``/``attn_kwargs``.
        TypeError: an option the model family does not have.
    """
    return get_model_fn(name)(**kwargs)
