"""Choices and checks of the trainer features taken from timm and Lightning Fabric.

``--opt`` (timm's optimizer factory), ``--sched`` (timm's scheduler factory), ``--model-ema`` (timm's
``ModelEmaV3``), ``--mixup``/``--cutmix`` (timm's ``Mixup``), ``--grad-accum`` and ``--logger``. The checks
run in :meth:`attnkit.train.TrainConfig.__post_init__`, before any work; none of them imports timm
unless ``opt`` is set (then the name is checked against ``timm.optim.list_optimizers()``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "TIMM_SCHEDULERS",
    "LOGGERS",
    "MIXUP_MODES",
    "COMMON_OPTIMIZERS",
    "parse_loggers",
    "check_features",
    "mixup_enabled",
]

#: Names ``timm.scheduler.create_scheduler_v2`` accepts (timm 1.0).
TIMM_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly", "rsqrt", "constant")
#: Fabric loggers ``--logger`` accepts (comma separated).
LOGGERS = ("csv", "tensorboard", "wandb")
#: ``timm.data.Mixup`` modes: one mix per batch, per pair of images, or per image.
MIXUP_MODES = ("batch", "pair", "elem")
#: The optimizers named in ``--opt``'s help; any name of ``timm.optim.list_optimizers()`` works.
COMMON_OPTIMIZERS = (
    "sgd",
    "momentum",
    "adamw",
    "adam",
    "lamb",
    "lars",
    "lion",
    "rmsproptf",
    "adan",
    "nadamw",
)


def parse_loggers(spec: str | None, tensorboard: bool = False) -> list[str]:
    """The logger names of ``--logger`` (``"csv,tensorboard"``), plus ``tensorboard`` when the old flag is set.

    Args:
        spec: comma-separated names of :data:`LOGGERS`, or None/``""``/``"none"``.
        tensorboard: the ``--tensorboard`` flag (kept for compatibility; same as ``--logger tensorboard``).

    Returns:
        Unique names in the order given.

    Raises:
        ValueError: an unknown name (the message lists :data:`LOGGERS`).
    """
    names = [s.strip().lower() for s in str(spec or "").split(",") if s.strip()]
    names = [] if names == ["none"] else names
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise ValueError(f"logger must be a comma-separated subset of {LOGGERS}, got {bad} in {spec!r}")
    if tensorboard:
        names.append("tensorboard")
    return list(dict.fromkeys(names))


def mixup_enabled(config: Any) -> bool:
    """Whether the config mixes images (``mixup > 0`` or ``cutmix > 0``, with ``mixup_prob > 0``)."""
    return (config.mixup > 0 or config.cutmix > 0) and config.mixup_prob > 0


def _number(name: str, v: Any, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")


def _check_opt(c: Any) -> None:
    if c.opt is None:
        return
    from .._optional import require

    optim = require("timm.optim", extra="timm", feature="--opt (timm's optimizer factory)")
    name = str(c.opt).lower()
    known = optim.list_optimizers()
    if name not in known:
        raise ValueError(f"opt {c.opt!r} is not a timm optimizer; timm.optim.list_optimizers(): {known}")


def check_features(c: Any) -> None:
    """Validate the timm/Fabric trainer fields of a :class:`~attnkit.train.TrainConfig`.

    ``opt`` a timm optimizer name (None: attnkit's SGD), ``sched`` one of :data:`TIMM_SCHEDULERS` (None:
    ``scheduler``), ``min_lr``/``warmup_lr`` >= 0, ``model_ema_decay`` in (0, 1), ``mixup``/``cutmix`` >= 0,
    ``mixup_prob``/``mixup_switch_prob`` in [0, 1], ``mixup_mode`` in :data:`MIXUP_MODES`, ``grad_accum``
    >= 1, ``logger`` a comma-separated subset of :data:`LOGGERS`.

    Raises:
        ValueError: the message names the field, its valid values and the value given; also
            ``grad_accum > 1`` with ``optim_strategy="mirror"`` (Mirror Gradient's closure re-runs the
            forward pass of one batch, which cannot be split over accumulated micro-batches), and mixup or
            cutmix with an odd per-process ``batch_size`` (timm's ``Mixup`` mixes each image with its
            mirror image in the batch and asserts an even batch).
        ImportError: ``opt`` is set and timm is missing (``pip install 'attnkit[timm]'``).
    """
    if c.sched is not None and c.sched not in TIMM_SCHEDULERS:
        raise ValueError(f"sched must be one of {TIMM_SCHEDULERS} (or none), got {c.sched!r}")
    if c.mixup_mode not in MIXUP_MODES:
        raise ValueError(f"mixup_mode must be one of {MIXUP_MODES}, got {c.mixup_mode!r}")
    for name in ("min_lr", "warmup_lr", "mixup", "cutmix"):
        _number(name, getattr(c, name), 0.0, math.inf, lo_open=False, hi_open=True)
    _number("model_ema_decay", c.model_ema_decay, 0.0, 1.0, lo_open=True, hi_open=True)
    for name in ("mixup_prob", "mixup_switch_prob"):
        _number(name, getattr(c, name), 0.0, 1.0, lo_open=False, hi_open=False)
    if isinstance(c.grad_accum, bool) or not isinstance(c.grad_accum, int) or c.grad_accum < 1:
        raise ValueError(f"grad_accum must be an integer >= 1, got {c.grad_accum!r}")
    parse_loggers(c.logger)
    strategy = str(c.optim_strategy or "").lower()
    if c.grad_accum > 1 and strategy in ("mirror", "mg"):
        raise ValueError(
            "grad_accum > 1 cannot be combined with optim_strategy='mirror': Mirror Gradient's closure "
            "re-runs the forward pass of the whole batch; use a larger batch_size instead"
        )
    per_process = c.batch_size // max(1, c.devices * c.num_nodes)
    if mixup_enabled(c) and per_process % 2:
        raise ValueError(
            f"mixup/cutmix need an even batch per process (timm's Mixup pairs each image with its mirror in "
            f"the batch); batch_size {c.batch_size} over {c.devices * c.num_nodes} process(es) gives "
            f"{per_process}"
        )
    _check_opt(c)
