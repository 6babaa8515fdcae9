"""Training strategies as optimizer wrappers (Mirror Gradient, AlterSGD) and flatness measures.

Public API::

    from attnkit.optim import MirrorGradient, AlterSGD, wrap_optimizer
    opt = MirrorGradient(torch.optim.Adam(model.parameters(), lr=1e-3), alpha2=0.1)   # closure steps
    opt = wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.05), "altersgd", start=0.7)
    hessian_top_eigenvalue(loss_fn, model.parameters()); perturbation_sharpness(loss_fn, params)

The wrappers share ``param_groups`` with the base optimizer (as timm's ``Lookahead``), so LR schedulers,
``state_dict`` round trips and gradient clipping work as with the base optimizer.
"""

from __future__ import annotations

from ._wrapper import STRATEGIES, StrategyWrapper, list_strategies, wrap_optimizer
from .alter_sgd import AlterSGD
from .flatness import hessian_top_eigenvalue, perturbation_sharpness
from .mirror_gradient import MirrorGradient

__all__ = [
    "MirrorGradient",
    "AlterSGD",
    "StrategyWrapper",
    "STRATEGIES",
    "wrap_optimizer",
    "list_strategies",
    "hessian_top_eigenvalue",
    "perturbation_sharpness",
]
