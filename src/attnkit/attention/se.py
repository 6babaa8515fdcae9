"""SE: Squeeze-and-Excitation.

Reference:
    Hu, Shen, Sun. "Squeeze-and-Excitation Networks". arXiv:1709.01507.
    Official code: https://github.com/hujie-frank/SENet
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import gate_name, get_act_layer, get_gate, resolve_rd_channels
from ._registry import register_attn

__all__ = ["SEModule", "se_linear_to_conv", "se_conv_to_linear"]


class SEModule(GateModule):
    """Squeeze-and-Excitation channel gate.

    ``y = x * gate(W2 act(W1 mean_hw(x) + b1) + b2)``; the MLP is two 1×1 convs (timm style).

    Args:
        channels: input channels ``C``.
        rd_ratio: hidden width as a fraction of ``C`` (default 1/16).
        rd_channels: absolute hidden width ``h``; overrides ``rd_ratio``.
        rd_divisor: round ``h`` to a multiple of this (timm default 8; the papers' code uses 1, which
            ``create_model`` applies through the registry's ``paper_kwargs``).
        act_layer: hidden activation (default ReLU): a class, factory or name (timm's names when timm is
            installed).
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

    def excite(self, s: torch.Tensor) -> torch.Tensor:
        """The excitation MLP ``fc2(act(fc1(s)))`` on a pooled descriptor: ``(N, C, 1, 1) -> (N, C, 1, 1)``."""
        return self.fc2(self.act(self.fc1(s)))

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """SE logits ``fc2(act(fc1(mean_hw x)))``: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        return self.excite(x.mean((2, 3), keepdim=True))  # (N, C, 1, 1)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, rd_channels={self.rd_channels}, gate={gate_name(self.gate)}"


_OFFICIAL = {"0": "fc1", "2": "fc2"}  # nn.Sequential(Linear, ReLU, Linear, Sigmoid) indices
_OURS = {v: k for k, v in _OFFICIAL.items()}


def _rename_fc(key: str, table: dict[str, str], split: bool) -> str | None:
    """Rename the SE MLP segments of a state-dict key (``fc.0`` <-> ``fc1``); None when it has none."""
    parts = key.split(".")
    for i in range(len(parts) - 1):
        if split and parts[i] == "fc" and parts[i + 1] in table and i + 2 < len(parts):
            return ".".join([*parts[:i], table[parts[i + 1]], *parts[i + 2 :]])
        if not split and parts[i] in table:
            return ".".join([*parts[:i], "fc", table[parts[i]], *parts[i + 1 :]])
    return None


def se_linear_to_conv(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert SE weights from ``nn.Linear`` layout to :class:`SEModule`'s 1×1-conv layout.

    Official SE code (and most PyTorch ports) hold the excitation MLP as
    ``fc = nn.Sequential(Linear(C, h), ReLU, Linear(h, C), Sigmoid)``: keys ``<prefix>fc.0.weight``
    ``(h, C)``, ``fc.0.bias``, ``fc.2.weight`` ``(C, h)``, ``fc.2.bias``. They become
    ``<prefix>fc1.*``/``<prefix>fc2.*`` with the weights reshaped to ``(out, in, 1, 1)``. Keys already
    named ``fc1``/``fc2`` with 2-D weights (Linear-shaped attnkit names) are reshaped only. Every other
    tensor is copied unchanged.

    Args:
        state_dict: a state dict holding official SE blocks (e.g. ``layer1.0.se.fc.0.weight``).

    Returns:
        A new state dict that loads into attnkit's SE modules (``strict=True`` for an SE-only dict).

    Deviations:
        Any ``fc.0``/``fc.2`` pair is taken for an SE MLP: a model whose *classifier* is an
        ``nn.Sequential`` named ``fc`` would be renamed too; convert the SE sub-dict only in that case.
    """
    out = {}
    for k, v in state_dict.items():
        renamed = _rename_fc(k, _OFFICIAL, split=True)
        if renamed is None and any(seg in ("fc1", "fc2") for seg in k.split(".")[:-1]):
            renamed = k
        if renamed is not None and renamed.endswith(".weight") and v.dim() == 2:
            v = v.reshape(*v.shape, 1, 1)  # (out, in) -> (out, in, 1, 1)
        out[renamed if renamed is not None else k] = v
    return out


def se_conv_to_linear(
    state_dict: dict[str, torch.Tensor], official_names: bool = False
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`se_linear_to_conv`: SE 1×1-conv weights back to ``nn.Linear`` shape.

    Args:
        state_dict: a state dict holding attnkit SE modules (``...fc1.weight`` of shape ``(h, C, 1, 1)``).
        official_names: also rename ``fc1``/``fc2`` to the official ``fc.0``/``fc.2``.

    Returns:
        A new state dict; other tensors are copied unchanged.
    """
    out = {}
    for k, v in state_dict.items():
        if not any(seg in ("fc1", "fc2") for seg in k.split(".")[:-1]):
            out[k] = v
            continue
        if k.endswith(".weight") and v.dim() == 4 and v.shape[2:] == (1, 1):
            v = v.reshape(v.shape[0], v.shape[1])  # (out, in, 1, 1) -> (out, in)
        out[(_rename_fc(k, _OURS, split=False) or k) if official_names else k] = v
    return out


register_attn(
    "se",
    SEModule,
    title="Squeeze-and-Excitation Networks",
    arxiv="1709.01507",
    code="https://github.com/hujie-frank/SENet",
    paper_kwargs={"rd_divisor": 1},
)
