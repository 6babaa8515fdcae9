"""The channel-gate protocol every attnkit gate follows, and the helpers that read it.

A gate module exposes ``gate_logits(x)`` (its pre-non-linearity logits, ``(N, C, 1, 1)`` for channel
gates or the module's own shape) and the non-linearity ``self.gate`` (timm style: ``gate`` is always a
module such as ``nn.Sigmoid``), and its forward is ``x * self.gate(self.gate_logits(x))``. Methods that
build on other gates (ASR, LSAS, SEM) call them through this interface only, so the gate math of every
module exists once, in its own file.

Gates whose attention is a product of several squashed factors (SEM, SPEM, LSAS) return the factors'
logits stacked on dim 1, ``(N, K, C, 1, 1)``, and use a :class:`ProductGate`. Modules composed of
parts (CBAM: a channel gate, then a spatial gate on the channel-gated map) define ``attention(x)``
instead and expose their channel part as ``channel``.
"""

from __future__ import annotations

import functools
import inspect
from typing import ClassVar

import torch
from torch import nn

__all__ = ["GateModule", "ProductGate", "stack_logits", "has_gate", "module_gate", "channel_gate"]


class GateModule(nn.Module):
    """Base class of attnkit's gates: ``forward(x) = x * self.gate(self.gate_logits(x))``.

    Subclasses set ``self.gate`` (the non-linearity) and implement :meth:`gate_logits`.

    Attributes:
        logits_shape: ``"channel"`` when :meth:`gate_logits` gives ``(N, C, 1, 1)`` and ``gate`` is
            elementwise (such a gate can be LSAS's base); ``"spatial"`` for a gate with spatial extent;
            ``"factors"`` for stacked factor logits read by a :class:`ProductGate`.
        asr_support: how the module behaves on ASR's constant input ψ: ``"ok"``, ``"channel_only"``
            (only its ``channel`` part is used), ``"needs_spatial_psi"`` (``psi_size >= 2``) or
            ``"unsupported"``.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.
    """

    gate: nn.Module
    logits_shape: ClassVar[str] = "channel"
    asr_support: ClassVar[str] = "ok"

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-non-linearity logits of the gate.

        Args:
            x: the module's input ``(N, C, H, W)``.

        Returns:
            ``(N, C, 1, 1)`` for channel gates (or the module's own shape).
        """
        raise NotImplementedError

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate the input is multiplied by: ``self.gate(self.gate_logits(x))``.

        Args:
            x: the module's input ``(N, C, H, W)``.

        Returns:
            A tensor broadcastable to ``x`` (``(N, C, 1, 1)`` for channel gates).
        """
        return self.gate(self.gate_logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` by its gate: ``(N, C, H, W) -> (N, C, H, W)``."""
        return x * self.gate(self.gate_logits(x))  # (N, C, H, W)


class ProductGate(nn.Module):
    """The product of a squashing non-linearity over stacked factor logits.

    ``ProductGate(act)(z) = act(z[:, 0]) * act(z[:, 1]) * ... * act(z[:, K-1])``, multiplied in order.

    Args:
        act: the non-linearity applied to every factor (e.g. ``nn.Sigmoid()``).

    Shape:
        ``(N, K, C, *) -> (N, C, *)``.
    """

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def factors(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """The squashed factors ``[act(z[:, 0]), ..., act(z[:, K-1])]``, each ``(N, C, *)``."""
        return [self.act(logits[:, k]) for k in range(logits.shape[1])]

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Multiply the squashed factors: ``(N, K, C, *) -> (N, C, *)``."""
        fs = self.factors(logits)
        v = fs[0]
        for f in fs[1:]:
            v = v * f
        return v


def stack_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """Stack factor logits on a new dim 1 in their common (promoted) dtype, for a :class:`ProductGate`.

    Args:
        logits: ``K`` tensors of the same shape ``(N, C, *)`` (dtypes may differ under autocast).

    Returns:
        ``(N, K, C, *)``.
    """
    dtype = functools.reduce(torch.promote_types, (z.dtype for z in logits))
    return torch.stack([z.to(dtype) for z in logits], dim=1)


def _own_method(module: nn.Module, name: str) -> bool:
    return inspect.isfunction(inspect.getattr_static(type(module), name, None))


def has_gate(module: nn.Module) -> bool:
    """Whether :func:`module_gate` can read ``module``'s gate.

    Args:
        module: any module.

    Returns:
        True for modules with ``gate_logits`` and a ``gate`` module, an ``attention(x)`` method (composite
        modules such as CBAM), or a ``gate(x)`` method (user modules).
    """
    return (
        _own_method(module, "attention")
        or (
            callable(getattr(module, "gate_logits", None))
            and isinstance(getattr(module, "gate", None), nn.Module)
        )
        or _own_method(module, "gate")
    )


def module_gate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The gate that ``module`` multiplies its input by, so that ``module(x) == x * gate``.

    Read through the module's own interface, never recovered by dividing its output by its input.

    Args:
        module: a gate (``gate_logits`` and ``gate``), a composite with ``attention(x)``, or a module
            with a ``gate(x)`` method.
        x: the module's input, ``(N, C, H, W)``.

    Returns:
        ``(N, C, 1, 1)`` for channel gates; gates with a spatial part (CBAM, SGE) give ``(N, C, H, W)``.

    Raises:
        TypeError: the module exposes no gate.
    """
    if _own_method(module, "attention"):
        return module.attention(x)
    if callable(getattr(module, "gate_logits", None)) and isinstance(
        getattr(module, "gate", None), nn.Module
    ):
        return module.gate(module.gate_logits(x))
    if _own_method(module, "gate"):
        return module.gate(x)
    raise TypeError(
        f"{type(module).__name__} exposes no channel gate: give it gate_logits(x) and a gate non-linearity "
        f"(forward = x * self.gate(self.gate_logits(x))), or an attention(x) method"
    )


def channel_gate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Like :func:`module_gate` but only the channel part ``(N, C, 1, 1)`` (CBAM: its ``channel`` gate).

    Args:
        module: as :func:`module_gate`; a composite's channel part is its ``channel`` attribute.
        x: the module's input, ``(N, C, H, W)``.

    Returns:
        The channel gate.

    Raises:
        TypeError: the module exposes no gate.
    """
    part = getattr(module, "channel", None)
    if isinstance(part, nn.Module) and has_gate(part):
        return module_gate(part, x)
    return module_gate(module, x)
