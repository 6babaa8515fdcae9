"""Checkpoint contents, validation and restore.

A checkpoint is one dict of tensors, plain containers and primitives, so it loads with
``torch.load(path, weights_only=True)``::

    {"model", "optimizer", "scheduler",        # state dicts (Fabric converts the objects)
     "scaler" (16-mixed only), "model_ema" (--model-ema only), "epoch" (last completed, 0-indexed), "global_step",
     "best_metric", "best_epoch", "metric_name", "config" (plain dict), "rng", "attnkit_version",
     "torch_version", "last_eval" (the last evaluated epoch's metrics row, unrounded; optional)}
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

from .._io import CheckpointError, safe_torch_load
from .config import MODEL_FIELDS, config_diff

__all__ = [
    "CHECKPOINT_KEYS",
    "rng_state",
    "set_rng_state",
    "read_checkpoint",
    "check_compatible",
    "make_state",
    "CheckpointError",
    "resolve_resume",
    "load_model",
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


def resolve_resume(
    resume: str | os.PathLike | None, run_dir: str | os.PathLike | None, name: str
) -> Path | None:
    """The one resume rule of attnkit (``train``, ``compare``, ``ode train``).

    Args:
        resume: ``None``/``""`` (no resume), ``"auto"`` (``run_dir/name`` when it exists, else a fresh
            start: a run killed before its first checkpoint simply starts again), or a checkpoint path.
        run_dir: the run folder (used by ``"auto"``).
        name: the checkpoint file name in the run folder (``last.ckpt``, ``last.pt``).

    Returns:
        The checkpoint to resume from, or None for a fresh start.

    Raises:
        FileNotFoundError: an explicit path that does not exist.
    """
    if not resume:
        return None
    if str(resume) == "auto":
        p = Path(run_dir or ".") / name
        return p if p.is_file() else None
    p = Path(resume)
    if not p.is_file():
        raise FileNotFoundError(f"--resume {p}: no such checkpoint")
    return p


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
    model_ema: Any = None,
    last_eval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict for ``engine.save`` (objects stay objects; Fabric stores their state dicts).

    ``model_ema`` (timm's ``ModelEmaV3``, ``--model-ema``) is stored under ``"model_ema"`` when given.
    ``last_eval``, the metrics row of the last evaluated epoch, is stored with its numbers unrounded (the
    ``metrics.csv`` row keeps 6 significant digits), so that a run resumed after its last epoch reports the
    same final top-1 as the uninterrupted run.
    """
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
    if model_ema is not None:
        state["model_ema"] = model_ema
    if last_eval:
        state["last_eval"] = {k: v for k, v in last_eval.items() if isinstance(v, int | float | str)}
    return state


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its keys.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is corrupt/not a checkpoint, or lacks any of :data:`CHECKPOINT_KEYS`.
    """
    p = Path(path)
    ckpt = safe_torch_load(p, what="checkpoint")
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
        if k not in ("resume", "run_name", "out_dir", "progress", "log_interval", "workers", "threads"):
            logger.warning("resume: config field %r differs: checkpoint %r, now %r", k, a, b)


_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_forward_module.")


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the key prefixes DDP, ``torch.compile`` and Fabric add (``module.``, ``_orig_mod.``, ...)."""
    out = {}
    for k, v in state_dict.items():
        for p in _WRAPPER_PREFIXES:
            while k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def _build_kwargs(sd: dict[str, torch.Tensor], cfg: dict[str, Any], overrides: dict[str, Any]) -> dict:
    """``create_model`` keyword arguments from a checkpoint's config, its tensors and explicit overrides."""
    kw: dict[str, Any] = {}
    attn = overrides["attn"] if overrides.get("attn") is not None else cfg.get("attn")
    if attn and str(attn).lower() != "none":
        kw["attn"] = attn
        ak = overrides["attn_kwargs"] if overrides.get("attn_kwargs") is not None else cfg.get("attn_kwargs")
        if ak:
            kw["attn_kwargs"] = ak
        if overrides.get("attn") is None:  # the stored wiring belongs to the stored module
            kw.update({k: cfg[k] for k in ("sharing", "scheme") if cfg.get(k) is not None})
    head = [v for k, v in sd.items() if k.endswith("fc.weight") and v.dim() == 2]
    stem = [v for k, v in sd.items() if k.startswith("stem.") and v.dim() == 4]
    kw["num_classes"] = (
        overrides.get("num_classes") or cfg.get("num_classes") or (int(head[-1].shape[0]) if head else None)
    )
    kw["in_chans"] = overrides.get("in_chans") or (int(stem[0].shape[1]) if stem else 3)
    kw.update(cfg.get("model_kwargs") or {})
    return {k: v for k, v in kw.items() if v is not None}


def load_model(
    path: str | os.PathLike,
    *,
    model: str | None = None,
    attn: str | None = None,
    attn_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and load its weights (``strict``), through the one safe loader.

    Reads an ``attnkit train`` checkpoint (``last.ckpt``/``best.ckpt``: the model and its config) or a
    plain ``state_dict`` file (then ``model`` says which network it is). ``num_classes`` and
    ``in_chans`` default to the config, else to the head's and the stem's weights.

    Args:
        path: the file.
        model: a :func:`attnkit.list_models` name (default: the checkpoint's).
        attn: an attention module name replacing the checkpoint's (its sharing/scheme are then dropped).
        attn_kwargs: replaces the checkpoint's ``attn_kwargs``.
        num_classes: classifier outputs (default: config, else the head's weight).
        in_chans: input channels (default: the stem's weight).

    Returns:
        ``(model, info)``: the model on the CPU in training mode, and ``{"build": create_model keyword
        arguments incl. "model", "checkpoint": the checkpoint dict (None for a plain state_dict)}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a file that cannot be loaded safely, an unknown layout, a plain state_dict
            without ``model``, or weights that do not fit the model (the message names the keys).
    """
    from ..models import create_model

    obj = safe_torch_load(path, what="checkpoint")
    ckpt = None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        ckpt, sd, cfg = obj, obj["model"], dict(obj.get("config") or {})
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, cfg = obj, {}
    else:
        raise CheckpointError(
            f"{path}: expected an attnkit checkpoint (a dict with 'model') or a state_dict of tensors"
        )
    sd = strip_prefixes(sd)
    name = model or cfg.get("model")
    if not name:
        raise CheckpointError(
            f"{path} is a plain state_dict: pass --model (and --attn) to say which network it is"
        )
    over = {"attn": attn, "attn_kwargs": attn_kwargs, "num_classes": num_classes, "in_chans": in_chans}
    kw = _build_kwargs(sd, cfg, over)
    net = create_model(name, **kw)
    res = net.load_state_dict(sd, strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit create_model({name!r}, {kw}); missing {res.missing_keys[:5]}, "
            f"unexpected {res.unexpected_keys[:5]} - check --model/--attn"
        )
    return net, {"build": {"model": name, **kw}, "checkpoint": ckpt}
