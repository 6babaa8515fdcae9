"""Shared ResNet machinery: blocks with attachment hooks, the stage that wires attention, the model.

Block anatomy (the attachment point of the group's CIFAR/ImageNet code: attention on the residual branch
after its last BN, before the addition): every block exposes

- ``block.residual(x) -> u``: the residual branch up to and including its last norm layer;
- ``block.shortcut(x) -> s``: identity, a projection, or the option-A pad;
- ``block.merge(u, s)``: ``u + s`` then ReLU (post-activation) or ``u + s`` (pre-activation).

The stage applies attention to ``u`` between ``residual`` and ``merge``: a per-block module
(``block.attn``), one module shared by the stage (``stage.attn``), or a recurrent unit whose state is
threaded explicitly from block to block. The shortcut is never gated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._scheme import ConnectionScheme, parse_scheme
from ._stage import StageWiring
from .timm_api import TimmModelAPI

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "PreActBottleneck",
    "ResStage",
    "ResNet",
    "ClassifierHead",
    "ShortcutA",
]

NormFactory = Callable[[int], nn.Module]


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """A backbone conv with He-normal (fan-out, ReLU gain) init, as in the papers' init loops."""
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


class ShortcutA(nn.Module):
    """Parameter-free option-A shortcut: subsample by ``stride`` and zero-pad channels on both sides.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if (out_ch - in_ch) % 2:
            raise ValueError(f"option-A shortcut needs an even channel difference, got {in_ch}->{out_ch}")
        self.stride, self.pad = stride, (out_ch - in_ch) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


def _projection(cin: int, cout: int, stride: int, bias: bool, with_bn: bool = True) -> nn.Module:
    """1×1 conv (+ plain BatchNorm2d): the projection shortcut. Its BN is never a norm replacement."""
    conv = _conv(cin, cout, 1, stride, bias)
    return nn.Sequential(conv, nn.BatchNorm2d(cout)) if with_bn else nn.Sequential(conv)


class _Block(nn.Module):
    """Common block interface; subclasses define ``residual``, ``last_norm`` and ``post_act``."""

    expansion = 1
    post_act = True
    last_norm_name = "bn2"  # attribute holding the residual branch's last norm layer

    def __init__(self):
        super().__init__()
        self.attn: nn.Module | None = None

    @property
    def last_norm(self) -> nn.Module:
        """The residual branch's last norm layer (where a BN-wrapper attention attaches)."""
        return getattr(self, self.last_norm_name)

    def _set_downsample(self, in_ch: int, out: int, stride: int, projection: Callable[[], nn.Module]) -> None:
        """``self.downsample = projection()`` where stride or width change, else ``nn.Identity()``."""
        self.downsample = projection() if (stride != 1 or in_ch != out) else nn.Identity()

    def residual(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x)

    def merge(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return F.relu(u + s) if self.post_act else u + s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standalone use: residual -> own gate (if any) -> merge. Stages do their own wiring."""
        u = self.residual(x)
        if self.attn is not None:
            u = self.attn(u)
            if isinstance(u, tuple):  # a recurrent unit used standalone: fresh state, drop the new one
                u = u[0]
        return self.merge(u, self.shortcut(x))


class BasicBlock(_Block):
    """Post-activation basic block: conv3×3 → BN → ReLU → conv3×3 → BN → [attn] → + shortcut → ReLU.

    Shape:
        ``(N, in_ch, H, W) -> (N, planes, H/stride, W/stride)``.
    """

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        *,
        norm_layer: NormFactory,
        last_norm_layer: NormFactory,
        shortcut: str = "B",
        conv_bias: bool = False,
    ):
        super().__init__()
        out = planes
        self.conv1 = _conv(in_ch, planes, 3, stride, conv_bias)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv(planes, planes, 3, 1, conv_bias)
        self.bn2 = last_norm_layer(planes)
        self._set_downsample(
            in_ch,
            out,
            stride,
            lambda: (
                ShortcutA(in_ch, out, stride)
                if shortcut == "A"
                else _projection(in_ch, out, stride, conv_bias)
            ),
        )

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        u = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(u))


class Bottleneck(_Block):
    """Post-activation bottleneck: 1×1 → BN → ReLU → 3×3 (stride) → BN → ReLU → 1×1 → BN → [attn] → + → ReLU.

    ``stride_in_1x1=True`` moves the stride to the first 1×1 conv (the Caffe "V1" layout).

    Shape:
        ``(N, in_ch, H, W) -> (N, 4·planes, H/stride, W/stride)``.
    """

    expansion = 4
    last_norm_name = "bn3"

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        *,
        norm_layer: NormFactory,
        last_norm_layer: NormFactory,
        conv_bias: bool = False,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        out = planes * 4
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(in_ch, planes, 1, s1, conv_bias)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv(planes, planes, 3, s3, conv_bias)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv(planes, out, 1, 1, conv_bias)
        self.bn3 = last_norm_layer(out)
        self._set_downsample(in_ch, out, stride, lambda: _projection(in_ch, out, stride, conv_bias))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        u = F.relu(self.bn1(self.conv1(x)))
        u = F.relu(self.bn2(self.conv2(u)))
        return self.bn3(self.conv3(u))


class PreActBottleneck(_Block):
    """Pre-activation bottleneck (bearpaw ``preresnet``), with no ReLU after the addition.

    BN → ReLU → 1×1 → BN → ReLU → 3×3 (stride) → BN → ReLU → 1×1 → [extra BN] → [attn] → + shortcut.

    The shortcut is a bare 1×1 conv (no BN) applied to the raw block input.

    Shape:
        ``(N, in_ch, H, W) -> (N, 4·planes, H/stride, W/stride)``.
    """

    expansion = 4
    post_act = False
    last_norm_name = "bn_extra"

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        *,
        norm_layer: NormFactory,
        last_norm_layer: NormFactory,
        extra_bn: bool = False,
    ):
        super().__init__()
        out = planes * 4
        self.bn1 = norm_layer(in_ch)
        self.conv1 = _conv(in_ch, planes, 1)
        self.bn2 = norm_layer(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn3 = norm_layer(planes)
        self.conv3 = _conv(planes, out, 1)
        self.bn_extra = last_norm_layer(out) if extra_bn else nn.Identity()
        self._set_downsample(
            in_ch, out, stride, lambda: _projection(in_ch, out, stride, False, with_bn=False)
        )

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv1(F.relu(self.bn1(x)))
        u = self.conv2(F.relu(self.bn2(u)))
        u = self.conv3(F.relu(self.bn3(u)))
        return self.bn_extra(u)


class ResStage(StageWiring, nn.Module):
    """A run of blocks at one resolution and width, with attention wired between residual and merge.

    Args:
        blocks: the blocks.
        attn: the stage-shared module (``sharing="stage"``) or None (per-block modules live in
            ``block.attn``).
        recurrent: whether the modules are recurrent units called as ``(u, state) = m(u, state)``;
            the state starts as ``None`` at the first block of the stage and passes only through
            connected blocks.
        connect: one bool per block; False skips attention for that block. Plain Python values, so
            ``torch.compile`` specialises on them; the EAN supernet may reassign it between batches.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H', W')``.
    """

    def __init__(
        self, blocks: Sequence[nn.Module], attn: nn.Module | None, recurrent: bool, connect: Sequence[bool]
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = attn
        self.recurrent = recurrent
        self.connect = tuple(bool(c) for c in connect)
        self.out_channels = blocks[-1].last_channels

    def _module_for(self, i: int, blk: nn.Module) -> nn.Module | None:
        if not self.connect[i]:
            return None
        return self.attn if self.attn is not None else blk.attn

    def block_list(self) -> list[nn.Module]:
        """The blocks, in order."""
        return list(self.blocks)

    @staticmethod
    def block_residual(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``blk.residual(x)``: the branch up to its last norm."""
        return blk.residual(x)

    @staticmethod
    def block_shortcut(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``blk.shortcut(x)``."""
        return blk.shortcut(x)

    @staticmethod
    def block_merge(blk: nn.Module, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``blk.merge(u, s)``."""
        return blk.merge(u, s)


class ClassifierHead(nn.Module):
    """Global mean pooling then ``Linear``: ``(N, C, H, W) -> (N, num_classes)``."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.in_features = in_features
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # (N, C)
        return x if pre_logits else self.fc(x)


class ResNet(TimmModelAPI, nn.Module):
    """A ResNet backbone with pluggable channel attention (built by :func:`build_resnet`).

    Attributes:
        stem: the input stem.
        stages: ``nn.ModuleList`` of :class:`ResStage`.
        final_norm: BN → ReLU after the last stage (pre-activation nets) or Identity.
        head: :class:`ClassifierHead`.
        stage_channels: output width of each stage (read-only).
        blocks_per_stage: number of blocks of each stage (read-only).
        attn_config: dict with the resolved ``attn``, ``sharing``, ``scheme`` and ``attn_kwargs``.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Raises:
        RuntimeError: (forward) an input whose channel count is not ``in_chans``.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[ResStage],
        final_norm: nn.Module,
        num_classes: int,
        in_chans: int,
        attn_config: dict[str, Any],
    ):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.final_norm = final_norm
        self.num_features = stages[-1].out_channels
        self.head = ClassifierHead(self.num_features, num_classes)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.attn_config = attn_config

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(s.out_channels for s in self.stages)

    @property
    def blocks_per_stage(self) -> tuple[int, ...]:
        return tuple(len(s.blocks) for s in self.stages)

    @property
    def scheme(self) -> ConnectionScheme:
        """The current connection scheme (``str()`` gives the ``"110|0011"`` form)."""
        return ConnectionScheme(tuple(tuple(s.connect) for s in self.stages))

    def set_scheme(self, scheme) -> None:
        """Change which blocks use attention (for stage-shared modules or blocks that own a module).

        Raises:
            ValueError: malformed scheme, or a block switched on that has no module to use.
        """
        masks = parse_scheme(scheme, self.blocks_per_stage)
        for si, (stage, m) in enumerate(zip(self.stages, masks)):
            for bi, on in enumerate(m):
                if on and stage.attn is None and stage.blocks[bi].attn is None:
                    raise ValueError(f"block {bi} of stage {si + 1} has no attention module to connect")
        for stage, m in zip(self.stages, masks):
            stage.connect = m

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W) -> (N, num_features, H', W')`` (before pooling)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise RuntimeError(
                f"expected input of shape (N, {self.in_chans}, H, W) (in_chans={self.in_chans}), got {tuple(x.shape)}; "
                f"build the model with in_chans={x.shape[1] if x.dim() == 4 else '?'} for this data"
            )
        x = self.stem(x)
        for stage in self.stages:
            x = self.run_stage(stage, x)
        return self.final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(N, num_features, H', W') -> (N, num_classes)`` (or ``(N, num_features)`` with ``pre_logits``)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
