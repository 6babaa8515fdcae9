"""LSAS: Lightweight Sub-Attention Strategy (a chain of per-channel sub-attentions on top of SE).

Reference:
    Zhong, Wen, Qin, Chen, Huang. "LSAS: Lightweight Sub-attention Strategy for Alleviating Attention
    Bias Problem". ICME 2023, arXiv:2305.05200. Official code: https://github.com/Qrange-group/LSAS
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ._gate import GateModule, ProductGate, stack_logits
from ._helpers import accepts, check_4d
from ._registry import list_attn, register_attn, resolve_attn
from .se import SEModule, se_linear_to_conv

__all__ = ["LSASModule", "LSAS_OFFICIAL_STAGES", "lsas_official_scheme", "lsas_state_dict_from_official"]

LSAS_OFFICIAL_STAGES: dict[str, tuple[int, ...]] = {"resnet_cifar": (2,), "resnet": (2, 3)}
"""0-based stage indices where the official models put SE+LSAS (other stages have no attention)."""


def lsas_official_scheme(blocks_per_stage: Sequence[int]) -> str:
    """The official LSAS placement as a ``scheme`` string for a backbone with these block counts.

    3 stages (CIFAR ResNets): the last stage only; 4 stages (ImageNet ResNets): stages 2 and 3.
    E.g. ``(18, 18, 18) -> "000000000000000000|000000000000000000|111111111111111111"`` and
    ``(3, 4, 6, 3) -> "000|0000|111111|111"``. Use as
    ``create_model(name, attn="lsas", scheme=lsas_official_scheme(model_or_counts))``.

    Args:
        blocks_per_stage: block counts, or any object with a ``blocks_per_stage`` attribute (a model).

    Returns:
        The scheme string, ``|`` between stages.

    Raises:
        ValueError: a backbone with neither 3 nor 4 stages.
    """
    bps = tuple(getattr(blocks_per_stage, "blocks_per_stage", blocks_per_stage))
    family = {3: "resnet_cifar", 4: "resnet"}.get(len(bps))
    if family is None:
        raise ValueError(
            f"the official LSAS placement is defined for 3-stage (CIFAR) or 4-stage (ImageNet) ResNets, got {bps}"
        )
    on = LSAS_OFFICIAL_STAGES[family]
    return "|".join(("1" if si in on else "0") * n for si, n in enumerate(bps))


def _is_channel_gate(cls) -> bool:
    """Whether ``cls`` has channel logits ``(N, C, 1, 1)`` under an elementwise gate (a valid LSAS base)."""
    return (
        callable(getattr(cls, "gate_logits", None)) and getattr(cls, "logits_shape", "channel") == "channel"
    )


class LSASModule(GateModule):
    """LSAS: a base attention's pre-gate logits ``z`` refined by ``order`` per-channel affine sub-attentions.

    ::

        z   = base.gate_logits(u)                     # (N, C, 1, 1); SE: fc2(ReLU(fc1(mean_hw(u))))
        s_0 = z;  s_k = w_k * s_{k-1} + b_k           # k = 1..order; w_k init 0.5, b_k init -0.5
        v   = gate(z) * prod_k gate(s_k);  y = u * v

    :meth:`gate_logits` returns ``[z, s_1, ..., s_order]`` stacked on dim 1 and ``self.gate`` is a
    :class:`ProductGate` over the base's non-linearity.

    ``order=0`` is exactly the base (SE). At initialisation with z = 0 the gate is 0.188770 (order 1),
    0.060562 (order 2).

    **Placement.** The official models put SE+LSAS only in the deep stages (CIFAR ResNet-164: the last
    stage; ImageNet ResNet-50: stages 2 and 3) and *no attention* elsewhere, while their SE baseline has
    SE everywhere. attnkit never applies that behind the user's back: pass
    ``scheme=lsas_official_scheme(blocks_per_stage)`` (e.g. 1,888,852 params on ResNet-164/CIFAR-100),
    or no scheme for every block (1,945,516).

    Args:
        channels: input channels ``C``.
        order: number of sub-attentions ``n >= 0`` (official default 1).
        base: the base attention: ``"se"`` (official) or any gate whose ``gate_logits`` are channel
            logits ``(N, C, 1, 1)`` (``eca``, ``ie``, ``ras``, ``srm``, ...).
        base_kwargs: extra constructor keywords for the base (merged over the keywords below).
        rd_ratio, rd_channels, rd_divisor: SE's width (used when ``base="se"``; ``create_model``
            applies the paper's ``rd_divisor=1``).
        act_layer: the base's hidden activation (ReLU; timm's CSP networks pass theirs).
        gate_layer: squashing non-linearity (sigmoid), the base's gate and used for every factor.
        sub_init: initial ``(w_k, b_k)`` (0.5, -0.5).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate_logits`: ``(N, 1 + order, C, 1, 1)``;
        :meth:`attention`: ``(N, C, 1, 1)``.

    Cost:
        ``SE(C) + 2·order·C`` parameters per block, ``SE(C) = 2·C·h + h + C``; elementwise extra MACs only.

    Raises:
        ValueError: ``order < 0``; a base without pre-gate logits (lists those that have them).

    Reference:
        LSAS, arXiv:2305.05200, https://github.com/Qrange-group/LSAS

    Deviations:
        - An explicit ``order`` instead of substrings of the free-text ``--info`` flag.
        - Placement is explicit (``scheme``); the official deep-stage placement is not a default.
        - Non-SE bases are an extension [inferred]; :meth:`sub_attentions` is analysis only (the
          README figure's selection gate is static in the code).
        - Basic blocks get LSAS after ``bn2``.
    """

    logits_shape = "factors"

    def __init__(
        self,
        channels: int,
        order: int = 1,
        base: str | type[nn.Module] = "se",
        base_kwargs: dict | None = None,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer=nn.ReLU,
        gate_layer="sigmoid",
        sub_init: tuple[float, float] = (0.5, -0.5),
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"LSAS order must be an int >= 0, got {order!r}")
        entry = resolve_attn(base)
        if not _is_channel_gate(entry.cls):
            ok = [n for n in list_attn() if _is_channel_gate(resolve_attn(n).cls)]
            raise ValueError(
                f"LSAS base {base!r} exposes no channel pre-gate logits (gate_logits -> (N, C, 1, 1)); "
                f"valid bases: {ok}"
            )
        fk = {"device": device, "dtype": dtype}
        kw: dict = {
            k: v for k, v in (("act_layer", act_layer), ("gate_layer", gate_layer)) if accepts(entry.cls, k)
        }
        if isinstance(entry.cls, type) and issubclass(entry.cls, SEModule):
            kw.update(rd_ratio=rd_ratio, rd_channels=rd_channels, rd_divisor=rd_divisor)
        kw.update(base_kwargs or {})
        self.channels = channels
        self.order = order
        self.sub_init = (float(sub_init[0]), float(sub_init[1]))
        self.base = entry.cls(channels, **kw, **fk)
        self.base_name = entry.name
        self.gate = ProductGate(copy.deepcopy(self.base.gate))
        if order > 0:
            self.sub_weight = nn.Parameter(torch.full((order, channels), self.sub_init[0], **fk))
            self.sub_bias = nn.Parameter(torch.full((order, channels), self.sub_init[1], **fk))
        else:
            self.register_parameter("sub_weight", None)
            self.register_parameter("sub_bias", None)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The base logits and the sub-attention chain: ``(N, C, H, W) -> (N, 1 + order, C, 1, 1)``."""
        check_4d(x, self.channels, "LSASModule")
        c = self.channels
        z = self.base.gate_logits(x)  # (N, C, 1, 1) the base's own logits
        logits = [z]
        for k in range(self.order):
            z = self.sub_weight[k].view(1, c, 1, 1) * z + self.sub_bias[k].view(1, c, 1, 1)  # (N, C, 1, 1)
            logits.append(z)
        return stack_logits(logits)  # (N, 1 + order, C, 1, 1)

    def sub_attentions(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The cumulative attentions ``[v'_0, ..., v'_order]``, each ``(N, C, 1, 1)`` (for analysis).

        ``v'_0`` is the base gate and ``v'_order`` equals :meth:`attention`.

        Args:
            x: the input ``(N, C, H, W)``.

        Returns:
            ``order + 1`` tensors.
        """
        outs = []
        for f in self.gate.factors(self.gate_logits(x)):
            outs.append(f if not outs else outs[-1] * f)
        return outs

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        rd = getattr(self.base, "rd_channels", None)
        return f"{self.channels}, order={self.order}, base={self.base_name}" + (
            f"(rd={rd})" if rd is not None else ""
        )


def lsas_state_dict_from_official(
    state_dict: dict[str, torch.Tensor], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Map one official LSAS block's attention tensors to :class:`LSASModule` names.

    CIFAR names: ``fc1``/``fc2`` (Linear) -> ``base.fc1``/``base.fc2`` (1×1 conv), ``w, w2, ..., w5`` and
    ``b, b2, ..., b5`` -> rows of ``sub_weight``/``sub_bias``. ImageNet names: ``se.fc.0``/``se.fc.2``,
    ``se.w``/``se.b``. ``prefix`` is stripped from the keys first.

    Args:
        state_dict: the official tensors.
        prefix: the block prefix to strip (e.g. ``"layer3.0.se."``).

    Returns:
        A new state dict for one :class:`LSASModule`.
    """
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    sd = se_linear_to_conv({(k[3:] if k.startswith("se.") else k): v for k, v in sd.items()})
    out: dict[str, torch.Tensor] = {}
    subs_w: dict[int, torch.Tensor] = {}
    subs_b: dict[int, torch.Tensor] = {}
    for k, v in sd.items():
        head, _, tail = k.partition(".")
        if head in ("fc1", "fc2"):
            out[f"base.{k}"] = v
        elif head[:1] in ("w", "b") and (head[1:] == "" or head[1:].isdigit()) and not tail:
            idx = int(head[1:] or 1) - 1
            (subs_w if head[0] == "w" else subs_b)[idx] = v.reshape(-1)
    if subs_w:
        out["sub_weight"] = torch.stack([subs_w[i] for i in sorted(subs_w)])
        out["sub_bias"] = torch.stack([subs_b[i] for i in sorted(subs_b)])
    return out


register_attn(
    "lsas",
    LSASModule,
    title="LSAS: Lightweight Sub-attention Strategy for Alleviating Attention Bias Problem",
    arxiv="2305.05200",
    code="https://github.com/Qrange-group/LSAS",
    paper_kwargs={"rd_divisor": 1},
)
