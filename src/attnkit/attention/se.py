"""SE: Squeeze-and-Excitation.

Reference:
    Hu, Shen, Sun. "Squeeze-and-Excitation Networks". arXiv:1709.01507.
    Official code: https://github.com/hujie-frank/SENet
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import gate_name, get_act_layer, get_gate, resolve_rd_channels
from ._registry import register_attn

__all__ = ["SEModule", "se_linear_to_conv", "se_conv_to_linear"]


class SEModule(nn.Module):
    """Squeeze-and-Excitation channel gate.

    ``y = x * gate(W2 act(W1 mean_hw(x) + b1) + b2)``; the MLP is two 1×1 convs (timm style).

    Args:
        channels: input channels ``C``.
        rd_ratio: hidden width as a fraction of ``C`` (default 1/16).
        rd_channels: absolute hidden width ``h``; overrides ``rd_ratio``.
        rd_divisor: round ``h`` to a multiple of this (timm default 8; the papers' code uses 1, which
            ``create_model`` applies through the registry's ``paper_kwargs``).
        act_layer: hidden activation (default ReLU).
        gate_layer: gate non-linearity (default ``"sigmoid"``).
        bias: whether the 1×1 convs have biases.
        device, dtype: factory kwargs (timm >= 1.0.21 passes them).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; the memory format of the input is kept.

    Cost:
        ``2·C·h + h + C`` parameters (with bias) and ``2·C·h`` MACs per call. Initial gate ≈ 0.5.

    Raises:
        ValueError: non-positive ``channels``/``rd_channels``.

    Reference:
        Squeeze-and-Excitation Networks, arXiv:1709.01507, https://github.com/hujie-frank/SENet

    Deviations:
        The MLP is two 1×1 convolutions instead of ``nn.Linear`` (numerically identical; use
        :func:`se_linear_to_conv` to load official checkpoints). The squeeze is ``x.mean((2, 3))``
        instead of ``AdaptiveAvgPool2d`` (identical values, exports with dynamic shapes).
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.rd_channels = resolve_rd_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Conv2d(channels, self.rd_channels, 1, bias=bias, **fk)
        self.act = get_act_layer(act_layer)
        self.fc2 = nn.Conv2d(self.rd_channels, channels, 1, bias=bias, **fk)
        self.gate = get_gate(gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        a = self.fc2(self.act(self.fc1(s)))  # (N, C, 1, 1)
        return x * self.gate(a)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}, gate={gate_name(self.gate)}"


def se_linear_to_conv(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert an official SE state dict (``Linear`` weights ``(C_out, C_in)``) to 1×1 conv shape.

    Every 2-D tensor whose key ends in ``.weight`` and belongs to an SE MLP (``fc.0``/``fc.2`` in the
    official naming, or ``fc1``/``fc2``) gets two trailing singleton dims. Other tensors are copied.
    """
    out = {}
    for k, v in state_dict.items():
        if v.dim() == 2 and k.endswith(".weight") and any(t in k for t in ("fc.0", "fc.2", "fc1", "fc2")):
            v = v.reshape(*v.shape, 1, 1)
        out[k] = v
    return out


def se_conv_to_linear(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`se_linear_to_conv`: drop the trailing 1×1 dims of SE conv weights."""
    out = {}
    for k, v in state_dict.items():
        if v.dim() == 4 and v.shape[2:] == (1, 1) and k.endswith(".weight") and ("fc1" in k or "fc2" in k):
            v = v.reshape(v.shape[0], v.shape[1])
        out[k] = v
    return out


register_attn(
    "se",
    SEModule,
    title="Squeeze-and-Excitation Networks",
    arxiv="1709.01507",
    code="https://github.com/hujie-frank/SENet",
    paper_kwargs={"rd_divisor": 1},
)
