"""ECA: Efficient Channel Attention.

Reference:
    Wang, Wu, Zhu, Li, Zuo, Hu. "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
    Networks". arXiv:1910.03151. Official code: https://github.com/BangguWu/ECANet
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import gate_name, get_gate
from ._registry import register_attn

__all__ = ["ECAModule", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """The paper's adaptive kernel: ``t = floor(|log2(C) + beta| / gamma)``, made odd, at least 3.

    Args:
        channels: input channels ``C``.
        gamma: the rule's divisor (2).
        beta: the rule's offset (1).

    Returns:
        The odd kernel size ``k >= 3``.
    """
    t = int(abs(math.log2(channels) + beta) / gamma)
    k = t if t % 2 else t + 1
    return max(k, 3)


class ECAModule(GateModule):
    """ECA channel gate: a 1-D conv across the pooled channel descriptor.

    Args:
        channels: input channels ``C``.
        kernel_size: odd int >= 1, or None for the paper's adaptive rule (:func:`eca_kernel_size`).
        gamma, beta: the adaptive rule's constants (2, 1).
        act_layer: accepted for timm's ``attn_layer`` contract (CSP networks pass it); unused, ECA has
            no hidden layer.
        gate_layer: gate non-linearity (sigmoid).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Cost:
        ``k`` parameters and ``k·C`` MACs per call. Initial gate ≈ 0.5.

    Raises:
        ValueError: even or non-positive ``kernel_size``.

    Reference:
        ECA-Net, arXiv:1910.03151, https://github.com/BangguWu/ECANet

    Deviations:
        The paper's adaptive kernel rule is the default; the official ``eca_resnet*`` builders default to
        k = 3 and the released weights use per-stage kernels (pass per-stage ``attn_kwargs`` to reproduce
        them). Unlike timm, an explicit ``kernel_size`` is honoured even when ``channels`` is given.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: float = 2,
        beta: float = 1,
        act_layer=None,
        gate_layer="sigmoid",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ECA kernel_size must be an odd int >= 1, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(
            1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False, device=device, dtype=dtype
        )
        self.gate = get_gate(gate_layer)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """ECA logits, a 1-D conv across the pooled channels: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        n, c = x.shape[0], x.shape[1]
        s = x.mean((2, 3)).reshape(n, 1, c)  # (N, 1, C): channels as a sequence
        return self.conv(s).reshape(n, c, 1, 1)  # (N, C, 1, 1)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, kernel_size={self.kernel_size}, gate={gate_name(self.gate)}"


register_attn(
    "eca",
    ECAModule,
    title="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    arxiv="1910.03151",
    code="https://github.com/BangguWu/ECANet",
)
