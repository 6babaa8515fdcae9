"""Classical baselines for cost/accuracy comparisons: scipy's DOP853 over a whole ensemble."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["dop853_ensemble"]


def dop853_ensemble(
    system, y0: Tensor, t_eval: np.ndarray, rtol: float, atol: float | None = None
) -> tuple[Tensor, int]:
    """Integrate the whole ensemble ``y0`` ``(N, d)`` as one stacked system with scipy's DOP853.

    The error norm (scipy's RMS over all N*d components) controls one shared step sequence; the
    right-hand side is one vectorised call per stage. Returns ``((T+1, N, d) float64, nfe)``.
    """
    from scipy.integrate import solve_ivp

    n, d = y0.shape
    atol = rtol * 1e-2 if atol is None else atol

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
