"""``build_resnet``: assemble a :class:`~attnkit.models.ResNet` and attach attention by the module's ``kind``.

Kinds (from the attention registry): ``gate`` modules sit between a block's residual branch and the
merge, per block or shared per stage; ``recurrent`` units (DIA) are shared per stage with their state
threaded block to block; ``norm`` modules (IEBN) replace the BatchNorms of the residual branches;
``bn_wrapper`` modules (ASR) wrap each block's last BN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..attention import resolve_attn
from ._resnet import NormFactory, ResNet, ResStage, _Block
from ._scheme import format_scheme, parse_scheme

__all__ = ["build_resnet"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _has_norm(m: nn.Module) -> bool:
    return any(isinstance(x, _NORM_TYPES) for x in m.modules())


def _tie_non_norm(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Make every parameter of ``dst`` outside its norm layers the same object as ``src``'s; returns ``dst``."""
    for (_, ms), (_, md) in zip(src.named_modules(), dst.named_modules()):
        if isinstance(ms, _NORM_TYPES):
            continue
        for pname, p in ms._parameters.items():
            if p is not None:
                md._parameters[pname] = p
    return dst


def _stage_kwargs(attn_kwargs, n_stages: int) -> list[dict[str, Any]]:
    if attn_kwargs is None:
        return [{} for _ in range(n_stages)]
    if isinstance(attn_kwargs, dict):
        return [dict(attn_kwargs) for _ in range(n_stages)]
    if isinstance(attn_kwargs, (list, tuple)):
        if len(attn_kwargs) != n_stages:
            raise ValueError(
                f"attn_kwargs has {len(attn_kwargs)} per-stage dicts but the model has {n_stages} stages"
            )
        if not all(isinstance(d, dict) for d in attn_kwargs):
            raise ValueError("attn_kwargs must be a dict or a sequence of dicts (one per stage)")
        return [dict(d) for d in attn_kwargs]
    raise ValueError(f"attn_kwargs must be a dict or a sequence of dicts, got {type(attn_kwargs).__name__}")


def _resolve(attn, sharing: str | None, scheme) -> tuple[Any, str | None, str]:
    """``(registry entry or None, kind, resolved sharing)``, with the kind's restrictions checked."""
    if isinstance(attn, str) and attn.lower() in ("none", ""):
        attn = None
    entry = resolve_attn(attn) if attn is not None else None
    kind = entry.kind if entry is not None else None
    if kind == "norm" and (sharing == "stage" or scheme is not None):
        raise ValueError(
            f"attn={entry.name!r} is a norm layer (kind='norm'): it replaces the BatchNorms of the residual "
            "branches and cannot be shared per stage or masked with a scheme"
        )
    if sharing is None:
        sharing = "stage" if kind == "recurrent" else "block"
    if sharing not in ("block", "stage"):
        raise ValueError(
            f"sharing must be 'block' or 'stage' (or None for the module's default), got {sharing!r}"
        )
    return entry, kind, sharing


def _norms(entry, kind, sharing, masks, stage_kw, norm_layer, last_norm_layer):
    """Per-stage norm factories ``(base, [inner norm], [last norm of the residual branch])``."""
    n = len(masks)
    base: NormFactory = norm_layer or nn.BatchNorm2d
    inner, last = [base] * n, [last_norm_layer or base] * n
    if kind == "norm":
        inner = [functools.partial(entry.cls, **kw) for kw in stage_kw]
        last = [last_norm_layer or sn for sn in inner]
    elif kind == "bn_wrapper":
        if sharing == "stage" or not all(all(m) for m in masks):
            raise ValueError(
                f"attn={entry.name!r} wraps each block's last BN: stage sharing and connection "
                f"schemes are undefined for it (use sharing='block' and no scheme)"
            )
        last = [functools.partial(entry.cls, **kw) for kw in stage_kw]
    return base, inner, last


def _blocks(block, ch, n, planes, stride, norm, last, block_kwargs, entry, kind) -> list[_Block]:
    """The ``n`` blocks of one stage (the first one strided)."""
    blocks = []
    for bi in range(n):
        blk = block(
            ch, planes, stride if bi == 0 else 1, norm_layer=norm, last_norm_layer=last, **block_kwargs
        )
        if kind == "bn_wrapper" and isinstance(blk.last_norm, nn.Identity):
            raise ValueError(
                f"attn={entry.name!r} wraps the residual branch's last BN, but {block.__name__} has "
                f"none; build the pre-activation net with extra_bn=True"
            )
        ch = planes * block.expansion
        blk.last_channels = ch
        blocks.append(blk)
    return blocks


def _stage(blocks, entry, kind, sharing, share_norm, mask, kw) -> ResStage:
    """Wire one stage's attention: per block, shared whole, or shared with per-block norm layers."""
    gate_like = kind in ("gate", "recurrent")
    if not gate_like:
        return ResStage(blocks, None, False, (False,) * len(blocks))
    ch = blocks[-1].last_channels
    shared = None
    if sharing == "stage" and any(mask):
        shared = entry.cls(ch, **kw)
        if not share_norm and _has_norm(shared):  # per-block norms, everything else tied
            for blk, on in zip(blocks, mask):
                if on:
                    blk.attn = _tie_non_norm(shared, entry.cls(ch, **kw))
            shared = None
    elif sharing == "block":
        for blk, on in zip(blocks, mask):
            if on:
                blk.attn = entry.cls(ch, **kw)
    return ResStage(blocks, shared, kind == "recurrent", mask)


def build_resnet(
    *,
    block: type[_Block],
    layers: Sequence[int],
    planes: Sequence[int],
    strides: Sequence[int],
    stem: Callable[[int, NormFactory], tuple[nn.Module, int]],
    num_classes: int,
    in_chans: int = 3,
    attn=None,
    attn_kwargs=None,
    sharing: str | None = None,
    scheme=None,
    norm_layer: NormFactory | None = None,
    last_norm_layer: NormFactory | None = None,
    zero_init_residual: bool = False,
    share_norm: bool = False,
    final_norm: bool = False,
    block_kwargs: dict[str, Any] | None = None,
    model_name: str = "",
) -> ResNet:
    """Assemble a :class:`ResNet` and attach attention according to the entry's ``kind``.

    Args:
        block: the block class (:class:`BasicBlock`, :class:`Bottleneck`, :class:`PreActBottleneck`).
        layers: blocks per stage.
        planes: block width per stage (the output is ``planes * block.expansion``).
        strides: stride of each stage's first block.
        stem: ``stem(in_chans, norm_layer) -> (module, out_channels)``.
        num_classes: classifier outputs.
        in_chans: input channels.
        attn: a registry name, a class, or None/``"none"``.
        attn_kwargs: one dict or one per stage, merged over the entry's ``paper_kwargs``.
        sharing: ``"block"``, ``"stage"`` or None (``"stage"`` for recurrent modules, else ``"block"``).
        scheme: masks the blocks (see :func:`attnkit.models.parse_scheme`).
        norm_layer: the norm factory of the residual branches (default ``BatchNorm2d``).
        last_norm_layer: the norm factory of each branch's last norm (default ``norm_layer``).
        zero_init_residual: zero the weight of each branch's last norm.
        share_norm: only with ``sharing="stage"``: False (default) keeps the norm layers inside a
            stage-shared module per block (every block holds an instance whose other parameters are the
            very ``nn.Parameter`` objects of block 0's, as DIANet's code); True shares the whole module
            as ``stage.attn``. Modules without norm layers are always shared whole.
        final_norm: BN → ReLU after the last stage (pre-activation nets).
        block_kwargs: more keyword arguments of every block.
        model_name: recorded in ``model.attn_config``.

    Returns:
        The :class:`ResNet`.

    Raises:
        ValueError: bad ``sharing``, ``scheme``, ``attn_kwargs``, unknown ``attn`` or ``in_chans``.
    """
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    entry, kind, sharing = _resolve(attn, sharing, scheme)
    stage_kw = _stage_kwargs(attn_kwargs, len(layers))
    if entry is not None:
        stage_kw = [{**entry.paper_kwargs, **kw} for kw in stage_kw]
    masks = parse_scheme(scheme, layers)
    base_norm, inner, last = _norms(entry, kind, sharing, masks, stage_kw, norm_layer, last_norm_layer)

    stem_mod, ch = stem(in_chans, inner[0])
    stages = []
    for si, (n, p, st) in enumerate(zip(layers, planes, strides)):
        blocks = _blocks(block, ch, n, p, st, inner[si], last[si], dict(block_kwargs or {}), entry, kind)
        ch = blocks[-1].last_channels
        stages.append(_stage(blocks, entry, kind, sharing, share_norm, masks[si], stage_kw[si]))
    if zero_init_residual:
        for blk in (b for stage in stages for b in stage.blocks):
            w = getattr(blk.last_norm, "weight", None)
            if isinstance(w, nn.Parameter):
                nn.init.zeros_(w)
    # a norm-kind module (IEBN) also replaces the pre-pooling BN of pre-activation nets (IEBN's paper)
    final_norm_layer = inner[-1] if kind == "norm" else base_norm
    fnorm = nn.Sequential(final_norm_layer(ch), nn.ReLU(inplace=False)) if final_norm else nn.Identity()
    config = {
        "model": model_name,
        "attn": entry.name if entry is not None else None,
        "kind": kind,
        "sharing": sharing if entry is not None else None,
        "share_norm": bool(share_norm) if entry is not None and sharing == "stage" else None,
        "scheme": format_scheme(masks),
        "attn_kwargs": stage_kw if entry is not None else None,
    }
    return ResNet(stem_mod, stages, fnorm, num_classes, in_chans, config)
