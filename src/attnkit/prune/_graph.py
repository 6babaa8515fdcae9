"""Which convs are pruned, and what each one's channels reach, read from torch-pruning's dependency graph.

One :class:`PrunableLayer` per pruned conv: the conv, the norm right after it (or None), the conv's
torch-pruning group (everything its output channels reach) and its filter count. Masks, criteria and
materialisation all read this plan, so the model structure is parsed in one place.

Reference:
    Fang et al. "DepGraph: Towards Any Structural Pruning". arXiv:2301.12900.
    Code: https://github.com/VainF/Torch-Pruning
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._optional import require

__all__ = [
    "PrunableLayer",
    "default_layers",
    "plan_layers",
    "forget_plan",
    "example_input",
    "torch_pruning",
]

_NORMS = (nn.modules.batchnorm._BatchNorm,)
_PLAN_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def torch_pruning():
    """The ``torch_pruning`` module, or an ImportError naming ``pip install 'attnkit[prune]'``."""
    return require("torch_pruning", extra="prune", feature="attnkit.prune")


@dataclass
class PrunableLayer:
    """One prunable conv and what its output channels reach.

    Attributes:
        name: the conv's name in ``model.named_modules()``.
        conv: the ``nn.Conv2d``.
        norm_name: name of the BatchNorm that normalises the conv's output (None: no norm follows).
        channels: the filter count F of the conv.
        group: the torch-pruning group of all F output channels (for importance classes).
        graph: the torch-pruning ``DependencyGraph`` the group belongs to.
    """

    name: str
    conv: nn.Conv2d
    norm_name: str | None
    channels: int
    group: Any
    graph: Any


def _attention_classes() -> tuple[type, ...]:
    from ..attention import get_attn, list_attn

    return tuple(c for c in (get_attn(n).cls for n in list_attn()) if isinstance(c, type))


def default_layers(model: nn.Module) -> list[str]:
    """The convs pruned by default: ``model.prunable_layers()`` if defined, else the inner block convs.

    Inner convs are every ``convK`` of a residual block (a module with a ``downsample`` attribute and
    children ``conv1, conv2, ...``) except its last one: ``conv1`` of a basic block, ``conv1`` and
    ``conv2`` of a bottleneck (attnkit's and torchvision's ResNets). Pruning them leaves the residual
    additions intact. A model without residual blocks prunes every ``nn.Conv2d`` except the first, not
    counting convs inside attnkit attention modules (SE's 1×1 convs follow their host's width).

    Args:
        model: the network.

    Returns:
        Module names, in ``named_modules()`` order.

    Raises:
        ValueError: the model has no conv to prune.
    """
    if hasattr(model, "prunable_layers"):
        return [str(n) for n in model.prunable_layers()]
    inner: list[str] = []
    for name, m in model.named_modules():
        convs = sorted(
            (int(k[4:]), k)
            for k, c in m.named_children()
            if k.startswith("conv") and k[4:].isdigit() and isinstance(c, nn.Conv2d)
        )
        if hasattr(m, "downsample") and len(convs) >= 2:
            inner += [f"{name}.{k}" if name else k for _, k in convs[:-1]]
    if inner:
        return inner
    attn = _attention_classes()
    skip = {n for n, m in model.named_modules() if attn and isinstance(m, attn)}
    convs = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and not any(n.startswith(s + ".") for s in skip)
    ]
    if len(convs) < 2:
        raise ValueError("model has no prunable conv (it needs at least two nn.Conv2d layers)")
    return convs[1:]


def example_input(model: nn.Module, size: int = 32) -> torch.Tensor:
    """A ``(1, C_in, size, size)`` zero input, C_in read from the model's first conv.

    Raises:
        ValueError: the model has no ``nn.Conv2d``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            p = next(model.parameters())
            return torch.zeros(1, m.in_channels, size, size, device=p.device, dtype=p.dtype)
    raise ValueError("model has no nn.Conv2d; pass example_inputs")


def _check_group(name: str, group, tp, attn_ids: set[int], names: dict[int, str]) -> str | None:
    """The group's following norm; raises when the channels are coupled to another conv's output."""
    norm = None
    for i, (dep, _) in enumerate(group):
        mod, fn = dep.target.module, dep.handler
        if i == 0 or id(mod) in attn_ids:
            continue
        if fn == tp.prune_batchnorm_out_channels and norm is None:
            norm = names.get(id(mod))
        elif fn in (tp.prune_conv_out_channels, tp.prune_linear_out_channels) or (
            fn == tp.prune_batchnorm_out_channels
        ):
            raise ValueError(
                f"layer {name!r}: its output channels are coupled with {names.get(id(mod), mod)!r} "
                "(a residual addition or concatenation); masking cannot remove them exactly. "
                "Prune the inner convs of residual blocks (the default layers)"
            )
    return norm


def forget_plan(model: nn.Module) -> None:
    """Drop the cached :func:`plan_layers` result of ``model`` (after changing its structure)."""
    _PLAN_CACHE.pop(model, None)


def plan_layers(
    model: nn.Module, layers: list[str] | None = None, example_inputs: torch.Tensor | None = None
) -> dict[str, PrunableLayer]:
    """Build torch-pruning's dependency graph once and describe each prunable conv (cached per model).

    Args:
        model: the network (not modified).
        layers: conv names to prune (default :func:`default_layers`).
        example_inputs: an input batch for tracing (default :func:`example_input`, 32×32).

    Shape:
        ``example_inputs``: ``(N, C_in, H, W)``.

    Returns:
        ``{name: PrunableLayer}`` in the order of ``layers``.

    Raises:
        ImportError: torch-pruning is not installed (``pip install 'attnkit[prune]'``).
        ValueError: an unknown or non-conv layer name, or a layer whose channels are coupled with
            another conv's output (residual additions).
    """
    tp = torch_pruning()
    layers = list(default_layers(model) if layers is None else layers)
    key = tuple(layers)  # the structure does not depend on the input size
    cached = _PLAN_CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    mods = dict(model.named_modules())
    for n in layers:
        if n not in mods:
            raise ValueError(f"layers: no module named {n!r} in the model")
        if not isinstance(mods[n], nn.Conv2d):
            raise ValueError(f"layers: {n!r} is a {type(mods[n]).__name__}, not an nn.Conv2d")
    x = example_input(model) if example_inputs is None else example_inputs
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # torch-pruning traces through autograd
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    finally:
        model.train(was_training)
    attn = _attention_classes()
    attn_ids = {id(p) for m in model.modules() if attn and isinstance(m, attn) for p in m.modules()}
    names = {id(m): n for n, m in mods.items()}
    plan: dict[str, PrunableLayer] = {}
    for n in layers:
        conv = mods[n]
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
        norm = _check_group(n, group, tp, attn_ids, names)
        plan[n] = PrunableLayer(n, conv, norm, conv.out_channels, group, dg)
    _PLAN_CACHE[model] = (key, plan)
    return plan
