"""The plain training loop: :func:`train_one_epoch` and :func:`evaluate` (measurement spec §4.5).

Readable on purpose: forward through the (Fabric-wrapped) model, task loss + auxiliary losses
(:func:`attnkit.models.collect_aux_losses`), ``engine.backward``, ``optimizer.step``, ``zero_grad``. Train
metrics are exact averages: each rank sums ``loss·n``, ``correct`` and ``n``, reduced at the end of the
epoch. Evaluation sums ``(loss, correct@1, correct@5, count)`` over unpadded shards (§4.4).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.aux import collect_aux_losses

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
    return [
        f"aux_{name or 'model'}"
        for name, m in model.named_modules()
        if callable(getattr(m, "aux_loss", None))
    ]


def _correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    topk = logits.topk(k, dim=1).indices  # (N, k)
    return (topk == y[:, None]).any(dim=1).sum()


class _FiniteWatch:
    """The first step of an epoch whose training loss is not finite, tracked without a sync per step."""

    def __init__(self, device: torch.device, epoch: int, global_step: int, loader, engine, every: int):
        self.first = torch.full((), -1, dtype=torch.long, device=device)  # step (1-based), -1: none
        self.value = torch.zeros((), dtype=torch.float64, device=device)
        self.epoch, self.global_step, self.engine = epoch, global_step, engine
        self.steps = len(loader) if hasattr(loader, "__len__") else "?"
        self.every = every if engine is None or engine.world_size == 1 else 0  # one process: check early

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` of ``step``; with one process, check every ``every`` steps (one sync)."""
        new = self.first.lt(0) & ~torch.isfinite(loss.detach())
        self.first = torch.where(new, torch.full_like(self.first, step), self.first)
        self.value = torch.where(new, loss.detach().double(), self.value)
        if self.every and step % self.every == 0:
            self.check()

    def finish(self) -> None:
        """End of the epoch: every process learns whether any process saw a non-finite loss."""
        bad = self.first.ge(0).double()
        bad = self.engine.all_reduce(bad, op="sum") if self.engine is not None else bad
        self.check(elsewhere=float(bad) > 0)

    def check(self, elsewhere: bool = False) -> None:
        """Raise ``FloatingPointError`` naming the epoch and step of the first non-finite loss."""
        s = int(self.first)
        if s < 0 and not elsewhere:
            return
        where = (
            f"at epoch {self.epoch}, step {s}/{self.steps} (global step {self.global_step + s})"
            if s >= 0
            else f"at epoch {self.epoch} on another process"
        )
        raise FloatingPointError(
            f"training diverged: non-finite loss ({float(self.value) if s >= 0 else 'nan/inf'}) {where}"
        )


def _forward_backward(model, optimizer, x, y, engine, raw_model, label_smoothing, grad_clip):
    """Forward, task + auxiliary loss, backward and optional clipping; returns ``(total, logits, loss, aux)``."""
    logits = model(x)  # (N, num_classes)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    aux = collect_aux_losses(raw_model)
    total = loss + sum(v.reshape(()) for v in aux.values()) if aux else loss
    if engine is not None:
        engine.backward(total)
        if grad_clip is not None:
            engine.clip_gradients(model, optimizer, grad_clip)
    else:
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return total, logits, loss, aux


def _optimizer_step(model, optimizer, x, y, engine, raw_model, label_smoothing, grad_clip):
    """One optimizer step on a batch; returns ``(logits, loss, aux)`` of the first forward pass.

    An :mod:`attnkit.optim` strategy with ``requires_closure`` (Mirror Gradient) gets ``step(closure)``
    and may call the closure (forward + backward + clipping) more than once.
    """
    first: list[tuple] = []

    def closure():
        out = _forward_backward(model, optimizer, x, y, engine, raw_model, label_smoothing, grad_clip)
        first.append(out)
        return out[0]

    if getattr(optimizer, "requires_closure", False):
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()
    _, logits, loss, aux = first[0]
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
        loss_sum.item() / count.item(),
        100 * correct.item() / count.item(),
        optimizer.param_groups[0]["lr"],
        1000 * (now - t_last) / log_interval,
    )
    return now


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
        global_step: the step counter, for logs; the returned ``global_step`` is advanced.
        scheduler: a per-iteration scheduler, stepped here when ``scheduler_interval`` is ``"step"``.
        scheduler_interval: ``"step"`` or ``"epoch"`` (per-epoch schedulers are stepped by the caller).
        label_smoothing: cross-entropy label smoothing.
        grad_clip: max global grad norm (None: off).
        channels_last: convert each batch to ``torch.channels_last``.
        raw_model: the unwrapped model whose submodules report ``aux_loss()`` (default ``model``).
        log_interval: a log line every this many steps (when no bar is drawn).
        progress: ``auto`` | ``bar`` | ``lines`` | ``none``.
        max_steps: stop after this many steps (benchmarks).

    Returns:
        ``{"train_loss", "train_top1" (percent), "samples", "epoch_time_s", "train_samples_per_s",
        "global_step", "lr"}`` plus ``aux_<name>`` means. ``train_loss`` is the task (cross-entropy) loss,
        comparable to ``eval_loss``; the optimised objective is ``train_loss + sum(aux_*)``.

    Raises:
        FloatingPointError: a non-finite training loss; the message names the epoch and the step. One
            process checks every ``log_interval`` steps and at the end of the epoch; several processes
            check together at the end of the epoch (a flag all-reduced, so every rank stops).
    """
    model.train()
    if callable(getattr(optimizer, "epoch_start", None)):  # Mirror Gradient's per-epoch counter
        optimizer.epoch_start()
    raw_model = raw_model if raw_model is not None else model
    device = engine.device if engine is not None else next(model.parameters()).device
    is_zero = engine is None or engine.is_global_zero
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    aux_sums: dict[str, torch.Tensor] = {}
    watch = _FiniteWatch(device, epoch, global_step, loader, engine, log_interval)
    lr0 = optimizer.param_groups[0]["lr"]
    bar = None
    if use_bar(progress, is_zero):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(loader) if hasattr(loader, "__len__") else None,
            desc=f"epoch {epoch}",
            leave=False,
            dynamic_ncols=True,
        )
    t0 = t_last = time.perf_counter()
    step = 0
    for step, (x, y) in enumerate(loader, 1):
        if engine is None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, loss, aux = _optimizer_step(
            model, optimizer, x, y, engine, raw_model, label_smoothing, grad_clip
        )
        if scheduler is not None and scheduler_interval == "step":
            scheduler.step()
        n = y.shape[0]
        loss_sum += loss.detach().double() * n
        correct += (logits.detach().argmax(1) == y).sum()
        count += n
        for k, v in aux.items():
            key = f"aux_{k}"
            aux_sums[key] = (
                aux_sums.get(key, torch.zeros((), dtype=torch.float64, device=device))
                + v.detach().double() * n
            )
        global_step += 1
        watch.update(loss, step)
        if bar is not None:
            bar.update(1)
            if step % max(1, log_interval // 5) == 0:
                bar.set_postfix(
                    loss=f"{loss_sum.item() / count.item():.4f}",
                    top1=f"{100 * correct.item() / count.item():.2f}",
                )
        elif progress in ("auto", "lines", "bar") and is_zero and step % log_interval == 0:
            t_last = _log_step(epoch, step, loader, loss_sum, correct, count, optimizer, t_last, log_interval)
        if max_steps is not None and step >= max_steps:
            break
    if bar is not None:
        bar.close()
    keys = sorted(aux_sums)
    stacked = torch.stack([loss_sum, correct, count] + [aux_sums[k] for k in keys])
    if engine is not None:
        stacked = engine.all_reduce(stacked, op="sum")
    watch.finish()
    elapsed = time.perf_counter() - t0
    total_n = float(stacked[2])
    out = {
        "train_loss": float(stacked[0]) / max(total_n, 1.0),
        "train_top1": 100.0 * float(stacked[1]) / max(total_n, 1.0),
        "samples": int(total_n),
        "epoch_time_s": elapsed,
        "train_samples_per_s": total_n / elapsed if elapsed > 0 else float("nan"),
        "global_step": global_step,
        "lr": lr0,
    }
    for i, k in enumerate(keys):
        out[k] = float(stacked[3 + i]) / max(total_n, 1.0)
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
