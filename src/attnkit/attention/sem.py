"""SEM: Switchable Excitation Module (SE / ECA / IE excitation operators under per-input gates).

Reference:
    Zhong, Wen, Qin. "Switchable Self-attention Module". arXiv:2209.05680.
    Official code: https://github.com/Qrange-group/SEM
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._gate import GateModule, ProductGate, stack_logits
from ._helpers import check_4d, gate_name, get_gate
from ._registry import register_attn
from .eca import ECAModule
from .iebn import IEGate
from .se import SEModule, se_linear_to_conv

__all__ = ["SEMModule", "sem_eca_kernel_size", "sem_state_dict_from_official"]

_OPERATORS = ("se", "eca", "ie")
_GATE_MODES = ("sigmoid", "softmax")


def sem_eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """SEM's ECA kernel rule, as coded: ``t = int(|(log2 C + beta) / gamma|)``, made odd, **no minimum**.

    Gives 3, 3, 3, 5, 5, 5, 5, 7 for C = 16 ... 2048 and 1 for C = 4 (attnkit's ``eca`` clamps to >= 3).

    Args:
        channels: input channels ``C``.
        gamma: the rule's divisor (2).
        beta: the rule's offset (1).

    Returns:
        The odd kernel size (>= 1).
    """
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class SEMModule(GateModule):
    """SEM channel gate: SE, ECA and IE excitations, each scaled by a per-input decision weight.

    For the branch output ``u`` (official order of operators)::

        s   = mean_hw(u)                                     # (N, C, 1, 1)
        w   = sigmoid(decision(s))                           # (N, 3) independent sigmoids (not a softmax)
        e1  = se.gate_logits(s)                              # SE logits fc2(ReLU(fc1(s)))
        e2  = eca.gate_logits(s)                             # ECA logits, conv1d_k over channels, no bias
        e3  = ie.gate_logits(s)                              # IE logits w * s + b, per channel
        v   = prod_i gate(w_i * e_i);   y = u * v

    The operators are attnkit's own :class:`SEModule`, :class:`ECAModule` and :class:`IEGate`, called
    through their ``gate_logits``; ``self.gate`` is a :class:`ProductGate` over the stacked
    ``w_i * e_i``.

    Gate values of 0 do **not** switch an operator off: its factor becomes ``gate(0) = 0.5``, halving the
    branch. At initialisation ``v ≈ 0.5 · 0.5 · sigmoid(-0.5) ≈ 0.094`` (SE: ≈ 0.5).

    Args:
        channels: input channels ``C``.
        rd_ratio, rd_channels, rd_divisor: SE hidden width (timm defaults 1/16, divisor 8; the paper's
            width ``C/16`` needs ``rd_divisor=1``, which ``create_model`` applies via ``paper_kwargs``).
        act_layer: SE hidden activation (ReLU).
        gate_layer: squashing of each gated operator (sigmoid).
        operators: a tuple drawn from ``("se", "eca", "ie")``; the decision layer has one output each.
        gate_mode: ``"sigmoid"`` (official) or ``"softmax"`` (normalised decision weights; extension).
        eca_kernel_size: ECA kernel, or None for :func:`sem_eca_kernel_size`.
        eca_gamma, eca_beta: constants of that rule (2, 1).
        ie_init: initial ``(ie_weight, ie_bias)`` (0, -1).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, n_ops, C, 1, 1)``;
        :meth:`attention`: ``(N, C, 1, 1)``; :meth:`switch_weights`: ``(N, n_ops)``.

    Cost:
        ``2·C·h + h + C`` (SE) + ``n_ops·(C + 1)`` (decision) + ``k`` (ECA) + ``2C`` (IE) parameters per
        block. ResNet-164 (CIFAR-100, paper widths): 1,970,104 params.

    Raises:
        ValueError: empty, duplicated or unknown operators, unknown ``gate_mode``, bad kernel size, bad input.

    Reference:
        Switchable Self-attention Module, arXiv:2209.05680, https://github.com/Qrange-group/SEM

    Deviations:
        - Basic blocks get SEM after ``bn2`` (the official basic block has none) [inferred].
        - The module owns its init (``reset_parameters``); the backbone init loop never touches it.
        - ``operators`` subsets and ``gate_mode="softmax"`` are extensions (only the full set with
          sigmoids is official).
        - The ECA kernel rule keeps the official code's lack of a minimum of 3.
        - SE and decision maps are 1×1 convs / ``Linear`` on pooled vectors: same counts and init
          distribution as the official ``Linear`` layers. Parameter names follow the operator modules
          (``se.fc1``, ``eca.conv``, ``ie.gate_weight``); :func:`sem_state_dict_from_official` maps the
          official names.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        operators: tuple[str, ...] = _OPERATORS,
        gate_mode: str = "sigmoid",
        eca_kernel_size: int | None = None,
        eca_gamma: float = 2,
        eca_beta: float = 1,
        ie_init: tuple[float, float] = (0.0, -1.0),
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        operators = tuple(operators)
        if (
            not operators
            or len(set(operators)) != len(operators)
            or any(o not in _OPERATORS for o in operators)
        ):
            raise ValueError(
                f"SEM operators must be a non-empty tuple of distinct names from {_OPERATORS}, got {operators!r}"
            )
        if gate_mode not in _GATE_MODES:
            raise ValueError(f"SEM gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}")
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.operators = operators
        self.gate_mode = gate_mode
        self.decision = nn.Linear(channels, len(operators), **fk)
        gk = {"gate_layer": gate_layer, **fk}
        self.se = (
            SEModule(channels, rd_ratio, rd_channels, rd_divisor, act_layer, **gk)
            if "se" in operators
            else None
        )
        self.rd_channels = self.se.rd_channels if self.se is not None else 0
        self.eca = None
        if "eca" in operators:
            k = eca_kernel_size
            k = sem_eca_kernel_size(channels, eca_gamma, eca_beta) if k is None else k
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"SEM eca_kernel_size must be an odd int >= 1, got {k!r}")
            self.eca = ECAModule(channels, kernel_size=k, **gk)
        self.eca_k = self.eca.kernel_size if self.eca is not None else 0
        self.ie_init = (float(ie_init[0]), float(ie_init[1]))
        self.ie = IEGate(channels, *self.ie_init, **gk) if "ie" in operators else None
        self.gate = ProductGate(get_gate(gate_layer))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch default init for the decision, SE and ECA layers; ``ie_init`` for the IE affine."""
        self.decision.reset_parameters()
        if self.se is not None:
            self.se.fc1.reset_parameters()
            self.se.fc2.reset_parameters()
        if self.eca is not None:
            self.eca.conv.reset_parameters()
        if self.ie is not None:
            nn.init.constant_(self.ie.gate_weight, self.ie_init[0])
            nn.init.constant_(self.ie.gate_bias, self.ie_init[1])

    def _switch(self, s: torch.Tensor) -> torch.Tensor:
        d = self.decision(s.flatten(1))  # (N, n_ops)
        return torch.sigmoid(d) if self.gate_mode == "sigmoid" else torch.softmax(d, dim=1)

    def switch_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The decision weights ω: ``(N, C, H, W) -> (N, len(operators))`` (for analysis and plots)."""
        check_4d(x, self.channels, "SEMModule")
        return self._switch(x.mean((2, 3), keepdim=True))

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The switched operator logits ``w_i * e_i``: ``(N, C, H, W) -> (N, n_ops, C, 1, 1)``."""
        check_4d(x, self.channels, "SEMModule")
        n = x.shape[0]
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        w = self._switch(s)  # (N, n_ops)
        logits = []
        for j, op in enumerate(self.operators):
            e = getattr(self, op).gate_logits(
                s
            )  # (N, C, 1, 1): the operator's own logits of the pooled input
            logits.append(w[:, j].reshape(n, 1, 1, 1).to(e.dtype) * e)  # (N, C, 1, 1)
        return stack_logits(logits)  # (N, n_ops, C, 1, 1)

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return (
            f"{self.channels}, rd_channels={self.rd_channels}, eca_k={self.eca_k}, operators={self.operators}, "
            f"gate_mode={self.gate_mode!r}, gate={gate_name(self.gate)}"
        )


def sem_state_dict_from_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official SEM block state dict to :class:`SEMModule` names and shapes.

    ``switch_fc -> decision``, ``fc1/fc2 -> se.fc1/se.fc2`` (Linear weights gain 1×1 dims),
    ``conv -> eca.conv``, ``w1/b1 -> ie.gate_weight/ie.gate_bias`` (flattened from ``(1, C, 1, 1)``).

    Args:
        state_dict: the module's own official tensors (no block prefix).

    Returns:
        A new state dict with attnkit's names; unknown keys are copied.
    """
    out = {}
    for k, v in state_dict.items():
        head, _, tail = k.partition(".")
        if head == "switch_fc":
            out[f"decision.{tail}"] = v
        elif head in ("fc1", "fc2"):
            out[f"se.{k}"] = v
        elif head == "conv":
            out[f"eca.conv.{tail}"] = v
        elif k in ("w1", "b1"):
            out["ie.gate_weight" if k == "w1" else "ie.gate_bias"] = v.reshape(-1)
        else:
            out[k] = v
    return se_linear_to_conv(out)  # se.fc1/se.fc2 Linear weights -> (out, in, 1, 1)


register_attn(
    "sem",
    SEMModule,
    title="Switchable Self-attention Module",
    arxiv="2209.05680",
    code="https://github.com/Qrange-group/SEM",
    paper_kwargs={"rd_divisor": 1},
)
