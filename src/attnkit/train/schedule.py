"""SGD parameter groups (``wd_mode``) and lr schedules with the papers' start-of-epoch semantics."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "scheduler_interval"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, wd_mode: str = "all") -> list[dict]:
    """Split parameters into decayed / not-decayed groups.

    Args:
        model: the (unwrapped) model.
        weight_decay: the decay of the decayed group.
        wd_mode: ``all`` (the papers: every parameter, BN and attention included), ``no_norm_bias``
            (norm parameters and biases excluded), ``module_hints`` (also parameters a module lists in
            ``no_weight_decay()``, as names relative to that module).

    Returns:
        One or two param-group dicts for ``torch.optim.SGD``.

    Raises:
        ValueError: unknown ``wd_mode``.
    """
    if wd_mode == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    if wd_mode not in ("no_norm_bias", "module_hints"):
        raise ValueError(f"wd_mode must be 'all', 'no_norm_bias' or 'module_hints', got {wd_mode!r}")
    skip: set[int] = set()
    for m in model.modules():
        for pname, p in m.named_parameters(recurse=False):
            if isinstance(m, _NORMS) or pname == "bias":
                skip.add(id(p))
        if wd_mode == "module_hints" and callable(getattr(m, "no_weight_decay", None)):
            names = set(m.no_weight_decay())
            for pname, p in m.named_parameters():
                if pname in names:
                    skip.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in skip], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """SGD with ``config.lr``, ``momentum``, ``nesterov`` and the ``wd_mode`` groups (or timm's ``config.opt``).

    With ``config.opt`` set, :func:`attnkit.train.optim_factory.build_timm_optimizer` builds the
    optimizer instead (timm's ``create_optimizer_v2`` on the same groups).

    With ``config.optim_strategy`` set (``mirror`` | ``altersgd``) the SGD optimizer is wrapped by
    :func:`attnkit.optim.wrap_optimizer` with the ``mg_*`` / ``alter_*`` options; the loop then takes the
    closure path and the checkpoints carry the wrapper's counters.
    """
    if getattr(config, "opt", None):  # timm's optimizer factory (--opt)
        from .optim_factory import build_timm_optimizer

        sgd = build_timm_optimizer(model, config)
    else:
        sgd = torch.optim.SGD(
            param_groups(model, config.weight_decay, config.wd_mode),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
        )
    strategy = getattr(config, "optim_strategy", None)
    if not strategy:
        return sgd
    from ..optim import STRATEGIES, wrap_optimizer  # lazy: the strategies live in a method family

    name = STRATEGIES.entry(strategy).name  # ValueError listing the strategies for an unknown name
    kw = {
        "mirror": dict(
            alpha1=config.mg_alpha1, alpha2=config.mg_alpha2, beta=config.mg_beta, mode=config.mg_mode
        ),
        "altersgd": dict(start=config.alter_start, mode=config.alter_mode),
    }.get(name, {})
    return wrap_optimizer(sgd, name, **kw)


def scheduler_interval(config) -> str:
    """When the schedule steps: ``"epoch"``, ``"step"`` (per update) or ``"timm"`` (both clocks).

    ``"epoch"``: MultiStepLR / constant, stepped after each epoch; ``"step"``: cosine or warm-up, stepped
    after each optimizer update; ``"timm"`` (``config.sched``): ``step_update`` after each optimizer update
    and ``step`` after each epoch.
    """
    if getattr(config, "sched", None):
        return "timm"
    return "step" if (config.scheduler == "cosine" or config.warmup_epochs > 0) else "epoch"


def build_scheduler(optimizer: torch.optim.Optimizer, config, steps_per_epoch: int):
    """The lr schedule of ``config``.

    - ``step`` without warm-up: ``MultiStepLR(milestones, gamma)`` stepped once **after** each epoch, so
      0-indexed epoch e runs at ``lr·gamma^(#milestones <= e)`` (lr ×0.1 at the *start* of epochs 81 and
      122 in ``cifar-group``).
    - ``cosine``: per iteration, ``0.5·(1 + cos(pi·t/T))`` from ``lr`` to 0 over the post-warm-up steps.
    - ``warmup_epochs > 0``: linear warm-up per iteration from ``lr/steps`` to ``lr``, then the schedule
      (step decay evaluated at the epoch of the iteration).
    - ``constant``: a MultiStepLR without milestones.

    An optimizer with ``session_start`` (AlterSGD) gets one session over the whole run
    (``epochs × steps_per_epoch`` steps) here, where the run's step count is known; a resumed run then
    restores the session counters from the checkpoint.

    - ``config.sched`` set: timm's ``create_scheduler_v2`` (:func:`attnkit.train.optim_factory.build_timm_scheduler`).

    ``steps_per_epoch`` counts optimizer **updates** (batches / ``grad_accum``, rounded up).

    Returns:
        A scheduler with ``state_dict``; see :func:`scheduler_interval` for when to call ``step()``.
    """
    if callable(getattr(optimizer, "session_start", None)):
        optimizer.session_start(config.epochs * max(1, int(steps_per_epoch)))
    if getattr(config, "sched", None):  # timm's scheduler factory (--sched)
        from .optim_factory import build_timm_scheduler

        return build_timm_scheduler(optimizer, config, steps_per_epoch)
    if scheduler_interval(config) == "epoch":
        ms = config.milestones if config.scheduler == "step" else []
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(ms), gamma=config.gamma)
    spe = max(1, int(steps_per_epoch))
    warm = config.warmup_epochs * spe
    total = config.epochs * spe
    milestones, gamma, kind = sorted(config.milestones), config.gamma, config.scheduler

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if kind == "cosine":
            t, t_max = step - warm, max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, t_max) / t_max))
        if kind == "step":
            return gamma ** sum(step // spe >= m for m in milestones)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
