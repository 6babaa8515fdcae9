"""Model surgery: add attnkit's attention to a residual network the user already has.

:func:`attach` finds the residual stages of a torchvision ResNet/ResNeXt/Wide-ResNet or a timm
ResNet-family model (or of any model whose blocks a :class:`BlockAdapter` describes) and inserts an
attention module where the papers put it: after the residual branch's last BatchNorm, before the
addition. It changes the model in place and keeps every original parameter name, so the original
``state_dict`` still loads (``strict=False`` lists only the new attention parameters) and
:func:`detach` returns the plain architecture.

Reference:
    The plug-in promise of Squeeze-and-Excitation Networks (arXiv:1709.01507) and of the DIA framework,
    DIANet: Dense-and-Implicit Attention Network (arXiv:1905.10671), whose sharing and recurrent
    threading this module reproduces on foreign backbones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..attention import resolve_attn
from ._scheme import parse_scheme
from ._stage import StageWiring
from .aux import watch_aux_losses

__all__ = ["BlockAdapter", "register_block_adapter", "AttachedStage", "attach", "detach", "find_stages"]


class BlockAdapter:
    """How to run one family of residual blocks in three pieces.

    An adapter needs exactly three methods, each taking the block first:

    - ``residual(block, x) -> u``: the residual branch up to and including its last BatchNorm
      (and any module the block itself applies there, such as timm's ``se``), ``(N, C, H, W)``;
    - ``shortcut(block, x) -> s``: the identity or the projection of the input;
    - ``merge(block, u, s) -> y``: what the block does after its branch (``relu(u + s)`` for
      post-activation blocks; timm's blocks also apply ``drop_path`` to ``u`` here).

    Two attributes name the block's norm layers for the modules that replace BatchNorms:
    ``last_norm`` (the branch's last BN, wrapped by ASR) and ``branch_norms`` (every branch BN,
    replaced by IEBN). ``block.forward(x)`` must equal ``merge(block, residual(block, x),
    shortcut(block, x))`` exactly; :func:`attach` relies on it and the tests check it.
    """

    last_norm: str = "bn2"
    branch_norms: tuple[str, ...] = ("bn1", "bn2")

    def residual(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``(N, C_in, H, W) -> (N, C, H', W')``."""
        raise NotImplementedError

    def shortcut(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The shortcut: ``block.downsample(x)`` or ``x``."""
        ds = getattr(block, "downsample", None)
        return x if ds is None else ds(x)

    def merge(self, block: nn.Module, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Post-activation merge ``relu(u + s)``."""
        return torch.relu(u + s)

    def channels(self, block: nn.Module) -> int:
        """Output channels of the residual branch (the width the attention module sees)."""
        return getattr(block, self.last_norm).num_features


class _TorchvisionBasic(BlockAdapter):
    def residual(self, block, x):
        return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))


class _TorchvisionBottleneck(BlockAdapter):
    last_norm = "bn3"
    branch_norms = ("bn1", "bn2", "bn3")

    def residual(self, block, x):
        u = block.relu(block.bn1(block.conv1(x)))
        u = block.relu(block.bn2(block.conv2(u)))
        return block.bn3(block.conv3(u))


class _TimmBlock(BlockAdapter):
    """timm's ``BasicBlock``/``Bottleneck``: the block's own ``se`` stays inside the branch."""

    def merge(self, block, u, s):
        if block.drop_path is not None:
            u = block.drop_path(u)
        act = block.act3 if hasattr(block, "act3") else block.act2
        return act(u + s)


class _TimmBasic(_TimmBlock):
    def residual(self, block, x):
        u = block.aa(block.act1(block.drop_block(block.bn1(block.conv1(x)))))
        u = block.bn2(block.conv2(u))
        return u if block.se is None else block.se(u)


class _TimmBottleneck(_TimmBlock):
    last_norm = "bn3"
    branch_norms = ("bn1", "bn2", "bn3")

    def residual(self, block, x):
        u = block.act1(block.bn1(block.conv1(x)))
        u = block.aa(block.act2(block.drop_block(block.bn2(block.conv2(u)))))
        u = block.bn3(block.conv3(u))
        return u if block.se is None else block.se(u)


_ADAPTERS: dict[type, BlockAdapter] = {}


def register_block_adapter(block_type: type, adapter: BlockAdapter) -> None:
    """Teach :func:`attach` a block class: ``adapter`` runs it as residual / shortcut / merge.

    Raises:
        TypeError: ``adapter`` is not a :class:`BlockAdapter`.
    """
    if not isinstance(adapter, BlockAdapter):
        raise TypeError(f"adapter must be a BlockAdapter, got {type(adapter).__name__}")
    _ADAPTERS[block_type] = adapter


def _register_known() -> None:
    from torchvision.models import resnet as tv

    register_block_adapter(tv.BasicBlock, _TorchvisionBasic())
    register_block_adapter(tv.Bottleneck, _TorchvisionBottleneck())
    try:
        from timm.models import resnet as tm
    except ImportError:  # timm is optional
        return
    register_block_adapter(tm.BasicBlock, _TimmBasic())
    register_block_adapter(tm.Bottleneck, _TimmBottleneck())


def _adapter_for(block: nn.Module) -> BlockAdapter | None:
    if not _ADAPTERS:
        _register_known()
    return _ADAPTERS.get(type(block))


class AttachedStage(StageWiring, nn.Module):
    """A stage of foreign residual blocks with attention wired between branch and merge.

    The blocks keep their names (``"0"``, ``"1"``, ...), so ``layer1.0.conv1.weight`` stays
    ``layer1.0.conv1.weight``; per-block modules live in ``block_attn["i"]`` and a stage-shared one in
    ``attn``. A recurrent unit (DIA) is called as ``(u, state) = m(u, state)`` with ``state=None`` at
    the stage's first connected block, threaded explicitly (no hidden state).

    Args:
        blocks: the original blocks, in order.
        adapter: the :class:`BlockAdapter` of their class.
        block_attn: one module or None per block (``sharing="block"``).
        attn: the stage-shared module (``sharing="stage"``) or None.
        recurrent: whether the modules are recurrent units.
        connect: one bool per block; False skips attention there.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H', W')``, as the original stage.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        adapter: BlockAdapter,
        block_attn: Sequence[nn.Module | None],
        attn: nn.Module | None,
        recurrent: bool,
        connect: Sequence[bool],
    ):
        super().__init__()
        for i, blk in enumerate(blocks):
            self.add_module(str(i), blk)
        self.n_blocks = len(blocks)
        self.adapter = adapter
        self.attn = attn
        self.block_attn = nn.ModuleDict({str(i): m for i, m in enumerate(block_attn) if m is not None})
        self.recurrent = recurrent
        self.connect = tuple(bool(c) for c in connect)

    @property
    def blocks(self) -> list[nn.Module]:
        """The original blocks, in order."""
        return [self._modules[str(i)] for i in range(self.n_blocks)]

    def block_list(self) -> list[nn.Module]:
        """The original blocks, in order."""
        return self.blocks

    def block_residual(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The adapter's ``residual``."""
        return self.adapter.residual(blk, x)

    def block_shortcut(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The adapter's ``shortcut``."""
        return self.adapter.shortcut(blk, x)

    def block_merge(self, blk: nn.Module, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The adapter's ``merge``."""
        return self.adapter.merge(blk, u, s)

    def _module_for(self, i: int, blk: nn.Module) -> nn.Module | None:
        if not self.connect[i]:
            return None
        return self.attn if self.attn is not None else self.block_attn[str(i)]


def find_stages(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    """The residual stages of ``model``: every ``nn.Sequential`` whose children are all known blocks.

    Returns:
        ``(qualified name, stage)`` pairs in definition order (``layer1`` ... ``layer4`` for ResNets).
    """
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential) and len(mod) and all(_adapter_for(b) is not None for b in mod):
            found.append((name, mod))
    return found


def _set(model: nn.Module, qualname: str, new: nn.Module) -> None:
    parent_name, _, leaf = qualname.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def _replace_norm(block: nn.Module, name: str, new: nn.Module) -> None:
    """Swap ``block.<name>`` (a BatchNorm2d) for ``new``, keeping the BN's affine and statistics."""
    old = getattr(block, name)
    target = new.bn if hasattr(new, "bn") else new  # ASR wraps a BN as .bn; IEBN has BN's names
    target.load_state_dict(old.state_dict(), strict=False)
    setattr(block, name, new.to(old.weight.device, old.weight.dtype))


def _check_args(entry, sharing, scheme) -> str:
    if sharing is None:
        sharing = "stage" if entry.kind == "recurrent" else "block"
    if sharing not in ("block", "stage"):
        raise ValueError(f"sharing must be 'block' or 'stage', got {sharing!r}")
    if entry.kind in ("norm", "bn_wrapper") and (sharing == "stage" or scheme is not None):
        raise ValueError(
            f"attn={entry.name!r} replaces BatchNorms (kind={entry.kind!r}): it cannot be shared per "
            "stage or masked with a scheme"
        )
    return sharing


def attach(
    model: nn.Module,
    attn: Any = "se",
    *,
    sharing: str | None = None,
    scheme: Any = None,
    attn_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Add attention to an existing residual network, in place.

    Args:
        model: a torchvision ResNet/ResNeXt/Wide-ResNet, a timm ResNet-family model, or any model
            whose stage blocks have a registered :class:`BlockAdapter`.
        attn: a registry name (``"se"``, ``"eca"``, ``"dia"``, ``"asr"``, ``"iebn"``, ...) or a class.
        sharing: ``"block"`` (one module per block), ``"stage"`` (one per stage, the DIA framework), or
            None (``"stage"`` for recurrent units, ``"block"`` otherwise).
        scheme: a connection mask over the blocks (``"110|0011|..."``, ``"all"``), as ``create_model``.
        attn_kwargs: constructor arguments of the module, merged over its registry ``paper_kwargs``.

    Returns:
        The same ``model`` object. Gates and recurrent units go after each branch's last BN; ``"asr"``
        (a BN wrapper) replaces each branch's last BN keeping its weights; ``"iebn"`` replaces every
        branch BN keeping BN's weights. The configuration is recorded in ``model.attnkit_attach``.

    Raises:
        ValueError: no residual stage found, the model is attached already, a bad ``sharing`` or
            ``scheme``, or an unknown module name (the message lists the registered ones).

    Deviations:
        Blocks are run through their adapter, not their own ``forward``; the adapters reproduce the
        libraries' forward passes exactly (tested bit for bit).
    """
    if getattr(model, "attnkit_attach", None):
        raise ValueError("this model already has attention attached; call detach(model) first")
    entry = resolve_attn(attn)
    sharing = _check_args(entry, sharing, scheme)
    stages = find_stages(model)
    if not stages:
        raise ValueError(
            f"no residual stage found in {type(model).__name__}: register a BlockAdapter for its block class "
            "with attnkit.models.register_block_adapter"
        )
    masks = parse_scheme(scheme, [len(s) for _, s in stages])
    kw = {**entry.paper_kwargs, **dict(attn_kwargs or {})}
    for (name, stage), mask in zip(stages, masks):
        blocks = list(stage)
        adapters = [_adapter_for(b) for b in blocks]
        if entry.kind in ("norm", "bn_wrapper"):
            for blk, ad in zip(blocks, adapters):
                names = ad.branch_norms if entry.kind == "norm" else (ad.last_norm,)
                for n in names:
                    _replace_norm(blk, n, entry.cls(getattr(blk, n).num_features, **kw))
            continue
        ch = adapters[-1].channels(blocks[-1])
        shared = entry.cls(ch, **kw) if sharing == "stage" and any(mask) else None
        per_block = [
            entry.cls(ad.channels(b), **kw) if (sharing == "block" and on) else None
            for b, ad, on in zip(blocks, adapters, mask)
        ]
        new = AttachedStage(blocks, adapters[0], per_block, shared, entry.kind == "recurrent", mask)
        ref = next(blocks[0].parameters(), None)
        if ref is not None:
            new.to(ref.device)
        _set(model, name, new)
    model.attnkit_attach = {"attn": entry.name, "sharing": sharing, "scheme": scheme, "attn_kwargs": kw}
    watch_aux_losses(model)  # SPEM-style auxiliary losses warn when trained outside attnkit's trainer
    return model


def detach(model: nn.Module) -> nn.Module:
    """Remove what :func:`attach` added to gates/recurrent units; returns the same model object.

    The stages become ``nn.Sequential`` of the original blocks again, so the original architecture's
    ``state_dict`` keys are restored exactly. ASR is removed by folding instead:
    ``attnkit.reparameterize_model(model)`` turns each ASR BatchNorm into a plain ``nn.BatchNorm2d``.

    Raises:
        ValueError: the model has no attached attention, or it holds IEBN layers (a norm replacement that
            cannot be removed without changing the outputs).
    """
    cfg = getattr(model, "attnkit_attach", None)
    if not cfg:
        raise ValueError("this model has no attention attached by attnkit.attach")
    kind = resolve_attn(cfg["attn"]).kind
    if kind == "norm":
        raise ValueError(f"attn={cfg['attn']!r} replaced the BatchNorms; it cannot be detached exactly")
    if kind == "bn_wrapper":
        raise ValueError(
            f"attn={cfg['attn']!r} is removed by folding: use attnkit.reparameterize_model(model)"
        )
    for name, mod in list(model.named_modules()):
        if isinstance(mod, AttachedStage):
            _set(model, name, nn.Sequential(*mod.blocks))
    del model.attnkit_attach
    return model
