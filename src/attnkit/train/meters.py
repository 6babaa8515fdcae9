"""Per-epoch training state of :func:`attnkit.train.train_one_epoch`, kept on the device.

:class:`_Meter` sums the training metrics exactly (``loss·n``, correct top-1, auxiliary ``loss·n``;
one all-reduce at the end of the epoch); :class:`_FiniteWatch` finds the first step with a non-finite
loss without a host sync per step; :class:`_Windows` splits an epoch into gradient-accumulation windows
(timm's ``train.py`` convention for the shorter last window) and hands out each batch's
:class:`_MicroBatch` (loss scale, soft targets, whether the optimizer updates now).
"""

from __future__ import annotations

from typing import Any

import torch

__all__: list[str] = []  # internal to the training loop; imported by attnkit.train.loop


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


class _MicroBatch:
    """One batch's part of an update: soft targets (mixup), loss scale and whether the update happens now."""

    __slots__ = ("target", "criterion", "scale", "update")

    def __init__(self, target=None, criterion=None, scale: float = 1.0, update: bool = True):
        self.target, self.criterion, self.scale, self.update = target, criterion, scale, update


class _Windows:
    """Gradient-accumulation windows over an epoch: which batch updates, and each batch's loss scale.

    With ``n`` batches and ``k`` per update, the last ``n % k`` batches form a shorter final window
    (timm's ``train.py``): its losses are divided by its own length, so every update averages its batches.
    """

    def __init__(self, loader, grad_accum: int, max_steps: int | None):
        self.k = max(1, int(grad_accum))
        n = len(loader) if hasattr(loader, "__len__") else None
        if max_steps is not None:
            n = min(n, max_steps) if n is not None else max_steps
        self.n = n
        self.full = n - n % self.k if n is not None else None  # batches in complete windows

    def micro_batch(self, step: int) -> _MicroBatch:
        """The :class:`_MicroBatch` of 1-based batch ``step``."""
        if self.k == 1:
            return _MicroBatch()
        size = self.k if (self.full is None or step <= self.full) else self.n - self.full
        last = step % self.k == 0 or (self.n is not None and step >= self.n)
        return _MicroBatch(scale=1.0 / size, update=last)

    def pending(self, step: int) -> bool:
        """Whether gradients of an unfinished window remain after ``step`` batches (loaders without len)."""
        return self.k > 1 and self.n is None and step % self.k != 0


class _Meter:
    """Exact epoch sums of the training metrics, on the device (no host sync per step).

    ``loss·n``, correct top-1 and auxiliary ``loss·n`` are float64 device tensors; the image count is a
    python int (known from the shapes). :meth:`result` all-reduces them once at the end of the epoch.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.aux: dict[str, torch.Tensor] = {}

    def add(self, loss: torch.Tensor, logits: torch.Tensor, hard: torch.Tensor, aux: dict) -> None:
        """One batch: its mean loss, logits ``(N, K)``, the (dominant) labels ``(N,)`` and aux terms."""
        n = hard.shape[0]
        self.loss_sum.add_(loss.detach(), alpha=n)  # computed in float64 (the accumulator's dtype)
        self.correct.add_(logits.detach().argmax(1).eq(hard).sum())
        self.count += n
        for k, v in aux.items():
            key = f"aux_{k}"
            prev = self.aux.get(key)
            term = v.detach().double() * n
            self.aux[key] = term if prev is None else prev + term

    def running(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(loss_sum, correct, count)`` so far, for log lines."""
        return self.loss_sum, self.correct, self.count

    def show(self, bar, step: int, log_interval: int) -> None:
        """Advance a tqdm bar; every ``log_interval // 5`` steps show the running loss and top-1 (a sync)."""
        bar.update(1)
        if step % max(1, log_interval // 5) == 0:
            bar.set_postfix(
                loss=f"{self.loss_sum.item() / self.count:.4f}",
                top1=f"{100 * self.correct.item() / self.count:.2f}",
            )

    def result(self, engine) -> dict[str, Any]:
        """Sums over all processes -> ``{"train_loss", "train_top1", "samples", "aux_*"}``."""
        keys = sorted(self.aux)
        count = torch.full((), float(self.count), dtype=torch.float64, device=self.device)
        stacked = torch.stack([self.loss_sum, self.correct, count] + [self.aux[k] for k in keys])
        if engine is not None:
            stacked = engine.all_reduce(stacked, op="sum")
        vals = stacked.tolist()  # one host transfer
        n = max(vals[2], 1.0)
        out = {"train_loss": vals[0] / n, "train_top1": 100.0 * vals[1] / n, "samples": int(vals[2])}
        out.update({k: vals[3 + i] / n for i, k in enumerate(keys)})
        return out
