"""Optimizers and lr schedules from timm's factories, behind ``--opt`` and ``--sched``.

``--opt NAME`` builds the optimizer with ``timm.optim.create_optimizer_v2`` on attnkit's weight-decay
groups (:func:`attnkit.train.param_groups`, so ``--wd-mode`` keeps its meaning); ``--sched NAME`` builds
the schedule with ``timm.scheduler.create_scheduler_v2``. Without them, attnkit's SGD and its
``--scheduler`` (the papers' recipes) are used unchanged.

timm's schedulers are stepped the way timm's ``train.py`` steps them: ``step_update(num_updates)`` after
every optimizer update and ``step(epoch + 1, metric)`` after every epoch (each call is a no-op unless the
schedule runs on that clock, ``--sched-on-updates``). Their state (``state_dict()``, plain values) is
saved in checkpoints and restored on resume, together with the optimizer's param-group lrs.

Reference:
    Ross Wightman, "PyTorch Image Models" (timm), https://github.com/huggingface/pytorch-image-models
    (``timm/optim/_optim_factory.py``, ``timm/scheduler/scheduler_factory.py``, ``train.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._optional import require

__all__ = ["build_timm_optimizer", "build_timm_scheduler", "updates_per_epoch", "TIMM_INTERVAL"]

#: The ``scheduler_interval`` of a timm scheduler: stepped per update *and* per epoch.
TIMM_INTERVAL = "timm"


def updates_per_epoch(batches: int, grad_accum: int = 1) -> int:
    """Optimizer updates in an epoch of ``batches`` batches with ``grad_accum`` batches per update.

    The last, shorter accumulation window still updates (as in timm's ``train.py``):
    ``ceil(batches / grad_accum)``.
    """
    return max(1, (int(batches) + grad_accum - 1) // grad_accum)


def build_timm_optimizer(model: nn.Module, config: Any) -> torch.optim.Optimizer:
    """``timm.optim.create_optimizer_v2`` with ``config.opt`` on attnkit's ``wd_mode`` parameter groups.

    Args:
        model: the (unwrapped) model.
        config: a :class:`~attnkit.train.TrainConfig` with ``opt`` set; ``lr``, ``weight_decay``,
            ``momentum`` (used by the momentum optimizers only) and ``opt_kwargs`` (e.g.
            ``{"betas": (0.9, 0.95), "eps": 1e-8}``) are passed on.

    Returns:
        The timm/torch optimizer. Note timm's names: ``sgd`` (and ``nesterov``) is SGD **with Nesterov**
        momentum, ``momentum`` is plain momentum SGD.

    Raises:
        ImportError: timm is missing (``pip install 'attnkit[timm]'``).
        ValueError: timm rejects the name or a keyword.
    """
    optim = require("timm.optim", extra="timm", feature="--opt (timm's optimizer factory)")
    from .schedule import param_groups

    groups = param_groups(model, config.weight_decay, config.wd_mode)
    return optim.create_optimizer_v2(
        groups,
        opt=str(config.opt).lower(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        filter_bias_and_bn=False,  # the groups above already carry wd_mode's decisions
        **dict(config.opt_kwargs),
    )


def build_timm_scheduler(optimizer: torch.optim.Optimizer, config: Any, updates: int):
    """``timm.scheduler.create_scheduler_v2`` for ``config.sched`` over ``config.epochs`` epochs.

    Mapping of attnkit's fields: ``epochs`` -> ``num_epochs``, ``milestones`` -> ``decay_milestones``
    (``multistep``; the first milestone is also ``decay_epochs`` of ``step`` unless ``sched_kwargs`` gives
    one), ``gamma`` -> ``decay_rate``, ``min_lr``, ``warmup_lr``, ``warmup_epochs``,
    ``sched_on_updates`` -> ``step_on_epochs=False`` with ``updates_per_epoch=updates``; any other keyword
    of ``create_scheduler_v2`` through ``sched_kwargs`` (``cooldown_epochs`` is accepted but the run
    still lasts ``epochs`` epochs). ``plateau`` is stepped with the selection metric (top-1, mode max).

    Args:
        optimizer: the optimizer (Fabric-wrapped or not).
        config: a :class:`~attnkit.train.TrainConfig` with ``sched`` set.
        updates: optimizer updates per epoch (:func:`updates_per_epoch`).

    Returns:
        A timm scheduler (``step``, ``step_update``, ``state_dict``, ``load_state_dict``).

    Raises:
        ImportError: timm is missing (``pip install 'attnkit[timm]'``).
    """
    sched = require("timm.scheduler", extra="timm", feature="--sched (timm's scheduler factory)")
    kw: dict[str, Any] = {
        "sched": config.sched,
        "num_epochs": config.epochs,
        "decay_milestones": list(config.milestones),
        "decay_rate": config.gamma,
        "min_lr": config.min_lr,
        "warmup_lr": config.warmup_lr,
        "warmup_epochs": config.warmup_epochs,
        "step_on_epochs": not config.sched_on_updates,
        "updates_per_epoch": int(updates),
        "plateau_mode": "max",
    }
    if config.milestones:
        kw["decay_epochs"] = config.milestones[0]
    kw.update(dict(config.sched_kwargs))
    scheduler, _ = sched.create_scheduler_v2(optimizer, **kw)
    return scheduler
