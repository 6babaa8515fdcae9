"""IEBN: Instance Enhancement Batch Normalization (a norm layer), and the IE gate form.

Reference:
    Liang, Huang, Liang, Yang. "Instance Enhancement Batch Normalization: an Adaptive Regulator of
    Batch Noise". AAAI 2020, arXiv:1908.04008. Official code: https://github.com/gbup-group/IEBN
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._gate import GateModule
from ._helpers import check_4d, check_channels, gate_name, get_gate
from ._registry import register_attn

__all__ = ["IEBN2d", "IEGate", "convert_to_iebn", "ie_gate_logits"]


def ie_gate_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The IE instance gate's logits ``w * mean_hw(x) + b``, shared by :class:`IEBN2d` and :class:`IEGate`.

    Args:
        x: the input ``(N, C, H, W)``.
        weight: per-channel ``w`` ``(C,)``.
        bias: per-channel ``b`` ``(C,)``.

    Returns:
        ``(N, C, 1, 1)``.
    """
    c = weight.shape[0]
    m = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1) per-instance GAP of the raw input
    return weight.view(1, c, 1, 1) * m + bias.view(1, c, 1, 1)  # (N, C, 1, 1)


class IEBN2d(nn.Module):
    """IEBN: BatchNorm whose affine scale is modulated per instance by a tiny gate on the raw input.

    **A normalisation layer, not a gate** (``kind="norm"``): ``create_model(..., attn="iebn")`` builds the
    stem BN and every BN of the residual branches as ``IEBN2d`` and keeps projection-shortcut BNs plain;
    no attention module is inserted. In a timm model's ``attn_layer`` slot it runs (it accepts timm's
    keywords) but is not the method there: it would be an extra layer after the block's last BN instead
    of replacing the branch BNs (use :func:`convert_to_iebn` for timm ResNets). For input ``x`` of shape
    ``(N, C, H, W)``::

        m     = mean_hw(x)                         # (N, C, 1, 1) per-instance GAP of the RAW input
        a     = gate(w * m + b)                    # (N, C, 1, 1) per-channel w (init 0), b (init -1)
        x_hat = batch_norm(x, no affine)           # batch statistics in training, running ones in eval
        y     = x_hat * (gamma * a) + beta

    At initialisation ``a = sigmoid(-1) = 0.2689`` everywhere, so each IEBN output starts at ≈ 0.27× a
    BN's. ``w = 0`` is not a saddle: ``dL/dw = ... a(1 - a) m != 0`` from the first step.

    Args:
        channels: number of channels ``C`` (positional, so the class works as a ``norm_layer`` factory).
        eps: added to the variance (1e-5).
        momentum: running-statistics factor (0.1); None = cumulative average, as ``nn.BatchNorm2d``.
        track_running_stats: keep running statistics (True); False = batch statistics in both modes.
        gate_weight_init: initial ``w`` (0.0, official).
        gate_bias_init: initial ``b`` (-1.0, official).
        gate_layer: gate non-linearity (``"sigmoid"``).
        act_layer: accepted for timm's ``attn_layer`` contract; unused (IEBN has no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Cost:
        ``4C`` parameters (γ, β, w, b), i.e. ``2C`` more than a BN, and no counted MACs. ResNet-164
        (163 replaced BNs, CIFAR-100): 1,751,508 params (+24,224).

    Raises:
        ValueError: non-4-D input or a channel count other than ``channels``.

    Reference:
        Instance Enhancement Batch Normalization, arXiv:1908.04008, https://github.com/gbup-group/IEBN

    Deviations:
        - Parameters have shape ``(C,)`` and BN's names (``weight``, ``bias``, ``running_*``) plus
          ``gate_weight``/``gate_bias`` (official: ``(1, C, 1, 1)``, ``weight_readjust``/``bias_readjust``),
          so a BatchNorm state dict loads with ``strict=False``.
        - ``momentum=None``, ``track_running_stats`` and ``num_batches_tracked`` behave exactly as in
          ``nn.BatchNorm2d`` (the official forward ignores them).
        - Not a ``_BatchNorm`` subclass, so generic BN utilities (``SyncBatchNorm.convert_sync_batchnorm``,
          conv-BN fusion, ``freeze_batch_norm_2d``) leave it alone: statistics stay per device under DDP,
          and nothing silently drops the gate.
        - Squeeze with ``x.mean((2, 3))`` instead of ``AdaptiveAvgPool2d`` (same values).
    """

    def __init__(
        self,
        channels: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
        gate_weight_init: float = 0.0,
        gate_bias_init: float = -1.0,
        gate_layer="sigmoid",
        act_layer=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_channels(channels, "IEBN2d")
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        self.gate_weight_init = float(gate_weight_init)
        self.gate_bias_init = float(gate_bias_init)
        self.weight = nn.Parameter(torch.empty(channels, **fk))
        self.bias = nn.Parameter(torch.empty(channels, **fk))
        self.gate_weight = nn.Parameter(torch.empty(channels, **fk))
        self.gate_bias = nn.Parameter(torch.empty(channels, **fk))
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(channels, **fk))
            self.register_buffer("running_var", torch.ones(channels, **fk))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.gate = get_gate(gate_layer)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0 (as ``nn.BatchNorm2d``)."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """γ = 1, β = 0, gate ``w``/``b`` to their init values; running statistics reset."""
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.constant_(self.gate_weight, self.gate_weight_init)
        nn.init.constant_(self.gate_bias, self.gate_bias_init)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, **kwargs) -> IEBN2d:
        """Convert a BatchNorm2d: copies eps, momentum, tracking, γ, β and running statistics.

        The gate starts at its init values, so the result is *not* output-equivalent to ``bn``: with
        ``w = 0, b = -1`` it gives 0.269 × the normalised activation (plus β).

        Args:
            bn: the BatchNorm to convert.
            **kwargs: further :class:`IEBN2d` arguments (gate init, gate layer).

        Returns:
            A new ``IEBN2d`` on ``bn``'s device and dtype.
        """
        p = bn.weight if bn.weight is not None else bn.running_mean
        layer = cls(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            track_running_stats=bn.track_running_stats,
            device=p.device if p is not None else None,
            dtype=p.dtype if p is not None else None,
            **kwargs,
        )
        with torch.no_grad():
            if bn.affine:
                layer.weight.copy_(bn.weight)
                layer.bias.copy_(bn.bias)
            if bn.track_running_stats and layer.track_running_stats:
                layer.running_mean.copy_(bn.running_mean)
                layer.running_var.copy_(bn.running_var)
                layer.num_batches_tracked.copy_(bn.num_batches_tracked)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and scale it by ``γ`` times the instance gate: ``(N, C, H, W) -> (N, C, H, W)``."""
        check_4d(x, self.channels, "IEBN2d")
        c = self.channels
        a = self.gate(ie_gate_logits(x, self.gate_weight, self.gate_bias))  # (N, C, 1, 1)
        # running-statistics bookkeeping exactly as nn.BatchNorm2d
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        x_hat = F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            None,
            None,
            use_batch_stats,
            factor,
            self.eps,
        )  # (N, C, H, W)
        return x_hat * (self.weight.view(1, c, 1, 1) * a) + self.bias.view(1, c, 1, 1)  # (N, C, H, W)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return (
            f"{self.channels}, eps={self.eps}, momentum={self.momentum}, "
            f"gate_init=({self.gate_weight_init}, {self.gate_bias_init})"
        )


class IEGate(GateModule):
    """IE gate form: ``y = u * gate(w * mean_hw(u) + b)`` on the residual-branch output (``kind="gate"``).

    The form of "+IE" in the ASR paper's Table 1 (arXiv 2304.06345): IEBN's instance gate without the
    normalisation, applied to the branch output like SE. Initial gate ``sigmoid(-1) = 0.2689``.

    Args:
        channels: input channels ``C``.
        gate_weight_init, gate_bias_init: initial ``w`` (0) and ``b`` (-1).
        gate_layer: gate non-linearity (sigmoid).
        act_layer: accepted for timm's ``attn_layer`` contract; unused (no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Cost:
        ``2C`` parameters per block, no counted MACs. ResNet-164 (CIFAR-100): 1,743,412 params.

    Raises:
        ValueError: non-4-D input or wrong channel count.

    Reference:
        arXiv:1908.04008, https://github.com/gbup-group/IEBN (the gate); placement as ASR Table 1.

    Deviations:
        The gate form has no official code; it is our reading of ASR's "+IE" row (its count, 1.74 M,
        matches this form and not IEBN's 1.75 M) [inferred].
    """

    def __init__(
        self,
        channels: int,
        gate_weight_init: float = 0.0,
        gate_bias_init: float = -1.0,
        gate_layer="sigmoid",
        act_layer=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_channels(channels, "IEGate")
        self.channels = channels
        self.gate_weight = nn.Parameter(
            torch.full((channels,), float(gate_weight_init), device=device, dtype=dtype)
        )
        self.gate_bias = nn.Parameter(
            torch.full((channels,), float(gate_bias_init), device=device, dtype=dtype)
        )
        self.gate = get_gate(gate_layer)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """IE logits ``w * mean_hw(x) + b``: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        check_4d(x, self.channels, "IEGate")
        return ie_gate_logits(x, self.gate_weight, self.gate_bias)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, gate={gate_name(self.gate)}"


def convert_to_iebn(
    module: nn.Module, exclude: tuple[str, ...] = ("downsample", "shortcut"), **kwargs
) -> nn.Module:
    """Replace, in place, every ``nn.BatchNorm2d`` whose qualified name contains no ``exclude`` substring.

    Used to put IEBN into third-party (e.g. timm) ResNets with the official placement (shortcut BNs stay
    plain). Passing ``norm_layer=IEBN2d`` to a timm ResNet would also replace the downsample BNs.

    Args:
        module: the model (modified in place; also returned).
        exclude: name substrings whose BNs are kept.
        **kwargs: forwarded to :meth:`IEBN2d.from_batchnorm`.

    Returns:
        ``module``.
    """
    targets = [
        name
        for name, m in module.named_modules()
        if isinstance(m, nn.BatchNorm2d) and name and not any(e in name for e in exclude)
    ]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, IEBN2d.from_batchnorm(getattr(parent, child), **kwargs))
    return module


register_attn(
    "iebn",
    IEBN2d,
    title="Instance Enhancement Batch Normalization: an Adaptive Regulator of Batch Noise",
    arxiv="1908.04008",
    code="https://github.com/gbup-group/IEBN",
    kind="norm",
)
register_attn(
    "ie",
    IEGate,
    title="Instance Enhancement Batch Normalization: an Adaptive Regulator of Batch Noise (IE gate form)",
    arxiv="1908.04008",
    code="https://github.com/gbup-group/IEBN",
    kind="gate",
)
