"""Checkpoint contents, validation and restore (measurement spec §4.6).

A checkpoint is one dict of tensors, plain containers and primitives, so it loads with
``torch.load(path, weights_only=True)``::

    {"model", "optimizer", "scheduler",        # state dicts (Fabric converts the objects)
     "scaler" (16-mixed only), "epoch" (last completed, 0-indexed), "global_step",
     "best_metric", "best_epoch", "metric_name", "config" (plain dict), "rng", "attnkit_version",
     "torch_version"}
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch

from .config import MODEL_FIELDS, config_diff

__all__ = [
    "CHECKPOINT_KEYS",
    "rng_state",
    "set_rng_state",
    "read_checkpoint",
    "check_compatible",
    "make_state",
    "CheckpointError",
]

logger = logging.getLogger("attnkit.train")

CHECKPOINT_KEYS = (
    "model",
    "optimizer",
    "scheduler",
    "epoch",
    "global_step",
    "best_metric",
    "best_epoch",
    "metric_name",
    "config",
    "rng",
    "attnkit_version",
    "torch_version",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, lacks keys, or does not match the configured model."""


def rng_state() -> dict[str, Any]:
    """Python and torch (CPU and CUDA) RNG states as weights_only-loadable values."""
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output (python tuples may come back as lists)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_state(
    *,
    model,
    optimizer,
    scheduler,
    epoch: int,
    global_step: int,
    best_metric: float,
    best_epoch: int,
    config: dict[str, Any],
    scaler: Any = None,
) -> dict[str, Any]:
    """The checkpoint dict for ``engine.save`` (objects stay objects; Fabric stores their state dicts)."""
    from .. import __version__

    state = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "best_metric": float(best_metric),
        "best_epoch": int(best_epoch),
        "metric_name": "eval_top1",
        "config": dict(config),
        "rng": rng_state(),
        "attnkit_version": str(__version__),
        "torch_version": str(torch.__version__),
    }
    if scaler is not None:
        state["scaler"] = scaler
    return state


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its keys.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is corrupt/not a checkpoint, or lacks keys of §4.6.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise CheckpointError(
            f"checkpoint {p} cannot be read ({type(e).__name__}: {e}); it may be truncated "
            "or corrupt; delete it or resume from another file"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(ckpt).__name__}, not an attnkit checkpoint dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {p} lacks keys {missing}; not an attnkit training checkpoint")
    return ckpt


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: str | Path = "") -> None:
    """Compare a checkpoint's config with the current one.

    Model-defining fields (:data:`attnkit.train.config.MODEL_FIELDS`) must match; other differences are
    logged as warnings field by field (``resume``, ``run_name`` and ``out_dir`` are ignored).

    Raises:
        CheckpointError: a model-defining field differs.
    """
    diff = config_diff(saved, current)
    bad = {k: v for k, v in diff.items() if k in MODEL_FIELDS}
    if bad:
        lines = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in bad.items())
        raise CheckpointError(f"checkpoint {path} was trained with a different model ({lines})")
    for k, (a, b) in diff.items():
        if k not in ("resume", "run_name", "out_dir", "progress", "log_interval", "workers"):
            logger.warning("resume: config field %r differs: checkpoint %r, now %r", k, a, b)
