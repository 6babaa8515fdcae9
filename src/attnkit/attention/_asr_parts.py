"""Small modules of ASR's training and deploy forms (kept apart from the ASR wrappers themselves).

Reference:
    Stripe Observation Guided Inference Cost-free Attention Mechanism, arXiv:2304.06345,
    https://github.com/zhongshsh/ASR
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["AffineChannel", "ChannelScale", "BatchNormThenGate", "replace_batchnorm"]


class AffineChannel(nn.Module):
    """Per-channel affine ``y = γ·x + β`` without statistics; replaces BN inside ASR's ``T``.

    Args:
        num_features: channels ``C``.
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, *) -> (N, C, *)``.
    """

    def __init__(self, num_features: int, device=None, dtype=None, **_: Any):
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.reshape(shape) + self.bias.reshape(shape)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"num_features={self.num_features}"


class ChannelScale(nn.Module):
    """Multiply by a fixed per-channel vector held as a buffer: the deploy form of :class:`ASRGate`.

    Args:
        scale: ``(1, C, 1, 1)``.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.scale.shape[1]}"


class BatchNormThenGate(nn.Sequential):
    """``nn.Sequential(bn, gate)``: the deploy form of an ASR-BN with ``use_both``.

    BN, then the ordinary input-dependent gate. :func:`attnkit.reparameterize_model` moves ``gate`` into
    the block's attention slot of attnkit ResNets so that the checkpoint matches the ``attn=<gate>`` model.
    """


def replace_batchnorm(t: nn.Module) -> None:
    """Swap every BatchNorm inside ``T`` for an :class:`AffineChannel` (γ, β copied), in place.

    On ψ a BN would see a batch of one (an error in training) and would normalise the learned vector away.

    Args:
        t: ASR's module ``T``.
    """
    for m in list(t.modules()):
        for cname, child in list(m.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                aff = AffineChannel(
                    child.num_features,
                    device=child.running_mean.device if child.running_mean is not None else None,
                    dtype=child.weight.dtype if child.affine else None,
                )
                if child.affine:
                    with torch.no_grad():
                        aff.weight.copy_(child.weight)
                        aff.bias.copy_(child.bias)
                setattr(m, cname, aff)
