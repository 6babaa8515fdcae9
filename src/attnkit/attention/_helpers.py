"""Small helpers shared by the attention modules: width rounding and layer lookup.

These follow timm's ``timm/layers/helpers.py`` and ``create_act.py`` semantics so that a module built
here resolves the same hidden width as its timm counterpart.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "make_divisible",
    "get_act_layer",
    "get_gate",
    "gate_name",
    "check_4d",
    "check_channels",
    "accepts",
    "resolve_rd_channels",
]


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

    Args:
        channels: input channels ``C``.
        rd_ratio: hidden width as a fraction of ``C``.
        rd_channels: an absolute hidden width, or None to use ``rd_ratio``.
        rd_divisor: round ``C * rd_ratio`` to a multiple of this (timm's ``make_divisible``, no bump).

    Returns:
        The hidden width ``h``.

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
    "hard_swish": nn.Hardswish,
    "leaky_relu": nn.LeakyReLU,
    "relu6": nn.ReLU6,
    "elu": nn.ELU,
    "mish": nn.Mish,
    "identity": nn.Identity,
}


def _act_class(name: str) -> Callable[..., nn.Module]:
    """Resolve an activation name: attnkit's torch table first, then timm's ``get_act_layer``.

    The torch table comes first so that the common names build the same ``torch.nn`` classes whether
    timm is installed or not; any other timm name (``"hard_swish"``, ``"gelu_tanh"``, ...) resolves
    through :func:`timm.layers.get_act_layer` when timm is installed.
    """
    key = name.lower()
    if key in _ACTS:
        return _ACTS[key]
    try:
        from timm.layers import get_act_layer as timm_get_act_layer
    except ImportError:
        timm_get_act_layer = None
    if timm_get_act_layer is not None:
        try:
            cls = timm_get_act_layer(key)
        except (KeyError, ValueError):
            cls = None
        if cls is not None:
            return cls
    known = sorted(_ACTS) + (["... (timm's names)"] if timm_get_act_layer is not None else [])
    raise ValueError(f"unknown activation {name!r}; known: {known}")


def get_act_layer(
    act_layer: str | type[nn.Module] | Callable[..., nn.Module] | nn.Module | None,
) -> nn.Module:
    """Instantiate an activation from a name, a class, a factory (e.g. a ``partial``) or an instance.

    Names resolve through attnkit's torch table (``relu``, ``gelu``, ``silu``/``swish``, ``tanh``,
    ``sigmoid``, ``hard_sigmoid``, ``hard_swish``, ``leaky_relu``, ``relu6``, ``elu``, ``mish``,
    ``identity``) and, when timm is installed, through
    :func:`timm.layers.get_act_layer` for every other timm name. timm passes ``act_layer`` as a class or
    a name to its ``attn_layer`` modules (CSP networks do), so both forms work.

    Args:
        act_layer: the activation; None means ``nn.Identity``.

    Returns:
        A new module (an instance is returned as is).

    Raises:
        ValueError: for an unknown activation name.
    """
    if act_layer is None:
        return nn.Identity()
    if isinstance(act_layer, str):
        return _act_class(act_layer)()
    if isinstance(act_layer, nn.Module):
        return act_layer
    return act_layer()


def get_gate(gate_layer: str | type[nn.Module] | Callable[..., nn.Module]) -> nn.Module:
    """Instantiate a gate non-linearity (default ``"sigmoid"``); same lookup as :func:`get_act_layer`.

    Args:
        gate_layer: a name, a class, a factory or an instance.

    Returns:
        The non-linearity module.

    Raises:
        ValueError: for an unknown name.
    """
    return get_act_layer(gate_layer)


def gate_name(gate: nn.Module) -> str:
    """A short lower-case name for a gate module, for ``repr``.

    Args:
        gate: the non-linearity (a :class:`~attnkit.attention.ProductGate` names its factor's).

    Returns:
        ``"sigmoid"``, ``"tanh"``, ... or the class name for activations outside attnkit's table.
    """
    inner = getattr(gate, "act", None)
    if isinstance(inner, nn.Module) and type(gate).__name__ == "ProductGate":
        return f"product({gate_name(inner)})"
    inv = {v: k for k, v in _ACTS.items() if k != "swish"}
    return inv.get(type(gate), type(gate).__name__)


def accepts(cls: Callable[..., object], name: str) -> bool:
    """Whether a constructor accepts the keyword ``name`` (explicitly or through ``**kwargs``).

    Args:
        cls: a class or factory.
        name: the keyword.

    Returns:
        False when the signature cannot be read.
    """
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_channels(channels: object, who: str) -> None:
    """Raise a clear error unless ``channels`` is a positive int.

    Args:
        channels: the constructor argument.
        who: the module's name, for the message.

    Raises:
        ValueError: ``channels`` is not a positive int.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise ValueError(f"{who} channels must be a positive int, got {channels!r}")


def check_4d(x: torch.Tensor, channels: int, who: str) -> None:
    """Raise a clear error if ``x`` is not ``(N, channels, H, W)``.

    Args:
        x: the input.
        channels: the channel count the module was built for.
        who: the module's name, for the message.

    Raises:
        ValueError: wrong rank or channel count.
    """
    if x.dim() != 4:
        raise ValueError(f"{who} expects a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{who} was built for {channels} channels but got {x.shape[1]} (shape {tuple(x.shape)})"
        )
