"""Correctors by name, the checks of a training run's settings, and a trained solver rebuilt from its file.

:func:`build_corrector` is the one factory of correctors (NeurVec, the AttNS reconstructions, the linear and
zero correctors); :func:`load_checkpoint` rebuilds a :class:`~attnkit.ode.corrected.CorrectedSolver` and its
system from a checkpoint written by :func:`attnkit.ode.train.train_corrector` (through the one safe
``torch.load``); :func:`check_train_args` and :func:`check_run_folder` are the up-front checks that
``attnkit ode train`` and :func:`~attnkit.ode.train.train_corrector` share.

Reference:
    NeurVec: Huang, Liang, Zhang, Yang, Lin, "On fast simulation of dynamical system with neural vector
    enhanced numerical solver", Scientific Reports 13:15254 (2023), arXiv 2208.03680, official code
    github.com/dedekinds/NeurVec. AttNS: attnkit's reconstruction of AttSolver (arXiv 2302.10184, no
    released code), see :mod:`attnkit.ode.attns`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import CheckpointError, safe_torch_load
from ._solvers import get_solver
from .attns import AttNSRecon
from .corrected import CorrectedSolver, LinearCorrector, ZeroCorrector
from .neurvec import NeurVec
from .systems import ODESystem, create_system

__all__ = ["CORRECTORS", "build_corrector", "check_train_args", "check_run_folder", "load_checkpoint"]

CORRECTORS = ("neurvec", "attns", "attns_m", "linear", "zero")


def build_corrector(
    kind: str, dim: int, *, hidden: int = 1024, dtype: torch.dtype = torch.float32, **kwargs
) -> nn.Module:
    """Build a corrector by name: ``neurvec``, ``attns``, ``attns_m``, ``linear`` or ``zero``.

    ``attns`` is the additive AttNS reconstruction, ``attns_m`` the multiplicative one. Extra keyword
    arguments go to the class. The config is kept on the module (``attnkit_config``) so that checkpoints
    can rebuild it.

    Raises:
        ValueError: unknown ``kind`` (the message lists the names); ``hidden`` or ``dim`` below 1.
    """
    for name, v in (("hidden", hidden), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if kind == "neurvec":
        m = NeurVec(dim, hidden=hidden, dtype=dtype, **kwargs)
    elif kind in ("attns", "attns_m"):
        m = AttNSRecon(
            dim,
            hidden=hidden,
            mode="additive" if kind == "attns" else "multiplicative",
            dtype=dtype,
            **kwargs,
        )
    elif kind == "linear":
        m = LinearCorrector(dim, dtype=dtype, **kwargs)
    elif kind == "zero":
        m = ZeroCorrector()
    else:
        raise ValueError(f"unknown corrector {kind!r}; available: {list(CORRECTORS)}")
    m.attnkit_config = {
        "kind": kind,
        "dim": dim,
        "hidden": hidden,
        "dtype": str(dtype).split(".")[-1],
        **kwargs,
    }
    return m


def check_train_args(schedule: str = "cosine", **values: Any) -> None:
    """The one validation of :func:`~attnkit.ode.train.train_corrector`'s settings (``attnkit ode train`` calls it first).

    Args:
        schedule: as :func:`~attnkit.ode.train.train_corrector`.
        **values: any of ``iterations``, ``batch_size``, ``val_every``, ``val_steps``, ``lr``,
            ``loss_scale``, ``weight_decay``, ``data_fraction``, ``noise_std`` (missing ones are skipped).

    Raises:
        ValueError: an unknown ``schedule``; a count below 1; ``lr``/``loss_scale`` not a finite number
            > 0; ``weight_decay``/``noise_std`` negative or not finite; ``data_fraction`` outside (0, 1].
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    for k in ("iterations", "batch_size", "val_every", "val_steps"):
        v = values.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
    for k, lo_ok in (("lr", False), ("loss_scale", False), ("weight_decay", True), ("noise_std", True)):
        v = values.get(k, 1.0)
        ok = isinstance(v, (int, float)) and math.isfinite(v) and (v >= 0 if lo_ok else v > 0)
        if not ok:
            raise ValueError(f"{k} must be a finite number {'>= 0' if lo_ok else '> 0'}, got {v!r}")
    f = values.get("data_fraction", 1.0)
    if not (isinstance(f, (int, float)) and 0.0 < f <= 1.0):
        raise ValueError(f"data_fraction must be in (0, 1], got {f!r}")


def check_run_folder(out: str | os.PathLike | None, resume: bool | str | None) -> None:
    """Refuse to start a new run over an existing one (``last.pt`` present) unless resuming.

    Raises:
        FileExistsError: the message says how to continue the run or where else to write.
    """
    if out is not None and not resume and (Path(out) / "last.pt").exists():
        raise FileExistsError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out"
        )


def load_checkpoint(path: str | os.PathLike) -> tuple[CorrectedSolver, ODESystem, dict]:
    """Rebuild ``(CorrectedSolver, system, checkpoint dict)`` from a ``best.pt``/``final.pt``/``last.pt``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a file that cannot be loaded safely, or one without a corrector config.
    """
    ck = safe_torch_load(path, what="ODE checkpoint")
    cfg = dict(ck.get("corrector_config") or {}) if isinstance(ck, dict) else {}
    if not cfg or "corrector_state" not in ck:
        raise CheckpointError(f"{path}: no corrector_config/corrector_state; not an attnkit ode checkpoint")
    kind, dim, hidden = cfg.pop("kind"), cfg.pop("dim"), cfg.pop("hidden")
    dtype = getattr(torch, cfg.pop("dtype", "float32"))
    corr = build_corrector(kind, dim, hidden=hidden, dtype=dtype, **cfg)
    corr.load_state_dict(ck["corrector_state"])
    solver = CorrectedSolver(
        get_solver(ck["base"]), corr, dt=ck["dt"], insert=ck["insert"], scale=ck["scale"]
    )
    system = create_system(
        ck["system"],
        **(
            {}
            if ck["system"] != "spring_chain"
            else {"k": tuple(ck["constants"]["k"]), "m": tuple(ck["constants"]["m"])}
        ),
    )
    return solver, system, ck
