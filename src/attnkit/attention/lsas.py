"""LSAS: Lightweight Sub-Attention Strategy (a chain of per-channel sub-attentions on top of SE).

Reference:
    Zhong, Wen, Qin, Chen, Huang. "LSAS: Lightweight Sub-attention Strategy for Alleviating Attention
    Bias Problem". ICME 2023, arXiv:2305.05200. Official code: https://github.com/Qrange-group/LSAS
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._helpers import check_4d
from ._registry import list_attn, register_attn, resolve_attn
from .se import SEModule

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


def _gate_logits(base: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-gate logits ``(N, C, 1, 1)`` of a base module (its ``gate_logits``, or SE's fc2 output)."""
    fn = getattr(base, "gate_logits", None)
    if callable(fn):
        return fn(x)
    s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
    return base.fc2(base.act(base.fc1(s)))  # (N, C, 1, 1) SE logits before the sigmoid


def _supports_logits(cls) -> bool:
    return callable(getattr(cls, "gate_logits", None)) or (
        isinstance(cls, type) and issubclass(cls, SEModule)
    )


class LSASModule(nn.Module):
    """LSAS: a base attention's pre-gate logits ``z`` refined by ``order`` per-channel affine sub-attentions.

    ::

        z   = base.gate_logits(u)                     # (N, C, 1, 1); SE: fc2(ReLU(fc1(mean_hw(u))))
        s_0 = z;  s_k = w_k * s_{k-1} + b_k           # k = 1..order; w_k init 0.5, b_k init -0.5
        v   = gate(z) * prod_k gate(s_k);  y = u * v

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
        base: the base attention: ``"se"`` (official) or any registered gate with ``gate_logits``.
        base_kwargs: extra constructor keywords for the base (merged over the SE keywords below).
        rd_ratio, rd_channels, rd_divisor, act_layer: SE's width and activation (used when ``base="se"``;
            ``create_model`` applies the paper's ``rd_divisor=1``).
        gate_layer: squashing non-linearity (sigmoid), used for every factor.
        sub_init: initial ``(w_k, b_k)`` (0.5, -0.5).
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``; :meth:`gate`: ``(N, C, 1, 1)``.

    Cost:
        ``SE(C) + 2·order·C`` parameters per block, ``SE(C) = 2·C·h + h + C``; elementwise extra MACs only.

    Raises:
        ValueError: ``order < 0``; a base without pre-gate logits (lists those that have them).

    Reference:
        LSAS, arXiv:2305.05200, https://github.com/Qrange-group/LSAS

    Deviations:
        - An explicit ``order`` instead of substrings of the free-text ``--info`` flag.
        - Placement is explicit (``scheme``); the official deep-stage placement is not a default.
        - Non-SE bases are an extension [inferred]; ``gate(x, return_all=True)`` is analysis only (the
          README figure's selection gate is static in the code).
        - Basic blocks get LSAS after ``bn2``.
    """

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
        if not _supports_logits(entry.cls):
            ok = [n for n in list_attn() if _supports_logits(resolve_attn(n).cls)]
            raise ValueError(
                f"LSAS base {base!r} exposes no pre-gate logits (gate_logits); valid bases: {ok}"
            )
        fk = {"device": device, "dtype": dtype}
        kw: dict = {}
        if isinstance(entry.cls, type) and issubclass(entry.cls, SEModule):
            kw = {
                "rd_ratio": rd_ratio,
                "rd_channels": rd_channels,
                "rd_divisor": rd_divisor,
                "act_layer": act_layer,
                "gate_layer": gate_layer,
            }
        kw.update(base_kwargs or {})
        self.channels = channels
        self.order = order
        self.sub_init = (float(sub_init[0]), float(sub_init[1]))
        self.base = entry.cls(channels, **kw, **fk)
        self.base_name = entry.name
        self.act = self.base.gate if isinstance(getattr(self.base, "gate", None), nn.Module) else nn.Sigmoid()
        if order > 0:
            self.sub_weight = nn.Parameter(torch.full((order, channels), self.sub_init[0], **fk))
            self.sub_bias = nn.Parameter(torch.full((order, channels), self.sub_init[1], **fk))
        else:
            self.register_parameter("sub_weight", None)
            self.register_parameter("sub_bias", None)

    def gate(self, x: torch.Tensor, return_all: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """The attention ``v'_order`` ``(N, C, 1, 1)``; with ``return_all`` the list ``[v'_0, ..., v'_order]``."""
        check_4d(x, self.channels, "LSASModule")
        c = self.channels
        z = _gate_logits(self.base, x)  # (N, C, 1, 1)
        v = self.act(z)  # (N, C, 1, 1) v'_0 = the base gate
        outs = [v]
        s = z
        for k in range(self.order):
            s = self.sub_weight[k].view(1, c, 1, 1) * s + self.sub_bias[k].view(1, c, 1, 1)  # (N, C, 1, 1)
            v = v * self.act(s)
            outs.append(v)
        return outs if return_all else v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)  # (N, C, H, W)

    def extra_repr(self) -> str:
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
    """
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    out: dict[str, torch.Tensor] = {}
    subs_w: dict[int, torch.Tensor] = {}
    subs_b: dict[int, torch.Tensor] = {}
    for k, v in sd.items():
        k2 = k[3:] if k.startswith("se.") else k
        k2 = k2.replace("fc.0", "fc1").replace("fc.2", "fc2")
        head, _, tail = k2.partition(".")
        if head in ("fc1", "fc2"):
            out[f"base.{head}.{tail}"] = v.reshape(*v.shape, 1, 1) if tail == "weight" and v.dim() == 2 else v
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
