"""Small helpers shared by the attention modules: width rounding and layer lookup.

These follow timm's ``timm/layers/helpers.py`` and ``create_act.py`` semantics so that a module built
here resolves the same hidden width as its timm counterpart.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["make_divisible", "get_act_layer", "get_gate", "resolve_rd_channels"]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (timm semantics).

    Args:
        v: the unrounded width, e.g. ``channels * rd_ratio``.
        divisor: the multiple to round to; ``1`` means plain rounding to the nearest integer.
        min_value: the smallest allowed result (defaults to ``divisor``).
        round_limit: if rounding down loses more than ``1 - round_limit`` of ``v``, add one divisor.
            timm's SE uses ``round_limit=0.0`` (never bump).

    Returns:
        The rounded width, an ``int`` >= ``min_value``.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def resolve_rd_channels(channels: int, rd_ratio: float, rd_channels: int | None, rd_divisor: int) -> int:
    """Resolve the hidden width of a reduction MLP (``rd_channels`` overrides the ratio).

    Raises:
        ValueError: if ``channels`` or the resolved width is not a positive integer.
    """
    if not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if rd_channels is None:
        rd_channels = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
    if rd_channels <= 0:
        raise ValueError(f"rd_channels must be positive, got {rd_channels}")
    return int(rd_channels)


_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "identity": nn.Identity,
}


def get_act_layer(act_layer: str | type[nn.Module] | Callable[..., nn.Module] | None) -> nn.Module:
    """Instantiate an activation from a name, a class or a factory.

    Raises:
        ValueError: for an unknown activation name.
    """
    if act_layer is None:
        return nn.Identity()
    if isinstance(act_layer, str):
        key = act_layer.lower()
        if key not in _ACTS:
            raise ValueError(f"unknown activation {act_layer!r}; known: {sorted(_ACTS)}")
        return _ACTS[key]()
    if isinstance(act_layer, nn.Module):
        return act_layer
    return act_layer()


def get_gate(gate_layer: str | type[nn.Module] | Callable[..., nn.Module]) -> nn.Module:
    """Instantiate a gate non-linearity (default ``"sigmoid"``); same lookup as :func:`get_act_layer`."""
    return get_act_layer(gate_layer)


def gate_name(gate: nn.Module) -> str:
    """A short lower-case name for a gate module, for ``repr``."""
    inv = {v: k for k, v in _ACTS.items() if k != "swish"}
    return inv.get(type(gate), type(gate).__name__)


def check_4d(x: torch.Tensor, channels: int, who: str) -> None:
    """Raise a clear error if ``x`` is not ``(N, channels, H, W)``.

    Raises:
        ValueError: wrong rank or channel count.
    """
    if x.dim() != 4:
        raise ValueError(f"{who} expects a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{who} was built for {channels} channels but got {x.shape[1]} (shape {tuple(x.shape)})"
        )
