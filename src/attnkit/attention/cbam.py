"""CBAM: Convolutional Block Attention Module (channel gate followed by a spatial gate).

Reference:
    Woo, Park, Lee, Kweon. "CBAM: Convolutional Block Attention Module". arXiv:1807.06521.
    Official code: https://github.com/Jongchan/attention-module
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import gate_name, get_gate
from ._registry import register_attn
from .se import SEModule

__all__ = ["CBAMModule", "CBAMChannelGate", "CBAMSpatialGate"]


class CBAMChannelGate(SEModule):
    """CBAM's channel part: SE's excitation MLP, shared by the average- and max-pooled features.

    ``x1 = x * gate(MLP(mean_hw x) + MLP(amax_hw x))``, with ``MLP`` = :meth:`SEModule.excite`.

    Args:
        channels: input channels ``C``.
        rd_ratio, rd_channels, rd_divisor: MLP hidden width ``h`` (default ``C/16`` with divisor 1).
        act_layer: MLP activation (ReLU).
        gate_layer: gate non-linearity (sigmoid).
        mlp_bias: MLP biases (zeroed at init, as the official code).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, C, 1, 1)``.

    Reference:
        CBAM, arXiv:1807.06521, https://github.com/Jongchan/attention-module
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        mlp_bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            channels, rd_ratio, rd_channels, rd_divisor, act_layer, gate_layer, mlp_bias, device, dtype
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero the MLP biases (official init); the weights keep PyTorch's default init."""
        for fc in (self.fc1, self.fc2):
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``MLP(mean_hw x) + MLP(amax_hw x)``: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        return self.excite(x.mean((2, 3), keepdim=True)) + self.excite(x.amax((2, 3), keepdim=True))


class CBAMSpatialGate(GateModule):
    """CBAM's spatial part: a ``k×k`` conv and BN over the channel-wise max and mean maps.

    ``y = x * gate(BN(conv_k([amax_c x, mean_c x])))``.

    Args:
        kernel_size: odd kernel of the conv (7, padding 3).
        gate_layer: gate non-linearity (sigmoid).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, 1, H, W)``.

    Raises:
        ValueError: an even ``kernel_size``.

    Reference:
        CBAM, arXiv:1807.06521, https://github.com/Jongchan/attention-module
    """

    logits_shape = "spatial"
    asr_support = "unsupported"

    def __init__(self, kernel_size: int = 7, gate_layer="sigmoid", device=None, dtype=None):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"spatial_kernel_size must be odd, got {kernel_size}")
        fk = {"device": device, "dtype": dtype}
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False, **fk)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, **fk)
        self.gate = get_gate(gate_layer)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: He-normal (fan-out) conv, BN γ = β = 0 (initial gate exactly 0.5)."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``BN(conv([amax_c x, mean_c x]))``: ``(N, C, H, W) -> (N, 1, H, W)``."""
        m = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return self.bn(self.conv(m))  # (N, 1, H, W)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"kernel_size={self.kernel_size}, gate={gate_name(self.gate)}"


class CBAMModule(nn.Module):
    """CBAM: a channel gate (:class:`CBAMChannelGate`), then a spatial gate (:class:`CBAMSpatialGate`).

    Channel gate: ``x1 = x * σ(MLP(mean_hw x) + MLP(amax_hw x))``; spatial gate:
    ``y = x1 * σ(BN(conv_k([amax_c x1, mean_c x1])))``. Composed of the two parts as timm's
    ``CbamModule``; :meth:`attention` gives the full gate ``(N, C, H, W)``.

    Args:
        channels: input channels ``C``.
        rd_ratio, rd_channels, rd_divisor: MLP hidden width ``h`` (default ``C/16`` with divisor 1).
        spatial_kernel_size: kernel of the spatial conv (7, padding 3).
        act_layer: MLP activation (ReLU).
        gate_layer: gate non-linearity (sigmoid).
        mlp_bias: MLP biases (timm default False; the official code uses True via ``paper_kwargs``).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Cost:
        ``2·C·h (+ h + C with bias) + 2·k² + 2`` parameters; ``4·C·h + 2·k²·H·W`` MACs per call.
        Initial spatial gate exactly 0.5 (BN γ = β = 0), initial channel gate ≈ 0.5.

    Raises:
        ValueError: an even ``spatial_kernel_size``; non-positive widths.

    Reference:
        CBAM: Convolutional Block Attention Module, arXiv:1807.06521,
        https://github.com/Jongchan/attention-module

    Deviations:
        The spatial BN is initialised γ = 0, β = 0 inside the module, as the official ResNet init loop
        does (timm keeps γ = 1: this is a difference from timm, not from the paper). MLP biases are
        zeroed as in the official init. The MLP is made of 1×1 convs (identical to ``Linear``). The
        spatial pooling order is ``[max, mean]`` (official ``ChannelPool``; timm uses ``[mean, max]``).
    """

    asr_support = "channel_only"

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        mlp_bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        if spatial_kernel_size % 2 != 1:
            raise ValueError(f"spatial_kernel_size must be odd, got {spatial_kernel_size}")
        self.channels = channels
        self.channel = CBAMChannelGate(
            channels, rd_ratio, rd_channels, rd_divisor, act_layer, gate_layer, mlp_bias, **fk
        )
        self.spatial = CBAMSpatialGate(spatial_kernel_size, gate_layer, **fk)
        self.rd_channels = self.channel.rd_channels

    def reset_parameters(self) -> None:
        """Official initialisation of both parts (see :class:`CBAMChannelGate`, :class:`CBAMSpatialGate`)."""
        self.channel.reset_parameters()
        self.spatial.reset_parameters()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The full gate: channel gate times the spatial gate of the channel-gated map, ``(N, C, H, W)``."""
        cg = self.channel.attention(x)  # (N, C, 1, 1)
        return cg * self.spatial.attention(x * cg)  # (N, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel gate, then spatial gate: ``(N, C, H, W) -> (N, C, H, W)``."""
        return self.spatial(self.channel(x))

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return (
            f"channels={self.channels}, rd_channels={self.rd_channels}, gate={gate_name(self.channel.gate)}"
        )


register_attn(
    "cbam",
    CBAMModule,
    title="CBAM: Convolutional Block Attention Module",
    arxiv="1807.06521",
    code="https://github.com/Jongchan/attention-module",
    paper_kwargs={"mlp_bias": True},
)
