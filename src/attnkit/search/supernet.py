"""EAN step 1: the weight-sharing supernet, the held-out split and the frozen-supernet evaluator.

The supernet draws a random connection scheme per mini-batch; the evaluator scores a scheme on the
held-out split and is the search's accuracy oracle.

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

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_torch_save, atomic_write_jsonl
from ..models import ConnectionScheme
from .evaluate import evaluate_top1, scheme_override

__all__ = ["load_state", "SupernetWrapper", "train_supernet"]

LOG_FILE = "supernet_log.jsonl"


def _read_log(path: Path, epochs: int) -> list[dict[str, Any]]:
    """The first ``epochs`` records of a log written before checkpoints carried it (older run folders)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines()[:epochs]:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def load_state(path: str | os.PathLike, what: str, map_location: str | torch.device = "cpu") -> Any:
    """Read a state file that attnkit wrote itself, refusing anything that could run code.

    The file is read with ``torch.load(..., weights_only=True)``: only tensors and plain containers
    are rebuilt, so a crafted pickle placed in a run folder is rejected instead of executed.

    Args:
        path: the file.
        what: what the file is, for the error message (e.g. ``"supernet checkpoint"``).
        map_location: as :func:`torch.load`.

    Returns:
        The loaded object.

    Raises:
        ValueError: the file cannot be loaded with ``weights_only=True`` (not written by attnkit, or
            corrupt); the message names the file. Nothing in it was executed.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError for foreign objects, RuntimeError/EOFError when corrupt
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{what} {path} cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {first}); "
            "attnkit writes only tensors and plain containers there, so the file is corrupt or was not "
            "written by attnkit. Nothing in it was executed; delete it or choose another run folder."
        ) from None


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
        """Run the model under a fresh random scheme (train mode) or ``eval_scheme`` (eval mode).

        Args:
            x: the images.

        Shape:
            ``(N, C, H, W) -> (N, num_classes)``.

        Returns:
            The logits.
        """
        s = self.draw() if self.training else self.eval_scheme
        self.last_scheme = s
        with scheme_override(self.model, s):
            return self.model(x)


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
    ``run_dir/supernet_log.jsonl`` holds one line per finished epoch (train loss/top-1, and with
    ``holdout_loader`` the held-out top-1 of the full and of the empty scheme). The checkpoint carries
    these records and the file is rewritten atomically from them after each checkpoint and on resume, so
    a kill at any point leaves a log that matches the checkpoint: no epoch twice, none missing.

    Args:
        model: an attnkit ResNet with every block connectable (``sharing="stage"``).
        train_loader: yields ``(x (N, C, H, W), y (N,))``.
        epochs: supernet epochs (official 40 on ImageNet, i.e. 1/3 of the retraining).
        lr: SGD learning rate (official 0.1, constant).
        momentum: SGD momentum (official 0.9).
        weight_decay: SGD weight decay (official 1e-4).
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
        ValueError: ``epochs < 0`` or an unknown ``lr_schedule`` (the other settings are checked by
            :class:`attnkit.search.PipelineConfig`).
        FloatingPointError: a non-finite loss (the message names the epoch and step); the optimizer step
            is skipped and ``supernet.pt`` keeps the last finite epoch.
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
    start, log = 0, []
    ckpt = Path(run_dir) / "supernet.pt" if run_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if ckpt.exists():
            st = load_state(ckpt, "supernet checkpoint", map_location=device)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            gen.set_state(st["generator"])
            start = int(st["epoch"])
            log = list(st.get("log", _read_log(ckpt.parent / LOG_FILE, start)))
            atomic_write_jsonl(ckpt.parent / LOG_FILE, log)  # a kill may have come before it
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
            lv = float(loss.detach())  # the one sync per step (the running sum needs it anyway)
            if not math.isfinite(lv):
                kept = (
                    f"the last finite checkpoint {ckpt} is kept" if ckpt is not None and ckpt.exists() else ""
                )
                raise FloatingPointError(
                    f"training diverged: non-finite supernet loss ({lv}) at epoch {epoch}, step {bi + 1}"
                    + (f"; {kept}" if kept else "")
                    + "; lower --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += lv * y.numel()
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
        log.append(rec)
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
                    "log": log,
                },
                ckpt,
            )
            atomic_write_jsonl(ckpt.parent / LOG_FILE, log)
    model.eval()
    return model
