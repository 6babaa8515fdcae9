"""Fabric loggers of a run (``--logger csv,tensorboard,wandb``): step-level and epoch-level metrics.

- ``csv``: ``lightning_fabric.loggers.CSVLogger`` -> ``<run_dir>/csv/metrics.csv`` (a row per logged
  step; the epoch-level ``<run_dir>/metrics.csv`` is written regardless).
- ``tensorboard``: ``lightning_fabric.loggers.TensorBoardLogger`` -> ``<run_dir>/tb/`` (needs
  ``tensorboard``: ``pip install 'attnkit[tensorboard]'``).
- ``wandb``: Weights & Biases, **offline** unless the environment sets ``WANDB_MODE`` -> ``<run_dir>/wandb/``
  (``wandb sync`` uploads it later; needs ``pip install 'attnkit[wandb]'``).

Every ``log_interval`` optimizer updates the loop logs ``train_loss_step`` (the loss of that batch) and
``lr`` at ``step = global_step`` (optimizer updates); after each epoch the epoch row (``train_loss``,
``eval_top1``, ``ema_eval_top1``, ...) is logged at the epoch's last update. Packages are imported only when
their logger is asked for.

Deviations:
    Lightning's own ``WandbLogger`` for Fabric lives in ``wandb.integration.lightning.fabric`` and imports
    the full ``lightning`` package; :class:`WandbOfflineLogger` is a 40-line Fabric ``Logger`` over
    ``wandb.init`` so that attnkit needs only ``lightning-fabric`` and ``wandb``. Fabric's ``CSVLogger``
    deletes an existing ``metrics.csv`` when it starts; on resume attnkit reads the rows up to the
    resumed step back in first (:func:`keep_csv_rows`), so the file holds each step once.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from .._optional import require
from .features import parse_loggers

__all__ = ["build_loggers", "keep_csv_rows"]  # and WandbOfflineLogger, built on first access


@functools.lru_cache(maxsize=1)
def _wandb_logger_class():
    """Build :class:`WandbOfflineLogger` on first use (Fabric is imported only then)."""
    from lightning_fabric.loggers.logger import Logger

    return type("WandbOfflineLogger", (_WandbOfflineLogger, Logger), {"__module__": __name__})


def __getattr__(name: str):
    if name == "WandbOfflineLogger":
        return _wandb_logger_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _WandbOfflineLogger:
    """A Lightning Fabric ``Logger`` writing to Weights & Biases, offline by default (``WandbOfflineLogger``).

    Args:
        save_dir: folder of the ``wandb/`` run files (the run folder).
        name: the run's display name.
        config: hyper-parameters recorded with the run (the resolved ``TrainConfig``).
        project: the W&B project (default ``attnkit``).
        run_id: a stable id (default: derived from ``save_dir``, so a resumed run continues its W&B run).

    Raises:
        ImportError: ``wandb`` is missing (``pip install 'attnkit[wandb]'``).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str,
        config: dict[str, Any] | None = None,
        project: str = "attnkit",
        run_id: str | None = None,
    ):
        super().__init__()
        self._wandb = require("wandb", extra="wandb", feature="--logger wandb")
        self._save_dir, self._name, self._config, self._project = str(save_dir), name, config, project
        digest = hashlib.sha1(str(Path(save_dir).resolve()).encode()).hexdigest()[:10]
        self._id = run_id or f"{name[:40]}-{digest}".replace("/", "-")
        self._run = None

    @property
    def name(self) -> str:
        """The run's display name."""
        return self._name

    @property
    def version(self) -> str:
        """The W&B run id."""
        return self._id

    @property
    def experiment(self):
        """The ``wandb`` run, started on first use (rank 0 only)."""
        if self._run is None:
            self._run = self._wandb.init(
                dir=self._save_dir,
                project=self._project,
                name=self._name,
                id=self._id,
                config=self._config,
                mode=os.environ.get("WANDB_MODE", "offline"),
                resume="allow",
                reinit="create_new",
            )
        return self._run

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalars at ``step`` (rank 0 only, through Fabric)."""
        from lightning_fabric.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank == 0:
            self.experiment.log({k: float(v) for k, v in metrics.items()}, step=step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Update the run's config."""
        self.experiment.config.update(dict(params), allow_val_change=True)

    def finalize(self, status: str) -> None:
        """Finish the run (files flushed)."""
        if self._run is not None:
            self._run.finish(exit_code=0 if status == "success" else 1)
            self._run = None


def build_loggers(config: Any) -> list:
    """The Fabric loggers named by ``config.logger`` (and ``config.tensorboard``), in the run folder.

    Returns:
        A list for ``Fabric(loggers=...)`` (empty when none is asked for).

    Raises:
        ValueError: an unknown logger name.
        ImportError: ``tensorboard`` or ``wandb`` missing; the message names the attnkit extra.
    """
    names = parse_loggers(config.logger, tensorboard=config.tensorboard)
    out: list = []
    run_dir = str(config.run_dir)
    for name in names:
        if name == "csv":
            from lightning_fabric.loggers import CSVLogger

            out.append(CSVLogger(root_dir=run_dir, name="csv", version="", flush_logs_every_n_steps=10**9))
        elif name == "tensorboard":
            require("tensorboard", extra="tensorboard", feature="--logger tensorboard")
            from lightning_fabric.loggers import TensorBoardLogger

            out.append(TensorBoardLogger(root_dir=run_dir, name="tb", version=""))
        else:
            out.append(_wandb_logger_class()(run_dir, config.resolved_run_name, config=config.to_dict()))
    return out


def keep_csv_rows(loggers: list, max_step: int) -> None:
    """On resume: feed the rows with ``step <= max_step`` of an existing CSV log back into its logger.

    Fabric's ``CSVLogger`` removes ``metrics.csv`` when its writer starts; the kept rows are written again
    on the next save, so the file ends up with every step once.
    """
    from lightning_fabric.loggers import CSVLogger

    for lg in loggers:
        if not isinstance(lg, CSVLogger):
            continue
        path = Path(lg.log_dir) / "metrics.csv"
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [
                    r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= max_step
                ]
        with warnings.catch_warnings():  # its "will be deleted" warning: the rows are kept just below
            warnings.simplefilter("ignore")
            exp = lg.experiment  # starts the writer (which removes the file)
        exp.metrics = [{k: v for k, v in r.items() if v != ""} for r in rows] + exp.metrics
        exp.save()
