"""``fit(config) -> summary``: one training run end to end, through the :class:`Engine`.

Run folder (``<out_dir>/<run_name>/``): ``config.yaml``, ``env.json``, ``metrics.csv`` (a row per epoch,
flushed), ``last.ckpt`` / ``best.ckpt`` (atomic), ``model.pt`` (or ``model.safetensors``), ``summary.json``
(best AND final eval top-1), ``report.md``, ``curves.png`` and ``tb/`` with ``tensorboard=True``.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import random
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .._io import atomic_torch_save
from .checkpoint import CheckpointError, check_compatible, make_state, read_checkpoint, set_rng_state
from .config import TrainConfig, save_config
from .engine import Engine
from .loop import aux_columns, evaluate, logger, train_one_epoch
from .report import MetricsWriter, plot_curves, read_metrics, write_json, write_report
from .schedule import build_optimizer, build_scheduler, scheduler_interval

__all__ = [
    "fit",
    "build_engine",
    "build_model",
    "build_loaders",
    "epoch_seed",
    "resolve_resume",
    "StopTraining",
]

ModelFn = Callable[[TrainConfig, Any], nn.Module]


class StopTraining(Exception):
    """Raise from a callback to end the run after the current epoch's files are written."""


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of an epoch's augmentation/dropout RNG: a function of (seed, rank, epoch) only."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101) % (2**63 - 1)


def _setup_logging() -> None:
    lg = logging.getLogger("attnkit")
    if not any(getattr(h, "_attnkit", False) for h in lg.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        h._attnkit = True  # type: ignore[attr-defined]
        lg.addHandler(h)
    lg.setLevel(logging.INFO)


def build_engine(config: TrainConfig) -> Engine:
    """An :class:`Engine` from the config's device/precision fields (validated before Fabric is built)."""
    loggers = None
    if config.tensorboard:
        try:
            import tensorboard  # noqa: F401
            from lightning_fabric.loggers import TensorBoardLogger
        except ImportError as e:
            raise ImportError(
                "--tensorboard needs the tensorboard package: pip install 'attnkit[tensorboard]'"
            ) from e
        loggers = [TensorBoardLogger(root_dir=str(config.run_dir), name="tb", version="")]
    return Engine(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        num_nodes=config.num_nodes,
        find_unused_parameters=config.find_unused_parameters,
        sync_bn=config.sync_bn,
        loggers=loggers,
    )


def build_model(config: TrainConfig, data) -> nn.Module:
    """``attnkit.create_model`` from the config's model fields; ``num_classes``/``in_chans`` from ``data``."""
    from ..models import create_model

    return create_model(
        config.model,
        num_classes=config.num_classes or data.num_classes,
        in_chans=data.in_chans,
        attn=config.attn,
        attn_kwargs=dict(config.attn_kwargs) or None,
        sharing=config.sharing,
        scheme=config.scheme,
        **config.model_kwargs,
    )


def build_loaders(config: TrainConfig, data, *, rank: int = 0, world_size: int = 1):
    """Train loader (:class:`TrainSampler`, per-device batch) and eval loaders (unpadded shards).

    Returns:
        ``(train_loader, {"test": loader, "val": loader?})``.

    Raises:
        ValueError: ``batch_size`` not divisible by the world size.
    """
    from ..data import EvalShardSampler, TrainSampler

    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} (global) is not divisible by world size {world_size}"
        )
    per_dev = config.batch_size // world_size
    sampler = TrainSampler(len(data.train), seed=config.seed, rank=rank, world_size=world_size)
    kw: dict[str, Any] = {"num_workers": config.workers, "persistent_workers": config.workers > 0}
    train = DataLoader(data.train, batch_size=per_dev, sampler=sampler, drop_last=config.drop_last, **kw)
    eval_bs = max(1, config.eval_batch_size // world_size)
    evals = {
        "test": DataLoader(
            data.test,
            batch_size=eval_bs,
            **kw,
            sampler=EvalShardSampler(len(data.test), rank=rank, world_size=world_size),
        )
    }
    if data.val is not None:
        evals["val"] = DataLoader(
            data.val,
            batch_size=eval_bs,
            **kw,
            sampler=EvalShardSampler(len(data.val), rank=rank, world_size=world_size),
        )
    return train, evals


def resolve_resume(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from: ``auto`` -> ``<run_dir>/last.ckpt`` if it exists, a path -> that file.

    Raises:
        FileNotFoundError: an explicit path that does not exist.
    """
    if not config.resume:
        return None
    if config.resume == "auto":
        p = config.run_dir / "last.ckpt"
        return p if p.is_file() else None
    p = Path(config.resume)
    if not p.is_file():
        raise FileNotFoundError(f"--resume {p}: no such checkpoint")
    return p


def _env(config: TrainConfig, engine: Engine, data) -> dict[str, Any]:
    import lightning_fabric
    import numpy
    import torchvision

    from .. import __version__

    dev = engine.device
    return {
        "attnkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning_fabric": lightning_fabric.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "world_size": engine.world_size,
        "num_threads": torch.get_num_threads(),
        "precision": config.precision,
        "command": sys.argv,
        "start_time": datetime.datetime.now().isoformat(timespec="seconds"),
        "data": data.notes,
    }


def _macs(model: nn.Module, data) -> int | None:
    """MACs per image at the training size via ``attnkit.profile`` (None when unavailable)."""
    try:
        import copy

        from ..profile import profile

        m = copy.deepcopy(model).cpu().float()
        return int(profile(m, input_size=(data.in_chans, *data.img_size)).macs)
    except Exception as e:  # profile.py belongs to another module; never fail a run over it
        logger.info("MACs not computed (%s: %s)", type(e).__name__, e)
        return None


def _save_weights(model: nn.Module, run_dir: Path) -> str:
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        atomic_torch_save(sd, run_dir / "model.pt")
        return "model.pt"
    tmp = run_dir / "model.safetensors.tmp"
    save_file(sd, str(tmp))
    os.replace(tmp, run_dir / "model.safetensors")
    return "model.safetensors"


def _fit_worker(
    engine: Engine, config: TrainConfig, model_fn: ModelFn | None, callbacks: Sequence[Callable[[dict], Any]]
) -> dict[str, Any]:
    """The body of :func:`fit`, run on every process."""
    from ..data import build as build_data

    t_start = time.perf_counter()
    rank, world = engine.global_rank, engine.world_size
    zero = engine.is_global_zero
    if zero and config.progress != "none":
        _setup_logging()
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = config.run_dir
    if zero:
        run_dir.mkdir(parents=True, exist_ok=True)
    resume_path = resolve_resume(config)
    if resume_path is None and (run_dir / "last.ckpt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run (last.ckpt); pass --resume auto to continue it or "
            "choose another --run-name / --out-dir"
        )
    engine.barrier()

    # data (rank 0 downloads first when allowed)
    dkw = {"test_subset": config.test_subset} if config.test_subset is not None else {}
    bargs = dict(
        data_dir=config.data_dir,
        train_subset=config.train_subset,
        val_split=config.val_split,
        seed=config.seed,
        augment=config.augment,
        **dkw,
    )
    if config.download and not zero:
        engine.barrier()
    data = build_data(config.dataset, download=config.download and zero, **bargs)
    if config.download and zero:
        engine.barrier()

    # model, optimizer, schedule (same seed on every rank -> identical initial weights)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = model_fn(config, data) if model_fn is not None else build_model(config, data)
    params = sum(p.numel() for p in model.parameters())
    macs = _macs(model, data) if zero else None
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    optimizer = build_optimizer(model, config)
    model, optimizer = engine.setup(model, optimizer)
    raw_model = getattr(model, "module", raw_model)
    train_loader, eval_loaders = build_loaders(config, data, rank=rank, world_size=world)
    sampler = train_loader.sampler
    train_loader, *ev = engine.setup_dataloaders(train_loader, *eval_loaders.values())
    eval_loaders = dict(zip(eval_loaders, ev))
    interval = scheduler_interval(config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=len(train_loader))

    # resume
    start_epoch, global_step, best_metric, best_epoch = 0, 0, -math.inf, -1
    last_eval: dict[str, Any] = {}
    if resume_path is not None:
        ckpt = read_checkpoint(resume_path)
        check_compatible(ckpt["config"], config.to_dict(), resume_path)
        try:
            objs = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
            if "scaler" in ckpt and engine.scaler is not None:
                objs["scaler"] = engine.scaler
            engine.load(resume_path, objs)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"checkpoint {resume_path} does not fit this model/optimizer: {e}"
            ) from None
        start_epoch, global_step = int(ckpt["epoch"]) + 1, int(ckpt["global_step"])
        best_metric, best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
        set_rng_state(ckpt["rng"])
        if zero:
            logger.info(
                "resuming from %s at epoch %d (lr %.5g)",
                resume_path,
                start_epoch,
                optimizer.param_groups[0]["lr"],
            )
    elif zero and config.resume == "auto":
        logger.info("--resume auto: no %s, starting fresh", run_dir / "last.ckpt")

    extra = aux_columns(raw_model) + (["val_loss", "val_top1"] if "val" in eval_loaders else [])
    writer = None
    if zero:
        writer = MetricsWriter(
            run_dir / "metrics.csv", extra, resume_epoch=start_epoch - 1 if resume_path else None
        )
        save_config(config, run_dir / "config.yaml")
        env = _env(config, engine, data)
        if resume_path is not None:
            env["resumed_from"] = str(resume_path)
        write_json(run_dir / "env.json", env)
        logger.info(
            "run %s: %s params %s, %d train / %d test images, world size %d, %s",
            run_dir,
            config.model,
            f"{params:,}",
            len(data.train),
            len(data.test),
            world,
            data.notes,
        )
    fwd_model = torch.compile(model, mode=config.compile) if config.compile else model
    select_on = "val" if "val" in eval_loaders else "test"

    for epoch in range(start_epoch, config.epochs):
        random.seed(epoch_seed(config.seed, rank, epoch))
        torch.manual_seed(epoch_seed(config.seed, rank, epoch))
        sampler.set_data_epoch(epoch)
        stats = train_one_epoch(
            fwd_model,
            optimizer,
            train_loader,
            engine=engine,
            epoch=epoch,
            global_step=global_step,
            scheduler=scheduler,
            scheduler_interval=interval,
            label_smoothing=config.label_smoothing,
            grad_clip=config.grad_clip,
            channels_last=config.channels_last,
            raw_model=raw_model,
            log_interval=config.log_interval,
            progress=config.progress,
        )
        global_step = stats["global_step"]
        if interval == "epoch":
            scheduler.step()
        row = {k: v for k, v in stats.items() if k not in ("samples", "global_step")}
        row.update(epoch=epoch, global_step=global_step)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            eval_model, autocast = fwd_model, False
            if config.eval_reparam:
                from ..reparam import reparameterize_model

                eval_model, autocast = reparameterize_model(raw_model), True
            for split, loader in eval_loaders.items():
                res = evaluate(
                    eval_model, loader, engine=engine, channels_last=config.channels_last, autocast=autocast
                )
                p = "eval" if split == "test" else "val"
                row[f"{p}_loss"], row[f"{p}_top1"] = res["loss"], res["top1"]
                if split == "test":
                    row["eval_top5"] = res["top5"]
            last_eval = dict(row)
            metric = row[f"{'eval' if select_on == 'test' else 'val'}_top1"]
            improved = metric > best_metric
            if improved:
                best_metric, best_epoch = metric, epoch
        else:
            improved = False
        if zero:
            writer.write(row)
            logger.info(
                "epoch %d/%d lr %.5g train loss %.4f top1 %.2f | eval loss %s top1 %s | %.1f s, %.0f img/s",
                epoch,
                config.epochs - 1,
                row["lr"],
                row["train_loss"],
                row["train_top1"],
                f"{row['eval_loss']:.4f}" if "eval_loss" in row else "-",
                f"{row['eval_top1']:.2f}" if "eval_top1" in row else "-",
                row["epoch_time_s"],
                row["train_samples_per_s"],
            )
            if config.tensorboard:
                engine.fabric.log_dict({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        state = make_state(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            epoch=epoch,
            global_step=global_step,
            best_metric=best_metric,
            best_epoch=best_epoch,
            config=config.to_dict(),
            scaler=engine.scaler,
        )
        if improved:
            engine.save(run_dir / "best.ckpt", state)
        engine.save(run_dir / "last.ckpt", state)
        stop = False
        for cb in callbacks:
            try:
                cb({"epoch": epoch, "row": row, "model": raw_model, "engine": engine, "run_dir": run_dir})
            except StopTraining:
                stop = True
        if stop:
            break

    # final files (rank 0)
    summary: dict[str, Any] = {}
    if zero:
        weights = _save_weights(raw_model, run_dir)
        rows = read_metrics(run_dir / "metrics.csv")
        evald = [r for r in rows if r.get("eval_top1")]
        last = last_eval or (evald[-1] if evald else {})

        def num(r, k):
            return float(r[k]) if r.get(k) not in (None, "") else None

        best_row = next((r for r in evald if int(r["epoch"]) == best_epoch), {})

        summary = {
            "run_name": config.resolved_run_name,
            "run_dir": str(run_dir),
            "model": config.model,
            "attn": config.attn,
            "dataset": config.dataset,
            "seed": config.seed,
            "world_size": world,
            "epochs_run": len(rows),
            "epochs": config.epochs,
            "best_eval_top1": None
            if best_epoch < 0
            else best_metric
            if select_on == "test"
            else num(best_row, "eval_top1"),
            "best_epoch": None if best_epoch < 0 else best_epoch,
            "best_val_top1": best_metric if select_on == "val" and best_epoch >= 0 else None,
            "final_eval_top1": num(last, "eval_top1"),
            "final_eval_top5": num(last, "eval_top5"),
            "final_eval_loss": num(last, "eval_loss"),
            "final_epoch": int(last["epoch"]) if last else None,
            "final_train_loss": num(rows[-1], "train_loss") if rows else None,
            "params": params,
            "macs": macs,
            "wall_time_s": time.perf_counter() - t_start,
            "selection": (
                "best epoch chosen on the TEST set (the papers' protocol, optimistic)"
                if select_on == "test"
                else f"best epoch chosen on a held-out val split of {config.val_split}"
            ),
            "weights": weights,
            "config": config.to_dict(),
        }
        write_json(run_dir / "summary.json", summary)
        has_curves = plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        write_report(run_dir / "report.md", summary, has_curves)
        logger.info(
            "done: best eval top1 %s (epoch %s), final %s, %.1f s",
            summary["best_eval_top1"],
            summary["best_epoch"],
            summary["final_eval_top1"],
            summary["wall_time_s"],
        )
    engine.barrier()
    return summary


def fit(
    config: TrainConfig, *, model_fn: ModelFn | None = None, callbacks: Sequence[Callable[[dict], Any]] = ()
) -> dict[str, Any]:
    """Train and evaluate one model as configured; writes the run folder and returns its summary.

    Args:
        config: a :class:`TrainConfig` (see :func:`attnkit.train.resolve_config` for CLI/YAML/recipes).
        model_fn: optional ``model_fn(config, data) -> nn.Module`` replacing :func:`build_model` (must be
            picklable, i.e. module-level, for ``ddp_spawn``).
        callbacks: called on every rank after each epoch's files are written with ``{"epoch", "row",
            "model", "engine", "run_dir"}``; raising :class:`StopTraining` ends the run cleanly.

    Returns:
        The summary dict also written to ``summary.json`` (rank 0's): ``best_eval_top1`` and
        ``best_epoch``, ``final_eval_top1``/``top5``/``loss``, ``params``, ``macs``, ``wall_time_s``,
        ``selection``, ``run_dir``, ``config``. Top-1/top-5 are percent.

    Raises:
        ValueError: invalid precision/device combination, batch not divisible by the world size,
            a checkpoint for another model (:class:`CheckpointError`).
        FileExistsError: the run folder already has ``last.ckpt`` and ``resume`` is not set.
        FileNotFoundError: missing dataset or ``--resume PATH``.
    """
    engine = build_engine(config)
    out = engine.launch(_fit_worker, config, model_fn, tuple(callbacks))
    return out if isinstance(out, dict) else {}
