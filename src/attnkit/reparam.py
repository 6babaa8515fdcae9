"""Deploy-time fusion: ``reparameterize_model`` (ASR → BN, constant scales → BN/conv) and ``fold_batchnorm``.

Two steps, both exact in eval mode:

1. :func:`reparameterize_model` walks the model like timm's ``timm.utils.reparameterize_model``: every
   child with ``fuse()`` is replaced by its result (``ASRBatchNorm2d`` → ``nn.BatchNorm2d``,
   ``ASRGate`` → ``ChannelScale``), every child with ``reparameterize()`` / ``switch_to_deploy()`` is
   switched in place (timm's RepVGG/MobileOne blocks). A ``ChannelScale`` that directly follows a BN or a
   conv is then folded into it. For attnkit ResNets the result has exactly the plain backbone's modules,
   so its ``state_dict`` loads into ``create_model(<same name>)`` (or ``attn=<gate>`` for the use-both
   variant) with ``strict=True``.
2. :func:`fold_batchnorm` (or ``reparameterize_model(..., fold_bn=True)``) folds every BatchNorm into the
   convolution (or Linear) that feeds it, with PyTorch's ``fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``.
   It works on any ``torch.fx``-traceable model or submodule (torchvision models included): the pairs are
   found on the traced graph, so a BN that is not fed by a conv (pre-activation nets) is never touched.
   The result keeps the module tree (conv with bias, ``nn.Identity`` in place of the BN).

Reference:
    Stripe Observation Guided Inference Cost-free Attention Mechanism, arXiv:2304.06345,
    https://github.com/zhongshsh/ASR; timm ``timm/utils/model.py`` (``reparameterize_model``).
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .attention.asr import BatchNormThenGate, ChannelScale

__all__ = ["reparameterize_model", "fold_batchnorm", "is_reparameterizable", "find_fusable_pairs"]

_BN = nn.modules.batchnorm._BatchNorm
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _has_method(m: nn.Module, name: str) -> bool:
    return callable(getattr(type(m), name, None))


def is_reparameterizable(model: nn.Module) -> bool:
    """True if some submodule has ``fuse()``, ``reparameterize()`` or ``switch_to_deploy()``."""
    return any(
        m is not model and any(_has_method(m, a) for a in ("fuse", "reparameterize", "switch_to_deploy"))
        for m in model.modules()
    )


def _fuse_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if _has_method(child, "fuse"):
            child = child.fuse()
            setattr(module, name, child)
        elif _has_method(child, "reparameterize"):
            child.reparameterize()
        elif _has_method(child, "switch_to_deploy"):
            child.switch_to_deploy()
        _fuse_children(child)


def _relocate_post_gates(model: nn.Module) -> None:
    """Attnkit ResNets: move the use-both gate of a fused ASR-BN into the block's attention slot."""
    stages = getattr(model, "stages", None)
    if stages is None:
        return
    moved = None
    for stage in stages:
        if not hasattr(stage, "connect") or not hasattr(stage, "blocks"):
            return
        connect = list(stage.connect)
        for i, blk in enumerate(stage.blocks):
            for name, child in list(blk.named_children()):
                if (
                    isinstance(child, BatchNormThenGate)
                    and getattr(blk, "attn", None) is None
                    and stage.attn is None
                ):
                    setattr(blk, name, child[0])
                    blk.attn = child[1]
                    connect[i] = True
                    moved = type(child[1])
        stage.connect = tuple(connect)
    cfg = getattr(model, "attn_config", None)
    if moved is not None and isinstance(cfg, dict):
        model.attn_config = {**cfg, "kind": "gate", "sharing": "block"}


class _Tracer(fx.Tracer):
    """Default torch.fx tracer that also keeps :class:`ChannelScale` as a leaf."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ChannelScale) or super().is_leaf_module(m, qualname)


def _trace_pairs(root: nn.Module, prefix: str, out: list[tuple[str, str, str]]) -> None:
    try:
        graph = _Tracer().trace(root)
    except Exception:  # untraceable (data-dependent Python control flow): recurse into the children
        for name, child in root.named_children():
            _trace_pairs(child, f"{prefix}{name}.", out)
        return
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or not node.args:
            continue
        src = node.args[0]
        if (
            not isinstance(src, fx.Node)
            or src.op != "call_module"
            or calls[src.target] != 1
            or len(src.users) != 1
        ):
            continue
        tgt, prev = root.get_submodule(node.target), root.get_submodule(src.target)
        if isinstance(tgt, _BN) and tgt.track_running_stats and tgt.running_mean is not None:
            if isinstance(prev, _CONV) or (isinstance(prev, nn.Linear) and isinstance(tgt, nn.BatchNorm1d)):
                out.append(("conv_bn", prefix + src.target, prefix + node.target))
        elif isinstance(tgt, ChannelScale):
            if isinstance(prev, _BN) and prev.affine:
                out.append(("bn_scale", prefix + src.target, prefix + node.target))
            elif isinstance(prev, (*_CONV, nn.Linear)):
                out.append(("conv_scale", prefix + src.target, prefix + node.target))


def find_fusable_pairs(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(kind, producer, consumer)`` module paths that can be fused, found on ``torch.fx`` graphs.

    ``kind`` is ``"conv_bn"`` (conv/Linear → BN), ``"bn_scale"`` or ``"conv_scale"`` (→ ChannelScale).
    A pair qualifies only if each module is called once and the producer's output has no other user.
    Untraceable modules are searched child by child.
    """
    out: list[tuple[str, str, str]] = []
    _trace_pairs(model, "", out)
    return out


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


@torch.no_grad()
def _fold_scales(model: nn.Module) -> None:
    pairs = [p for p in find_fusable_pairs(model) if p[0] in ("bn_scale", "conv_scale")]
    for kind, prod, cons in pairs:
        m, v = model.get_submodule(prod), model.get_submodule(cons).scale.reshape(-1)  # (C,)
        if kind == "bn_scale":
            m.weight.mul_(v)
            m.bias.mul_(v)
        else:
            m.weight.mul_(v.reshape(-1, *([1] * (m.weight.dim() - 1))))
            if m.bias is not None:
                m.bias.mul_(v)
        _set(model, cons, nn.Identity())
    left = [n for n, m in model.named_modules() if isinstance(m, ChannelScale)]
    if left:
        warnings.warn(
            f"reparameterize_model: could not fold ChannelScale modules {left} into a neighbouring "
            f"BN/conv; they stay as cheap per-channel multiplies",
            UserWarning,
            stacklevel=3,
        )


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm into the conv (or Linear) that feeds it (rule (b); eval-mode exact).

    ``W'[c] = s_c·W[c]``, ``b'_c = β_c − s_c·μ_c (+ s_c·b_c)`` with ``s_c = γ_c/√(σ²_c + ε)``, computed by
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` in the parameters' dtype. The conv is replaced by the fused
    conv (now with a bias) and the BN by ``nn.Identity``.

    Args:
        model: any model; the conv→BN pairs are found on ``torch.fx`` graphs of the largest traceable
            submodules (:func:`find_fusable_pairs`).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The folded model, in eval mode. ResNet-164 (100 classes): 1,727,284 → 1,714,724 parameters.

    Deviations:
        Training-mode BN cannot be folded (it uses batch statistics); the result is a deploy model only.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        for kind, prod, cons in find_fusable_pairs(model):
            if kind != "conv_bn":
                continue
            conv, bn = model.get_submodule(prod), model.get_submodule(cons)
            fused = fuse_conv_bn_eval(conv, bn) if isinstance(conv, _CONV) else fuse_linear_bn_eval(conv, bn)
            _set(model, prod, fused)
            _set(model, cons, nn.Identity())
    return model


def reparameterize_model(model: nn.Module, inplace: bool = False, *, fold_bn: bool = False) -> nn.Module:
    """Convert a trained model to its deploy form (ASR folded away; optionally BN folded into convs).

    Works on a deep copy by default, so the training model, its parameters, gradients, optimizer state
    and BN statistics are untouched (the trainer calls this before every evaluation).

    Args:
        model: any ``nn.Module``; modules with ``fuse()`` / ``reparameterize()`` / ``switch_to_deploy()``
            are converted (timm's method names, so timm's own walker converts attnkit's modules too).
        inplace: convert ``model`` itself instead of a copy.
        fold_bn: also fold BatchNorm into the preceding convs (:func:`fold_batchnorm`); the result is then
            no longer loadable into the plain backbone's ``state_dict`` layout.

    Returns:
        The deploy model, in eval mode, marked ``attnkit_form = "deployed"`` (so that
        ``attnkit.profile`` and the timing functions report ``form="deployed"``). For
        ``create_model(name, attn="asr")`` its ``state_dict`` loads
        into ``create_model(name)`` with ``strict=True`` and it has the plain parameter count
        (ResNet-164/100: 1,727,284); for the use-both variant it loads into ``create_model(name,
        attn="se")``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"reparameterize_model expects an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    _fuse_children(model)
    _relocate_post_gates(model)
    if any(isinstance(m, ChannelScale) for m in model.modules()):
        _fold_scales(model)
    if fold_bn:
        fold_batchnorm(model, inplace=True)
    model.attnkit_form = "deployed"  # read by attnkit.measure: reports of this model say form="deployed"
    return model.eval()
