"""RAS: Recurrent Attention Strategy (a per-channel Linear Enhancement applied recurrently with BNs).

Reference:
    Zhong, Wen, Qin, Huang. "Deepening Neural Networks Implicitly and Locally via Recurrent Attention
    Strategy". arXiv:2210.15676. Official code: https://github.com/Qrange-group/RAS
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule
from ._helpers import check_4d, check_channels, gate_name, get_gate
from ._registry import register_attn

__all__ = ["RASModule"]


class RASModule(GateModule):
    """RAS channel gate: the same per-channel affine ("LE") applied ``T`` times, with a BN in between.

    For the branch output ``u`` and implicit depth ``T`` (official ``T = 2``)::

        z = w * mean_hw(u) + b                          # (N, C, 1, 1); w, b one value per channel
        for k in 1..T-1:  z = w * BN_k(z) + b           # BN over the batch of pooled vectors
        y = u * gate(z)

    ``w`` and ``b`` are shared by the ``T`` LE steps of *one* block (local sharing); every block has
    its own ``w``, ``b`` and BNs.

    **Dead gradient at init.** With the official ``w = 0`` every sample has ``z1 = b``, BN_1 outputs
    exactly its β, and ``w``, γ, β get exactly zero gradient (only ``b`` moves): in exact arithmetic a
    fixed point; in practice ``w`` escapes after ~100 steps through rounding noise only. attnkit
    therefore defaults to ``w_init=0.01`` (gate still ≈ sigmoid(-1) = 0.269, max deviation ≈ 0.003 on
    ResNet-164, but every parameter has a gradient at step 0); ``w_init=0.0`` is the paper's value.

    Args:
        channels: input channels ``C``.
        implicit_depth: ``T >= 1`` LE applications (``T - 1`` BNs); official 2, others [inferred].
        w_init: initial ``w`` (0.01; the official value is 0.0).
        b_init: initial ``b`` (-1.0).
        gate_layer: gate non-linearity (sigmoid).
        eps, momentum: of the BNs (1e-5, 0.1).
        act_layer: accepted for timm's ``attn_layer`` contract; unused (RAS has no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Cost:
        ``2·T·C`` parameters per block (``4C`` for T = 2: w, b, BN γ, β) plus ``2(T-1)C`` buffers; no
        counted MACs. ResNet-164 (CIFAR-100): 1,759,540 params.

    Raises:
        ValueError: bad input; a training batch of 1 when ``T >= 2`` (the BN normalises pooled
            ``(N, C, 1, 1)`` features over the batch).
        TypeError: reduction arguments (``rd_ratio`` ...): RAS has no reduction.
        RuntimeError: a fused module used in training mode.

    Reference:
        Deepening Neural Networks Implicitly and Locally via Recurrent Attention Strategy,
        arXiv:2210.15676, https://github.com/Qrange-group/RAS

    Deviations:
        - ``w_init`` defaults to 0.01 (official 0.0, a saddle; see above).
        - ``implicit_depth`` generalises the released T = 2.
        - ``(C,)`` parameters named ``le_weight``/``le_bias`` and BN ``norms.0`` (official
          ``(1, C, 1, 1)`` ``w``/``b`` and ``bn4``).
        - A training batch of 1 raises a ``ValueError`` naming RAS (PyTorch's BN raises a generic error).
        - Basic blocks get RAS after ``bn2`` (the official basic block has none) [inferred].
    """

    def __init__(
        self,
        channels: int,
        implicit_depth: int = 2,
        w_init: float = 0.01,
        b_init: float = -1.0,
        gate_layer="sigmoid",
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        act_layer=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_channels(channels, "RAS")
        if not isinstance(implicit_depth, int) or implicit_depth < 1:
            raise ValueError(f"RAS implicit_depth must be an int >= 1, got {implicit_depth!r}")
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.implicit_depth = implicit_depth
        self.w_init = float(w_init)
        self.b_init = float(b_init)
        self.fused = False
        self.le_weight = nn.Parameter(torch.full((channels,), self.w_init, **fk))
        self.le_bias = nn.Parameter(torch.full((channels,), self.b_init, **fk))
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(channels, eps=eps, momentum=momentum, **fk) for _ in range(implicit_depth - 1)
        )
        self.gate = get_gate(gate_layer)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The LE/BN chain on the pooled input: ``(N, C, H, W) -> (N, C, 1, 1)``.

        Raises:
            RuntimeError: a fused module in training mode.
            ValueError: a training batch of 1 while the chain holds BatchNorms; bad input shape.
        """
        check_4d(x, self.channels, "RASModule")
        c = self.channels
        z0 = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        if self.fused:
            if self.training:
                raise RuntimeError(
                    "RASModule was fused by reparameterize() and is eval-only; it cannot be trained"
                )
            return self.fused_weight.view(1, c, 1, 1) * z0 + self.fused_bias.view(1, c, 1, 1)  # (N, C, 1, 1)
        if self.training and x.shape[0] == 1 and any(isinstance(n, nn.BatchNorm2d) for n in self.norms):
            raise ValueError(
                "RAS needs a batch of more than 1 sample in training mode: its BatchNorm normalises the "
                "pooled (N, C, 1, 1) features over the batch"
            )
        w = self.le_weight.view(1, c, 1, 1)
        b = self.le_bias.view(1, c, 1, 1)
        z = w * z0 + b  # (N, C, 1, 1) first LE step
        for norm in self.norms:
            z = w * norm(z) + b  # (N, C, 1, 1) BN then the SAME LE again
        return z

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the LE/BN chain (eval mode) into one per-channel affine ``gate(A * z0 + B)``, in place.

        Stores ``fused_weight``/``fused_bias`` buffers ``(C,)`` and removes ``le_weight``, ``le_bias``
        and ``norms``. The fused module raises ``RuntimeError`` in training mode.
        """
        if self.fused:
            return
        w, b = self.le_weight.detach(), self.le_bias.detach()
        a, bb = w.clone(), b.clone()  # z = a * z0 + bb
        for norm in self.norms:
            s = torch.sqrt(norm.running_var + norm.eps)
            g = norm.weight if norm.weight is not None else torch.ones_like(s)
            beta = norm.bias if norm.bias is not None else torch.zeros_like(s)
            scale = g / s  # BN(z) = scale * (z - mu) + beta
            a, bb = w * scale * a, w * (scale * (bb - norm.running_mean) + beta) + b
        del self.le_weight, self.le_bias, self.norms
        self.norms = nn.ModuleList()
        self.register_buffer("fused_weight", a.clone())
        self.register_buffer("fused_bias", bb.clone())
        self.fused = True

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        s = f"{self.channels}, implicit_depth={self.implicit_depth}, w_init={self.w_init}, b_init={self.b_init}"
        return s + (", fused=True" if self.fused else f", gate={gate_name(self.gate)}")


register_attn(
    "ras",
    RASModule,
    title="Deepening Neural Networks Implicitly and Locally via Recurrent Attention Strategy",
    arxiv="2210.15676",
    code="https://github.com/Qrange-group/RAS",
)
