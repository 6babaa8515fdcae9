"""The timm model API on attnkit's backbones, so timm's training script and utilities can drive them.

``get_classifier``, ``reset_classifier``, ``set_grad_checkpointing`` and ``feature_info``.

Reference:
    timm's model interface (``timm/models/resnet.py``: ``get_classifier``, ``reset_classifier``,
    ``forward_features``/``forward_head``, ``feature_info``), https://github.com/huggingface/pytorch-image-models
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["TimmModelAPI"]


class TimmModelAPI:
    """Mixin for a backbone with ``stem``, ``stages``, ``head.fc`` and ``num_features``."""

    grad_checkpointing: bool = False

    def get_classifier(self) -> nn.Module:
        """The final ``nn.Linear`` (timm API)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: no classifier).

        Raises:
            ValueError: a ``global_pool`` other than ``"avg"``.
        """
        if global_pool not in (None, "avg"):
            raise ValueError(f"attnkit models pool by the mean only (global_pool='avg'), got {global_pool!r}")
        fc = self.head.fc
        self.num_classes = num_classes
        self.head.fc = (
            nn.Linear(self.num_features, num_classes, device=fc.weight.device, dtype=fc.weight.dtype)
            if num_classes > 0
            else nn.Identity()
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations (timm API)."""
        self.grad_checkpointing = bool(enable)

    def run_stage(self, stage: nn.Module, x):
        """One stage, through ``torch.utils.checkpoint`` when gradient checkpointing is on."""
        if self.grad_checkpointing and self.training:
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The feature description (timm API) of the stem and each stage: channels, stride and module name.

        Measured once by running a ``(1, in_chans, 64, 64)`` probe through the stem and stages (the
        strides of attnkit's backbones depend on the family), then cached.
        """
        cached = self.__dict__.get("_feature_info")
        if cached is not None:
            return cached
        p = next(self.parameters())
        size = 64
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                x = self.stem(torch.zeros(1, self.in_chans, size, size, device=p.device, dtype=p.dtype))
                info = [{"num_chs": x.shape[1], "reduction": size // x.shape[-1], "module": "stem"}]
                for i, stage in enumerate(self.stages):
                    x = stage(x)
                    info.append(
                        {"num_chs": x.shape[1], "reduction": size // x.shape[-1], "module": f"stages.{i}"}
                    )
        finally:
            self.train(was)
        self.__dict__["_feature_info"] = info
        return info
