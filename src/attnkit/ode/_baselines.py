"""Classical adaptive baselines over a whole ensemble: scipy DOP853, torchdiffeq dopri5, torchode.

Each takes the ensemble ``y0`` ``(N, d)`` and output times ``t_eval`` ``(T+1,)`` and returns
``((T+1, N, d), nfe)``, with nfe the right-hand-side evaluations of the whole ensemble (one evaluation
= one call on all N states, or per-trajectory counts averaged for torchode).

Reference:
    scipy ``solve_ivp(method="DOP853")`` (Hairer's DOP853); torchdiffeq (Chen et al., NeurIPS 2018,
    github.com/rtqichen/torchdiffeq); torchode (Lienen and Guennemann, "torchode: A Parallel ODE Solver
    for PyTorch", arXiv 2210.12375, github.com/martenlienen/torchode).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._optional import require

__all__ = ["dop853_ensemble", "torchdiffeq_ensemble", "torchode_ensemble"]


def dop853_ensemble(
    system,
    y0: Tensor,
    t_eval: np.ndarray,
    rtol: float,
    atol: float | None = None,
    *,
    numpy_rhs: bool = True,
) -> tuple[Tensor, int]:
    """Integrate the whole ensemble ``y0`` ``(N, d)`` as one stacked system with scipy's DOP853.

    The error norm (scipy's RMS over all N*d components) controls one shared step sequence; the
    right-hand side is one vectorised call per stage: the system's NumPy right-hand side
    (``system.numpy_rhs()``) when ``numpy_rhs`` and the system has one, else the torch module on
    NumPy-backed tensors. Always float64.

    Args:
        system: an ``ODESystem``.
        y0: ``(N, d)`` initial states.
        t_eval: output times ``(T+1,)``.
        rtol: relative tolerance.
        atol: absolute tolerance (default ``rtol * 1e-2``).
        numpy_rhs: use the NumPy right-hand side where one exists.

    Returns:
        ``((T+1, N, d) float64, nfe)``.

    Raises:
        RuntimeError: scipy reports a failure.
    """
    from scipy.integrate import solve_ivp

    n, d = y0.shape
    atol = rtol * 1e-2 if atol is None else atol
    f = None
    if numpy_rhs:
        try:
            f = system.numpy_rhs()
        except (NotImplementedError, AttributeError):
            f = None
    if f is not None:

        def rhs(t, y):
            return f(y.reshape(n, d)).reshape(-1)
    else:

        def rhs(t, y):
            return system(t, torch.from_numpy(y).view(n, d)).reshape(-1).numpy()

    sol = solve_ivp(
        rhs,
        (float(t_eval[0]), float(t_eval[-1])),
        y0.double().reshape(-1).numpy(),
        method="DOP853",
        t_eval=t_eval,
        rtol=rtol,
        atol=atol,
    )
    if sol.status != 0:
        raise RuntimeError(f"DOP853 failed: {sol.message}")
    return torch.from_numpy(sol.y.T.copy()).view(len(t_eval), n, d), int(sol.nfev)


class _Counted(torch.nn.Module):
    def __init__(self, f) -> None:
        super().__init__()
        self.f, self.nfe = f, 0

    def forward(self, t, y):
        self.nfe += 1
        return self.f(t, y)


def torchdiffeq_ensemble(
    system, y0: Tensor, t_eval: Tensor, rtol: float, atol: float | None = None, *, method: str = "dopri5"
) -> tuple[Tensor, int]:
    """Adaptive torchdiffeq solver on the stacked ensemble (one shared step sequence, RMS norm).

    Args:
        system: the right-hand side.
        y0: ``(N, d)`` initial states (their dtype is the state dtype).
        t_eval: output times ``(T+1,)``.
        rtol: relative tolerance.
        atol: absolute tolerance (default ``rtol * 1e-2``).
        method: torchdiffeq method (``dopri5``; its ``dopri8`` is less accurate than dopri5 at tight
            tolerances).

    Returns:
        ``((T+1, N, d), nfe)``, computed under ``torch.inference_mode()``.

    Raises:
        ImportError: torchdiffeq is missing (the ``ode`` extra).
    """
    tde = require("torchdiffeq", "ode")
    f = _Counted(system)
    atol = rtol * 1e-2 if atol is None else atol
    with torch.inference_mode():
        out = tde.odeint(f, y0, t_eval.to(y0.dtype), rtol=rtol, atol=atol, method=method)
    return out, f.nfe


def torchode_ensemble(
    system,
    y0: Tensor,
    t_eval: Tensor,
    rtol: float,
    atol: float | None = None,
    *,
    compile: bool = False,
    _cache: dict = {},  # noqa: B006 - compiled solvers per (system, dtype), kept across calls
) -> tuple[Tensor, float]:
    """Dopri5 of torchode with one step size per trajectory (its batched, per-sample step control).

    Args:
        system: the right-hand side (``system(t, y)`` on ``(N, d)``).
        y0: ``(N, d)`` initial states.
        t_eval: output times ``(T+1,)`` (the same for every trajectory).
        rtol: relative tolerance.
        atol: absolute tolerance (default ``rtol * 1e-2``).
        compile: ``torch.compile`` the solver (torchode's documented JIT route).

    Returns:
        ``((T+1, N, d), mean right-hand-side evaluations per trajectory)``.

    Raises:
        ImportError: torchode is missing (the ``ode`` extra).
        RuntimeError: some trajectories did not finish (torchode's status).
    """
    to = require("torchode", "ode")
    atol = rtol * 1e-2 if atol is None else atol
    n = y0.shape[0]
    key = (id(system), y0.dtype, compile, float(rtol), float(atol))
    solver = _cache.get(key)
    if solver is None:
        term = to.ODETerm(lambda t, y: system(t, y))
        step = to.Dopri5(term=term)
        ctrl = to.IntegralController(atol=atol, rtol=rtol, term=term)
        solver = to.AutoDiffAdjoint(step, ctrl)
        if compile:
            solver = torch.compile(solver, dynamic=True)
        _cache[key] = solver
    te = t_eval.to(y0.dtype).expand(n, -1)
    with torch.inference_mode():
        sol = solver.solve(to.InitialValueProblem(y0=y0, t_eval=te))
    if not bool((sol.status == 0).all()):
        raise RuntimeError(f"torchode: {int((sol.status != 0).sum())} trajectories did not finish")
    return sol.ys.transpose(0, 1), float(sol.stats["n_f_evals"].float().mean())
