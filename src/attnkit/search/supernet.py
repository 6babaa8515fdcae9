"""EAN step 1: the weight-sharing supernet (a random connection scheme per mini-batch), the held-out
split and the frozen-supernet evaluator used as the search's accuracy oracle.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network
    (supernet training script: one fair-coin scheme per iteration; held-out split = the first 100
    images per class of the ImageNet training set).

Deviations:
    - Monitoring evaluates the full scheme (and the empty one); the official script logged only the
      all-zero scheme, which misleads.
    - The scheme is applied through ``ResNet.set_scheme`` inside a context manager that restores the
      previous scheme, so nothing is left changed on the model after a call.
    - Attention modules keep their own init (officially the backbone's He-normal loop re-initialised
      the shared SE's 1×1 convs).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_torch_save
from .scheme import ConnectionScheme

__all__ = [
    "holdout_split",
    "scheme_override",
    "SupernetWrapper",
    "train_supernet",
    "HoldoutEvaluator",
    "evaluate_top1",
]


def holdout_split(targets: Sequence[int], per_class: int) -> tuple[list[int], list[int]]:
    """Split indices: the first ``per_class`` indices of each class (dataset order) are held out.

    Args:
        targets: the class label of every sample, in dataset order.
        per_class: held-out samples per class (official ImageNet: 100).

    Returns:
        ``(train_idx, holdout_idx)``, both sorted; together they partition ``range(len(targets))``.

    Raises:
        ValueError: ``per_class < 1``, or a class with ``<= per_class`` samples (nothing would be
            left to train on).
    """
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    tg = [int(t) for t in (targets.tolist() if isinstance(targets, torch.Tensor) else targets)]
    counts: dict[int, int] = {}
    for t in tg:
        counts[t] = counts.get(t, 0) + 1
    small = sorted(c for c, n in counts.items() if n <= per_class)
    if small:
        raise ValueError(
            f"class(es) {small} have <= {per_class} samples; lower per_class "
            f"(counts: {dict(sorted((c, counts[c]) for c in small))})"
        )
    seen: dict[int, int] = {}
    train_idx, hold_idx = [], []
    for i, t in enumerate(tg):
        if seen.get(t, 0) < per_class:
            hold_idx.append(i)
            seen[t] = seen.get(t, 0) + 1
        else:
            train_idx.append(i)
    return train_idx, hold_idx


@contextlib.contextmanager
def scheme_override(model: nn.Module, scheme) -> Iterator[ConnectionScheme]:
    """Temporarily set ``model``'s connection scheme (restored on exit, also on error).

    Args:
        model: an attnkit ``ResNet`` (has ``blocks_per_stage``, ``scheme`` and ``set_scheme``).
        scheme: anything :meth:`ConnectionScheme.coerce` accepts.

    Raises:
        ValueError: a malformed scheme, or a model without ``set_scheme``.
    """
    if not hasattr(model, "set_scheme"):
        raise ValueError(f"{type(model).__name__} has no set_scheme(); build it with attnkit.create_model")
    s = ConnectionScheme.coerce(scheme, model.blocks_per_stage)
    old = str(model.scheme)
    model.set_scheme(str(s))
    try:
        yield s
    finally:
        model.set_scheme(old)


class SupernetWrapper(nn.Module):
    """Train-mode forward with a fresh random connection scheme per call (the EAN supernet).

    Args:
        model: an attnkit ResNet built with ``sharing="stage"`` (or per-block modules on every block)
            and all blocks connectable.
        p: probability that a block is connected (official 0.5).
        generator: torch.Generator for the draws (seed it identically on all ranks under DDP, and enable
            ``find_unused_parameters``: a stage whose bits are all 0 leaves its module unused).
        eval_scheme: scheme used in eval mode: ``"full"``, ``"empty"`` or any scheme value.

    Shape:
        ``(N, C, H, W) -> (N, num_classes)``.

    Attributes:
        last_scheme: the scheme used by the latest forward call.

    Raises:
        ValueError: ``p`` outside [0, 1], a model without ``set_scheme``, or a bad ``eval_scheme``.

    Reference:
        EAN (arXiv:2011.14058), official supernet script.
    """

    def __init__(
        self,
        model: nn.Module,
        p: float = 0.5,
        generator: torch.Generator | None = None,
        eval_scheme: Any = "full",
    ):
        super().__init__()
        if not hasattr(model, "set_scheme"):
            raise ValueError(
                f"{type(model).__name__} has no set_scheme(); build it with attnkit.create_model"
            )
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.model = model
        self.p = float(p)
        self.generator = generator
        self.eval_scheme = ConnectionScheme.coerce(eval_scheme, model.blocks_per_stage)
        self.last_scheme: ConnectionScheme | None = None

    def draw(self) -> ConnectionScheme:
        """Draw one scheme (Bernoulli(p) per block)."""
        return ConnectionScheme.random(self.model.blocks_per_stage, self.p, self.generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.draw() if self.training else self.eval_scheme
        self.last_scheme = s
        with scheme_override(self.model, s):
            return self.model(x)


def _top1_loss(model: nn.Module, batches: Iterable, device: torch.device | str) -> tuple[float, float]:
    correct = n = 0
    loss = 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += y.numel()
    if n == 0:
        raise ValueError("the evaluation loader is empty")
    return 100.0 * correct / n, loss / n


def evaluate_top1(
    model: nn.Module, loader: Iterable, scheme=None, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` under ``scheme`` (None = its current scheme), in
    eval mode without gradients."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if scheme is None:
                return _top1_loss(model, loader, device)
            with scheme_override(model, scheme):
                return _top1_loss(model, loader, device)
    finally:
        model.train(was)


def train_supernet(
    model: nn.Module,
    train_loader: Iterable,
    *,
    epochs: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    lr_schedule: str = "constant",
    p: float = 0.5,
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    holdout_loader: Iterable | None = None,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Train the weight-sharing supernet: SGD, one random scheme per mini-batch (EAN step 1).

    Resumable: with ``run_dir`` the state (model, optimizer, scheduler, scheme RNG, log) is saved
    atomically to ``run_dir/supernet.pt`` after every epoch, and an existing file is resumed from. The
    global torch RNG (augmentation draws) is reseeded from ``(seed, epoch)`` at every epoch and a
    loader whose sampler has ``set_data_epoch`` (``attnkit.data.TrainSampler``) gets the epoch, so a
    resumed run trains exactly as an uninterrupted one.
    ``run_dir/supernet_log.jsonl`` gets one line per epoch (train loss/top-1, and with
    ``holdout_loader`` the held-out top-1 of the full and of the empty scheme).

    Args:
        model: an attnkit ResNet with every block connectable (``sharing="stage"``).
        train_loader: yields ``(x (N, C, H, W), y (N,))``.
        epochs: supernet epochs (official 40 on ImageNet, i.e. 1/3 of the retraining).
        lr, momentum, weight_decay: SGD (official 0.1 constant, 0.9, 1e-4).
        lr_schedule: ``"constant"`` (official: the searched checkpoint was never annealed) or ``"cosine"``.
        p: connection probability per block.
        seed: seeds the scheme generator.
        run_dir: folder for the checkpoint and log (None: nothing written, no resume).
        holdout_loader: optional monitoring split.
        device: where to train.
        max_batches: stop each epoch after this many batches (smoke runs).
        progress: show a tqdm bar.

    Returns:
        ``model`` (trained in place, left in eval mode with its original scheme).

    Raises:
        ValueError: ``epochs < 0`` or an unknown ``lr_schedule``.
    """
    from tqdm.auto import tqdm

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    model.to(device)
    gen = torch.Generator().manual_seed(int(seed))
    net = SupernetWrapper(model, p=p, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        (lambda e: 1.0)
        if lr_schedule == "constant"
        else (lambda e: 0.5 * (1 + math.cos(math.pi * e / max(epochs, 1)))),
    )
    start = 0
    ckpt = Path(run_dir) / "supernet.pt" if run_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if ckpt.exists():
            st = torch.load(ckpt, map_location=device, weights_only=False)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            gen.set_state(st["generator"])
            start = int(st["epoch"])
            if progress:
                print(f"[supernet] resumed from {ckpt} at epoch {start}/{epochs}")
    sampler = getattr(train_loader, "sampler", None)
    for epoch in range(start, epochs):
        # exact resume: the batch order (a TrainSampler's) and the augmentation draws depend on (seed, epoch)
        if hasattr(sampler, "set_data_epoch"):
            sampler.set_data_epoch(epoch)
        torch.manual_seed(int(seed) * 7919 + epoch * 1_000_003 + 1)
        net.train()
        t0, tot, correct, loss_sum = time.time(), 0, 0, 0.0
        it = tqdm(
            train_loader,
            desc=f"supernet {epoch + 1}/{epochs}",
            leave=False,
            disable=None if progress else True,
        )  # no bar off a TTY
        for bi, (x, y) in enumerate(it):
            if max_batches is not None and bi >= max_batches:
                break
            x, y = x.to(device), y.to(device)
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * y.numel()
            correct += int((out.argmax(1) == y).sum())
            tot += y.numel()
        sched.step()
        rec: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": loss_sum / max(tot, 1),
            "train_top1": 100.0 * correct / max(tot, 1),
            "seconds": round(time.time() - t0, 2),
        }
        if holdout_loader is not None:
            rec["holdout_top1_full"], _ = evaluate_top1(model, holdout_loader, "full", device)
            rec["holdout_top1_empty"], _ = evaluate_top1(model, holdout_loader, "empty", device)
        if progress:
            print(
                "[supernet] "
                + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
            )
        if ckpt is not None:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "epoch": epoch + 1,
                },
                ckpt,
            )
            with open(ckpt.parent / "supernet_log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
    model.eval()
    return model


@contextlib.contextmanager
def _recalibrated_bn(
    model: nn.Module, scheme: ConnectionScheme, batches: Sequence[torch.Tensor]
) -> Iterator[None]:
    """Re-estimate BN running statistics under ``scheme`` (cumulative average), restore them on exit."""
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
        for m in bns
    ]
    was = model.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the calibration batches
        model.train()
        with torch.no_grad(), scheme_override(model, scheme):
            for x in batches:
                model(x)
        model.eval()
        yield
    finally:
        for m, (rm, rv, nb, mom) in zip(bns, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.num_batches_tracked.copy_(nb)
            m.momentum = mom
        model.train(was)


class HoldoutEvaluator:
    """Accuracy oracle for the search: top-1 (%) of the frozen supernet under a scheme.

    ``model.eval()`` (BN running statistics), ``torch.inference_mode()``, the whole loader.

    Args:
        model: the trained supernet (an attnkit ResNet).
        loader: the held-out split (test-time transform), yields ``(x, y)``.
        device: where to evaluate.
        cache: remember the accuracy of each distinct scheme (exact: evaluation is deterministic).
        preload: materialise the loader's batches in memory once (fast repeated passes on CPU).
        bn_calibration: optional loader of training batches. When given, before scoring a scheme the
            BatchNorm running statistics are re-estimated under that scheme (cumulative average over
            ``bn_calibration_batches`` batches, train-mode forward without gradients) and restored
            afterwards. Off by default (the official search scores with the supernet's running
            statistics, accumulated over random schemes). Not in EAN; the usual fix for weight-sharing
            supernets whose BN statistics do not match extreme sub-networks (e.g. SPOS, arXiv:1904.00420).
        bn_calibration_batches: number of calibration batches (materialised once).

    Attributes:
        num_evaluations: forward passes over the split actually run; cache_hits: calls served from cache.

    Raises:
        ValueError: (call) a malformed scheme or an empty loader.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable,
        *,
        device: str | torch.device = "cpu",
        cache: bool = True,
        preload: bool = True,
        bn_calibration: Iterable | None = None,
        bn_calibration_batches: int = 10,
    ):
        self.model = model.to(device)
        self.device = device
        self.cache_enabled = cache
        self.loader = [(x.to(device), y.to(device)) for x, y in loader] if preload else loader
        self.calib: list[torch.Tensor] | None = None
        if bn_calibration is not None:
            self.calib = []
            for i, batch in enumerate(bn_calibration):
                if i >= bn_calibration_batches:
                    break
                self.calib.append(batch[0].to(device))
            if not self.calib:
                raise ValueError("bn_calibration loader yielded no batch")
        self.cache: dict[str, float] = {}
        self.num_evaluations = 0
        self.cache_hits = 0

    def __call__(self, scheme) -> float:
        s = ConnectionScheme.coerce(scheme, self.model.blocks_per_stage)
        if self.cache_enabled and s.bits in self.cache:
            self.cache_hits += 1
            return self.cache[s.bits]
        if self.calib is None:
            acc, _ = evaluate_top1(self.model, self.loader, s, self.device)
        else:
            with _recalibrated_bn(self.model, s, self.calib):
                acc, _ = evaluate_top1(self.model, self.loader, s, self.device)
        self.num_evaluations += 1
        if self.cache_enabled:
            self.cache[s.bits] = acc
        return acc
