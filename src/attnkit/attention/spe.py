"""SPEM: Self-adaptive Pooling Enhanced attention Module (first called SPENet).

Reference:
    Zhong, Wen, Qin. "SPEM: Self-adaptive Pooling Enhanced Attention Module for Image Recognition".
    MMM 2023; arXiv:2208.10322 (v2: "Mix-Pooling Strategy for Attention Mechanism").
    Official code: https://github.com/Qrange-group/SPEM
"""

from __future__ import annotations

import torch
from torch import nn

from ._gate import GateModule, ProductGate, stack_logits
from ._helpers import check_4d, check_channels, gate_name, get_gate
from ._registry import register_attn

__all__ = ["SPEMModule", "spem_state_dict_from_official"]

_FORMULATIONS = ("code", "figure")


class SPEMModule(GateModule):
    """SPEM channel gate: a learned mix of global max and min pooling, excited by per-channel affines.

    ``formulation="code"`` (default, the official code)::

        f_max, f_min = amax_hw(u), amin_hw(u)            # (N, C, 1, 1) each
        M, m  = rew_w * f_max + rew_b, rew_w * f_min + rew_b
        v_rew = sigmoid(M + m)
        lam   = p0² / (p0² + p1²)                        # () in [0, 1]; scale-invariant in p
        v_exc = sigmoid(exc_w * (lam * M + (1 - lam) * m) + exc_b)
        v     = v_rew * v_exc;  y = u * v                # no further sigmoid

    ``formulation="figure"`` (our reading of the README figure): ``v_rew = sigmoid(g_rew(f_max) +
    g_rew(f_min))`` and ``v = sigmoid(v_rew * (exc_w * (lam f_max + (1 - lam) f_min) + exc_b))``.

    At initialisation (``rew_w = exc_w = 0``, biases -1, ``p = (0.5, 0.5)``) the gate is
    ``sigmoid(-2) * sigmoid(-1) = 0.0320586`` for every input ("code"), 0.470235 ("figure").

    **Auxiliary loss.** The module contributes ``aux_weight * (p**2).sum()`` through :meth:`aux_loss`
    (official α = 0.1). A training loop must add it:
    ``loss = task_loss + attnkit.models.total_aux_loss(model)``; attnkit's trainer does so. A custom
    loop that omits it silently drops the method's regulariser. At initialisation the task loss gives
    ``p`` an exactly zero gradient (both affine weights are 0); ``p`` first moves through the aux term.

    Args:
        channels: input channels ``C``.
        aux_weight: α of the auxiliary term (0.1; 0.0 is the documented ablation).
        formulation: ``"code"`` or ``"figure"``.
        init_weight, init_bias: initial affine weights (0) and biases (-1) of both maps.
        init_p: initial value of both mixing scalars (0.5).
        gate_layer: the squashing non-linearity used for both sigmoids.
        act_layer: accepted for timm's ``attn_layer`` contract; unused (SPEM has no hidden layer).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, K, C, 1, 1)`` (the factors' logits,
        ``K = 2`` for "code", 1 for "figure"), read by ``self.gate``, a :class:`ProductGate`;
        :meth:`attention`: ``(N, C, 1, 1)``.

    Cost:
        ``4C + 2`` parameters per block, no counted MACs. ResNet-164 (CIFAR-100): 1,759,648 params.

    Raises:
        ValueError: unknown ``formulation``, non-4-D input, wrong channel count.

    Reference:
        SPEM, arXiv:2208.10322, https://github.com/Qrange-group/SPEM

    Deviations:
        - The auxiliary loss goes through ``aux_loss()`` (model-level protocol) instead of threading
          ``(x, P)`` tuples through the blocks; models return logits only.
        - Basic blocks get SPEM after ``bn2`` (the official basic block has no attention) [inferred].
        - ``formulation="figure"`` is a reconstruction of the README figure [inferred].
        - ``amax``/``amin`` split gradients evenly among tied elements (official max-pool/min route
          to one element); outputs are identical.
        - λ is computed in the parameters' dtype (float32 for fp16/bf16 parameters), so a float64
          module matches the official formula to float64 precision.
    """

    logits_shape = "factors"

    def __init__(
        self,
        channels: int,
        aux_weight: float = 0.1,
        formulation: str = "code",
        init_weight: float = 0.0,
        init_bias: float = -1.0,
        init_p: float = 0.5,
        gate_layer="sigmoid",
        act_layer=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if formulation not in _FORMULATIONS:
            raise ValueError(f"SPEM formulation must be one of {_FORMULATIONS}, got {formulation!r}")
        check_channels(channels, "SPEM")
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.aux_weight = float(aux_weight)
        self.formulation = formulation
        shape = (1, channels, 1, 1)
        self.rew_weight = nn.Parameter(torch.full(shape, float(init_weight), **fk))
        self.rew_bias = nn.Parameter(torch.full(shape, float(init_bias), **fk))
        self.exc_weight = nn.Parameter(torch.full(shape, float(init_weight), **fk))
        self.exc_bias = nn.Parameter(torch.full(shape, float(init_bias), **fk))
        self.p = nn.Parameter(torch.full((2,), float(init_p), **fk))
        self.gate = ProductGate(get_gate(gate_layer))

    def _lam(self) -> torch.Tensor:
        p = self.p.float() if self.p.dtype in (torch.float16, torch.bfloat16) else self.p  # fp32 at least
        p2 = p**2  # (2,)
        return p2[0] / (p2[0] + p2[1])  # ()

    @property
    def mix_weight(self) -> torch.Tensor:
        """λ, the weight of the max branch (0-dim, detached; for logging)."""
        return self._lam().detach()

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The factors' logits: ``(N, C, H, W) -> (N, K, C, 1, 1)``; ``self.gate`` multiplies them squashed."""
        check_4d(x, self.channels, "SPEMModule")
        f_max = x.amax((2, 3), keepdim=True)  # (N, C, 1, 1)
        f_min = x.amin((2, 3), keepdim=True)  # (N, C, 1, 1)
        big = self.rew_weight * f_max + self.rew_bias  # (N, C, 1, 1) g_rew(f_max)
        small = self.rew_weight * f_min + self.rew_bias  # (N, C, 1, 1) g_rew(f_min)
        lam = self._lam().to(big.dtype)  # ()
        if self.formulation == "code":
            mix = lam * big + (1 - lam) * small  # (N, C, 1, 1) mix of the reweighted pools
            return stack_logits([big + small, self.exc_weight * mix + self.exc_bias])  # (N, 2, C, 1, 1)
        v_rew = self.gate.act(big + small)  # (N, C, 1, 1)
        mix = lam * f_max + (1 - lam) * f_min  # (N, C, 1, 1) mix of the raw pools
        return stack_logits([v_rew * (self.exc_weight * mix + self.exc_bias)])  # (N, 1, C, 1, 1)

    def aux_loss(self) -> torch.Tensor:
        """``aux_weight * (p**2).sum()``: a 0-dim tensor, already weighted; depends on parameters only."""
        return self.aux_weight * (self.p**2).sum()

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return (
            f"channels={self.channels}, aux_weight={self.aux_weight}, formulation={self.formulation!r}, "
            f"gate={gate_name(self.gate)}"
        )


def spem_state_dict_from_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official SPEM state dict: ``w2, b2 -> rew_*``, ``w1, b1 -> exc_*``, ``p -> p``.

    Keys may carry a prefix (e.g. ``layer1.0.spem.w1``); the prefix is kept. Other keys are copied.

    Args:
        state_dict: the official tensors.

    Returns:
        A new state dict with attnkit's names.
    """
    names = {"w2": "rew_weight", "b2": "rew_bias", "w1": "exc_weight", "b1": "exc_bias", "p": "p"}
    out = {}
    for k, v in state_dict.items():
        prefix, _, last = k.rpartition(".")
        if last in names:
            k = f"{prefix}.{names[last]}" if prefix else names[last]
        out[k] = v
    return out


register_attn(
    "spem",
    SPEMModule,
    title="SPEM: Self-adaptive Pooling Enhanced Attention Module for Image Recognition",
    arxiv="2208.10322",
    code="https://github.com/Qrange-group/SPEM",
    aliases=("spe",),
)
