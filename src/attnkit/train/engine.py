"""``Engine``: a thin wrapper over Lightning Fabric (devices, DDP, precision, checkpoint I/O).

Only this module imports Fabric, lazily, so ``import attnkit.train`` works without it until an Engine is
built. Precision and SyncBN are validated **before** Fabric is built: on CPU Fabric silently
swaps ``16-mixed`` for ``bf16-mixed`` and DDP rejects ``SyncBatchNorm`` modules; attnkit raises instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import commit_file, fabric_checkpoint_io
from ..measure.precision import PRECISIONS

__all__ = ["Engine", "PRECISIONS", "resolve_accelerator"]


def resolve_accelerator(accelerator: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values pass through."""
    if accelerator in ("auto", "gpu"):
        return "cuda" if torch.cuda.is_available() else ("cpu" if accelerator == "auto" else "cuda")
    return accelerator


def _entry(fabric, engine: Engine, fn: Callable, *args: Any) -> Any:
    """Runs on every process: bind the (possibly unpickled) Fabric to the engine, then call ``fn``."""
    engine._fabric = fabric
    return fn(engine, *args)


class Engine:
    """Devices, distributed strategy and precision for the training loop, backed by Lightning Fabric.

    Args:
        accelerator: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``/``gpu``, ``mps``.
        devices: processes (devices) per node.
        strategy: Fabric strategy (``auto``, ``ddp``, ``ddp_spawn``, ...). ``ddp`` re-executes the command
            line; ``ddp_spawn`` (used in tests) needs a picklable, module-level function. Under
            ``torchrun`` Fabric detects the environment.
        precision: one of :data:`PRECISIONS`.
        num_nodes: nodes.
        find_unused_parameters: DDP's flag (EAN-style supernets need it).
        sync_bn: convert BN layers to ``SyncBatchNorm`` in :meth:`setup` (CUDA only).
        loggers: extra Fabric loggers (e.g. TensorBoard).

    Raises:
        ValueError: unknown precision; any ``16-*`` precision on CPU (use ``bf16-mixed``); ``sync_bn`` on
            CPU (DDP rejects SyncBatchNorm on CPU modules).
        ImportError: ``lightning_fabric`` is missing (``pip install 'attnkit[train]'``).

    Reference:
        Lightning Fabric 2.6: ``Fabric(accelerator, strategy, devices, num_nodes, precision, loggers)``.
    """

    def __init__(
        self,
        accelerator: str = "auto",
        devices: int = 1,
        strategy: str = "auto",
        precision: str = "32-true",
        num_nodes: int = 1,
        find_unused_parameters: bool = False,
        sync_bn: bool = False,
        loggers: list | None = None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
        acc = resolve_accelerator(accelerator)
        if acc == "cpu" and precision.startswith("16"):
            raise ValueError(
                f"precision {precision!r} is not supported on CPU (float16 kernels are missing and "
                "Fabric would silently switch to bf16); use precision='bf16-mixed'"
            )
        if sync_bn and acc == "cpu":
            raise ValueError(
                "sync_bn=True needs CUDA: DDP rejects SyncBatchNorm on CPU modules "
                "('SyncBatchNorm layers only work with GPU modules'); leave sync_bn off on CPU"
            )
        try:
            from lightning_fabric import Fabric
        except ImportError as e:  # pragma: no cover - lightning-fabric is a core dependency
            raise ImportError(
                "attnkit's training engine needs Lightning Fabric: pip install 'attnkit[train]'"
            ) from e
        strat: Any = strategy
        if find_unused_parameters:
            if strategy in ("ddp_spawn",):
                from lightning_fabric.strategies import DDPStrategy

                strat = DDPStrategy(find_unused_parameters=True, start_method="spawn")
            elif strategy in ("auto", "ddp"):
                strat = (
                    "ddp_find_unused_parameters_true"
                    if devices * num_nodes > 1 or strategy == "ddp"
                    else strategy
                )
        self.accelerator, self.precision, self.sync_bn = acc, precision, sync_bn
        self._fabric = Fabric(
            accelerator=acc,
            devices=devices,
            strategy=strat,
            num_nodes=num_nodes,
            precision=precision,
            loggers=loggers,
            plugins=[fabric_checkpoint_io()],  # checksummed checkpoints, never staged in $TMPDIR
        )

    # -- processes -------------------------------------------------------------------------------------
    def launch(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(engine, *args)`` on every process; returns rank 0's result for spawn strategies."""
        return self._fabric.launch(_entry, self, fn, *args)

    @property
    def fabric(self):
        """The underlying ``lightning_fabric.Fabric``."""
        return self._fabric

    @property
    def is_global_zero(self) -> bool:
        """Whether this process is rank 0."""
        return self._fabric.is_global_zero

    @property
    def global_rank(self) -> int:
        """This process's rank among all processes."""
        return self._fabric.global_rank

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return self._fabric.world_size

    @property
    def device(self) -> torch.device:
        """The device this process computes on."""
        return self._fabric.device

    @property
    def scaler(self):
        """The ``GradScaler`` Fabric uses with ``16-mixed`` (None otherwise); saved in checkpoints."""
        return getattr(getattr(self._fabric, "_precision", None), "scaler", None)

    # -- setup -----------------------------------------------------------------------------------------
    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None):
        """Move/wrap ``model`` (DDP, precision) and ``optimizer``; returns ``(model, optimizer)``.

        ``scheduler`` is accepted for symmetry; it needs no wrapping.
        """
        if self.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return self._fabric.setup(model, optimizer)

    def setup_dataloaders(self, *loaders):
        """Wrap loaders (device transfer) keeping attnkit's own samplers (``use_distributed_sampler=False``)."""
        return self._fabric.setup_dataloaders(*loaders, use_distributed_sampler=False)

    def autocast(self):
        """Precision context for forwards outside the wrapped model (e.g. a re-parameterised copy)."""
        return self._fabric.autocast() if self._fabric is not None else contextlib.nullcontext()

    # -- collectives -------------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` through Fabric (gradient scaling for ``16-mixed``)."""
        self._fabric.backward(loss)

    def clip_gradients(self, model, optimizer, max_norm: float):
        """Clip the global gradient norm to ``max_norm``; returns the norm before clipping."""
        return self._fabric.clip_gradients(model, optimizer, max_norm=max_norm)

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce a tensor over processes (``sum`` or ``mean``); identity with one process."""
        if self.world_size == 1:
            return t
        return self._fabric.all_reduce(t, reduce_op=op)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Broadcast a picklable object from ``src``."""
        return obj if self.world_size == 1 else self._fabric.broadcast(obj, src)

    def barrier(self) -> None:
        """Synchronise processes."""
        self._fabric.barrier()

    # -- checkpoints ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, state: dict[str, Any]) -> None:
        """Save ``state`` atomically (a unique temporary file beside ``path``, then ``os.replace``, on rank 0).

        Call on **every** rank. Objects with ``state_dict`` (model, optimizer, scheduler) are stored as
        their state dicts.

        Raises:
            OSError: the write failed (e.g. a full disk); the message names ``path`` and says that the
                previous file is intact (see :func:`attnkit._io.commit_file`).
        """
        path = Path(path)
        if self.is_global_zero:
            commit_file(path, lambda tmp: self._fabric.save(tmp, state))
        else:  # a collective call; only rank 0 writes
            self._fabric.save(path, state)
        self._fabric.barrier()

    def load(self, path: str | os.PathLike, state: dict[str, Any]) -> dict[str, Any]:
        """Restore the objects in ``state`` in place from ``path``; returns the remaining entries."""
        return self._fabric.load(path, state, strict=True, weights_only=True)
