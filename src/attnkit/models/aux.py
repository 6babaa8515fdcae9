"""One model-level mechanism for auxiliary losses (e.g. SPE's regulariser).

Contract: any submodule may define ``aux_loss(self) -> Tensor | None`` returning the auxiliary term of
its most recent forward pass in training mode (a scalar tensor connected to the graph), or ``None``.
The training loop calls :func:`collect_aux_losses` after the forward pass and adds the sum to the task
loss; each term is logged under its module name.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["collect_aux_losses", "total_aux_loss"]


def collect_aux_losses(model: nn.Module) -> dict[str, torch.Tensor]:
    """Auxiliary loss terms of the last forward pass, keyed by module name (``"model"`` for the root).

    A module shared by several blocks reports once (``named_modules`` de-duplicates).
    """
    out: dict[str, torch.Tensor] = {}
    for name, m in model.named_modules():
        fn = getattr(m, "aux_loss", None)
        if callable(fn):
            v = fn()
            if v is not None:
                out[name or "model"] = v
    return out


def total_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of :func:`collect_aux_losses`, or None when no module contributes."""
    terms = collect_aux_losses(model)
    if not terms:
        return None
    return torch.stack([t.reshape(()) for t in terms.values()]).sum()
