"""Trajectory data with a trusted reference, one-step training pairs, and an atomic on-disk cache.

Storage is time-major ``(T + 1, N, d)`` sampled every coarse step ``h``, float64.

Deviations:
    NeurVec's fine solver and data are not public; attnkit's reference is the exact propagator where one
    exists, else classical RK4 at a fine step of 1e-3 (verified by step halving in the tests and
    cross-checked here against scipy's DOP853 at rtol = atol = 1e-12). A fine Euler step is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_torch_save, safe_torch_load
from ._solvers import Solver, get_solver
from .systems import ODESystem

__all__ = ["make_trajectories", "make_pairs", "check_reference", "load_or_make", "SPLIT_SEEDS"]

#: ``torch.Generator`` seeds of the default splits.
SPLIT_SEEDS = {"test": 0, "train": 1, "val": 2}


def make_trajectories(
    system: ODESystem,
    n_traj: int,
    *,
    dt: float | None = None,
    n_steps: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    reference_substeps: int | None = None,
) -> Tensor:
    """Sample ``n_traj`` initial conditions (seeded) and integrate them with the system's reference.

    Args:
        system: an :class:`ODESystem`.
        n_traj: number of trajectories N.
        dt: output/coarse step h (default ``system.default_dt``).
        n_steps: number of steps T (default ``system.default_steps``).
        seed: ``torch.Generator`` seed of the initial conditions.
        dtype: dtype of the returned trajectories (integration is always float64).
        reference_substeps: fine sub-steps per ``dt`` (default: fine step 1e-3).

    Returns:
        ``(T + 1, N, d)`` trajectories in ``dtype``.
    """
    if n_traj < 1:
        raise ValueError(f"n_traj must be >= 1, got {n_traj}")
    dt = system.default_dt if dt is None else dt
    n_steps = system.default_steps if n_steps is None else n_steps
    g = torch.Generator().manual_seed(seed)
    y0 = system.sample_initial_conditions(n_traj, generator=g, dtype=torch.float64)
    return system.reference(y0, dt, n_steps, substeps=reference_substeps).to(dtype)


def make_pairs(
    traj: Tensor,
    system: ODESystem,
    base: str | Solver,
    dt: float,
    *,
    reference: str = "accurate",
    substeps: int = 1000,
) -> tuple[Tensor, Tensor]:
    """One-step training pairs ``(u_s, r_s = u_{s+1} - Psi_h(u_s))`` from every position of every trajectory.

    Args:
        traj: ``(T + 1, N, d)`` reference trajectories.
        system: the right-hand side.
        base: base solver (name or instance) of the corrected solver.
        dt: coarse step h.
        reference: ``"accurate"`` (targets from ``traj``) or ``"base_fine"`` (targets from the same base
            solver at ``dt / substeps``, a possible reading of the NeurVec paper's training targets).
        substeps: fine steps per ``dt`` of the ``"base_fine"`` targets (unused for ``"accurate"``).

    Returns:
        ``u`` ``(M, d)`` and ``r`` ``(M, d)`` in float64, ``M = T * N``.
    """
    if reference not in ("accurate", "base_fine"):
        raise ValueError(f"reference must be 'accurate' or 'base_fine', got {reference!r}")
    b = get_solver(base)
    d = traj.shape[-1]
    u = traj[:-1].reshape(-1, d).double()
    with torch.no_grad():
        if reference == "accurate":
            nxt = traj[1:].reshape(-1, d).double()
        else:
            nxt = u
            for _ in range(substeps):
                nxt = b.step(system, 0.0, nxt, dt / substeps)
        r = nxt - b.step(system, 0.0, u, dt)
    return u, r


def check_reference(system: ODESystem, traj: Tensor, dt: float, n_check: int = 3) -> float:
    """Max abs difference between ``traj`` and scipy's DOP853 (rtol = atol = 1e-12) on ``n_check`` members.

    Args:
        system: the right-hand side integrated by DOP853.
        traj: ``(T + 1, N, d)`` float64 reference trajectories.
        dt: time between rows of ``traj``.
        n_check: number of trajectories checked (the first ``min(n_check, N)``).

    Returns:
        the maximum absolute difference over the checked trajectories and times.
    """
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        return system(t, torch.from_numpy(y)).numpy()

    t_eval = np.arange(traj.shape[0]) * dt
    worst = 0.0
    for j in range(min(n_check, traj.shape[1])):
        sol = solve_ivp(
            rhs,
            (0.0, t_eval[-1]),
            traj[0, j].double().numpy(),
            method="DOP853",
            t_eval=t_eval,
            rtol=1e-12,
            atol=1e-12,
        )
        worst = max(worst, float(np.abs(sol.y.T - traj[:, j].double().numpy()).max()))
    return worst


def load_or_make(
    system: ODESystem,
    split: str,
    n_traj: int,
    *,
    dt: float | None = None,
    n_steps: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    reference_substeps: int | None = None,
    seed: int | None = None,
    cross_check: bool = True,
) -> Tensor:
    """Load a cached split or generate it (and cache it atomically with its settings).

    The cache key covers system name and constants, split seed, n_traj, dt, n_steps and substeps.
    A new file also records the DOP853 cross-check (``check_reference``) in its metadata.

    Returns:
        ``(T + 1, N, d)`` float64 trajectories.

    Raises:
        ValueError: unknown ``split`` without ``seed``.
        CheckpointError: a cache file that cannot be loaded safely (a pickle holding code) or is corrupt.
    """
    if seed is None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_SEEDS)} (or pass seed=)")
        seed = SPLIT_SEEDS[split]
    dt = system.default_dt if dt is None else dt
    n_steps = system.default_steps if n_steps is None else n_steps
    meta = {
        "system": system.name,
        "constants": system.constants(),
        "split": split,
        "seed": seed,
        "n_traj": n_traj,
        "dt": dt,
        "n_steps": n_steps,
        "reference_substeps": reference_substeps,
        "reference": "exact" if type(system).exact_step is not ODESystem.exact_step else "rk4_classic",
    }
    if cache_dir is not None:
        key = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"{system.name}_{split}_{n_traj}_{key}.pt"
        if path.exists():
            blob = safe_torch_load(path, what="trajectory cache")
            if isinstance(blob, dict) and blob.get("meta", {}) == meta and torch.is_tensor(blob.get("traj")):
                return blob["traj"]
    traj = make_trajectories(
        system, n_traj, dt=dt, n_steps=n_steps, seed=seed, reference_substeps=reference_substeps
    )
    if cache_dir is not None:
        chk = check_reference(system, traj, dt) if cross_check else None
        atomic_torch_save({"meta": meta, "traj": traj, "dop853_max_abs_diff": chk}, path)
    return traj
