"""SRM: Style-based Recalibration Module (optional baseline).

Reference:
    Lee, Kim, Nam. "SRM: A Style-based Recalibration Module for Convolutional Neural Networks".
    arXiv:1903.10829. Official code: https://github.com/hyunjaelee410/style-based-recalibration-module
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import gate_name, get_gate
from ._registry import register_attn

__all__ = ["SRMModule"]


class SRMModule(GateModule):
    """SRM gate: style pooling (per-channel mean and std), a per-channel 2-tap integration, BN, sigmoid.

    ``t = (mean_hw x, sqrt(var_hw x + eps))``, ``z_c = w_c1 μ_c + w_c2 σ_c``, ``y = x * σ(BN(z))``.

    Args:
        channels: input channels ``C``.
        eps: added to the unbiased variance before the square root (1e-5, as the official code).
        gate_layer: gate non-linearity (sigmoid).
        act_layer: accepted for timm's ``attn_layer`` contract; unused (SRM has no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; training mode needs ``N > 1`` (BatchNorm statistics).

    Cost:
        ``4·C`` parameters per block (``2C`` integration weights, ``2C`` BN); 0 counted MACs.
        Initial gate exactly 0.5 (``w = 0`` so the BN sees zeros and outputs ``β = 0``).

    Raises:
        ValueError: (forward) a 1×1 input, where the unbiased variance is undefined (NaN in the official
            code).

    Reference:
        SRM, arXiv:1903.10829, https://github.com/hyunjaelee410/style-based-recalibration-module

    Deviations:
        Raises on ``H·W = 1`` instead of producing NaN. The official ImageNet recipe excludes ``w`` and the
        SRM BN from weight decay; attnkit's default ``wd_mode="all"`` does not (say ``wd_mode`` if you
        need it).
    """

    asr_support = "needs_spatial_psi"

    def __init__(
        self, channels: int, eps: float = 1e-5, gate_layer="sigmoid", act_layer=None, device=None, dtype=None
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.eps = eps
        self.cfc = nn.Parameter(torch.zeros(channels, 2, **fk))  # per-channel (mean, std) weights, init 0
        self.bn = nn.BatchNorm2d(channels, **fk)
        self.gate = get_gate(gate_layer)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``BN(w_1 μ + w_2 σ)`` of the style statistics: ``(N, C, H, W) -> (N, C, 1, 1)``.

        Raises:
            ValueError: a 1×1 input (undefined standard deviation).
        """
        if x.shape[2] * x.shape[3] == 1:
            raise ValueError(
                f"SRMModule needs H·W > 1 for the standard deviation, got shape {tuple(x.shape)}"
            )
        mean = x.mean((2, 3))  # (N, C)
        std = (x.var((2, 3), unbiased=True) + self.eps).sqrt()  # (N, C)
        t = torch.stack((mean, std), dim=-1)  # (N, C, 2)
        z = (t * self.cfc).sum(-1)[:, :, None, None]  # (N, C, 1, 1)
        return self.bn(z)  # (N, C, 1, 1)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, gate={gate_name(self.gate)}"


register_attn(
    "srm",
    SRMModule,
    title="SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
    arxiv="1903.10829",
    code="https://github.com/hyunjaelee410/style-based-recalibration-module",
)
