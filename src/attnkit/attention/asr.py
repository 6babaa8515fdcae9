"""ASR: attention-alike structural re-parameterization (the Stripe Observation).

A channel-attention module ``T`` is trained on a **learned constant input** ψ instead of the feature
map, so its gate ``v = T.gate(T.gate_logits(ψ))`` is an input-independent per-channel constant. ``v``
multiplies the output of the residual branch's last BatchNorm and, after training, folds exactly into that BN
(``γ' = v·γ``, ``β' = v·β``): the deployed network *is* the plain backbone.

Reference:
    Huang, Zhong, Wen, Qin, Lin. "Stripe Observation Guided Inference Cost-free Attention Mechanism"
    (ECCV 2024; v1 "ASR: Attention-alike Structural Re-parameterization"). arXiv:2304.06345.
    Official code: https://github.com/zhongshsh/ASR

ASR calls its module ``T`` only through the gate protocol of :mod:`attnkit.attention._gate`
(``T.gate(T.gate_logits(ψ))``): the gate math of SE, ECA, CBAM, RAS, IE, ... lives in their own files.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._asr_parts import AffineChannel, BatchNormThenGate, ChannelScale, replace_batchnorm
from ._gate import channel_gate, has_gate, module_gate
from ._helpers import accepts
from ._registry import get_attn, register_attn, resolve_attn

__all__ = [
    "ASRBatchNorm2d",
    "ASRGate",
    "ChannelScale",
    "AffineChannel",
    "BatchNormThenGate",
    "asr_norm_layer",
    "asr_support",
    "module_gate",
    "channel_gate",
    "has_gate",
]


def asr_support(attn_layer: str | type) -> str:
    """How a module behaves on ASR's constant input ψ.

    Read from the class attribute ``asr_support`` (:class:`~attnkit.attention.GateModule` defaults to
    ``"ok"``); modules that are not registered gates are ``"unsupported"``; other classes are tried
    (``"auto"``): they must expose a gate and give a finite ``(1, C, 1, 1)`` gate on ψ at construction.

    Args:
        attn_layer: a registry name or a module class.

    Returns:
        ``"ok"``, ``"channel_only"`` (CBAM: its channel part only), ``"needs_spatial_psi"`` (SRM:
        ``psi_size >= 2``), ``"unsupported"`` (SGE, DIA, IEBN, ASR) or ``"auto"``.

    Raises:
        ValueError: an unknown name.
    """
    entry = resolve_attn(attn_layer)
    if entry.kind != "gate":
        return "unsupported"
    return getattr(entry.cls, "asr_support", "auto")


def _build_attention(
    attn_layer: str | type, channels: int, attn_kwargs: dict[str, Any], psi_size: int, device, dtype
) -> tuple[nn.Module, str]:
    """Build ASR's module ``T`` and check that it works on a constant input (see :func:`asr_support`)."""
    entry = resolve_attn(attn_layer)
    support = asr_support(attn_layer)
    if support == "unsupported":
        raise ValueError(
            f"ASR cannot use attention module {entry.name!r} (kind {entry.kind!r}): its gate is spatial, it is "
            f"stateful or it is not a channel gate. Use a channel gate such as 'se' or 'eca'."
        )
    if support == "needs_spatial_psi" and psi_size < 2:
        raise ValueError(
            f"ASR with {entry.name!r} needs a spatial ψ: its gate uses spatial statistics (e.g. a std over "
            f"H×W) that are degenerate on a 1×1 input. Pass psi_size=2 or more (recommended psi_size=4)."
        )
    kw = dict(attn_kwargs)
    if accepts(entry.cls, "norm_layer") and "norm_layer" not in kw:
        kw["norm_layer"] = AffineChannel
    fk = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    t = entry.cls(channels, **kw, **fk)
    if support == "channel_only":
        warnings.warn(
            f"ASR({entry.name}): only the channel gate is used on the constant input ψ; the spatial part "
            f"is dropped (a spatial gate cannot be input-independent).",
            UserWarning,
            stacklevel=3,
        )
        t = t.channel  # the composite's channel part: no spatial parameters left in the optimizer
    replace_batchnorm(t)
    if not has_gate(t):
        raise ValueError(
            f"ASR({entry.name}): {type(t).__name__} exposes no gate (gate_logits and a gate non-linearity); "
            f"see attnkit.attention.module_gate"
        )
    return t, entry.name


# --------------------------------------------------------------------------------------------------
# ASR modules
# --------------------------------------------------------------------------------------------------


def _with_act(attn_kwargs: dict[str, Any] | None, act_layer) -> dict[str, Any]:
    """``attn_kwargs`` plus ``act_layer`` for ``T`` when one is given (timm's CSP networks pass it)."""
    kw = dict(attn_kwargs or {})
    if act_layer is not None:
        kw.setdefault("act_layer", act_layer)
    return kw


class _ASRBase(nn.Module):
    """ψ and T shared by :class:`ASRBatchNorm2d` and :class:`ASRGate` (arguments as :class:`ASRGate`)."""

    def __init__(
        self,
        channels: int,
        attn_layer: str | type = "se",
        attn_kwargs: dict[str, Any] | None = None,
        psi_init: float = 0.1,
        psi_size: int = 1,
        psi_init_std: float = 0.0,
        act_layer=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.channels = channels
        attn_kwargs = _with_act(attn_kwargs, act_layer)
        if not isinstance(psi_size, int) or psi_size < 1:
            raise ValueError(f"psi_size must be a positive int, got {psi_size!r}")
        if psi_init_std < 0:
            raise ValueError(f"psi_init_std must be >= 0, got {psi_init_std}")
        self.attn, self.attn_name = _build_attention(
            attn_layer, channels, attn_kwargs, psi_size, device, dtype
        )
        self.psi_size = psi_size
        psi = torch.full((1, channels, psi_size, psi_size), float(psi_init), device=device, dtype=dtype)
        if psi_init_std > 0:
            psi = psi + psi_init_std * torch.randn_like(psi)
        self.psi = nn.Parameter(psi)  # (1, C, k, k), learned, shared by all samples
        with torch.no_grad():
            v = self.attention_vector()
        if tuple(v.shape) != (1, channels, 1, 1) or not torch.isfinite(v).all():
            raise ValueError(
                f"ASR({self.attn_name}): the gate on ψ must be a finite (1, {channels}, 1, 1) tensor, got shape "
                f"{tuple(v.shape)}; this module does not work on a constant input"
            )

    def attention_vector(self) -> torch.Tensor:
        """``v = T.gate(T.gate_logits(ψ))``, shape ``(1, C, 1, 1)``; T runs once on a batch of one."""
        return module_gate(self.attn, self.psi)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The constant gate broadcast over the batch, ``(N, C, 1, 1)`` (for the stripe tools)."""
        return self.attention_vector().expand(x.shape[0], -1, -1, -1)

    def _frozen_vector(self) -> torch.Tensor:
        """``v`` computed without autograd or autocast and with ``T`` in eval mode (mode restored)."""
        was = self.attn.training
        self.attn.eval()
        try:
            with torch.no_grad(), torch.autocast(self.psi.device.type, enabled=False):
                return self.attention_vector().to(self.psi.dtype)
        finally:
            self.attn.train(was)

    def _hidden(self) -> str:
        rd = getattr(self.attn, "rd_channels", None)
        return f", rd_channels={rd}" if rd is not None else ""


class ASRBatchNorm2d(_ASRBase):
    """BatchNorm2d whose output is scaled by a learned constant attention vector (ASR).

    A **norm layer, not a gate**: it replaces the residual branch's last BN (registry kind
    ``"bn_wrapper"``, built by the backbones through ``last_norm_layer``). It computes
    ``y = BN(z) ⊙ v`` with ``v = T.gate(ψ)``, and with ``use_both`` additionally applies an ordinary
    input-dependent gate to that output, ``y' = y ⊙ G(y)`` (the paper's "use both" variant). In a timm
    model's ``attn_layer`` slot it runs but is not the method: it adds a BN times a constant gate after
    the block's last BN instead of wrapping it (and would not fold into it).

    Args:
        num_features: channels ``C``.
        attn_layer: the attention module ``T`` (registry name or class), default ``"se"``.
        attn_kwargs: ``T``'s constructor arguments (``create_attn`` semantics: T's own ``paper_kwargs``
            are not applied; the ``"asr"`` registry entry supplies SE's paper widths itself).
        psi_init: the constant ψ is initialised to (0.1, as the official code).
        psi_size: spatial size ``k`` of ψ ``(1, C, k, k)``; ``k >= 2`` for modules with spatial statistics.
        psi_init_std: optional N(0, std²) noise added to ψ at init (default 0).
        eps, momentum: the BN's.
        use_both: name of an ordinary gate applied after the ASR-BN (e.g. ``"se"``), or None.
        use_both_kwargs: its kwargs; default: that module's registry ``paper_kwargs``.
        act_layer: ``T``'s hidden activation when given (timm's ``attn_layer`` contract); None keeps T's.
        device, dtype: factory kwargs.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Raises:
        ValueError: ``T`` is unsupported on a constant input (spatial/stateful/not a gate, e.g. ``sge``),
            needs ``psi_size >= 2`` (``srm``), or contains a BN it cannot replace.

    Reference:
        Stripe Observation Guided Inference Cost-free Attention Mechanism, arXiv:2304.06345,
        https://github.com/zhongshsh/ASR (``models/asr.py``).

    Deviations:
        - No second ("fused") BN is held during training: the official wrapper registers it as parameters
          (its count 1,953,580 vs 1,937,452 here). Deployment is an explicit :meth:`fuse` /
          :func:`attnkit.reparameterize_model` returning a copy, not a mode flag; running statistics are
          copied, not aliased.
        - BN layers inside ``T`` (e.g. RAS's) become :class:`AffineChannel` with γ, β copied (a batch of
          one cannot be normalised); modules accepting ``norm_layer`` get it directly.
        - ASR support is checked per module (:func:`asr_support`); CBAM uses its channel gate only.
        - Basic blocks are supported (ASR wraps ``bn2``); the official code attaches only to bottlenecks.
    """

    def __init__(
        self,
        num_features: int,
        attn_layer: str | type = "se",
        attn_kwargs: dict[str, Any] | None = None,
        psi_init: float = 0.1,
        psi_size: int = 1,
        psi_init_std: float = 0.0,
        eps: float = 1e-5,
        momentum: float = 0.1,
        use_both: str | type | None = None,
        use_both_kwargs: dict[str, Any] | None = None,
        act_layer=None,
        device=None,
        dtype=None,
    ):
        super().__init__(
            num_features, attn_layer, attn_kwargs, psi_init, psi_size, psi_init_std, act_layer, device, dtype
        )
        self.num_features = num_features
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, device=device, dtype=dtype)
        self.post: nn.Module | None = None
        if use_both is not None:
            entry = resolve_attn(use_both)
            if entry.kind != "gate":
                raise ValueError(
                    f"use_both must name a gate module, got {entry.name!r} (kind {entry.kind!r})"
                )
            kw = dict(entry.paper_kwargs if use_both_kwargs is None else use_both_kwargs)
            self.post = entry.cls(num_features, **kw, device=device, dtype=dtype)

    # the BN's affine parameters, so that e.g. ``zero_init_residual`` can reach them
    @property
    def weight(self) -> nn.Parameter:
        """The BN's γ."""
        return self.bn.weight

    @property
    def bias(self) -> nn.Parameter:
        """The BN's β."""
        return self.bn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``BN(x) ⊙ v`` (then the ``use_both`` gate): ``(N, C, H, W) -> (N, C, H, W)``."""
        y = self.bn(x) * self.attention_vector()  # (N, C, H, W) * (1, C, 1, 1)
        return y if self.post is None else self.post(y)

    def fuse(self) -> nn.Module:
        """Deploy form, rule (a): ``nn.BatchNorm2d`` with ``γ' = v·γ``, ``β' = v·β``, statistics copied.

        Returns:
            ``nn.BatchNorm2d`` (exact in train and eval mode), or :class:`BatchNormThenGate` (BN, then a
            copy of the ``use_both`` gate). New tensors: nothing is shared with this module.
        """
        v = self._frozen_vector().reshape(-1)  # (C,)
        src = self.bn
        bn = nn.BatchNorm2d(
            self.num_features,
            eps=src.eps,
            momentum=src.momentum,
            device=src.weight.device,
            dtype=src.weight.dtype,
        )
        with torch.no_grad():
            bn.weight.copy_(v * src.weight)
            bn.bias.copy_(v * src.bias)
            bn.running_mean.copy_(src.running_mean)
            bn.running_var.copy_(src.running_var)
            bn.num_batches_tracked.copy_(src.num_batches_tracked)
        bn.weight.requires_grad_(src.weight.requires_grad)
        bn.bias.requires_grad_(src.bias.requires_grad)
        bn.train(self.training)
        if self.post is None:
            return bn
        return BatchNormThenGate(bn, copy.deepcopy(self.post))

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        both = f", use_both={type(self.post).__name__}" if self.post is not None else ""
        return f"num_features={self.num_features}, attn_layer={self.attn_name}, psi_size={self.psi_size}{self._hidden()}{both}"


class ASRGate(_ASRBase):
    """ASR without a BN: ``y = x ⊙ T.gate(ψ)``, for timm's ``attn_layer`` slot and custom models.

    Args:
        channels: ``C``.
        attn_layer, attn_kwargs, psi_init, psi_size, psi_init_std, act_layer, device, dtype: as
            :class:`ASRBatchNorm2d`.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Raises:
        ValueError: as :class:`ASRBatchNorm2d`.

    Reference:
        arXiv:2304.06345, https://github.com/zhongshsh/ASR

    Deviations:
        Not in the official code (which always wraps a BN). :meth:`fuse` gives a :class:`ChannelScale`,
        which :func:`attnkit.reparameterize_model` folds into a directly preceding BN or conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x ⊙ v``: ``(N, C, H, W) -> (N, C, H, W)``."""
        return x * self.attention_vector()  # (N, C, H, W)

    def fuse(self) -> ChannelScale:
        """Deploy form: :class:`ChannelScale` holding ``v`` (exact)."""
        return ChannelScale(self._frozen_vector())

    def extra_repr(self) -> str:
        """The resolved settings shown in ``repr``."""
        return (
            f"channels={self.channels}, attn_layer={self.attn_name}, psi_size={self.psi_size}{self._hidden()}"
        )


def asr_norm_layer(attn_layer: str | type = "se", **kwargs: Any) -> Callable[[int], ASRBatchNorm2d]:
    """A ``last_norm_layer`` constructor for ASR with ``T = attn_layer`` and T's paper widths.

    ``create_model("resnet164", attn="se", last_norm_layer=asr_norm_layer("se"))`` is the paper's
    "use both" network (ASR(SE) on ``bn3`` plus an ordinary SE after it).

    Args:
        attn_layer: T's registry name or class.
        **kwargs: :class:`ASRBatchNorm2d` arguments; ``attn_kwargs`` is merged over T's ``paper_kwargs``.

    Returns:
        ``functools.partial(ASRBatchNorm2d, ...)`` taking ``num_features``.
    """
    paper = dict(resolve_attn(attn_layer).paper_kwargs)
    kwargs["attn_kwargs"] = {**paper, **dict(kwargs.get("attn_kwargs") or {})}
    return functools.partial(ASRBatchNorm2d, attn_layer=attn_layer, **kwargs)


_TITLE = "Stripe Observation Guided Inference Cost-free Attention Mechanism"
_CODE = "https://github.com/zhongshsh/ASR"
register_attn(
    "asr",
    ASRBatchNorm2d,
    kind="bn_wrapper",
    title=_TITLE,
    arxiv="2304.06345",
    code=_CODE,
    paper_kwargs={"attn_layer": "se", "attn_kwargs": dict(get_attn("se").paper_kwargs)},
)
register_attn(
    "asr_se",
    ASRBatchNorm2d,
    kind="bn_wrapper",
    title=_TITLE + " (use-both: ASR(SE) + SE)",
    arxiv="2304.06345",
    code=_CODE,
    paper_kwargs={"attn_layer": "se", "attn_kwargs": dict(get_attn("se").paper_kwargs), "use_both": "se"},
    aliases=("asr+se",),
)
