"""Builders of one training run: engine, model, loaders, resume checkpoint, and their checks.

:func:`attnkit.train.fit` composes them; ``compare`` and the EAN search reuse them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._io import atomic_torch_save, commit_file
from .checkpoint import resolve_resume as _resolve_resume
from .config import TrainConfig
from .engine import Engine

__all__ = [
    "build_engine",
    "build_model",
    "build_loaders",
    "epoch_seed",
    "set_loader_epoch",
    "EpochSeededDataset",
    "resolve_resume",
    "ModelFn",
]

#: ``model_fn(config, data) -> nn.Module``, an optional replacement of :func:`build_model`.
ModelFn = Callable[[TrainConfig, Any], nn.Module]


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of an epoch's augmentation/dropout RNG: a function of (seed, rank, epoch) only."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101) % (2**63 - 1)


class EpochSeededDataset(Dataset):
    """A map-style dataset whose DataLoader workers reseed their RNGs from (seed, rank, epoch) every epoch.

    PyTorch seeds each worker once, when it starts; persistent workers then carry their RNG state from
    epoch to epoch, so a run resumed at epoch ``e`` (fresh workers) would draw other augmentations than
    the uninterrupted run. Here the main process publishes the epoch in shared memory
    (:meth:`set_epoch`, before the epoch's iterator starts); a worker that sees a new epoch at its next
    item seeds ``torch``, ``random`` and ``numpy`` with ``epoch_seed(seed, rank, epoch) + 1 + worker id``.
    The draws of each worker therefore depend on (seed, rank, epoch, worker id) only, and the workers
    stay persistent (no restart cost). In the main process (``workers=0``) nothing is reseeded: the
    training loop's per-epoch seed already covers it.

    Args:
        dataset: the wrapped dataset (``__getitem__``, ``__len__``).
        seed: the run's seed.
        rank: this process's rank.
    """

    def __init__(self, dataset, seed: int, rank: int = 0):
        import multiprocessing

        self.dataset, self.seed, self.rank = dataset, int(seed), int(rank)
        self._epoch = multiprocessing.RawValue("q", 0)  # shared with forked/spawned workers
        self._seen = None

    def set_epoch(self, epoch: int) -> None:
        """Publish the epoch whose items the workers produce next (call before the epoch's iterator)."""
        self._epoch.value = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        e = self._epoch.value
        if e != self._seen:
            info = torch.utils.data.get_worker_info()
            if info is not None:
                s = epoch_seed(self.seed, self.rank, e) + 1 + info.id
                torch.manual_seed(s)
                random.seed(s)
                with contextlib.suppress(ImportError):
                    import numpy as np

                    np.random.seed(s % 2**32)
            self._seen = e
        return self.dataset[index]


def set_loader_epoch(loader, epoch: int) -> None:
    """Prepare a :func:`build_loaders` train loader for ``epoch``: its batch order and its workers' seeds.

    Args:
        loader: a DataLoader (or Fabric's wrapper of one) whose sampler has ``set_data_epoch``; when its
            dataset is an :class:`EpochSeededDataset` the workers' seeds follow the epoch too.
        epoch: the epoch about to start (0-indexed).
    """
    loader.sampler.set_data_epoch(epoch)
    if isinstance(loader.dataset, EpochSeededDataset):
        loader.dataset.set_epoch(epoch)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time of each record.

    As the standard library's last-resort handler: a process that swaps ``sys.stderr`` (pytest's capture,
    a notebook, a second in-process ``attnkit.cli.main`` call) keeps getting attnkit's lines instead of a
    "Logging error" on a closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the current sys.stderr always wins
        pass


def setup_logging() -> None:
    """Log attnkit's INFO lines to the current stderr once per process (``HH:MM:SS message``)."""
    lg = logging.getLogger("attnkit")
    if not any(getattr(h, "_attnkit", False) for h in lg.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        h._attnkit = True  # type: ignore[attr-defined]
        lg.addHandler(h)
    lg.setLevel(logging.INFO)


def build_engine(config: TrainConfig) -> Engine:
    """An :class:`Engine` from the config's device/precision fields (validated before Fabric is built)."""
    from .loggers import build_loggers  # --logger csv,tensorboard,wandb (lazy imports, extras named)

    loggers = build_loggers(config) or None
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
    kw["generator"] = torch.Generator().manual_seed(int(config.seed))  # leaves the global RNG alone
    # persistent workers reseeded every epoch from (seed, rank, epoch): exact resume with any workers
    ds = EpochSeededDataset(data.train, config.seed, rank) if config.workers > 0 else data.train
    train = DataLoader(ds, batch_size=per_dev, sampler=sampler, drop_last=config.drop_last, **kw)
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
    """The checkpoint to resume from (:func:`attnkit.train.checkpoint.resolve_resume` on ``last.ckpt``).

    ``auto`` gives ``<run_dir>/last.ckpt`` when it exists, else None (a fresh start); a path gives that file.

    Raises:
        FileNotFoundError: an explicit path that does not exist.
    """
    return _resolve_resume(config.resume, config.run_dir, "last.ckpt")


def count_macs(model: nn.Module, data) -> int:
    """MACs per image at the training size, counted by ``attnkit.profile`` on a float32 CPU copy."""
    import copy

    from ..measure import profile

    m = copy.deepcopy(model).cpu().float()
    return int(profile(m, input_size=(data.in_chans, *data.img_size)).macs)


def save_weights(model: nn.Module, run_dir: Path) -> str:
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        atomic_torch_save(sd, run_dir / "model.pt")
        return "model.pt"
    commit_file(run_dir / "model.safetensors", lambda tmp: save_file(sd, str(tmp)))
    return "model.safetensors"


def check_num_classes(config: TrainConfig, data) -> None:
    """Catch ``num_classes`` below the data's label count before any work (not as an IndexError later)."""
    n = config.num_classes
    if n is not None and n < data.num_classes:
        raise ValueError(
            f"num_classes={n} is smaller than the {data.num_classes} classes of dataset {config.dataset!r} "
            f"(labels 0..{data.num_classes - 1}); omit --num-classes to take it from the data"
        )


def check_finite_state(model: nn.Module, epoch: int, global_step: int, row: dict[str, Any]) -> None:
    """Raise ``FloatingPointError`` when an epoch's losses or ``model``'s floating-point tensors are NaN/inf.

    Called before each checkpoint, so a diverged state is never saved (one device sync per epoch).

    Args:
        model: the unwrapped model (parameters and buffers are checked).
        epoch: the epoch just trained (for the message).
        global_step: the optimizer steps so far (for the message).
        row: the epoch's metrics row; its ``train_loss``, ``eval_loss`` and ``val_loss`` are checked.
    """
    losses = {k: row[k] for k in ("train_loss", "eval_loss", "val_loss") if k in row}
    bad = [f"{k} {v}" for k, v in losses.items() if not math.isfinite(v)]
    sd = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    ok = (
        torch.stack([torch.isfinite(v).all() for v in sd.values()]) if sd else torch.ones(1, dtype=torch.bool)
    )
    if not bool(ok.all()):
        names = [k for k, good in zip(sd, ok.tolist()) if not good]
        bad.append(f"weights {names[:3]}{' ...' if len(names) > 3 else ''}")
    if bad:
        raise FloatingPointError(
            f"training diverged: non-finite {', '.join(bad)} after epoch {epoch} (global step {global_step})"
        )


def diverged(err: BaseException, last: Path) -> FloatingPointError:
    """The error a diverged run stops with: ``err``'s message, the checkpoint kept, and what to try.

    Args:
        err: the ``FloatingPointError`` of the loop or of :func:`check_finite_state`.
        last: the run's ``last.ckpt`` (the last finite state; never overwritten by a diverged one).
    """
    kept = f"no checkpoint was written ({last} does not exist)"
    if last.is_file():
        try:
            from .checkpoint import read_checkpoint

            ep = int(read_checkpoint(last)["epoch"])
            state = "the initial weights" if ep < 0 else f"after epoch {ep}"
        except (OSError, ValueError, KeyError):
            state = "unreadable"
        kept = f"the last finite checkpoint {last} ({state}) is kept and no final weights were written"
    return FloatingPointError(f"{err}; {kept}; lower --lr or set --grad-clip")


def check_finite_loss(loss, where: str, kept: str | os.PathLike | None = None) -> None:
    """Raise ``FloatingPointError`` when ``loss`` (a tensor or a number) is NaN/inf: a diverged training.

    For the trainers that read their loss every step anyway (diffusion, recommenders, CEM, ADASR): call
    it before ``optimizer.step()`` so the weights stay finite.

    Args:
        loss: the step's loss.
        where: the position, for the message (``"epoch 3, step 17"``, ``"iteration 250"``).
        kept: the last checkpoint, named in the message when it exists.
    """
    v = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(v):
        keep = (
            f"; the last finite checkpoint {kept} is kept" if kept is not None and Path(kept).exists() else ""
        )
        raise FloatingPointError(f"training diverged: non-finite loss ({v}) at {where}{keep}; lower the lr")
