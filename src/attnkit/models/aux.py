"""One model-level mechanism for auxiliary losses (e.g. SPE's regulariser).

Contract: any submodule may define ``aux_loss(self) -> Tensor | None`` returning the auxiliary term of
its most recent forward pass in training mode (a scalar tensor connected to the graph), or ``None``.
The training loop calls :func:`collect_aux_losses` after the forward pass and adds the sum to the task
loss; each term is logged under its module name.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["aux_modules", "collect_aux_losses", "total_aux_loss", "watch_aux_losses"]

_WARNED: set[type] = set()


def aux_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every submodule that defines ``aux_loss()`` (``"model"`` for the root).

    A module shared by several blocks is listed once (``named_modules`` de-duplicates). Training loops
    compute this once and pass it to :func:`collect_aux_losses`, saving a walk over all modules per step.
    """
    return [
        (name or "model", m) for name, m in model.named_modules() if callable(getattr(m, "aux_loss", None))
    ]


def collect_aux_losses(
    model: nn.Module | None, modules: list[tuple[str, nn.Module]] | None = None
) -> dict[str, torch.Tensor]:
    """Auxiliary loss terms of the last forward pass, keyed by module name (``"model"`` for the root).

    Args:
        model: the model (walked for its ``aux_loss()`` modules when ``modules`` is None).
        modules: the result of :func:`aux_modules` for ``model``, precomputed.

    A module shared by several blocks reports once (``named_modules`` de-duplicates).
    """
    out: dict[str, torch.Tensor] = {}
    for name, m in aux_modules(model) if modules is None else modules:
        m._attnkit_aux_pending = False  # collected: see watch_aux_losses
        v = m.aux_loss()
        if v is not None:
            out[name] = v
    return out


def total_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of :func:`collect_aux_losses`, or None when no module contributes."""
    terms = collect_aux_losses(model)
    if not terms:
        return None
    return torch.stack([t.reshape(()) for t in terms.values()]).sum()


def _aux_forward_hook(module: nn.Module, args, output) -> None:
    """Warn (once per class) when a training forward finds the previous one's auxiliary loss uncollected."""
    if not (module.training and torch.is_grad_enabled()):
        return
    if getattr(module, "_attnkit_aux_pending", False) and type(module) not in _WARNED:
        _WARNED.add(type(module))
        warnings.warn(
            f"{type(module).__name__} defines an auxiliary loss (aux_loss()) that was not added to the loss "
            "since its previous training forward pass; outside attnkit's trainer use "
            "loss = task_loss + attnkit.models.total_aux_loss(model), or the module trains without its "
            "regulariser",
            UserWarning,
            stacklevel=2,
        )
    module._attnkit_aux_pending = True


def watch_aux_losses(model: nn.Module) -> int:
    """Make modules with ``aux_loss()`` warn when they are trained without their auxiliary loss.

    A forward hook on each such module marks its term as pending on every training forward (grad
    enabled); :func:`collect_aux_losses` (attnkit's trainer, :func:`total_aux_loss`) clears the mark. A
    second training forward that finds the mark set raises a ``UserWarning`` once per module class: the
    model is being trained by a loop that ignores e.g. SPEM's ``(p**2)`` regulariser. Evaluation and
    ``torch.no_grad`` forwards never warn. :func:`attnkit.create_model` and :func:`attnkit.attach` call it.

    Returns:
        The number of modules watched (0 for a model without auxiliary losses).
    """
    n = 0
    for m in model.modules():
        if callable(getattr(m, "aux_loss", None)):
            if not getattr(m, "_attnkit_aux_watched", False):
                m.register_forward_hook(_aux_forward_hook)
                m._attnkit_aux_watched = True
            n += 1
    return n
