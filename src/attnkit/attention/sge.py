"""SGE: Spatial Group-wise Enhance (optional baseline).

Reference:
    Li, Hu, Yang. "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional
    Networks". arXiv:1905.09646. Official code: https://github.com/implus/PytorchInsight
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import gate_name, get_gate
from ._registry import register_attn

__all__ = ["SGEModule"]


class SGEModule(GateModule):
    """SGE: a per-group spatial gate from each position's similarity to the group's global descriptor.

    The similarity map is normalised over space and scaled by a per-group affine.

    Args:
        channels: input channels ``C`` (must be divisible by ``groups``).
        groups: number of groups ``G`` (64, as the reference, for every stage).
        eps: added to the spatial standard deviation (after the square root, as the reference).
        gate_layer: gate non-linearity (sigmoid).
        act_layer: accepted for timm's ``attn_layer`` contract; unused (SGE has no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, C, H, W)`` (each group's spatial
        logits repeated over its ``C/G`` channels).

    Cost:
        ``2·G`` parameters per block; 0 counted MACs. Initial gate σ(1) ≈ 0.731 everywhere (γ = 0, β = 1).

    Raises:
        ValueError: ``channels % groups != 0``; (forward) a 1×1 input (undefined spatial std).

    Reference:
        SGE, arXiv:1905.09646, https://github.com/implus/PytorchInsight
        (``classification/models/imagenet/resnet_sge.py``)

    Deviations:
        ``reshape`` instead of ``view`` so that channels_last inputs work; raises on 1×1 inputs. The
        gate is materialised at ``(N, C, H, W)`` (each group's map repeated over its ``C/G`` channels) so
        that ``forward = x * gate(gate_logits(x))`` as every attnkit gate; the values are identical.
    """

    logits_shape = "spatial"
    asr_support = "unsupported"

    def __init__(
        self,
        channels: int,
        groups: int = 64,
        eps: float = 1e-5,
        gate_layer="sigmoid",
        act_layer=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if groups < 1 or channels % groups:
            raise ValueError(f"SGEModule: channels ({channels}) must be divisible by groups ({groups})")
        fk = {"device": device, "dtype": dtype}
        self.channels, self.groups, self.eps = channels, groups, eps
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1, **fk))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1, **fk))
        self.gate = get_gate(gate_layer)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-group normalised similarity maps, affine-scaled: ``(N, C, H, W) -> (N, C, H, W)``.

        Raises:
            ValueError: a 1×1 input (undefined spatial standard deviation).
        """
        n, c, h, w = x.shape
        if h * w == 1:
            raise ValueError(
                f"SGEModule needs H·W > 1 for the spatial normalisation, got shape {tuple(x.shape)}"
            )
        g = self.groups
        xg = x.reshape(n * g, c // g, h, w)  # (N·G, C/G, H, W)
        t = (xg * xg.mean((2, 3), keepdim=True)).sum(1, keepdim=True)  # (N·G, 1, H, W)
        t = t.reshape(n * g, h * w)
        t = t - t.mean(1, keepdim=True)
        t = t / (t.std(1, keepdim=True) + self.eps)  # (N·G, H·W), unbiased std as the reference
        t = t.reshape(n, g, h, w) * self.weight + self.bias  # (N, G, H, W)
        return t.reshape(n, g, 1, h, w).expand(n, g, c // g, h, w).reshape(n, c, h, w)  # (N, C, H, W)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, groups={self.groups}, gate={gate_name(self.gate)}"


register_attn(
    "sge",
    SGEModule,
    title="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
    arxiv="1905.09646",
    code="https://github.com/implus/PytorchInsight",
)
