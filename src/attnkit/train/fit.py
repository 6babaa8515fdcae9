"""``fit(config) -> summary``: one training run end to end, through the :class:`Engine`.

Run folder (``<out_dir>/<run_name>/``): ``config.yaml``, ``env.json``, ``metrics.csv`` (a row per epoch,
flushed), ``last.ckpt`` / ``best.ckpt`` (atomic), ``model.pt`` (or ``model.safetensors``), ``summary.json``
(best AND final eval top-1), ``report.md``, ``curves.png``, the Fabric loggers' ``tb/``, ``csv/``, ``wandb/``
(``--logger``) and ``ema/`` (``--model-ema``). The timm/Fabric features are wired in through
:mod:`attnkit.train.trainer_features`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import RunLock
from .._runtime import set_threads
from .build import (
    ModelFn,
    build_engine,
    build_loaders,
    build_model,
    check_finite_state,
    check_num_classes,
    count_macs,
    diverged,
    epoch_seed,
    resolve_resume,
    set_loader_epoch,
    setup_logging,
)
from .checkpoint import CheckpointError, check_compatible, make_state, read_checkpoint, set_rng_state
from .config import TrainConfig
from .engine import Engine
from .loop import evaluate, logger, train_one_epoch
from .report import MetricsWriter
from .run_files import _log_epoch, _start_files, _summary
from .schedule import build_optimizer, build_scheduler, scheduler_interval
from .trainer_features import (
    Loaders,
    build_features,
    evaluate_ema,
    finish_loggers,
    resume_features,
    seed_numpy,
    step_epoch_scheduler,
)

__all__ = [
    "fit",
    "StopTraining",
    "build_engine",
    "build_model",
    "build_loaders",
    "epoch_seed",
    "resolve_resume",
]


class StopTraining(Exception):
    """Raise from a callback to end the run after the current epoch's files are written."""


@dataclass
class _Run:
    """Everything one training process holds between the set-up, resume, epoch and summary steps."""

    config: TrainConfig
    engine: Engine
    data: Any
    model: nn.Module
    raw_model: nn.Module
    fwd_model: nn.Module
    optimizer: Any
    scheduler: Any
    interval: str
    train_loader: Any
    eval_loaders: dict[str, Any]
    params: int
    macs: int | None
    threads: int
    t_start: float
    resume_path: Path | None = None
    start_epoch: int = 0
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    last_eval: dict[str, Any] = field(default_factory=dict)
    writer: MetricsWriter | None = None
    ema: Any = None  # timm ModelEmaV3 (--model-ema)
    mixup_fn: Any = None  # timm Mixup (--mixup/--cutmix)
    criterion: Any = None  # its SoftTargetCrossEntropy
    user_loaders: bool = False  # fit(train_loader=...): the user's loaders, used as given

    @property
    def select_on(self) -> str:
        """The split the best epoch is chosen on: ``val`` when there is one, else ``test``."""
        return "val" if "val" in self.eval_loaders else "test"


def _check_run_folder(config: TrainConfig, engine: Engine) -> Path | None:
    """Create the run folder; refuse to overwrite a run unless resuming. Returns the resume checkpoint."""
    if engine.is_global_zero:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    resume_path = resolve_resume(config)
    if resume_path is None and (config.run_dir / "last.ckpt").exists():
        raise FileExistsError(
            f"{config.run_dir} already holds a run (last.ckpt); pass --resume auto to continue it or "
            "choose another --run-name / --out-dir"
        )
    engine.barrier()
    return resume_path


def _setup(
    engine: Engine, config: TrainConfig, model_fn: ModelFn | None, user: Loaders | None = None
) -> _Run:
    """Threads, run folder, data (rank 0 downloads first), model, optimizer, loaders and schedule.

    ``user`` holds the loaders given to :func:`fit` (then no dataset is built and they are used as given).
    """
    from ..data.datasets import build_from_config

    t_start = time.perf_counter()
    zero = engine.is_global_zero
    if zero and config.progress != "none":
        setup_logging()
    threads = set_threads(config.threads, config.workers)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    resume_path = _check_run_folder(config, engine)
    if user is not None:
        data = user.describe(config.num_classes)
    else:
        if config.download and not zero:
            engine.barrier()
        data = build_from_config(config, download=config.download and zero)
        if config.download and zero:
            engine.barrier()
    check_num_classes(config, data)

    # same seed on every rank -> identical initial weights
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if model_fn is None and config.init:  # a pruned network from ``attnkit prune`` (needs attnkit[prune])
        from ..prune import PrunedModelFn

        model_fn = PrunedModelFn(config.init)
    model = model_fn(config, data) if model_fn is not None else build_model(config, data)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, data) if zero else None
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    optimizer = build_optimizer(model, config)
    model, optimizer = engine.setup(model, optimizer)
    raw_model = getattr(model, "module", raw_model)
    if user is not None:
        train_loader, eval_loaders = user.train, user.evals()
    else:
        train_loader, eval_loaders = build_loaders(
            config, data, rank=engine.global_rank, world_size=engine.world_size
        )
    train_loader, *ev = engine.setup_dataloaders(train_loader, *eval_loaders.values())
    feats = build_features(config, raw_model, data.num_classes, len(train_loader))
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=feats.updates_per_epoch)
    return _Run(
        config=config,
        engine=engine,
        data=data,
        model=model,
        raw_model=raw_model,
        fwd_model=torch.compile(model, mode=config.compile) if config.compile else model,
        optimizer=optimizer,
        scheduler=scheduler,
        interval=scheduler_interval(config),
        train_loader=train_loader,
        eval_loaders=dict(zip(eval_loaders, ev)),
        params=params,
        macs=macs,
        threads=threads,
        t_start=t_start,
        resume_path=resume_path,
        ema=feats.ema,
        mixup_fn=feats.mixup_fn,
        criterion=feats.criterion,
        user_loaders=user is not None,
    )


def _resume(run: _Run) -> None:
    """Restore model, optimizer, schedule, counters and RNG from ``run.resume_path`` (if any)."""
    config, engine, path = run.config, run.engine, run.resume_path
    if path is None:
        if engine.is_global_zero and config.resume == "auto":
            logger.info("--resume auto: no %s, starting fresh", config.run_dir / "last.ckpt")
        return
    ckpt = read_checkpoint(path)
    check_compatible(ckpt["config"], config.to_dict(), path)
    try:
        objs = {"model": run.model, "optimizer": run.optimizer, "scheduler": run.scheduler}
        if "scaler" in ckpt and engine.scaler is not None:
            objs["scaler"] = engine.scaler
        if run.ema is not None and "model_ema" in ckpt:
            objs["model_ema"] = run.ema
        engine.load(path, objs)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this model/optimizer: {e}") from None
    run.start_epoch, run.global_step = int(ckpt["epoch"]) + 1, int(ckpt["global_step"])
    run.best_metric, run.best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
    run.last_eval = dict(ckpt.get("last_eval") or {})
    set_rng_state(ckpt["rng"])
    resume_features(run, ckpt, path)
    if engine.is_global_zero:
        lr = run.optimizer.param_groups[0]["lr"]
        logger.info("resuming from %s at epoch %d (lr %.5g)", path, run.start_epoch, lr)


def _evaluate_epoch(run: _Run, row: dict[str, Any]) -> bool:
    """Evaluate every split into ``row``; returns whether the selection metric improved."""
    config = run.config
    eval_model, autocast = run.fwd_model, False
    if config.eval_reparam:
        from ..reparam import reparameterize_model

        eval_model, autocast = reparameterize_model(run.raw_model), True
    for split, loader in run.eval_loaders.items():
        res = evaluate(
            eval_model, loader, engine=run.engine, channels_last=config.channels_last, autocast=autocast
        )
        p = "eval" if split == "test" else "val"
        row[f"{p}_loss"], row[f"{p}_top1"] = res["loss"], res["top1"]
        if split == "test":
            row["eval_top5"] = res["top5"]
    evaluate_ema(run, row)
    run.last_eval = dict(row)
    metric = row["eval_top1" if run.select_on == "test" else "val_top1"]
    if metric > run.best_metric:
        run.best_metric, run.best_epoch = metric, row["epoch"]
        return True
    return False


def _run_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """Train one epoch, evaluate when due, write the metrics row and the checkpoints; returns the row."""
    config, engine = run.config, run.engine
    seed = epoch_seed(config.seed, engine.global_rank, epoch)
    random.seed(seed)
    torch.manual_seed(seed)
    if not run.user_loaders:
        set_loader_epoch(run.train_loader, epoch)
    seed_numpy(run, seed)
    stats = train_one_epoch(
        run.fwd_model,
        run.optimizer,
        run.train_loader,
        engine=engine,
        epoch=epoch,
        global_step=run.global_step,
        scheduler=run.scheduler,
        scheduler_interval=run.interval,
        label_smoothing=config.label_smoothing,
        grad_clip=config.grad_clip,
        channels_last=config.channels_last,
        raw_model=run.raw_model,
        log_interval=config.log_interval,
        progress=config.progress,
        grad_accum=config.grad_accum,
        mixup_fn=run.mixup_fn,
        criterion=run.criterion,
        ema=run.ema,
        log_fn=engine.fabric.log_dict if engine.fabric.loggers else None,
    )
    run.global_step = stats["global_step"]
    if run.interval == "epoch":
        run.scheduler.step()
    row = {k: v for k, v in stats.items() if k not in ("samples", "global_step")}
    row.update(epoch=epoch, global_step=run.global_step)
    due = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
    improved = _evaluate_epoch(run, row) if due else False
    step_epoch_scheduler(run, epoch, row)
    if engine.is_global_zero:
        _log_epoch(run, row)
    check_finite_state(run.raw_model, epoch, run.global_step, row)  # never checkpoint a diverged state
    if improved:
        _save(run, epoch, config.run_dir / "best.ckpt")
    _save(run, epoch, config.run_dir / "last.ckpt")
    return row


def _save(run: _Run, epoch: int, path: Path) -> None:
    """Checkpoint the run's current state as completed ``epoch`` (-1: before the first epoch)."""
    state = make_state(
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        epoch=epoch,
        global_step=run.global_step,
        best_metric=run.best_metric,
        best_epoch=run.best_epoch,
        config=run.config.to_dict(),
        scaler=run.engine.scaler,
        model_ema=run.ema,
        last_eval=run.last_eval,
    )
    run.engine.save(path, state)


def _fit_worker(
    engine: Engine,
    config: TrainConfig,
    model_fn: ModelFn | None,
    callbacks: Sequence[Callable[[dict], Any]],
    user: Loaders | None = None,
) -> dict[str, Any]:
    """The body of :func:`fit`, run on every process: set-up, resume, epochs, summary."""
    previous_threads = torch.get_num_threads()
    lock = RunLock(config.run_dir, "attnkit train") if engine.is_global_zero else None
    try:
        if lock is not None:
            lock.acquire()  # one writer per run folder; removes temporary files of killed runs
        run = _setup(engine, config, model_fn, user)
        _resume(run)
        _start_files(run)
        if run.resume_path is None:  # epoch -1: the initial weights, so a divergence keeps a finite last.ckpt
            _save(run, -1, config.run_dir / "last.ckpt")
        for epoch in range(run.start_epoch, config.epochs):
            try:
                row = _run_epoch(run, epoch)
            except FloatingPointError as e:
                raise diverged(e, config.run_dir / "last.ckpt") from None
            info = {
                "epoch": epoch,
                "row": row,
                "model": run.raw_model,
                "engine": engine,
                "run_dir": config.run_dir,
            }
            if _call_back(callbacks, info):
                break
        summary = _summary(run) if engine.is_global_zero else {}
        finish_loggers(engine)
        engine.barrier()
        return summary
    finally:
        torch.set_num_threads(previous_threads)
        if lock is not None:
            lock.release()


def _call_back(callbacks: Sequence[Callable[[dict], Any]], info: dict[str, Any]) -> bool:
    """Call every callback; True when one raised :class:`StopTraining`."""
    stop = False
    for cb in callbacks:
        try:
            cb(info)
        except StopTraining:
            stop = True
    return stop


def fit(
    config: TrainConfig,
    *,
    model_fn: ModelFn | None = None,
    callbacks: Sequence[Callable[[dict], Any]] = (),
    train_loader: Any = None,
    val_loader: Any = None,
    test_loader: Any = None,
) -> dict[str, Any]:
    """Train and evaluate one model as configured; writes the run folder and returns its summary.

    Args:
        config: a :class:`TrainConfig` (see :func:`attnkit.train.resolve_config` for CLI/YAML/recipes).
        model_fn: optional ``model_fn(config, data) -> nn.Module`` replacing :func:`build_model` (must be
            picklable, i.e. module-level, for ``ddp_spawn``).
        callbacks: called on every rank after each epoch's files are written with ``{"epoch", "row",
            "model", "engine", "run_dir"}``; raising :class:`StopTraining` ends the run cleanly.
        train_loader: the user's own training loader (any iterable of ``(x, y)`` batches, e.g. a
            ``DataLoader``; see :mod:`attnkit.train.user_data` and :class:`~attnkit.train.HFImageDataset`);
            ``config.dataset``, ``batch_size``, ``workers`` and ``train_subset`` are then not used. Its
            order is the loader's own; a shuffling ``DataLoader`` without a ``generator`` draws from the
            torch RNG that the trainer seeds per epoch, so ``--resume`` stays exact. With several
            processes the loaders must shard the data themselves.
        val_loader: evaluated as the ``val`` split (``val_*`` columns; the best epoch is chosen on it).
        test_loader: evaluated as the ``test`` split (``eval_*`` columns).

    Returns:
        The summary dict also written to ``summary.json`` (rank 0's): ``best_eval_top1`` and
        ``best_epoch``, ``final_eval_top1``/``top5``/``loss``, ``params``, ``macs``, ``wall_time_s``,
        ``selection``, ``run_dir``, ``config``. Top-1/top-5 are percent.

    Raises:
        ValueError: invalid precision/device combination, batch not divisible by the world size,
            a checkpoint for another model (:class:`CheckpointError`).
        FileExistsError: the run folder already has ``last.ckpt`` and ``resume`` is not set.
        RunLockedError: another live process is writing the run folder (an ``OSError``).
        FloatingPointError: the training diverged (a non-finite loss or weight); the message names the
            epoch and step, ``last.ckpt`` keeps the last finite state and no final weights are written.
        FileNotFoundError: missing dataset or ``--resume PATH``.
    """
    user = Loaders(train_loader, val_loader, test_loader) if train_loader is not None else None
    if user is None and (val_loader is not None or test_loader is not None):
        raise ValueError("fit(val_loader=/test_loader=) needs train_loader= as well")
    engine = build_engine(config)
    out = engine.launch(_fit_worker, config, model_fn, tuple(callbacks), user)
    return out if isinstance(out, dict) else {}
