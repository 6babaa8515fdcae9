"""DIA: Dense-and-Implicit Attention, the DIA-LSTM unit shared by all blocks of a stage.

Reference:
    Huang, Liang, Liang, Yang. "DIANet: Dense-and-Implicit Attention Network". AAAI 2020,
    arXiv:1905.10671. Journal version: "A Generic Shared Attention Mechanism for Various Backbone Neural
    Networks", arXiv:2210.16101. Official code: https://github.com/gbup-group/DIANet

The DIA *framework* (one attention module per stage, shared by its blocks) is the model argument
``sharing="stage"`` of :func:`attnkit.create_model`, which works with every gate module. What is known
about the journal version (arXiv 2210.16101) is only its abstract: one self-attention module shared per
stage, plus an LSTM that "calibrates and bridges" the strongly correlated per-layer maps. How the LSTM
is combined with a shared SE/CBAM, the "DIA-LSTM Light" variant and every number are unknown; attnkit
implements the AAAI DIA-LSTM (this file) and generic per-stage sharing, and nothing it would have to
guess (our reading: DIA-LSTM *is* the calibrated shared module).
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import check_4d, gate_name, get_act_layer, get_gate, resolve_rd_channels
from ._registry import register_attn

__all__ = ["DIALSTM", "DIAState"]

DIAState = tuple[torch.Tensor, torch.Tensor]
"""The DIA-LSTM state ``(h, c)``, each of shape ``(N, C)``."""

_NO_STATE = object()  # forward called as m(x), the way a timm ``attn_layer`` is called


class _MLP(nn.Module):
    """``Linear(C -> d) -> act -> Linear(d -> 4C)``, both with bias (one of DIA-LSTM's two gate maps)."""

    def __init__(self, channels: int, rd_channels: int, act_layer, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(channels, rd_channels, **fk)
        self.act = get_act_layer(act_layer)
        self.fc2 = nn.Linear(rd_channels, 4 * channels, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (N, C) -> (N, 4C)


class DIALSTM(nn.Module):
    """DIA-LSTM: a modified LSTM cell whose hidden state is the channel gate of every block of a stage.

    **Not a gate drop-in**: it is called as ``y, state = m(u, state)`` and the model threads the state
    from block to block (``kind="recurrent"``). Called as ``m(u)`` (as a timm ``attn_layer`` would be)
    it raises a ``TypeError`` saying so. attnkit's :class:`~attnkit.models.ResStage` starts each
    stage from ``state=None`` (zeros) and passes the state only through connected blocks; the module
    itself stores no state (no buffers, nothing written in ``forward``), so it compiles and exports.

    For the residual-branch output ``u_t`` of block ``t`` (after its last BN, before the addition)::

        m_t        = mean_hw(u_t)                               # (N, C)
        G_t        = fc_x(m_t) + fc_h(h_{t-1})                  # (N, 4C); fc_*: Linear(C,d)-ReLU-Linear(d,4C)
        i, f, g, o = G_t.chunk(4, dim=1)                        # each (N, C), nn.LSTMCell order
        c_t        = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t        = sigmoid(o) * gate(c_t)                     # gate = sigmoid (not tanh): h in (0, 1)
        y_t        = u_t * h_t[:, :, None, None]

    ``fc_h`` is evaluated on the zero state too (``fc_h(0) != 0`` because of its biases). The state is
    not detached, so gradients flow back through ``(h, c)`` to earlier blocks of the stage. At
    initialisation the mean gate is ≈ 0.25 (SE: ≈ 0.5).

    Args:
        channels: stage width ``C``.
        rd_ratio: hidden width of both MLPs as a fraction of ``C`` (default 1/4, the official r = 4).
        rd_channels: absolute hidden width ``d``; overrides ``rd_ratio`` (EAN's cell: ``C // 20``).
        rd_divisor: round ``d`` to a multiple of this (default 1: ``d = C/4`` for ``C % 4 == 0``).
        act_layer: hidden activation of the MLPs (ReLU; a class, factory or name).
        gate_layer: the non-linearity on the cell state forming ``h``: ``"sigmoid"`` (DIA) or
            ``"tanh"`` (a standard LSTM, ablation only: allows negative gates).
        device, dtype: factory kwargs.

    Shape:
        ``x``: ``(N, C, H, W)`` -> ``y``: ``(N, C, H, W)``; ``state``: None or ``(h, c)``, each ``(N, C)``.

    Cost:
        ``2·(5·C·d + d + 4C)`` parameters per unit (``2.5·C² + 8.5·C`` for d = C/4), one unit per stage
        whatever the depth; ``10·C·d`` MACs per block call. ResNet-164 (CIFAR-100): +218,848 params.

    Raises:
        ValueError: non-4-D input, wrong channel count, or a state whose tensors are not both ``(N, C)``.

    Reference:
        DIANet: Dense-and-Implicit Attention Network, arXiv:1905.10671,
        https://github.com/gbup-group/DIANet (journal version arXiv:2210.16101).

    Deviations:
        - The zero state is created on the input's device and dtype (the official code calls
          ``.cuda()`` and cannot run on CPU); fp32 and fp64 work on CPU.
        - Works in basic blocks (after ``bn2``): the official basic-block path is broken, so no official
          numbers exist for basic blocks.
        - Widths come from the stage width and ``rd_ratio``/``rd_channels`` (official: literals 64/128/256
          and r = 4).
        - PyTorch's default ``Linear`` init on every backbone (the official WRN/ResNeXt loops zero the
          biases; ResNet/PreResNet do not).
        - Single-layer cell, no dropout, no unused pooled-feature list (dead code in the official cell).
        - The block keeps its merge (product, addition, ReLU); the official stage wrapper owns it.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 4,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.rd_channels = resolve_rd_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc_x = _MLP(channels, self.rd_channels, act_layer, device, dtype)
        self.fc_h = _MLP(channels, self.rd_channels, act_layer, device, dtype)
        self.gate = get_gate(gate_layer)

    def forward(self, x: torch.Tensor, state: DIAState | None = _NO_STATE) -> tuple[torch.Tensor, DIAState]:  # type: ignore[assignment]
        """One step: gate ``x`` with the new hidden state.

        Args:
            x: branch output ``(N, C, H, W)``.
            state: ``(h, c)`` from the previous connected block of the stage, or None (zeros) for the
                first block. Required: the unit is recurrent.

        Returns:
            ``(y, (h, c))``: ``y`` of shape ``(N, C, H, W)``; ``h`` and ``c`` of shape ``(N, C)``.

        Raises:
            TypeError: called without ``state`` (e.g. as a timm ``attn_layer``, which calls ``attn(x)``).
            ValueError: bad input or state shapes.
        """
        if state is _NO_STATE:
            raise TypeError(
                "DIALSTM is a recurrent unit and cannot be a timm attn_layer (called as attn(x), with no "
                "state). Call it as y, state = m(x, state), state=None for a stage's first block; use "
                "create_model(..., attn='dia'), or any gate shared per stage with sharing='stage'"
            )
        check_4d(x, self.channels, "DIALSTM")
        n, c = x.shape[0], x.shape[1]
        m = x.mean((2, 3))  # (N, C)
        if state is None:
            h = c_prev = m.new_zeros((n, c))  # (N, C) zero state, on x's device and dtype
        else:
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise ValueError("DIALSTM state must be a tuple (h, c) of two (N, C) tensors or None")
            h, c_prev = state
            if tuple(h.shape) != (n, c) or tuple(c_prev.shape) != (n, c):
                raise ValueError(
                    f"DIALSTM state tensors must both have shape (N, C) = {(n, c)}, "
                    f"got {tuple(h.shape)} and {tuple(c_prev.shape)}"
                )
        gates = self.fc_x(m) + self.fc_h(h)  # (N, 4C), fc_h evaluated on the zero state as well
        i, f, g, o = gates.chunk(4, dim=1)  # each (N, C)
        c_new = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)  # (N, C)
        h_new = torch.sigmoid(o) * self.gate(c_new)  # (N, C)
        y = x * h_new.reshape(n, c, 1, 1).to(x.dtype)  # (N, C, H, W)
        return y, (h_new, c_new)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return f"channels={self.channels}, rd_channels={self.rd_channels}, gate={gate_name(self.gate)}"


register_attn(
    "dia",
    DIALSTM,
    title="DIANet: Dense-and-Implicit Attention Network",
    arxiv="1905.10671",
    code="https://github.com/gbup-group/DIANet",
    kind="recurrent",
)
