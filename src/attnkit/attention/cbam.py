"""CBAM: Convolutional Block Attention Module (channel gate followed by a spatial gate).

Reference:
    Woo, Park, Lee, Kweon. "CBAM: Convolutional Block Attention Module". arXiv:1807.06521.
    Official code: https://github.com/Jongchan/attention-module
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import gate_name, get_act_layer, get_gate, resolve_rd_channels
from ._registry import register_attn

__all__ = ["CBAMModule"]


class CBAMModule(nn.Module):
    """CBAM: channel attention (shared MLP over avg- and max-pooled features), then spatial attention.

    Channel gate: ``x1 = x * σ(MLP(mean_hw x) + MLP(amax_hw x))``; spatial gate:
    ``y = x1 * σ(BN(conv_k([amax_c x1, mean_c x1])))``.

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

    Reference:
        CBAM: Convolutional Block Attention Module, arXiv:1807.06521,
        https://github.com/Jongchan/attention-module

    Deviations:
        The spatial BN is initialised γ = 0, β = 0 inside the module, as the official ResNet init loop
        does (timm keeps γ = 1: this is a difference from timm, not from the paper). MLP biases are
        zeroed as in the official init. The MLP is made of 1×1 convs (identical to ``Linear``).
    """

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
        self.rd_channels = resolve_rd_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Conv2d(channels, self.rd_channels, 1, bias=mlp_bias, **fk)
        self.act = get_act_layer(act_layer)
        self.fc2 = nn.Conv2d(self.rd_channels, channels, 1, bias=mlp_bias, **fk)
        self.channel_gate = get_gate(gate_layer)
        self.spatial_conv = nn.Conv2d(
            2, 1, spatial_kernel_size, padding=spatial_kernel_size // 2, bias=False, **fk
        )
        self.spatial_bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, **fk)
        self.spatial_gate = get_gate(gate_layer)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: He-normal (fan-out) spatial conv, zero spatial BN, zero MLP biases."""
        nn.init.kaiming_normal_(self.spatial_conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.spatial_bn.weight)
        nn.init.zeros_(self.spatial_bn.bias)
        for fc in (self.fc1, self.fc2):
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def _mlp(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(s)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self._mlp(x.mean((2, 3), keepdim=True)) + self._mlp(x.amax((2, 3), keepdim=True))  # (N, C, 1, 1)
        x = x * self.channel_gate(a)  # (N, C, H, W)
        m = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # (N, 2, H, W)
        s = self.spatial_bn(self.spatial_conv(m))  # (N, 1, H, W)
        return x * self.spatial_gate(s)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, rd_channels={self.rd_channels}, gate={gate_name(self.channel_gate)}"
        )


register_attn(
    "cbam",
    CBAMModule,
    title="CBAM: Convolutional Block Attention Module",
    arxiv="1807.06521",
    code="https://github.com/Jongchan/attention-module",
    paper_kwargs={"mlp_bias": True},
)
