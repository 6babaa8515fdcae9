"""The plain training loop: :func:`train_one_epoch` and :func:`evaluate`.

Readable on purpose: forward through the (Fabric-wrapped) model, task loss + auxiliary losses
(:func:`attnkit.models.collect_aux_losses`), ``engine.backward``, ``optimizer.step``, ``zero_grad``. Train
metrics are exact averages: each rank sums ``loss·n``, ``correct`` and ``n``, reduced at the end of the
epoch. Evaluation sums ``(loss, correct@1, correct@5, count)`` over unpadded shards
(:class:`attnkit.data.EvalShardSampler`: every test image counted exactly once across ranks, none repeated
to even out the shards).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.aux import aux_modules, collect_aux_losses
from .meters import _FiniteWatch, _Meter, _MicroBatch, _Windows

__all__ = ["train_one_epoch", "evaluate", "use_bar", "aux_columns", "logger"]

logger = logging.getLogger("attnkit.train")


def use_bar(progress: str, is_global_zero: bool = True) -> bool:
    """Whether to draw a tqdm bar: ``bar`` always (needs tqdm), ``auto`` only on a TTY stderr on rank 0.

    Raises:
        ImportError: ``progress="bar"`` without tqdm.
    """
    if progress == "bar":
        import tqdm  # noqa: F401  (clear ImportError if missing)

        return is_global_zero
    if progress != "auto" or not is_global_zero or not sys.stderr.isatty():
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def aux_columns(model: nn.Module) -> list[str]:
    """Metric columns for the auxiliary losses, declared at start-up.

    One ``aux_<module name>`` per submodule that defines ``aux_loss()`` (``aux_model`` for the root).
    """
    return [f"aux_{name}" for name, _ in aux_modules(model)]


def _correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    topk = logits.topk(k, dim=1).indices  # (N, k)
    return (topk == y[:, None]).any(dim=1).sum()


def _forward_backward(model, optimizer, x, y, engine, aux_mods, label_smoothing, grad_clip, mb=None):
    """Forward, task + auxiliary loss, backward and optional clipping; returns ``(total, logits, loss, aux)``.

    ``mb`` (:class:`_MicroBatch`) carries the soft targets and criterion of mixup, and the loss scale of
    gradient accumulation; ``total``/``loss`` are returned unscaled.
    """
    logits = model(x)  # (N, num_classes)
    if mb is not None and mb.criterion is not None:
        loss = mb.criterion(logits.float(), mb.target)  # soft targets (N, num_classes)
    else:
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    aux = collect_aux_losses(None, aux_mods) if aux_mods else {}  # aux_mods: aux_modules(raw_model)
    total = loss + sum(v.reshape(()) for v in aux.values()) if aux else loss
    scaled = total * mb.scale if (mb is not None and mb.scale != 1.0) else total
    if engine is not None:
        engine.backward(scaled)
        if grad_clip is not None:
            engine.clip_gradients(model, optimizer, grad_clip)
    else:
        scaled.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return total, logits, loss, aux


def _no_sync(engine, model, skip: bool):
    """Fabric's ``no_backward_sync`` while accumulating (DDP skips the all-reduce); a no-op otherwise."""
    if engine is None or not skip:
        return contextlib.nullcontext()
    return engine.fabric.no_backward_sync(model, enabled=True)


def _optimizer_step(model, optimizer, x, y, engine, aux_mods, label_smoothing, grad_clip, mb=None):
    """One optimizer step on a batch (or one accumulated micro-batch); returns ``(logits, loss, aux)``.

    An :mod:`attnkit.optim` strategy with ``requires_closure`` (Mirror Gradient) gets ``step(closure)``
    and may call the closure (forward + backward + clipping) more than once; metrics come from the first
    pass. With ``mb.update`` False (gradient accumulation) only forward and backward run, without DDP's
    gradient all-reduce; clipping, ``step`` and ``zero_grad`` wait for the window's last micro-batch.
    """
    first: list[tuple] = []
    update = mb is None or mb.update

    def closure():
        clip = grad_clip if update else None
        out = _forward_backward(model, optimizer, x, y, engine, aux_mods, label_smoothing, clip, mb)
        first.append(out)
        return out[0]

    if getattr(optimizer, "requires_closure", False):
        optimizer.step(closure)
    else:
        with _no_sync(engine, model, not update):
            closure()
        if update:
            optimizer.step()
    _, logits, loss, aux = first[0]
    if update:
        optimizer.zero_grad(set_to_none=True)
    return logits, loss, aux


def _log_step(epoch, step, loader, loss_sum, correct, count, optimizer, t_last, log_interval) -> float:
    """One progress log line (running loss, top-1, lr, ms per step); returns the new time mark."""
    now = time.perf_counter()
    logger.info(
        "epoch %d step %d/%s loss %.4f top1 %.2f lr %.5g %.1f ms/step",
        epoch,
        step,
        len(loader) if hasattr(loader, "__len__") else "?",
        loss_sum.item() / count,
        100 * correct.item() / count,
        optimizer.param_groups[0]["lr"],
        1000 * (now - t_last) / log_interval,
    )
    return now


def _after_update(raw_model, optimizer, scheduler, interval: str, ema, global_step: int) -> None:
    """After an optimizer update: the EMA, then a per-update schedule (torch ``step()`` or timm's ``step_update``)."""
    if ema is not None:
        ema.update(raw_model, step=global_step)
    if scheduler is None:
        return
    if interval == "step":
        scheduler.step()
    elif interval == "timm":
        scheduler.step_update(num_updates=global_step)


def _make_bar(loader, epoch: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=len(loader) if hasattr(loader, "__len__") else None,
        desc=f"epoch {epoch}",
        leave=False,
        dynamic_ncols=True,
    )


def _mix(mixup_fn, criterion, x: torch.Tensor, y: torch.Tensor, mb: _MicroBatch):
    """Apply timm's ``Mixup`` to a batch (an odd batch loses its last image); sets ``mb``'s soft targets."""
    if y.shape[0] % 2:  # Mixup pairs image i with image N-1-i
        x, y = x[:-1], y[:-1]
    x, mb.target = mixup_fn(x, y)  # (N, C, H, W), (N, num_classes)
    mb.criterion = criterion
    return x, y


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    *,
    engine=None,
    epoch: int = 0,
    global_step: int = 0,
    scheduler=None,
    scheduler_interval: str = "epoch",
    label_smoothing: float = 0.0,
    grad_clip: float | None = None,
    channels_last: bool = False,
    raw_model: nn.Module | None = None,
    log_interval: int = 50,
    progress: str = "auto",
    max_steps: int | None = None,
    grad_accum: int = 1,
    mixup_fn=None,
    criterion=None,
    ema=None,
    log_fn=None,
) -> dict[str, Any]:
    """Train for one pass over ``loader``.

    Args:
        model: the model to call (Fabric-wrapped when an ``engine`` is given).
        optimizer: the optimizer (Fabric-wrapped when an ``engine`` is given). An :mod:`attnkit.optim`
            strategy with ``requires_closure`` (Mirror Gradient) gets ``step(closure)``, the closure doing
            forward, backward and clipping on the batch (metrics come from its first pass);
            ``epoch_start()`` is called first when the optimizer has it.
        loader: yields ``(x, y)`` with ``x`` of shape ``(N, C, H, W)`` and ``y`` of shape ``(N,)``, already on
            the device when the loader is Fabric-wrapped.
        engine: an :class:`attnkit.train.Engine` (None: plain PyTorch on the model's device, no reduction).
        epoch: the epoch counter, for logs.
        global_step: optimizer updates so far; the returned ``global_step`` is advanced by this epoch's
            updates (``ceil(batches / grad_accum)``).
        scheduler: a per-update scheduler, stepped here after each optimizer update when
            ``scheduler_interval`` is ``"step"`` (``scheduler.step()``) or ``"timm"``
            (``scheduler.step_update(global_step)``).
        scheduler_interval: ``"step"``, ``"timm"`` or ``"epoch"`` (per-epoch steps are the caller's).
        label_smoothing: cross-entropy label smoothing.
        grad_clip: max global grad norm (None: off).
        channels_last: convert each batch to ``torch.channels_last``.
        raw_model: the unwrapped model whose submodules report ``aux_loss()`` (default ``model``).
        log_interval: a log line every this many steps (when no bar is drawn).
        progress: ``auto`` | ``bar`` | ``lines`` | ``none``.
        max_steps: stop after this many batches (benchmarks).
        grad_accum: batches per optimizer update. Each batch's loss is divided by the number of batches
            in its window (the last window of an epoch may be shorter, as in timm's ``train.py``), the
            gradients of a window's first batches are not all-reduced (Fabric's ``no_backward_sync``), and
            clipping, ``optimizer.step``, EMA and per-update schedules run once per window.
        mixup_fn: ``timm.data.Mixup`` (``(x, y) -> (x, y_soft)``), with ``criterion`` its soft-target loss;
            ``train_top1`` is then measured against the dominant class of the mixed target. An odd last
            batch loses its last image (``Mixup`` needs an even batch).
        criterion: loss for soft targets (default: cross entropy with ``label_smoothing``).
        ema: a ``timm.utils.ModelEmaV3``, updated with ``raw_model`` after every optimizer update.
        log_fn: ``log_fn(metrics, step)`` called every ``log_interval`` updates with
            ``{"train_loss_step", "lr", "epoch"}`` (Fabric loggers); one host sync per call.

    Returns:
        ``{"train_loss", "train_top1" (percent), "samples", "epoch_time_s", "train_samples_per_s",
        "global_step", "lr"}`` plus ``aux_<name>`` means. ``train_loss`` is the task (cross-entropy) loss,
        comparable to ``eval_loss`` (with mixup: the soft-target loss, not comparable); the optimised
        objective is ``train_loss + sum(aux_*)``.

    Raises:
        FloatingPointError: a non-finite training loss; the message names the epoch and the step. One
            process checks every ``log_interval`` steps and at the end of the epoch; several processes
            check together at the end of the epoch (a flag all-reduced, so every rank stops).
    """
    model.train()
    if callable(getattr(optimizer, "epoch_start", None)):  # Mirror Gradient's per-epoch counter
        optimizer.epoch_start()
    raw_model = raw_model if raw_model is not None else model
    aux_mods = aux_modules(raw_model)  # once per epoch, not a walk over all modules per step
    device = engine.device if engine is not None else next(model.parameters()).device
    is_zero = engine is None or engine.is_global_zero
    meter = _Meter(device)
    watch = _FiniteWatch(device, epoch, global_step, loader, engine, log_interval)
    lr0 = optimizer.param_groups[0]["lr"]
    bar = _make_bar(loader, epoch) if use_bar(progress, is_zero) else None
    lines = bar is None and progress in ("auto", "lines", "bar") and is_zero
    windows = _Windows(loader, grad_accum, max_steps)
    t0 = t_last = time.perf_counter()
    step = 0
    for step, (x, y) in enumerate(loader, 1):
        if engine is None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        mb = windows.micro_batch(step)
        if mixup_fn is not None:
            x, y = _mix(mixup_fn, criterion, x, y, mb)
        logits, loss, aux = _optimizer_step(
            model, optimizer, x, y, engine, aux_mods, label_smoothing, grad_clip, mb
        )
        meter.add(loss, logits, mb.target.argmax(1) if mb.target is not None else y, aux)
        if mb.update:
            global_step += 1
            _after_update(raw_model, optimizer, scheduler, scheduler_interval, ema, global_step)
            if log_fn is not None and global_step % log_interval == 0:
                lr = optimizer.param_groups[0]["lr"]
                log_fn({"train_loss_step": loss.item(), "lr": lr, "epoch": epoch}, global_step)
        watch.update(loss, step)
        if bar is not None:
            meter.show(bar, step, log_interval)
        elif lines and step % log_interval == 0:
            t_last = _log_step(epoch, step, loader, *meter.running(), optimizer, t_last, log_interval)
        if max_steps is not None and step >= max_steps:
            break
    if windows.pending(step):  # a loader without len() ended inside an accumulation window
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        global_step += 1
        _after_update(raw_model, optimizer, scheduler, scheduler_interval, ema, global_step)
    if bar is not None:
        bar.close()
    out = meter.result(engine)
    watch.finish()
    elapsed = time.perf_counter() - t0
    out.update(
        epoch_time_s=elapsed,
        train_samples_per_s=out["samples"] / elapsed if elapsed > 0 else float("nan"),
        global_step=global_step,
        lr=lr0,
    )
    return out


def evaluate(
    model: nn.Module, loader: Iterable, *, engine=None, channels_last: bool = False, autocast: bool = False
) -> dict[str, float]:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy of ``model`` over ``loader``.

    Runs under ``torch.no_grad()`` (not ``inference_mode``: modules that build caches lazily at
    evaluation time must stay usable by autograd afterwards). The model's training flag is restored.

    Args:
        model: any classifier ``(N, C, H, W) -> (N, num_classes)``.
        loader: yields ``(x, y)``; with an ``engine`` each rank sees its unpadded shard.
        engine: when given, per-rank sums are all-reduced so the result covers the whole dataset.
        channels_last: convert batches to ``torch.channels_last``.
        autocast: run the forward under ``engine.autocast()`` (for an unwrapped model, e.g. a
            re-parameterised copy).

    Returns:
        ``{"top1", "top5", "loss", "count"}``; ``count`` equals the dataset size.
    """
    was_training = model.training
    model.eval()
    device = engine.device if engine is not None else next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct@1, correct@5, count
    ctx = engine.autocast if (engine is not None and autocast) else None
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if ctx is not None:
                with ctx():
                    logits = model(x)
            else:
                logits = model(x)
            logits = logits.float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += _correct(logits, y, 1)
            sums[2] += _correct(logits, y, 5)
            sums[3] += y.shape[0]
    if engine is not None:
        sums = engine.all_reduce(sums, op="sum")
    model.train(was_training)
    n = max(float(sums[3]), 1.0)
    return {
        "top1": 100.0 * float(sums[1]) / n,
        "top5": 100.0 * float(sums[2]) / n,
        "loss": float(sums[0]) / n,
        "count": int(sums[3]),
    }
