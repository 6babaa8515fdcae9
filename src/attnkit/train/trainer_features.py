"""The glue between :func:`attnkit.train.fit` and the timm/Fabric features of a run.

EMA evaluation and weights (:mod:`attnkit.train.ema`), mixup (:mod:`attnkit.train.mixing`), timm's
per-epoch scheduler step (:mod:`attnkit.train.optim_factory`), Fabric loggers
(:mod:`attnkit.train.loggers`) and user loaders (:mod:`attnkit.train.user_data`): each function here is
one step of ``fit`` that is a no-op when its feature is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ema import build_ema
from .loggers import keep_csv_rows
from .loop import evaluate, logger
from .mixing import build_mixup
from .optim_factory import TIMM_INTERVAL, updates_per_epoch
from .user_data import loaders_data

__all__ = [
    "Loaders",
    "Features",
    "build_features",
    "ema_columns",
    "evaluate_ema",
    "log_to_loggers",
    "finish_loggers",
    "resume_features",
    "save_ema_weights",
    "seed_numpy",
    "step_epoch_scheduler",
]


@dataclass
class Loaders:
    """The loaders given to ``fit(train_loader=, val_loader=, test_loader=)``."""

    train: Any
    val: Any = None
    test: Any = None

    def describe(self, num_classes: int | None):
        """Their :class:`~attnkit.train.user_data.UserData` (classes, channels, image size)."""
        return loaders_data(self.train, self.val, self.test, num_classes)

    def evals(self) -> dict[str, Any]:
        """``{"test": loader, "val": loader}`` for the ones given (the order of :func:`build_loaders`)."""
        return {k: v for k, v in (("test", self.test), ("val", self.val)) if v is not None}


@dataclass
class Features:
    """EMA, mixup function and criterion, and optimizer updates per epoch of one run."""

    ema: Any
    mixup_fn: Any
    criterion: Any
    updates_per_epoch: int


def build_features(config: Any, raw_model: Any, num_classes: int, batches: int) -> Features:
    """Build the run's EMA (on the model's device) and mixup; count the updates of an epoch of ``batches``."""
    mixup_fn, criterion = build_mixup(config, num_classes)
    return Features(
        ema=build_ema(raw_model, config),
        mixup_fn=mixup_fn,
        criterion=criterion,
        updates_per_epoch=updates_per_epoch(batches, config.grad_accum),
    )


def ema_columns(run: Any) -> list[str]:
    """The ``metrics.csv`` columns of the EMA evaluation (none without ``--model-ema``)."""
    if run.ema is None:
        return []
    cols = ["ema_eval_loss", "ema_eval_top1", "ema_eval_top5"] if "test" in run.eval_loaders else []
    return cols + (["ema_val_loss", "ema_val_top1"] if "val" in run.eval_loaders else [])


def evaluate_ema(run: Any, row: dict[str, Any]) -> None:
    """Evaluate the EMA weights on every split into ``row`` (``ema_eval_*``, ``ema_val_*``)."""
    if run.ema is None:
        return
    for split, loader in run.eval_loaders.items():
        res = evaluate(
            run.ema.module, loader, engine=run.engine, channels_last=run.config.channels_last, autocast=True
        )
        p = "ema_eval" if split == "test" else "ema_val"
        row[f"{p}_loss"], row[f"{p}_top1"] = res["loss"], res["top1"]
        if split == "test":
            row["ema_eval_top5"] = res["top5"]


def log_to_loggers(run: Any, row: dict[str, Any]) -> None:
    """Rank 0: the epoch row to the Fabric loggers at ``step = global_step``, then flush them to disk."""
    fabric = run.engine.fabric
    if not fabric.loggers:
        return
    fabric.log_dict(
        {k: float(v) for k, v in row.items() if isinstance(v, (int, float))}, step=row["global_step"]
    )
    for lg in fabric.loggers:
        if callable(getattr(lg, "save", None)):
            lg.save()


def finish_loggers(engine: Any) -> None:
    """Finalize every Fabric logger (files flushed and closed)."""
    for lg in engine.fabric.loggers:
        lg.finalize("success")


def resume_features(run: Any, ckpt: dict[str, Any], path: Any) -> None:
    """After a checkpoint is loaded: an EMA missing from it restarts from the weights; CSV log rows kept."""
    if run.ema is not None and "model_ema" not in ckpt:
        logger.warning("resume: %s holds no EMA weights; the EMA restarts from the loaded weights", path)
        run.ema.module.load_state_dict(run.raw_model.state_dict())
    if run.engine.is_global_zero:
        keep_csv_rows(run.engine.fabric.loggers, run.global_step)


def save_ema_weights(run: Any, last: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: the final EMA weights in ``<run_dir>/ema/``; returns the summary's EMA entries."""
    if run.ema is None:
        return {}
    from .build import save_weights

    folder = run.config.run_dir / "ema"
    folder.mkdir(exist_ok=True)
    name = save_weights(run.ema.module, folder)

    def num(k: str):
        return float(last[k]) if last.get(k) not in (None, "") else None

    return {
        "ema_weights": f"ema/{name}",
        "final_ema_eval_top1": num("ema_eval_top1"),
        "final_ema_eval_top5": num("ema_eval_top5"),
        "final_ema_val_top1": num("ema_val_top1"),
    }


def seed_numpy(run: Any, seed: int) -> None:
    """With mixup: seed NumPy's global RNG (which timm's ``Mixup`` draws from) for this epoch."""
    if run.mixup_fn is not None:
        import numpy as np

        np.random.seed(int(seed) % 2**32)


def step_epoch_scheduler(run: Any, epoch: int, row: dict[str, Any]) -> None:
    """For timm schedules: ``scheduler.step(epoch + 1, metric)`` after each epoch, as timm's ``train.py`` does.

    ``metric`` is the selection top-1 of this epoch (``plateau`` skips epochs without an evaluation).
    """
    if run.interval != TIMM_INTERVAL:
        return
    metric = row.get("eval_top1" if run.select_on == "test" else "val_top1")
    if metric is None and run.config.sched == "plateau":
        return
    run.scheduler.step(epoch + 1, metric)
