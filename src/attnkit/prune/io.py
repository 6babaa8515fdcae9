"""Saving and loading a pruned (architecture-changed) model without pickling a module.

The file is a plain dict that loads with ``torch.load(..., weights_only=True)``::

    {"format": "attnkit.pruned/1", "model_kwargs": {create_model arguments}, "keep": {layer: LongTensor},
     "example_input_size": [C, H, W], "state_dict": {...}, "meta": {...}}

:func:`load_pruned` rebuilds the dense model with :func:`attnkit.create_model`, re-applies the pruning
with :func:`materialize` and loads the pruned weights (``strict=True``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_torch_save
from .masks import materialize

__all__ = ["FORMAT", "save_pruned", "load_pruned", "PrunedModelFn"]

FORMAT = "attnkit.pruned/1"


def save_pruned(
    path: str | os.PathLike,
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    example_input_size: tuple[int, int, int],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a materialised model as kept indices + state dict (atomic).

    Args:
        path: destination (``.pt``).
        model: the materialised (pruned) model.
        keep: the kept filter indices that produced it.
        model_kwargs: ``attnkit.create_model`` arguments of the dense model (``name`` plus keywords).
        example_input_size: ``(C, H, W)`` used for tracing.
        meta: plain-type extras (report, criteria, λ).

    Returns:
        The path written.

    Raises:
        ValueError: ``model_kwargs`` without ``name``.
    """
    if "name" not in model_kwargs:
        raise ValueError("model_kwargs must hold the create_model 'name'")
    state = {
        "format": FORMAT,
        "model_kwargs": dict(model_kwargs),
        "keep": {k: torch.as_tensor(v).long().cpu() for k, v in keep.items()},
        "example_input_size": [int(s) for s in example_input_size],
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return atomic_torch_save(state, Path(path))


def load_pruned(path: str | os.PathLike, *, with_meta: bool = False) -> nn.Module | tuple[nn.Module, dict]:
    """Rebuild a model written by :func:`save_pruned` (``weights_only=True``).

    Args:
        path: the ``pruned.pt`` file.
        with_meta: also return the file's dict (without the state dict).

    Returns:
        The pruned model (eval mode), or ``(model, info)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an attnkit pruned-model file, or weights that do not fit.
    """
    from ..models import create_model

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pruned model {p} does not exist")
    d = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{p} is not an attnkit pruned-model file (format {FORMAT!r})")
    kw = dict(d["model_kwargs"])
    model = create_model(kw.pop("name"), **kw)
    x = torch.zeros(1, *d["example_input_size"])
    model = materialize(model, d["keep"], x, inplace=True)
    try:
        model.load_state_dict(d["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{p}: weights do not fit the re-pruned {kw} model: {e}") from None
    model.eval()
    if with_meta:
        return model, {k: v for k, v in d.items() if k != "state_dict"}
    return model


class PrunedModelFn:
    """A picklable ``model_fn(config, data)`` for :func:`attnkit.train.fit` that loads a pruned model.

    ``fit(config, model_fn=PrunedModelFn("runs/x/pruned.pt"))`` fine-tunes the pruned network; the
    ``model*`` and ``attn*`` fields of ``config`` should describe the dense model it came from.

    Args:
        path: a file written by :func:`save_pruned`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)

    def __call__(self, config: Any = None, data: Any = None) -> nn.Module:
        """Load the model (training mode)."""
        return load_pruned(self.path).train()
